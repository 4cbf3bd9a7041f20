"""Qserv's spatial restrictors (``qserv_areaspec_box/circle/ellipse/poly``): their shapes, arguments and
the scisql predicate each becomes (``src/query/AreaRestrictor.cc``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AreaRestrictor:
    """A ``qserv_areaspec_*`` spatial restrictor: its shape and its arguments (as written, and as numbers)."""

    shape: str  # "box" | "circle" | "ellipse" | "poly"
    texts: tuple[str, ...]
    values: tuple[float, ...]

    @property
    def scisql(self) -> str:
        """The scisql predicate Qserv puts in its place (AreaRestrictor.cc asSciSqlFactor)."""
        return {
            "box": "scisql_s2PtInBox",
            "circle": "scisql_s2PtInCircle",
            "ellipse": "scisql_s2PtInEllipse",
            "poly": "scisql_s2PtInCPoly",
        }[self.shape]


_RESTRICTOR_ARITY = {"box": ("AreaRestrictorBox", 4), "circle": ("AreaRestrictorCircle", 3),
                     "ellipse": ("AreaRestrictorEllipse", 5)}  # fmt: skip


def restrictor(function: str, texts: list[str]) -> AreaRestrictor:
    """Build a restrictor as FromClauseAdapter::_addQservRestrictor does (ParseAdapters.h:567-590); a bad
    argument list raises ValueError with AreaRestrictor.cc's message (its ``requires 4 parameters`` is
    hard-coded for every shape, src/query/AreaRestrictor.cc:78)."""
    shape = function.lower().removeprefix("qserv_areaspec_")
    if shape not in ("box", "circle", "ellipse", "poly"):
        raise ValueError(f"Unhandled restrictor function: {function}")
    if shape in _RESTRICTOR_ARITY:
        name, count = _RESTRICTOR_ARITY[shape]
        if len(texts) != count:
            raise ValueError(f"{name} requires 4 parameters.")
    values = []
    for text in texts:  # convertVec, AreaRestrictor.cc:52-62
        try:
            values.append(float(text))
        except ValueError:
            raise ValueError(f"The argument {text} must be convertable to a number.") from None
    if shape == "poly" and len(texts) % 2:
        raise ValueError("AreaRestrictorPoly requires an even number of arguments.")
    return AreaRestrictor(shape, tuple(texts), tuple(values))


AREASPEC = ("qserv_areaspec_box", "qserv_areaspec_circle", "qserv_areaspec_ellipse", "qserv_areaspec_poly")
AREASPEC_HULL = "qserv_areaspec_hull"  # a lexer token with no restrictor behind it (ParseAdapters.h:586)
