"""The dialect of a text input file, in the terms of MariaDB's ``LOAD DATA``, and its one validation.

A `TextDialect` says how the bytes of a CSV/TSV file become fields, exactly as ``LOAD DATA INFILE … CHARACTER
SET c FIELDS TERMINATED BY f [OPTIONALLY] ENCLOSED BY q ESCAPED BY e LINES STARTING BY s TERMINATED BY l
IGNORE n LINES`` reads them (the semantics are MariaDB's, `sql/sql_load.cc`; `qdask.sources.text` reads
them, and the tests compare every dialect with a real MariaDB):

* a field ends at the field terminator, a record at the line terminator (the line terminator wins where
  both could start); a field whose first byte is the enclosure character is enclosed: terminators inside
  it are data, a doubled enclosure character is one, and it ends at an enclosure character followed by a
  terminator (any other enclosure character inside is data). ``OPTIONALLY`` changes nothing on input;
* the escape character (none when ``ESCAPED BY ''``) makes the next byte data: ``\\0 \\b \\n \\r \\t \\Z``
  are NUL, backspace, LF, CR, TAB and 0x1A, and any other ``\\x`` is ``x`` (so an escaped delimiter,
  enclosure or newline is data). When the escape and enclosure characters are the same, only a doubled one
  is an escape;
* a field that is exactly ``\\N`` (escape + N), enclosed or not, is NULL, and with an enclosure character
  so is an unenclosed ``NULL``. An empty field is the empty string, never NULL;
* ``LINES STARTING BY`` skips everything before the prefix on each line (lines without it are skipped);
  ``IGNORE n LINES`` skips n line terminators (escapes honoured, enclosures not), as MariaDB does.

Two keys are qdask's own: `header` (the first line names the columns; it is checked against the schema and
skipped) and `null` (more spellings of NULL for an unenclosed field without escapes, e.g. ``""`` for files
whose empty fields mean NULL; MariaDB would need ``SET col = NULLIF(@v, '')`` for them).

Characters are held decoded (a tab is ``"\\t"``, one character). The config writes them as inside the
quotes of a ``LOAD DATA`` statement (`from_sql_string`: ``'\\t'`` is a tab, ``'\\\\'`` one backslash), so a
dialect can be copied from a ``LOAD DATA`` statement or from Qserv's ingest JSON as it stands.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = [
    "CHARSETS",
    "ESCAPE_SEQUENCES",
    "FORMAT_PRESETS",
    "MARIADB_LATIN1",
    "PRESETS",
    "TextDialect",
    "from_sql_string",
    "to_sql_string",
]

#: The input charsets, as MariaDB names them (utf8 and utf8mb3 are the same: UTF-8 within the BMP).
CHARSETS = ("utf8mb4", "utf8mb3", "utf8", "latin1", "ascii")


def _mariadb_latin1() -> str:
    """MariaDB's latin1, byte by byte: Windows-1252, with the five bytes cp1252 leaves undefined (0x81, 0x8D,
    0x8F, 0x90, 0x9D) kept as the C1 controls of the same value."""
    return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in range(256))


#: The character of each byte in MariaDB's latin1 (a `codecs.charmap_decode` table).
MARIADB_LATIN1 = _mariadb_latin1()

#: The characters the escape character turns into something else (``\\N`` is NULL, and stays N in data).
ESCAPE_SEQUENCES = {"0": "\x00", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}

_SQL_ESCAPES = {**ESCAPE_SEQUENCES, "\\": "\\", "'": "'", '"': '"'}
_SQL_WRITE = {v: "\\" + k for k, v in _SQL_ESCAPES.items() if k not in "'\""}


def from_sql_string(text: str) -> str:
    """The characters a MariaDB string literal's body stands for: ``\\t`` is a tab, ``\\\\`` a backslash,
    any other ``\\x`` is ``x``; a lone trailing backslash is itself (so ``"\\\\"`` in YAML works too)."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append(_SQL_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def to_sql_string(chars: str) -> str:
    """`chars` in the notation of a MariaDB string literal's body (`from_sql_string` reads it back): control
    characters and the backslash escaped, quotes as they are."""
    return "".join(_SQL_WRITE.get(ch, ch) for ch in chars)


