"""Linux mount namespaces and their mounts from kernel memory, as /proc/PID/mountinfo
shows them (fs/proc_namespace.c show_mountinfo).

A namespace's mounts are in the order mountinfo lists them: the namespace's ``list`` of
``mount.mnt_list`` up to Linux 6.7 (the cursors of open /proc/PID/mounts files skipped),
the ``mounts`` red-black tree by ``mnt_id_unique`` since 6.8. Each mount's line is made
against the root of the process that reads it (mountinfo shows a mount outside the
reader's root not at all, and mount points relative to it).

The superblock's options are the generic ones (show_sb_opts) followed by what the
filesystem's own ``->show_options`` prints. That function is told by its symbol (a
module's own symbols for a function in a module) and rendered from the filesystem's own
structures for tmpfs and devtmpfs (shmem_sb_info), ramfs, proc, sysfs (kernfs), devpts,
cgroup2 and cgroup v1 (kernfs roots with their own show_options and show_path), debugfs,
tracefs, bpf, pstore, hugetlbfs, and, through the module's BTF the kernel keeps
(``btf_modules``), ext4 (5.17+: its own option table) and fat/vfat; for any other the
options stop at the generic ones and the row's ``missing`` says which function was not
rendered.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from kvmfx.errors import FormatError, KvmError
from kvmfx.objects import Fields, Object, cstring
from kvmfx_plugins.linux.tasks import LinuxKernel
from kvmfx_plugins.linux.vfs import MAX_STEPS as PATH_STEPS
from kvmfx_plugins.linux.vfs import Vfs, VfsPath, vfs

#: at most this many mounts in one namespace (fs.mount-max defaults to 100,000)
MAX_MOUNTS = 1 << 20

# include/linux/mount.h: per-mount flags (mnt_flags)
MNT_NOSUID, MNT_NODEV, MNT_NOEXEC = 0x01, 0x02, 0x04
MNT_NOATIME, MNT_NODIRATIME, MNT_RELATIME = 0x08, 0x10, 0x20
MNT_READONLY, MNT_NOSYMFOLLOW = 0x40, 0x80
#: propagation flags in mnt_flags up to Linux 6.16
MNT_SHARED, MNT_UNBINDABLE = 0x1000, 0x2000
#: the cursor a reader of /proc/PID/mounts puts in the namespace's list (5.8 .. 6.7)
MNT_CURSOR = 0x10000000
#: propagation flags in mount.mnt_t_flags since they moved there (fs/mount.h)
T_SHARED, T_UNBINDABLE = 1, 2
#: show_mnt_opts, in its order
MNT_OPTS = ((MNT_NOSUID, ",nosuid"), (MNT_NODEV, ",nodev"), (MNT_NOEXEC, ",noexec"),
            (MNT_NOATIME, ",noatime"), (MNT_NODIRATIME, ",nodiratime"),
            (MNT_RELATIME, ",relatime"), (MNT_NOSYMFOLLOW, ",nosymfollow"))
# include/linux/fs.h: superblock flags (s_flags)
SB_RDONLY, SB_SYNCHRONOUS, SB_MANDLOCK, SB_DIRSYNC = 1, 16, 64, 128
SB_LAZYTIME = 1 << 25
#: show_sb_opts, in its order
SB_OPTS = ((SB_SYNCHRONOUS, ",sync"), (SB_DIRSYNC, ",dirsync"), (SB_MANDLOCK, ",mand"),
           (SB_LAZYTIME, ",lazytime"))
#: the kernel's dev_t: minor in the low 20 bits
MINORBITS = 20
#: mm/shmem.c shmem_format_huge
SHMEM_HUGE = {1: "always", 2: "within_size", 3: "advise", 0xFF: "deny", 0xFE: "force"}
#: fs/proc/root.c hidepid2str
HIDEPID = {1: "noaccess", 2: "invisible", 4: "ptraceable"}
#: drivers/tty/pty.c: NR_UNIX98_PTY_MAX (devpts shows max= below it)
NR_UNIX98_PTY_MAX = 1 << MINORBITS
#: fs/ramfs/inode.c RAMFS_DEFAULT_MODE
RAMFS_DEFAULT_MODE = 0o755
#: kernel/cgroup/cgroup.c cgroup_show_options: the default hierarchy's flags, in order
CGROUP2_OPTS = (("CGRP_ROOT_NS_DELEGATE", "nsdelegate"),
                ("CGRP_ROOT_FAVOR_DYNMODS", "favordynmods"),
                ("CGRP_ROOT_MEMORY_LOCAL_EVENTS", "memory_localevents"),
                ("CGRP_ROOT_MEMORY_RECURSIVE_PROT", "memory_recursiveprot"),
                ("CGRP_ROOT_MEMORY_HUGETLB_ACCOUNTING", "memory_hugetlb_accounting"),
                ("CGRP_ROOT_PIDS_LOCAL_EVENTS", "pids_localevents"))
#: kernel/cgroup/cgroup-v1.c cgroup1_show_options: a hierarchy's flags, in order
CGROUP1_FLAGS = (("CGRP_ROOT_NOPREFIX", "noprefix"), ("CGRP_ROOT_XATTR", "xattr"),
                 ("CGRP_ROOT_CPUSET_V2_MODE", "cpuset_v2_mode"),
                 ("CGRP_ROOT_FAVOR_DYNMODS", "favordynmods"))
#: what seq_show_option escapes in an option's name and value, and mountinfo in a path
OPTION_NAME_ESCAPES = ",= \t\n\\"
OPTION_VALUE_ESCAPES = ", \t\n\\"
PATH_ESCAPES = " \t\n\\"
#: CONFIG_PSTORE_DEFAULT_KMSG_BYTES's default (pstore shows kmsg_bytes= when it differs)
PSTORE_DEFAULT_KMSG_BYTES = 10240
# fs/ext4/ext4.h and super.c: mount option bits, the option table's flags (Linux 5.17+,
# the fs_context API) and the defaults _ext4_show_options compares with
EXT4_ERRORS_OPTS = ((0x20, 2, "errors=remount-ro"), (0x10, 1, "errors=continue"),
                    (0x40, 3, "errors=panic"))
EXT4_DATA_FLAGS = 0xC00
EXT4_DATA = {0x400: "data=journal", 0x800: "data=ordered", 0xC00: "data=writeback"}
EXT4_MOUNT_DAX_ALWAYS, EXT4_MOUNT_DATA_ERR_ABORT = 0x200, 0x10000000
EXT4_MOUNT_INIT_INODE_TABLE = 0x80000000
EXT4_MOUNT2_DAX_NEVER, EXT4_MOUNT2_DAX_INODE, EXT4_MOUNT2_MB_OPTIMIZE_SCAN = 0x20, 0x40, 0x80
MOPT_SET, MOPT_CLEAR, MOPT_SKIP, MOPT_2 = 0x1, 0x2, 0x80, 0x100
JBD2_DEFAULT_MAX_COMMIT_AGE, EXT4_DEF_MAX_BATCH_TIME = 5, 15000
EXT4_DEF_INODE_READAHEAD_BLKS, EXT4_DEF_LI_WAIT_MULT = 32, 10
MB_DEFAULT_LINEAR_SCAN_THRESHOLD = 16
SB_INLINECRYPT = 1 << 17
#: quota formats (include/uapi/linux/quota.h) as ext4_show_quota_options names them
QFMT = {1: "vfsold", 2: "vfsv0", 4: "vfsv1"}
#: at most this many entries in ext4's option tables
MAX_OPTION_TABLE = 512
# fs/fat/fat.h: shortname= and errors= as fat_show_options prints them
VFAT_SFN_DISPLAY_LOWER, VFAT_SFN_DISPLAY_WIN95, VFAT_SFN_DISPLAY_WINNT = 0x1, 0x2, 0x4
VFAT_SFN_CREATE_WIN95, VFAT_SFN_CREATE_WINNT = 0x100, 0x200
FAT_SHORTNAME = {VFAT_SFN_DISPLAY_WIN95 | VFAT_SFN_CREATE_WIN95: "win95",
                 VFAT_SFN_DISPLAY_WINNT | VFAT_SFN_CREATE_WINNT: "winnt",
                 VFAT_SFN_DISPLAY_WINNT | VFAT_SFN_CREATE_WIN95: "mixed",
                 VFAT_SFN_DISPLAY_LOWER | VFAT_SFN_CREATE_WIN95: "lower"}
FAT_ERRORS = {1: "continue", 2: "panic"}
FAT_NFS_NOSTALE_RO = 2
#: the tick rates (CONFIG_HZ) the kernel's Kconfig offers on any architecture
HZ_CHOICES = (100, 250, 300, 1000, 24, 32, 48, 64, 128, 200, 256, 500, 1024, 1200)
#: a module's BTF is at most this large
MAX_MODULE_BTF = 16 << 20


def seq_escape(text: str, chars: str) -> str:
    """seq_escape(): each of ``chars`` in ``text`` as a backslash and three octal
    digits."""
    return "".join(f"\\{ord(c):03o}" if c in chars else c for c in text)


@dataclass
class ModuleSymbols:
    """A loaded module's memory and, once asked for, its own symbols (function address
    -> name, and name -> address)."""

    address: int
    name: str
    ranges: list[tuple[int, int, str]]
    names: dict[int, str] | None = None
    addresses: dict[str, int] | None = None


class ModuleBtf:
    """A module's own BTF, split on the kernel's (its type ids follow the kernel's, its
    names index the kernel's strings first): struct layouts by name, for the module's
    private structures (ext4_sb_info, msdos_sb_info) that the kernel's BTF lacks."""

    _EXTRA = {1: 4, 3: 12, 14: 4, 17: 4}  # INT, ARRAY, VAR, DECL_TAG: bytes after a record
    _PER_MEMBER = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}

    def __init__(self, data: bytes, base_types: object, base_strings: bytes,
                 base_count: int) -> None:
        if len(data) < 24 or data[:2] != b"\x9f\xeb":
            raise FormatError("the module's BTF has no BTF header")
        hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<5I", data, 4)
        self.base_types = base_types
        self.base_strings = base_strings
        self.first = base_count + 1
        t0, s0 = hdr_len + type_off, hdr_len + str_off
        self.data = data
        self.strings = data[s0:s0 + str_len]
        self.records: list[tuple[int, int, int, int, int]] = []  # kind, vlen, flag, name, at
        at, end = t0, t0 + type_len
        while at + 12 <= end:
            name_off, info, _size = struct.unpack_from("<3I", data, at)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            self.records.append((kind, vlen, info >> 31, name_off, at))
            at += 12 + self._EXTRA.get(kind, 0) + vlen * self._PER_MEMBER.get(kind, 0)
        self._layouts: dict[str, tuple[int, dict[str, tuple[int, int, int]]]] = {}

    def name(self, off: int) -> str:
        if off < len(self.base_strings):
            strings = self.base_strings
        else:
            strings, off = self.strings, off - len(self.base_strings)
        end = strings.find(b"\0", off)
        return strings[off:end if end >= 0 else len(strings)].decode("utf-8", "replace")

    def _record(self, tid: int) -> tuple[int, int, int, int, int]:
        i = tid - self.first
        if not 0 <= i < len(self.records):
            raise FormatError(f"module BTF type {tid} out of range")
        return self.records[i]

    def sizeof(self, tid: int, depth: int = 0) -> int:
        if tid < self.first:
            return int(self.base_types.sizeof(tid))  # type: ignore[attr-defined]
        if depth > 32:
            raise FormatError("module BTF type chain too deep")
        kind, _vlen, _flag, _name, at = self._record(tid)
        size_or_type = struct.unpack_from("<I", self.data, at + 8)[0]
        if kind in (1, 4, 5, 6, 16, 19):
            return size_or_type
        if kind == 2:
            return 8
        if kind == 3:
            elem, _index, nelems = struct.unpack_from("<3I", self.data, at + 12)
            return nelems * self.sizeof(elem, depth + 1)
        return self.sizeof(size_or_type, depth + 1)

    def enumerator(self, name: str) -> int | None:
        """The value of an enumerator of any of the module's own enums."""
        for kind, vlen, _flag, _n, at in self.records:
            if kind == 6:
                for i in range(vlen):
                    off, value = struct.unpack_from("<Ii", self.data, at + 12 + 8 * i)
                    if self.name(off) == name:
                        return value
        return None

    def layout(self, struct_name: str) -> tuple[int, dict[str, tuple[int, int, int]]]:
        """A struct's size and its members (anonymous members' own flattened): name ->
        (bit offset, bit size (0: not a bitfield), byte size)."""
        if struct_name not in self._layouts:
            found = None
            for i, (kind, _vlen, _flag, name_off, _at) in enumerate(self.records):
                if kind == 4 and name_off and self.name(name_off) == struct_name:
                    found = self.first + i
                    break
            if found is None:
                raise FormatError(f"struct {struct_name} is not in the module's BTF")
            members: dict[str, tuple[int, int, int]] = {}
            self._members(found, 0, members, 0)
            self._layouts[struct_name] = (self.sizeof(found), members)
        return self._layouts[struct_name]

    def _members(self, tid: int, base: int, out: dict[str, tuple[int, int, int]],
                 depth: int) -> None:
        kind, vlen, flag, _name, at = self._record(tid)
        for i in range(vlen):
            name_off, mtype, offset = struct.unpack_from("<3I", self.data, at + 12 + 12 * i)
            bits, size = (offset & 0xFFFFFF, offset >> 24) if flag else (offset, 0)
            if name_off:
                out.setdefault(self.name(name_off), (base + bits, size, self.sizeof(mtype)))
                continue
            inner = mtype
            for _ in range(32):  # an anonymous struct or union: its members are ours
                if inner < self.first:
                    break
                ikind, _v, _f, _n, iat = self._record(inner)
                if ikind in (4, 5):
                    if depth < 8:
                        self._members(inner, base + bits, out, depth + 1)
                    break
                if ikind not in (8, 9, 10, 11, 18):
                    break
                inner = struct.unpack_from("<I", self.data, iat + 8)[0]

    def read(self, read: Callable[[int, int], bytes], struct_name: str, address: int
             ) -> BtfStruct:
        size, members = self.layout(struct_name)
        return BtfStruct(struct_name, members, read(address, size))


