"""Linux files from kernel memory: paths the kernel's way, open file tables, a task's
root, working directory and executable.

Paths are built as the kernel's ``d_path()`` builds them: dentry names up to the root of
their mount, across each mount to the dentry it is mounted on in its parent, until the
reader's root (``/proc/PID/fd`` shows paths relative to the root of the process that reads
them: the tools read /proc as pid 1, so that is the root used here) or the root of the
mount tree the file lives in (a file in another mount namespace, or on a detached mount).
A dentry unlinked from the tree gains `` (deleted)``; files of the pseudo filesystems whose
dentries are named on demand (pipes, sockets, anonymous inodes, namespaces) are named as
their ``d_dname`` names them (``pipe:[INODE]``, ``socket:[INODE]``, ``anon_inode:[eventfd]``,
``mnt:[INODE]``).

Every walk is bounded (a path is at most ``PATH_MAX`` bytes, a file table at most
``MAX_FDS`` entries) and every pointer is read through the dump: a loop, a wild pointer or an
unreadable page raises a :class:`~kvmfx.errors.KvmError` naming it, never loops.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from kvmfx.errors import FormatError, KvmError
from kvmfx.objects import Object, cstring
from kvmfx_plugins.linux.tasks import LinuxKernel, for_each_task

#: the kernel's longest path (include/uapi/linux/limits.h)
PATH_MAX = 4096
#: at most this many components in a path (a dentry loop cannot spin)
MAX_COMPONENTS = PATH_MAX // 2
#: at most this many descriptors are read from one file table (the kernel's default
#: fs.nr_open is 1,048,576; a larger max_fds is memory that is not a file table)
MAX_FDS = 1 << 20
#: a dentry name longer than this is not one (NAME_MAX is 255)
NAME_MAX = 255

#: pseudo filesystems whose dentries the kernel names with d_dname: fs type -> how
_PSEUDO = {"pipefs": "pipe", "sockfs": "socket", "anon_inodefs": "anon_inode",
           "nsfs": "ns"}


@dataclass(frozen=True)
class VfsPath:
    """A ``struct path``: a mount (its ``struct vfsmount``) and a dentry."""

    mnt: int
    dentry: int


class Vfs:
    """The path builder of one kernel: type offsets looked up once, the reader's root."""

    def __init__(self, k: LinuxKernel) -> None:
        self.k = k
        types = k.types
        self.mnt_off = types.offsetof("mount", "mnt")
        self._root: VfsPath | None = None
        self._fs_names: dict[int, str] = {}

    # -- objects ---------------------------------------------------------------------------
    def dentry(self, address: int) -> Object:
        return self._obj("dentry", address)

    def _obj(self, type_name: str, address: int) -> Object:
        obj = self.k.obj(type_name, address)
        if obj is None:
            raise FormatError(f"NULL {type_name} pointer")
        return obj

    def real_mount(self, vfsmount: int) -> Object:
        """The ``struct mount`` around a ``struct vfsmount`` (the kernel's real_mount)."""
        return self._obj("mount", vfsmount - self.mnt_off)

    def dentry_name(self, dentry: Object) -> bytes:
        """A dentry's own name (its ``d_name``), as bytes."""
        qstr = dentry.d_name
        length = int(qstr.len)
        if length > NAME_MAX:
            raise FormatError(f"dentry name of {length} bytes (NAME_MAX is {NAME_MAX})",
                              address=dentry.address)
        ptr = int(qstr.name)
        return self.k.read(ptr, length) if length else b""

    def fs_type(self, dentry: Object) -> str:
        """The name of the filesystem type a dentry belongs to (``d_sb->s_type->name``)."""
        sb = int(dentry.d_sb)
        name = self._fs_names.get(sb)
        if name is None:
            fstype = self._obj("file_system_type", int(self._obj("super_block", sb).s_type))
            name = cstring(self.k.read(int(fstype.name), 64)).decode("utf-8", "replace")
            self._fs_names[sb] = name
        return name

    def inode_number(self, dentry: Object) -> int | None:
        inode = int(dentry.d_inode)
        return int(self._obj("inode", inode).i_ino) if inode else None

    # -- paths -----------------------------------------------------------------------------
    def reader_root(self) -> VfsPath:
        """The root /proc paths are shown against: pid 1's root (init_task's before pid 1
        exists)."""
        if self._root is None:
            root = None
            for task in for_each_task(self.k):
                if int(task.pid) == 1 and int(task.fs):
                    root = self.fs_path(task, "root")
                    break
            if root is None:
                root = self.fs_path(self.k.task(self.k.symbols.address_of("init_task")),
                                    "root")
            self._root = root
        return self._root

    def fs_path(self, task: Object, which: str) -> VfsPath:
        """A task's ``fs->root`` or ``fs->pwd`` (``which``: "root" or "pwd")."""
        fs = int(task.fs)
        if not fs:
            raise FormatError("task has no fs_struct (an exiting task or a kernel thread "
                              "past exit_fs)", address=task.address)
        path = self._obj("fs_struct", fs).member(which)
        return VfsPath(int(path.mnt), int(path.dentry))

    def d_path(self, path: VfsPath, root: VfsPath | None = None) -> str:
        """The path of ``path`` as ``d_path()`` prints it against ``root`` (the reader's
        root by default), `` (deleted)`` appended for a dentry no longer in the tree."""
        dentry = self.dentry(path.dentry)
        fstype = self.fs_type(dentry)
        pseudo = _PSEUDO.get(fstype)
        if pseudo is not None and not self._is_mnt_root(path, dentry):
            return self._dname(pseudo, dentry)
        root = root or self.reader_root()
        text = self._prepend_path(path, dentry, root)
        if self._unlinked(dentry):
            text += " (deleted)"
        return text

    def _is_mnt_root(self, path: VfsPath, dentry: Object) -> bool:
        return int(dentry.d_parent) == dentry.address and \
            int(self._obj("vfsmount", path.mnt).mnt_root) == dentry.address

    def _dname(self, pseudo: str, dentry: Object) -> str:
        name = self.dentry_name(dentry).decode("utf-8", "surrogateescape")
        if pseudo == "anon_inode":
            return f"anon_inode:{name}"
        ino = self.inode_number(dentry)
        if pseudo == "ns":
            ops = self._obj("proc_ns_operations", int(dentry.d_fsdata))
            kind = cstring(self.k.read(int(ops.name), 32)).decode("utf-8", "replace")
            return f"{kind}:[{ino}]"
        return f"{pseudo}:[{ino}]"

    @staticmethod
    def _unlinked(dentry: Object) -> bool:
        """d_unlinked(): unhashed and not a root."""
        return int(dentry.d_hash.pprev) == 0 and int(dentry.d_parent) != dentry.address

    def _prepend_path(self, path: VfsPath, dentry: Object, root: VfsPath) -> str:
        parts: list[bytes] = []
        size = 0
        mnt_addr, dentry_addr = path.mnt, path.dentry
        mount: Object | None = None
        for _ in range(MAX_COMPONENTS):
            if dentry_addr == root.dentry and mnt_addr == root.mnt:
                break
            if mount is None or mount.address != mnt_addr - self.mnt_off:
                mount = self.real_mount(mnt_addr)
            mnt_root = int(mount.mnt.mnt_root)
            parent_addr = int(dentry.d_parent)
            if dentry_addr == mnt_root or parent_addr == dentry_addr:
                parent_mount = int(mount.mnt_parent)
                if dentry_addr != mnt_root:
                    parts = []  # escaped its mount (d_path prints the bare root)
                    break
                if parent_mount == mount.address:
                    break  # the root of its mount tree: outside the reader's root
                dentry_addr = int(mount.mnt_mountpoint)
                mnt_addr = parent_mount + self.mnt_off
                dentry = self.dentry(dentry_addr)
                continue
            name = self.dentry_name(dentry)
            size += len(name) + 1
            if size > PATH_MAX:
                raise FormatError(f"path longer than PATH_MAX ({PATH_MAX} bytes)",
                                  address=path.dentry)
            parts.append(name)
            dentry_addr = parent_addr
            dentry = self.dentry(dentry_addr)
        else:
            raise FormatError(f"path of more than {MAX_COMPONENTS} components (a dentry "
                              "or mount loop)", address=path.dentry)
        if not parts:
            return "/"
        return "".join("/" + p.decode("utf-8", "surrogateescape") for p in reversed(parts))

    # -- files -----------------------------------------------------------------------------
    def file_path(self, file: Object) -> str:
        """The path of an open file (``struct file``), as /proc/PID/fd/N shows it."""
        f_path = file.f_path
        return self.d_path(VfsPath(int(f_path.mnt), int(f_path.dentry)))

    def task_files(self, task: Object) -> Iterator[OpenFile]:
        """A task's open file descriptors, in order: (fd, its ``struct file``, close on
        exec). A task with no file table (a kernel thread, an exiting task) has none."""
        files = int(task.files)
        if not files:
            return
        fdt = self._obj("fdtable", int(self._obj("files_struct", files).fdt))
        max_fds = int(fdt.max_fds)
        if max_fds > MAX_FDS:
            raise FormatError(f"file table of {max_fds} descriptors (at most {MAX_FDS})",
                              address=fdt.address)
        fd_array, cloexec_bits = int(fdt.fd), int(fdt.close_on_exec)
        step = 512
        for base in range(0, max_fds, step):
            n = min(step, max_fds - base)
            raw = self.k.read(fd_array + base * 8, n * 8)
            pointers = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, n * 8, 8)]
            if not any(pointers):
                continue
            try:
                bits = int.from_bytes(self.k.read(cloexec_bits + base // 8, (n + 7) // 8),
                                      "little")
            except KvmError:
                bits = None
            for i, ptr in enumerate(pointers):
                if ptr:
                    yield OpenFile(base + i, ptr,
                                   None if bits is None else bool(bits >> i & 1))


@dataclass(frozen=True)
class OpenFile:
    """One descriptor of a file table: its number, its ``struct file``, and whether it is
    closed on exec (None where that bitmap could not be read)."""

    fd: int
    file: int
    cloexec: bool | None


def vfs(k: LinuxKernel) -> Vfs:
    """The kernel's path builder (one per LinuxKernel)."""
    found = getattr(k, "_vfs", None)
    if found is None:
        found = Vfs(k)
        k._vfs = found
    return found
