"""Qserv's SQL rules: what its proxy and its parser refuse, with the error a MySQL client then receives.

A client reaches Qserv through ``mysql-proxy`` running ``src/proxy/mysqlProxy.lua`` (port 4040). The proxy
squeezes the query's white space, answers some statements from the czar's own MariaDB ("local"), refuses
writes, and hands everything else to the czar, whose ANTLR parser (``src/parser/QSMySqlParser.g4`` over
``MySqlParser.g4``) and listener (``src/ccontrol/ParseListener.cc``, ``ParseAdapters.h``) accept a subset
of MySQL. A refusal reaches the client as MySQL error 4110 (SQLSTATE ``Proxy``) with the text::

    Query processing error: QI=?: Failed to instantiate query: ParseException:Error parsing query,
    near "COUNT(DISTINCT objectId)", aggregator is not supported

This module reproduces those rules on a sqlglot parse of the statement (plus its token stream, for the
keywords sqlglot normalises away). Every rule in :data:`RULES` names the Qserv source line it comes
from; :func:`check_select` reports the first violation in the order Qserv's tree walk meets them (by
position in the statement, outer construct first). What the query analysis refuses (it needs the catalog)
is in :mod:`qdask.emulator.czar.analysis`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeGuard

import sqlglot
from sqlglot import exp
from sqlglot.dialects import MySQL
from sqlglot.errors import TokenError
from sqlglot.tokens import Token, TokenType

from qdask.emulator.czar.errors import ADAPTERS, LISTENER, RUNNER, QservError, czar_refused
from qdask.emulator.czar.restrictors import AREASPEC, AREASPEC_HULL, AreaRestrictor, restrictor

# ---------------------------------------------------------------------------------------- the parser rules


@dataclass(frozen=True)
class Rule:
    """One refusal of Qserv's parser: ``kind`` decides the message's shape (see :meth:`error`)."""

    name: str
    source: str
    kind: str  # "syntax" | "unhandled" | "not supported" | "assertion" | "restrictor"
    message: str = ""

    def error(self, near: str) -> str:
        """The czar's error text (the part after ``Failed to instantiate query: ``)."""
        if self.kind == "syntax":  # ParseRunner.cc:58,65,88 (near is the whole statement)
            return f'ParseException:Failed to instantiate query: "{near}"'
        if self.kind == "unhandled":  # ParseListener.cc:71-76
            return f'ParseException:qserv can not parse query, near "{near}"'
        if self.kind == "not supported":  # ParseAdapters.h:141-155
            return f'ParseException:Error parsing query, near "{near}", {self.message}'
        if self.kind == "assertion":  # ParseAdapters.h:168-183, ParseListener.cc:105-125
            return f'ParseException:Error parsing query, near "{near}"'
        return f"ParseException:{near}"  # restrictor arguments: ParseAdapters.h:586-589 (near is the text)


def _r(name: str, source: str, kind: str, message: str = "") -> tuple[str, Rule]:
    return name, Rule(name, source, kind, message)