class BtfStruct:
    """A structure read whole, its members decoded by a module BTF layout."""

    def __init__(self, name: str, members: dict[str, tuple[int, int, int]],
                 data: bytes) -> None:
        self.name, self.members, self.data = name, members, data

    def has(self, member: str) -> bool:
        return member in self.members

    def __getitem__(self, member: str) -> int:
        found = self.members.get(member)
        if found is None:
            raise FormatError(f"{self.name} has no member {member!r}")
        bits, bit_size, size = found
        if bit_size:
            width = (bits % 8 + bit_size + 7) // 8
            word = int.from_bytes(self.data[bits // 8:bits // 8 + width], "little")
            return (word >> (bits % 8)) & ((1 << bit_size) - 1)
        return int.from_bytes(self.data[bits // 8:bits // 8 + min(size, 8)], "little")

    def offset(self, member: str) -> int:
        return self.members[member][0] // 8


@dataclass
class MountNamespace:
    """A mount namespace (``struct mnt_namespace``): its inode number (what
    /proc/PID/ns/mnt names, ``mnt:[INODE]``) and the process whose root its mountinfo is
    read against (None, with why, when no process of it has a readable root)."""

    address: int
    inum: int | None
    reader_pid: int | None = None
    reader_root: VfsPath | None = None
    why_no_reader: str = ""

    @property
    def name(self) -> str | None:
        return f"mnt:[{self.inum}]" if self.inum is not None else None


@dataclass
class MountInfo:
    """One line of /proc/PID/mountinfo, its fields decoded (paths unescaped); a field
    that could not be read is None, with why in ``missing``."""

    mount: int
    mount_id: int | None = None
    parent_id: int | None = None
    dev: str | None = None
    root: str | None = None
    mount_point: str | None = None
    mount_options: str | None = None
    propagation: str | None = None
    fstype: str | None = None
    source: str | None = None
    super_options: str | None = None
    missing: dict[str, str] = field(default_factory=dict)


class Mounts:
    """Mount namespaces and mountinfo lines of one kernel."""

    def __init__(self, k: LinuxKernel) -> None:
        self.k = k
        self.vfs: Vfs = vfs(k)
        types = k.types
        layout = types.layout("mount")
        self.t_flags = "mnt_t_flags" in layout
        self.rbtree = "mounts" in types.layout("mnt_namespace") and "mnt_node" in layout
        names = ["mnt_parent", "mnt_mountpoint", "mnt.mnt_root", "mnt.mnt_sb",
                 "mnt.mnt_flags", "mnt_id", "mnt_devname", "mnt_group_id", "mnt_master",
                 "mnt_ns"]
        if self.t_flags:
            names.append("mnt_t_flags")
        self._mount = Fields(types, "mount", names)
        self._sb = Fields(types, "super_block", ["s_dev", "s_flags", "s_type", "s_op",
                                                 "s_fs_info", "s_subtype"])
        self._sops = {name: types.offsetof("super_operations", name)
                      for name in ("show_options", "show_devname", "show_path")}
        self._nsproxy_off = types.offsetof("task_struct", "nsproxy")
        self._mnt_ns_off = types.offsetof("nsproxy", "mnt_ns")
        self._share_off = types.offsetof("mount", "mnt_share")
        self._functions: dict[int, str] | None = None
        self._totalram: int | None | bool = False
        self._inode64: bool | None = None
        self._init_user_ns: int | None | bool = False
        self._selinux: bool | None = None
        self._modules: list[ModuleSymbols] | None = None
        self._btf: dict[int, ModuleBtf | None] = {}
        self._hz: int | None | bool = False
        self._enumerators: dict[str, int] | None = None
        self._module_btfs: dict[int, int] | None = None
        #: the task whose root each reader's root came from (cgroup paths are shown
        #: relative to that task's cgroup namespace)
        self._root_task: dict[tuple[int, int], int] = {}

    # -- namespaces --------------------------------------------------------------------------
    def task_mnt_ns(self, task: int) -> int:
        """``task->nsproxy->mnt_ns`` of the task at ``task`` (0 for an exited task, which
        has no nsproxy)."""
        k = self.k
        nsproxy = int.from_bytes(k.read(task + self._nsproxy_off, 8), "little")
        if not nsproxy:
            return 0
        return int.from_bytes(k.read(nsproxy + self._mnt_ns_off, 8), "little")

    def namespaces(self, procs: Iterable[tuple[int, int, bool]],
                   warn: Callable[[str], None]) -> list[MountNamespace]:
        """Every mount namespace of the processes ``(pid, task address, kernel thread)``,
        in the order they are first met, each with the root of its first user process
        (its first process when only kernel threads are in it) to read mountinfo against,
        as /proc/PID/mountinfo of that process shows it."""
        found: dict[int, MountNamespace] = {}
        user: set[int] = set()
        for pid, task, kthread in procs:
            try:
                address = self.task_mnt_ns(task)
            except KvmError as exc:
                warn(f"pid {pid}: mount namespace unreadable: {exc}")
                continue
            if not address:
                continue  # exited: no nsproxy
            ns = found.get(address)
            if ns is None:
                ns = found[address] = self.namespace(address)
            if address in user or (ns.reader_root is not None and kthread):
                continue
            try:
                root = self.vfs.fs_path(task, "root")
            except KvmError as exc:
                if ns.reader_root is None:
                    ns.why_no_reader = f"pid {pid}: root unreadable: {exc}"
                continue
            ns.reader_pid, ns.reader_root, ns.why_no_reader = pid, root, ""
            self._root_task[(root.mnt, root.dentry)] = task
            if not kthread:
                user.add(address)
        return list(found.values())

    def namespace(self, address: int) -> MountNamespace:
        """The namespace at ``address`` (its inode number None when unreadable)."""
        inum: int | None = None
        try:
            ns = self.k.obj("mnt_namespace", address)
            if ns is not None:
                inum = int(ns.ns.inum)
        except KvmError:
            pass
        return MountNamespace(address, inum)

    def mounts(self, ns: MountNamespace, warn: Callable[[str], None]) -> Iterator[int]:
        """The namespace's mounts (``struct mount`` addresses) in mountinfo's order."""
        k = self.k
        types = k.types
        if self.rbtree:
            node_off = types.offsetof("mount", "mnt_node")
            head = ns.address + types.offsetof("mnt_namespace", "mounts")
            found = _rb_inorder(k, int.from_bytes(k.read(head, 8), "little"), warn,
                                types.offsetof("rb_node", "rb_left"),
                                types.offsetof("rb_node", "rb_right"))
            unique_off = types.offsetof("mount", "mnt_id_unique")
            keyed = []
            for node in found:
                mount = node - node_off
                try:
                    unique = int.from_bytes(k.read(mount + unique_off, 8), "little")
                except KvmError as exc:
                    warn(f"mount at {mount:#x} unreadable: {exc}")
                    continue
                keyed.append((unique, mount))
            # an rbtree's in-order walk is its key order; sorted again in case memory lies
            yield from (m for _, m in sorted(keyed))
            return
        head = ns.address + types.offsetof("mnt_namespace", "list")
        list_off = types.offsetof("mount", "mnt_list")
        flags_off = types.offsetof("mount", "mnt") + types.offsetof("vfsmount", "mnt_flags")
        sb_off = types.offsetof("mount", "mnt") + types.offsetof("vfsmount", "mnt_sb")
        for mount in k.list_entries(head, list_off, limit=MAX_MOUNTS, what="mount list"):
            try:
                flags = int.from_bytes(k.read(mount + flags_off, 4), "little")
                sb = int.from_bytes(k.read(mount + sb_off, 8), "little")
            except KvmError:
                flags, sb = 0, 1  # the line says what cannot be read
            if flags & MNT_CURSOR or not sb:
                continue  # a reader's cursor, not a mount
            yield mount

    # -- one line --------------------------------------------------------------------------
    def mountinfo(self, mount: int, root: VfsPath | None, why_no_root: str = ""
                  ) -> MountInfo | None:
        """The mountinfo line of the mount at ``mount`` (a ``struct mount``) as a reader
        whose root is ``root`` sees it; None when the mount is outside that root (the
        kernel shows no line for it). ``root`` None: the mount point is unknown
        (``why_no_root``)."""
        info = MountInfo(mount)
        missing = info.missing
        k, v = self.k, self.vfs
        try:
            vals = self._mount.read(k.read, mount)
        except KvmError as exc:
            for name in ("mount_id", "parent_id", "dev", "root", "mount_point",
                         "mount_options", "propagation", "fstype", "source",
                         "super_options"):
                missing[name] = f"struct mount unreadable: {exc}"
            return info
        (parent, _mountpoint, mnt_root, sb, mnt_flags, mnt_id, devname, group_id, master,
         mount_ns) = vals[:10]
        t_flags = vals[10] if self.t_flags else None
        info.mount_id = mnt_id
        vfsmount = mount + v.mnt_off
        try:
            info.parent_id = int.from_bytes(
                k.read(parent + k.types.offsetof("mount", "mnt_id"), 4), "little",
                signed=True)
        except KvmError as exc:
            missing["parent_id"] = str(exc)
        # the mount point first: a mount outside the reader's root has no line
        if root is None:
            missing["mount_point"] = why_no_root or "no reader's root"
        else:
            try:
                text, error = v.prepend_path(VfsPath(vfsmount, mnt_root), root)
                if error in (1, 2):
                    return None
                info.mount_point = text
            except KvmError as exc:
                missing["mount_point"] = str(exc)
        info.mount_options = ("ro" if mnt_flags & MNT_READONLY else "rw") + "".join(
            text for flag, text in MNT_OPTS if mnt_flags & flag) + \
            self._idmapped(mount, missing)
        info.propagation = self._propagation(mnt_flags, t_flags, group_id, master,
                                             mount_ns, root, missing)
        try:
            s_dev, s_flags, s_type, s_op, s_fs_info, s_subtype = self._sb.read(k.read, sb)
        except KvmError as exc:
            for name in ("dev", "root", "fstype", "source", "super_options"):
                missing[name] = f"super_block unreadable: {exc}"
            return info
        info.dev = f"{s_dev >> MINORBITS}:{s_dev & ((1 << MINORBITS) - 1)}"
        try:
            fstype = v.sb_type_name(sb)
            if s_subtype:
                subtype = v.k_string(s_subtype, 256)
                if subtype:
                    fstype += "." + subtype
            info.fstype = fstype
        except KvmError as exc:
            missing["fstype"] = str(exc)
        ops = self._ops(s_op, missing)
        info.root = self._field(missing, "root",
                                lambda: self._root(ops, mnt_root, s_fs_info, root))
        info.source = self._field(missing, "source", lambda: self._source(ops, devname))
        options = ("ro" if s_flags & SB_RDONLY else "rw") + "".join(
            text for flag, text in SB_OPTS if s_flags & flag)
        try:
            options += self._lsm_options()
            options += self._fs_options(ops.get("show_options", 0), sb, s_fs_info)
            info.super_options = options
        except KvmError as exc:
            info.super_options = None
            missing["super_options"] = f"{options} and then: {exc}"
        return info

    @staticmethod
    def _field(missing: dict[str, str], name: str, read: Callable[[], str]) -> str | None:
        try:
            return read()
        except KvmError as exc:
            missing[name] = str(exc)
            return None

    def _ops(self, s_op: int, missing: dict[str, str]) -> dict[str, int]:
        """The superblock's show_options / show_devname / show_path functions."""
        out: dict[str, int] = {}
        if not s_op:
            return out
        for name, off in self._sops.items():
            try:
                out[name] = int.from_bytes(self.k.read(s_op + off, 8), "little")
            except KvmError as exc:
                missing.setdefault({"show_options": "super_options",
                                    "show_devname": "source",
                                    "show_path": "root"}[name], str(exc))
        return out

    def function(self, address: int) -> str:
        """The name of a kernel function kvmfx knows how to render, else its symbol (for
        a message), else its address."""
        known = self._known().get(address)
        if known is not None:
            return known
        try:
            found = self.k.symbols.reverse(address)
        except (KvmError, ValueError):
            found = None
        if found is not None and not found[1]:
            return found[0]
        module = self.module_of(address)
        if module is not None and module.names is not None:
            name = module.names.get(address)
            if name is not None:
                return name
        return f"the function at {address:#x}"

    def module_of(self, address: int) -> ModuleSymbols | None:
        """The loaded module whose memory holds ``address``, with its own symbols (None
        when no module does, or the modules cannot be read)."""
        if self._modules is None:
            self._modules = []
            try:
                from kvmfx_plugins.linux.modules import modules_of
                mods = modules_of(self.k.session)
                for mod in mods.listed():
                    info = mods.read(mod)
                    self._modules.append(ModuleSymbols(mod, info.name or "", info.ranges))
            except KvmError:
                pass
        for module in self._modules:
            if any(start <= address < end for start, end, _ in module.ranges):
                if module.names is None or module.addresses is None:
                    from kvmfx_plugins.linux.modules import modules_of
                    try:
                        syms = modules_of(self.k.session).symbols(module.address)
                    except KvmError:
                        syms = []
                    module.names = {a: n for a, letter, n in syms if letter in "tT"}
                    module.addresses = {}
                    for a, _letter, n in syms:
                        module.addresses.setdefault(n, a)
                return module
        return None

    def _known(self) -> dict[int, str]:
        if self._functions is None:
            self._functions = {}
            for name in ("shmem_show_options", "ramfs_show_options", "proc_show_options",
                         "devpts_show_options", "kernfs_sop_show_options",
                         "kernfs_sop_show_path", "nsfs_show_path"):
                addr = self.k.symbols.lookup(name)
                if addr is not None:
                    self._functions[addr] = name
        return self._functions

    def _root(self, ops: dict[str, int], mnt_root: int, s_fs_info: int,
              reader: VfsPath | None = None) -> str:
        """mountinfo's 4th field: the mount's root within its filesystem."""
        fn = ops.get("show_path", 0)
        if fn:
            name = self.function(fn)
            if name == "kernfs_sop_show_path":
                scop = self._kernfs_scop(s_fs_info, "show_path")
                if scop:
                    own = self.function(scop)
                    if own != "cgroup_show_path":
                        raise FormatError(f"root shown by {own}(), which kvmfx does not "
                                          "render")
                    return self._cgroup_path(mnt_root, s_fs_info, reader)
            elif name == "nsfs_show_path":
                dentry = self.vfs.read_dentry(mnt_root)
                return f"{self.vfs.ns_kind(dentry)}:[{self.vfs.inode_number(dentry)}]"
            else:
                raise FormatError(f"root shown by {name}(), which kvmfx does not render")
        return self.vfs.dentry_path(mnt_root)

    def _source(self, ops: dict[str, int], devname: int) -> str:
        fn = ops.get("show_devname", 0)
        if fn:
            raise FormatError(f"source shown by {self.function(fn)}(), which kvmfx does "
                              "not render")
        return self.vfs.k_string(devname, 4096) if devname else "none"

    def _idmapped(self, mount: int, missing: dict[str, str]) -> str:
        """``,idmapped`` for a mount with an id mapping (5.12+)."""
        k = self.k
        layout = k.types.layout("vfsmount")
        base = mount + self.vfs.mnt_off
        try:
            if "mnt_idmap" in layout:  # 6.3+: nop_mnt_idmap is no mapping
                idmap = int.from_bytes(
                    k.read(base + k.types.offsetof("vfsmount", "mnt_idmap"), 8), "little")
                nop = k.symbols.lookup("nop_mnt_idmap")
                if nop is None:
                    missing["mount_options"] = "nop_mnt_idmap not in the symbols: " \
                        "whether the mount is idmapped is not known"
                    return ""
                return ",idmapped" if idmap != nop else ""
            if "mnt_userns" in layout:  # 5.12 .. 6.2: init_user_ns is no mapping
                userns = int.from_bytes(
                    k.read(base + k.types.offsetof("vfsmount", "mnt_userns"), 8), "little")
                init = self.init_user_ns()
                if init is None:
                    missing["mount_options"] = "init_user_ns not in the symbols: " \
                        "whether the mount is idmapped is not known"
                    return ""
                return ",idmapped" if userns != init else ""
        except KvmError as exc:
            missing["mount_options"] = f"id mapping unreadable: {exc}"
        return ""

    def init_user_ns(self) -> int | None:
        """``&init_user_ns``: its symbol, else init_task's credentials' user namespace
        (kernels whose symbols name no data)."""
        if self._init_user_ns is False:
            k = self.k
            found = k.symbols.lookup("init_user_ns")
            if found is None:
                try:
                    init = k.task(k.symbols.address_of("init_task"))
                    cred = k.obj("cred", int(init.real_cred))
                    found = int(cred.user_ns) if cred is not None else None
                except KvmError:
                    found = None
            self._init_user_ns = found
        return self._init_user_ns if self._init_user_ns is not False else None

    def _propagation(self, mnt_flags: int, t_flags: int | None, group_id: int,
                     master: int, mount_ns: int, root: VfsPath | None,
                     missing: dict[str, str]) -> str:
        """mountinfo's optional fields: shared:N, master:N, propagate_from:N,
        unbindable."""
        if t_flags is not None:
            shared, unbindable = t_flags & T_SHARED, t_flags & T_UNBINDABLE
        else:
            shared, unbindable = mnt_flags & MNT_SHARED, mnt_flags & MNT_UNBINDABLE
        out = []
        if shared:
            out.append(f"shared:{group_id}")
        if master:
            try:
                master_group = self._mount.read(self.k.read, master)[7]
                out.append(f"master:{master_group}")
                dom = self._dominating_id(mount_ns, master, root)
                if dom and dom != master_group:
                    out.append(f"propagate_from:{dom}")
            except KvmError as exc:
                missing["propagation"] = f"master mount unreadable: {exc}"
        if unbindable:
            out.append("unbindable")
        return " ".join(out)

    def _dominating_id(self, mount_ns: int, master: int, root: VfsPath | None) -> int:
        """fs/pnode.c get_dominating_id(): the peer group of the nearest master (from
        ``master`` up) with a peer in the mount's namespace ``mount_ns`` under the
        reader's root; 0 when none."""
        if root is None:
            raise FormatError("no reader's root: propagate_from cannot be told")
        seen: set[int] = set()
        m = master
        while m and m not in seen and len(seen) < MAX_MOUNTS:
            seen.add(m)
            peer = self._peer_under_root(m, mount_ns, root)
            if peer:
                return int(self._mount.read(self.k.read, peer)[7])
            m = int(self._mount.read(self.k.read, m)[8])
        return 0

    def _peer_under_root(self, mount: int, mount_ns: int, root: VfsPath) -> int:
        """fs/pnode.c get_peer_under_root(): a peer of ``mount`` (its ``mnt_share`` ring,
        itself first) in namespace ``mount_ns`` whose root the reader's root reaches."""
        k = self.k
        m, seen = mount, set[int]()
        while m not in seen and len(seen) < MAX_MOUNTS:
            seen.add(m)
            vals = self._mount.read(k.read, m)
            if vals[9] == mount_ns and self._reachable(m, vals[2], root):
                return m
            m = int.from_bytes(k.read(m + self._share_off, 8), "little") - self._share_off
            if m == mount:
                break
        return 0

    def _reachable(self, mount: int, dentry: int, root: VfsPath) -> bool:
        """fs/namespace.c is_path_reachable(): up the mounts to the reader's root mount,
        then whether the dentry is under the root's dentry (is_subdir)."""
        k, v = self.k, self.vfs
        m, steps = mount, 0
        while m + v.mnt_off != root.mnt and steps < MAX_MOUNTS:
            parent, mountpoint = self._mount.read(k.read, m)[:2]
            if parent == m:
                break
            dentry, m, steps = mountpoint, parent, steps + 1
        if m + v.mnt_off != root.mnt:
            return False
        for _ in range(PATH_STEPS):
            if dentry == root.dentry:
                return True
            d = v.read_dentry(dentry)
            if d.parent == dentry:
                return False
            dentry = d.parent
        return False

    # -- the superblock's own options -----------------------------------------------------------
    def _lsm_options(self) -> str:
        """security_sb_show_options: SELinux adds its own when it is the active LSM
        (Debian's kernels start AppArmor, which adds none)."""
        if self._selinux is None:
            state = self.k.symbols.lookup("selinux_state")
            active = False
            if state is not None and self.k.types.has("selinux_state"):
                obj = self.k.obj("selinux_state", state)
                active = bool(obj is not None and obj.has("initialized") and
                              obj.initialized)
            self._selinux = active
        if self._selinux:
            raise FormatError("SELinux is active: its superblock options are not rendered")
        return ""

    def _fs_options(self, fn: int, sb: int, s_fs_info: int) -> str:
        """What the filesystem's ``->show_options`` prints."""
        if not fn:
            return ""
        name = self.function(fn)
        if name == "shmem_show_options":
            return self._shmem_options(sb, s_fs_info)
        if name == "ramfs_show_options":
            fsi = self.k.obj("ramfs_fs_info", s_fs_info)
            if fsi is None:
                raise FormatError("ramfs superblock with no ramfs_fs_info")
            mode = int(fsi.mount_opts.mode)
            return f",mode={mode:o}" if mode != RAMFS_DEFAULT_MODE else ""
        if name == "proc_show_options":
            return self._proc_options(s_fs_info)
        if name == "devpts_show_options":
            return self._devpts_options(s_fs_info)
        if name == "kernfs_sop_show_options":
            scop = self._kernfs_scop(s_fs_info, "show_options")
            if not scop:
                return ""
            own = self.function(scop)
            if own == "cgroup_show_options":
                return self._cgroup2_options(s_fs_info)
            if own == "cgroup1_show_options":
                return self._cgroup1_options(s_fs_info)
            raise FormatError(f"options shown by the kernfs root's own {own}(), which "
                              "kvmfx does not render")
        if name in ("debugfs_show_options", "tracefs_show_options"):
            return self._debugfs_options(name, s_fs_info)
        if name == "bpf_show_options":
            return self._bpf_options(sb, s_fs_info)
        if name == "pstore_show_options":
            return self._pstore_options()
        if name == "hugetlbfs_show_options":
            return self._hugetlbfs_options(s_fs_info)
        try:
            if name == "ext4_show_options":
                return self._ext4_options(fn, sb, s_fs_info)
            if name == "fat_show_options":
                return self._fat_options(fn, s_fs_info)
        except struct.error as exc:  # a module's BTF cut short
            raise FormatError(f"{name}: the module's BTF is truncated: {exc}") from None
        raise FormatError(f"the filesystem's own options ({name}()) are not rendered")

    def _kernfs_scop(self, s_fs_info: int, name: str) -> int:
        """A kernfs root's syscall operation ``name`` (0: none): sysfs has none."""
        info = self.k.obj("kernfs_super_info", s_fs_info)
        root = self.k.obj("kernfs_root", int(info.root)) if info is not None else None
        if root is None:
            raise FormatError("kernfs superblock with no root")
        scops = int(root.syscall_ops)
        if not scops:
            return 0
        ops = self.k.obj("kernfs_syscall_ops", scops)
        return int(ops.member(name)) if ops is not None and ops.has(name) else 0

    def totalram_pages(self) -> int | None:
        """The kernel's page count (``_totalram_pages``), found through si_meminfo's
        code where no symbol names it."""
        if self._totalram is False:
            self._totalram = None
            k = self.k
            addr = k.variable("_totalram_pages", required=False)
            if addr is not None:
                try:
                    self._totalram = int.from_bytes(k.read(addr, 8), "little")
                except KvmError:
                    pass
        return self._totalram if self._totalram is not False else None

    def _shmem_options(self, sb: int, s_fs_info: int) -> str:
        """mm/shmem.c shmem_show_options."""
        info = self.k.obj("shmem_sb_info", s_fs_info)
        if info is None:
            raise FormatError("tmpfs superblock with no shmem_sb_info")
        total = self.totalram_pages()
        if total is None:
            raise FormatError("the kernel's page count (_totalram_pages) is unknown: "
                              "whether size= and nr_inodes= differ from their defaults "
                              "cannot be told")
        page_shift = (self.k.session.image.page_size - 1).bit_length()
        out = ""
        max_blocks = int(info.max_blocks)
        if max_blocks != total // 2:
            out += f",size={max_blocks << (page_shift - 10)}k"
        max_inodes = int(info.max_inodes)
        if max_inodes != total // 2:
            out += f",nr_inodes={max_inodes}"
        mode = int(info.mode)
        if mode != 0o1777:
            out += f",mode={mode:03o}"
        uid, gid = int(info.uid.val), int(info.gid.val)
        if uid:
            out += f",uid={uid}"
        if gid:
            out += f",gid={gid}"
        if info.has("full_inums"):
            if info.full_inums:
                out += ",inode64"
            elif self.inode64_default(sb):
                out += ",inode32"
        huge = int(info.huge) if info.has("huge") else 0
        if huge:
            out += f",huge={SHMEM_HUGE.get(huge, str(huge))}"
        mpol = int(info.mpol) if info.has("mpol") else 0
        if mpol:
            policy = self.k.obj("mempolicy", mpol)
            if policy is not None and int(policy.mode):
                raise FormatError(f"{out} and a memory policy (mpol=), which kvmfx does "
                                  "not render")
        if info.has("noswap") and info.noswap:
            out += ",noswap"
        superblock = self.k.obj("super_block", sb)
        if superblock is not None and superblock.has("s_encoding") and \
                int(superblock.s_encoding):
            raise FormatError(f"{out} and a casefold encoding, which kvmfx does not render")
        return out

    def inode64_default(self, sb: int) -> bool:
        """Whether the kernel was built with CONFIG_TMPFS_INODE64 (tmpfs shows inode32
        then): a tmpfs-based superblock mounted with no inode option has full_inums as
        that default. devtmpfs is mounted by the kernel itself with ``mode=0755`` only:
        its superblock tells. Unknown (FormatError) where there is none."""
        if self._inode64 is None:
            found = None
            for other in self._shmem_supers(sb):
                if self.vfs.sb_type_name(other) == "devtmpfs":
                    fs_info = int(self._sb.read(self.k.read, other)[4])
                    sbi = self.k.obj("shmem_sb_info", fs_info)
                    if sbi is not None:
                        found = bool(sbi.full_inums)
                        break
            if found is None:
                raise FormatError("a tmpfs with 32-bit inode numbers: whether inode32 is "
                                  "shown depends on CONFIG_TMPFS_INODE64, which no "
                                  "devtmpfs superblock tells here")
            self._inode64 = found
        return self._inode64

    def _shmem_supers(self, sb: int) -> Iterator[int]:
        """The superblocks of every filesystem type: the kernel's ``super_blocks`` list
        (found from any superblock's ``s_list``, whose ring holds them all)."""
        head_off = self.k.types.offsetof("super_block", "s_list")
        yield from self.k.list_entries(sb + head_off, head_off, limit=1 << 16,
                                       what="superblock list")
        yield sb

    def _proc_options(self, s_fs_info: int) -> str:
        """fs/proc/root.c proc_show_options."""
        info = self.k.obj("proc_fs_info", s_fs_info)
        if info is None:
            raise FormatError("proc superblock with no proc_fs_info")
        out = ""
        gid = int(info.pid_gid.val)
        if gid:
            out += f",gid={gid}"
        hide = int(info.hide_pid)
        if hide:
            out += f",hidepid={HIDEPID.get(hide, str(hide))}"
        if int(info.pidonly):
            out += ",subset=pid"
        return out

    def _devpts_options(self, s_fs_info: int) -> str:
        """fs/devpts/inode.c devpts_show_options."""
        info = self.k.obj("pts_fs_info", s_fs_info)
        if info is None:
            raise FormatError("devpts superblock with no pts_fs_info")
        opts = info.mount_opts
        out = ""
        if int(opts.setuid):
            out += f",uid={int(opts.uid.val)}"
        if int(opts.setgid):
            out += f",gid={int(opts.gid.val)}"
        out += f",mode={int(opts.mode):03o},ptmxmode={int(opts.ptmxmode):03o}"
        if int(opts.max) < NR_UNIX98_PTY_MAX:
            out += f",max={int(opts.max)}"
        return out

    # -- cgroup (kernel/cgroup/cgroup.c, cgroup-v1.c) ---------------------------------------
    def _kernfs_root(self, s_fs_info: int) -> Object:
        info = self.k.obj("kernfs_super_info", s_fs_info)
        root = self.k.obj("kernfs_root", int(info.root)) if info is not None else None
        if root is None:
            raise FormatError("kernfs superblock with no root")
        return root

    def _cgroup_root(self, s_fs_info: int) -> Object:
        """cgroup_root_from_kf(): the kernfs root's node's cgroup's ``cgroup_root``."""
        k = self.k
        kn = k.obj("kernfs_node", int(self._kernfs_root(s_fs_info).kn))
        cgrp = k.obj("cgroup", int(kn.priv)) if kn is not None else None
        root = k.obj("cgroup_root", int(cgrp.root)) if cgrp is not None else None
        if root is None:
            raise FormatError("cgroup hierarchy with no cgroup_root")
        return root

    def enumerator(self, name: str) -> int | None:
        """The value of an enumerator of the kernel's types, named enums or anonymous
        ones (cgroup's root flags are an anonymous enum): every enum, read once."""
        if self._enumerators is None:
            self._enumerators = {}
            types = self.k.types
            for tid in range(1, types.count + 1):
                try:
                    ctype = types.get(tid)
                except KvmError:
                    continue
                if ctype.kind == "enum":
                    for key, value in ctype.enumerators.items():
                        self._enumerators.setdefault(key, value)
        return self._enumerators.get(name)

    def _root_flags(self) -> dict[str, int]:
        out = {}
        for name, _text in CGROUP2_OPTS + CGROUP1_FLAGS:
            value = self.enumerator(name)
            if value is not None:
                out[name] = value
        return out

    def _cgroup2_options(self, s_fs_info: int) -> str:
        """cgroup_show_options: the default hierarchy's flags (cgrp_dfl_root.flags)."""
        flags = int(self._cgroup_root(s_fs_info).flags)
        known = self._root_flags()
        return "".join(f",{text}" for name, text in CGROUP2_OPTS
                       if name in known and flags & known[name])

    def _cgroup1_options(self, s_fs_info: int) -> str:
        """cgroup1_show_options: the hierarchy's controllers (by the legacy name of the
        subsystem of each of its root cgroup's css), flags, release agent,
        clone_children and name."""
        k = self.k
        root = self._cgroup_root(s_fs_info)
        known = self._root_flags()
        mask = int(root.subsys_mask)
        out = ""
        if mask:
            css = root.cgrp.subsys
            for ssid, ptr in enumerate(css):
                if not mask & (1 << ssid):
                    continue
                obj = k.obj("cgroup_subsys_state", int(ptr)) if ptr else None
                ss = k.obj("cgroup_subsys", int(obj.ss)) if obj is not None else None
                if ss is None:
                    raise FormatError(f"the hierarchy's controller {ssid} is unreadable")
                out += "," + seq_escape(self.vfs.k_string(int(ss.legacy_name), 64),
                                        OPTION_NAME_ESCAPES)
        flags = int(root.flags)
        for name, text in CGROUP1_FLAGS:
            if name in known and flags & known[name]:
                out += f",{text}"
        agent = cstring(root.release_agent_path).decode("utf-8", "backslashreplace")
        if agent:
            out += ",release_agent=" + seq_escape(agent, OPTION_VALUE_ESCAPES)
        clone = self.enumerator("CGRP_CPUSET_CLONE_CHILDREN")
        if clone is not None and int(root.cgrp.flags) & (1 << clone):
            out += ",clone_children"
        name = cstring(root.name).decode("utf-8", "backslashreplace")
        if name:
            out += ",name=" + seq_escape(name, OPTION_VALUE_ESCAPES)
        return out

    def _cgroup_path(self, dentry: int, s_fs_info: int, reader: VfsPath | None) -> str:
        """cgroup_show_path: the mount's root cgroup relative to the reader's cgroup
        namespace's cgroup in this hierarchy (kernfs_path_from_node), escaped."""
        k = self.k
        task = self._root_task.get((reader.mnt, reader.dentry)) if reader else None
        if task is None:
            raise FormatError("no reader: its cgroup namespace is not known")
        nsproxy = k.obj("nsproxy", int(k.task(task).nsproxy))
        cgns = k.obj("cgroup_namespace", int(nsproxy.cgroup_ns)) if nsproxy else None
        cset = k.obj("css_set", int(cgns.root_cset)) if cgns is not None else None
        if cset is None:
            raise FormatError("the reader's cgroup namespace is unreadable")
        root = self._cgroup_root(s_fs_info)
        scop = self._kernfs_scop(s_fs_info, "show_options")
        if scop and self.function(scop) == "cgroup_show_options":
            ns_cgroup = int(cset.dfl_cgrp)  # the default hierarchy
        else:
            ns_cgroup = 0
            head = cset.address + cset.offsetof("cgrp_links")
            link_off = k.types.offsetof("cgrp_cset_link", "cgrp_link")
            for link in k.list_entries(head, link_off, limit=1024, what="cgroup links"):
                obj = k.obj("cgrp_cset_link", link)
                cgrp = k.obj("cgroup", int(obj.cgrp)) if obj is not None else None
                if cgrp is not None and int(cgrp.root) == root.address:
                    ns_cgroup = cgrp.address
            if not ns_cgroup:
                raise FormatError("the reader's cgroup in this hierarchy is not found")
        ns_obj = k.obj("cgroup", ns_cgroup)
        if ns_obj is None:
            raise FormatError("the reader's cgroup in this hierarchy is not found")
        ns_kn = int(ns_obj.kn)
        # kernfs_dentry_node(): the dentry's inode's i_private
        root_dentry = k.obj("dentry", dentry)
        inode = k.obj("inode", int(root_dentry.d_inode)) if root_dentry is not None else None
        if inode is None:
            raise FormatError("the mount's root has no inode")
        node = int(inode.i_private)
        return seq_escape(self._kernfs_relative(node, ns_kn), PATH_ESCAPES)

    def _kernfs_chain(self, kn: int) -> list[int]:
        """A kernfs node and its parents up to the root, the root last."""
        out: list[int] = []
        parent = "parent" if "parent" in self.k.types.layout("kernfs_node") else "__parent"
        while kn and len(out) < PATH_STEPS:
            if kn in out:
                raise FormatError("kernfs parents loop")
            out.append(kn)
            kn = int(self.k.obj("kernfs_node", kn).member(parent))
        return out

    def _kernfs_relative(self, to: int, frm: int) -> str:
        """kernfs_path_from_node(to, from)."""
        if to == frm:
            return "/"
        to_chain, from_chain = self._kernfs_chain(to), self._kernfs_chain(frm)
        common = next((n for n in to_chain if n in from_chain), None)
        if common is None:
            raise FormatError("kernfs nodes of different roots")
        up = from_chain.index(common)
        down = to_chain[:to_chain.index(common)]
        names = [self.vfs.k_string(int(self.k.obj("kernfs_node", n).name), 256)
                 for n in reversed(down)]
        return "/.." * up + "".join("/" + n for n in names)

    # -- debugfs, tracefs, bpf, pstore, hugetlbfs ------------------------------------------
    def _debugfs_options(self, name: str, s_fs_info: int) -> str:
        """debugfs_show_options / tracefs_show_options: uid, gid and mode where they are
        not root's and 0700 (the options in ``mount_opts`` up to 6.x, in the info
        itself after)."""
        info = self.k.obj("debugfs_fs_info" if name.startswith("debugfs")
                          else "tracefs_fs_info", s_fs_info)
        if info is None:
            raise FormatError(f"{name}: superblock with no fs info")
        opts = info.mount_opts if info.has("mount_opts") else info
        out = ""
        uid, gid, mode = int(opts.uid.val), int(opts.gid.val), int(opts.mode)
        if uid:
            out += f",uid={uid}"
        if gid:
            out += f",gid={gid}"
        if mode != 0o700:
            out += f",mode={mode:o}"
        return out

    def _bpf_options(self, sb: int, s_fs_info: int) -> str:
        """kernel/bpf/inode.c bpf_show_options: the root inode's uid, gid (shown since
        the BPF token's options, 6.9) and mode; delegation options are not rendered."""
        k = self.k
        superblock = k.obj("super_block", sb)
        dentry = k.obj("dentry", int(superblock.s_root)) if superblock else None
        inode = k.obj("inode", int(dentry.d_inode)) if dentry is not None else None
        if inode is None:
            raise FormatError("bpf superblock with no root inode")
        out = ""
        opts = k.obj("bpf_mount_opts", s_fs_info) \
            if s_fs_info and k.types.has("bpf_mount_opts") else None
        delegating = opts is not None and opts.has("delegate_cmds")
        if delegating:
            uid, gid = int(inode.i_uid.val), int(inode.i_gid.val)
            if uid:
                out += f",uid={uid}"
            if gid:
                out += f",gid={gid}"
        mode = int(inode.i_mode) & 0o7777 & ~0o1000
        if mode != 0o777:
            out += f",mode={mode:o}"
        if delegating and opts is not None:
            for what in ("delegate_cmds", "delegate_maps", "delegate_progs",
                         "delegate_attachs"):
                if opts.has(what) and int(opts.member(what)):
                    raise FormatError(f"{out} and {what}=, which kvmfx does not render")
        return out

    def _pstore_options(self) -> str:
        """fs/pstore/inode.c pstore_show_options: kmsg_bytes where it is not
        CONFIG_PSTORE_DEFAULT_KMSG_BYTES (10240, its Kconfig default)."""
        k = self.k
        addr = k.symbols.lookup("kmsg_bytes")
        if addr is None:
            start = k.symbols.lookup("pstore_show_options")
            refs = []
            if start is not None:
                refs = [a for kind, a in k.session.arch.code_refs(k.read(start, 256), start)
                        if kind == "load"]
            if not refs:
                raise FormatError("kmsg_bytes: not in the symbols, and not found in "
                                  "pstore_show_options")
            addr = refs[0]
        value = int.from_bytes(k.read(addr, 8), "little")
        return f",kmsg_bytes={value}" if value != PSTORE_DEFAULT_KMSG_BYTES else ""

    def _hugetlbfs_options(self, s_fs_info: int) -> str:
        """fs/hugetlbfs/inode.c hugetlbfs_show_options."""
        k = self.k
        info = k.obj("hugetlbfs_sb_info", s_fs_info)
        if info is None:
            raise FormatError("hugetlbfs superblock with no hugetlbfs_sb_info")
        hstate = k.obj("hstate", int(info.hstate))
        if hstate is None:
            raise FormatError("hugetlbfs superblock with no hstate")
        page_shift = (k.session.image.page_size - 1).bit_length()
        shift = int(hstate.order) + page_shift
        out = ""
        uid, gid, mode = int(info.uid.val), int(info.gid.val), int(info.mode)
        if uid:
            out += f",uid={uid}"
        if gid:
            out += f",gid={gid}"
        if mode != 0o755:
            out += f",mode={mode:o}"
        max_inodes = int(info.max_inodes)
        if max_inodes != (1 << 64) - 1 and max_inodes != -1:
            out += f",nr_inodes={max_inodes}"
        size = (1 << shift) // 1024
        unit = "K"
        if size >= 1024:
            size, unit = size // 1024, "M"
        out += f",pagesize={size}{unit}"
        spool = k.obj("hugepage_subpool", int(info.spool)) if int(info.spool) else None
        if spool is not None:
            for member, text in (("max_hpages", "size"), ("min_hpages", "min_size")):
                value = int(spool.member(member))
                if value not in (-1, (1 << 64) - 1):
                    out += f",{text}={(value << shift) & ((1 << 64) - 1)}"
        return out

    # -- module filesystems: ext4, fat ---------------------------------------------------
    def module_btf(self, module: ModuleSymbols) -> ModuleBtf:
        """The module's own BTF (``mod->btf_data``, CONFIG_DEBUG_INFO_BTF_MODULES since
        Linux 5.11), split on the kernel's."""
        if module.address not in self._btf:
            k = self.k
            found: ModuleBtf | None = None
            btf = k.obj("btf", self._module_btfs_of().get(module.address, 0) or 0)
            if btf is not None:
                base = k.obj("btf", int(btf.base_btf))
                size, str_off = int(btf.data_size), int(btf.start_str_off)
                if base is None or not 0 < size <= MAX_MODULE_BTF or \
                        not 0 < str_off <= MAX_MODULE_BTF:
                    raise FormatError(f"{module.name}'s BTF is implausible")
                found = ModuleBtf(k.read(int(btf.data), size), k.types,
                                  k.read(int(base.strings), str_off), int(btf.start_id) - 1)
            self._btf[module.address] = found
        btf = self._btf[module.address]
        if btf is None:
            raise FormatError(f"{module.name}'s structures are not described: the kernel "
                              "holds no BTF of it (CONFIG_DEBUG_INFO_BTF_MODULES, Linux "
                              "5.11+)")
        return btf

    def _module_btfs_of(self) -> dict[int, int]:
        """struct module -> its parsed BTF (``struct btf``): the kernel's ``btf_modules``
        list (kernel/bpf/btf.c), which keeps each module's BTF after loading (the module's
        own ``btf_data`` is dropped then)."""
        if self._module_btfs is None:
            self._module_btfs = {}
            k = self.k
            if not k.types.has("btf_module"):
                raise FormatError("the kernel keeps no BTF of its modules "
                                  "(CONFIG_DEBUG_INFO_BTF_MODULES, Linux 5.11+)")
            head = k.symbols.lookup("btf_modules")
            if head is None:
                raise FormatError("btf_modules is not in the symbols (they name no "
                                  "data): the modules' BTF is not found")
            if k.types.has("btf_module"):
                off = k.types.offsetof("btf_module", "list")
                for entry in k.list_entries(head, off, limit=1 << 14,
                                            what="module BTF list"):
                    obj = k.obj("btf_module", entry)
                    if obj is not None:
                        self._module_btfs[int(obj.module)] = int(obj.btf)
        return self._module_btfs

    def hz(self) -> int:
        """The kernel's tick rate (CONFIG_HZ): from ``tick_nsec`` (TICK_NSEC, up to Linux
        6.x), else the one rate at which ``jiffies`` (counted from INITIAL_JIFFIES, -300
        seconds of ticks as 32 bits) matches the timekeeper's monotonic clock."""
        if self._hz is False:
            self._hz = None
            k = self.k
            addr = k.symbols.lookup("tick_nsec")
            if addr is not None:
                tick = int.from_bytes(k.read(addr, 8), "little")
                if tick:
                    self._hz = round(1_000_000_000 / tick)
            jiffies, tk_at = k.symbols.lookup("jiffies"), None
            if self._hz is None and jiffies is not None:
                tk_at = k.timekeeper()
            if self._hz is None and jiffies is not None and tk_at is not None:
                tk = k.obj("timekeeper", tk_at)
                now = int.from_bytes(k.read(jiffies, 8), "little")
                if tk is not None:
                    mono = int(tk.tkr_mono.base) / 1e9
                    fits = [hz for hz in HZ_CHOICES
                            if abs(((now - ((-300 * hz) & 0xFFFFFFFF)) % (1 << 64)) / hz
                                   - mono) < 2]
                    if len(fits) == 1:
                        self._hz = fits[0]
        if not self._hz:
            raise FormatError("the kernel's tick rate (HZ) is unknown: neither tick_nsec "
                              "nor jiffies with the timekeeper tell it")
        return int(self._hz)

    def _module_for(self, fn: int, what: str) -> ModuleSymbols:
        module = self.module_of(fn)
        if module is None or module.addresses is None:
            raise FormatError(f"{what}: the module is not found")
        return module

    def _ext4_options(self, fn: int, sb: int, s_fs_info: int) -> str:
        """fs/ext4/super.c _ext4_show_options (Linux 5.17+: the option table of the
        fs_context API), options that differ from the defaults only: the option table's
        entries (``ext4_mount_opts``, named by ``ext4_param_specs``) whose bits differ
        from the superblock's defaults, then resuid, resgid, errors, commit, batch times,
        stripe, data, inode_readahead_blks, init_itable, max_dir_size_kb, data_err,
        inlinecrypt, dax, mb_optimize_scan, quota."""
        k = self.k
        module = self._module_for(fn, "ext4")
        assert module.addresses is not None
        specs_at = module.addresses.get("ext4_param_specs")
        table_at = module.addresses.get("ext4_mount_opts")
        if specs_at is None or table_at is None:
            raise FormatError("ext4_param_specs / ext4_mount_opts are not among ext4's "
                              "symbols (ext4 before Linux 5.17, whose options are not "
                              "rendered, or symbols that name no data)")
        btf = self.module_btf(module)
        sbi = btf.read(k.read, "ext4_sb_info", s_fs_info)
        es = btf.read(k.read, "ext4_super_block", sbi["s_es"])
        superblock = k.obj("super_block", sb)
        if superblock is None:
            raise FormatError("superblock unreadable")
        names, tokens = self._ext4_flag_names(specs_at)
        out = ""
        if sbi["s_sb_block"] != 1:
            out += f",sb={sbi['s_sb_block']}"
        opt, opt2 = sbi["s_mount_opt"], sbi["s_mount_opt2"]
        def_opt, def_opt2 = sbi["s_def_mount_opt"], sbi["s_def_mount_opt2"]
        raw = k.read(table_at, MAX_OPTION_TABLE * 12)
        for i in range(MAX_OPTION_TABLE):
            token, bits, flags = struct.unpack_from("<iIi", raw, i * 12)
            if token not in tokens and not bits and not flags:
                break  # {Opt_err, 0, 0}: Opt_err is no parameter's token
            if not flags & (MOPT_SET | MOPT_CLEAR) or flags & MOPT_SKIP:
                continue
            mount, default = (opt2, def_opt2) if flags & MOPT_2 else (opt, def_opt)
            if not bits & (mount ^ default):
                continue
            want_set = flags & MOPT_SET
            if (want_set and mount & bits != bits) or (not want_set and mount & bits):
                continue
            name = names.get(token)
            if name is None:
                raise FormatError(f"ext4 option token {token} has no name")
            out += "," + name
        else:
            raise FormatError(f"ext4's option table is longer than {MAX_OPTION_TABLE}")
        resuid, resgid = sbi["s_resuid"] & 0xFFFFFFFF, sbi["s_resgid"] & 0xFFFFFFFF
        if resuid or es["s_def_resuid"]:
            out += f",resuid={resuid}"
        if resgid or es["s_def_resgid"]:
            out += f",resgid={resgid}"
        def_errors = es["s_errors"]
        for bit, value, text in EXT4_ERRORS_OPTS:
            if opt & bit and def_errors != value:
                out += "," + text
        commit = sbi["s_commit_interval"]
        hz = self.hz()
        if commit != JBD2_DEFAULT_MAX_COMMIT_AGE * hz:
            out += f",commit={commit // hz}"
        if sbi["s_min_batch_time"]:
            out += f",min_batch_time={sbi['s_min_batch_time']}"
        if sbi["s_max_batch_time"] != EXT4_DEF_MAX_BATCH_TIME:
            out += f",max_batch_time={sbi['s_max_batch_time']}"
        if sbi["s_stripe"]:
            out += f",stripe={sbi['s_stripe']}"
        if EXT4_DATA_FLAGS & (opt ^ def_opt) and opt & EXT4_DATA_FLAGS in EXT4_DATA:
            out += "," + EXT4_DATA[opt & EXT4_DATA_FLAGS]
        if sbi["s_inode_readahead_blks"] != EXT4_DEF_INODE_READAHEAD_BLKS:
            out += f",inode_readahead_blks={sbi['s_inode_readahead_blks']}"
        if opt & EXT4_MOUNT_INIT_INODE_TABLE and sbi["s_li_wait_mult"] != \
                EXT4_DEF_LI_WAIT_MULT:
            out += f",init_itable={sbi['s_li_wait_mult']}"
        if sbi["s_max_dir_size_kb"]:
            out += f",max_dir_size_kb={sbi['s_max_dir_size_kb']}"
        if opt & EXT4_MOUNT_DATA_ERR_ABORT:
            out += ",data_err=abort"
        if sbi.has("s_dummy_enc_policy"):
            policy = int.from_bytes(k.read(s_fs_info + sbi.offset("s_dummy_enc_policy"), 8),
                                    "little")
            if policy:
                raise FormatError(f"{out} and test_dummy_encryption, which kvmfx does not "
                                  "render")
        if int(superblock.s_flags) & SB_INLINECRYPT:
            out += ",inlinecrypt"
        if opt & EXT4_MOUNT_DAX_ALWAYS:
            out += ",dax" if self.vfs.sb_type_name(sb) == "ext2" else ",dax=always"
        elif opt2 & EXT4_MOUNT2_DAX_NEVER:
            out += ",dax=never"
        elif opt2 & EXT4_MOUNT2_DAX_INODE:
            out += ",dax=inode"
        groups = sbi["s_groups_count"]
        if groups >= MB_DEFAULT_LINEAR_SCAN_THRESHOLD and \
                not opt2 & EXT4_MOUNT2_MB_OPTIMIZE_SCAN:
            out += ",mb_optimize_scan=0"
        elif groups < MB_DEFAULT_LINEAR_SCAN_THRESHOLD and opt2 & EXT4_MOUNT2_MB_OPTIMIZE_SCAN:
            out += ",mb_optimize_scan=1"
        if sbi.has("s_ext4_flags"):
            state = sbi["s_ext4_flags"]
            for flag in ("EXT4_FLAGS_SHUTDOWN", "EXT4_FLAGS_EMERGENCY_RO"):
                number = btf.enumerator(flag)
                if number is not None and state & (1 << number):
                    raise FormatError(f"{out} and the filesystem is shut down or "
                                      "read-only after an error: not rendered")
        return out + self._ext4_quota(btf, sbi, s_fs_info)

    def _ext4_flag_names(self, specs_at: int) -> tuple[dict[int, str], set[int]]:
        """token2str(): token -> the name of the first flag parameter (no type) with that
        token in ``ext4_param_specs`` (a NULL name ends it); and every parameter's
        token."""
        k = self.k
        size = k.types.sizeof(k.types.find("fs_parameter_spec"))
        off = {m: k.types.offsetof("fs_parameter_spec", m) for m in ("name", "type", "opt")}
        raw = k.read(specs_at, size * MAX_OPTION_TABLE)
        out: dict[int, str] = {}
        tokens: set[int] = set()
        for i in range(MAX_OPTION_TABLE):
            at = i * size
            name = int.from_bytes(raw[at + off["name"]:at + off["name"] + 8], "little")
            if not name:
                return out, tokens
            kind = int.from_bytes(raw[at + off["type"]:at + off["type"] + 8], "little")
            token = raw[at + off["opt"]]
            tokens.add(token)
            if not kind and token not in out:
                out[token] = self.vfs.k_string(name, 64)
        raise FormatError(f"ext4_param_specs is longer than {MAX_OPTION_TABLE}")

    def _ext4_quota(self, btf: ModuleBtf, sbi: BtfStruct, s_fs_info: int) -> str:
        """ext4_show_quota_options: jqfmt=, usrjquota=, grpjquota=."""
        out = ""
        if sbi.has("s_jquota_fmt") and sbi["s_jquota_fmt"]:
            out += f",jqfmt={QFMT.get(sbi['s_jquota_fmt'], '')}"
        if sbi.has("s_qf_names"):
            at = s_fs_info + sbi.offset("s_qf_names")
            names = self.k.read(at, 16)
            for i, text in ((0, "usrjquota"), (1, "grpjquota")):
                ptr = int.from_bytes(names[i * 8:i * 8 + 8], "little")
                if ptr:
                    out += f",{text}={self.vfs.k_string(ptr, 256)}"
        return out

    def _fat_options(self, fn: int, s_fs_info: int) -> str:
        """fs/fat/inode.c fat_show_options (vfat and msdos)."""
        k = self.k
        module = self._module_for(fn, "fat")
        btf = self.module_btf(module)
        sbi = btf.read(k.read, "msdos_sb_info", s_fs_info)
        _size, members = btf.layout("fat_mount_options")
        base = sbi.offset("options")
        o = BtfStruct("fat_mount_options", members,
                      sbi.data[base:base + btf.layout("fat_mount_options")[0]])
        isvfat = o["isvfat"]
        out = ""
        uid, gid = o["fs_uid"] & 0xFFFFFFFF, o["fs_gid"] & 0xFFFFFFFF
        if uid:
            out += f",uid={uid}"
        if gid:
            out += f",gid={gid}"
        out += f",fmask={o['fs_fmask']:04o},dmask={o['fs_dmask']:04o}"
        if o["allow_utime"]:
            out += f",allow_utime={o['allow_utime']:04o}"
        if sbi["nls_disk"]:
            charset = k.obj("nls_table", sbi["nls_disk"])
            if charset is None:
                raise FormatError("fat's codepage table is unreadable")
            out += ",codepage=" + self.vfs.k_string(int(charset.charset), 64)[2:]
        if isvfat:
            if sbi["nls_io"]:
                charset = k.obj("nls_table", sbi["nls_io"])
                if charset is None:
                    raise FormatError("fat's iocharset table is unreadable")
                out += ",iocharset=" + self.vfs.k_string(int(charset.charset), 64)
            mask = VFAT_SFN_DISPLAY_WIN95 | VFAT_SFN_CREATE_WIN95 | VFAT_SFN_DISPLAY_WINNT | \
                VFAT_SFN_CREATE_WINNT | VFAT_SFN_DISPLAY_LOWER
            out += ",shortname=" + FAT_SHORTNAME.get(o["shortname"] & mask, "unknown")
        if o["name_check"] != ord("n"):
            out += f",check={chr(o['name_check'])}"
        for member in ("usefree", "quiet", "showexec", "sys_immutable"):
            if o[member]:
                out += f",{member}"
        if not isvfat:
            if o["dotsOK"]:
                out += ",dotsOK=yes"
            if o["nocase"]:
                out += ",nocase"
        else:
            if o["utf8"]:
                out += ",utf8"
            if o["unicode_xlate"]:
                out += ",uni_xlate"
            if not o["numtail"]:
                out += ",nonumtail"
            if o["rodir"]:
                out += ",rodir"
        if o["flush"]:
            out += ",flush"
        if o["tz_set"]:
            offset = o["time_offset"]
            offset = offset - (1 << 32) if offset & (1 << 31) else offset
            out += f",time_offset={offset}" if offset else ",tz=UTC"
        out += ",errors=" + FAT_ERRORS.get(o["errors"], "remount-ro")
        if o["nfs"] == FAT_NFS_NOSTALE_RO:
            out += ",nfs=nostale_ro"
        elif o["nfs"]:
            out += ",nfs=stale_rw"
        if o["discard"]:
            out += ",discard"
        if o["dos1xfloppy"]:
            out += ",dos1xfloppy"
        return out


def _rb_inorder(k: LinuxKernel, root: int, warn: Callable[[str], None], left_off: int,
                right_off: int) -> list[int]:
    """The nodes of a red-black tree (``struct rb_node``: parent and colour, right,
    left) in order; a loop or an unreadable node ends that branch with a warning."""
    out: list[int] = []
    seen: set[int] = set()
    stack: list[int] = []
    node = root
    while stack or node:
        while node:
            if node in seen or len(seen) >= MAX_MOUNTS:
                warn(f"mount tree loops or is larger than {MAX_MOUNTS} at {node:#x}: the "
                     "rest is not listed")
                return out
            seen.add(node)
            stack.append(node)
            try:
                node = int.from_bytes(k.read(node + left_off, 8), "little")
            except KvmError as exc:
                warn(f"mount tree node at {node:#x} unreadable: {exc}")
                node = 0
        node = stack.pop()
        out.append(node)
        try:
            node = int.from_bytes(k.read(node + right_off, 8), "little")
        except KvmError as exc:
            warn(f"mount tree node at {node:#x} unreadable: {exc}")
            node = 0
    return out


def mounts(k: LinuxKernel) -> Mounts:
    """The kernel's mount reader (one per LinuxKernel)."""
    found = getattr(k, "_mounts", None)
    if not isinstance(found, Mounts):
        found = Mounts(k)
        k._mounts = found
    return found

