"""Kernel commands for dumps: dmesg, boottime."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kvmfx.commands import Column, Command
from kvmfx.errors import KvmError, UnsupportedError
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


#: Wall-clock times outside 2000..2100 are no clock's (memory that is not a timekeeper).
_SANE_WALL = (946684800, 4102444800)


def _sane(wall: float, boot: float | None) -> bool:
    return _SANE_WALL[0] < wall < _SANE_WALL[1] and (boot is None or wall >= boot)


def capture_wall_time(session: Session) -> float | None:
    """When a dump was taken (seconds since the epoch), where the dump says; None on the
    live system and where it does not.

    A kdump of a crashed kernel names its crash time (VMCOREINFO ``CRASHTIME``); else the
    kernel's own wall clock at its last timekeeping update before the capture (the
    timekeeper's ``xtime_sec``, seconds: a tick or so before the memory was taken, longer
    on an idle tickless CPU). Never later than the capture, never earlier than the boot."""
    if session.live or session.no_files:
        return None
    try:
        boot = session.boot_time()
    except KvmError:
        boot = None
    try:
        notes = session.boot
    except KvmError:
        notes = None
    crash = (notes.get("CRASHTIME") or "").strip() if notes is not None else ""
    if crash.isdigit() and _sane(int(crash), boot):
        return float(crash)
    from kvmfx_plugins.linux.tasks import LinuxDumpProfile  # Linux dumps only

    try:
        profile = session.profile
        if not isinstance(profile, LinuxDumpProfile):
            return None
        kernel = profile.kernel(session)
        at = kernel.timekeeper()
        if at is None:
            return None
        tk = kernel.obj("timekeeper", at)
        wall = int(tk.xtime_sec) if tk is not None else None
    except KvmError:
        return None
    return float(wall) if wall is not None and _sane(wall, boot) else None


class BootTime(Command):
    def __init__(self) -> None:
        super().__init__(
            name="boottime", description="When the kernel booted and when the dump was taken "
                                         "(wall clock, UTC).",
            columns=[Column("boot_time", "str", "boot time, ISO 8601 UTC"),
                     Column("btime", "int", "boot time, seconds since the epoch "
                            "(as /proc/stat btime)"),
                     Column("capture_time", "str", "when the dump was taken, ISO 8601 UTC "
                            "(its crash time, else the kernel's clock at its last update "
                            "before the capture); null on the live system and where "
                            "unknown")])

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        boot = session.boot_time()
        yield {"boot_time": iso_time(boot), "btime": int(boot) if boot is not None else None,
               "capture_time": iso_time(capture_wall_time(session))}


@hookimpl
def kvmfx_commands() -> list[Command]:
    return [Dmesg(), BootTime()]