_SCALAR_REFUSED = {  # ScalarFunctionNameAdapter::checkContext, ParseAdapters.h:2113-2139
    "ASCII": 2113, "CURDATE": 2114, "CURRENT_DATE": 2115, "CURRENT_TIME": 2117, "CURRENT_TIMESTAMP": 2119,
    "CURTIME": 2121, "DATE_ADD": 2122, "DATE_SUB": 2123, "IF": 2124, "INSERT": 2125, "LOCALTIME": 2126,
    "LOCALTIMESTAMP": 2127, "MID": 2129, "NOW": 2130, "REPLACE": 2131, "SUBSTR": 2132, "SUBSTRING": 2133,
    "SYSDATE": 2134, "TRIM": 2135, "UTC_DATE": 2136, "UTC_TIME": 2137, "UTC_TIMESTAMP": 2138,
}  # fmt: skip
_AGGREGATE_REFUSED = {  # AggregateWindowedFunctionAdapter::checkContext, ParseAdapters.h:2042-2053
    "BIT_AND": 2042, "BIT_OR": 2043, "BIT_XOR": 2044, "STD": 2045, "STDDEV": 2046, "STDDEV_POP": 2047,
    "STDDEV_SAMP": 2048, "VAR_POP": 2050, "VAR_SAMP": 2051, "VARIANCE": 2052,
}  # fmt: skip
_SELECT_SPEC = {  # SelectSpecAdapter::checkContext, ParseAdapters.h:1427-1443 (DISTINCT is allowed)
    "ALL": (1427, "ALL is not supported."),
    "DISTINCTROW": (1428, "DISTINCTROW is not supported."),
    "HIGH_PRIORITY": (1430, "HIGH_PRIORITY"),
    "STRAIGHT_JOIN": (1431, "STRAIGHT_JOIN is not supported."),
    "SQL_SMALL_RESULT": (1433, "SQL_SMALL_RESULT is not supported."),
    "SQL_BIG_RESULT": (1435, "SQL_BIG_RESULT is not supported."),
    "SQL_BUFFER_RESULT": (1437, "SQL_BUFFER_RESULT is not supported."),
    "SQL_CACHE": (1439, "SQL_CACHE"),
    "SQL_NO_CACHE": (1440, "SQL_NO_CACHE is not supported."),
    "SQL_CALC_FOUND_ROWS": (1442, "SQL_CALC_FOUND_ROWS is not supported."),
}
_SPECIFIC = {  # functionCall → specificFunction alternatives, all UNHANDLED (ParseListener.cc:695-710)
    "CAST": "DataTypeFunctionCall", "CONVERT": "DataTypeFunctionCall", "CASE": "CaseFunctionCall",
    "CHAR": "CharFunctionCall", "POSITION": "PositionFunctionCall", "VALUES": "ValuesFunctionCall",
    "EXTRACT": "ExtractFunctionCall", "WEIGHT_STRING": "WeightFunctionCall",
    "GET_FORMAT": "GetFormatFunctionCall",
}  # fmt: skip
_SPECIFIC_LINES = {
    "DataTypeFunctionCall": 701, "ValuesFunctionCall": 702, "CaseFunctionCall": 703, "CharFunctionCall": 704,
    "PositionFunctionCall": 705, "SubstrFunctionCall": 706, "TrimFunctionCall": 707,
    "WeightFunctionCall": 708, "ExtractFunctionCall": 709, "GetFormatFunctionCall": 710,
    "SimpleFunctionCall": 700,
}  # fmt: skip
_UNHANDLED = {  # grammar contexts the listener refuses (ParseListener.cc, UNHANDLED(...) at these lines)
    "ParenthesisSelect": 440, "UnionSelect": 441, "LockClause": 447, "TableSourceNested": 458,
    "SubqueryTableItem": 459, "IndexHint": 461, "StraightJoin": 464, "OuterJoin": 465,
    "SelectIntoVariables": 476, "BooleanLiteral": 670, "HexadecimalLiteral": 671,
    "PasswordFunctionCall": 699, "IsExpression": 720, "SoundsLikePredicate": 724,
    "SubqueryComparasionPredicate": 726, "RegexpPredicate": 730, "UnaryExpressionAtom": 731,
    "CollateExpressionAtom": 732, "SubqueryExpessionAtom": 733, "MysqlVariableExpressionAtom": 734,
    "NestedRowExpressionAtom": 736, "IntervalExpressionAtom": 738, "ExistsExpessionAtom": 739,
    "BinaryExpressionAtom": 741, **_SPECIFIC_LINES,
}  # fmt: skip

_CHILD = f"{LISTENER}:155-159 (pushAdapterStack: the parent adapter takes no such child)"
RULES: dict[str, Rule] = dict(
    [
        _r("syntax", f"{RUNNER}:56-66 (antlr4 error strategy), {RUNNER}:83-89 (lexer)", "syntax"),
        *(_r(ctx, f"{LISTENER}:{line} UNHANDLED({ctx})", "unhandled") for ctx, line in _UNHANDLED.items()),
        _r("with rollup", f"{ADAPTERS}:549 FromClauseAdapter", "not supported", "WITH is not supported"),
        _r("partition", f"{ADAPTERS}:710 AtomTableItemAdapter", "not supported",
           "PARTITION is not supported"),
        _r("variable assignment", f"{ADAPTERS}:901,1554 (ExpressionAtomPredicate, SelectExpressionElement)",
           "not supported", "LOCAL_ID is not supported"),
        _r("natural outer join", f"{ADAPTERS}:1398 NaturalJoinAdapter", "not supported",
           "OUTER join is not handled."),
        *(_r(f"select {word}", f"{ADAPTERS}:{line} SelectSpecAdapter", "not supported", message)
          for word, (line, message) in _SELECT_SPEC.items()),
        _r("order by function", f"{ADAPTERS}:1241 OrderByExpressionAdapter", "not supported",
           "qserv does not support functions in ORDER BY."),
        _r("group by ASC", f"{ADAPTERS}:1589 GroupByItemAdapter", "not supported", "ASC is not supported"),
        _r("group by DESC", f"{ADAPTERS}:1590 GroupByItemAdapter", "not supported", "DESC is not supported"),
        _r("offset", f"{ADAPTERS}:1618 LimitClauseAdapter", "not supported", "offset is not supported"),
        _r("aggregator", f"{ADAPTERS}:2035 AggregateWindowedFunctionAdapter (DISTINCT or ALL inside)",
           "not supported", "aggregator is not supported"),
        _r("separator", f"{ADAPTERS}:2038 AggregateWindowedFunctionAdapter", "not supported",
           "separator is not supported"),
        _r("functionArgs", f"{ADAPTERS}:2040 AggregateWindowedFunctionAdapter (GROUP_CONCAT)",
           "not supported", "functionArgs (plural) is not supported"),
        *(_r(name, f"{ADAPTERS}:{line} AggregateWindowedFunctionAdapter", "not supported",
             f"{name} is not supported") for name, line in _AGGREGATE_REFUSED.items()),
        *(_r(name, f"{ADAPTERS}:{line} ScalarFunctionNameAdapter", "not supported",
             f"{name} is not supported") for name, line in _SCALAR_REFUSED.items()),
        _r("escape", f"{ADAPTERS}:2519 LikePredicateAdapter", "not supported", "ESCAPE is not supported."),
        _r("underscore", f"{ADAPTERS}:1827 UidAdapter", "not supported",
           "Identifiers in Qserv may not start with an underscore."),
        _r("nested qserv function", f"{ADAPTERS}:2582 NestedExpressionAtomAdapter", "not supported",
           "Qserv functions may not appear in nested contexts."),
        _r("aggregate argument", f"{ADAPTERS}:2206-2213 FunctionArgAdapter (a column only); {_CHILD}",
           "assertion"),
        _r("no arguments", f"{ADAPTERS}:1960-1961 ScalarFunctionCallAdapter, 2000 UdfFunctionCallAdapter",
           "assertion"),
        _r("xor", f"{ADAPTERS}:2848 LogicalOperatorAdapter (AND and OR only)", "assertion"),
        _r("having logic", f"{ADAPTERS}:514-517 FromClauseAdapter (HAVING is one predicate)", "assertion"),
        _r("not value", f"{ADAPTERS}:2243 NotExpressionAdapter", "assertion"),
        _r("bit operand", f"{ADAPTERS}:2755-2760 BitExpressionAtomAdapter (columns, constants); {_CHILD}",
           "assertion"),
        _r("boolean operand", f"{ADAPTERS}:1075 BinaryComparasionPredicateAdapter", "assertion"),
        _r("in subquery", f"{_CHILD}, a SimpleSelect under an InPredicate", "assertion"),
        _r("restrictor placement", f"{_CHILD}, a restrictor under NOT", "assertion"),
        _r("nested list", f"{ADAPTERS}:2565 NestedExpressionAtomAdapter (one expression)", "assertion"),
        _r("restrictor", f"{ADAPTERS}:560-590 FromClauseAdapter::_addQservRestrictor; src/query/"
           "AreaRestrictor.cc:59,78,283", "restrictor"),
    ]
)  # fmt: skip


