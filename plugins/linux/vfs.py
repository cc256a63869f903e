"""Linux files from kernel memory: paths the kernel's way, open file tables, a task's
root, working directory and executable.

Paths are built as the kernel's ``d_path()`` builds them (fs/d_path.c): dentry names up to
the root of their mount, across each mount to the dentry it is mounted on in its parent,
until the reader's root (``/proc/PID/fd`` shows paths relative to the root of the process
that reads them: the tools read /proc as pid 1, so that is the root used here) or the root
of the mount tree the file lives in (a file in another mount namespace, or on a detached
mount). A dentry unlinked from the tree gains `` (deleted)``. A dentry whose filesystem
names its dentries on demand (``dentry->d_op->d_dname``) is named as that function names
it: ``pipe:[INODE]``, ``socket:[INODE]``, ``anon_inode:[eventfd]``, ``mnt:[INODE]``,
``anon_inode:[pidfd]``, ``/memfd:NAME (deleted)`` (simple_dname, the pseudo files of
filesystems with no names of their own); the function is told by its symbol. Names are
bytes: in the paths returned, bytes that are not UTF-8 appear as ``\\xNN``.

Every walk is bounded (a path is at most ``PATH_MAX`` bytes, a file table at most
``MAX_FDS`` entries) and every pointer is read through the dump: a loop, a wild pointer or an
unreadable page raises a :class:`~kvmfx.errors.KvmError` naming it, never loops.

On a dump (memory that does not change) the dentries, mounts and paths read are kept
(up to ``CACHE_LIMIT`` of them, then afresh): the processes share their root, their working
directory and most of their paths' ancestors. Live memory is read afresh every time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from kvmfx.errors import FormatError, KvmError
from kvmfx.objects import Fields, Object, cstring
from kvmfx.records import FrozenRecord
from kvmfx_plugins.linux.tasks import LinuxKernel, for_each_task

#: the kernel's longest path (include/uapi/linux/limits.h), terminating NUL included
PATH_MAX = 4096
#: at most this many steps up a path: components (at least two bytes each) and mount
#: crossings (a dentry or mount loop cannot spin)
MAX_STEPS = 2 * PATH_MAX
#: at most this many descriptors are read from one file table (the kernel's default
#: fs.nr_open is 1,048,576; a larger max_fds is memory that is not a file table)
MAX_FDS = 1 << 20
#: a dentry name longer than this is not one (NAME_MAX is 255)
NAME_MAX = 255
#: O_CLOEXEC (include/uapi/asm-generic/fcntl.h; x86 and arm64 alike), which fdinfo adds
#: to a file's flags from the table's close-on-exec bitmap
O_CLOEXEC = 0o2000000
#: structures kept per listing before the cache starts afresh
CACHE_LIMIT = 1 << 16

#: d_dname functions (their symbols) -> how the name is made
D_DNAME = {"pipefs_dname": "pipe", "sockfs_dname": "socket",
           "anon_inodefs_dname": "anon_inode", "ns_dname": "ns", "pidfs_dname": "pidfd",
           "simple_dname": "simple", "dmabuffs_dname": "dmabuf"}
#: where the symbols do not tell: pseudo filesystems whose dentries the kernel names with
#: d_dname, by filesystem type name
_PSEUDO = {"pipefs": "pipe", "sockfs": "socket", "anon_inodefs": "anon_inode",
           "nsfs": "ns", "pidfs": "pidfd"}
#: the namespace kinds a proc_ns_operations names (a name not among them is not one)
NS_KINDS = frozenset({"mnt", "net", "uts", "ipc", "pid", "pid_for_children", "user",
                      "cgroup", "time", "time_for_children"})


class VfsPath(NamedTuple):
    """A ``struct path``: a mount (its ``struct vfsmount``) and a dentry."""

    mnt: int
    dentry: int


class Dentry(NamedTuple):
    """What a path walk reads of a ``struct dentry``."""

    address: int
    parent: int
    name_len: int
    name_ptr: int
    inode: int
    op: int
    sb: int
    fsdata: int
    hashed: bool


class Mount(NamedTuple):
    """What a path walk reads of a ``struct mount``: ``address`` is the struct mount,
    ``vfsmount`` its embedded ``struct vfsmount`` (what a ``struct path`` points to)."""

    address: int
    vfsmount: int
    parent: int
    mountpoint: int
    root: int
    sb: int
    flags: int
    mnt_id: int


class FileInfo(FrozenRecord):
    """An open file as /proc/PID/fdinfo shows it: ``pos``, ``flags`` (``f_flags``, without
    the descriptor's O_CLOEXEC), the mount's id and the inode number (None, with why in
    ``missing``, when unreadable); and its ``struct path``."""

    __slots__ = ("path", "pos", "f_flags", "mnt_id", "inode", "missing")
    path: VfsPath
    pos: int
    f_flags: int
    mnt_id: int | None
    inode: int | None
    missing: dict[str, str]

    def __init__(self, path: VfsPath, pos: int, f_flags: int, mnt_id: int | None,
                 inode: int | None, missing: dict[str, str] | None = None) -> None:
        set_ = object.__setattr__
        set_(self, "path", path)
        set_(self, "pos", pos)
        set_(self, "f_flags", f_flags)
        set_(self, "mnt_id", mnt_id)
        set_(self, "inode", inode)
        set_(self, "missing", {} if missing is None else missing)


class OpenFile(NamedTuple):
    """One descriptor of a file table: its number, its ``struct file``, and whether it is
    closed on exec (None where that bitmap could not be read)."""

    fd: int
    file: int
    cloexec: bool | None


class Vfs:
    """The path builder of one kernel: type layouts looked up once, the reader's root, and
    on a dump the dentries, mounts and paths read so far."""

    def __init__(self, k: LinuxKernel) -> None:
        self.k = k
        types = k.types
        self.mnt_off = types.offsetof("mount", "mnt")
        self._dentry_fields = Fields(types, "dentry", [
            "d_parent", "d_name.len", "d_name.name", "d_inode", "d_op", "d_sb", "d_fsdata",
            "d_hash.pprev"])
        self._mount_fields = Fields(types, "mount", [
            "mnt_parent", "mnt_mountpoint", "mnt.mnt_root", "mnt.mnt_sb", "mnt.mnt_flags",
            "mnt_id"])
        self._file_fields = Fields(types, "file", [
            "f_path.mnt", "f_path.dentry", "f_inode", "f_flags", "f_pos"])
        self._fs_fields = Fields(types, "fs_struct", [
            "root.mnt", "root.dentry", "pwd.mnt", "pwd.dentry"])
        self._task_fields = Fields(types, "task_struct", ["fs", "files", "mm"])
        self._ino_fields = Fields(types, "inode", ["i_ino"])
        self._exe_fields = Fields(types, "mm_struct", ["exe_file"])
        self._fdt_fields = Fields(types, "fdtable", ["max_fds", "fd", "close_on_exec"])
        self._files_fdt = types.offsetof("files_struct", "fdt")
        self._d_dname_op = types.offsetof("dentry_operations", "d_dname")
        self._root: VfsPath | None = None
        self._fs_names: dict[int, str] = {}
        self._d_dname: dict[int, str] | None = None
        physical = k.session.physical
        #: memory that does not change under us: what is read may be kept
        self.static = not (physical.format_name == "devmem" or
                           physical.details.get("producer") == "kcore")
        self._fpath_fields = Fields(types, "file", ["f_path.mnt", "f_path.dentry"])
        self._dentries: dict[int, Dentry] = {}
        self._mounts: dict[int, Mount] = {}
        self._paths: dict[tuple[int, int, int, int], str] = {}
        #: dentry_operations -> its d_dname function (0: none)
        self._dname_fn: dict[int, int] = {}

    # -- what is kept ------------------------------------------------------------------------
    def _fresh(self) -> None:
        """Start afresh on live memory, and when the cache is full."""
        if not self.static or \
                len(self._dentries) + len(self._mounts) + len(self._paths) > CACHE_LIMIT:
            self._dentries, self._mounts, self._paths = {}, {}, {}

    # -- objects ---------------------------------------------------------------------------
    def dentry(self, address: int) -> Object:
        """The ``struct dentry`` at ``address``, as a typed object."""
        return self._obj("dentry", address)

    def _obj(self, type_name: str, address: int) -> Object:
        obj = self.k.obj(type_name, address)
        if obj is None:
            raise FormatError(f"NULL {type_name} pointer")
        return obj

    def real_mount(self, vfsmount: int) -> Object:
        """The ``struct mount`` around a ``struct vfsmount`` (the kernel's real_mount)."""
        return self._obj("mount", vfsmount - self.mnt_off)

    def read_dentry(self, address: int) -> Dentry:
        """The members a path walk needs of the dentry at ``address``."""
        found = self._dentries.get(address)
        if found is None:
            if not address:
                raise FormatError("NULL dentry pointer")
            parent, length, name, inode, op, sb, fsdata, pprev = \
                self._dentry_fields.read(self.k.read, address)
            found = Dentry(address, parent, length, name, inode, op, sb, fsdata, pprev != 0)
            if self.static:
                self._dentries[address] = found
        return found

    def read_mount(self, vfsmount: int) -> Mount:
        """The members a path walk needs of the mount whose vfsmount is at ``vfsmount``."""
        found = self._mounts.get(vfsmount)
        if found is None:
            if not vfsmount:
                raise FormatError("NULL vfsmount pointer")
            address = vfsmount - self.mnt_off
            parent, mountpoint, root, sb, flags, mnt_id = \
                self._mount_fields.read(self.k.read, address)
            found = Mount(address, vfsmount, parent, mountpoint, root, sb, flags, mnt_id)
            if self.static:
                self._mounts[vfsmount] = found
        return found

    def dentry_name(self, dentry: Object | Dentry) -> bytes:
        """A dentry's own name (its ``d_name``), as bytes, up to a NUL as prepend_name
        copies it."""
        if isinstance(dentry, Dentry):
            length, ptr, at = dentry.name_len, dentry.name_ptr, dentry.address
        else:
            qstr = dentry.d_name
            length, ptr, at = int(qstr.len), int(qstr.name), dentry.address
        if length > NAME_MAX:
            raise FormatError(f"dentry name of {length} bytes (NAME_MAX is {NAME_MAX})",
                              address=at)
        return cstring(self.k.read(ptr, length)) if length else b""

    def fs_type(self, dentry: Object | Dentry) -> str:
        """The name of the filesystem type a dentry belongs to (``d_sb->s_type->name``)."""
        return self.sb_type_name(int(dentry.sb if isinstance(dentry, Dentry)
                                     else dentry.d_sb))

    def sb_type_name(self, sb: int) -> str:
        """A superblock's filesystem type name (``s_type->name``)."""
        name = self._fs_names.get(sb)
        if name is None:
            fstype = self._obj("file_system_type", int(self._obj("super_block", sb).s_type))
            name = self.k_string(int(fstype.name), 64)
            self._fs_names[sb] = name
        return name

    def k_string(self, address: int, limit: int) -> str:
        """A NUL-terminated kernel string of at most ``limit`` bytes (read up to the end of
        its page first: a short string near a page the dump lacks is still read)."""
        if not address:
            raise FormatError("NULL string pointer")
        first = min(limit, 4096 - address % 4096)
        data = cstring(self.k.read(address, first))
        if len(data) == first and first < limit:
            data = cstring(self.k.read(address, limit))
        return data.decode("utf-8", "backslashreplace")

    def inode_number(self, dentry: Object | Dentry) -> int | None:
        """The number of a dentry's inode (None for a negative dentry)."""
        inode = int(dentry.inode if isinstance(dentry, Dentry) else dentry.d_inode)
        return self.i_ino(inode) if inode else None

    def i_ino(self, inode: int) -> int:
        """``inode->i_ino``."""
        if not inode:
            raise FormatError("NULL inode pointer")
        return int(self._ino_fields.read(self.k.read, inode)[0])

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

    def fs_path(self, task: Object | int, which: str) -> VfsPath:
        """A task's ``fs->root`` or ``fs->pwd`` (``which``: "root" or "pwd"); ``task`` is a
        task_struct object or its address."""
        fs, _files, _mm = self.task_pointers(task)
        if not fs:
            raise FormatError("no fs_struct (an exiting task, or a kernel thread past "
                              "exit_fs)", address=_address(task))
        root_mnt, root_dentry, pwd_mnt, pwd_dentry = self._fs_fields.read(self.k.read, fs)
        if which == "root":
            return VfsPath(root_mnt, root_dentry)
        return VfsPath(pwd_mnt, pwd_dentry)

    def task_pointers(self, task: Object | int) -> tuple[int, int, int]:
        """A task's ``fs``, ``files`` and ``mm`` pointers."""
        if isinstance(task, Object):
            return int(task.fs), int(task.files), int(task.mm)
        fs, files, mm = self._task_fields.read(self.k.read, task)
        return fs, files, mm

    def exe_path(self, task: Object | int) -> VfsPath:
        """The ``struct path`` of a task's executable (``mm->exe_file``)."""
        _fs, _files, mm = self.task_pointers(task)
        if not mm:
            raise FormatError("no mm_struct (a kernel thread, or an exited task): no "
                              "executable", address=_address(task))
        exe_file = self._exe_fields.read(self.k.read, mm)[0]
        if not exe_file:
            raise FormatError("mm->exe_file is NULL", address=mm)
        return self.file_info(exe_file).path

    def task_paths(self, task: int, kernel_thread: bool = False
                   ) -> tuple[dict[str, str | None], dict[str, str]]:
        """A process's ``exe``, ``cwd`` and ``root`` as /proc/PID/exe, cwd and root link
        to them (against the reader's root), and why each that is None is: a kernel
        thread has no executable, an exited process neither of the three."""
        found: dict[str, str | None] = {"exe": None, "cwd": None, "root": None}
        why: dict[str, str] = {}
        try:
            fs, _files, mm = self.task_pointers(task)
        except KvmError as exc:
            return found, {name: f"task_struct unreadable: {exc}" for name in found}
        if kernel_thread:
            why["exe"] = "a kernel thread has no executable"
        elif not mm:
            why["exe"] = "no mm_struct (an exited process): no executable"
        else:
            try:
                exe_file = self._exe_fields.read(self.k.read, mm)[0]
                if not exe_file:
                    raise FormatError("mm->exe_file is NULL", address=mm)
                found["exe"] = self.d_path(VfsPath(*self._fpath_fields.read(self.k.read,
                                                                            exe_file)))
            except KvmError as exc:
                why["exe"] = str(exc)
        if not fs:
            for name in ("cwd", "root"):
                why[name] = "no fs_struct (an exited process)"
            return found, why
        try:
            root_mnt, root_dentry, pwd_mnt, pwd_dentry = self._fs_fields.read(self.k.read,
                                                                             fs)
        except KvmError as exc:
            for name in ("cwd", "root"):
                why[name] = f"fs_struct unreadable: {exc}"
            return found, why
        for name, path in (("cwd", VfsPath(pwd_mnt, pwd_dentry)),
                           ("root", VfsPath(root_mnt, root_dentry))):
            try:
                found[name] = self.d_path(path)
            except KvmError as exc:
                why[name] = str(exc)
        return found, why

    def d_path(self, path: VfsPath, root: VfsPath | None = None) -> str:
        """The path of ``path`` as ``d_path()`` prints it against ``root`` (the reader's
        root by default), `` (deleted)`` appended for a dentry no longer in the tree."""
        if root is None:
            root = self._root or self.reader_root()
        key = (path.mnt, path.dentry, root.mnt, root.dentry)
        text = self._paths.get(key)
        if text is None:
            self._fresh()
            text = self._d_path(path, root)
            if self.static:
                self._paths[key] = text
        return text

    def _d_path(self, path: VfsPath, root: VfsPath) -> str:
        dentry = self.read_dentry(path.dentry)
        kind = self._d_dname_kind(dentry)
        if kind is not None and not (dentry.parent == dentry.address and
                                     self.read_mount(path.mnt).root == dentry.address):
            return self._dname(kind, dentry)
        unlinked = self._unlinked(dentry)
        text, _ = self.prepend_path(path, root, 11 if unlinked else 1)
        return text + " (deleted)" if unlinked else text

    def _d_dname_kind(self, dentry: Dentry) -> str | None:
        """How the dentry's filesystem names it (a :data:`D_DNAME` value), or None when it
        has no d_dname; FormatError for a d_dname function kvmfx does not know."""
        if not dentry.op:
            return None
        fn = self._dname_fn.get(dentry.op)
        if fn is None:
            fn = int.from_bytes(self.k.read(dentry.op + self._d_dname_op, 8), "little")
            self._dname_fn[dentry.op] = fn
        if not fn:
            return None
        known = self._known_dnames().get(fn)
        if known is not None:
            return known
        pseudo = _PSEUDO.get(self.fs_type(dentry))
        if pseudo is not None:
            return pseudo
        raise FormatError(f"named by {self._function_name(fn)}, a d_dname function "
                          "kvmfx does not render", address=dentry.address)

    def _known_dnames(self) -> dict[int, str]:
        if self._d_dname is None:
            self._d_dname = {}
            for name, kind in D_DNAME.items():
                addr = self.k.symbols.lookup(name)
                if addr is not None:
                    self._d_dname[addr] = kind
        return self._d_dname

    def _function_name(self, address: int) -> str:
        """A kernel function's name for a message (its address when no symbol has it)."""
        try:
            found = self.k.symbols.reverse(address)
        except (KvmError, ValueError):
            found = None
        if found is None or found[1]:
            return f"the function at {address:#x}"
        return f"{found[0]}()"

    def _dname(self, kind: str, dentry: Dentry) -> str:
        if kind == "pidfd":
            return "anon_inode:[pidfd]"
        name = self.dentry_name(dentry).decode("utf-8", "backslashreplace")
        if kind == "anon_inode":
            return f"anon_inode:{name}"
        if kind == "simple":
            return f"/{name} (deleted)"
        if kind == "dmabuf":
            buf = self._obj("dma_buf", dentry.fsdata)
            label = self.k_string(int(buf.name), 64) if int(buf.name) else ""
            return f"/{name}:{label}"
        ino = self.inode_number(dentry)
        if kind == "ns":
            return f"{self.ns_kind(dentry)}:[{ino}]"
        return f"{kind}:[{ino}]"

    def ns_kind(self, dentry: Dentry) -> str:
        """The namespace kind (``mnt``, ``net``...) of an nsfs dentry: its
        proc_ns_operations' name, found through the inode's ``i_private`` (a
        ``struct ns_common``, since 6.9) or the dentry's ``d_fsdata`` (the operations)."""
        tries: list[int] = []
        if dentry.inode:
            private = int(self._obj("inode", dentry.inode).i_private)
            if private:
                try:
                    tries.append(int(self._obj("ns_common", private).ops))
                except KvmError:
                    pass
        if dentry.fsdata:
            tries.append(dentry.fsdata)
        for ops in tries:
            try:
                kind = self.k_string(int(self._obj("proc_ns_operations", ops).name), 32)
            except KvmError:
                continue
            if kind in NS_KINDS:
                return kind
        raise FormatError("an nsfs dentry whose namespace kind cannot be read",
                          address=dentry.address)

    @staticmethod
    def _unlinked(dentry: Dentry) -> bool:
        """d_unlinked(): unhashed and not a root."""
        return not dentry.hashed and dentry.parent != dentry.address

    def prepend_path(self, path: VfsPath, root: VfsPath, reserved: int = 1
                     ) -> tuple[str, int]:
        """fs/d_path.c prepend_path(): the path of ``path`` up to ``root``, and how the walk
        ended: 0 at ``root``, 1 at the root of the mount tree without meeting ``root`` (a
        path outside it: the text is then from that tree's root), 3 escaped (a dentry
        outside its mount: the text is "/"). ``reserved``: bytes of the PATH_MAX buffer
        already used (the terminating NUL, or " (deleted)" and it); a longer path is an
        error, as the kernel's ENAMETOOLONG."""
        parts: list[bytes] = []
        size = reserved
        mnt = self.read_mount(path.mnt)
        dentry_addr = path.dentry
        error = 0
        seen: set[tuple[int, int]] = set()
        for _ in range(MAX_STEPS):
            if dentry_addr == root.dentry and mnt.vfsmount == root.mnt:
                break
            if (mnt.address, dentry_addr) in seen:
                raise FormatError(f"a dentry or mount loop at {dentry_addr:#x}",
                                  address=path.dentry)
            seen.add((mnt.address, dentry_addr))
            if dentry_addr == mnt.root:
                if mnt.parent != mnt.address:
                    dentry_addr = mnt.mountpoint
                    mnt = self.read_mount(mnt.parent + self.mnt_off)
                    continue
                error = 1  # the global root of its tree (or a detached mount)
                break
            dentry = self.read_dentry(dentry_addr)
            if dentry.parent == dentry_addr:
                error = 3  # escaped: d_path prints the bare root
                break
            name = self.dentry_name(dentry)
            size += len(name) + 1
            if size > PATH_MAX:
                raise FormatError(f"path longer than PATH_MAX ({PATH_MAX} bytes)",
                                  address=path.dentry)
            parts.append(name)
            dentry_addr = dentry.parent
        else:
            raise FormatError(f"path of more than {MAX_STEPS} steps (a dentry or mount "
                              "loop)", address=path.dentry)
        if error == 3 or not parts:
            return "/", error
        return "".join("/" + p.decode("utf-8", "backslashreplace")
                       for p in reversed(parts)), error

    def dentry_path(self, address: int) -> str:
        """fs/d_path.c dentry_path(): a dentry's path from the root of its filesystem
        (what mountinfo shows as a mount's root), ``//deleted`` appended when unlinked."""
        self._fresh()
        dentry = self.read_dentry(address)
        suffix = "//deleted" if self._unlinked(dentry) else ""
        parts: list[bytes] = []
        size = len(suffix) + 1
        seen: set[int] = set()
        for _ in range(MAX_STEPS):
            if dentry.parent == dentry.address:
                break
            if dentry.address in seen:
                raise FormatError(f"a dentry loop at {dentry.address:#x}", address=address)
            seen.add(dentry.address)
            name = self.dentry_name(dentry)
            size += len(name) + 1
            if size > PATH_MAX:
                raise FormatError(f"path longer than PATH_MAX ({PATH_MAX} bytes)",
                                  address=address)
            parts.append(name)
            dentry = self.read_dentry(dentry.parent)
        else:
            raise FormatError(f"path of more than {MAX_STEPS} steps (a dentry loop)",
                              address=address)
        text = "".join("/" + p.decode("utf-8", "backslashreplace") for p in reversed(parts))
        return (text or "/") + suffix

    # -- files -----------------------------------------------------------------------------
    def file_info(self, file: int) -> FileInfo:
        """What /proc/PID/fdinfo shows of the ``struct file`` at ``file`` (its flags without
        the descriptor's close-on-exec), and its path."""
        mnt, dentry, inode, f_flags, f_pos = self._file_fields.read(self.k.read, file)
        path = VfsPath(mnt, dentry)
        missing: dict[str, str] = {}
        try:
            mnt_id: int | None = self.read_mount(mnt).mnt_id
        except KvmError as exc:
            mnt_id, missing["mnt_id"] = None, f"the file's mount is unreadable: {exc}"
        try:
            ino: int | None = self.i_ino(inode)
        except KvmError as exc:
            ino, missing["inode"] = None, f"the file's inode is unreadable: {exc}"
        return FileInfo(path, f_pos, f_flags & 0xFFFFFFFF, mnt_id, ino, missing)

    def file_path(self, file: Object | int) -> str:
        """The path of an open file (``struct file``, an object or its address), as
        /proc/PID/fd/N shows it."""
        if isinstance(file, Object):
            f_path = file.f_path
            return self.d_path(VfsPath(int(f_path.mnt), int(f_path.dentry)))
        return self.d_path(self.file_info(file).path)

    def task_files(self, task: Object | int) -> Iterator[OpenFile]:
        """A task's open file descriptors, in order: (fd, its ``struct file``, close on
        exec). A task with no file table (an exiting task) has none."""
        _fs, files, _mm = self.task_pointers(task)
        if not files:
            return
        fdt = int.from_bytes(self.k.read(files + self._files_fdt, 8), "little")
        if not fdt:
            raise FormatError("files_struct with no fdtable", address=files)
        max_fds, fd_array, cloexec_bits = self._fdt_fields.read(self.k.read, fdt)
        if max_fds > MAX_FDS:
            raise FormatError(f"file table of {max_fds} descriptors (at most {MAX_FDS})",
                              address=fdt)
        step = 512
        for base in range(0, max_fds, step):
            n = min(step, max_fds - base)
            raw = self.k.read(fd_array + base * 8, n * 8)
            pointers = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, n * 8, 8)]
            if not any(pointers):
                continue
            try:
                bits: int | None = int.from_bytes(
                    self.k.read(cloexec_bits + base // 8, (n + 7) // 8), "little")
            except KvmError:
                bits = None
            for i, ptr in enumerate(pointers):
                if ptr:
                    yield OpenFile(base + i, ptr,
                                   None if bits is None else bool(bits >> i & 1))


def _address(task: Object | int) -> int:
    return task.address if isinstance(task, Object) else task


def fdinfo_flags(info: FileInfo, cloexec: bool) -> str:
    """The ``flags:`` value of /proc/PID/fdinfo/N (fs/proc/fd.c seq_show: ``0%o`` of
    f_flags, O_CLOEXEC added from the descriptor's close-on-exec bit)."""
    return f"0{info.f_flags | (O_CLOEXEC if cloexec else 0):o}"


def vfs(k: LinuxKernel) -> Vfs:
    """The kernel's path builder (one per LinuxKernel)."""
    found = getattr(k, "_vfs", None)
    if not isinstance(found, Vfs):
        found = Vfs(k)
        k._vfs = found
    return found
