"""`qdask plan` shows each stage's estimated peak per task next to the budget and the worker's limits."""

from __future__ import annotations

import textwrap

from click.testing import CliRunner

from qdask.cli import main
from tests.kube.test_memory import write_catalog


def config(tmp_path, cluster: str) -> str:
    path = tmp_path / "plan.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            database:
              name: memtest
              partitioning: {{num_stripes: 340, num_sub_stripes: 3, overlap: 0.01667}}
            tables:
              - name: Object
                kind: director
                id: id
                ra: ra
                dec: dec
                input:
                  files: {{glob: "{tmp_path}/data/*.parquet"}}
                schema: {{infer: true}}
            qserv:
              controller: http://127.0.0.1:25081
              czar: mysql://qsmaster@127.0.0.1:4040/memtest
            staging:
              directory: {tmp_path}/staging
            """
        )
        + cluster
    )
    return str(path)


KUBE = """
cluster:
  kind: kubernetes
  kubernetes:
    image: ghcr.io/lsst-dm/qdask:0.1.0
    workers: 4
    worker: {cpu: 2, memory: 2Gi}
"""


def test_plan_shows_memory_per_stage_against_the_pod_limit(tmp_path):
    (tmp_path / "data").mkdir()
    write_catalog(tmp_path / "data" / "a.parquet", rows=750_000, columns=30, row_group=50_000)  # ~200 MiB
    write_catalog(tmp_path / "data" / "b.parquet", rows=900_000, columns=30, row_group=900_000, seed=1)
    result = CliRunner().invoke(main, ["plan", config(tmp_path, KUBE)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Dask limit 1.80 GiB, pod limit 2.00 GiB, 2 thread(s)" in out
    # budget per task: (0.8 x 1.8 GiB - 200 MiB) / 2 threads
    assert "637.28 MiB" in out
    rows = [line for line in out.splitlines() if "Object" in line and "partition" in line]
    assert len(rows) == 1 and rows[0].rstrip(" │").endswith("NO")
    # a.parquet was cut into row-group ranges; b.parquet is one row group and is named as not fitting
    assert "cannot be cut to fit" in out and "b.parquet" in out.split("cannot be cut to fit")[1]
    tasks = int(rows[0].split("│")[3])
    assert tasks > 2


def test_plan_on_a_local_cluster_fits(tmp_path):
    (tmp_path / "data").mkdir()
    write_catalog(tmp_path / "data" / "a.parquet", rows=20_000, columns=10, row_group=10_000)
    local = "\ncluster: {kind: local, workers: 2, memory_per_worker: 2GiB}\n"
    result = CliRunner().invoke(main, ["plan", config(tmp_path, local)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Dask limit 2.00 GiB, 1 thread(s)" in result.output and "pod limit" not in result.output
    assert "cannot be cut" not in result.output
    assert all(line.rstrip(" │").endswith("yes") for line in result.output.splitlines() if "Object" in line
               and ("partition" in line or "collect" in line))  # fmt: skip


def test_ingest_cluster_option_selects_kubernetes_and_checks_the_config(tmp_path):
    (tmp_path / "data").mkdir()
    write_catalog(tmp_path / "data" / "a.parquet", rows=1_000, columns=2, row_group=1_000)
    local = "\ncluster: {kind: local, workers: 2, memory_per_worker: 2GiB}\n"
    result = CliRunner().invoke(main, ["ingest", config(tmp_path, local), "--cluster", "kubernetes"])
    assert result.exit_code == 2
    assert "cluster: kind kubernetes needs a kubernetes section" in result.output
