"""maps: every memory mapping of every process, as /proc/PID/maps shows it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from kvmfx.commands import Column, Command, Option
from kvmfx.errors import KvmError, UnsupportedError
from kvmfx.hookspecs import hookimpl
from kvmfx.process import Process
from kvmfx.session import Session
from kvmfx_plugins.commands.ps import FILTERS, MISSING, selected

#: the row's fields a mapping fills, in order
_FIELDS = ("start", "end", "perms", "offset", "dev", "inode", "path")


def _hex(value: int | None) -> str | None:
    """A number as /proc/PID/maps prints it: lower-case hex, at least 8 digits."""
    return None if value is None else f"{value:08x}"


class Maps(Command):
    def __init__(self) -> None:
        super().__init__(
            name="maps", description="Memory mappings of each process, as /proc/PID/maps "
                                     "(dumps).",
            columns=[Column("pid", "int", "process id"),
                     Column("comm", "str", "command name"),
                     Column("start", "str", "first address, hex as /proc/PID/maps prints it "
                            "(at least 8 digits, no 0x)"),
                     Column("end", "str", "address after the last, hex as start"),
                     Column("perms", "str", "r, w, x and s (shared) or p (private), as "
                            "/proc/PID/maps"),
                     Column("offset", "str", "offset in the file, hex (00000000 when no "
                            "file)"),
                     Column("dev", "str", "the file's device, major:minor in hex (00:00 "
                            "when no file)"),
                     Column("inode", "int", "the file's inode number (0 when no file)"),
                     Column("path", "str", "the file's path (` (deleted)` once unlinked), "
                            "else the mapping's name: [heap], [stack], [vdso], [vvar], "
                            "[vsyscall], [anon:NAME]; empty for an unnamed anonymous "
                            "mapping"),
                     Column("suspicious", "str", "with --suspicious: why the mapping is "
                            "listed (anonymous executable, executable of a deleted file, "
                            "writable and executable)"),
                     Column("first_bytes", "str", "with --suspicious: the mapping's first 64 "
                            "bytes, hex (null when they are not in the dump)"),
                     Column("partial", "bool", "the process's mappings could only be read "
                            "in part (missing.maps says why): its rows are those read"),
                     MISSING],
            options=[*FILTERS,
                     Option("suspicious", "Only executable mappings that are anonymous, of "
                            "a deleted file, or writable (what malfind looks for), with "
                            "their first bytes.", flag=True)])

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        if session.live:
            raise UnsupportedError("maps reads a dump's kernel memory; on a live system "
                                   "read /proc/PID/maps")
        from kvmfx_plugins.linux.tasks import LinuxDumpProfile  # when the command runs
        from kvmfx_plugins.linux.vma import maps

        profile = session.profile
        if not isinstance(profile, LinuxDumpProfile):
            raise UnsupportedError(f"maps reads Linux kernel memory (not {profile.name})")
        reader = maps(profile.kernel(session))
        suspicious = bool(options.get("suspicious"))
        for proc in selected(session, options):
            yield from _process_rows(session, reader, proc, suspicious)


def _process_rows(session: Session, reader: Any, proc: Process,
                  suspicious: bool) -> Iterator[dict[str, Any]]:
    """The rows of one process: one per mapping. A process whose mappings cannot be read,
    or whose walk was cut short before any row was listed, has one row of nulls saying
    why (so that no process is silently left out)."""
    base = {"pid": proc.pid, "comm": proc.comm}
    try:
        found = reader.process(proc.handle)
    except KvmError as exc:
        found, cut = None, f"mm unreadable: {exc}"
    else:
        if found is None:
            return  # no mm: a kernel thread or a zombie, which /proc shows no mapping either
        cut = "; ".join(found.problems)
    if cut:
        session.warnings.append(f"maps of pid {proc.pid}: {cut}")
    listed = 0
    for m in found.mappings if found is not None else ():
        why = _suspicious(m) if suspicious else None
        if suspicious and why is None:
            continue
        missing = dict(m.missing)
        row = {**base, "start": _hex(m.start), "end": _hex(m.end), "perms": m.perms,
               "offset": _hex(m.offset),
               "dev": f"{m.dev[0]:02x}:{m.dev[1]:02x}" if m.dev is not None else None,
               "inode": m.inode, "path": m.path, "suspicious": why, "first_bytes": None}
        if suspicious:
            try:
                row["first_bytes"] = reader.first_bytes(proc.handle, m.start).hex()
            except KvmError as exc:
                missing["first_bytes"] = str(exc)
        if cut:
            missing["maps"] = cut
        row["partial"] = bool(cut)
        row["missing"] = missing or None
        listed += 1
        yield row
    if cut and not listed:
        yield {**base, **dict.fromkeys(_FIELDS), "suspicious": None, "first_bytes": None,
               "partial": True, "missing": {"maps": cut}}


def _suspicious(m: Any) -> str | None:
    """Why an executable mapping is one malfind would show, or None: no file behind it
    (but not a special mapping the kernel names: [vdso], [vsyscall]), a file since deleted,
    or writable as well."""
    if not m.executable:
        return None
    why = []
    if m.file is False and not m.special:
        why.append("anonymous executable")
    if m.deleted:
        why.append("executable of a deleted file")
    if m.writable:
        why.append("writable and executable")
    return "; ".join(why) or None


@hookimpl
def kvmfx_commands() -> list[Command]:
    return [Maps()]
