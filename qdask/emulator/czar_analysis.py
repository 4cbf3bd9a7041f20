"""Qserv's query analysis for the stand-in's czar: what it refuses knowing the catalog, and the statement the
stand-in then runs on its MariaDB czar database so that the answer is Qserv's.

Qserv's czar analyses a parsed SELECT with a chain of plugins (``src/qproc/QuerySession.cc:316-332``)
and dispatches it to the chunks it selects. The stand-in keeps each partitioned table as one MERGE table over
its chunk tables (:mod:`qdask.emulator.czar`), so it reproduces the analysis and turns Qserv's dispatch into
predicates on the tables' ``chunkId`` column:

* refusals: duplicate select names (``DuplSelectExprPlugin.cc:131-146``); unknown tables
  (``css/CssAccess.cc:481``); an ORDER BY term that matches no select item (``TablePlugin.cc:231-234``);
  a spatial restrictor without a partitioned table (``QservRestrictorPlugin.cc:236``); joins of partitioned
  tables that cannot be evaluated chunk by chunk (``RelationGraph.cc:1000-1004``);
* ``qserv_areaspec_*`` becomes ``scisql_s2PtIn…(alias.lon, alias.lat, …) = 1`` on every partitioned table
  of the FROM list, with the registered position columns (``QservRestrictorPlugin.cc:225-251``);
* chunk selection: the director index for ``key = c`` / ``key IN (…)`` terms
  (``QservRestrictorPlugin.cc:256-448``, ``qproc/SecondaryIndex.cc``), the region's chunks for restrictors
  (``qproc/IndexMap.cc:140-190``), their intersection when both; the query then reads only those chunks;
* tables joined on keys read the same chunk (a worker joins ``Object_C`` with ``Source_C``), so their
  ``chunkId`` must agree; tables reached through a near-neighbour join (``scisql_angSep < overlap``) read
  the overlap too and are left free;
* ``SELECT COUNT(*) FROM t`` alone is answered from the row counters when they are deployed
  (``UserQueryFactory.cc:314-325``, ``UserQuerySelectCountStar.cc:76-165``);
* scisql calls go to the stored functions of :mod:`qdask.emulator.sqlfunctions`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlglot import exp

from qdask.emulator import sqlfunctions
from qdask.emulator.records import Family, Table
from qdask.emulator.sqlrules import AREASPEC, AreaRestrictor, Parsed, czar_refused
from qdask.emulator.state import State

DUMMY_CHUNK = 1234567890  # every worker holds empty chunk tables for it (qproc/QuerySession.cc setDummy)
CSS_FILE = "src/css/CssAccess.cc"


@dataclass(frozen=True)
class TableInfo:
    """What Qserv's CSS knows of a published table (as registered with ``/ingest/table``)."""

    db: str
    name: str
    kind: str  # "director" | "child" | "match" | "regular"
    columns: tuple[str, ...]
    key: str = ""  # director: its id column; child: its director-key column
    lon: str = ""
    lat: str = ""
    director: tuple[str, str] | None = None  # child: its director (db, table)
    match: tuple[tuple[str, str, str], tuple[str, str, str]] | None = None  # ((db, table, fk), ...) x2
    overlap: float = 0.0
    ang_sep: float = 0.0  # match tables
    layout: str = ""  # the partitioning (family) name

    @property
    def partitioned(self) -> bool:
        return self.kind != "regular"


