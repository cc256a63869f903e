"""psscan and psxview: processes found by scanning memory, beside the task-list walk.

``psxview`` puts both views side by side: a process seen by one method and not the other is
worth a look.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kvmfx.commands import Column, Command
from kvmfx.errors import UnsupportedError
from kvmfx.hookspecs import hookimpl
from kvmfx.session import Session


class PsScan(Command):
    def __init__(self) -> None:
        super().__init__(
            name="psscan",
            description="Tasks found by scanning physical memory (hidden and exited too).",
            columns=[Column("offset", "int", "physical address of the task_struct"),
                     Column("task", "int", "its kernel virtual address"),
                     Column("pid", "int", "thread id"), Column("tgid", "int", "process id"),
                     Column("ppid", "int", "real parent's process id (if readable)"),
                     Column("comm", "str", "command name"), Column("state", "str", "state"),
                     Column("start_boot", "float", "start, seconds after boot"),
                     Column("in_task_list", "bool", "also found by walking the task list")])

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        if session.live:
            raise UnsupportedError("psscan scans a dump's physical memory")
        listed = _listed(session)
        from kvmfx_plugins.linux.taskscan import scan_tasks  # when the command runs

        for t in scan_tasks(session):
            yield {"offset": t.paddr, "task": t.vaddr, "pid": t.pid, "tgid": t.tgid,
                   "ppid": t.ppid, "comm": t.comm, "state": t.state,
                   "start_boot": round(t.start_boot, 3), "in_task_list": t.vaddr in listed}


def _listed(session: Session) -> set[int]:
    """Kernel addresses of every task reachable from the task list (threads included)."""
    out: set[int] = set()
    for p in session.processes():
        out.add(p.handle)
        for t in session.threads(p):
            out.add(t.handle)
    return out


class PsXView(Command):
    def __init__(self) -> None:
        super().__init__(
            name="psxview",
            description="Processes by task-list walk and by memory scan, side by side.",
            columns=[Column("pid", "int", "process id"), Column("comm", "str", "command name"),
                     Column("task", "int", "task_struct address"),
                     Column("task_list", "bool", "found by walking the task list"),
                     Column("scan", "bool", "found by psscan"),
                     Column("state", "str", "state"),
                     Column("note", "str", "why the views disagree, when they do")])

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        if session.live:
            raise UnsupportedError("psxview compares views of a dump's memory")
        walked = {p.handle: p for p in session.processes()}
        from kvmfx_plugins.linux.taskscan import scan_tasks  # when the command runs

        scanned = {t.vaddr: t for t in scan_tasks(session) if t.pid == t.tgid}
        for addr in sorted(set(walked) | set(scanned),
                           key=lambda a: (walked[a].pid if a in walked else scanned[a].pid)):
            p, t = walked.get(addr), scanned.get(addr)
            note = None
            if p is None and t is not None:
                note = "exited (memory not reused yet)" if t.exited else \
                    "not on the task list: unlinked or exiting"
            elif t is None and p is not None:
                note = "not found by the scan"
            yield {"pid": p.pid if p else t.pid if t else None,
                   "comm": p.comm if p else t.comm if t else None, "task": addr,
                   "task_list": p is not None, "scan": t is not None,
                   "state": p.state if p else t.state if t else None, "note": note}


@hookimpl
def kvmfx_commands() -> list[Command]:
    return [PsScan(), PsXView()]
