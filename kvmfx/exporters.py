"""Rows as the tools incident responders load them: Timesketch events and ECS documents.

Pure functions of one command row, the identity of the dump it came from (:class:`DumpId`)
and the start times of that dump's processes (``starts``: pid -> ISO 8601 UTC, from any
process command of the same dump, so that ``envars`` rows carry a time too). Nothing here
reads a dump: ``kvmfx batch`` and tests call them on rows (docs/batch.md).

* :func:`with_identity`: a plain row with the dump's identity in front (``dump_path``,
  ``dump_host``, ``kernel_release``, ``build_id``, ``dump_sha256``, ``kvmfx_version``,
  ``command``), so that lines from many hosts can be concatenated.
* :func:`timesketch_event`: Timesketch's required ``message``, ``datetime`` (ISO 8601 UTC) and
  ``timestamp_desc``, then the identity and the row's fields. The time is the row's own
  (its process's start); a row without one takes the dump's capture time
  (:attr:`DumpId.captured`), and says so in ``timestamp_desc``; no time is ever made up.
* :func:`ecs_document`: an Elastic Common Schema document (``@timestamp``, ``ecs.version``,
  ``event.*``, ``process.*``, ``host.*``, ``user.id``); kvmfx's provenance under ``kvmfx.*``.

``kvmfx batch`` and ``kvmfx run --format jsonl|timesketch|ecs`` both write through these, so a
dump's lines are the same whichever wrote them (docs/output.md).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass
from typing import Any

#: The ECS version the documents follow (field names and types checked against its
#: published definitions in tests/batch/data).
ECS_VERSION = "9.4.0"

#: Fields put in front of every plain row, in this order.
IDENTITY_FIELDS = ("dump_path", "dump_host", "kernel_release", "build_id", "dump_sha256",
                   "kvmfx_version", "command")

#: Commands whose rows describe one process each (``pid`` is the process id).
PROCESS_COMMANDS = frozenset({"pslist", "psaux", "envars", "pstree", "threads", "psscan",
                              "psxview"})


@dataclass(frozen=True)
class DumpId:
    """Who a row came from: the dump file and the kernel in it."""

    #: the dump file (absolute); None for the live system
    path: str | None
    host: str | None = None
    kernel_release: str | None = None
    build_id: str | None = None
    sha256: str | None = None
    kvmfx_version: str | None = None
    #: the kernel's machine name (``x86_64``, ``aarch64``), for ECS ``host.architecture``
    machine: str | None = None
    #: the kernel's own host name (uname nodename), for ECS ``host.hostname``
    nodename: str | None = None
    #: when the dump was taken (ISO 8601 UTC), where the dump says: the time of rows that
    #: have none of their own
    captured: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def with_identity(row: dict[str, Any], dump: DumpId, command: str) -> dict[str, Any]:
    """``row`` with the dump's identity and the command in front (a row field of the same
    name as an identity field is kept and the identity's is not written)."""
    ident = {"dump_path": dump.path, "dump_host": dump.host,
             "kernel_release": dump.kernel_release, "build_id": dump.build_id,
             "dump_sha256": dump.sha256, "kvmfx_version": dump.kvmfx_version,
             "command": command}
    return {**{k: v for k, v in ident.items() if k not in row}, **row}


def process_starts(rows: dict[str, list[dict[str, Any]]]) -> dict[int, str]:
    """pid -> start time (ISO 8601 UTC) from every command's rows that carry both."""
    starts: dict[int, str] = {}
    for command_rows in rows.values():
        for row in command_rows:
            pid, start = row.get("pid"), row.get("start_time")
            if isinstance(pid, int) and isinstance(start, str) and start:
                starts.setdefault(pid, start)
    return starts


def utc_iso(value: str) -> str | None:
    """``value`` (ISO 8601) as ISO 8601 UTC with seconds, ``+00:00``; None if unparsable."""
    try:
        when = _dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    return when.astimezone(_dt.UTC).isoformat(timespec="seconds")


#: ``timestamp_desc`` of an event timed by its process's start / by the dump's capture time.
PROCESS_START = "Process Start Time"
DUMP_CAPTURE = "Dump Capture Time"
#: ``timestamp_desc`` of an event for which no time is known (``datetime`` null; only written
#: by ``kvmfx run``: :func:`timesketch_event` with ``keep_untimed``).
NO_TIME = "No Time Known"


def _event_time(row: dict[str, Any], starts: dict[int, str]) -> str | None:
    start = row.get("start_time")
    if not isinstance(start, str):
        pid = row.get("pid")
        start = starts.get(pid) if isinstance(pid, int) else None
    return utc_iso(start) if start else None


def _vector(value: Any) -> list[str] | None:
    if isinstance(value, list):
        return [str(v) for v in value]
    return None