@dataclass
class Catalog:
    """The published tables, the stand-in's database names, and its layouts (stripes, sub-stripes)."""

    tables: dict[tuple[str, str], TableInfo]
    czar_prefix: str
    meta_db: str
    scisql_db: str
    layouts: dict[str, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def from_state(cls, state: State, *, czar_prefix: str, meta_db: str, scisql_db: str) -> Catalog:
        """A snapshot of the controller's records (call it on the stand-in's event loop)."""
        tables: dict[tuple[str, str], TableInfo] = {}
        layouts = {name: (f.num_stripes, f.num_sub_stripes) for name, f in state.families.items()}
        for (db, name), t in list(state.tables.items()):
            database = state.databases.get(db)
            if database is None or not database.is_published or not t.is_published:
                continue
            tables[(db, name)] = _table_info(t, state.families.get(database.family_name))
        return cls(tables, czar_prefix, meta_db, scisql_db, layouts)

    def get(self, db: str, table: str) -> TableInfo | None:
        return self.tables.get((db, table))


def _table_info(t: Table, family: Family | None) -> TableInfo:
    """What the czar knows of a registered table; a director named without a database is in the table's
    own database (Qserv leaves ``director_database_name`` empty then, ``ConfigTable.cc:40-48``)."""
    first = (t.director.database_name or t.database, t.director.table_name, t.director.primary_key)
    second = (t.director2.database_name or t.database, t.director2.table_name, t.director2.primary_key)
    if not t.is_partitioned:
        kind = "regular"
    elif t.is_ref_match:
        kind = "match"
    else:
        kind = "director" if t.is_director else "child"
    return TableInfo(
        db=t.database,
        name=t.name,
        kind=kind,
        columns=tuple(c.name for c in t.columns),
        key=t.director_key if kind in ("director", "child") else "",
        lon=t.longitude_key,
        lat=t.latitude_key,
        director=first[:2] if kind == "child" else None,
        match=(first, second) if kind == "match" else None,
        overlap=family.overlap if family is not None else 0.0,
        ang_sep=t.ang_sep if kind == "match" else 0.0,
        layout=family.name if family is not None else "",
    )


class AnalysisRefusal(Exception):
    """The czar's analysis refuses the query; ``text`` is the czar's error (after ``Failed to instantiate
    query: ``)."""

    def __init__(self, text: str, rule: str):
        super().__init__(text)
        self.text = text
        self.rule = rule

    def as_error(self):
        return czar_refused(self.text, self.rule)


@dataclass
class Plan:
    """What to run for an accepted SELECT: ``sql`` on MariaDB, or the row counters' total (``count_star``:
    the rows table and the result column's name)."""

    sql: str = ""
    count_star: tuple[str, str] | None = None
    chunks: frozenset[int] | None = None  # the chunks Qserv would dispatch to (None: all)


@dataclass
class _Ref:
    """One table reference of the FROM list: alias (or name) as written, and its table."""

    node: exp.Table
    alias: str
    info: TableInfo


ChunkLookup = Callable[[TableInfo, str], set[int]]  # (director, SQL condition on its key) → chunks


def plan(
    parsed: Parsed,
    default_db: str | None,
    catalog: Catalog,
    lookup_chunks: ChunkLookup,
    rows_table_exists: Callable[[str], bool],
) -> Plan:
    """Analyse an accepted SELECT as Qserv's czar does and return what the stand-in runs for it; raises
    :class:`AnalysisRefusal` with Qserv's error where Qserv refuses."""
    tree = parsed.tree.copy()
    count = _count_star(parsed, tree, default_db, catalog, rows_table_exists)
    if count is not None:
        return Plan(count_star=count)
    _check_duplicate_names(tree)
    refs = _resolve_tables(tree, default_db, catalog)
    _check_order_by(tree, refs)
    restrictors = parsed.restrictors
    if restrictors and not any(r.info.partitioned for r in refs):
        raise AnalysisRefusal(
            "AnalysisError:Spatial restrictor without partitioned table.", "restrictor table"
        )
    where = _without_restrictors(tree)
    graph = RelationGraph(refs, tree)
    free = graph.validate()
    conditions: list[exp.Expr] = []
    for r in restrictors:
        for ref in refs:
            if ref.info.partitioned:
                conditions.append(_restrictor_predicate(r, ref))
    chunks = _select_chunks(tree, where, refs, restrictors, catalog, lookup_chunks)
    # Tables read from the dispatched chunk itself share it; near-neighbour partners also read its overlap.
    bound = [ref for ref in refs if ref.info.partitioned and ref.alias not in free]
    if chunks is not None:
        listed = sorted(chunks) or [DUMMY_CHUNK]
        for ref in bound:
            conditions.append(_column(ref.alias, "chunkId").isin(*(exp.Literal.number(c) for c in listed)))
    for a, b in zip(bound, bound[1:], strict=False):
        conditions.append(exp.EQ(this=_column(a.alias, "chunkId"), expression=_column(b.alias, "chunkId")))
    if conditions:
        combined = exp.and_(*conditions, *([where] if where is not None else []))
        tree.set("where", exp.Where(this=combined))
    else:
        tree.set("where", exp.Where(this=where) if where is not None else None)
    _name_computed_columns(parsed, tree)
    _call_stored_functions(tree, catalog.scisql_db)
    for ref in refs:
        ref.node.set("db", exp.to_identifier(catalog.czar_prefix + ref.info.db, quoted=True))
    return Plan(sql=tree.sql(dialect="mysql"), chunks=None if chunks is None else frozenset(chunks))


# -------------------------------------------------------------------------------------- COUNT(*) shortcut


def _count_star(parsed, tree: exp.Select, default_db, catalog: Catalog, rows_table_exists) -> tuple | None:
    """UserQueryType::isSimpleCountStar (UserQueryType.cc:183-200) and the rows table test
    (UserQueryFactory.cc:183-198): one COUNT(*), one table, no WHERE/GROUP/HAVING/ORDER (LIMIT allowed)."""
    if any(tree.args.get(k) for k in ("where", "group", "having", "order", "joins")):
        return None
    items = tree.expressions
    if len(items) != 1:
        return None
    value = items[0].this if isinstance(items[0], exp.Alias) else items[0]
    if not (isinstance(value, exp.Count) and isinstance(value.this, exp.Star)):
        return None
    source = tree.args.get("from_") or tree.args.get("from")
    if source is None or not isinstance(source.this, exp.Table):
        return None
    table = source.this
    db = table.db or default_db or ""
    rows = f"{db}__{table.name}__rows"
    if not rows_table_exists(rows):
        return None
    token = parsed.first_token(parsed.tree.expressions[0])
    spelling = token.text if token is not None else "COUNT"
    return rows, f"{spelling}(*)"


# ---------------------------------------------------------------------------------------------- refusals


def _check_duplicate_names(tree: exp.Select) -> None:
    """DuplSelectExprPlugin.cc:114-146: select items are named by alias, else by their text; repeats are
    refused with each position (1-based)."""
    names: list[str] = []
    for item in tree.expressions:
        if isinstance(item, exp.Star) or (isinstance(item, exp.Column) and isinstance(item.this, exp.Star)):
            continue
        if isinstance(item, exp.Alias):
            names.append(item.alias.lower())
        elif isinstance(item, exp.Column):
            names.append(".".join(f"`{part.lower()}`" for part in (item.table, item.name) if part))
        else:
            names.append(item.sql(dialect="mysql").lower())
    errors = []
    for name in sorted(set(names)):
        positions = [i + 1 for i, n in enumerate(names) if n == name]
        if len(positions) > 1:
            errors.append(f"[1] '{name}' at positions:" + "".join(f" {p}" for p in positions))
    if errors:
        raise AnalysisRefusal(
            "AnalysisError:Duplicate names detected in select expression, rewrite SQL query using alias: "
            + ", ".join(errors),
            "duplicate names",
        )


def _resolve_tables(tree: exp.Select, default_db: str | None, catalog: Catalog) -> list[_Ref]:
    """Every table of FROM and JOIN, with the CSS entry Qserv reads for it (CssAccess.cc:460-486)."""
    refs = []
    for table in tree.find_all(exp.Table):
        db = table.db or default_db or ""
        info = catalog.get(db, table.name)
        if info is None:
            raise AnalysisRefusal(
                f"NoSuchTable(css):Table '{db}.{table.name}' does not exist. "
                f"[in function getPartTableParams at {CSS_FILE}:481]",
                "unknown table",
            )
        refs.append(_Ref(table, table.alias_or_name, info))
    return refs


def _check_order_by(tree: exp.Select, refs: list[_Ref]) -> None:
    """TablePlugin::applyLogical matches every ORDER BY term to a select item (matchIsRequired, :231-234,
    QueryContext::getValueExprMatch): by alias, or as the same expression (a column may leave out its
    table)."""
    order = tree.args.get("order")
    if order is None:
        return
    items = tree.expressions
    aliases = {i.alias.lower() for i in items if isinstance(i, exp.Alias)}
    values = [i.this if isinstance(i, exp.Alias) else i for i in items]
    for term in order.expressions:
        value = term.this
        if isinstance(value, exp.Column) and not value.table and value.name.lower() in aliases:
            continue
        if any(_same_value(value, v) for v in values):
            continue
        raise AnalysisRefusal(
            f"analyzeQuery unexpected:Could not find a value expr match for {value.sql(dialect='mysql')}",
            "order by match",
        )


def _same_value(term: exp.Expr, item: exp.Expr) -> bool:
    if isinstance(term, exp.Column) and isinstance(item, exp.Column):
        if term.name.lower() != item.name.lower():
            return False
        return not term.table or term.table.lower() == (item.table or "").lower()
    return term.sql(dialect="mysql").lower() == item.sql(dialect="mysql").lower()


# ----------------------------------------------------------------------------------- spatial restrictors


def _without_restrictors(tree: exp.Select) -> exp.Expr | None:
    """WHERE without its ``qserv_areaspec_*`` terms: the parser takes them out of the AND/OR chain they sit
    in (FromClauseAdapter / LogicalExpressionAdapter::handleQservFunctionSpec, ParseAdapters.h:520-525,
    2287-2293), which also drops them from an OR."""
    where = tree.args.get("where")
    if where is None:
        return None

    def strip(node: exp.Expr) -> exp.Expr | None:
        if _is_restrictor_term(node):
            return None
        if isinstance(node, (exp.And, exp.Or)):
            left, right = strip(node.this), strip(node.expression)
            if left is None or right is None:
                return left if right is None else right
            return type(node)(this=left, expression=right)
        return node

    return strip(where.this)


def _is_restrictor_term(node: exp.Expr) -> bool:
    def spec(n):
        return isinstance(n, exp.Anonymous) and n.name.lower() in AREASPEC

    if spec(node):
        return True
    return isinstance(node, exp.EQ) and (spec(node.this) or spec(node.expression))


def _restrictor_predicate(r: AreaRestrictor, ref: _Ref) -> exp.Expr:
    """``scisql_s2PtIn…(alias.lon, alias.lat, args…) = 1`` (AreaRestrictor.cc asSciSqlFactor)."""
    args: list[exp.Expr] = [_column(ref.alias, ref.info.lon), _column(ref.alias, ref.info.lat)]
    args += [exp.Literal.number(text) for text in r.texts]
    return exp.EQ(this=exp.Anonymous(this=r.scisql, expressions=args), expression=exp.Literal.number(1))


def _column(table: str, name: str) -> exp.Column:
    return exp.column(name, table=table, quoted=True)


# ---------------------------------------------------------------------------------------- chunk selection


def _select_chunks(tree, where, refs, restrictors, catalog, lookup_chunks) -> set[int] | None:
    """IndexMap::getChunks (qproc/IndexMap.cc:140-190): index chunks ∩ region chunks, either alone, or
    None (every chunk)."""
    index = _index_chunks(where, refs, catalog, lookup_chunks)
    regions = [_region(r) for r in restrictors]
    if not regions:
        single = _single_scisql_restrictor(where)
        if single is not None:
            regions = [_region(single)]
    region_chunks = None
    layout = next((ref.info.layout for ref in refs if ref.info.partitioned), "")
    if regions and layout in catalog.layouts:
        from lsst import sphgeom

        stripes, sub_stripes = catalog.layouts[layout]
        chunker = sphgeom.Chunker(stripes, sub_stripes)
        region_chunks = set()
        for region in regions:  # PartitioningMap::getIntersect: the union over the regions
            region_chunks |= set(chunker.getChunksIntersecting(region))
    if index is not None and region_chunks is not None:
        return index & region_chunks
    return index if index is not None else region_chunks


def _top_level_terms(where: exp.Expr | None) -> list[exp.Expr]:
    """The terms of WHERE's top-level AND (WhereClause::getRootAndTerm: none under an OR)."""
    if where is None:
        return []
    if isinstance(where, exp.And):
        return _top_level_terms(where.this) + _top_level_terms(where.expression)
    if isinstance(where, exp.Or):
        return []
    return [where]


def _index_chunks(where, refs: list[_Ref], catalog: Catalog, lookup_chunks: ChunkLookup) -> set[int] | None:
    """Secondary-index restrictors (QservRestrictorPlugin.cc:256-448): top-level ``key = const``,
    ``const = key`` and ``key [NOT] IN (…)`` on a director's key or a child's director key; the chunks of
    all of them together (SecondaryIndex.cc MySqlBackend::lookup appends every lookup's rows)."""
    found: set[int] | None = None
    for term in _top_level_terms(where):
        negated = isinstance(term, exp.Not) and isinstance(term.this, exp.In)
        core = term.this if negated else term
        column, condition = None, None
        if isinstance(core, exp.In) and isinstance(core.this, exp.Column) and core.args.get("query") is None:
            column = core.this
            values = ", ".join(v.sql(dialect="mysql") for v in core.expressions)
            condition = f"{'NOT ' if negated else ''}IN ({values})"
        elif isinstance(core, exp.EQ) and not negated:
            a, b = core.this, core.expression
            if isinstance(b, exp.Column) and _is_literal(a):
                a, b = b, a
            if isinstance(a, exp.Column) and _is_literal(b):
                column, condition = a, f"= {b.sql(dialect='mysql')}"
        if column is None or condition is None:
            continue
        director = _index_director(column, refs, catalog)
        if director is None:
            continue
        chunks = lookup_chunks(director, condition)
        found = chunks if found is None else found | chunks
    return found


def _is_literal(node: exp.Expr) -> bool:
    return isinstance(node, exp.Literal) or (isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal))