class ParseRefusal(Exception):
    """Qserv's parser refuses the statement: ``rule`` (a key of :data:`RULES`) near ``near``."""

    def __init__(self, rule: str, near: str):
        self.rule = RULES[rule]
        self.near = near
        super().__init__(self.text)

    @property
    def text(self) -> str:
        return self.rule.error(self.near)

    def as_error(self) -> QservError:
        return czar_refused(self.text, self.rule.name)


@dataclass
class Parsed:
    """A SELECT the czar accepts: the statement text, its sqlglot tree and its tokens."""

    text: str
    tree: exp.Select
    tokens: list[Token]
    restrictors: list[AreaRestrictor] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._at_start = {t.start: i for i, t in enumerate(self.tokens)}
        self._at_end = {t.end: i for i, t in enumerate(self.tokens)}

    # -- where things are in the text (what Qserv quotes as "near")
    def token_range(self, node: exp.Expr) -> tuple[int, int] | None:
        """First and last token index of ``node``'s text, with its parentheses and keywords."""
        spots = [(n.meta["start"], n.meta["end"]) for n in node.walk() if n._meta and "start" in n._meta]
        if not spots:
            return None
        first = self._at_start.get(min(s for s, _ in spots))
        last = self._at_end.get(max(e for _, e in spots))
        if first is None or last is None:
            return None
        own = node._meta and "start" in node._meta
        if isinstance(node, exp.Case):
            first = self._back_to(first, TokenType.CASE)
            last = self._forward_to_end(last)
        elif isinstance(node, exp.Collate):
            if last + 2 < len(self.tokens) and self.tokens[last + 1].token_type == TokenType.COLLATE:
                last += 2
        elif isinstance(node, exp.Is):
            while last + 1 < len(self.tokens) and self.tokens[last + 1].token_type in _IS_WORDS:
                last += 1
        elif isinstance(node, exp.Join):
            while first > 0 and self.tokens[first - 1].token_type in _JOIN_WORDS:
                first -= 1
        elif isinstance(node, exp.Exists):
            first = self._back_to(first, TokenType.EXISTS)
        elif isinstance(node, exp.Select) or (
            isinstance(node, exp.Subquery) and isinstance(node.this, exp.Select)
        ):
            first = self._back_to(first, TokenType.SELECT)
        elif isinstance(node, exp.Func) and not own:
            first = self._back_over_call(first, last)
        first = self._back_over_prefix(node, first)
        if isinstance(node, (exp.Paren, exp.Subquery, exp.Tuple)) and first > 0:
            if self.tokens[first - 1].token_type == TokenType.L_PAREN:
                first -= 1
        first, last = self._balance(first, last)
        if isinstance(node, exp.Ordered) and last + 1 < len(self.tokens):
            if self.tokens[last + 1].token_type in (TokenType.ASC, TokenType.DESC):
                last += 1
        return first, last

    def near(self, node: exp.Expr) -> str:
        """The statement's text of ``node`` (as Qserv's ``getQueryString(ctx)`` gives it)."""
        found = self.token_range(node)
        if found is None:
            return node.sql(dialect="mysql")
        return self.text[self.tokens[found[0]].start : self.tokens[found[1]].end + 1]

    def between(self, first: int, last: int) -> str:
        return self.text[self.tokens[first].start : self.tokens[last].end + 1]

    def first_token(self, node: exp.Expr) -> Token | None:
        found = self.token_range(node)
        return None if found is None else self.tokens[found[0]]

    def _back_over_prefix(self, node: exp.Expr, first: int) -> int:
        """Operators written before their operand: ``-x``, ``~x``, ``NOT x``, ``BINARY x``, ``@v := x``."""
        before = self.tokens[first - 1].token_type if first > 0 else None
        if isinstance(node, exp.Neg) and before == TokenType.DASH:
            return first - 1
        if isinstance(node, exp.BitwiseNot) and before == TokenType.TILDE:
            return first - 1
        if isinstance(node, exp.Not) and before == TokenType.NOT:
            return first - 1
        if isinstance(node, exp.Cast) and before == TokenType.BINARY:
            return first - 1
        if isinstance(node, exp.PropertyEQ) and before == TokenType.COLON_EQ:
            kinds = [t.token_type for t in self.tokens[max(0, first - 3) : first - 1]]
            return first - 1 - len(kinds) if kinds == [TokenType.PARAMETER, TokenType.VAR] else first - 1
        return first

    def _back_to(self, index: int, kind: TokenType) -> int:
        while index > 0 and self.tokens[index].token_type != kind:
            index -= 1
        return index

    def _forward_to_end(self, index: int) -> int:
        depth = 0
        for i in range(index, len(self.tokens)):
            kind = self.tokens[i].token_type
            if kind == TokenType.CASE:
                depth += 1
            elif kind == TokenType.END:
                if depth == 0:
                    return i
                depth -= 1
        return index

    def _back_over_call(self, first: int, last: int) -> int:
        """A keyword function (CAST, TRIM…) has no position of its own: take in ``NAME(`` before it."""
        i = first - 1
        while i > 0:
            if self.tokens[i].token_type == TokenType.L_PAREN and self._close(i) >= last:
                return i - 1
            i -= 1
        return first

    def _close(self, open_index: int) -> int:
        depth = 0
        for i in range(open_index, len(self.tokens)):
            kind = self.tokens[i].token_type
            depth += kind == TokenType.L_PAREN
            depth -= kind == TokenType.R_PAREN
            if depth == 0:
                return i
        return len(self.tokens) - 1

    def _balance(self, first: int, last: int) -> tuple[int, int]:
        depth = 0
        for i in range(first, last + 1):
            kind = self.tokens[i].token_type
            depth += kind == TokenType.L_PAREN
            depth -= kind == TokenType.R_PAREN
        while depth > 0 and last + 1 < len(self.tokens):
            last += 1
            depth -= self.tokens[last].token_type == TokenType.R_PAREN
            depth += self.tokens[last].token_type == TokenType.L_PAREN
        while depth < 0 and first > 0:
            first -= 1
            depth += self.tokens[first].token_type == TokenType.L_PAREN
            depth -= self.tokens[first].token_type == TokenType.R_PAREN
        return first, last


