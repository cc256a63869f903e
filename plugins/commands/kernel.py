"""Kernel commands for dumps: dmesg, boottime."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kvmfx.commands import Column, Command
from kvmfx.errors import UnsupportedError
from kvmfx.hookspecs import hookimpl
from kvmfx.session import Session
from kvmfx_plugins.commands.ps import iso_time


class Dmesg(Command):
    def __init__(self) -> None:
        super().__init__(
            name="dmesg", description="The kernel log (printk ring buffer) of a dump.",
            columns=[Column("seq", "int", "record sequence number"),
                     Column("time", "float", "seconds after boot"),
                     Column("level", "int", "log level (0 emerg .. 7 debug)"),
                     Column("facility", "int", "syslog facility"),
                     Column("text", "str", "the message")])

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        if session.live:
            raise UnsupportedError("dmesg reads a dump's ring buffer; on a live system use "
                                   "dmesg(1)")
        from kvmfx_plugins.linux.printk import log_records  # when the command runs

        for r in log_records(session):
            yield {"seq": r.seq, "time": round(r.ts_nsec / 1e9, 6), "level": r.level,
                   "facility": r.facility, "text": r.text}


class BootTime(Command):
    def __init__(self) -> None:
        super().__init__(
            name="boottime", description="When the kernel booted (wall clock, UTC).",
            columns=[Column("boot_time", "str", "boot time, ISO 8601 UTC"),
                     Column("btime", "int", "boot time, seconds since the epoch "
                            "(as /proc/stat btime)")])

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        boot = session.boot_time()
        yield {"boot_time": iso_time(boot), "btime": int(boot) if boot is not None else None}


@hookimpl
def kvmfx_commands() -> list[Command]:
    return [Dmesg(), BootTime()]
