"""Paths the kernel's way, on hostile memory: structures planted over a real dump's memory
(an overlay on its reader) make loops, absurd lengths and unknown name functions, and each
ends in a KvmError naming it or a warning, bounded, never a hang or a traceback; the
pseudo-file names come out as the kernel's d_dname functions make them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

import kvmfx
from kvmfx.errors import KvmError
from kvmfx_plugins.linux.mounts import MAX_MOUNTS, MountNamespace, Mounts
from kvmfx_plugins.linux.tasks import LinuxKernel
from kvmfx_plugins.linux.vfs import MAX_FDS, Vfs, VfsPath
from tests.factory import get_fixture

#: where planted structures live: kernel addresses no Debian guest maps
FAKE = 0xFFFF_DEAD_0000_0000


class Overlay:
    """A kernel reader with planted bytes: a read wholly inside a planted range returns
    them, any other read is the dump's, with the planted bytes over it."""

    def __init__(self, read: Callable[[int, int], bytes]) -> None:
        self.base = read
        self.planted: dict[int, bytearray] = {}

    def plant(self, address: int, data: bytes) -> None:
        self.planted[address] = bytearray(data)

    def put(self, address: int, value: int, size: int = 8) -> None:
        """Write an integer into a planted range."""
        for start, buf in self.planted.items():
            if start <= address and address + size <= start + len(buf):
                buf[address - start:address - start + size] = value.to_bytes(size, "little")
                return
        raise AssertionError(f"{address:#x} is not planted")

    def __call__(self, address: int, size: int) -> bytes:
        for start, buf in self.planted.items():
            if start <= address and address + size <= start + len(buf):
                return bytes(buf[address - start:address - start + size])
        return self.base(address, size)


@pytest.fixture(scope="module", params=["basic", "backports"])
def session(request) -> Iterator[kvmfx.Session]:
    """6.1 (mounts on a list) and the newest kernel (mounts in a red-black tree)."""
    with kvmfx.open(str(get_fixture(request.param).path("elf"))) as s:
        yield s


@pytest.fixture
def planted(session):
    """A fresh kernel view whose reads go through an Overlay, and its path builder."""
    k = LinuxKernel(session)
    overlay = Overlay(k.read)
    k.read = overlay
    return k, overlay, Vfs(k)


def _offset(k: LinuxKernel, struct: str, member: str) -> int:
    return k.types.offsetof(struct, member)


def _dentry(k: LinuxKernel, o: Overlay, at: int, parent: int, name: bytes, *,
            op: int = 0, hashed: bool = True, inode: int = 0, length: int | None = None
            ) -> None:
    """Plant a dentry at ``at`` named ``name`` (its bytes right after it)."""
    size = k.types.struct_size("dentry")
    o.plant(at, bytes(size + 256 + 8))
    o.put(at + _offset(k, "dentry", "d_parent"), parent)
    o.put(at + _offset(k, "dentry", "d_name") + _offset(k, "qstr", "len"),
          len(name) if length is None else length, 4)
    o.put(at + _offset(k, "dentry", "d_name") + _offset(k, "qstr", "name"), at + size)
    o.put(at + _offset(k, "dentry", "d_op"), op)
    o.put(at + _offset(k, "dentry", "d_inode"), inode)
    o.put(at + _offset(k, "dentry", "d_hash") + 8, 1 if hashed else 0)  # pprev
    o.put(at + _offset(k, "dentry", "d_sb"), 0)
    buf = o.planted[at]
    buf[size:size + len(name)] = name


def _root(v: Vfs) -> VfsPath:
    return v.reader_root()