@dataclass(frozen=True)
class TextDialect:
    """How a text file's bytes become records and fields: ``LOAD DATA``'s options (decoded characters)."""

    fields_terminated_by: str = "\t"
    fields_enclosed_by: str = ""
    fields_optionally_enclosed: bool = False
    fields_escaped_by: str = "\\"
    lines_terminated_by: str = "\n"
    lines_starting_by: str = ""
    ignore_lines: int = 0
    header: bool = False
    null: tuple[str, ...] = ()
    charset: str = "utf8mb4"

    def __post_init__(self) -> None:
        spellings = (self.null,) if isinstance(self.null, str) else self.null
        if not isinstance(spellings, list | tuple):
            raise ValueError(f"null: a list of strings, not {self.null!r}")
        object.__setattr__(self, "null", tuple(spellings))
        problems = _problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    # -- the characters as the readers use them --------------------------------------------------------

    @property
    def escape(self) -> str | None:
        """The escape character, or None (``ESCAPED BY ''``)."""
        return self.fields_escaped_by or None

    @property
    def enclosure(self) -> str | None:
        """The enclosure character, or None (no ``ENCLOSED BY``)."""
        return self.fields_enclosed_by or None

    # -- building and showing ------------------------------------------------------------------------

    @classmethod
    def preset(cls, name: str) -> TextDialect:
        """A named preset (`PRESETS`)."""
        try:
            return PRESETS[name]
        except KeyError:
            raise ValueError(
                f"unknown dialect preset {name!r}; expected one of {', '.join(PRESETS)}"
            ) from None

    @classmethod
    def from_options(cls, preset: str = "mysql", /, **options: Any) -> TextDialect:
        """The `preset` with `options` replaced; string options in SQL notation (`from_sql_string`).

        Raises ValueError naming every problem: an unknown key, or a dialect the reader cannot read.
        """
        base = cls.preset(preset)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(
                f"unknown dialect key(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}"
            )
        decoded = {}
        for key, value in options.items():
            if key in _CHARACTER_KEYS and isinstance(value, str):
                value = from_sql_string(value)
            elif key == "null" and isinstance(value, str):
                value = (value,)
            decoded[key] = value
        return replace(base, **decoded)

    @classmethod
    def resolve(cls, spec: TextDialect | str | Mapping[str, Any] | None, format: str) -> TextDialect:
        """The dialect of a `format` (csv/tsv) file from a config-style `spec`: None (the format's preset:
        tsv → ``mysql``, csv → ``csv``), a preset name, a mapping of options with an optional ``preset``
        key, or a dialect as it is."""
        if isinstance(spec, TextDialect):
            return spec
        default = FORMAT_PRESETS.get(format)
        if default is None:
            raise ValueError(f"a {format} file has no text dialect")
        if spec is None or isinstance(spec, str):
            return cls.preset(spec or default)
        options = dict(spec)
        return cls.from_options(options.pop("preset", None) or default, **options)

    def options(self) -> dict[str, Any]:
        """Every option, strings in SQL notation: what `from_options` reads back to this dialect."""
        out = asdict(self)
        for key in _CHARACTER_KEYS:
            out[key] = to_sql_string(out[key])
        out["null"] = list(self.null)
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of decoded characters (an `InputUnit` carries it); see `from_dict`."""
        out = asdict(self)
        out["null"] = list(self.null)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TextDialect:
        return cls(**{**data, "null": tuple(data.get("null", ()))})

    def load_data_options(self) -> str:
        """The ``CHARACTER SET … FIELDS … LINES … IGNORE`` clause of the ``LOAD DATA`` that reads the same
        records (`header` as ``IGNORE 1 LINES``; `null` has no ``LOAD DATA`` equivalent and is left out)."""

        def q(chars: str) -> str:
            return "'" + to_sql_string(chars).replace("'", "\\'") + "'"

        enclosed = ""
        if self.enclosure:
            enclosed = (
                f" {'OPTIONALLY ' if self.fields_optionally_enclosed else ''}ENCLOSED BY {q(self.enclosure)}"
            )
        ignore = self.ignore_lines + int(self.header)
        return (
            f"CHARACTER SET {self.charset} FIELDS TERMINATED BY {q(self.fields_terminated_by)}{enclosed} "
            f"ESCAPED BY {q(self.fields_escaped_by)} LINES STARTING BY {q(self.lines_starting_by)} "
            f"TERMINATED BY {q(self.lines_terminated_by)}" + (f" IGNORE {ignore} LINES" if ignore else "")
        )


_CHARACTER_KEYS = (
    "fields_terminated_by",
    "fields_enclosed_by",
    "fields_escaped_by",
    "lines_terminated_by",
    "lines_starting_by",
)


def _problems(d: TextDialect) -> list[str]:
    """Everything that keeps `d` from being read exactly as ``LOAD DATA`` reads it (empty when none)."""
    problems = []
    for key in _CHARACTER_KEYS:
        value = getattr(d, key)
        if not isinstance(value, str):
            problems.append(f"{key} must be a string, not {type(value).__name__}")
        elif not value.isascii():
            problems.append(f"{key} {value!r}: only ASCII characters (MariaDB does not implement others)")
    if problems:
        return problems
    term, line, enc, esc = (
        d.fields_terminated_by,
        d.lines_terminated_by,
        d.fields_enclosed_by,
        d.fields_escaped_by,
    )
    if not term:
        problems.append("fields_terminated_by is empty: fixed-width rows are not supported")
    if not line:
        problems.append("lines_terminated_by is empty: records need a line terminator")
    if term and term == line:
        problems.append(f"fields_terminated_by and lines_terminated_by are both {term!r}")
    if len(enc) > 1:
        problems.append(f"fields_enclosed_by {enc!r}: at most one character (as in LOAD DATA)")
    if len(esc) > 1:
        problems.append(f"fields_escaped_by {esc!r}: at most one character (as in LOAD DATA)")
    for name, value in (
        ("fields_terminated_by", term),
        ("lines_terminated_by", line),
        ("lines_starting_by", d.lines_starting_by),
    ):
        if esc and esc in value:
            problems.append(f"{name} {value!r} holds the escape character {esc!r}")
        if enc and enc in value and name != "lines_starting_by":
            problems.append(f"{name} {value!r} holds the enclosure character {enc!r}")
    if not isinstance(d.fields_optionally_enclosed, bool) or not isinstance(d.header, bool):
        problems.append("fields_optionally_enclosed and header are true or false")
    if isinstance(d.ignore_lines, bool) or not isinstance(d.ignore_lines, int) or d.ignore_lines < 0:
        problems.append(f"ignore_lines {d.ignore_lines!r}: a whole number >= 0")
    elif d.header and d.ignore_lines:
        problems.append("give header (the first line names the columns) or ignore_lines, not both")
    for spelling in d.null:
        if not isinstance(spelling, str):
            problems.append(f"null spellings are strings, not {spelling!r}")
        elif any(ch and ch in spelling for ch in (esc, enc)) or term in spelling or line in spelling:
            problems.append(
                f"null spelling {spelling!r} holds a terminator, the enclosure or the escape character"
            )
    if d.charset not in CHARSETS:
        problems.append(f"charset {d.charset!r}: expected one of {', '.join(CHARSETS)}")
    return problems


#: Named dialects: ``mysql`` (alias ``tsv``) is ``LOAD DATA``'s default, as ``SELECT … INTO OUTFILE`` and
#: ``mysqldump -T`` write; ``csv`` is RFC 4180 (comma, optional double quotes doubled inside, CRLF, no
#: escapes, a header line).
PRESETS: dict[str, TextDialect] = {
    "mysql": TextDialect(),
    "tsv": TextDialect(),
    "csv": TextDialect(
        fields_terminated_by=",",
        fields_enclosed_by='"',
        fields_optionally_enclosed=True,
        fields_escaped_by="",
        lines_terminated_by="\r\n",
        header=True,
    ),
}

#: The preset a text format starts from.
FORMAT_PRESETS = {"tsv": "mysql", "csv": "csv"}