def _index_director(column: exp.Column, refs: list[_Ref], catalog: Catalog) -> TableInfo | None:
    """The director whose index answers for ``column`` (getCorrespondingDirectorColumn, :274-310)."""
    candidates = [r for r in refs if (not column.table or r.alias == column.table)]
    if not column.table:
        candidates = [r for r in candidates if column.name in r.info.columns]
    if len(candidates) != 1:
        return None
    info = candidates[0].info
    if info.kind == "director" and column.name.lower() == info.key.lower():
        return info
    if info.kind == "child" and column.name.lower() == info.key.lower() and info.director is not None:
        return catalog.get(*info.director)
    return None


def _single_scisql_restrictor(where) -> AreaRestrictor | None:
    """extractSingleScisqlAreaFunc + makeAreaRestrictor (QservRestrictorPlugin.cc:155-210): exactly one
    ``scisql_s2Pt…(…) = …`` among WHERE's top-level AND terms, with constant region arguments."""
    from qdask.emulator.sqlrules import restrictor

    found = []
    for term in _top_level_terms(where):
        if isinstance(term, exp.EQ):
            for side in (term.this, term.expression):
                if isinstance(side, exp.Anonymous) and side.name.startswith("scisql_s2Pt"):
                    found.append(side)
    if len(found) != 1:
        return None
    function = found[0]
    shapes = {
        "scisql_s2PtInBox": "qserv_areaspec_box",
        "scisql_s2PtInCircle": "qserv_areaspec_circle",
        "scisql_s2PtInEllipse": "qserv_areaspec_ellipse",
        "scisql_s2PtInCPoly": "qserv_areaspec_poly",
    }
    if function.name not in shapes or not all(_is_literal(a) for a in function.expressions[2:]):
        return None
    try:
        return restrictor(shapes[function.name], [a.sql(dialect="mysql") for a in function.expressions[2:]])
    except ValueError:
        return None