def _quick(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def test_a_dentry_loop_ends_in_an_error_not_a_hang(planted):
    k, o, v = planted
    a, b = FAKE, FAKE + 0x1000
    _dentry(k, o, a, b, b"a")
    _dentry(k, o, b, a, b"b")
    mnt = _root(v).mnt
    start = time.perf_counter()
    with pytest.raises(KvmError, match="loop"):
        v.d_path(VfsPath(mnt, a))
    assert time.perf_counter() - start < 5


def test_a_path_longer_than_path_max_is_refused(planted):
    """15 names of 255 bytes fit in PATH_MAX with their slashes and the NUL; a 16th
    does not: the kernel's d_path fails with ENAMETOOLONG."""
    k, o, v = planted
    root = _root(v)
    parent = root.dentry
    for i in range(16):
        _dentry(k, o, FAKE + i * 0x1000, parent, bytes([97 + i]) * 255)
        parent = FAKE + i * 0x1000
    assert len(v.d_path(VfsPath(root.mnt, FAKE + 14 * 0x1000))) == 15 * 256
    with pytest.raises(KvmError, match="PATH_MAX"):
        v.d_path(VfsPath(root.mnt, FAKE + 15 * 0x1000))


def test_a_name_longer_than_name_max_is_refused(planted):
    k, o, v = planted
    root = _root(v)
    _dentry(k, o, FAKE, root.dentry, b"n", length=100_000)
    with pytest.raises(KvmError, match="NAME_MAX"):
        v.d_path(VfsPath(root.mnt, FAKE))


def test_names_stop_at_a_nul_and_deleted_dentries_say_so(planted):
    k, o, v = planted
    root = _root(v)
    _dentry(k, o, FAKE, root.dentry, b"dir")
    _dentry(k, o, FAKE + 0x1000, FAKE, b"fi\0le", hashed=False)
    assert v.d_path(VfsPath(root.mnt, FAKE + 0x1000)) == "/dir/fi (deleted)"
    assert v.dentry_path(FAKE + 0x1000) == "/dir/fi//deleted"


def test_names_that_are_not_utf8_show_their_bytes(planted):
    k, o, v = planted
    root = _root(v)
    _dentry(k, o, FAKE, root.dentry, b"caf\xe9 \xff")
    assert v.d_path(VfsPath(root.mnt, FAKE)) == "/caf\\xe9 \\xff"


def test_a_dentry_outside_its_mount_prints_the_bare_root(planted):
    """prepend_path's "escaped" end: a dentry that is its own parent but not its mount's
    root (d_alloc_pseudo's, on a filesystem with no d_dname) prints "/"."""
    k, o, v = planted
    _dentry(k, o, FAKE, FAKE, b"[secretmem]", hashed=False)
    assert v.prepend_path(VfsPath(_root(v).mnt, FAKE), _root(v))[1] == 3
    assert v.d_path(VfsPath(_root(v).mnt, FAKE)) == "/"


def _ops(k: LinuxKernel, o: Overlay, at: int, d_dname: int) -> None:
    o.plant(at, bytes(k.types.struct_size("dentry_operations")))
    o.put(at + _offset(k, "dentry_operations", "d_dname"), d_dname)


def test_pseudo_files_are_named_by_their_d_dname_function(planted, session):
    k, o, v = planted
    root = _root(v)
    simple = session.symbols.address_of("simple_dname")
    anon = session.symbols.address_of("anon_inodefs_dname")
    _ops(k, o, FAKE + 0x8000, simple)
    _ops(k, o, FAKE + 0x9000, anon)
    _dentry(k, o, FAKE, FAKE, b"memfd:kvmfx", op=FAKE + 0x8000, hashed=False)
    _dentry(k, o, FAKE + 0x1000, FAKE + 0x1000, b"[eventfd]", op=FAKE + 0x9000)
    assert v.d_path(VfsPath(root.mnt, FAKE)) == "/memfd:kvmfx (deleted)"
    assert v.d_path(VfsPath(root.mnt, FAKE + 0x1000)) == "anon_inode:[eventfd]"


def test_an_unknown_d_dname_function_is_named_not_guessed(planted, session):
    k, o, v = planted
    _ops(k, o, FAKE + 0x8000, session.symbols.address_of("schedule"))
    _dentry(k, o, FAKE, FAKE, b"x", op=FAKE + 0x8000)
    o.put(FAKE + _offset(k, "dentry", "d_sb"), _sb_of(k, v))
    with pytest.raises(KvmError, match=r"schedule\(\)"):
        v.d_path(VfsPath(_root(v).mnt, FAKE))


def _sb_of(k: LinuxKernel, v: Vfs) -> int:
    """The root filesystem's superblock (a readable one, of a type with no d_dname)."""
    return v.read_dentry(_root(v).dentry).sb


def test_an_absurd_file_table_is_refused(planted):
    k, o, v = planted
    task, files, fdt = FAKE, FAKE + 0x4000, FAKE + 0x6000
    o.plant(task, bytes(k.types.struct_size("task_struct")))
    o.put(task + _offset(k, "task_struct", "files"), files)
    o.plant(files, bytes(k.types.struct_size("files_struct")))
    o.put(files + _offset(k, "files_struct", "fdt"), fdt)
    o.plant(fdt, bytes(k.types.struct_size("fdtable")))
    o.put(fdt + _offset(k, "fdtable", "max_fds"), MAX_FDS * 64, 4)
    with pytest.raises(KvmError, match="file table of"):
        list(v.task_files(task))


def test_a_file_table_on_a_missing_page_is_one_partial_row(planted, session):
    """lsof: a process whose file table cannot be read is one row, partial, saying why."""
    from kvmfx.process import Process
    from kvmfx_plugins.commands.files import _dump_files

    k, o, v = planted
    task = FAKE
    o.plant(task, bytes(k.types.struct_size("task_struct")))
    o.put(task + _offset(k, "task_struct", "files"), FAKE + 0x100_0000)  # not planted
    (row,) = _dump_files(v, Process(pid=7, ppid=1, comm="x", handle=task))
    assert row["partial"] and row["fd"] is None and "file table" in row["missing"]["fd"]


def test_a_looping_mount_list_or_tree_ends_with_a_warning(planted):
    k, o, v = planted
    m = Mounts(k)
    ns = FAKE
    o.plant(ns, bytes(k.types.struct_size("mnt_namespace")))
    a, b = FAKE + 0x1000, FAKE + 0x2000
    size = k.types.struct_size("mount")
    o.plant(a, bytes(size))
    o.plant(b, bytes(size))
    if m.rbtree:  # a's left child is b, whose left child is a
        node = _offset(k, "mount", "mnt_node")
        o.put(ns + _offset(k, "mnt_namespace", "mounts"), a + node)
        o.put(a + node + _offset(k, "rb_node", "rb_left"), b + node)
        o.put(b + node + _offset(k, "rb_node", "rb_left"), a + node)
    else:  # head -> a -> b -> a
        head = ns + _offset(k, "mnt_namespace", "list")
        link = _offset(k, "mount", "mnt_list")
        o.put(head, a + link)
        o.put(a + link, b + link)
        o.put(b + link, a + link)
        sb = _offset(k, "mount", "mnt") + _offset(k, "vfsmount", "mnt_sb")
        o.put(a + sb, 1)
        o.put(b + sb, 1)
    warnings: list[str] = []
    before = len(k.session.warnings)
    start = time.perf_counter()
    found = list(m.mounts(MountNamespace(ns, 1), warnings.append))
    assert time.perf_counter() - start < 5
    warnings += k.session.warnings[before:]  # the list walk warns the session
    assert len(found) <= 2 and MAX_MOUNTS > 2
    assert any("loop" in w for w in warnings), warnings


def test_a_mount_with_an_unreadable_superblock_keeps_its_line(planted):
    k, o, v = planted
    m = Mounts(k)
    root = _root(v)
    real = root.mnt - v.mnt_off
    size = k.types.struct_size("mount")
    o.plant(FAKE, k.read(real, size))
    sb = _offset(k, "mount", "mnt") + _offset(k, "vfsmount", "mnt_sb")
    o.put(FAKE + sb, FAKE + 0x100_0000)  # not planted: unreadable
    info = m.mountinfo(FAKE, None, "no reader")
    assert info is not None and info.mount_id is not None
    assert info.fstype is None and "super_block unreadable" in info.missing["fstype"]
    assert info.mount_point is None and info.missing["mount_point"] == "no reader"


def test_propagation_fields(planted):
    """shared:N from the mount's peer group, master:N from its master's, unbindable; the
    flags in mnt_flags up to 6.16, in mnt_t_flags since."""
    from kvmfx_plugins.linux import mounts as mounts_module

    k, o, v = planted
    m = Mounts(k)
    root = _root(v)
    size = k.types.struct_size("mount")
    shared, master = FAKE, FAKE + 0x1000
    for at in (shared, master):
        o.plant(at, k.read(root.mnt - v.mnt_off, size))
    share = _offset(k, "mount", "mnt_share")
    o.put(master + share, master + share)  # a peer ring of one
    o.put(master + _offset(k, "mount", "mnt_ns"), FAKE + 0x9000)  # another namespace
    o.put(master + _offset(k, "mount", "mnt_group_id"), 7, 4)
    o.put(master + _offset(k, "mount", "mnt_master"), 0)
    # mounted on the reader's root
    o.put(shared + _offset(k, "mount", "mnt_parent"), root.mnt - v.mnt_off)
    o.put(shared + _offset(k, "mount", "mnt_mountpoint"), root.dentry)
    o.put(shared + _offset(k, "mount", "mnt_group_id"), 5, 4)
    o.put(shared + _offset(k, "mount", "mnt_master"), master)
    if m.t_flags:
        o.put(shared + _offset(k, "mount", "mnt_t_flags"),
              mounts_module.T_SHARED | mounts_module.T_UNBINDABLE, 4)
    else:
        flags = shared + _offset(k, "mount", "mnt") + _offset(k, "vfsmount", "mnt_flags")
        o.put(flags, mounts_module.MNT_SHARED | mounts_module.MNT_UNBINDABLE, 4)
    info = m.mountinfo(shared, root)
    assert info is not None and info.propagation == "shared:5 master:7 unbindable"


def test_propagate_from_names_the_nearest_master_with_a_peer_in_reach(planted):
    """fs/pnode.c get_dominating_id: the mount's master (group 7) has no peer in the
    mount's namespace; its own master (group 9) has one there, under the reader's root."""
    k, o, v = planted
    m = Mounts(k)
    root = _root(v)
    size = k.types.struct_size("mount")
    mine, first, second, peer = FAKE, FAKE + 0x1000, FAKE + 0x2000, FAKE + 0x3000
    for at in (mine, first, second, peer):
        o.plant(at, k.read(root.mnt - v.mnt_off, size))
        o.put(at + _offset(k, "mount", "mnt_parent"), root.mnt - v.mnt_off)
        o.put(at + _offset(k, "mount", "mnt_mountpoint"), root.dentry)
        if m.t_flags:
            o.put(at + _offset(k, "mount", "mnt_t_flags"), 0, 4)
    ns = int.from_bytes(k.read(root.mnt - v.mnt_off + _offset(k, "mount", "mnt_ns"), 8),
                        "little")
    share = _offset(k, "mount", "mnt_share")
    for at, group, master, mount_ns, next_peer in (
            (mine, 0, first, ns, mine), (first, 7, second, FAKE + 0x9000, first),
            (second, 9, 0, FAKE + 0x9000, peer), (peer, 9, 0, ns, second)):
        o.put(at + _offset(k, "mount", "mnt_group_id"), group, 4)
        o.put(at + _offset(k, "mount", "mnt_master"), master)
        o.put(at + _offset(k, "mount", "mnt_ns"), mount_ns)
        o.put(at + share, next_peer + share)
    info = m.mountinfo(mine, root)
    assert info is not None and info.propagation == "master:7 propagate_from:9"
