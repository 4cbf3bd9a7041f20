"""Sizes on dask's parser and Kubernetes quantities on parse_quantity, with the config's documented syntax."""

from __future__ import annotations

from pathlib import Path

import dask.utils
import pytest
import yaml
from kubernetes.utils import parse_quantity

from qdask.config import config_from_dict, cpu_cores, k8s_cpu, k8s_memory, memory_bytes, parse_bytes

README = Path(__file__).resolve().parents[2] / "configs" / "README.md"


def test_the_documented_size_syntax():
    """configs/README.md: ``4GiB``/``4Gi`` are powers of 2, ``4GB``/``4G`` powers of 10, or plain bytes."""
    assert "`4GiB`/`4Gi` (powers of 2) or `4GB`/`4G` (powers of 10), or as plain bytes" in " ".join(
        README.read_text().split()
    )
    for unit, power in (("K", 1), ("M", 2), ("G", 3), ("T", 4), ("P", 5)):
        assert parse_bytes(f"4{unit}iB") == parse_bytes(f"4{unit}i") == 4 * 2 ** (10 * power)
        assert parse_bytes(f"4{unit}B") == parse_bytes(f"4{unit}") == 4 * 10 ** (3 * power)
    assert parse_bytes("4kB") == parse_bytes("4 kb") == 4000 and parse_bytes("1.5GiB") == int(1.5 * 2**30)
    assert parse_bytes("123") == parse_bytes(123) == 123 and parse_bytes("1e6") == 10**6
    # the wrapper changes nothing dask reads as a positive size
    for text in ("4GiB", "512MiB", "8GB", "3 G", "1.25TiB", "7"):
        assert parse_bytes(text) == dask.utils.parse_bytes(text)


@pytest.mark.parametrize(
    ("value", "dask_reads"),
    [
        ("GiB", 2**30),  # dask: no number means 1
        ("-1GiB", -(2**30)),
        ("0", 0),
        ("0.4", 0),
        (True, 1),
        (2.5, 2),
        ("1e400", OverflowError),  # float('1e400') is inf
        ("4 lightyears", ValueError),
    ],
)
def test_sizes_dask_accepts_or_misreads_are_refused(value, dask_reads):
    if isinstance(dask_reads, type):
        with pytest.raises(dask_reads):
            dask.utils.parse_bytes(value)
    else:
        assert dask.utils.parse_bytes(value) == dask_reads
    with pytest.raises(ValueError, match="size"):
        parse_bytes(value)


@pytest.mark.parametrize(
    ("size", "quantity"),
    [("8Gi", "8Gi"), ("8GiB", "8Gi"), ("1.5GiB", "1.5Gi"), ("8GB", "8G"), ("512KB", "512k"), ("64kB", "64k"),
     ("300M", "300M"), (2**30, "1073741824"), ("2 GiB", "2Gi")],
)  # fmt: skip
def test_memory_quantities_keep_kubernetes_syntax(size, quantity):
    assert k8s_memory(size) == quantity
    assert memory_bytes(quantity) == int(parse_quantity(quantity)) == parse_bytes(size)


@pytest.mark.parametrize("bad", ["0Gi", "0", "lots", "-1Gi"])
def test_memory_quantities_must_be_positive_sizes(bad):
    with pytest.raises(ValueError):
        k8s_memory(bad)


def test_cpu_quantities():
    assert [k8s_cpu(v) for v in ("2", 2, 1.5, "500m", " 250m ")] == ["2", "2", "1.5", "500m", "250m"]
    assert [cpu_cores(q) for q in ("2", "1.5", "500m", "2500m")] == [2.0, 1.5, 0.5, 2.5]
    for bad in ("two", "0", "0m", "-1", "1.5 cores", True):
        with pytest.raises(ValueError, match="CPU quantity"):
            k8s_cpu(bad)


def test_sizes_are_shown_with_dasks_formatter_and_read_back(tmp_path, one_table_config):
    kubernetes = {"image": "i", "worker": {"cpu": 2, "memory": "3GiB"}}
    data = one_table_config(cluster={"kind": "kubernetes", "kubernetes": kubernetes})
    cfg = config_from_dict(data, tmp_path, check_paths=False)
    shown = yaml.safe_load(cfg.to_yaml())
    assert shown["qserv"]["max_bytes_per_transaction"] == "10.00 GiB"
    assert shown["cluster"]["kubernetes"]["worker"]["memory"] == "3Gi"
    assert shown["cluster"]["memory_per_worker"] == "2.70 GiB"  # 0.9 x the pod's 3Gi
    assert parse_bytes(shown["qserv"]["max_bytes_per_transaction"]) == cfg.qserv.max_bytes_per_transaction