_JOIN_WORDS = {
    TokenType.JOIN, TokenType.LEFT, TokenType.RIGHT, TokenType.OUTER, TokenType.INNER, TokenType.CROSS,
    TokenType.NATURAL, TokenType.STRAIGHT_JOIN, TokenType.FULL,
}  # fmt: skip
_IS_WORDS = {TokenType.IS, TokenType.NOT, TokenType.TRUE, TokenType.FALSE, TokenType.NULL, TokenType.UNKNOWN}
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ)
_PREDICATES = (exp.And, exp.Or, exp.Xor, exp.Not, *_COMPARISONS, exp.In, exp.Between, exp.Like, exp.Is)
_BITWISE = (exp.BitwiseAnd, exp.BitwiseOr, exp.BitwiseXor, exp.BitwiseLeftShift, exp.BitwiseRightShift)
_QSERV_AGGREGATES = (exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max)


def parse_select(text: str) -> Parsed:
    """Parse a statement the czar classified as SELECT and apply the parser's rules; the result is the
    accepted statement, a refusal raises :class:`ParseRefusal`."""
    try:
        tokens = MySQL().tokenize(text)
    except TokenError:
        raise ParseRefusal("syntax", text) from None
    if any(t.token_type in (TokenType.PLACEHOLDER, TokenType.COLON) for t in tokens):
        raise ParseRefusal("syntax", text)  # ':name' and '?' are not in Qserv's lexer
    _check_group_by_order(text, tokens)
    _check_select_spec(tokens)
    _check_assignments(text, tokens)
    try:
        trees = sqlglot.parse(text, read="mysql")
    except Exception:  # noqa: BLE001 - ParseError, or a sqlglot bug on odd input: not Qserv's SQL either way
        _check_function_words(Parsed(text, exp.Select(), tokens), lambda *a: _raise_first(*a))
        raise ParseRefusal("syntax", text) from None
    trees = [t for t in trees if t is not None]
    if len(trees) != 1:
        raise ParseRefusal("syntax", text)
    tree = trees[0]
    if isinstance(tree, exp.SetOperation):
        raise ParseRefusal("UnionSelect", text.rstrip("; "))
    if isinstance(tree, exp.Subquery):
        raise ParseRefusal("ParenthesisSelect", text.rstrip("; "))
    if not isinstance(tree, exp.Select):
        raise ParseRefusal("syntax", text)
    parsed = Parsed(text, tree, tokens)
    found = _violations(parsed)
    if found:
        _, _, rule, near = min(found, key=lambda v: (v[0], v[1]))
        raise ParseRefusal(rule, near)
    return parsed


