"""One process model over every operating system and source (live /proc, Linux dumps, BSD).

An OS profile turns what it reads into :class:`Process` records and :class:`ArgVector`
results; commands and the libkvm layer only ever see these.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from kvmfx.records import Record, record_fields

if TYPE_CHECKING:
    from kvmfx.session import Session


class Process(Record):
    """A process (a thread-group leader) or, in thread listings, one thread.

    Field names are the stable output schema (docs/output.md). Times are seconds; a
    ``start_time`` is an absolute UTC timestamp when the source allows it, else ``None`` and
    ``start_boot`` (seconds since boot) alone is set.
    """

    __slots__ = ("pid", "ppid", "comm", "state", "tgid", "pgid", "sid", "uid", "euid", "suid",
                 "gid", "egid", "sgid", "flags", "nthreads", "tty", "rss", "nice", "nspid",
                 "start_boot", "start_time", "kernel_thread", "source", "missing", "handle")
    _no_repr = frozenset({"handle"})
    _no_compare = frozenset({"missing", "handle"})

    pid: int
    ppid: int | None
    comm: str | None
    state: str
    tgid: int | None
    pgid: int | None
    sid: int | None
    uid: int | None
    euid: int | None
    suid: int | None
    gid: int | None
    egid: int | None
    sgid: int | None
    flags: int | None
    nthreads: int | None
    tty: int | None
    rss: int | None
    nice: int | None
    #: the pid in the process's own pid namespace (equal to pid outside containers)
    nspid: int | None
    start_boot: float | None
    start_time: float | None
    kernel_thread: bool
    #: where the record came from: ``procfs``, ``task_list``, ``scan``...
    source: str
    #: fields that could not be read (their value is None): field name -> why
    #: (not compared)
    missing: dict[str, str]
    #: opaque handle an OS profile uses to find the process again (an address, a path);
    #: neither shown nor compared
    handle: Any

    def __init__(self, pid: int, ppid: int | None, comm: str | None, state: str = "?",
                 tgid: int | None = None, pgid: int | None = None, sid: int | None = None,
                 uid: int | None = None, euid: int | None = None, suid: int | None = None,
                 gid: int | None = None, egid: int | None = None, sgid: int | None = None,
                 flags: int | None = None, nthreads: int | None = None,
                 tty: int | None = None, rss: int | None = None, nice: int | None = None,
                 nspid: int | None = None, start_boot: float | None = None,
                 start_time: float | None = None, kernel_thread: bool = False,
                 source: str = "", missing: dict[str, str] | None = None,
                 handle: Any = None) -> None:
        self.pid = pid
        self.ppid = ppid
        self.comm = comm
        self.state = state
        self.tgid = tgid
        self.pgid = pgid
        self.sid = sid
        self.uid = uid
        self.euid = euid
        self.suid = suid
        self.gid = gid
        self.egid = egid
        self.sgid = sgid
        self.flags = flags
        self.nthreads = nthreads
        self.tty = tty
        self.rss = rss
        self.nice = nice
        self.nspid = nspid
        self.start_boot = start_boot
        self.start_time = start_time
        self.kernel_thread = kernel_thread
        self.source = source
        self.missing = {} if missing is None else missing
        self.handle = handle

    def as_row(self) -> dict[str, Any]:
        """The record as an output row: every field but ``handle`` (values are numbers,
        strings and flags: a shallow copy is a copy), ``missing`` None when empty."""
        row = {name: getattr(self, name) for name in _ROW_FIELDS}
        row["missing"] = dict(self.missing) or None
        return row


#: a row's fields, in the record's order
_ROW_FIELDS = tuple(f for f in record_fields(Process) if f != "handle")


class Credentials(Record):
    """A process's credentials and privileges, as its OS reports them for the process
    (Linux: the task's objective credentials, as /proc/PID/status shows them).

    Ids are the values the kernel holds (on Linux, as seen from the initial user
    namespace); capability sets are the sets' bits as one integer (bit N: capability N).
    A field that could not be read, or that this kernel does not have, is None and
    ``missing`` says why.
    """

    __slots__ = ("uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid", "groups",
                 "cap_inh", "cap_prm", "cap_eff", "cap_bnd", "cap_amb", "no_new_privs",
                 "seccomp", "seccomp_filters", "missing")
    _no_compare = frozenset({"missing"})

    uid: int | None
    euid: int | None
    suid: int | None
    fsuid: int | None
    gid: int | None
    egid: int | None
    sgid: int | None
    fsgid: int | None
    #: supplementary groups, in the kernel's order
    groups: list[int] | None
    cap_inh: int | None
    cap_prm: int | None
    cap_eff: int | None
    cap_bnd: int | None
    cap_amb: int | None
    no_new_privs: bool | None
    #: seccomp mode (0 off, 1 strict, 2 filter) and the number of filters attached
    seccomp: int | None
    seccomp_filters: int | None
    #: fields that could not be read (their value is None): field name -> why
    #: (not compared)
    missing: dict[str, str]

    def __init__(self, uid: int | None = None, euid: int | None = None,
                 suid: int | None = None, fsuid: int | None = None, gid: int | None = None,
                 egid: int | None = None, sgid: int | None = None, fsgid: int | None = None,
                 groups: list[int] | None = None, cap_inh: int | None = None,
                 cap_prm: int | None = None, cap_eff: int | None = None,
                 cap_bnd: int | None = None, cap_amb: int | None = None,
                 no_new_privs: bool | None = None, seccomp: int | None = None,
                 seccomp_filters: int | None = None,
                 missing: dict[str, str] | None = None) -> None:
        self.uid = uid
        self.euid = euid
        self.suid = suid
        self.fsuid = fsuid
        self.gid = gid
        self.egid = egid
        self.sgid = sgid
        self.fsgid = fsgid
        self.groups = groups
        self.cap_inh = cap_inh
        self.cap_prm = cap_prm
        self.cap_eff = cap_eff
        self.cap_bnd = cap_bnd
        self.cap_amb = cap_amb
        self.no_new_privs = no_new_privs
        self.seccomp = seccomp
        self.seccomp_filters = seccomp_filters
        self.missing = {} if missing is None else missing


class ArgVector(Record):
    """argv or environment strings of one process, exactly as the kernel holds them.

    ``partial`` is True when some of the memory could not be read (swapped out without a swap
    image, not in the dump); ``missing`` then says what. ``items`` then holds only what was
    read before the first unreadable byte (its last string may be cut short); when nothing
    could be read, ``readable`` is False and ``items`` is empty.
    """

    __slots__ = ("items", "partial", "missing")
    items: list[bytes]
    partial: bool
    missing: str

    def __init__(self, items: list[bytes], partial: bool = False, missing: str = "") -> None:
        self.items = items
        self.partial = partial
        self.missing = missing

    @property
    def readable(self) -> bool:
        """False when none of the vector could be read (as opposed to an empty vector)."""
        return bool(self.items) or not self.partial

    def strings(self) -> list[str]:
        """Decoded for display: UTF-8, with undecodable bytes shown as ``\\xNN``."""
        return [b.decode("utf-8", "backslashreplace") for b in self.items]


def split_nul_block(raw: bytes) -> list[bytes]:
    """Split a NUL-separated block (Linux cmdline/environ) as ``ps``-like tools do."""
    if not raw:
        return []
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    return raw.split(b"\0")


class OSProfile(Protocol):
    """What an OS-profile plugin provides (see :func:`kvmfx.hookspecs.kvmfx_os_profiles`).

    A profile may also read a process's :class:`Credentials`, with a method
    ``credentials(session, proc) -> Credentials`` (``Session.credentials``; without it,
    UnsupportedError).
    """

    name: str
    description: str

    def applies(self, session: Session) -> int:
        """Confidence 0-100 that this profile understands the session's kernel."""
        ...

    def processes(self, session: Session) -> Iterator[Process]:
        """Every process (thread-group leaders), in kernel list order."""
        ...

    def threads(self, session: Session, proc: Process) -> Iterator[Process]:
        """The threads of one process."""
        ...

    def argv(self, session: Session, proc: Process) -> ArgVector:
        ...

    def envv(self, session: Session, proc: Process) -> ArgVector:
        ...

    def loadavg(self, session: Session) -> tuple[float, float, float]:
        ...

    def uname(self, session: Session) -> dict[str, str]:
        """sysname, nodename, release, version, machine."""
        ...

    def boot_time(self, session: Session) -> float | None:
        """Wall-clock boot time, seconds since the epoch (None when unknown)."""
        ...
