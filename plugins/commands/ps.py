"""Process commands: pslist, pstree, psaux, envars, threads."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kvmfx.commands import Column, Command, Option
from kvmfx.errors import KvmError
from kvmfx.hookspecs import hookimpl
from kvmfx.process import ArgVector, Process
from kvmfx.session import Session

FILTERS = [Option("pid", "Only this process id.", type="int"),
           Option("uid", "Only processes with this real user id.", type="int"),
           Option("comm", "Only processes with this command name.")]

#: every process command: what could not be read, per field
MISSING = Column("missing", "dict[str, str]", "fields that could not be read (null in this "
                 "row, or cut short with partial): field -> why; null when all were read")

BASE_COLUMNS = [
    Column("pid", "int", "process id (thread-group id)"),
    Column("ppid", "int", "parent's process id (the real parent)"),
    Column("uid", "int", "real user id"),
    Column("gid", "int", "real group id"),
    Column("comm", "str", "command name (the kernel's comm, at most 15 bytes on Linux)"),
    Column("state", "str", "scheduler state letter (R, S, D, T, Z, I, ...)"),
]


def iso_time(ts: float | None) -> str | None:
    """An absolute timestamp as ISO 8601 UTC, or None."""
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat(timespec="seconds")


def selected(session: Session, options: dict[str, Any]) -> Iterator[Process]:
    """The session's processes that pass the --pid / --uid / --comm filters."""
    for proc in session.processes():
        if options.get("pid") is not None and proc.pid != options["pid"]:
            continue
        if options.get("uid") is not None and proc.uid != options["uid"]:
            continue
        if options.get("comm") is not None and proc.comm != options["comm"]:
            continue
        yield proc


class PsList(Command):
    def __init__(self) -> None:
        super().__init__(
            name="pslist", description="List processes (pid, parent, credentials, state).",
            columns=[*BASE_COLUMNS[:2],
                     Column("pgid", "int", "process group id"),
                     Column("sid", "int", "session id"),
                     *BASE_COLUMNS[2:4],
                     Column("euid", "int", "effective user id"),
                     Column("egid", "int", "effective group id"),
                     *BASE_COLUMNS[4:],
                     Column("nthreads", "int", "number of threads"),
                     Column("nspid", "int", "pid inside its own pid namespace"),
                     Column("tty", "int", "controlling terminal device number (0: none)"),
                     Column("rss", "int", "resident set size in pages"),
                     Column("kernel_thread", "bool", "a kernel thread (no user memory)"),
                     Column("start_time", "str", "start, ISO 8601 UTC (absolute)"),
                     Column("start_boot", "float", "start, seconds after boot"),
                     *PATH_COLUMNS,
                     Column("source", "str", "where the record came from (procfs, "
                            "task_list, scan)"),
                     MISSING],
            options=FILTERS)

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        paths = process_paths(session)
        for p in selected(session, options):
            row = p.as_row()
            row["start_time"] = iso_time(p.start_time)
            found, why = paths(p)
            row.update(found)
            if why:
                row["missing"] = {**(row["missing"] or {}), **why}
            yield row


#: pslist's paths, as /proc/PID/exe, cwd and root link to them
PATH_COLUMNS = [
    Column("exe", "str", "the executable's path (' (deleted)' when removed since); null "
           "for kernel threads"),
    Column("cwd", "str", "working directory"),
    Column("root", "str", "root directory (other than / in a chroot)"),
]

PathReader = Callable[[Process], tuple[dict[str, Any], dict[str, str]]]


def process_paths(session: Session) -> PathReader:
    """How a session's processes' exe, cwd and root are read: their kernel structures on a
    Linux dump, /proc/PID/{exe,cwd,root} on the live system."""
    if not session.live:
        from kvmfx_plugins.linux.tasks import LinuxDumpProfile  # Linux dumps only

        profile = session.profile
        if isinstance(profile, LinuxDumpProfile):
            from kvmfx_plugins.linux.vfs import vfs

            v = vfs(profile.kernel(session))
            return lambda p: v.task_paths(p.handle, p.kernel_thread)
        return lambda p: ({"exe": None, "cwd": None, "root": None},
                          dict.fromkeys(("exe", "cwd", "root"),
                                        "not read from this operating system"))
    return _proc_links


def _proc_links(p: Process) -> tuple[dict[str, Any], dict[str, str]]:
    """exe, cwd and root of a live process (its /proc/PID directory is its handle)."""
    import os

    found: dict[str, Any] = {}
    why: dict[str, str] = {}
    for name in ("exe", "cwd", "root"):
        link = f"{p.handle}/{name}"
        try:
            found[name] = os.readlink(link)
        except OSError as exc:
            found[name] = None
            if name == "exe" and p.kernel_thread:
                why[name] = "a kernel thread has no executable"
            else:
                why[name] = f"{link}: {exc.strerror}"
    return found, why


def _unique(procs: list[Process]) -> list[Process]:
    """``procs`` with each pid once (a damaged dump can list a task twice)."""
    first: dict[int, Process] = {}
    for p in procs:
        first.setdefault(p.pid, p)
    return list(first.values())


