"""The ledger's SQLite schema (its invariants: keys, foreign keys, CHECKs on the states) and the config
fingerprint a ledger's run is opened with (secrets never part of it, nor allowed in a transaction's
context)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from qdask.ledger.records import FILE_STATES, TRANSACTION_STATES, UNIT_STATES

SCHEMA_VERSION = 2

SCHEMA = f"""
CREATE TABLE run (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    run_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE units (
    unit_id TEXT PRIMARY KEY,
    table_name TEXT NOT NULL,
    spec TEXT NOT NULL,
    est_rows INTEGER,
    est_bytes INTEGER,
    status TEXT NOT NULL CHECK (status IN {UNIT_STATES}),
    rows_read INTEGER,
    rows_invalid INTEGER,
    rows_quarantined INTEGER,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated TEXT NOT NULL
);
CREATE INDEX units_by_table ON units (table_name, status);
CREATE TABLE shards (
    unit_id TEXT NOT NULL REFERENCES units (unit_id),
    table_name TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    rows INTEGER NOT NULL CHECK (rows >= 0),
    bytes INTEGER NOT NULL CHECK (bytes >= 0),
    checksum TEXT NOT NULL,
    destinations BLOB NOT NULL,
    segments BLOB NOT NULL,
    PRIMARY KEY (unit_id, table_name)
);
CREATE INDEX shards_by_table ON shards (table_name);
CREATE TABLE chunk_files (
    file_id INTEGER PRIMARY KEY,
    table_name TEXT NOT NULL,
    chunk_id INTEGER NOT NULL,
    overlap INTEGER NOT NULL CHECK (overlap IN (0, 1)),
    path TEXT NOT NULL UNIQUE,
    rows INTEGER NOT NULL CHECK (rows >= 0),
    bytes INTEGER NOT NULL CHECK (bytes >= 0),
    checksum TEXT NOT NULL,
    sources TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN {FILE_STATES}),
    updated TEXT NOT NULL,
    UNIQUE (table_name, chunk_id, overlap)
);
CREATE TABLE transactions (
    transaction_id INTEGER PRIMARY KEY CHECK (transaction_id > 0),
    database TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN {TRANSACTION_STATES}),
    context TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE transaction_files (
    transaction_id INTEGER NOT NULL REFERENCES transactions (transaction_id),
    file_id INTEGER NOT NULL REFERENCES chunk_files (file_id) ON DELETE CASCADE,
    PRIMARY KEY (transaction_id, file_id)
);
CREATE INDEX transaction_files_by_file ON transaction_files (file_id);
CREATE TABLE contributions (
    transaction_id INTEGER NOT NULL,
    file_id INTEGER NOT NULL,
    worker TEXT NOT NULL,
    qserv_id INTEGER,
    status TEXT NOT NULL,
    num_rows INTEGER,
    num_rows_loaded INTEGER,
    num_bytes INTEGER,
    num_warnings INTEGER,
    warnings TEXT,
    error TEXT,
    retries INTEGER NOT NULL DEFAULT 0,
    updated TEXT NOT NULL,
    PRIMARY KEY (transaction_id, file_id, worker),
    FOREIGN KEY (transaction_id, file_id) REFERENCES transaction_files (transaction_id, file_id)
        ON DELETE CASCADE
);
PRAGMA user_version = {SCHEMA_VERSION};
"""


_SECRET_WORDS = ("auth_key", "password", "secret", "token", "credential")


def config_fingerprint(config: Mapping[str, Any], *, ignore: Iterable[str] = ()) -> str:
    """``sha256:<hex>`` of a resolved config as canonical JSON, without secrets or ``ignore``-d keys.

    Any key containing auth_key/password/secret/token/credential is dropped at every depth, so the
    fingerprint never depends on, nor reveals, a secret. ``ignore`` holds dotted paths of settings that
    do not change what is loaded (e.g. ``"cluster"``, ``"cluster.workers"``).
    """
    ignored = {tuple(p.split(".")) for p in ignore}

    def clean(value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, Mapping):
            return {
                str(k): clean(v, (*path, str(k)))
                for k, v in value.items()
                if (*path, str(k)) not in ignored and not any(w in str(k).lower() for w in _SECRET_WORDS)
            }
        if isinstance(value, list | tuple):
            return [clean(v, path) for v in value]
        return value

    text = json.dumps(clean(config, ()), sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def secret_keys(value: Any, path: str = "") -> list[str]:
    """Dotted paths of the keys in ``value`` that look like secrets."""
    found = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            here = f"{path}.{k}" if path else str(k)
            if any(w in str(k).lower() for w in _SECRET_WORDS):
                found.append(here)
            found += secret_keys(v, here)
    elif isinstance(value, list | tuple):
        for v in value:
            found += secret_keys(v, path)
    return found