def _check_group_by_order(text: str, tokens: list[Token]) -> None:
    """``GROUP BY x ASC`` (which sqlglot does not parse): GroupByItemAdapter refuses ASC and DESC."""
    for i, token in enumerate(tokens):
        if token.token_type != TokenType.GROUP_BY:
            continue
        item_start, depth = i + 1, 0
        for j in range(i + 1, len(tokens)):
            kind = tokens[j].token_type
            depth += kind == TokenType.L_PAREN
            depth -= kind == TokenType.R_PAREN
            if depth < 0 or (depth == 0 and kind in _GROUP_BY_END):
                break
            if depth == 0 and kind == TokenType.COMMA:
                item_start = j + 1
            elif depth == 0 and kind in (TokenType.ASC, TokenType.DESC) and item_start < j:
                near = text[tokens[item_start].start : tokens[j].end + 1]
                raise ParseRefusal("group by ASC" if kind == TokenType.ASC else "group by DESC", near)


def _check_select_spec(tokens: list[Token]) -> None:
    """The keywords between SELECT and the select list (SelectSpecAdapter; sqlglot drops or misreads
    several of them)."""
    for token in tokens[1:]:
        word = token.text.upper()
        if word == "DISTINCT":
            continue
        if word not in _SELECT_SPEC:
            return
        raise ParseRefusal(f"select {word}", token.text)


def _check_assignments(text: str, tokens: list[Token]) -> None:
    """``@v := value`` anywhere (ExpressionAtomPredicate and SelectExpressionElement refuse LOCAL_ID)."""
    kinds = [t.token_type for t in tokens]
    for i in range(len(tokens) - 3):
        if kinds[i : i + 3] == [TokenType.PARAMETER, TokenType.VAR, TokenType.COLON_EQ]:
            raise ParseRefusal("variable assignment", text[tokens[i].start : tokens[i + 3].end + 1])


_GROUP_BY_END = {
    TokenType.HAVING, TokenType.ORDER_BY, TokenType.LIMIT, TokenType.WITH, TokenType.SEMICOLON,
    TokenType.ROLLUP, TokenType.FOR, TokenType.LOCK,
}  # fmt: skip

Violation = tuple[int, int, str, str]  # (position, depth, rule, near)
_AT_EXIT = {
    "order by function",
    "no arguments",
    "having logic",
    "boolean operand",
    "not value",
    "nested list",
}


def _violations(p: Parsed) -> list[Violation]:
    found: list[Violation] = []

    def add(node: exp.Expr | None, rule: str, near: str | None = None, position: int | None = None):
        """Record a violation where Qserv's walk meets it: at the construct's start, or at its end for
        the checks an adapter makes when a child is done (_AT_EXIT)."""
        span = p.token_range(node) if node is not None else None
        if position is None and span is not None:
            position = p.tokens[span[1]].end if rule in _AT_EXIT else p.tokens[span[0]].start
        depth = node.depth if node is not None else 0
        if RULES[rule].kind == "unhandled":
            depth -= 1  # the listener refuses an UNHANDLED context before any adapter sees it
        text = near if near is not None else (p.near(node) if node is not None else "")
        found.append((position or 0, depth, rule, text))

    for node in p.tree.walk():
        _node_rules(p, node, add)
    return found


