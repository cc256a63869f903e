"""The command contract: what ``kvmfx run NAME`` runs.

A command declares its columns (the output schema) and options, and yields one ``dict`` per
row; renderers (:mod:`kvmfx.render`) turn rows into text, JSON, JSON lines or CSV. A row whose
data could only be read in part carries ``partial: True``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from kvmfx.records import Record

if TYPE_CHECKING:
    from kvmfx.session import Session


class Column(NamedTuple):
    """One output field: a stable name, its JSON type and a description for the docs."""

    name: str
    type: str = "str"  # str, int, float, bool, list[str]
    description: str = ""


#: Output formats of command rows (kvmfx/render.py).
OUTPUT_FORMATS = ("text", "json", "jsonl", "csv", "timesketch", "ecs")
#: The formats whose rows carry the dump's identity (``kvmfx run --host``, ``--hash``):
#: the lines ``kvmfx batch`` writes (kvmfx/exporters.py).
IDENTIFIED_FORMATS = ("jsonl", "timesketch", "ecs")


class Option(NamedTuple):
    """A command option, e.g. ``--pid 42`` (``type`` int or str) or a ``flag``."""

    name: str
    help: str = ""
    type: str = "str"
    default: Any = None
    flag: bool = False


class Command(Record):
    """Base class of commands; subclasses set the fields and implement :meth:`run`.

    A subclass passes the fields to ``__init__`` or sets them as class attributes (a field
    not passed keeps the class's value; ``columns`` and ``options`` are then copied)."""

    _fields = ("name", "description", "columns", "options")
    name: str = ""
    description: str = ""
    columns: list[Column]
    options: list[Option]

    def __init__(self, name: str = "", description: str = "",
                 columns: list[Column] | None = None,
                 options: list[Option] | None = None) -> None:
        cls = type(self)
        self.name = name or cls.name
        self.description = description or cls.description
        self.columns = [*getattr(cls, "columns", ())] if columns is None else columns
        self.options = [*getattr(cls, "options", ())] if options is None else options

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        raise NotImplementedError
