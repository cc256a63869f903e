"""Renderers: rows from a command to an aligned table, JSON, JSON lines, CSV, Timesketch
events or ECS documents.

All formats carry the same columns under the same names (docs/output.md); ``jsonl`` puts the
dump's identity in front of them, and ``timesketch`` and ``ecs`` are the mappings of
:mod:`kvmfx.exporters` (:func:`render_exported`), as ``kvmfx batch`` writes them. Lists (argv, envv)
are JSON arrays in json/jsonl, JSON-encoded strings in CSV cells, and space-joined in text.
Text cells show control characters escaped (``a\\tb``), so that a table row is one line and no
character of a value is expanded, interpreted by the terminal or dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from kvmfx.commands import IDENTIFIED_FORMATS, OUTPUT_FORMATS, Column

if TYPE_CHECKING:
    from kvmfx.exporters import DumpId

FORMATS = OUTPUT_FORMATS


_NAMED_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
#: Invisible characters that reorder or split what a terminal shows (bidi overrides and
#: isolates, line/paragraph separators): escaped like control characters.
_INVISIBLE = frozenset("\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e"
                       "\u2066\u2067\u2068\u2069")


def _escape_char(ch: str) -> str:
    import unicodedata  # a cell that is not all printable

    if ch in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[ch]
    if ch in _INVISIBLE or unicodedata.category(ch) in ("Cc", "Cs"):
        code = ord(ch)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return ch


def escape_controls(text: str) -> str:
    """``text`` with control characters written as escapes (tab as ``\\t``, ESC as ``\\x1b``):
    a text-table cell is then exactly one line of printable characters."""
    if text.isprintable():
        return text
    return "".join(_escape_char(ch) for ch in text)


def _cell_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        text = f"{value:.6f}".rstrip("0")
        return text + "0" * max(0, 2 - len(text.partition(".")[2]))
    if isinstance(value, list | tuple):
        return " ".join(_cell_text(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{_cell_text(k)}: {_cell_text(v)}" for k, v in value.items())
    return escape_controls(str(value))


def _names(columns: list[Column], rows: list[dict[str, Any]]) -> list[str]:
    """The declared columns: every format carries exactly these, in this order."""
    if columns:
        return [c.name for c in columns]
    return list(rows[0]) if rows else []


#: A text-table cell longer than this is cut, ending in "…" (json/jsonl/csv are never cut).
MAX_TEXT_CELL = 160


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CELL else text[:MAX_TEXT_CELL - 1] + "…"


def render_text(columns: list[Column], rows: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """An aligned table: a header of upper-cased names, numbers right-aligned, two spaces
    between columns, trailing blanks trimmed. Widths are terminal cells, not characters
    (a wide CJK character takes two), as rich measures them."""
    rows = list(rows)
    names = _names(columns, rows)
    cells = [[_cut(_cell_text(r.get(n))) for n in names] for r in rows]
    header = [n.upper() for n in names]
    if all(x.isascii() for c in cells for x in c):
        lens = [[len(x) for x in c] for c in [header, *cells]]
    else:  # wide and zero-width characters: terminal cells as rich counts them
        from rich.cells import cell_len

        lens = [[cell_len(x) for x in c] for c in [header, *cells]]
    widths = [max(row[i] for row in lens) for i in range(len(names))]
    numeric = {c.name for c in columns if c.type in ("int", "float")}
    right = [n in numeric for n in names]
    for line, measured in zip([header, *cells], lens, strict=True):
        parts = []
        for text, n, w, r in zip(line, measured, widths, right, strict=True):
            pad = " " * (w - n)
            parts.append(pad + text if r else text + pad)
        out.write("  ".join(parts).rstrip() + "\n")
    return len(rows)


def _jsonable(row: dict[str, Any], names: list[str]) -> dict[str, Any]:
    return {n: row.get(n) for n in names}


def render_json(columns: list[Column], rows: Iterable[dict[str, Any]], out: IO[str]) -> int:
    rows = list(rows)
    names = _names(columns, rows)
    json.dump([_jsonable(r, names) for r in rows], out, ensure_ascii=False, indent=1)
    out.write("\n")
    return len(rows)


def render_jsonl(columns: list[Column], rows: Iterable[dict[str, Any]], out: IO[str]) -> int:
    names = [c.name for c in columns]
    n = 0
    for row in rows:
        out.write(json.dumps(_jsonable(row, names or list(row)), ensure_ascii=False))
        out.write("\n")
        n += 1
    return n


def render_csv(columns: list[Column], rows: Iterable[dict[str, Any]], out: IO[str]) -> int:
    import csv

    rows = list(rows)
    names = _names(columns, rows)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        writer.writerow([json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict)
                         else ("" if v is None else v) for v in (row.get(n) for n in names)])
    return len(rows)


RENDERERS = {"text": render_text, "json": render_json, "jsonl": render_jsonl,
             "csv": render_csv}


def render(fmt: str, columns: list[Column], rows: Iterable[dict[str, Any]],
           out: IO[str]) -> int:
    """Write ``rows`` in format ``fmt`` (one of :data:`RENDERERS`); returns the number of
    rows."""
    return RENDERERS[fmt](columns, rows, out)


class Exported(NamedTuple):
    """What :func:`render_exported` wrote: rows, and of them the Timesketch events that
    carry no time (``datetime`` null: no time of their own and no capture time known)."""

    rows: int
    untimed: int = 0


def _line(record: dict[str, Any], out: IO[str]) -> None:
    out.write(json.dumps(record, ensure_ascii=False))  # as kvmfx batch writes its JSONL
    out.write("\n")


def render_exported(fmt: str, command: str, columns: list[Column],
                    rows: Iterable[dict[str, Any]], out: IO[str], *,
                    dump: Callable[[], DumpId],
                    starts: Callable[[], dict[int, str]] = dict,
                    created: str | None = None) -> Exported:
    """Write ``rows`` of ``command`` in one of :data:`IDENTIFIED_FORMATS`, through the
    mappings of :mod:`kvmfx.exporters` (the lines ``kvmfx batch`` writes for that dump):

    * ``jsonl``: the identity fields, then the declared columns, one object per line;
    * ``timesketch``: one event per row (a row without any known time is written with
      ``datetime`` null and ``no_time_reason``, and counted in ``untimed``);
    * ``ecs``: one ECS document per row (``created``: ``event.created``, default now).

    ``dump`` and ``starts`` (pid -> process start, for rows without a start of their own)
    are called once, when the first row is there: a command that fails writes nothing and
    reads nothing more."""
    import datetime as _dt

    from kvmfx import exporters

    if fmt not in IDENTIFIED_FORMATS:
        raise ValueError(f"not a format with the dump's identity: {fmt}")
    if created is None:
        created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    declared = [c.name for c in columns]
    ident: DumpId | None = None
    known: dict[int, str] = {}
    n = untimed = 0
    for row in rows:
        if ident is None:
            ident = dump()
            known = starts()
        if fmt == "jsonl":
            plain = exporters.with_identity(row, ident, command)
            names = [*exporters.IDENTITY_FIELDS, *(declared or row)]
            _line({k: plain.get(k) for k in names}, out)
        elif fmt == "timesketch":
            event = exporters.timesketch_event(row, ident, command, known, keep_untimed=True)
            assert event is not None
            untimed += event["datetime"] is None
            _line(event, out)
        else:
            _line(exporters.ecs_document(row, ident, command, known, created), out)
        n += 1
    return Exported(n, untimed)


def tee_partial(rows: Iterable[dict[str, Any]], seen: list[bool]) -> Iterator[dict[str, Any]]:
    """Pass rows through, remembering whether any was flagged partial."""
    for row in rows:
        if row.get("partial"):
            seen[0] = True
        yield row
