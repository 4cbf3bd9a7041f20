"""Column types for Qserv: table schemas from felis, a Qserv table JSON, MySQL DDL or an Arrow schema.

Every source of a schema ends as a `TableSchema`: the ordered data columns of a table, each with the
MySQL type Qserv will create it with and the Arrow type its values are expected to have.

Modules: `columns` (Column, TableSchema, column selection), `ddl` (the one MySQL DDL parser, on
sqlglot: types, column definitions, CREATE TABLE), `arrow_types` (MySQL ↔ Arrow types), `readers`
(felis, Qserv table JSON, DDL, Arrow → TableSchema), `checks` (does Arrow data fit a table), `errors`.
"""

from qdask.schema.arrow_types import arrow_type_for, mysql_type_for_arrow
from qdask.schema.checks import check_arrow_schema, check_batch_values, is_compatible
from qdask.schema.columns import CHUNK_COLUMNS, Column, TableSchema, select_columns
from qdask.schema.ddl import normalize_type
from qdask.schema.errors import SchemaError, SchemaMismatch
from qdask.schema.readers import felis_table, from_arrow, from_ddl, from_qserv_json, parse_column_definition

__all__ = [
    "CHUNK_COLUMNS",
    "Column",
    "SchemaError",
    "SchemaMismatch",
    "TableSchema",
    "arrow_type_for",
    "check_arrow_schema",
    "check_batch_values",
    "felis_table",
    "from_arrow",
    "from_ddl",
    "from_qserv_json",
    "is_compatible",
    "mysql_type_for_arrow",
    "normalize_type",
    "parse_column_definition",
    "select_columns",
]
