"""The Qserv Replication/Ingest endpoints qdask calls (contract `qserv-ingest-api.md`, API version 55).

`QservClient` is a `Transport` (envelope, key, versions, retries: see `transport`) with one method per
endpoint the ingest uses, in the order of the workflow (§2): register the database and its tables, run
super-transactions (begin, allocate chunks, upload contributions, commit or abort), publish, build the
director index. Answers come back as the records of `models`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr

from qdask.dialect import TSV, Dialect
from qdask.qserv.errors import QservProtocolError
from qdask.qserv.models import ContributionInfo, Location, TransactionInfo, transactions_in
from qdask.qserv.transport import Transport


def _seg(value: Any) -> str:
    """A URL path segment: quoted so a name can never change the path."""
    return quote(str(value), safe="")


def _target(database: str | None, transaction_id: int | None) -> dict[str, Any]:
    """The `database` or `transaction_id` a placement call is about (exactly one of them)."""
    if transaction_id is None and database is not None:
        return {"database": database}
    if database is None and transaction_id is not None:
        return {"transaction_id": int(transaction_id)}
    raise ValueError("give exactly one of database or transaction_id")


class QservClient(Transport):
    """Synchronous client of a Qserv controller and its workers' ingest services (thread-safe)."""

    def __repr__(self) -> str:
        return f"QservClient({self.controller_url!r}, version={self.version})"

    def __enter__(self) -> QservClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- databases and tables (§3.1-3.3) ---------------------------------------------------------

    def database_info(self, database: str) -> dict | None:
        """The database object of the replication configuration, or None if not registered (§3.1)."""
        config = self.call("GET", "/replication/config", since=12)["config"]
        return next((db for db in config.get("databases", []) if db.get("database") == database), None)

    def register_database(
        self,
        database: str,
        num_stripes: int,
        num_sub_stripes: int,
        overlap: float,
        auto_build_secondary_index: bool = True,
    ) -> dict:
        """`POST /ingest/database` (§3.2); returns the database object."""
        if overlap < 0:
            raise ValueError("overlap can't have a negative value")
        body = {
            "database": database,
            "num_stripes": int(num_stripes),
            "num_sub_stripes": int(num_sub_stripes),
            "overlap": float(overlap),
            "auto_build_secondary_index": int(bool(auto_build_secondary_index)),
        }
        return self.call("POST", "/ingest/database", since=12, auth=True, body=body)["database"]

    def publish_database(self, database: str) -> dict:
        """`PUT /ingest/database/:db` — publish (§3.2). Synchronous and possibly long (`load_timeout`)."""
        path = f"/ingest/database/{_seg(database)}"
        return self.call("PUT", path, since=12, auth=True, body={}, slow=True)["database"]

    def delete_database(self, database: str, *, admin_key: SecretStr | str | None = None) -> None:
        """`DELETE /ingest/database/:db`: the database, its tables on every worker, its director indexes and
        row counters. A published database needs the administrator's key (`admin_key`, sent as
        `admin_auth_key`): src/replica/contr/HttpIngestModule.cc, _deleteDatabase."""
        path = f"/ingest/database/{_seg(database)}"
        if admin_key is None:
            self.call("DELETE", path, since=12, auth=True, body={}, slow=True)
            return
        key = admin_key.get_secret_value() if isinstance(admin_key, SecretStr) else str(admin_key)
        self.call("DELETE", path, since=12, body={"admin_auth_key": key}, slow=True)

    def unpublish_database(self, database: str, *, admin_key: SecretStr | str) -> dict:
        """`PUT /replication/config/database/:db` with `publish=0` (§3.10): the database takes tables again;
        its tables stay published (src/replica/config/Configuration.cc, _publishDatabase: "Do not
        unpublish individual tables"). Administrator's key only (HttpConfigurationModule.cc,
        _unpublishDatabase). Returns the database object."""
        path = f"/replication/config/database/{_seg(database)}"
        key = admin_key.get_secret_value() if isinstance(admin_key, SecretStr) else str(admin_key)
        answer = self.call("PUT", path, since=12, body={"admin_auth_key": key, "publish": 0})
        return answer["config"]["databases"][database]

    def register_table(
        self,
        database: str,
        table: str,
        schema: Sequence[Mapping[str, str] | tuple[str, str]],
        *,
        is_partitioned: bool,
        director_table: str | None = None,
        director_key: str | None = None,
        director_table2: str | None = None,
        director_key2: str | None = None,
        flag: str | None = None,
        ang_sep: float | None = None,
        latitude_key: str | None = None,
        longitude_key: str | None = None,
        chunk_id_key: str | None = None,
        sub_chunk_id_key: str | None = None,
        unique_primary_key: bool | None = None,
        charset_name: str | None = None,
        collation_name: str | None = None,
    ) -> dict:
        """`POST /ingest/table` (§3.3); returns the updated database object.

        Director: `is_partitioned=True`, `director_table=""` (or None), `director_key`, `latitude_key`,
        `longitude_key`, schema with `subChunkId`. Dependent: `director_table` names the director (may be
        `db.Table`), `director_key` is the foreign key, lat/lon both or neither. Match (ref-match): both
        directors and keys, the `flag` column and `ang_sep` > 0, no lat/lon. Regular: no keys at all.
        `chunk_id_key`/`sub_chunk_id_key` are obsolete in Qserv (the roles are fixed to `chunkId` and
        `subChunkId`), so they are only checked, never sent. `unique_primary_key` (API ≥ 21) and
        `charset_name`/`collation_name` (≥ 49) are sent only when given, so the server defaults apply.
        The checks here mirror the server's so a bad table fails before anything is written.
        """
        cols = [dict(c) if isinstance(c, Mapping) else {"name": c[0], "type": c[1]} for c in schema]
        for c in cols:
            if not c.get("name") or not c.get("type"):
                raise ValueError(f"table {table}: a schema column needs a non-empty 'name' and 'type': {c}")
        names = [c["name"] for c in cols]
        if "qserv_trans_id" in names:
            raise ValueError(f"table {table}: reserved column 'qserv_trans_id' is not allowed")
        if len(database) + len(table) > 56:
            raise ValueError(f"{database}.{table}: database and table names together exceed 56 characters")
        for role, given, fixed in (
            ("chunk_id_key", chunk_id_key, "chunkId"),
            ("sub_chunk_id_key", sub_chunk_id_key, "subChunkId"),
        ):
            if given not in (None, "", fixed):
                raise ValueError(
                    f"table {table}: {role}={given!r}, but Qserv fixes this role to column {fixed!r}"
                )
        body: dict[str, Any] = {
            "database": database,
            "table": table,
            "is_partitioned": int(is_partitioned),
            "schema": cols,
        }
        keys = {"director_key": director_key, "latitude_key": latitude_key, "longitude_key": longitude_key}
        match = {"director_table2": director_table2, "director_key2": director_key2, "flag": flag}
        if any(match.values()) or ang_sep is not None:
            # A ref-match table (Qserv: src/replica/config/ConfigTable.cc, the RefMatch rules).
            if not (director_table and director_key and all(match.values())):
                raise ValueError(f"match table {table} needs both directors, both keys and the flag column")
            if director_table == director_table2 or director_key == director_key2:
                raise ValueError(f"match table {table}: the two directors and their keys must differ")
            if not (ang_sep is not None and ang_sep > 0):
                raise ValueError(f"match table {table} needs ang_sep > 0")
            if latitude_key or longitude_key:
                raise ValueError(f"match table {table} can't have spatial coordinate columns")
            for role in ("director_key2", "flag"):
                if match[role] not in names:
                    raise ValueError(
                        f"table {table}: no matching column '{match[role]}' found in schema for parameter "
                        f"'{role}'"
                    )
            body.update(match, ang_sep=float(ang_sep))
        if not is_partitioned:
            given_keys = [k for k, v in {**keys, "director_table": director_table, **match}.items() if v]
            if given_keys:
                raise ValueError(f"regular table {table} may not carry {', '.join(given_keys)}")
        else:
            if not director_key:
                raise ValueError(f"partitioned table {table} needs director_key")
            if not director_table:
                if not (latitude_key and longitude_key):
                    raise ValueError(f"director table {table} needs latitude_key and longitude_key")
                if "subChunkId" not in names:
                    raise ValueError(f"director table {table} must have a 'subChunkId' column")
                bad = [c["name"] for c in cols if "BLOB" in c["type"].upper() or "TEXT" in c["type"].upper()]
                if bad:
                    raise ValueError(f"director table {table}: BLOB/TEXT columns are not allowed: {bad}")
            elif bool(latitude_key) != bool(longitude_key):
                raise ValueError(f"table {table}: give both latitude_key and longitude_key, or neither")
            for role, col in keys.items():
                if col and col not in names:
                    raise ValueError(
                        f"table {table}: no matching column '{col}' found in schema for parameter '{role}'"
                    )
            body["director_table"] = director_table or ""
            body.update({k: v for k, v in keys.items() if v})
        if unique_primary_key is not None:
            self.require(21, "unique_primary_key")
            body["unique_primary_key"] = int(unique_primary_key)
        for name, value in (("charset_name", charset_name), ("collation_name", collation_name)):
            if value is not None:
                self.require(49, name)
                body[name] = value
        return self.call("POST", "/ingest/table", since=12, auth=True, body=body, slow=True)["database"]

    def list_tables(self, database: str) -> list[dict]:
        """`GET /ingest/table/:db` (§3.3): [{name, is_partitioned}]."""
        return self.call("GET", f"/ingest/table/{_seg(database)}", since=12)["tables"]

    # -- transactions (§3.5) ---------------------------------------------------------------------

    def begin_transaction(self, database: str, context: Any = None) -> TransactionInfo:
        """`POST /ingest/trans`: start one; `context` is any JSON kept with it (never a key)."""
        body: dict[str, Any] = {"database": database}
        if context is not None:
            body["context"] = self.refuse_keys(context)
        answer = self.call("POST", "/ingest/trans", since=12, auth=True, body=body, slow=True)
        return self._one(answer, "POST /ingest/trans", database)

    def commit_transaction(self, transaction_id: int) -> TransactionInfo:
        """`PUT /ingest/trans/:id?abort=0`. A lost answer is an unknown outcome: read the state after."""
        return self._end(transaction_id, abort=False)

    def abort_transaction(self, transaction_id: int) -> TransactionInfo:
        """`PUT /ingest/trans/:id?abort=1`; may be re-issued after ABORT_FAILED."""
        return self._end(transaction_id, abort=True)

    def _end(self, transaction_id: int, *, abort: bool) -> TransactionInfo:
        path = f"/ingest/trans/{int(transaction_id)}"
        answer = self.call("PUT", path, since=12, auth=True, body={}, params={"abort": int(abort)}, slow=True)
        return self._one(answer, f"PUT {path}")

    def get_transaction(
        self, transaction_id: int, *, contributions: bool = False, include_context: bool = False
    ) -> TransactionInfo:
        """`GET /ingest/trans/:id`; `contributions=True` fills `contrib` with every contribution object."""
        path = f"/ingest/trans/{int(transaction_id)}"
        flags = {"contrib": int(contributions), "contrib_long": int(contributions)}
        answer = self.call("GET", path, since=37, params={**flags, "include_context": int(include_context)})
        return self._one(answer, f"GET {path}")

    def list_transactions(self, database: str, *, include_context: bool = False) -> list[TransactionInfo]:
        """`GET /ingest/trans?database=`: every transaction of `database`."""
        params = {"database": database, "include_context": int(include_context)}
        return transactions_in(self.call("GET", "/ingest/trans", since=37, params=params), database)

    @staticmethod
    def _one(answer: dict, endpoint: str, database: str | None = None) -> TransactionInfo:
        found = transactions_in(answer, database)
        if len(found) != 1:
            raise QservProtocolError(endpoint, f"expected one transaction in the answer, got {len(found)}")
        return found[0]

    # -- placement (§3.6) ------------------------------------------------------------------------

    def allocate_chunks(
        self, chunks: Iterable[int], *, database: str | None = None, transaction_id: int | None = None
    ) -> dict[int, Location]:
        """`POST /ingest/chunks` (API ≥ 54): where each chunk goes, {chunk: location} (sticky)."""
        wanted = [int(c) for c in chunks]
        if not wanted:
            return {}
        body = {"chunks": wanted, **_target(database, transaction_id)}
        answer = self.call("POST", "/ingest/chunks", since=54, auth=True, body=body, slow=True)
        locations = [Location.from_json(loc) for loc in answer["locations"]]
        out = {loc.chunk: loc for loc in locations if loc.chunk is not None}
        missing = sorted(set(wanted) - set(out))
        if missing or len(locations) != len(wanted):
            found = f"{len(locations)} locations for {len(wanted)} chunks; missing: {missing[:10]}"
            raise QservProtocolError("POST /ingest/chunks", found)
        return out

    def regular_locations(
        self, *, database: str | None = None, transaction_id: int | None = None
    ) -> list[Location]:
        """`GET /ingest/regular` (a GET with a JSON body): every worker a regular table must go to."""
        answer = self.call("GET", "/ingest/regular", since=12, body=_target(database, transaction_id))
        return [Location.from_json(loc) for loc in answer["locations"]]

    # -- contributions (§4.1, §4.3) --------------------------------------------------------------

    @staticmethod
    def _contribution_fields(
        transaction_id: int,
        table: str,
        chunk: int,
        overlap: bool,
        dialect: Dialect,
        charset_name: str | None,
        max_num_warnings: int | None,
    ) -> dict[str, Any]:
        """What every contribution request names: where its rows go and how the worker reads them."""
        fields: dict[str, Any] = {
            "transaction_id": int(transaction_id),
            "table": table,
            "chunk": int(chunk),
            "overlap": int(bool(overlap)),
            **dialect.form_fields(),
        }
        if charset_name:
            fields["charset_name"] = charset_name
        if max_num_warnings:
            fields["max_num_warnings"] = int(max_num_warnings)
        return fields

    def ingest_csv(
        self,
        worker: Location | str,
        transaction_id: int,
        table: str,
        path: str | os.PathLike,
        *,
        chunk: int = 0,
        overlap: bool = False,
        dialect: Dialect = TSV,
        charset_name: str | None = None,
        max_num_warnings: int | None = None,
        digest: Callable[[], Any] | None = None,
    ) -> ContributionInfo:
        """`POST /ingest/csv` at `worker` (a location or the service's URL): one file, streamed from disk
        (and fed, block by block as sent, to a hashlib object `digest()` makes, when given).

        The form's fields (auth_key, transaction_id, table, chunk, overlap, the dialect, charset_name,
        max_num_warnings, version) precede exactly one file part. For regular tables `chunk`/`overlap` are
        sent as 0 (required, ignored). The answer is the contribution; check it with `check_contribution`.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(path)
        fields = self._contribution_fields(
            transaction_id, table, chunk, overlap, dialect, charset_name, max_num_warnings
        )
        form = {name: str(value) for name, value in fields.items()}
        url = worker.http_url if isinstance(worker, Location) else worker
        answer = self.call(
            "POST",
            "/ingest/csv",
            worker=url,
            since=38,
            auth=True,
            form=form,
            upload=path,
            slow=True,
            upload_digest=digest,
        )
        return ContributionInfo.from_json(answer["contrib"])

    def ingest_file(
        self,
        worker: Location | str,
        transaction_id: int,
        table: str,
        url: str,
        *,
        chunk: int = 0,
        overlap: bool = False,
        dialect: Dialect = TSV,
        charset_name: str | None = None,
        max_num_warnings: int | None = None,
    ) -> ContributionInfo:
        """`POST /ingest/file` at `worker`: a contribution by reference, synchronous (§4.1). The worker reads
        `url` itself (``file:///abs/path`` on its own filesystem, ``http(s)://``), loads it, and answers
        with the contribution, as `ingest_csv` does (src/replica/ingest/IngestHttpSvcMod.cc,
        _syncProcessRequest; IngestRequest.cc). Same fields as `ingest_csv`, as JSON, plus `url`; the
        worker's own automatic re-reads of a failed read (`max_retries`) keep their configured default.
        """
        body = {
            **self._contribution_fields(
                transaction_id, table, chunk, overlap, dialect, charset_name, max_num_warnings
            ),
            "url": url,
        }
        base = worker.http_url if isinstance(worker, Location) else worker
        answer = self.call("POST", "/ingest/file", worker=base, since=16, auth=True, body=body, slow=True)
        return ContributionInfo.from_json(answer["contrib"])

    # -- row counters ----------------------------------------------------------------------------

    def scan_table_stats(self, database: str, table: str, *, force: bool = True) -> None:
        """`POST /ingest/table-stats`: count the rows of each transaction in every chunk (and overlap)
        table of `table` on the workers, and keep the counters (policy ENABLED) for `table_stats`;
        nothing is deployed to the czar (src/replica/contr/HttpIngestModule.cc, _scanTableStats)."""
        body = {
            "database": database,
            "table": table,
            "overlap_selector": "CHUNK_AND_OVERLAP",
            "row_counters_state_update_policy": "ENABLED",
            "row_counters_deploy_at_qserv": 0,
            "force_rescan": int(force),
        }
        self.call("POST", "/ingest/table-stats", since=12, auth=True, body=body, slow=True)

    def delete_table_stats(self, database: str, table: str) -> None:
        """`DELETE /ingest/table-stats/:db/:table`: forget the kept counters (Qserv only ever adds or updates
        them on a scan, so counters of transactions gone since would stay: _deleteTableStats)."""
        path = f"/ingest/table-stats/{_seg(database)}/{_seg(table)}"
        self.call("DELETE", path, since=12, auth=True, body={"overlap_selector": "CHUNK_AND_OVERLAP"})

    def table_stats(self, database: str, table: str) -> list[dict]:
        """`GET /ingest/table-stats/:db/:table`: the counters last kept, one entry per (transaction, chunk,
        overlap): `transaction_id`, `chunk` (0 for a regular table), `is_overlap`, `num_rows`
        (src/replica/services/DatabaseServices.cc, TableRowStats::toJson)."""
        answer = self.call("GET", f"/ingest/table-stats/{_seg(database)}/{_seg(table)}", since=12)
        return list(answer.get("entries") or [])

    # -- after publishing (§3.7) -----------------------------------------------------------------

    def build_director_index(self, database: str, director_table: str, *, rebuild: bool = False) -> dict:
        """`POST /ingest/index/secondary`: build the director index of a published director table.

        `rebuild=False` fails if the index table exists; `rebuild=True` drops it first (idempotent).
        """
        body = {"database": database, "director_table": director_table, "rebuild": int(rebuild)}
        return self.call("POST", "/ingest/index/secondary", since=22, auth=True, body=body, slow=True)
