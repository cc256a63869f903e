"""Linux credentials and privileges of a process, as /proc/PID/status shows them.

fs/proc/array.c renders them from the task's objective credentials, ``task->real_cred``
(``__task_cred`` / ``get_task_cred``: the credentials others see the task by, not the
subjective ``task->cred`` it acts with while it overrides them): task_state's ``Uid:``,
``Gid:`` and ``Groups:`` lines, task_cap's ``CapInh:`` .. ``CapAmb:`` and task_seccomp's
``NoNewPrivs:`` (``PFA_NO_NEW_PRIVS`` in ``task->atomic_flags``), ``Seccomp:``
(``task->seccomp.mode``) and ``Seccomp_filters:`` (``task->seccomp.filter_count``, since
Linux 5.9). A ``kernel_cap_t`` is ``u32 cap[2]`` up to Linux 6.2 and ``u64 val`` since 6.3;
both print as 16 hex digits, the high word first.

Ids are printed as the reader's user namespace maps them (``from_kuid_munged``); kvmfx
shows them as the initial namespace does: the kernel's own value, except the invalid id
(-1), which /proc prints as the overflow id (``overflowuid``/``overflowgid``, 65534 unless
changed by sysctl).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from kvmfx.errors import KvmError, ProcessError
from kvmfx.objects import Fields, Object
from kvmfx.process import Credentials
from kvmfx.session import Session

if TYPE_CHECKING:  # the live system's /proc reader below needs none of the dump readers
    from pathlib import Path

    from kvmfx_plugins.linux.tasks import LinuxKernel

#: NGROUPS_MAX: setgroups(2) takes no more; a larger count is not a group_info
MAX_GROUPS = 65536
#: include/linux/sched.h: the bit of task->atomic_flags prctl(PR_SET_NO_NEW_PRIVS) sets
PFA_NO_NEW_PRIVS = 0
#: INVALID_UID / INVALID_GID, which from_kuid_munged prints as the overflow id
INVALID_ID = 0xFFFF_FFFF
#: DEFAULT_OVERFLOWUID / DEFAULT_OVERFLOWGID
DEFAULT_OVERFLOW_ID = 65534

#: the ids in /proc's order (Uid: real effective saved fs; Gid: the same)
IDS = ("uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid")
#: Credentials field -> struct cred member, in /proc's order
CAPS = {"cap_inh": "cap_inheritable", "cap_prm": "cap_permitted", "cap_eff": "cap_effective",
        "cap_bnd": "cap_bset", "cap_amb": "cap_ambient"}
#: /proc/PID/status line -> Credentials field
STATUS_CAPS = {"CapInh": "cap_inh", "CapPrm": "cap_prm", "CapEff": "cap_eff",
               "CapBnd": "cap_bnd", "CapAmb": "cap_amb"}

#: every field of a Credentials record
FIELDS = (*IDS, "groups", *CAPS, "no_new_privs", "seccomp", "seccomp_filters")

_I32 = struct.Struct("<i").unpack_from


class CredLayout:
    """What :func:`task_credentials` reads of one kernel's task_struct, cred and
    group_info, laid out once: the members of each structure as one
    :class:`~kvmfx.objects.Fields` read. Members this kernel does not have are left out,
    with why (``absent``)."""

    def __init__(self, k: LinuxKernel) -> None:
        types = k.types
        seccomp = types.layout("seccomp") if types.has("seccomp") else {}
        #: field -> why this kernel does not have it
        self.absent: dict[str, str] = {}
        paths = ["real_cred", "atomic_flags"]
        self.has_mode = "mode" in seccomp
        if self.has_mode:
            paths.append("seccomp.mode")
        else:
            self.absent["seccomp"] = "this kernel has no seccomp (built without CONFIG_SECCOMP)"
        self.has_filters = "filter_count" in seccomp
        if self.has_filters:
            paths.append("seccomp.filter_count.counter")
        else:
            self.absent["seccomp_filters"] = (
                "this kernel keeps no seccomp filter count (before Linux 5.9, or built without "
                "CONFIG_SECCOMP_FILTER)")
        self.task = Fields(types, "task_struct", paths)
        #: 32-bit words of a kernel_cap_t: 2 (``cap[2]``, up to 6.2), or 0 for ``u64 val``
        self.cap_words = cap_words(k)
        cap_paths = [f"{m}.val" for m in CAPS.values()] if not self.cap_words else \
            [f"{m}.cap[{i}]" for m in CAPS.values() for i in range(self.cap_words)]
        self.cred = Fields(types, "cred", [*(f"{n}.val" for n in IDS), *cap_paths,
                                           "group_info"])
        self.overflow_uid = overflow_id(k, "overflowuid")
        self.overflow_gid = overflow_id(k, "overflowgid")


def cap_words(k: LinuxKernel) -> int:
    """How a kernel_cap_t holds its bits: 0 for ``u64 val`` (Linux 6.3+), else the
    number of 32-bit words of its ``cap[]`` array (2: _KERNEL_CAPABILITY_U32S)."""
    types = k.types
    layout = types.layout_of(types.resolve(types.member("cred", "cap_effective")[1]))
    if "val" in layout:
        return 0
    t = types.get(types.resolve(layout["cap"][1]))
    return max(1, min(t.nelems, 8))


def overflow_id(k: LinuxKernel, name: str) -> int:
    """The kernel's ``overflowuid`` or ``overflowgid`` (what /proc prints for an id the
    reader's namespace cannot map); the default 65534 where its symbol is unknown or its
    page unreadable."""
    addr = k.symbols.lookup(name)
    if addr is None:
        return DEFAULT_OVERFLOW_ID
    try:
        value = _I32(k.read(addr, 4))[0]
    except KvmError:
        return DEFAULT_OVERFLOW_ID
    return value if 0 <= value < INVALID_ID else DEFAULT_OVERFLOW_ID


def cred_layout(session: Session, k: LinuxKernel) -> CredLayout | None:
    """The session's :class:`CredLayout` (None: this kernel's structures are not all
    covered; every task is then read member by member)."""
    data = session.plugin_data
    if "linux-creds" not in data:
        try:
            data["linux-creds"] = CredLayout(k)
        except KvmError:
            data["linux-creds"] = None
    return data["linux-creds"]


def _munged(value: int, overflow: int) -> int:
    """from_kuid_munged / from_kgid_munged in the initial user namespace."""
    return overflow if value == INVALID_ID else value


def task_groups(k: LinuxKernel, group_info: int, overflow_gid: int = DEFAULT_OVERFLOW_ID
                ) -> list[int]:
    """The supplementary groups in a ``struct group_info`` (``ngroups``, then ``gid[]``),
    as /proc prints them (``overflow_gid`` for the invalid gid)."""
    if not group_info:
        raise ProcessError("cred.group_info is NULL")
    types = k.types
    n = _I32(k.read(group_info + types.offsetof("group_info", "ngroups"), 4))[0]
    if not 0 <= n <= MAX_GROUPS:
        raise ProcessError(f"group_info.ngroups is {n}: not a group count (0..{MAX_GROUPS})",
                           address=group_info)
    raw = k.read(group_info + types.offsetof("group_info", "gid"), 4 * n) if n else b""
    return [overflow_gid if g == INVALID_ID else g for g in struct.unpack(f"<{n}I", raw)]


def _cap_value(words: tuple[int, ...] | list[int]) -> int:
    """The bits of a kernel_cap_t's ``cap[]`` words as one integer (``cap[0]`` the low
    32 bits); a ``u64 val`` (one word) as it is."""
    if len(words) == 1:
        return words[0]
    return sum((w & 0xFFFF_FFFF) << (32 * i) for i, w in enumerate(words))


def task_credentials(session: Session, k: LinuxKernel, address: int) -> Credentials:
    """The credentials /proc/PID/status shows for the task at ``address``: its
    ``real_cred``'s ids, supplementary groups and capability sets, its no_new_privs flag
    and seccomp state. What cannot be read is None, with why in ``missing``."""
    layout = cred_layout(session, k)
    if layout is not None:
        try:
            return _fast(k, layout, address)
        except KvmError:
            pass  # member by member: each field that cannot be read says why
    return _member_by_member(k, layout, address)


def _fast(k: LinuxKernel, layout: CredLayout, address: int) -> Credentials:
    """task_credentials when the task's and the cred's members are wholly readable."""
    read = k.read
    vals = layout.task.read(read, address)
    real_cred, atomic_flags = vals[0], vals[1]
    if not real_cred:
        raise ProcessError("task_struct.real_cred is NULL", address=address)
    c = layout.cred.read(read, real_cred)
    ou, og = layout.overflow_uid, layout.overflow_gid
    values: dict[str, Any] = {name: _munged(c[i], ou if i < 4 else og)
                              for i, name in enumerate(IDS)}
    n = layout.cap_words or 1
    for i, name in enumerate(CAPS):
        values[name] = _cap_value(c[8 + i * n:8 + (i + 1) * n])
    creds = Credentials(**values,
                        no_new_privs=bool(atomic_flags >> PFA_NO_NEW_PRIVS & 1))
    at = 2
    if layout.has_mode:
        creds.seccomp = vals[at]
        at += 1
    if layout.has_filters:
        creds.seccomp_filters = vals[at]
    creds.missing = dict(layout.absent)
    try:
        creds.groups = task_groups(k, c[-1], og)
    except KvmError as exc:
        creds.missing["groups"] = str(exc)
    return creds


def _member_by_member(k: LinuxKernel, layout: CredLayout | None, address: int
                      ) -> Credentials:
    """task_credentials through :class:`~kvmfx.objects.Object` views: a member on a page
    the dump lacks leaves that field None, with why, and the rest is still read."""
    from kvmfx_plugins.linux.tasks import FieldReader

    try:
        task = k.task(address)
    except KvmError as exc:
        return Credentials(missing=dict.fromkeys(FIELDS, f"task_struct unreadable: {exc}"))
    f = FieldReader()
    ou = layout.overflow_uid if layout is not None else DEFAULT_OVERFLOW_ID
    og = layout.overflow_gid if layout is not None else DEFAULT_OVERFLOW_ID

    def real_cred() -> Object:
        cred = k.obj("cred", task.real_cred)
        if cred is None:
            raise ProcessError("task_struct.real_cred is NULL", address=address)
        return cred

    def cred_id(cred: Object, name: str) -> int:
        return _munged(cred.member(name).val, ou if name.endswith("uid") else og)

    out: dict[str, Any] = {}
    cred = f.get("cred", real_cred)
    if cred is None:
        why = f.missing.pop("cred")
        f.missing.update(dict.fromkeys((*IDS, "groups", *CAPS), why))
    else:
        for name in IDS:
            out[name] = f.get(name, lambda name=name: cred_id(cred, name))
        for name, member in CAPS.items():
            out[name] = f.get(name, lambda member=member: _cap_of(cred.member(member)))
        out["groups"] = f.get("groups", lambda: task_groups(k, cred.group_info, og))
    out["no_new_privs"] = f.get("no_new_privs",
                                lambda: bool(task.atomic_flags >> PFA_NO_NEW_PRIVS & 1))
    seccomp = f.get("seccomp", lambda: task.seccomp)
    if seccomp is not None and seccomp.has("mode"):
        out["seccomp"] = f.get("seccomp", lambda: seccomp.mode)
    if seccomp is not None and seccomp.has("filter_count"):
        out["seccomp_filters"] = f.get("seccomp_filters",
                                       lambda: seccomp.filter_count.counter)
    elif "seccomp" in f.missing:
        f.missing["seccomp_filters"] = f.missing["seccomp"]
    if layout is not None:
        for name, why in layout.absent.items():
            f.missing.setdefault(name, why)
    return Credentials(**out, missing=f.missing)


def _cap_of(cap: Object) -> int:
    """A kernel_cap_t view's bits (``val``, or the words of ``cap[]``)."""
    return cap.val if cap.has("val") else _cap_value(cap.cap)


