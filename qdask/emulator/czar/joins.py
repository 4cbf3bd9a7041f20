"""Qserv's relation graph: whether a join of partitioned tables can be evaluated chunk by chunk."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sqlglot import exp

from qdask.emulator.czar.catalog import TableInfo, TableRef
from qdask.emulator.czar.errors import AnalysisRefusal

# ---------------------------------------------------------------------------------------- the join graph


@dataclass
class _Vertex:
    ref: TableRef
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

    def __init__(self, refs: list[TableRef], tree: exp.Select):
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
        terms = top_level_terms(tree.args.get("where") and tree.args["where"].this)
        for join in tree.args.get("joins") or []:
            terms += top_level_terms(join.args.get("on"))
            right = join.this.alias_or_name if isinstance(join.this, exp.Table) else ""
            for ident in join.args.get("using") or []:
                self._using_edges(ident.name, right)
            if (join.args.get("method") or "").upper() == "NATURAL":
                self._natural_edges(right)
        for term in terms:
            self._term_edges(term)

    def _check_outer_joins(self, tree: exp.Select, refs: list[TableRef]) -> None:
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


def top_level_terms(where: exp.Expr | None) -> list[exp.Expr]:
    """The terms of WHERE's top-level AND (WhereClause::getRootAndTerm: none under an OR)."""
    if where is None:
        return []
    if isinstance(where, exp.And):
        return top_level_terms(where.this) + top_level_terms(where.expression)
    if isinstance(where, exp.Or):
        return []
    return [where]