def _region(r: AreaRestrictor):
    """The sphgeom region of a restrictor (qproc/geomAdapter.h:49-106)."""
    from lsst import sphgeom

    v = r.values
    if r.shape == "box":
        return sphgeom.Box.fromDegrees(v[0], v[1], v[2], v[3])
    if r.shape == "circle":
        center = sphgeom.UnitVector3d(sphgeom.LonLat.fromDegrees(v[0], v[1]))
        return sphgeom.Circle(center, sphgeom.Angle.fromDegrees(v[2]))
    if r.shape == "ellipse":
        center = sphgeom.UnitVector3d(sphgeom.LonLat.fromDegrees(v[0], v[1]))
        return sphgeom.Ellipse(
            center,
            sphgeom.Angle.fromDegrees(v[2] / 3600.0),
            sphgeom.Angle.fromDegrees(v[3] / 3600.0),
            sphgeom.Angle.fromDegrees(v[4]),
        )
    vertices = [sphgeom.UnitVector3d(sphgeom.LonLat.fromDegrees(v[i], v[i + 1])) for i in range(0, len(v), 2)]
    return sphgeom.ConvexPolygon(vertices)


# ---------------------------------------------------------------------------------------- the join graph


@dataclass
class _Vertex:
    ref: _Ref
    column: str  # a match table's vertex stands for one of its foreign keys ("" otherwise)
    edges: list[tuple[_Vertex, float]] = field(default_factory=list)  # (vertex, angSep or NaN)
    overlap: float = math.inf

    @property
    def info(self) -> TableInfo:
        return self.ref.info

    def columns(self) -> set[str]:
        """The columns that place a row (TableInfo.cc makeColumnRefs)."""
        i = self.info
        if i.kind == "director":
            return {i.key.lower(), i.lon.lower(), i.lat.lower()}
        if i.kind == "child":
            return {i.key.lower()}
        return {self.column.lower()}