def _unwrap(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _is_constant(node: exp.Expr) -> bool:
    """Qserv's ``constant`` (QSMySqlParser.g4:20-26): a literal, NULL, or a minus before a number."""
    if isinstance(node, exp.Neg):
        return isinstance(node.this, exp.Literal) and not node.this.is_string
    return isinstance(node, (exp.Literal, exp.Null, exp.BitString))


def _name_token(p: Parsed, node: exp.Expr) -> str:
    token = p.first_token(node)
    return token.text.upper() if token is not None else ""


def _node_rules(p: Parsed, node: exp.Expr, add) -> None:  # noqa: C901 - one branch per construct
    parent = node.parent
    if isinstance(node, exp.Select):
        if node is p.tree:
            _statement_rules(p, node, add)
        return  # a nested SELECT is refused where it sits (subquery rules below)
    if isinstance(node, exp.Subquery):
        if isinstance(parent, (exp.From, exp.Join)):
            add(node, "SubqueryTableItem" if isinstance(node.this, exp.Query) else "TableSourceNested")
        elif not isinstance(parent, (exp.In, exp.All, exp.Any, exp.Exists)):
            add(node, "SubqueryExpessionAtom")
    elif isinstance(node, exp.In) and node.args.get("query") is not None:
        inner = node.args["query"]
        add(node, "in subquery", p.near(inner.this if isinstance(inner, exp.Subquery) else inner))
    elif isinstance(node, exp.Exists):
        add(node, "ExistsExpessionAtom")
    elif isinstance(node, (exp.All, exp.Any)) and parent is not None:
        add(parent, "SubqueryComparasionPredicate")
    elif isinstance(node, exp.Join):
        _join_rules(p, node, add)
    elif isinstance(node, exp.Table):
        if node.args.get("partition") is not None:
            add(node, "partition")
        for hint in node.args.get("hints") or []:
            add(hint, "IndexHint", hint.sql(dialect="mysql"), _keyword_position(p, hint, None))
    elif isinstance(node, exp.Identifier):
        if node.name.startswith("_") and not isinstance(parent, exp.Var):
            add(node, "underscore")
    elif isinstance(node, exp.Xor):
        token = _operator_token(p, node, TokenType.XOR)
        add(node, "xor", token.text if token else "XOR", token.start if token else None)
    elif isinstance(node, exp.RegexpLike):
        add(node, "RegexpPredicate")
    elif isinstance(node, exp.Collate):
        add(node, "CollateExpressionAtom")
    elif isinstance(node, exp.Escape):
        add(node, "escape")
    elif isinstance(node, exp.Neg):
        if not (isinstance(node.this, exp.Literal) and not node.this.is_string):
            add(node, "UnaryExpressionAtom")
    elif isinstance(node, exp.BitwiseNot):
        add(node, "UnaryExpressionAtom")
    elif isinstance(node, exp.Not):
        inner = _unwrap(node.this)
        if not isinstance(inner, _PREDICATES) and not _is_areaspec(inner):
            add(node, "not value")
    elif isinstance(node, exp.Interval):
        add(node, "IntervalExpressionAtom", _interval_text(p, node))
    elif isinstance(node, (exp.Parameter, exp.SessionParameter)):
        if not isinstance(parent, exp.PropertyEQ):
            at = "@@" if isinstance(node, exp.SessionParameter) else "@"
            add(node, "MysqlVariableExpressionAtom", at + node.name, _token_position(p, at, node.name))
    elif isinstance(node, exp.PropertyEQ):
        add(node.parent if isinstance(parent, exp.Alias) else node, "variable assignment")
    elif isinstance(node, exp.Is):
        if isinstance(node.expression, exp.Boolean):
            add(node, "IsExpression")
    elif isinstance(node, exp.Boolean):
        if not isinstance(parent, exp.Is):
            word = "TRUE" if node.this else "FALSE"
            add(node, "BooleanLiteral", word, _token_position(p, word))
    elif isinstance(node, exp.HexString):
        add(node, "HexadecimalLiteral")
    elif isinstance(node, exp.Tuple):
        if not (isinstance(parent, exp.In) and node.arg_key == "expressions"):
            add(node, "nested list")
    elif isinstance(node, _BITWISE):
        for side in (node.this, node.expression):
            if not (isinstance(side, exp.Column) or _is_constant(side)):
                add(side, "bit operand")
    elif isinstance(node, _COMPARISONS):
        _comparison_rules(p, node, add)
    elif isinstance(node, exp.Ordered):
        if _is_call(node.this) and not isinstance(node.this, exp.AggFunc):
            add(node, "order by function")
    elif isinstance(node, exp.Window):
        add(node, "syntax", p.text)
    elif isinstance(node, exp.Star) and isinstance(parent, exp.Column) and len(parent.parts) > 2:
        add(parent, "nested list")
    elif isinstance(node, exp.AggFunc) and not isinstance(node, exp.Anonymous):
        _aggregate_rules(p, node, add)
    elif _is_call(node):
        _function_rules(p, node, add)


def _statement_rules(p: Parsed, select: exp.Select, add) -> None:
    """Clauses of the statement itself: INTO, locking, ROLLUP, HAVING, OFFSET, bare function keywords."""
    if select.args.get("into"):
        into = select.args["into"]
        add(into, "SelectIntoVariables", _keyword_text(p, TokenType.INTO, TokenType.FROM))
    for lock in select.args.get("locks") or []:
        word = TokenType.LOCK if any(t.token_type == TokenType.LOCK for t in p.tokens) else TokenType.FOR
        add(lock, "LockClause", _keyword_text(p, word, None))
    group = select.args.get("group")
    if group is not None and group.args.get("rollup"):
        add(group, "with rollup", _from_clause_text(p), _from_position(p))
    having = select.args.get("having")
    if having is not None and isinstance(having.this, (exp.And, exp.Or, exp.Xor)):
        add(having, "having logic", _from_clause_text(p))
    if select.args.get("offset") is not None:
        add(select.args["offset"], "offset", _limit_text(p), _limit_position(p))
    _check_function_words(p, add)


def _raise_first(node, rule: str, near: str | None = None, position: int | None = None) -> None:
    raise ParseRefusal(rule, near or "")


def _check_function_words(p: Parsed, add) -> None:
    """Function names refused by name, found on the tokens (sqlglot folds several into nodes without a
    position, and fails on some): ScalarFunctionNameAdapter's list, and the bare ``CURRENT_DATE``…
    (simpleFunctionCall), and calls without arguments."""
    for i, token in enumerate(p.tokens):
        word = token.text.upper()
        called = i + 1 < len(p.tokens) and p.tokens[i + 1].token_type == TokenType.L_PAREN
        if word in _BARE_FUNCTIONS and not called:
            add(None, "SimpleFunctionCall", token.text, token.start)
        elif (
            called
            and word in _SCALAR_REFUSED
            and not (word in _FROM_FORMS and _has_from(p, (i, p._close(i + 1))))
        ):
            add(None, word, token.text, token.start)
        elif called and i + 2 < len(p.tokens) and p.tokens[i + 2].token_type == TokenType.R_PAREN:
            if token.token_type not in (TokenType.IN, TokenType.VALUES) and not word.startswith("QSERV_"):
                add(None, "no arguments", p.between(i, i + 2), token.start)


_FROM_FORMS = {"TRIM", "SUBSTR", "SUBSTRING"}  # with FROM inside they are specificFunction forms
_BARE_FUNCTIONS = {"CURRENT_DATE", "CURRENT_TIME", "CURRENT_TIMESTAMP", "CURRENT_USER", "LOCALTIME"}


def _token_position(p: Parsed, *texts: str) -> int | None:
    """Where the first token run spelling ``texts`` starts (for nodes sqlglot keeps no position of)."""
    for i in range(len(p.tokens) - len(texts) + 1):
        if all(p.tokens[i + j].text.upper() == t.upper() for j, t in enumerate(texts)):
            return p.tokens[i].start
    return None


def _is_call(node: exp.Expr) -> TypeGuard[exp.Func]:
    """A function written as NAME(…) (sqlglot also models operators such as AND or COLLATE as functions)."""
    if not isinstance(node, exp.Func):
        return False
    return not isinstance(node, (exp.Binary, exp.Connector)) or isinstance(node, exp.Pow)


def _comparison_rules(p: Parsed, node: exp.Expr, add) -> None:
    if _is_restrictor_comparison(node):
        return
    for side in (node.this, node.expression):
        if isinstance(_unwrap(side), _PREDICATES):
            add(node, "boolean operand")
            return
    if isinstance(node.this, exp.Soundex) and isinstance(node.expression, exp.Soundex):
        if _name_token(p, node.this) != "SOUNDEX":
            add(node, "SoundsLikePredicate")


def _join_rules(p: Parsed, join: exp.Join, add) -> None:
    side = (join.args.get("side") or "").upper()
    kind = (join.args.get("kind") or "").upper()
    method = (join.args.get("method") or "").upper()
    if kind == "STRAIGHT_JOIN":
        add(join, "StraightJoin")
    elif method == "NATURAL":
        if kind == "OUTER":
            add(join, "natural outer join")
    elif side == "FULL":
        add(join, "syntax", p.text)
    elif side in ("LEFT", "RIGHT"):
        add(join, "OuterJoin")


def _aggregate_rules(p: Parsed, node: exp.AggFunc, add) -> None:
    spelling = _name_token(p, node)
    arg = node.this
    opened = p.token_range(node)
    after_paren = p.tokens[opened[0] + 2] if opened and opened[0] + 2 < len(p.tokens) else None
    has_all = after_paren is not None and after_paren.token_type == TokenType.ALL
    if isinstance(arg, exp.Distinct) or has_all:
        add(node, "aggregator")
    elif isinstance(node, exp.GroupConcat):
        add(node, "separator" if node.args.get("separator") is not None else "functionArgs")
    elif spelling in _AGGREGATE_REFUSED:
        add(node, spelling)
    elif isinstance(node, _QSERV_AGGREGATES):
        if isinstance(node, exp.Count) and isinstance(arg, exp.Star):
            return
        if not isinstance(arg, exp.Column) or isinstance(arg.this, exp.Star):
            add(arg, "aggregate argument")
    else:
        _function_rules(p, node, add)  # any other sqlglot aggregate is a plain function call for Qserv


def _function_rules(p: Parsed, node: exp.Func, add) -> None:
    name = node.name if isinstance(node, exp.Anonymous) else ""
    if isinstance(node, exp.Anonymous) and (name.lower() in AREASPEC or name.lower() == AREASPEC_HULL):
        _areaspec_placement(p, node, add)
        return
    if name.startswith("_"):
        add(node, "underscore", name)
        return
    spelling = _name_token(p, node)
    opened = p.token_range(node)
    if name.upper() == "ROW":
        add(node, "NestedRowExpressionAtom")
    elif isinstance(node, exp.Cast) and spelling == "BINARY":
        add(node, "BinaryExpressionAtom")
    elif spelling in _SPECIFIC or isinstance(node, exp.Case):
        add(node, _SPECIFIC.get(spelling, "CaseFunctionCall"))
    elif spelling in ("TRIM", "SUBSTRING", "SUBSTR") and _has_from(p, opened):
        add(node, "TrimFunctionCall" if spelling == "TRIM" else "SubstrFunctionCall")
    elif spelling == "PASSWORD":
        add(node, "PasswordFunctionCall")


def _has_from(p: Parsed, opened: tuple[int, int] | None) -> bool:
    if opened is None:
        return False
    return any(t.token_type == TokenType.FROM for t in p.tokens[opened[0] : opened[1] + 1])


def _is_areaspec(node: exp.Expr) -> bool:
    return isinstance(node, exp.Anonymous) and node.name.lower() in (*AREASPEC, AREASPEC_HULL)


def _is_restrictor_comparison(node: exp.Expr) -> bool:
    """``1 = qserv_areaspec_…(…)`` and ``qserv_areaspec_…(…) = 1`` (QSMySqlParser.g4:34-36)."""
    if not isinstance(node, exp.EQ):
        return False
    a, b = node.this, node.expression
    if _is_areaspec(b):
        a, b = b, a
    return _is_areaspec(a) and isinstance(b, exp.Literal) and not b.is_string and b.name.isdigit()


def _areaspec_placement(p: Parsed, node: exp.Anonymous, add) -> None:
    """A restrictor must be a top-level term of WHERE's AND/OR chain (QSMySqlParser.g4:30-37): inside
    parentheses the nested-context rule refuses it, anywhere else the grammar has no place for it."""
    holder: exp.Expr = node
    if node.parent is not None and _is_restrictor_comparison(node.parent):
        holder = node.parent
    up = holder.parent
    while isinstance(up, (exp.And, exp.Or)):
        up = up.parent
    if isinstance(up, exp.Where):
        if not all(_is_constant(arg) for arg in node.expressions):
            add(node, "syntax", p.text)  # qservFunctionSpec takes constants only (QSMySqlParser.g4:39-43)
            return
        try:
            p.restrictors.append(
                restrictor(node.name, [p.near(arg).replace(" ", "") for arg in node.expressions])
            )
        except ValueError as exc:
            add(node, "restrictor", str(exc))
        return
    if isinstance(up, exp.Paren) and up.find_ancestor(exp.Where) is not None:
        add(up, "nested qserv function")
        return
    if isinstance(up, exp.Not):
        add(holder, "restrictor placement")
        return
    add(node, "syntax", p.text)


def _keyword_text(p: Parsed, first: TokenType, stop: TokenType | None) -> str:
    """From the first ``first`` token up to (not including) the next ``stop`` token, or the end."""
    start = next((i for i, t in enumerate(p.tokens) if t.token_type == first), 0)
    end = len(p.tokens) - 1
    for i in range(start + 1, len(p.tokens)):
        if p.tokens[i].token_type in (stop, TokenType.SEMICOLON):
            end = i - 1
            break
    return p.between(start, end)


def _interval_text(p: Parsed, node: exp.Interval) -> str:
    """``INTERVAL expr unit``: sqlglot keeps no position for it; take the INTERVAL token and two more."""
    for i, token in enumerate(p.tokens):
        if token.token_type == TokenType.INTERVAL and i + 2 < len(p.tokens):
            return p.between(i, i + 2)
    return node.sql(dialect="mysql")


def _operator_token(p: Parsed, node: exp.Binary, kind: TokenType) -> Token | None:
    left = p.token_range(node.this)
    right = p.token_range(node.expression)
    if left is None or right is None:
        return None
    for token in p.tokens[left[1] + 1 : right[0]]:
        if token.token_type == kind:
            return token
    return None


def _keyword_position(p: Parsed, node: exp.Expr, kind: TokenType | None) -> int | None:
    found = p.token_range(node)
    if found is not None:
        return p.tokens[found[0]].start
    for token in p.tokens:
        if kind is not None and token.token_type == kind:
            return token.start
    return None


def _from_position(p: Parsed) -> int:
    for token in p.tokens:
        if token.token_type == TokenType.FROM:
            return token.start
    return 0


def _from_clause_text(p: Parsed) -> str:
    """fromClause: FROM … [WHERE …] [GROUP BY … [WITH ROLLUP]] [HAVING …] (MySqlParser.g4 fromClause)."""
    start = next((i for i, t in enumerate(p.tokens) if t.token_type == TokenType.FROM), 0)
    end = len(p.tokens) - 1
    depth = 0
    for i in range(start, len(p.tokens)):
        kind = p.tokens[i].token_type
        depth += kind == TokenType.L_PAREN
        depth -= kind == TokenType.R_PAREN
        if depth == 0 and kind in (TokenType.ORDER_BY, TokenType.LIMIT, TokenType.SEMICOLON, TokenType.FOR):
            end = i - 1
            break
    return p.between(start, end)


def _limit_bounds(p: Parsed) -> tuple[int, int]:
    start = max((i for i, t in enumerate(p.tokens) if t.token_type == TokenType.LIMIT), default=0)
    end = start
    for i in range(start + 1, len(p.tokens)):
        if p.tokens[i].token_type in (TokenType.NUMBER, TokenType.COMMA, TokenType.OFFSET):
            end = i
        else:
            break
    return start, end


def _limit_text(p: Parsed) -> str:
    return p.between(*_limit_bounds(p))


def _limit_position(p: Parsed) -> int:
    return p.tokens[_limit_bounds(p)[0]].start
