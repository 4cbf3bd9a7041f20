"""The ingest configuration: one YAML file, validated into typed pydantic models with located errors.

`load_config(path)` is the only way in. It reads the YAML, resolves relative paths against the file's
directory, checks every rule it can check without touching Qserv or the data (names Qserv accepts and
that cannot inject SQL, a partitioning layout Qserv accepts, tables that reference declared directors,
column selections that make sense, Kubernetes names and quantities), and raises `ConfigError` listing
every problem as ``file:line: key.path: what was expected``. Unknown keys are errors everywhere.

Secrets never live in the file: Qserv's auth keys are read from environment variables named in the
config (lazily, on first use) and held as `SecretStr`, so they never show in `repr`, `str`, dumps or
`qdask plan --check` output.

Modules: `database`, `inputs`, `tables`, `qserv`, `staging`, `cluster` hold the sections' models and
`ingest_config` the whole file; `loading` reads YAML and `messages` turns validation errors into located
problems (`errors.ConfigError`); `names`, `quantities`, `globbing` and `felis` are the shared vocabulary
(identifiers, sizes and Kubernetes quantities, file globs, felis schema discovery).
"""

from qdask.config.cluster import (
    Adaptive,
    ClusterConfig,
    EnvVar,
    KubernetesConfig,
    PodResources,
    SecretRef,
    Toleration,
)
from qdask.config.database import DatabaseConfig, Partitioning, check_overlap
from qdask.config.errors import ConfigError
from qdask.config.felis import felis_table_names, resolve_felis_schema, sdm_schema_names
from qdask.config.globbing import match_files
from qdask.config.ingest_config import IngestConfig
from qdask.config.inputs import ButlerInput, FilesInput, TableInput
from qdask.config.loading import config_from_dict, load_config
from qdask.config.names import check_identifier
from qdask.config.qserv import (
    MAX_TRANSACTIONS,
    MIN_API_VERSION,
    Concurrency,
    CzarDSN,
    QservConfig,
    Retries,
    Timeouts,
)
from qdask.config.quantities import cpu_cores, k8s_cpu, k8s_memory, memory_bytes, parse_bytes
from qdask.config.staging import StagingConfig
from qdask.config.tables import (
    TABLE_KINDS,
    ChildTable,
    ColumnSelection,
    DirectorTable,
    FelisSchema,
    MatchTable,
    OrphanPolicy,
    Policies,
    Policy,
    RegularTable,
    SchemaSource,
    Table,
    TableConfig,
    TableKind,
)

__all__ = [
    "MAX_TRANSACTIONS",
    "MIN_API_VERSION",
    "TABLE_KINDS",
    "Adaptive",
    "ButlerInput",
    "ChildTable",
    "MatchTable",
    "ClusterConfig",
    "ColumnSelection",
    "Concurrency",
    "ConfigError",
    "CzarDSN",
    "DatabaseConfig",
    "DirectorTable",
    "EnvVar",
    "FelisSchema",
    "FilesInput",
    "IngestConfig",
    "KubernetesConfig",
    "Partitioning",
    "PodResources",
    "OrphanPolicy",
    "Policies",
    "Policy",
    "QservConfig",
    "RegularTable",
    "Retries",
    "SchemaSource",
    "SecretRef",
    "StagingConfig",
    "Table",
    "TableConfig",
    "TableInput",
    "TableKind",
    "Timeouts",
    "Toleration",
    "check_identifier",
    "check_overlap",
    "config_from_dict",
    "cpu_cores",
    "felis_table_names",
    "k8s_cpu",
    "k8s_memory",
    "load_config",
    "match_files",
    "memory_bytes",
    "parse_bytes",
    "resolve_felis_schema",
    "sdm_schema_names",
]
