"""The command contract: what ``kvmfx run NAME`` runs.

A command declares its columns (the output schema) and options, and yields one ``dict`` per
row; renderers (:mod:`kvmfx.render`) turn rows into text, JSON, JSON lines or CSV. A row whose
data could only be read in part carries ``partial: True``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

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


@dataclass
class Command:
    """Base class of commands; subclasses set the fields and implement :meth:`run`."""

    name: str = ""
    description: str = ""
    columns: list[Column] = field(default_factory=list)
    options: list[Option] = field(default_factory=list)

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        raise NotImplementedError
