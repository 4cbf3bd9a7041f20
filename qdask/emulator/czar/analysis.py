"""Qserv's query analysis for the stand-in's czar: what it refuses knowing the catalog, and the statement the
stand-in then runs on its MariaDB czar database so that the answer is Qserv's.

Qserv's czar analyses a parsed SELECT with a chain of plugins (``src/qproc/QuerySession.cc:316-332``)
and dispatches it to the chunks it selects. The stand-in keeps each partitioned table as one MERGE table
over its chunk tables (:mod:`qdask.emulator.czar.databases`), so it reproduces the analysis and turns
Qserv's dispatch into predicates on the tables' ``chunkId`` column:

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
* scisql calls go to the stored functions of :mod:`qdask.emulator.czar.functions`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp

from qdask.emulator.czar import functions as sqlfunctions
from qdask.emulator.czar.catalog import CSS_FILE, DUMMY_CHUNK, Catalog, TableInfo, TableRef
from qdask.emulator.czar.errors import AnalysisRefusal
from qdask.emulator.czar.joins import RelationGraph, top_level_terms
from qdask.emulator.czar.restrictors import AREASPEC, AreaRestrictor, restrictor
from qdask.emulator.czar.rules import Parsed


@dataclass
class Plan:
    """What to run for an accepted SELECT: ``sql`` on MariaDB, or the row counters' total (``count_star``:
    the rows table and the result column's name)."""

    sql: str = ""
    count_star: tuple[str, str] | None = None
    chunks: frozenset[int] | None = None  # the chunks Qserv would dispatch to (None: all)


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
    if len(refs) == 1 and refs[0].info.kind == "match":
        conditions.append(_match_copies_once(refs[0]))
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


def _resolve_tables(tree: exp.Select, default_db: str | None, catalog: Catalog) -> list[TableRef]:
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
        refs.append(TableRef(table, table.alias_or_name, info))
    return refs


def _check_order_by(tree: exp.Select, refs: list[TableRef]) -> None:
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


def _restrictor_predicate(r: AreaRestrictor, ref: TableRef) -> exp.Expr:
    """``scisql_s2PtIn…(alias.lon, alias.lat, args…) = 1`` (AreaRestrictor.cc asSciSqlFactor)."""
    args: list[exp.Expr] = [_column(ref.alias, ref.info.lon), _column(ref.alias, ref.info.lat)]
    args += [exp.Literal.number(text) for text in r.texts]
    return exp.EQ(this=exp.Anonymous(this=r.scisql, expressions=args), expression=exp.Literal.number(1))


def _match_copies_once(ref: TableRef) -> exp.Expr:
    """MatchTablePlugin.cc:97-140: a query on a match table alone (not a join) skips the second copy of
    a pair stored in both sides' chunks: ``(dirCol1 IS NULL OR flag <> 2)``."""
    assert ref.info.match is not None
    first_key = ref.info.match[0][2]
    is_null = exp.Is(this=_column(ref.alias, first_key), expression=exp.Null())
    not_second = exp.NEQ(this=_column(ref.alias, ref.info.flag), expression=exp.Literal.number(2))
    return exp.Paren(this=exp.Or(this=is_null, expression=not_second))


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


def _index_chunks(
    where, refs: list[TableRef], catalog: Catalog, lookup_chunks: ChunkLookup
) -> set[int] | None:
    """Secondary-index restrictors (QservRestrictorPlugin.cc:256-448): top-level ``key = const``,
    ``const = key`` and ``key [NOT] IN (…)`` on a director's key or a child's director key; the chunks of
    all of them together (SecondaryIndex.cc MySqlBackend::lookup appends every lookup's rows)."""
    found: set[int] | None = None
    for term in top_level_terms(where):
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


def _index_director(column: exp.Column, refs: list[TableRef], catalog: Catalog) -> TableInfo | None:
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
    found = []
    for term in top_level_terms(where):
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