# -- the live system: /proc/PID/status ---------------------------------------------------


def parse_status_credentials(text: str, where: str = "status") -> Credentials:
    """The credentials in the text of a /proc/PID/status file; a line the file lacks (an
    older kernel, a kernel without seccomp) or that does not read as numbers leaves its
    fields None, with why."""
    lines: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if sep:
            lines[name] = rest.strip()
    values: dict[str, Any] = {}
    missing: dict[str, str] = {}
    numbers = {"Uid": IDS[:4], "Gid": IDS[4:], "Groups": ("groups",),
               **{key: (name,) for key, name in STATUS_CAPS.items()},
               "NoNewPrivs": ("no_new_privs",), "Seccomp": ("seccomp",),
               "Seccomp_filters": ("seccomp_filters",)}
    for key, names in numbers.items():
        value = lines.get(key)
        if value is None:
            missing.update(dict.fromkeys(names, f"{where} has no {key}: line"))
            continue
        try:
            if key in STATUS_CAPS:
                values[names[0]] = int(value, 16)
            elif key == "Groups":
                values["groups"] = [int(v) for v in value.split()]
            elif key == "NoNewPrivs":
                values["no_new_privs"] = bool(int(value))
            else:
                ints = [int(v) for v in value.split()]
                if len(ints) != len(names):
                    raise ValueError(f"{len(ints)} numbers")
                values.update(zip(names, ints, strict=True))
        except ValueError as exc:
            missing.update(dict.fromkeys(names, f"{where}: {key}: {value!r}: {exc}"))
    return Credentials(**values, missing=missing)


def procfs_credentials(directory: Path) -> Credentials:
    """The credentials of the process (or thread) whose /proc directory is ``directory``;
    when its status cannot be read (the process exited, no permission), every field is
    None with why."""
    path = directory / "status"
    try:
        text = path.read_text(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return Credentials(missing=dict.fromkeys(FIELDS, f"{path}: process has exited"))
    except OSError as exc:
        return Credentials(missing=dict.fromkeys(FIELDS, f"{path}: {exc.strerror}"))
    return parse_status_credentials(text, str(path))
