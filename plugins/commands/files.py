"""File commands: lsof (every open file descriptor) and mounts (every mount namespace's
mountinfo).

On a dump both read the kernel's structures (plugins/linux/vfs.py, mounts.py); on the live
system they read /proc/PID/fd, fdinfo and mountinfo, which say the same.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from kvmfx.commands import Column, Command
from kvmfx.errors import KvmError
from kvmfx.hookspecs import hookimpl
from kvmfx.process import Process
from kvmfx.session import Session
from kvmfx_plugins.commands.ps import FILTERS, MISSING, selected

PARTIAL = Column("partial", "bool", "the process's file table could not be read (wholly, "
                 "or past this row): the row stands for what is missing")


def _linux_kernel(session: Session) -> Any:
    """The Linux kernel of a dump (None on the live system, read through /proc)."""
    if session.live:
        return None
    from kvmfx_plugins.linux.tasks import LinuxDumpProfile

    profile = session.profile
    if not isinstance(profile, LinuxDumpProfile):
        from kvmfx.errors import UnsupportedError

        raise UnsupportedError("open files and mounts are read from Linux kernels only")
    return profile.kernel(session)


class Lsof(Command):
    def __init__(self) -> None:
        super().__init__(
            name="lsof", description="Open file descriptors of each process (as "
                                     "/proc/PID/fd and fdinfo show them).",
            columns=[Column("pid", "int", "process id"), Column("comm", "str", "command name"),
                     Column("fd", "int", "file descriptor number"),
                     Column("path", "str", "what /proc/PID/fd/N links to: the path (with "
                            "' (deleted)' for a file removed since), or pipe:[INODE], "
                            "socket:[INODE], anon_inode:[KIND], NS:[INODE]; paths "
                            "against pid 1's root"),
                     Column("pos", "int", "file position (fdinfo pos)"),
                     Column("flags", "str", "open flags in octal, as fdinfo's flags: "
                            "(O_CLOEXEC included)"),
                     Column("inode", "int", "inode number (fdinfo ino)"),
                     Column("mnt_id", "int", "mount id of the file's mount (fdinfo mnt_id, "
                            "mountinfo's first field)"),
                     PARTIAL, MISSING],
            options=FILTERS)

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        k = _linux_kernel(session)
        if k is None:
            for p in selected(session, options):
                yield from _live_files(p)
            return
        from kvmfx_plugins.linux.vfs import vfs

        v = vfs(k)
        for p in selected(session, options):
            yield from _dump_files(v, p)


def _file_row(p: Process, fd: int | None) -> dict[str, Any]:
    return {"pid": p.pid, "comm": p.comm, "fd": fd, "path": None, "pos": None,
            "flags": None, "inode": None, "mnt_id": None, "partial": False,
            "missing": None}


def _dump_files(v: Any, p: Process) -> Iterator[dict[str, Any]]:
    from kvmfx_plugins.linux.vfs import fdinfo_flags

    try:
        for of in v.task_files(p.handle):
            row = _file_row(p, of.fd)
            missing: dict[str, str] = {}
            try:
                info = v.file_info(of.file)
            except KvmError as exc:
                for name in ("path", "pos", "flags", "inode", "mnt_id"):
                    missing[name] = f"struct file unreadable: {exc}"
            else:
                row["pos"] = info.pos
                if of.cloexec is None:
                    missing["flags"] = "the file table's close-on-exec bitmap is unreadable"
                else:
                    row["flags"] = fdinfo_flags(info, of.cloexec)
                row["inode"], row["mnt_id"] = info.inode, info.mnt_id
                missing.update(info.missing)
                try:
                    row["path"] = v.d_path(info.path)
                except KvmError as exc:
                    missing["path"] = str(exc)
            row["missing"] = missing or None
            yield row
    except KvmError as exc:
        row = _file_row(p, None)
        row["partial"] = True
        row["missing"] = {"fd": f"file table unreadable: {exc}"}
        yield row


def _live_files(p: Process) -> Iterator[dict[str, Any]]:
    from pathlib import Path

    base = Path(str(p.handle))
    try:
        fds = sorted(int(e.name) for e in os.scandir(base / "fd") if e.name.isdigit())
    except OSError as exc:
        if isinstance(exc, FileNotFoundError | ProcessLookupError):
            return  # exited
        row = _file_row(p, None)
        row["partial"] = True
        row["missing"] = {"fd": f"{base / 'fd'}: {exc.strerror}"}
        yield row
        return
    for fd in fds:
        row = _file_row(p, fd)
        missing: dict[str, str] = {}
        try:
            row["path"] = os.readlink(base / "fd" / str(fd))
        except OSError as exc:
            missing["path"] = f"{base / 'fd' / str(fd)}: {exc.strerror}"
        try:
            fields = dict(line.split(":", 1) for line in
                          (base / "fdinfo" / str(fd)).read_text().splitlines()
                          if ":" in line)
            row["pos"] = int(fields["pos"])
            row["flags"] = fields["flags"].strip()
            row["mnt_id"] = int(fields["mnt_id"])
            row["inode"] = int(fields["ino"]) if "ino" in fields else \
                os.stat(base / "fd" / str(fd)).st_ino
        except (OSError, KeyError, ValueError) as exc:
            for name in ("pos", "flags", "inode", "mnt_id"):
                if row[name] is None:
                    missing[name] = f"{base / 'fdinfo' / str(fd)}: {exc}"
        row["missing"] = missing or None
        yield row


MOUNT_COLUMNS = [
    Column("mnt_ns", "str", "the mount namespace, as /proc/PID/ns/mnt names it: "
           "mnt:[INODE]"),
    Column("pid", "int", "the process whose root the lines are seen from (the namespace's "
           "first process, a user process where there is one)"),
    Column("mount_id", "int", "mount id (mountinfo field 1)"),
    Column("parent_id", "int", "parent mount's id (field 2; its own id at the root)"),
    Column("dev", "str", "device, major:minor of the filesystem (field 3)"),
    Column("root", "str", "the mount's root within its filesystem (field 4)"),
    Column("mount_point", "str", "where it is mounted, against the process's root (field "
           "5)"),
    Column("mount_options", "str", "per-mount options (field 6: rw/ro, nosuid, nodev, "
           "noexec, atime options, nosymfollow, idmapped)"),
    Column("propagation", "str", "optional fields, space-separated: shared:N, master:N, "
           "propagate_from:N, unbindable (empty for a private mount)"),
    Column("fstype", "str", "filesystem type, with .subtype where it has one"),
    Column("source", "str", "mount source (the device, or the name it was mounted with; "
           "none)"),
    Column("super_options", "str", "superblock options: rw/ro, sync, dirsync, mand, "
           "lazytime, then the filesystem's own (size=, mode=, ...)"),
    MISSING,
]


class Mounts(Command):
    def __init__(self) -> None:
        super().__init__(
            name="mounts", description="Mounts of every mount namespace (as "
                                       "/proc/PID/mountinfo shows them).",
            columns=MOUNT_COLUMNS)

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        k = _linux_kernel(session)
        if k is None:
            yield from _live_mounts(session)
            return
        from kvmfx_plugins.linux.mounts import mounts

        m = mounts(k)
        procs = [(p.pid, p.handle, p.kernel_thread) for p in session.processes()]
        warn = session.warnings.append
        for ns in m.namespaces(procs, warn):
            try:
                addresses = list(m.mounts(ns, warn))
            except KvmError as exc:
                warn(f"mount namespace {ns.name or hex(ns.address)}: mounts unreadable: "
                     f"{exc}")
                continue
            for mount in addresses:
                info = m.mountinfo(mount, ns.reader_root, ns.why_no_reader)
                if info is None:
                    continue  # outside the process's root: mountinfo shows no line
                missing = dict(info.missing)
                if ns.inum is None:
                    missing["mnt_ns"] = "struct mnt_namespace unreadable"
                yield {"mnt_ns": ns.name, "pid": ns.reader_pid, "mount_id": info.mount_id,
                       "parent_id": info.parent_id, "dev": info.dev, "root": info.root,
                       "mount_point": info.mount_point,
                       "mount_options": info.mount_options,
                       "propagation": info.propagation, "fstype": info.fstype,
                       "source": info.source, "super_options": info.super_options,
                       "missing": missing or None}


def unescape(field: str) -> str:
    """A mountinfo field as the kernel escaped it (``\\ooo`` for space, tab, newline and
    backslash), unescaped."""
    out, i = [], 0
    while i < len(field):
        digits = field[i + 1:i + 4]
        if field[i] == "\\" and len(digits) == 3 and all(c in "01234567" for c in digits):
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[dict[str, Any]]:
    """The lines of /proc/PID/mountinfo as rows of the mounts command (without mnt_ns
    and pid)."""
    rows = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) < 10 or "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        rows.append({"mount_id": int(fields[0]), "parent_id": int(fields[1]),
                     "dev": fields[2], "root": unescape(fields[3]),
                     "mount_point": unescape(fields[4]), "mount_options": fields[5],
                     "propagation": " ".join(fields[6:sep]),
                     "fstype": unescape(fields[sep + 1]),
                     "source": unescape(fields[sep + 2]),
                     "super_options": " ".join(fields[sep + 3:])})
    return rows


def _live_mounts(session: Session) -> Iterator[dict[str, Any]]:
    seen: set[str] = set()
    for p in session.processes():
        from pathlib import Path

        base = Path(str(p.handle))
        try:
            ns = os.readlink(base / "ns" / "mnt")
            if ns in seen:
                continue
            text = (base / "mountinfo").read_text(errors="surrogateescape")
        except OSError:
            continue  # exited, or not ours to read: another process of it may be
        seen.add(ns)
        for row in parse_mountinfo(text):
            yield {"mnt_ns": ns, "pid": p.pid, **row, "missing": None}


@hookimpl
def kvmfx_commands() -> list[Command]:
    return [Lsof(), Mounts()]