class RelationGraph:
    """Qserv's RelationGraph (src/qana/RelationGraph.cc, TableInfo.cc) over the partitioned table
    references: edges for admissible key equalities (from WHERE, ON, USING and NATURAL) and for
    ``scisql_angSep(d1.lon, d1.lat, d2.lon, d2.lat) < r`` between directors; the query is evaluable when,
    from some starting table, every table is reached with no more overlap than it has."""

    def __init__(self, refs: list[_Ref], tree: exp.Select):
        self.vertices: list[_Vertex] = []
        for ref in refs:
            if ref.info.kind == "match" and ref.info.match is not None:
                first = _Vertex(ref, ref.info.match[0][2])
                second = _Vertex(ref, ref.info.match[1][2])
                first.edges.append((second, ref.info.ang_sep))
                second.edges.append((first, ref.info.ang_sep))
                self.vertices += [first, second]
            elif ref.info.partitioned:
                self.vertices.append(_Vertex(ref, ""))
        self._check_outer_joins(tree, refs)
        terms = _top_level_terms(tree.args.get("where") and tree.args["where"].this)
        for join in tree.args.get("joins") or []:
            terms += _top_level_terms(join.args.get("on"))
            right = join.this.alias_or_name if isinstance(join.this, exp.Table) else ""
            for ident in join.args.get("using") or []:
                self._using_edges(ident.name, right)
            if (join.args.get("method") or "").upper() == "NATURAL":
                self._natural_edges(right)
        for term in terms:
            self._term_edges(term)

    def _check_outer_joins(self, tree: exp.Select, refs: list[_Ref]) -> None:
        """_fuse (RelationGraph.cc:648-673): NATURAL LEFT/RIGHT joins between partitioned and
        unpartitioned tables (other outer joins never get past the parser)."""
        left_partitioned = False
        first = tree.args.get("from_") or tree.args.get("from")
        names = {r.alias: r for r in refs}
        if first is not None and isinstance(first.this, exp.Table):
            ref = names.get(first.this.alias_or_name)
            left_partitioned = bool(ref and ref.info.partitioned)
        for join in tree.args.get("joins") or []:
            ref = names.get(join.this.alias_or_name) if isinstance(join.this, exp.Table) else None
            right_partitioned = bool(ref and ref.info.partitioned)
            side = (join.args.get("side") or "").upper()
            if side == "LEFT" and not left_partitioned and right_partitioned:
                raise _not_evaluable(
                    "Query contains a LEFT JOIN between unpartitioned and partitioned tables."
                )
            if side == "RIGHT" and left_partitioned and not right_partitioned:
                raise _not_evaluable(
                    "Query contains a RIGHT JOIN between partitioned and unpartitioned tables."
                )
            left_partitioned = left_partitioned or right_partitioned

    def _find(self, column: exp.Column) -> list[_Vertex]:
        name = column.name.lower()
        return [
            v
            for v in self.vertices
            if (not column.table or v.ref.alias == column.table) and name in v.columns()
        ]

    def _add(self, a: _Vertex, ca: str, b: _Vertex, cb: str) -> None:
        if a is not b and _admissible(a, ca.lower(), b, cb.lower()):
            a.edges.append((b, math.nan))
            b.edges.append((a, math.nan))

    def _term_edges(self, term: exp.Expr) -> None:
        if (
            isinstance(term, exp.EQ)
            and isinstance(term.this, exp.Column)
            and isinstance(term.expression, exp.Column)
        ):
            for a in self._find(term.this):
                for b in self._find(term.expression):
                    self._add(a, term.this.name, b, term.expression.name)
            return
        self._spatial_edge(term)

    def _using_edges(self, column: str, right_alias: str) -> None:
        left = [v for v in self.vertices if v.ref.alias != right_alias and column.lower() in v.columns()]
        right = [v for v in self.vertices if v.ref.alias == right_alias and column.lower() in v.columns()]
        for a in left:
            for b in right:
                self._add(a, column, b, column)

    def _natural_edges(self, right_alias: str) -> None:
        right = [v for v in self.vertices if v.ref.alias == right_alias]
        for b in right:
            for a in self.vertices:
                if a.ref.alias == right_alias:
                    continue
                for column in a.columns() & b.columns():
                    self._add(a, column, b, column)

    def _spatial_edge(self, term: exp.Expr) -> None:
        """_addSpEdges (RelationGraph.cc:533-620)."""
        if isinstance(term, (exp.LT, exp.LTE)):
            call, bound = term.this, term.expression
        elif isinstance(term, (exp.GT, exp.GTE)):
            bound, call = term.this, term.expression
        elif isinstance(term, (exp.EQ, exp.NEQ, exp.NullSafeEQ)):
            call, bound = term.this, term.expression
            if not _is_ang_sep(call):
                call, bound = bound, call
        else:
            return
        if not _is_ang_sep(call) or not (isinstance(bound, exp.Literal) and not bound.is_string):
            return
        args = call.expressions
        if not all(isinstance(a, exp.Column) for a in args):
            return
        found = [self._find(a) for a in args]
        if any(len(f) != 1 for f in found):
            return
        v = [f[0] for f in found]
        if v[0] is not v[1] or v[2] is not v[3] or v[0] is v[2]:
            return
        d1, d2 = v[0].info, v[2].info
        if d1.kind != "director" or d2.kind != "director" or d1.layout != d2.layout:
            return
        if (args[0].name, args[1].name, args[2].name, args[3].name) != (d1.lon, d1.lat, d2.lon, d2.lat):
            return
        v[0].edges.append((v[2], float(bound.name)))
        v[2].edges.append((v[0], float(bound.name)))

    def validate(self) -> set[str]:
        """_validate (RelationGraph.cc:939-960): raise if not evaluable; return the aliases of the tables
        that read the overlap (reached through a near-neighbour edge)."""
        starts = [v for v in self.vertices if v.info.kind != "match"]
        for start in starts:
            for v in self.vertices:
                v.overlap = math.inf
            _minimum_overlap(start)
            if all(math.isfinite(v.overlap) for v in self.vertices):
                return {v.ref.alias for v in self.vertices if v.overlap > 0}
        if not starts and len(self.vertices) in (0, 2):
            return set()
        raise _not_evaluable(
            "Query involves partitioned table joins that Qserv does not know how to evaluate using only "
            "partition-local data"
        )


