"""The stand-in's typed records and table rules, without a server: JSON round trips, Qserv's table kinds
(``ConfigTable.h:128-131``), ``DirectorTableRef`` parsing (``ConfigTable.cc:40-53``) and ``sanitize``
(``ConfigDatabase.cc:367-422``)."""

from __future__ import annotations

import json

import pytest

from qdask.emulator.contract import TRANSITIONS, ContribStatus, TransactionState
from qdask.emulator.controller.table_rules import sanitize
from qdask.emulator.records import (
    RECORD_TYPES,
    ChunkReplica,
    Column,
    Contribution,
    Database,
    DirectorRef,
    FailedRetry,
    Family,
    Host,
    LoadWarning,
    RowStatsEntry,
    Table,
    TableStats,
    Transaction,
    TransactionEvent,
    Worker,
)

COLUMNS = [Column("qserv_trans_id", "INT NOT NULL"), Column("id", "BIGINT")]


def roundtrip(record):
    doc = json.loads(json.dumps(record.to_doc()))
    return RECORD_TYPES[record.KIND].from_doc(doc)


@pytest.mark.parametrize(
    "record",
    [
        Worker(
            "w1",
            True,
            False,
            Host("127.0.0.1", "localhost"),
            25002,
            "/tmp",
            Host("10.0.0.1", "w1"),
            25004,
            "/t",
        ),
        Family("layout_85_12", 1, 85, 12, 0.01667),
        Database(
            "db",
            "layout_85_12",
            is_published=True,
            create_time=5,
            publish_time=6,
            ingest_config={"TIMEOUT": 3},
        ),
        Table(
            "T",
            "db",
            True,
            COLUMNS,
            director=DirectorRef("other", "Obj", "id"),
            latitude_key="a",
            longitude_key="b",
        ),
        ChunkReplica("db", 7480, ["w1", "w2"]),
        Transaction(
            3,
            "db",
            TransactionState.FINISHED,
            1,
            2,
            3,
            4,
            {"k": [1]},
            [TransactionEvent(1, TransactionState.STARTED, "begin", 9, {"table": "T"})],
        ),
        Contribution(
            11,
            3,
            "w1",
            "db",
            "T",
            7480,
            True,
            "file:///x",
            "latin1",
            True,
            {"fields_terminated_by": "\\t"},
            64,
            status=ContribStatus.READ_FAILED,
            failed_retries=[FailedRetry(1, 2, 3, 4, "/t", 404, 0, "e")],
            warnings=[LoadWarning("Warning", 1261, "m")],
            stage="read",
        ),
        TableStats("db", "T", [RowStatsEntry(3, 7480, True, 10, 99, "w1")]),
    ],
    ids=lambda r: r.KIND,
)
def test_records_survive_their_documents(record):
    assert roundtrip(record) == record


def test_contribution_json_is_qserv_shaped():
    c = Contribution(
        1, 2, "w", "db", "T", 0, False, "data-csv://h/f", "latin1", False, {}, 64, retry_allowed=True
    )
    out = c.to_json(warnings=False)
    assert (out["async"], out["overlap"], out["retry_allowed"], out["status"]) == (0, 0, 1, "IN_PROGRESS")
    assert "stage" not in out and "is_async" not in out


def test_legacy_contribution_documents_load():
    """Documents written before the typed records kept the stage under ``_internal``."""
    c = Contribution(1, 2, "w", "db", "T", 0, False, "u", "latin1", False, {}, 64)
    doc = c.to_doc()
    del doc["stage"]
    doc["_internal"] = {"regular": True, "stage": "load"}
    assert Contribution.from_doc(doc).stage == "load"


@pytest.mark.parametrize(
    ("partitioned", "director", "director2", "kind"),
    [
        (True, DirectorRef(primary_key="id"), DirectorRef(), "director"),
        (True, DirectorRef("", "Obj", "oid"), DirectorRef(), "dependent"),
        (True, DirectorRef("", "Obj", "o1"), DirectorRef("", "Obj2", "o2"), "ref-match"),
        (True, DirectorRef(), DirectorRef("", "Obj2", "o2"), "director"),  # table2 alone: no RefMatch
        (True, DirectorRef(primary_key="id"), DirectorRef("", "Obj2", "o2"), "both"),  # ambiguous
        (False, DirectorRef("", "Obj", "oid"), DirectorRef("", "Obj2", "o2"), "regular"),
    ],
)
def test_table_kinds_follow_config_table(partitioned, director, director2, kind):
    t = Table("T", "db", partitioned, COLUMNS, director=director, director2=director2)
    got = {(True, False): "director", (False, True): "ref-match", (True, True): "both"}.get(
        (t.is_director, t.is_ref_match), "dependent" if partitioned else "regular"
    )
    assert got == kind


@pytest.mark.parametrize(
    ("spec", "key", "parsed"),
    [
        ("", "id", DirectorRef("", "", "id")),
        ("Obj", "oid", DirectorRef("", "Obj", "oid")),
        ("db.Obj", "oid", DirectorRef("db", "Obj", "oid")),
        ("db.Obj.x", "oid", DirectorRef("db", "Obj.x", "oid")),  # split at the first '.'
    ],
)
def test_director_ref_parse(spec, key, parsed):
    assert DirectorRef.parse(spec, key) == parsed
    assert parsed.spec == spec


@pytest.mark.parametrize(
    ("spec", "key", "message"),
    [
        ("db.", "oid", "DirectorTableRef: invalid database & table spec 'db.'"),
        ("Obj", "", "DirectorTableRef: primary key column name can not be empty"),
    ],
)
def test_director_ref_parse_refusals(spec, key, message):
    with pytest.raises(ValueError, match=message):
        DirectorRef.parse(spec, key)


def test_sanitize_by_kind():
    ref1, ref2 = DirectorRef("", "Obj", "o1"), DirectorRef("", "Obj2", "o2")
    base = {"columns": COLUMNS, "flag": "f", "ang_sep": 1.0, "latitude_key": "a", "longitude_key": "b"}
    regular = sanitize(Table("R", "db", False, director=ref1, director2=ref2, **base))
    assert (regular.director, regular.director2, regular.flag, regular.ang_sep, regular.latitude_key) == (
        DirectorRef(),
        DirectorRef(),
        "",
        0.0,
        "",
    )
    director = sanitize(Table("D", "db", True, director=DirectorRef(primary_key="id"), **base))
    assert (director.flag, director.ang_sep, director.latitude_key) == ("", 0.0, "a")
    ambiguous = Table("A", "db", True, director=DirectorRef(primary_key="id"), director2=ref2, **base)
    assert sanitize(ambiguous) == ambiguous  # left for validate() to refuse (ConfigDatabase.cc:390-393)
    match = sanitize(Table("M", "db", True, director=ref1, director2=ref2, **base))
    assert (match.flag, match.ang_sep, match.latitude_key, match.longitude_key) == ("f", 1.0, "", "")
    dependent = sanitize(Table("C", "db", True, director=ref1, **base))
    assert (dependent.flag, dependent.latitude_key) == ("", "a")


def test_transitions_end_only_in_final_states():
    assert {s for s, nxt in TRANSITIONS.items() if not nxt} == {
        TransactionState.FINISHED,
        TransactionState.ABORTED,
    }
    assert all(TransactionState.IS_ABORTING in TRANSITIONS[s] for s in TransactionState if "FAILED" in s)