def _shown(p: Process) -> str:
    """A process's name in the tree drawing ("?" when its comm could not be read)."""
    return p.comm if p.comm is not None else "?"


class PsTree(Command):
    def __init__(self) -> None:
        super().__init__(
            name="pstree", description="Processes as a parent/child tree.",
            columns=[Column("tree", "str", "comm, drawn under its parent: ├─ └─ │ as in "
                            "pstree(1)"),
                     Column("pid", "int", "process id"), Column("ppid", "int", "parent pid"),
                     Column("depth", "int", "depth in the tree (0: no known parent)"),
                     Column("comm", "str", "command name")])

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        procs = list(session.processes())
        by_pid = {p.pid: p for p in procs}
        children: dict[int, list[Process]] = {}
        roots = []
        for p in procs:
            if p.ppid in by_pid and p.ppid != p.pid:
                children.setdefault(p.ppid, []).append(p)
            else:
                roots.append(p)
        seen: set[int] = set()
        # Iterative depth-first walk: a hostile parent cycle cannot recurse or loop.
        # Each entry: the process, its depth, the prefix its ancestors draw, and whether it
        # is its parent's last child (drawn "└─ ", the others "├─ ", as pstree(1) does).
        stack: list[tuple[Process, int, str, bool]] = [(r, 0, "", True)
                                                       for r in reversed(roots)]
        while stack:
            p, depth, prefix, last = stack.pop()
            if p.pid in seen:
                continue
            seen.add(p.pid)
            branch = ("└─ " if last else "├─ ") if depth else ""
            yield {"tree": prefix + branch + _shown(p), "pid": p.pid, "ppid": p.ppid,
                   "depth": depth, "comm": p.comm}
            kids = [c for c in _unique(children.get(p.pid, [])) if c.pid not in seen]
            below = prefix + ("   " if last else "│  ") if depth else ""
            stack.extend((c, depth + 1, below, i == len(kids) - 1)
                         for i, c in reversed(list(enumerate(kids))))
        for p in procs:  # members of a parent cycle, unreachable from any root
            if p.pid not in seen:
                seen.add(p.pid)
                yield {"tree": _shown(p), "pid": p.pid, "ppid": p.ppid, "depth": 0,
                       "comm": p.comm}


class PsAux(Command):
    def __init__(self) -> None:
        super().__init__(
            name="psaux", description="Processes with their command lines (argv).",
            columns=[*BASE_COLUMNS, Column("start_time", "str", "start, ISO 8601 UTC"),
                     Column("argv", "list[str]", "argument vector, as /proc/PID/cmdline "
                            "(null: none of it could be read)"),
                     Column("partial", "bool", "argv could only be read in part"),
                     MISSING],
            options=FILTERS)

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        fields = ("pid", "ppid", "uid", "gid", "comm", "state", "start_time")
        for p in selected(session, options):
            row = {name: getattr(p, name) for name in fields}
            row["start_time"] = iso_time(p.start_time)
            yield _with_vector(row, p, "argv", session.argv)


def _with_vector(row: dict[str, Any], p: Process, name: str,
                 read: Callable[[Process], ArgVector]) -> dict[str, Any]:
    """``row`` with the process's argv or envv as ``name``; what could not be read is in
    ``missing`` (with the process's own unreadable fields): null when nothing was read."""
    missing = {k: v for k, v in p.missing.items() if k in row}
    try:
        vec = read(p)
    except KvmError as exc:
        vec = ArgVector([], partial=True, missing=str(exc))
    row[name] = vec.strings() if vec.readable else None
    row["partial"] = vec.partial
    if vec.missing:
        missing[name] = vec.missing
    row["missing"] = missing or None
    return row


class Envars(Command):
    def __init__(self) -> None:
        super().__init__(
            name="envars", description="Environment strings of each process (envv).",
            columns=[Column("pid", "int", "process id"), Column("comm", "str", "command name"),
                     Column("envv", "list[str]", "environment, as /proc/PID/environ "
                            "(null: none of it could be read)"),
                     Column("partial", "bool", "envv could only be read in part"),
                     MISSING],
            options=FILTERS)

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        for p in selected(session, options):
            yield _with_vector({"pid": p.pid, "comm": p.comm}, p, "envv", session.envv)


class Threads(Command):
    def __init__(self) -> None:
        super().__init__(
            name="threads", description="Threads of each process.",
            columns=[Column("pid", "int", "process (thread-group) id"),
                     Column("tid", "int", "thread id"), Column("comm", "str", "thread name"),
                     Column("state", "str", "thread state")],
            options=FILTERS)

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        for p in selected(session, options):
            for t in session.threads(p):
                yield {"pid": p.pid, "tid": t.pid, "comm": t.comm, "state": t.state}


@hookimpl
def kvmfx_commands() -> list[Command]:
    return [PsList(), PsTree(), PsAux(), Envars(), Threads()]