def _not_evaluable(message: str) -> AnalysisRefusal:
    """QueryNotEvaluableError is an AnalysisError, reported by QuerySession.cc:153."""
    return AnalysisRefusal(f"AnalysisError:{message}", "join not evaluable")


def _is_ang_sep(node: exp.Expr) -> bool:
    return isinstance(node, exp.Anonymous) and node.name == "scisql_angSep" and len(node.expressions) == 4


def _admissible(a: _Vertex, ca: str, b: _Vertex, cb: str) -> bool:
    """TableInfo::isEqPredAdmissible (src/qana/TableInfo.cc), in both directions."""
    return _admits(a, ca, b, cb) or _admits(b, cb, a, ca)


def _admits(a: _Vertex, ca: str, b: _Vertex, cb: str) -> bool:
    ta, tb = a.info, b.info
    same = (ta.db, ta.name) == (tb.db, tb.name)
    if ta.kind == "director" and tb.kind == "director":
        return same and ca == ta.key.lower() and cb == tb.key.lower()
    if ta.kind == "director" and tb.kind == "child":
        return tb.director == (ta.db, ta.name) and ca == ta.key.lower() and cb == tb.key.lower()
    if ta.kind == "child" and tb.kind == "child":
        return ta.director == tb.director and ca == ta.key.lower() and cb == tb.key.lower()
    if ta.kind in ("director", "child") and tb.kind == "match" and tb.match is not None:
        director = (ta.db, ta.name) if ta.kind == "director" else ta.director
        if ca != ta.key.lower():
            return False
        return any(director == (d, t) and cb == fk.lower() for d, t, fk in tb.match)
    return False


