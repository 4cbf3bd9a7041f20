"""What the driver builds from the config: the fingerprint of what determines the staged data, the Dask
cluster, the Qserv Replication/Ingest client and czar, the load stage's settings, and how many chunks a
transaction holds to fit the transaction budget."""

from __future__ import annotations

import logging

from pydantic import SecretStr

from qdask.cluster import ClusterSpec
from qdask.config import IngestConfig
from qdask.config.qserv import AUTO_CHUNKS_PER_TRANSACTION
from qdask.errors import IngestError
from qdask.ledger import ChunkFile, Ledger, TransactionState, config_fingerprint
from qdask.qserv import QservClient
from qdask.qserv.czar import DSN as CzarDSN
from qdask.qserv.czar import Czar
from qdask.stages.load import LoadSettings, chunks_to_fit, plan_transactions

log = logging.getLogger(__name__)

#: Table settings that act only after staging (registration in Qserv): they may change between runs.
AFTER_STAGING = ("collation_name", "unique_primary_key", "policies")


def fingerprint(config: IngestConfig) -> str:
    """What determines the staged data, and so must not change while a staging directory is reused: the
    database name and layout, and each table's kind, keys, input, schema, columns, overlap and charset.

    The Qserv endpoints, the cluster, the staging options and the settings that act after staging may
    change between runs (e.g. `--controller` to reach the same Qserv another way). Key policies are not
    part of it either: a changed `duplicate_ids`/`orphans` is applied by collecting the affected chunk
    files again (`Ingest` checks what a changed policy touches).
    """
    shown = config.display_dict()
    tables = [{k: v for k, v in t.items() if k not in AFTER_STAGING} for t in shown["tables"]]
    database = {k: shown["database"][k] for k in ("name", "partitioning")}
    return config_fingerprint({"database": database, "tables": tables})


def cluster_spec(config: IngestConfig) -> ClusterSpec:
    c = config.cluster
    return ClusterSpec(
        kind=c.kind,
        workers=c.workers,
        threads_per_worker=c.threads_per_worker,
        memory_per_worker=c.worker_memory_limit,  # on Kubernetes: 0.9 x the pod limit unless set
        scheduler_address=c.scheduler_address,
        kubernetes=c.kubernetes if c.kind == "kubernetes" else None,
        staging_directory=str(config.staging.directory) if c.kind == "kubernetes" else None,
    )


def qserv_client(config: IngestConfig) -> QservClient:
    """The Replication/Ingest client `qserv:` describes: controller, auth key, API version, timeouts and
    retries (`retries.attempts` counts the first try; the transport counts the tries after it)."""
    q = config.qserv
    return QservClient(
        q.controller,
        q.auth_key,
        version=q.api_version,
        timeout=q.timeouts.request,
        load_timeout=q.timeouts.load,
        connect_timeout=q.timeouts.connect,
        retries=q.retries.attempts - 1,
        backoff=q.retries.backoff,
        backoff_max=q.retries.backoff_max,
    )


def czar_for(config: IngestConfig) -> Czar:
    """SQL through the czar of `qserv.czar`, with the password of `$qserv.czar_password_env` when set
    (else the DSN's), passed as it is (never through a URL), and `timeouts.connect`."""
    q = config.qserv
    c = q.czar
    password = q.czar_password or SecretStr("")
    return Czar(CzarDSN(c.host, c.port, c.user, password, c.database), connect_timeout=q.timeouts.connect)


def load_settings(config: IngestConfig, run_id: str, chunks_per_transaction: int) -> LoadSettings:
    """What the load stage takes from `qserv:`: transaction sizes (chunks per transaction as resolved by
    `chunks_per_transaction`), concurrency, retries of a contribution Qserv allows to retry
    (`retries.attempts` counts the first try) and their backoff, and how the contributions reach the
    workers (`transport`; with `url`, `url_base` stands for the staging directory)."""
    q = config.qserv
    return LoadSettings(
        database=config.database.name,
        run_id=run_id,
        charsets={t.name: config.table_charset(t)[0] for t in config.tables},
        max_chunks_per_transaction=chunks_per_transaction,
        max_bytes_per_transaction=q.max_bytes_per_transaction,
        concurrency_total=q.concurrency.total,
        concurrency_per_worker=q.concurrency.per_worker,
        redo_attempts=3,
        retries_in_transaction=q.retries.attempts - 1,
        retry_backoff=q.retries.backoff,
        transport=q.transport,
        url_base=q.url_base,
        staging_root=str(config.staging.directory) if q.transport == "url" else None,
        serve_host=q.serve_host,
        serve_port=q.serve_port,
    )


def chunks_per_transaction(config: IngestConfig, ledger: Ledger, files: list[ChunkFile]) -> int:
    """How many chunks each transaction of this load may hold, within `qserv.max_transactions`: until
    publish, each transaction is a MariaDB partition of every table of the database (committed ones count).

    A number in `max_chunks_per_transaction` is kept, and a load that would take too many transactions is
    refused. `auto` is 100, or the fewest chunks per transaction that fit the budget (an all-sky DP0.2
    catalog has ~146k chunks: 1,464 transactions of 100, over the default budget of 1000).
    """
    q = config.qserv
    committed = len(ledger.transactions(state=TransactionState.COMMITTED))
    budget = q.max_transactions - committed
    auto = q.max_chunks_per_transaction == "auto"
    start = AUTO_CHUNKS_PER_TRANSACTION if auto else int(q.max_chunks_per_transaction)
    chunks: int | None = None
    if auto:
        chunks = chunks_to_fit(files, start, q.max_bytes_per_transaction, budget)
    elif len(plan_transactions(files, start, q.max_bytes_per_transaction)) <= budget:
        chunks = start
    if chunks is not None:
        if chunks > start:
            log.info("load: %d chunks per transaction to stay within %d transaction(s)", chunks, budget)
        return chunks
    at = max(start, len({f.chunk_id for f in files})) if auto else start  # auto: the fewest it could take
    planned = len(plan_transactions(files, at, q.max_bytes_per_transaction))
    size = f"{q.max_bytes_per_transaction:,} bytes"
    how = (
        f"of at most {size} even with no limit on chunks (auto)"
        if auto
        else f"of at most {at} chunks and {size}"
    )
    raise IngestError(
        f"loading {len(files)} chunk file(s) takes {planned} transaction(s) {how}, and "
        f"{committed} are committed already: more than "
        f"qserv.max_transactions = {q.max_transactions} (each is a MariaDB partition of every table until "
        "publish). Raise qserv.max_chunks_per_transaction (or set it to auto) or max_bytes_per_transaction "
        "(fewer, larger transactions), or max_transactions (at most 8192)."
    )
