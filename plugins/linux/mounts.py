"""Linux mount namespaces and their mounts from kernel memory, as /proc/PID/mountinfo
shows them (fs/proc_namespace.c show_mountinfo).

A namespace's mounts are in the order mountinfo lists them: the namespace's ``list`` of
``mount.mnt_list`` up to Linux 6.7 (the cursors of open /proc/PID/mounts files skipped),
the ``mounts`` red-black tree by ``mnt_id_unique`` since 6.8. Each mount's line is made
against the root of the process that reads it (mountinfo shows a mount outside the
reader's root not at all, and mount points relative to it).

The superblock's options are the generic ones (show_sb_opts) followed by what the
filesystem's own ``->show_options`` prints. That function is told by its symbol and
rendered from the filesystem's own structures for tmpfs and devtmpfs (shmem_sb_info),
ramfs, proc, sysfs (kernfs), devpts; for any other the options stop at the generic ones and
the row's ``missing`` says which function was not rendered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from kvmfx.errors import FormatError, KvmError
from kvmfx.objects import Fields
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
#: where the code reaches the kernel's page count when no symbol names it:
#: si_meminfo() first loads _totalram_pages (val->totalram = totalram_pages())
TOTALRAM_USE = ("si_meminfo", "load", 0)


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
        info.root = self._field(missing, "root", lambda: self._root(ops, mnt_root, s_fs_info))
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
        if found is None or found[1]:
            return f"the function at {address:#x}"
        return found[0]

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

    def _root(self, ops: dict[str, int], mnt_root: int, s_fs_info: int) -> str:
        """mountinfo's 4th field: the mount's root within its filesystem."""
        fn = ops.get("show_path", 0)
        if fn:
            name = self.function(fn)
            if name == "kernfs_sop_show_path":
                if self._kernfs_scop(s_fs_info, "show_path"):
                    raise FormatError("root shown by the kernfs root's own show_path, "
                                      "which kvmfx does not render")
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
            if self._kernfs_scop(s_fs_info, "show_options"):
                raise FormatError("options shown by the kernfs root's own show_options "
                                  "(cgroup...), which kvmfx does not render")
            return ""
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
            addr = k.symbols.lookup("_totalram_pages")
            if addr is None:
                function, kind, index = TOTALRAM_USE
                start = k.symbols.lookup(function)
                if start is not None:
                    try:
                        refs = [a for kd, a in k.session.arch.code_refs(
                            k.read(start, 512), start) if kd == kind]
                    except KvmError:
                        refs = []
                    if len(refs) > index:
                        addr = refs[index]
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

