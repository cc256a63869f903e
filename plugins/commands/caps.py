"""caps: the credentials and privileges of each process, as /proc/PID/status shows them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kvmfx.commands import Column, Command
from kvmfx.errors import KvmError, UnsupportedError
from kvmfx.hookspecs import hookimpl
from kvmfx.process import Credentials
from kvmfx.session import Session
from kvmfx_plugins.commands.ps import FILTERS, MISSING, selected

#: the capability-set columns and the /proc/PID/status line each one equals
CAP_LINES = {"cap_inh": "CapInh", "cap_prm": "CapPrm", "cap_eff": "CapEff",
             "cap_bnd": "CapBnd", "cap_amb": "CapAmb"}
_CAP_MEANING = {"cap_inh": "inheritable", "cap_prm": "permitted", "cap_eff": "effective",
                "cap_bnd": "bounding", "cap_amb": "ambient"}
#: every credential column, in the row's order
CRED_FIELDS = ("uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid", "groups",
               *CAP_LINES, "no_new_privs", "seccomp", "seccomp_filters")


def cap_hex(value: int | None) -> str | None:
    """A capability set as /proc/PID/status prints it: 16 hex digits, high bits first."""
    return None if value is None else f"{value:016x}"


def credential_row(pid: int, comm: str | None, creds: Credentials,
                   missing: dict[str, str] | None = None) -> dict[str, Any]:
    """One caps row: the process's pid and comm, its credentials, and what could not be
    read (``missing``: the process's own unreadable fields first)."""
    row: dict[str, Any] = {"pid": pid, "comm": comm}
    for name in CRED_FIELDS:
        value = getattr(creds, name)
        row[name] = cap_hex(value) if name in CAP_LINES else value
    why = {**(missing or {}), **creds.missing}
    row["missing"] = why or None
    return row


class Caps(Command):
    def __init__(self) -> None:
        super().__init__(
            name="caps",
            description="Credentials and privileges of each process: ids, supplementary "
                        "groups, capability sets, no_new_privs, seccomp (as "
                        "/proc/PID/status).",
            columns=[
                Column("pid", "int", "process id (thread-group id)"),
                Column("comm", "str", "command name"),
                Column("uid", "int", "real user id"),
                Column("euid", "int", "effective user id"),
                Column("suid", "int", "saved user id"),
                Column("fsuid", "int", "filesystem user id"),
                Column("gid", "int", "real group id"),
                Column("egid", "int", "effective group id"),
                Column("sgid", "int", "saved group id"),
                Column("fsgid", "int", "filesystem group id"),
                Column("groups", "list[int]", "supplementary groups (Groups:)"),
                *(Column(name, "str", f"{_CAP_MEANING[name]} capabilities: 16 hex digits "
                         f"({line}:)") for name, line in CAP_LINES.items()),
                Column("no_new_privs", "bool", "no_new_privs is set (NoNewPrivs:)"),
                Column("seccomp", "int", "seccomp mode: 0 off, 1 strict, 2 filter "
                       "(Seccomp:)"),
                Column("seccomp_filters", "int", "seccomp filters attached "
                       "(Seccomp_filters:)"),
                MISSING],
            options=FILTERS)

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        for p in selected(session, options):
            try:
                creds = session.credentials(p)
            except UnsupportedError:
                raise
            except KvmError as exc:
                creds = Credentials(missing=dict.fromkeys(CRED_FIELDS, str(exc)))
            own = {k: v for k, v in p.missing.items() if k in ("pid", "comm")}
            yield credential_row(p.pid, p.comm, creds, own)


@hookimpl
def kvmfx_commands() -> list[Command]:
    return [Caps()]
