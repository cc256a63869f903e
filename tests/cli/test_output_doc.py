"""docs/output.md is the output's interface: its command table lists every command's
columns, in order, as the command declares them."""

from __future__ import annotations

import re
from pathlib import Path

from kvmfx.registry import load_registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "output.md"


def _documented() -> dict[str, list[str]]:
    """command -> columns, from the table's rows ``| name [(note)] | a, b, c [(below...)] |``."""
    rows: dict[str, list[str]] = {}
    for line in DOC.read_text().splitlines():
        m = re.fullmatch(r"\| ([a-z0-9-]+)(?: \([^)|]*\))? \| ([a-z0-9_, ]+)(?: \(.*\))? \|",
                         line)
        if m:
            rows.setdefault(m.group(1), [c.strip() for c in m.group(2).split(",")])
    return rows


def test_every_command_is_documented_with_its_columns_in_order():
    documented = _documented()
    commands = load_registry().commands
    assert len(commands) >= 20
    for name, command in commands.items():
        assert documented.get(name) == [c.name for c in command.columns], name


def test_every_column_has_a_meaning():
    """Each column is named in the first cell of a field table's row (``a, b``, ``a / b``,
    or a range ``a … c (command)`` standing for the command's columns from a to c)."""
    cells = [line.split("|")[1] for line in DOC.read_text().splitlines()
             if line.startswith("| ") and line.count("|") >= 4]
    for name, command in load_registry().commands.items():
        columns = [c.name for c in command.columns]
        named = set()
        for cell in cells:
            named.update(re.findall(r"[a-z][a-z0-9_]*", cell))
            if "…" in cell:
                first, _, last = cell.partition("…")
                first, last = first.split()[-1], last.split()[0]
                if first in columns and last in columns:
                    named.update(columns[columns.index(first):columns.index(last) + 1])
        assert not [c for c in columns if c not in named], name