def _minimum_overlap(start: _Vertex) -> None:
    """computeMinimumOverlap (RelationGraph.cc:849-905): a breadth-first walk summing near-neighbour
    distances, never past what a table's overlap covers (children have none)."""
    start.overlap = 0.0
    queue = [start]
    while queue:
        v = queue.pop(0)
        for u, ang_sep in v.edges:
            available = 0.0
            if u.info.kind == "director":
                available = u.info.overlap
            elif u.info.kind == "match" and v.info.kind == "match":
                available = u.info.ang_sep
            required = v.overlap + (0.0 if math.isnan(ang_sep) else ang_sep)
            if required <= available and required < u.overlap:
                u.overlap = required
                if u not in queue:
                    queue.append(u)


# -------------------------------------------------------------------------------- the statement to run


def _name_computed_columns(parsed: Parsed, tree: exp.Select) -> None:
    """Give each unnamed computed select item the name MariaDB would give it (its text as written), so
    that rewriting the expression below does not rename the column."""
    for original, item in zip(parsed.tree.expressions, tree.expressions, strict=True):
        if isinstance(item, (exp.Alias, exp.Column, exp.Star)):
            continue
        item.replace(exp.alias_(item.copy(), parsed.near(original), quoted=True))


def _call_stored_functions(tree: exp.Expr, database: str) -> None:
    """Point every scisql call at its stored function (sqlfunctions.stored_name)."""
    for call in list(tree.find_all(exp.Anonymous)):
        if not sqlfunctions.is_scisql(call.name):
            continue
        args = call.expressions

        def constant(i: int, args: list = args) -> bool:
            return _is_literal(args[i])

        stored = sqlfunctions.stored_name(call.name, len(args), constant)
        if stored is None:
            continue  # no such scisql function here: MariaDB says so when the statement runs
        call.replace(
            exp.Dot(
                this=exp.to_identifier(database, quoted=True),
                expression=exp.Anonymous(this=stored, expressions=[a.copy() for a in args]),
            )
        )


def rewrite_local(sql: str, scisql_db: str) -> str:
    """A statement the proxy runs locally (``SELECT`` without ``FROM``…): only its scisql calls are pointed
    at the stored functions; anything sqlglot cannot read goes through unchanged."""
    import sqlglot
    from sqlglot.dialects import MySQL

    try:
        trees = sqlglot.parse(sql, read="mysql")
        tokens = MySQL().tokenize(sql)
    except Exception:  # noqa: BLE001 - MariaDB will judge the statement itself
        return sql
    tree = trees[0] if len(trees) == 1 else None
    if not isinstance(tree, exp.Select):
        return sql
    if not any(sqlfunctions.is_scisql(c.name) for c in tree.find_all(exp.Anonymous)):
        return sql
    rewritten = tree.copy()
    _name_computed_columns(Parsed(sql, tree, tokens), rewritten)
    _call_stored_functions(rewritten, scisql_db)
    return rewritten.sql(dialect="mysql")
