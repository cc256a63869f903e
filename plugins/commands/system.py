"""System commands: loadavg, uname."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kvmfx.commands import Column, Command
from kvmfx.hookspecs import hookimpl
from kvmfx.session import Session


class LoadAvg(Command):
    def __init__(self) -> None:
        super().__init__(
            name="loadavg", description="Load averages over 1, 5 and 15 minutes.",
            columns=[Column("load1", "float", "1-minute load average"),
                     Column("load5", "float", "5-minute load average"),
                     Column("load15", "float", "15-minute load average")])

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        one, five, fifteen = session.loadavg()
        yield {"load1": one, "load5": five, "load15": fifteen}


class Uname(Command):
    def __init__(self) -> None:
        super().__init__(
            name="uname", description="Kernel name, release and version (like uname -a).",
            columns=[Column("sysname", "str", "operating system name"),
                     Column("nodename", "str", "host name"),
                     Column("release", "str", "kernel release"),
                     Column("version", "str", "kernel version string"),
                     Column("machine", "str", "hardware architecture")])

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        yield dict(session.uname())


@hookimpl
def kvmfx_commands() -> list[Command]:
    return [LoadAvg(), Uname()]
