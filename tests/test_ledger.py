"""qdask.ledger: resume queries, idempotency, invalidation, concurrent processes, SIGKILL durability."""

from __future__ import annotations

import pickle
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from typing import NamedTuple

import numpy as np
import pytest

from qdask.ledger import (
    DESTINATIONS,
    REGULAR_CHUNK,
    ChunkFile,
    ChunkKey,
    Contribution,
    FileStatus,
    FingerprintMismatch,
    Ledger,
    LedgerConflict,
    Shard,
    TransactionState,
    Unit,
    UnitStatus,
    config_fingerprint,
    dest_of,
    shards_digest,
)

OBJ = "Object"


@pytest.fixture
def ledger(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as led:
        led.open_run("sha256:cfg")
        yield led


class Piece(NamedTuple):
    """A unit's rows in one destination, as a shard file records them (see `merge`)."""

    unit: str
    table: str
    chunk: int
    overlap: bool
    rows: int
    checksum: str


def shard(
    unit: str,
    chunk: int,
    overlap: bool = False,
    rows: int = 10,
    checksum: str | None = None,
    table: str = OBJ,
) -> Piece:
    return Piece(unit, table, chunk, overlap, rows, checksum or f"c:{table}/{chunk}{'o' * overlap}/{unit}")


def merge(pieces) -> list[Shard]:
    """The shard files (one per unit and table) holding these destinations' rows."""
    out = []
    for unit, table in sorted({(p.unit, p.table) for p in pieces}):
        mine = sorted(
            (p for p in pieces if (p.unit, p.table) == (unit, table)), key=lambda p: (p.chunk, p.overlap)
        )
        dests = np.array([(int(dest_of(p.chunk, p.overlap)), p.rows) for p in mine], DESTINATIONS)
        rows = sum(p.rows for p in mine)
        checksum = ",".join(p.checksum for p in mine)
        out.append(
            Shard(unit, table, f"/s/{table}/{unit}.arrows", rows, rows * 100, checksum, dests.tobytes())
        )
    return out


def partitioned(led: Ledger, unit: str, pieces, **counts) -> list[ChunkKey]:
    return led.unit_partitioned(unit, merge(pieces), **counts)


def collect(led: Ledger, key: ChunkKey, suffix: str = "") -> ChunkFile:
    """What the collect stage does: read the shards, build the file, record it with their digest."""
    shards = led.shards(key)
    rows = sum(s.rows_in(key) for s in shards)
    name = f"/c/{key.table}/chunk_{key.chunk_id}{'_overlap' if key.overlap else ''}.txt"
    file = ChunkFile(
        key.table,
        key.chunk_id,
        key.overlap,
        name,
        rows,
        rows * 50,
        f"sha256:{rows}{suffix}",
        shards_digest(shards),
    )
    led.record_chunk_file(file)
    return file


def test_run_fingerprint_mismatch_is_detected(tmp_path):
    path = tmp_path / "ledger.sqlite"
    config = {"database": "dp02", "tables": [{"name": "Object"}], "qserv": {"auth_key": "s3cret"}}
    fp = config_fingerprint(config)
    with Ledger(path) as led:
        run = led.open_run(fp, run_id="run-1")
    with Ledger(path) as led:
        assert led.open_run(fp) == run
        changed = config_fingerprint({**config, "database": "dp03"})
        with pytest.raises(FingerprintMismatch, match="records a run of another config") as err:
            led.open_run(changed)
        assert (err.value.stored, err.value.given) == (fp, changed)
        assert led.run() == run


def test_config_fingerprint_ignores_secrets_and_ignored_settings():
    base = {
        "db": "dp02",
        "qserv": {"auth_key": "a", "admin_auth_key": "b", "czar_password": "c"},
        "cluster": {"workers": 4},
    }
    fp = config_fingerprint(base, ignore=["cluster.workers"])
    assert fp.startswith("sha256:") and len(fp) == len("sha256:") + 64
    other_secrets = {**base, "qserv": {"auth_key": "x", "admin_auth_key": "y", "czar_password": "z"}}
    assert config_fingerprint(other_secrets, ignore=["cluster.workers"]) == fp
    assert config_fingerprint({**base, "cluster": {"workers": 24}}, ignore=["cluster.workers"]) == fp
    assert config_fingerprint({**base, "db": "dp03"}, ignore=["cluster.workers"]) != fp
    assert config_fingerprint(base) != fp


def test_resume_queries_follow_the_stages(ledger):
    units = [
        Unit("u1", OBJ, {"uri": "a"}, "planned", est_rows=20),
        Unit("u2", OBJ, {"uri": "b"}, "planned"),
        Unit("r1", "Filter", {"uri": "f"}, "planned"),
    ]
    assert ledger.plan_units(units) == 3
    assert [u.unit_id for u in ledger.units_to_partition()] == ["r1", "u1", "u2"]

    assert ledger.unit_started("u1") == 1
    partitioned(ledger, "u1", [shard("u1", 10), shard("u1", 10, True), shard("u1", 11)], rows_read=30)
    assert ledger.chunks_to_collect() == []  # u2 of the same table may still touch chunk 10
    ledger.unit_failed("u2", "OSError: no such file")
    assert [(u.unit_id, u.status, u.error) for u in ledger.units_to_partition()] == [
        ("r1", "planned", None),
        ("u2", "failed", "OSError: no such file"),
    ]
    partitioned(
        ledger, "u2", [shard("u2", 11), shard("u2", 12)], rows_read=21, rows_invalid=1, rows_quarantined=1
    )
    partitioned(ledger, "r1", [shard("r1", REGULAR_CHUNK, table="Filter", rows=6)], rows_read=6)
    assert ledger.units_to_partition() == []
    keys = [
        ChunkKey("Filter", -1, False),
        ChunkKey(OBJ, 10, False),
        ChunkKey(OBJ, 10, True),
        ChunkKey(OBJ, 11, False),
        ChunkKey(OBJ, 12, False),
    ]
    assert ledger.chunks_to_collect() == keys

    for key in keys[:4]:
        collect(ledger, key)
    assert ledger.chunks_to_collect() == [ChunkKey(OBJ, 12, False)]
    collect(ledger, keys[4])
    assert ledger.chunk_files(table=OBJ)[2].rows == 20  # chunk 11: 10 from u1 + 10 from u2
    assert [f.key for f in ledger.files_to_load()] == keys

    ledger.transaction_started(100, "dp02", keys[1:3], {"run": "r"})
    assert [f.key for f in ledger.files_to_load()] == [keys[0], keys[3], keys[4]]
    assert [(t.transaction_id, t.files, t.context) for t in ledger.open_transactions()] == [
        (100, tuple(keys[1:3]), {"run": "r"})
    ]
    ledger.record_contribution(Contribution(100, keys[1], "w1", "FINISHED", qserv_id=7, num_rows=20))
    # resume: the open transaction is aborted in Qserv, its files are loadable again
    ledger.transaction_state(100, "aborted")
    assert ledger.open_transactions() == [] and [f.key for f in ledger.files_to_load()] == keys
    ledger.transaction_started(101, "dp02", keys)
    ledger.transaction_state(101, "committed")
    assert ledger.files_to_load() == [] and {f.status for f in ledger.chunk_files()} == {"loaded"}

    assert ledger.chunk_rows(table=OBJ) == {keys[1]: 10, keys[2]: 10, keys[3]: 20, keys[4]: 10}
    assert ledger.table_rows() == {
        OBJ: {
            "rows_read": 51,
            "rows_invalid": 1,
            "rows_quarantined": 1,
            "rows_loaded": 40,
            "overlap_rows_loaded": 10,
        },
        "Filter": {"rows_read": 6, "rows_invalid": 0, "rows_quarantined": 0, "rows_loaded": 6},
    }
    summary = ledger.summary()
    assert summary["units"] == {"partitioned": 3}
    assert summary["shards"] == {"count": 3, "rows": 56, "bytes": 5600}  # one shard file per unit
    assert summary["chunk_files"] == {"loaded": 5} and summary["chunks_to_collect"] == 0
    assert summary["transactions"] == {"aborted": 1, "committed": 1}
    assert summary["contributions"] == {"FINISHED": 1}


def test_every_write_is_idempotent(ledger):
    units = [Unit("u1", OBJ, {"uri": "a"}, "planned")]
    assert ledger.plan_units(units) == 1
    shards = [shard("u1", 10), shard("u1", 11)]
    partitioned(ledger, "u1", shards, rows_read=20)
    assert ledger.plan_units(units) == 0  # same spec: the partitioned unit stays partitioned
    assert ledger.units()[0].status == "partitioned"
    key = ChunkKey(OBJ, 10, False)
    file = collect(ledger, key)
    assert partitioned(ledger, "u1", shards, rows_read=20) == []  # same shards: chunk file kept
    assert ledger.record_chunk_file(file) is False
    assert ledger.chunk_files() == [file]
    ledger.transaction_started(5, "dp02", [key])
    ledger.transaction_started(5, "dp02", [key])
    contribution = Contribution(5, key, "w1", "READ_FAILED", error="timeout")
    ledger.record_contribution(contribution)
    ledger.record_contribution(contribution)
    ledger.record_contribution(Contribution(5, key, "w1", "FINISHED", 9, 10, 10, 500, 0, []), retry=True)
    assert ledger.contributions() == [Contribution(5, key, "w1", "FINISHED", 9, 10, 10, 500, 0, [], None, 1)]
    ledger.transaction_state(5, "committed")
    ledger.transaction_state(5, "committed")
    assert ledger.summary()["transactions"] == {"committed": 1}
    assert len(ledger.shards()) == 1 and len(ledger.transactions()[0].files) == 1


def test_changed_input_invalidates_staged_files_and_refuses_loaded_ones(ledger):
    ledger.plan_units([Unit("u1", OBJ, {"uri": "a"}, "planned"), Unit("u2", OBJ, {"uri": "b"}, "planned")])
    partitioned(ledger, "u1", [shard("u1", 10), shard("u1", 11)], rows_read=20)
    partitioned(ledger, "u2", [shard("u2", 12)], rows_read=10)
    k10, k11, k12, k13 = (ChunkKey(OBJ, c, False) for c in (10, 11, 12, 13))
    for key in (k10, k11, k12):
        collect(ledger, key)

    # a re-partitioned unit whose shard file has another checksum: its chunks are collected again
    new = [shard("u1", 10, checksum="c:new"), shard("u1", 11)]
    assert ledger.unit_partitioned("u1", merge(new), rows_read=20) == [k10, k11]
    assert ledger.chunks_to_collect() == [k10, k11]
    # a collect that read the old shards cannot record its (stale) file
    old = merge([shard("u1", 10), shard("u1", 11)])
    stale = ChunkFile(OBJ, 10, False, "/c/x.txt", 10, 500, "sha256:old", shards_digest(old))
    with pytest.raises(LedgerConflict, match="shards that changed"):
        ledger.record_chunk_file(stale)
    collect(ledger, k10)
    collect(ledger, k11)
    # a unit's rows appearing in a collected chunk, and leaving another, invalidate those chunks
    assert ledger.unit_partitioned("u2", merge([shard("u2", 11)]), rows_read=10) == [k11, k12]
    assert ledger.chunks_to_collect() == [k11]
    collect(ledger, k11)

    # chunk 11 committed, chunk 10 in an open transaction: their inputs can no longer change silently
    ledger.transaction_started(1, "dp02", [k11])
    ledger.transaction_state(1, "committed")
    ledger.transaction_started(2, "dp02", [k10])
    before = ledger.shards()
    with pytest.raises(LedgerConflict, match="is loaded in Qserv"):
        partitioned(ledger, "u2", [shard("u2", 11, rows=11)], rows_read=11)
    with pytest.raises(LedgerConflict, match="is in open transaction 2"):
        partitioned(ledger, "u1", [shard("u1", 10, rows=1), shard("u1", 11)], rows_read=11)
    assert ledger.shards() == before  # refused writes change nothing
    # nor can a unit that fed the loaded chunk 11 be re-planned with another spec
    ledger.transaction_state(2, "aborted")
    with pytest.raises(LedgerConflict, match="is loaded in Qserv"):
        ledger.plan_units([Unit("u1", OBJ, {"uri": "a2"}, "planned")])
    assert ledger.units()[0].spec == {"uri": "a"} and ledger.shards() == before


def test_replanning_a_unit_resets_it(ledger):
    ledger.plan_units([Unit("u1", OBJ, {"uri": "a"}, "planned")])
    partitioned(ledger, "u1", [shard("u1", 10)], rows_read=10)
    collect(ledger, ChunkKey(OBJ, 10, False))
    assert ledger.plan_units([Unit("u1", OBJ, {"uri": "a", "row_groups": [0, 2]}, "planned")]) == 1
    unit = ledger.units()[0]
    assert (unit.status, unit.rows_read, unit.spec) == ("planned", None, {"uri": "a", "row_groups": [0, 2]})
    assert ledger.shards() == [] and ledger.chunk_files() == []
    assert ledger.chunks_to_collect() == []


def test_double_records_are_impossible(ledger):
    ledger.plan_units([Unit("u1", OBJ, {}, "planned"), Unit("u2", OBJ, {}, "planned")])
    partitioned(ledger, "u1", [shard("u1", 10)], rows_read=10)
    with pytest.raises(sqlite3.IntegrityError):  # one shard file cannot be recorded for two units
        ledger.unit_partitioned(
            "u2", [Shard("u2", OBJ, merge([shard("u1", 10)])[0].path, 1, 1, "c")], rows_read=1
        )
    with pytest.raises(Exception, match="two shards for the same"):
        ledger.unit_partitioned("u2", merge([shard("u2", 11)]) * 2, rows_read=1)
    key = ChunkKey(OBJ, 10, False)
    collect(ledger, key)
    ledger.transaction_started(1, "dp02", [key])
    with pytest.raises(LedgerConflict, match="already in started transaction 1"):
        ledger.transaction_started(2, "dp02", [key])
    assert [t.transaction_id for t in ledger.transactions()] == [1]  # the refused transaction left nothing
    ledger.transaction_state(1, "committed")
    with pytest.raises(LedgerConflict, match="already in committed transaction 1"):
        ledger.transaction_started(3, "dp02", [key])
    with pytest.raises(LedgerConflict, match="cannot become aborted"):
        ledger.transaction_state(1, "aborted")
    with pytest.raises(Exception, match="must not carry secrets; remove qserv.auth_key"):
        ledger.transaction_started(4, "dp02", [], {"run": "r", "qserv": {"auth_key": "k"}})
    assert [t.transaction_id for t in ledger.transactions()] == [1]
    with pytest.raises(LedgerConflict, match="not carried by transaction 9"):
        ledger.record_contribution(Contribution(9, key, "w1", "FINISHED"))
    with pytest.raises(sqlite3.IntegrityError):
        ledger._db.execute("UPDATE units SET status = 'done'")


def test_a_pickled_ledger_reopens_by_path(ledger):
    ledger.plan_units([Unit("u1", OBJ, {}, "planned")])
    copy = pickle.loads(pickle.dumps(ledger))
    assert copy.path == ledger.path and copy.units() == ledger.units() and copy._db is not ledger._db
    copy.close()


WRITER = textwrap.dedent("""
    import random, sys
    import numpy as np
    from qdask.ledger import DESTINATIONS, Ledger, Shard
    path, me, n_units, n_shards = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    led = Ledger(path)
    units = [f"u{k:04d}" for k in range(n_units)]
    random.Random(me).shuffle(units)  # every process records every unit, in its own order
    for u in units:
        led.unit_started(u)
        dests = np.array([(2 * c, 10) for c in range(n_shards)], DESTINATIONS).tobytes()
        shards = [Shard(u, "Object", f"/s/{u}", 10 * n_shards, 100, f"c{u}", dests)]
        led.unit_partitioned(u, shards, rows_read=10 * n_shards)
    print("done", flush=True)
""")


def test_concurrent_writer_processes_lose_and_duplicate_nothing(tmp_path):
    path = tmp_path / "ledger.sqlite"
    n_procs, n_units, n_shards = 4, 60, 8
    with Ledger(path) as led:
        led.plan_units(Unit(f"u{k:04d}", "Object", {}, "planned") for k in range(n_units))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(me), str(n_units), str(n_shards)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me in range(n_procs)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * n_procs, [err for _, err in results]
    with Ledger(path) as led:
        units = led.units()
        assert [u.attempts for u in units] == [n_procs] * n_units  # no lost read-modify-write
        assert {u.status for u in units} == {"partitioned"}
        assert len(led.shards()) == n_units  # one shard file per unit, however many chunks
        assert led.summary()["shards"]["rows"] == 10 * n_units * n_shards
        assert len(led.chunks_to_collect()) == n_shards


BURST = textwrap.dedent("""
    import sys
    import numpy as np
    from qdask.ledger import DESTINATIONS, Ledger, Shard
    path, n_shards = sys.argv[1], int(sys.argv[2])
    led = Ledger(path)
    for n, unit in enumerate(led.units_to_partition()):
        u = unit.unit_id
        led.unit_started(u)
        dests = np.array([(c, c) for c in range(n_shards)], DESTINATIONS).tobytes()
        shards = [Shard(u, "Object", f"/s/{u}", sum(range(n_shards)), 7, f"c{u}", dests)]
        led.unit_partitioned(u, shards, rows_read=sum(range(n_shards)))
        if n == 2:
            print("writing", flush=True)
    print("finished", flush=True)
""")


def test_sigkill_mid_burst_leaves_only_whole_records_and_resumes(tmp_path):
    path = tmp_path / "ledger.sqlite"
    n_units, n_shards = 4000, 40  # a burst of seconds: the first kill (at ≤ 0.6 s) always lands mid-burst
    with Ledger(path) as led:
        led.plan_units(Unit(f"u{k:05d}", "Object", {"k": k}, "planned") for k in range(n_units))
    rng = random.Random(6)
    kills = 0
    for _ in range(8):
        proc = subprocess.Popen(
            [sys.executable, "-c", BURST, str(path), str(n_shards)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout.readline() in ("writing\n", "finished\n")
        # let it run a random while into its burst, then kill it without warning
        try:
            proc.wait(timeout=rng.uniform(0.05, 0.6))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        proc.stdout.close()
        check = sqlite3.connect(path)
        assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert check.execute("PRAGMA foreign_key_check").fetchall() == []
        check.close()
        with Ledger(path) as led:
            per_unit: dict[str, int] = {}
            for s in led.shards():
                per_unit[s.unit_id] = per_unit.get(s.unit_id, 0) + len(s.dests())
            for unit in led.units():
                expected = n_shards if unit.status == "partitioned" else 0
                assert per_unit.get(unit.unit_id, 0) == expected, unit
                assert unit.rows_read == (sum(range(n_shards)) if unit.status == "partitioned" else None)
            if not led.units_to_partition():
                break
    assert kills >= 1
    # a final uninterrupted run resumes where the last kill stopped, and completes every unit once
    subprocess.run([sys.executable, "-c", BURST, str(path), str(n_shards)], check=True, capture_output=True)
    with Ledger(path) as led:
        assert led.units_to_partition() == []
        assert len(led.shards()) == n_units
        assert all(u.attempts >= 1 for u in led.units())


def test_states_read_back_typed_and_no_other_state_can_be_stored(ledger):
    ledger.plan_units([Unit("u1", OBJ, {"f": 1})])
    partitioned(ledger, "u1", [shard("u1", 5)], rows_read=10)
    collect(ledger, ChunkKey(OBJ, 5, False))
    ledger.transaction_started(7, "db", [ChunkKey(OBJ, 5, False)])
    ledger.transaction_state(7, TransactionState.COMMITTED)
    (unit,), (file,), (trans,) = ledger.units(), ledger.chunk_files(), ledger.transactions()
    assert type(unit.status) is UnitStatus and unit.status is UnitStatus.PARTITIONED
    assert type(file.status) is FileStatus and file.status is FileStatus.LOADED
    assert type(trans.state) is TransactionState and trans.state is TransactionState.COMMITTED
    assert unit.status == "partitioned"  # a StrEnum still equals its text (JSON, `qdask status`)
    with pytest.raises(ValueError, match="transaction state must be one of"):
        ledger.transaction_state(7, "finished")
    db = sqlite3.connect(ledger.path, isolation_level=None)  # as any other writer of the file
    with pytest.raises(sqlite3.IntegrityError):  # the schema's CHECKs list exactly the enums' values
        db.execute("UPDATE units SET status = 'done'")
    for status in UnitStatus:
        db.execute("UPDATE units SET status = ?", (status,))
    db.close()