def _text(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return "-" if value is None else str(value)


def message(row: dict[str, Any], dump: DumpId, command: str) -> str:
    """One line a timeline reader understands: host, what, which process, its command line."""
    host = dump.host or dump.path or "live system"
    if command in PROCESS_COMMANDS and "pid" in row:
        who = f"{row.get('comm') or '?'} (pid {row.get('pid')}"
        who += f", ppid {row['ppid']}" if row.get("ppid") is not None else ""
        who += f", uid {row['uid']}" if row.get("uid") is not None else ""
        who += ")"
        if command == "envars":
            envv = _vector(row.get("envv"))
            what = f"environment, {len(envv)} variables" if envv is not None else \
                "environment unreadable"
            return f"{host}: process {who} {what}"
        argv = _vector(row.get("argv"))
        line = f": {' '.join(argv)}" if argv else ""
        return f"{host}: process {who} started{line}"
    fields = "; ".join(f"{k}={_text(v)}" for k, v in row.items() if k != "missing")
    return f"{host}: {command}: {fields}"


#: Timesketch's own fields: a row field of the same name is kept as ``kvmfx_<name>``.
_TIMESKETCH_RESERVED = frozenset({"message", "datetime", "timestamp", "timestamp_desc",
                                  "data_type", "no_time_reason"})


def untimed_reason(row: dict[str, Any], dump: DumpId, command: str) -> str:
    """Why a row has no time: what is missing, for the event's ``no_time_reason``."""
    capture = "the live system has no capture time" if dump.path is None else \
        "the dump's capture time is not known"
    if "start_time" in row or (command in PROCESS_COMMANDS and "pid" in row):
        return f"the process's start time could not be read and {capture}"
    return f"{command} rows have no time and {capture}"


def timesketch_event(row: dict[str, Any], dump: DumpId, command: str,
                     starts: dict[int, str], *,
                     keep_untimed: bool = False) -> dict[str, Any] | None:
    """A Timesketch event for ``row``: ``message``, ``datetime`` (ISO 8601 UTC),
    ``timestamp_desc``, ``data_type``, then the identity and the row's fields.

    ``datetime`` is the process's start (``Process Start Time``); for a row without one
    (a command without times, a process whose start could not be read) the dump's capture
    time (``Dump Capture Time``). When neither is known the row is None (Timesketch requires
    a time), or with ``keep_untimed`` an event whose ``datetime`` is null, ``timestamp_desc``
    ``No Time Known`` and ``no_time_reason`` says why."""
    when, desc = _event_time(row, starts), PROCESS_START
    if when is None and dump.captured is not None:
        when, desc = utc_iso(dump.captured), DUMP_CAPTURE
    if when is None and not keep_untimed:
        return None
    event: dict[str, Any] = {"message": message(row, dump, command), "datetime": when,
                             "timestamp_desc": desc if when is not None else NO_TIME,
                             "data_type": f"kvmfx:{command}"}
    if when is None:
        event["no_time_reason"] = untimed_reason(row, dump, command)
    for key, value in with_identity(row, dump, command).items():
        name = key.lstrip("_") or "field"  # Timesketch drops fields starting with "_"
        event[f"kvmfx_{name}" if name in _TIMESKETCH_RESERVED else name] = value
    return event


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _drop_none(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` without None values and without objects left empty."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            value = _drop_none(value)
            if not value:
                continue
        if value is not None:
            out[key] = value
    return out


def ecs_document(row: dict[str, Any], dump: DumpId, command: str, starts: dict[int, str],
                 created: str) -> dict[str, Any]:
    """An ECS document for ``row``. ``@timestamp`` is the process's start when known, else
    the dump's capture time when known, else ``created`` (when kvmfx wrote the document:
    ECS's rule for events without a time of their own). Fields kvmfx does not know are left
    out (``process.executable``: a dump holds argv[0], which a process may set to
    anything)."""
    when = _event_time(row, starts)
    is_process = command in PROCESS_COMMANDS and _int(row.get("pid")) is not None
    argv = _vector(row.get("argv"))
    process: dict[str, Any] | None = None
    if is_process:
        pid = _int(row.get("pid"))
        process = {
            "pid": pid,
            "parent": {"pid": _int(row.get("ppid"))},
            "name": row.get("comm") if isinstance(row.get("comm"), str) else None,
            "args": argv,
            "args_count": len(argv) if argv is not None else None,
            "command_line": " ".join(argv) if argv else None,
            "start": when,
            "env_vars": _vector(row.get("envv")),
            "group_leader": {"pid": _int(row.get("pgid"))},
            "session_leader": {"pid": _int(row.get("sid"))},
        }
        tid = _int(row.get("tid"))
        if tid is not None:
            process["thread"] = {"id": tid}
    uid, gid = _int(row.get("uid")), _int(row.get("gid"))
    euid, egid = _int(row.get("euid")), _int(row.get("egid"))
    if process is not None:
        process["user"] = {"id": str(euid)} if euid is not None else None
        process["group"] = {"id": str(egid)} if egid is not None else None
        process["real_user"] = {"id": str(uid)} if uid is not None else None
        process["real_group"] = {"id": str(gid)} if gid is not None else None
    doc = {
        "@timestamp": when or (utc_iso(dump.captured) if dump.captured else None) or created,
        "message": message(row, dump, command),
        "ecs": {"version": ECS_VERSION},
        "event": {"kind": "state", "category": ["process" if is_process else "host"],
                  "type": ["info"], "module": "kvmfx", "dataset": f"kvmfx.{command}",
                  "created": created},
        "host": {"name": dump.host, "hostname": dump.nodename,
                 "os": {"kernel": dump.kernel_release, "type": "linux"},
                 "architecture": dump.machine},
        "process": process,
        "user": {"id": str(uid)} if uid is not None else None,
        "group": {"id": str(gid)} if gid is not None else None,
        "kvmfx": {"version": dump.kvmfx_version, "command": command,
                  "dump": {"path": dump.path, "sha256": dump.sha256,
                           "build_id": dump.build_id},
                  "partial": row.get("partial") if isinstance(row.get("partial"), bool)
                  else None,
                  "missing": json.dumps(row["missing"], ensure_ascii=False, sort_keys=True)
                  if row.get("missing") else None},
    }
    return _drop_none(doc)
