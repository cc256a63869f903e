"""The libkvm API of kvm(3) and kvm_open(3), as Python functions.

A thin layer over :class:`kvmfx.session.Session`: names, arguments, return values and both
error styles follow the BSD manual pages. Where C returns NULL, these return ``None``; where C
fills a caller's buffer, these fill a ``bytearray`` (or a one-element list for counts).

Error styles (kvm_open(3)):

* :func:`kvm_open` (Sun style): with ``errstr`` set, every error is printed to stderr as
  ``errstr: message``; with ``errstr=None`` nothing is printed.
* :func:`kvm_openfiles` (BSD style): an open failure writes the message into ``errbuf``
  (at most ``_POSIX2_LINE_MAX`` bytes) and prints nothing; later errors are read with
  :func:`kvm_geterr`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableSequence
from dataclasses import dataclass, field
from typing import Any

import construct as cs

from kvmfx.errors import KvmError, UnsupportedError, UsageError
from kvmfx.process import ArgVector, Process
from kvmfx.session import Session

O_RDONLY = os.O_RDONLY
O_WRONLY = os.O_WRONLY
O_RDWR = os.O_RDWR
#: NetBSD <kvm.h>: use sysctl-style sources only (on Linux: /proc); no files are opened.
KVM_NO_FILES = 0x80000000
#: <limits.h>: size of the errbuf kvm_openfiles() fills.
_POSIX2_LINE_MAX = 2048

# KERN_PROC_* operations of kvm_getproc2(3) (NetBSD <sys/sysctl.h>).
KERN_PROC_ALL = 0
KERN_PROC_PID = 1
KERN_PROC_PGRP = 2
KERN_PROC_SESSION = 3
KERN_PROC_TTY = 4
KERN_PROC_UID = 5
KERN_PROC_RUID = 6
KERN_PROC_GID = 7
KERN_PROC_RGID = 8
#: with KERN_PROC_TTY: processes with no controlling terminal.
KERN_PROC_TTY_NODEV = -1

# p_stat values (NetBSD LWP states) that Linux task states map to.
LSIDL, LSRUN, LSSLEEP, LSSTOP, LSZOMB, LSDEAD, LSONPROC = 1, 2, 3, 4, 5, 6, 7
_LINUX_STATE_TO_STAT = {"R": LSRUN, "S": LSSLEEP, "D": LSSLEEP, "I": LSSLEEP, "T": LSSTOP,
                        "t": LSSTOP, "Z": LSZOMB, "X": LSDEAD, "W": LSSLEEP, "P": LSSLEEP}

# nlist n_type values (<nlist.h>).
N_UNDF, N_EXT, N_ABS, N_TEXT, N_DATA, N_BSS = 0x00, 0x01, 0x02, 0x04, 0x06, 0x08

KI_NGROUPS, KI_MAXCOMLEN, KI_WMESGLEN, KI_MAXLOGNAME, KI_MAXEMULLEN = 16, 24, 8, 24, 16

#: NetBSD's struct kinfo_proc2, declared once; field offsets decide what ``elemsize`` keeps.
KINFO_PROC2 = cs.Struct(
    *(name / cs.Int64ul for name in (
        "p_forw", "p_back", "p_paddr", "p_addr", "p_fd", "p_cwdi", "p_stats", "p_limit",
        "p_vmspace", "p_sigacts", "p_sess", "p_tsess", "p_ru")),
    "p_eflag" / cs.Int32sl, "p_exitsig" / cs.Int32sl, "p_flag" / cs.Int32sl,
    "p_pid" / cs.Int32sl, "p_ppid" / cs.Int32sl, "p_sid" / cs.Int32sl, "p__pgid" / cs.Int32sl,
    "p_tpgid" / cs.Int32sl,
    "p_uid" / cs.Int32ul, "p_ruid" / cs.Int32ul, "p_gid" / cs.Int32ul, "p_rgid" / cs.Int32ul,
    "p_groups" / cs.Array(KI_NGROUPS, cs.Int32ul), "p_ngroups" / cs.Int16sl,
    "p_jobc" / cs.Int16sl, "p_tdev" / cs.Int32ul,
    "p_estcpu" / cs.Int32ul, "p_rtime_sec" / cs.Int32ul, "p_rtime_usec" / cs.Int32ul,
    "p_cpticks" / cs.Int32sl, "p_pctcpu" / cs.Int32ul, "p_swtime" / cs.Int32ul,
    "p_slptime" / cs.Int32ul, "p_schedflags" / cs.Int32sl,
    "p_uticks" / cs.Int64ul, "p_sticks" / cs.Int64ul, "p_iticks" / cs.Int64ul,
    "p_tracep" / cs.Int64ul, "p_traceflag" / cs.Int32sl, "p_holdcnt" / cs.Int32sl,
    *(name / cs.Array(4, cs.Int32ul) for name in (
        "p_siglist", "p_sigmask", "p_sigignore", "p_sigcatch")),
    "p_stat" / cs.Int8sl, "p_priority" / cs.Int8ul, "p_usrpri" / cs.Int8ul,
    "p_nice" / cs.Int8ul, "p_xstat" / cs.Int16ul, "p_acflag" / cs.Int16ul,
    "p_comm" / cs.PaddedString(KI_MAXCOMLEN, "utf8"),
    "p_wmesg" / cs.PaddedString(KI_WMESGLEN, "utf8"), "p_wchan" / cs.Int64ul,
    "p_login" / cs.PaddedString(KI_MAXLOGNAME, "utf8"),
    "p_vm_rssize" / cs.Int32sl, "p_vm_tsize" / cs.Int32sl, "p_vm_dsize" / cs.Int32sl,
    "p_vm_ssize" / cs.Int32sl,
    "p_uvalid" / cs.Int64sl, "p_ustart_sec" / cs.Int32ul, "p_ustart_usec" / cs.Int32ul,
    "p_uutime_sec" / cs.Int32ul, "p_uutime_usec" / cs.Int32ul,
    "p_ustime_sec" / cs.Int32ul, "p_ustime_usec" / cs.Int32ul,
    *(name / cs.Int64ul for name in (
        "p_uru_maxrss", "p_uru_ixrss", "p_uru_idrss", "p_uru_isrss", "p_uru_minflt",
        "p_uru_majflt", "p_uru_nswap", "p_uru_inblock", "p_uru_oublock", "p_uru_msgsnd",
        "p_uru_msgrcv", "p_uru_nsignals", "p_uru_nvcsw", "p_uru_nivcsw")),
    "p_uctime_sec" / cs.Int32ul, "p_uctime_usec" / cs.Int32ul,
    "p_cpuid" / cs.Int64ul, "p_realflag" / cs.Int64ul, "p_nlwps" / cs.Int64ul,
    "p_nrlwps" / cs.Int64ul, "p_realstat" / cs.Int64ul,
    "p_svuid" / cs.Int32ul, "p_svgid" / cs.Int32ul,
    "p_ename" / cs.PaddedString(KI_MAXEMULLEN, "utf8"),
    "p_vm_vsize" / cs.Int64sl, "p_vm_msize" / cs.Int64sl,
)


def _field_ends() -> list[tuple[str, int]]:
    ends, off = [], 0
    for sub in KINFO_PROC2.subcons:
        off += sub.sizeof()
        ends.append((sub.name, off))
    return ends


_KP2_FIELD_ENDS = _field_ends()
#: sizeof(struct kinfo_proc2) on LP64 NetBSD.
KINFO_PROC2_SIZE = _KP2_FIELD_ENDS[-1][1]
#: where p_groups starts: a caller's kinfo_proc2 shorter than this has no group fields
_KP2_GROUPS_START = dict(_KP2_FIELD_ENDS)["p_groups"] - 4 * KI_NGROUPS


class KinfoProc2:
    """A kinfo_proc2 record: NetBSD field names holding the process's values.

    Only the fields that fit within the caller's ``elemsize`` are filled (the rest are zero),
    as kvm_getproc2(3) copies only ``elemsize`` bytes per entry. The full record as the C
    structure's bytes is :meth:`pack`.
    """

    def __init__(self, values: dict[str, Any], elemsize: int = KINFO_PROC2_SIZE) -> None:
        defaults = KINFO_PROC2.parse(bytes(KINFO_PROC2_SIZE))
        for name, end in _KP2_FIELD_ENDS:
            value = values.get(name, defaults[name]) if end <= elemsize else defaults[name]
            setattr(self, name, value)
        self.elemsize = elemsize

    def pack(self) -> bytes:
        data = KINFO_PROC2.build({n: getattr(self, n) for n, _ in _KP2_FIELD_ENDS})
        return data[:self.elemsize]

    def __repr__(self) -> str:
        return (f"KinfoProc2(p_pid={self.p_pid}, p_ppid={self.p_ppid}, "  # type: ignore
                f"p_comm={self.p_comm!r})")  # type: ignore[attr-defined]


def _group_values(session: Session, proc: Process) -> dict[str, Any]:
    """kinfo_proc2's ``p_ngroups`` (how many supplementary groups the process has) and
    ``p_groups`` (the first KI_NGROUPS of them), as NetBSD's fill_kproc2 sets them; none
    where the credentials cannot be read (the fields stay zero)."""
    try:
        groups = session.credentials(proc).groups
    except KvmError:
        groups = None
    if groups is None:
        return {}
    first = groups[:KI_NGROUPS]
    return {"p_ngroups": min(len(groups), 0x7FFF),
            "p_groups": [*first, *[0] * (KI_NGROUPS - len(first))]}


def _kinfo_values(proc: Process) -> dict[str, Any]:
    uid = proc.uid or 0
    euid = proc.euid if proc.euid is not None else uid
    gid = proc.gid or 0
    egid = proc.egid if proc.egid is not None else gid
    start = proc.start_time
    values: dict[str, Any] = {
        "p_pid": proc.pid, "p_ppid": proc.ppid or 0, "p_sid": proc.sid or 0,
        "p__pgid": proc.pgid or 0, "p_uid": euid, "p_ruid": uid, "p_gid": egid,
        "p_rgid": gid, "p_svuid": proc.suid if proc.suid is not None else euid,
        "p_svgid": proc.sgid if proc.sgid is not None else egid,
        "p_tdev": (proc.tty or 0) & 0xFFFFFFFF,
        "p_stat": _LINUX_STATE_TO_STAT.get(proc.state[:1], LSSLEEP),
        "p_realstat": _LINUX_STATE_TO_STAT.get(proc.state[:1], LSSLEEP),
        "p_comm": (proc.comm or "").encode("utf-8", "replace")[:KI_MAXCOMLEN - 1]
        .decode("utf-8", "ignore"),
        "p_flag": (proc.flags or 0) & 0x7FFFFFFF,
        "p_nlwps": proc.nthreads or 1,
        "p_vm_rssize": min(proc.rss or 0, 0x7FFFFFFF),
        "p_nice": (proc.nice or 0) & 0xFF,
        "p_paddr": proc.handle if isinstance(proc.handle, int) else 0,
        "p_ename": "linux",
    }
    if start is not None:
        values["p_uvalid"] = 1
        values["p_ustart_sec"] = int(start) & 0xFFFFFFFF
        values["p_ustart_usec"] = int((start - int(start)) * 1e6)
    return values


@dataclass
class nlist:  # noqa: N801 - the C structure's name
    """An entry of the list kvm_nlist(3) fills: ``n_name`` in, ``n_value``/``n_type`` out."""

    n_name: str | None
    n_type: int = N_UNDF
    n_value: int = 0


@dataclass
class kvm_t:  # noqa: N801 - the C type's name
    """The descriptor kvm_open()/kvm_openfiles() return."""

    session: Session
    program: str | None = None
    errbuf: str = ""
    flags: int = O_RDONLY
    _argv_cache: dict[tuple[int, str], Any] = field(default_factory=dict, repr=False)

    def _err(self, message: str) -> None:
        """Record an error; in the Sun style (``program`` set) also print it."""
        self.errbuf = message[:_POSIX2_LINE_MAX - 1]
        if self.program is not None:
            print(f"{self.program}: {self.errbuf}", file=sys.stderr)


def _fill_errbuf(errbuf: bytearray | None, message: str) -> None:
    if errbuf is None:
        return
    data = message.encode("utf-8", "replace")[:_POSIX2_LINE_MAX - 1]
    errbuf[:] = data


def _open(execfile: str | None, corefile: str | None, swapfile: str | None,
          flags: int) -> Session:
    if flags & KVM_NO_FILES:
        if flags & ~KVM_NO_FILES:
            raise UsageError(f"bad flags arg {flags:#x}: KVM_NO_FILES takes no other flags")
        return Session(no_files=True)
    if flags not in (O_RDONLY, O_WRONLY, O_RDWR):
        raise UsageError(f"bad flags arg {flags:#x} (O_RDONLY, O_WRONLY, O_RDWR or "
                         "KVM_NO_FILES)")
    session = Session(corefile=corefile, execfile=execfile, swapfile=swapfile,
                      writable=flags != O_RDONLY)
    try:
        if corefile is None:
            session.open_memory()  # kvm_open(3): corefile NULL means _PATH_MEM, now
    except BaseException:
        session.close()
        raise
    return session


def kvm_open(execfile: str | None, corefile: str | None, swapfile: str | None, flags: int,
             errstr: str | None) -> kvm_t | None:
    """Open kernel memory, Sun style: errors go to stderr prefixed with ``errstr``."""
    try:
        session = _open(execfile, corefile, swapfile, flags)
    except KvmError as exc:
        if errstr is not None:
            print(f"{errstr}: {exc}", file=sys.stderr)
        return None
    return kvm_t(session, program=errstr, flags=flags)


def kvm_openfiles(execfile: str | None, corefile: str | None, swapfile: str | None,
                  flags: int, errbuf: bytearray | None) -> kvm_t | None:
    """Open kernel memory, BSD style: an open error goes into ``errbuf``, nothing printed."""
    try:
        session = _open(execfile, corefile, swapfile, flags)
    except KvmError as exc:
        _fill_errbuf(errbuf, str(exc))
        return None
    return kvm_t(session, program=None, flags=flags)


def kvm_close(kd: kvm_t | None) -> int:
    """Close the descriptor: 0 on success, -1 on failure (already closed, not a kvm_t)."""
    if not isinstance(kd, kvm_t) or kd.session.closed:
        return -1
    try:
        kd.session.close()
    except OSError:
        return -1
    return 0


def kvm_geterr(kd: kvm_t) -> str:
    """The message of the most recent error on ``kd``."""
    return kd.errbuf


def _guard(kd: kvm_t, fail: Any, fn: Any, *args: Any) -> Any:
    if not isinstance(kd, kvm_t) or kd.session.closed:
        if isinstance(kd, kvm_t):
            kd._err("descriptor is closed")
        return fail
    try:
        return fn(*args)
    except KvmError as exc:
        kd._err(str(exc))
        return fail


def kvm_read(kd: kvm_t, addr: int, buf: bytearray | memoryview, nbytes: int) -> int:
    """Read ``nbytes`` of kernel virtual memory at ``addr`` into ``buf``; count or -1."""
    def do() -> int:
        if nbytes > len(buf):
            raise UsageError(f"buffer of {len(buf)} bytes is smaller than nbytes {nbytes}")
        data = kd.session.read(addr, nbytes)
        buf[:len(data)] = data
        return len(data)
    return int(_guard(kd, -1, do))


def kvm_write(kd: kvm_t, addr: int, buf: bytes | bytearray | memoryview, nbytes: int) -> int:
    """Write ``nbytes`` of ``buf`` to kernel virtual memory; count or -1 (dumps: always -1)."""
    return int(_guard(kd, -1, lambda: kd.session.write(addr, bytes(buf[:nbytes]))))


_NM_TYPES = {"t": N_TEXT, "w": N_TEXT, "d": N_DATA, "r": N_DATA, "g": N_DATA, "v": N_DATA,
             "b": N_BSS, "s": N_BSS, "a": N_ABS}


def kvm_nlist(kd: kvm_t, nl: MutableSequence[nlist]) -> int:
    """Fill ``n_value``/``n_type`` for each name; the number of names not found, or -1.

    The list ends at the first entry whose ``n_name`` is None or empty, as in C. Names may
    carry the a.out leading underscore.
    """
    def do() -> int:
        table = kd.session.symbols
        missing = 0
        for entry in nl:
            if not entry.n_name:
                break
            name = entry.n_name
            sym = table.symbols.get(name) or (table.symbols.get(name[1:])
                                             if name.startswith("_") else None)
            if sym is None:
                entry.n_type, entry.n_value = N_UNDF, 0
                missing += 1
                continue
            kind = sym.type
            entry.n_value = sym.address
            entry.n_type = _NM_TYPES.get(kind.lower(), N_DATA) | (N_EXT if kind.isupper() else 0)
        return missing
    return int(_guard(kd, -1, do))


def _matches(proc: Process, op: int, arg: int) -> bool:
    if op == KERN_PROC_ALL:
        return True
    if op == KERN_PROC_PID:
        return proc.pid == arg
    if op == KERN_PROC_PGRP:
        return proc.pgid == arg
    if op == KERN_PROC_SESSION:
        return proc.sid == arg
    if op == KERN_PROC_TTY:
        return (proc.tty or 0) == 0 if arg == KERN_PROC_TTY_NODEV else proc.tty == arg
    if op == KERN_PROC_UID:
        return (proc.euid if proc.euid is not None else proc.uid) == arg
    if op == KERN_PROC_RUID:
        return proc.uid == arg
    if op == KERN_PROC_GID:
        return (proc.egid if proc.egid is not None else proc.gid) == arg
    if op == KERN_PROC_RGID:
        return proc.gid == arg
    raise UsageError(f"invalid KERN_PROC operation {op}")


def kvm_getproc2(kd: kvm_t, op: int, arg: int, elemsize: int,
                 cnt: MutableSequence[int] | None) -> list[KinfoProc2] | None:
    """Processes matching ``op``/``arg`` as kinfo_proc2 records; None on error.

    ``cnt[0]`` receives the number of records; ``elemsize`` is the caller's
    sizeof(struct kinfo_proc2): each record holds only the fields within that size.
    """
    def do() -> list[KinfoProc2]:
        if elemsize <= 0:
            raise UsageError(f"invalid elemsize {elemsize}")
        _matches(Process(0, 0, ""), op, arg)  # validate op before walking anything
        procs = [p for p in kd.session.processes() if _matches(p, op, arg)]
        out = []
        for p in procs:
            kd._argv_cache[(p.pid, "proc")] = p
            values = _kinfo_values(p)
            if elemsize > _KP2_GROUPS_START:
                values.update(_group_values(kd.session, p))
            out.append(KinfoProc2(values, elemsize))
        if cnt is not None:
            cnt[0] = len(out)
        return out
    result = _guard(kd, None, do)
    if result is None and cnt is not None:
        cnt[0] = 0
    return result


def _refuse_no_files(kd: kvm_t, name: str) -> None:
    """kvm_open(3): a KVM_NO_FILES descriptor serves kvm_getproc2, kvm_getargv2 and
    kvm_getenvv2 only."""
    if kd.session.no_files:
        raise UnsupportedError(f"{name} is not available with KVM_NO_FILES (only "
                               "kvm_getproc2, kvm_getargv2 and kvm_getenvv2 are)")


def kvm_getprocs(kd: kvm_t, op: int, arg: int,
                 cnt: MutableSequence[int] | None) -> list[KinfoProc2] | None:
    """kvm_getprocs(3): as :func:`kvm_getproc2` with full-size records; not with
    KVM_NO_FILES."""
    if isinstance(kd, kvm_t) and kd.session.no_files:
        _guard(kd, None, _refuse_no_files, kd, "kvm_getprocs")
        if cnt is not None:
            cnt[0] = 0
        return None
    return kvm_getproc2(kd, op, arg, KINFO_PROC2_SIZE, cnt)


def _process_for(kd: kvm_t, kp: KinfoProc2 | Process) -> Process:
    if isinstance(kp, Process):
        return kp
    pid = kp.p_pid  # type: ignore[attr-defined]
    cached = kd._argv_cache.get((pid, "proc"))
    if cached is not None:
        return cached
    for p in kd.session.processes():
        if p.pid == pid:
            return p
    raise UsageError(f"no process with pid {pid}")


def _limit(vec: ArgVector, nchr: int) -> list[str]:
    strings = vec.strings()
    if nchr <= 0:
        return strings
    out, used = [], 0
    for s in strings:
        if used >= nchr:
            break
        out.append(s[:nchr - used])
        used += len(s) + 1
    return out


def kvm_getargv2(kd: kvm_t, kp: KinfoProc2 | Process, nchr: int) -> list[str] | None:
    """The process's argv; at most ``nchr`` characters in all (0: no limit). None on error."""
    return _guard(kd, None, lambda: _limit(kd.session.argv(_process_for(kd, kp)), nchr))


