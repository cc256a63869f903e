"""Example kvmfx plugin: how many processes each user runs (docs/tutorial.md)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from kvmfx import hookimpl
from kvmfx.commands import Column, Command, Option


class UserCount(Command):
    def __init__(self) -> None:
        super().__init__(
            name="usercount",
            description="Number of processes per real user id.",
            columns=[Column("uid", "int", "real user id"),
                     Column("processes", "int", "number of processes")],
            options=[Option("min", "Only users with at least this many processes.",
                            type="int", default=1)],
        )

    def run(self, session: Any, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        counts = Counter(p.uid for p in session.processes())
        for uid, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] or 0)):
            if n >= options["min"]:
                yield {"uid": uid, "processes": n}


@hookimpl
def kvmfx_commands() -> list[Command]:
    return [UserCount()]
