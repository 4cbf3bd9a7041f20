"""Qserv's CSV dialect of a contribution (§4.6 of the ingest contract), shared by the encoder and the client.

Values are in Qserv's escaped notation: ``fields_terminated_by="\\\\t"`` is the two characters backslash
and ``t``, exactly the string sent with a contribution, which the worker pastes into its ``LOAD DATA``.
Only the values Qserv accepts can be built.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

#: The values a Qserv worker accepts for each field (anything else is refused).
ALLOWED = {
    "fields_terminated_by": ("\\t", ","),
    "fields_enclosed_by": ("\\0", "'", '"'),
    "fields_escaped_by": ("\\\\",),
    "lines_terminated_by": ("\\n",),
}


@dataclass(frozen=True)
class Dialect:
    """The four dialect fields of a contribution; the defaults are Qserv's (tab, no enclosure, backslash)."""

    fields_terminated_by: str = "\\t"
    fields_enclosed_by: str = "\\0"
    fields_escaped_by: str = "\\\\"
    lines_terminated_by: str = "\\n"

    def __post_init__(self) -> None:
        for name, allowed in ALLOWED.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(
                    f"{name}={value!r} is not accepted by Qserv; allowed (escaped notation): "
                    + ", ".join(repr(a) for a in allowed)
                )

    def form_fields(self) -> dict[str, str]:
        """The dialect as the contribution's form/JSON fields."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def sql_options(self) -> str:
        """The ``FIELDS … LINES …`` clause a worker builds from these values (no ENCLOSED BY for ``\\0``)."""
        enclosed = "" if self.fields_enclosed_by == "\\0" else f" ENCLOSED BY '{self.fields_enclosed_by}'"
        return (
            f"FIELDS TERMINATED BY '{self.fields_terminated_by}'{enclosed} "
            f"ESCAPED BY '{self.fields_escaped_by}' LINES TERMINATED BY '{self.lines_terminated_by}'"
        )


#: Qserv's default dialect: the one `qdask.tsv` writes and the loader declares.
TSV = Dialect()
#: Comma-separated, for by-reference files that use it.
CSV = Dialect(fields_terminated_by=",")
