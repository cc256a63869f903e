"""Linux live system through /proc: the process model KVM_NO_FILES and live sessions use.

/proc is the kernel's own answer for a running system, so a live session takes processes,
argv and environment from it (as NetBSD's libkvm takes them from sysctl).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from kvmfx.errors import ProcessError
from kvmfx.hookspecs import hookimpl
from kvmfx.process import ArgVector, Credentials, OSProfile, Process, split_nul_block
from kvmfx.session import Session

if TYPE_CHECKING:  # pathlib is imported when /proc is read, not at every start
    from pathlib import Path

PF_KTHREAD = 0x00200000


def _clock_ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):
        return 100


def parse_stat(text: str) -> dict[str, str | int]:
    """Parse /proc/PID/stat; ``comm`` may hold spaces and parentheses."""
    open_paren, close_paren = text.find("("), text.rfind(")")
    if open_paren < 0 or close_paren < open_paren:
        raise ValueError("malformed stat line")
    comm = text[open_paren + 1:close_paren]
    rest = text[close_paren + 2:].split()
    pid = int(text[:open_paren])
    # Fields numbered as in proc(5): rest[0] is field 3 (state).
    def f(n: int) -> int:
        return int(rest[n - 3])
    return {"pid": pid, "comm": comm, "state": rest[0], "ppid": f(4), "pgrp": f(5),
            "session": f(6), "tty_nr": f(7), "flags": f(9), "nice": f(19),
            "num_threads": f(20), "starttime": f(22), "rss": f(24)}


def parse_status(text: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Tgid", "NSpid"):
            out[key] = [int(v) for v in value.split()]
    return out


class ProcfsProfile:
    """Processes of the running Linux system, read from /proc."""

    name = "linux-procfs"
    description = "Linux live system via /proc (used by live sessions and KVM_NO_FILES)"

    def __init__(self, root: str = "/proc") -> None:
        self._root = root
        self._tick = _clock_ticks()

    @property
    def root(self) -> Path:
        from pathlib import Path

        return Path(self._root)

    def applies(self, session: Session) -> int:
        if session.live and sys.platform.startswith("linux") and (self.root / "self").exists():
            return 90
        return 0

    def _btime(self) -> float | None:
        try:
            for line in (self.root / "stat").read_text().splitlines():
                if line.startswith("btime "):
                    return float(line.split()[1])
        except OSError:
            pass
        return None

    def _read_process(self, d: Path, btime: float | None) -> Process | None:
        try:
            st = parse_stat((d / "stat").read_text(errors="surrogateescape"))
            status = parse_status((d / "status").read_text(errors="replace"))
        except (OSError, ValueError, IndexError):
            return None  # exited while we looked, or not a process directory
        uids = status.get("Uid", [0, 0, 0, 0])
        nspid = status.get("NSpid")
        gids = status.get("Gid", [0, 0, 0, 0])
        start_boot = int(st["starttime"]) / self._tick
        return Process(
            pid=int(st["pid"]), ppid=int(st["ppid"]), comm=str(st["comm"]),
            state=str(st["state"]), tgid=(status.get("Tgid") or [int(st["pid"])])[0],
            pgid=int(st["pgrp"]), sid=int(st["session"]), uid=uids[0], euid=uids[1],
            suid=uids[2], gid=gids[0], egid=gids[1], sgid=gids[2], flags=int(st["flags"]),
            nthreads=int(st["num_threads"]), tty=int(st["tty_nr"]), rss=int(st["rss"]),
            nice=int(st["nice"]), start_boot=start_boot,
            start_time=(btime + start_boot) if btime is not None else None,
            kernel_thread=bool(int(st["flags"]) & PF_KTHREAD), nspid=nspid[-1] if nspid else None,
            source="procfs", handle=str(d))

    def processes(self, session: Session) -> Iterator[Process]:
        btime = self._btime()
        try:
            pids = sorted(int(e.name) for e in os.scandir(self.root) if e.name.isdigit())
        except OSError as exc:
            raise ProcessError(f"cannot list processes: {exc.strerror}",
                               path=str(self.root)) from None
        for pid in pids:
            proc = self._read_process(self.root / str(pid), btime)
            if proc is not None:
                yield proc

    def threads(self, session: Session, proc: Process) -> Iterator[Process]:
        btime = self._btime()
        task_dir = self.root / str(proc.pid) / "task"
        try:
            tids = sorted(int(e.name) for e in os.scandir(task_dir) if e.name.isdigit())
        except OSError:
            return
        for tid in tids:
            t = self._read_process(task_dir / str(tid), btime)
            if t is not None:
                yield t

    def _vector(self, proc: Process, name: str) -> ArgVector:
        from pathlib import Path

        path = Path(str(proc.handle or self.root / str(proc.pid))) / name
        try:
            return ArgVector(split_nul_block(path.read_bytes()))
        except PermissionError:
            return ArgVector([], partial=True, missing=f"{path}: permission denied")
        except FileNotFoundError:
            return ArgVector([], partial=True, missing=f"{path}: process has exited")
        except ProcessLookupError:
            return ArgVector([], partial=True, missing=f"{path}: process has exited")
        except OSError as exc:
            return ArgVector([], partial=True, missing=f"{path}: {exc.strerror}")

    def argv(self, session: Session, proc: Process) -> ArgVector:
        return self._vector(proc, "cmdline")

    def envv(self, session: Session, proc: Process) -> ArgVector:
        return self._vector(proc, "environ")

    def credentials(self, session: Session, proc: Process) -> Credentials:
        """The credentials in the process's /proc/PID/status (plugins/linux/creds.py)."""
        from pathlib import Path

        from kvmfx_plugins.linux.creds import procfs_credentials

        return procfs_credentials(Path(str(proc.handle or self.root / str(proc.pid))))

    def loadavg(self, session: Session) -> tuple[float, float, float]:
        try:
            parts = (self.root / "loadavg").read_text().split()
            return float(parts[0]), float(parts[1]), float(parts[2])
        except (OSError, ValueError, IndexError) as exc:
            raise ProcessError(f"cannot read load averages: {exc}",
                               path=str(self.root / "loadavg")) from None

    def boot_time(self, session: Session) -> float | None:
        return self._btime()

    def uname(self, session: Session) -> dict[str, str]:
        u = os.uname()
        return {"sysname": u.sysname, "nodename": u.nodename, "release": u.release,
                "version": u.version, "machine": u.machine}


@hookimpl
def kvmfx_os_profiles() -> list[OSProfile]:
    return [ProcfsProfile()]