def kvm_getenvv2(kd: kvm_t, kp: KinfoProc2 | Process, nchr: int) -> list[str] | None:
    """The process's environment strings, as :func:`kvm_getargv2`."""
    return _guard(kd, None, lambda: _limit(kd.session.envv(_process_for(kd, kp)), nchr))


def kvm_getargv(kd: kvm_t, kp: KinfoProc2 | Process, nchr: int) -> list[str] | None:
    """kvm_getargv(3): as :func:`kvm_getargv2`, but not with KVM_NO_FILES."""
    def do() -> list[str]:
        _refuse_no_files(kd, "kvm_getargv")
        return _limit(kd.session.argv(_process_for(kd, kp)), nchr)
    return _guard(kd, None, do)


def kvm_getenvv(kd: kvm_t, kp: KinfoProc2 | Process, nchr: int) -> list[str] | None:
    """kvm_getenvv(3): as :func:`kvm_getenvv2`, but not with KVM_NO_FILES."""
    def do() -> list[str]:
        _refuse_no_files(kd, "kvm_getenvv")
        return _limit(kd.session.envv(_process_for(kd, kp)), nchr)
    return _guard(kd, None, do)


def kvm_getloadavg(kd: kvm_t, loadavg: MutableSequence[float], nelem: int) -> int:
    """Fill up to ``nelem`` (at most 3) load averages; the number filled, or -1."""
    def do() -> int:
        _refuse_no_files(kd, "kvm_getloadavg")
        values = kd.session.loadavg()
        n = max(0, min(nelem, 3))
        for i in range(n):
            if i < len(loadavg):
                loadavg[i] = values[i]
            else:
                loadavg.append(values[i])
        return n
    return int(_guard(kd, -1, do))


def kvm_getkernelname(kd: kvm_t, buf: bytearray, len_: int) -> int:
    """Copy the name of the kernel file in use (the symbol source) into ``buf``; 0 or -1."""
    def do() -> int:
        name = kd.session.symbols.source.encode()
        if len(name) + 1 > len_:
            raise UsageError(f"buffer of {len_} bytes too small for the kernel name")
        buf[:] = name
        return 0
    return int(_guard(kd, -1, do))
