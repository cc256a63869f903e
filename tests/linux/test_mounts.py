"""mounts on real dumps equals the guest's own /proc/PID/mountinfo of a process in each
mount namespace, line by line and field by field, in mountinfo's order, on every format of
every kernel of the matrix: the initial namespace (rootfs, proc, sysfs, devtmpfs, a tmpfs
mounted nosuid,nodev with size=), the namespace kdevtmpfs lives in (chrooted into its
devtmpfs: its parent mount is outside and not shown), and a process's own namespace with an
extra tmpfs (noexec, size=, mode=700). The six matrix guests also mount what real systems
do (tests/factory/scenarios.py MORE_MOUNTS): cgroup2, a cgroup v1 hierarchy, debugfs,
tracefs, securityfs, bpf, mqueue, configfs, pstore, hugetlbfs, a real ext4 on a loop
device and a vfat, each with non-default options; every one of their lines is exact too,
but for the filesystems whose structures a kernel does not describe (NOT_RENDERED)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import kvmfx
from kvmfx_plugins.commands.files import Mounts, parse_mountinfo, unescape
from tests.factory import get_fixture
from tests.linux.test_lsof import FILTERED, KERNELS, dump_path, dumps, left_out

FIELDS = ("mount_id", "parent_id", "dev", "root", "mount_point", "mount_options",
          "propagation", "fstype", "source", "super_options")
#: the matrix kernels whose guests mount MORE_MOUNTS
MATRIX = ("bullseye", "basic", "trixie", "backports", "arm64", "arm64-16k")
#: what MORE_MOUNTS mounts (fstype -> mount point), on every kernel of the matrix
MORE = {"cgroup2": "/sys/fs/cgroup", "cgroup": "/mnt/cgroup1",
        "debugfs": "/sys/kernel/debug", "tracefs": "/sys/kernel/tracing",
        "securityfs": "/sys/kernel/security", "bpf": "/sys/fs/bpf", "mqueue": "/dev/mqueue",
        "configfs": "/sys/kernel/config", "pstore": "/sys/fs/pstore",
        "hugetlbfs": "/dev/hugepages", "ext4": "/mnt/ext4", "vfat": "/mnt/vfat"}
#: (kernel, fstype) whose super_options stay null, and why: Linux 5.10 keeps no BTF of its
#: modules (and its ext4 parses options before the fs_context API); Debian's arm64 6.1
#: kallsyms names no data (no ext4 option tables, no btf_modules list)
NOT_RENDERED = {("bullseye", "ext4"): "before Linux 5.17",
                ("bullseye", "vfat"): "no BTF of its modules",
                ("arm64", "ext4"): "name no data",
                ("arm64", "vfat"): "name no data"}


@pytest.mark.parametrize(("name", "key"), dumps())
def test_every_namespace_matches_the_guests_mountinfo(name, key):
    fx = get_fixture(name)
    filtered = key in FILTERED
    with kvmfx.open(dump_path(name, key)) as s:
        rows = list(Mounts().run(s, {}))
        warnings = list(s.warnings)
    got: dict[str, list[dict]] = {}
    for row in rows:
        got.setdefault(row["mnt_ns"], []).append(row)
    want = {ns: parse_mountinfo(text) for ns, text in fx.truth["mountinfo"].items()}
    if not filtered:
        assert set(got) == set(want)
    checked, problems = 0, []
    total = sum(len(lines) for lines in want.values()) * len(FIELDS)
    for ns, lines in want.items():
        have = got.get(ns)
        if have is None:
            assert filtered, ns
            continue
        ids = [r["mount_id"] for r in have]
        if filtered and ids != [w["mount_id"] for w in lines]:
            # a mount on a page the filter left out: the rest in order, and a warning
            assert any("unreadable" in w or "broken" in w for w in warnings), warnings
            lines = [w for w in lines if w["mount_id"] in ids]
        assert ids == [w["mount_id"] for w in lines], ns
        for row, line in zip(have, lines, strict=True):
            missing = row["missing"] or {}
            why_not = NOT_RENDERED.get((name, line["fstype"]))
            for field in FIELDS:
                if field == "super_options" and why_not is not None:
                    assert row[field] is None and why_not in missing[field], missing
                    assert missing[field].startswith(line[field].split(",")[0] + " and")
                    checked += 1
                    continue
                if field in missing:
                    if not (filtered and left_out(missing[field])):
                        problems.append((ns, line["mount_id"], field, missing[field]))
                elif row[field] != line[field]:
                    problems.append((ns, line["mount_id"], field, row[field], line[field]))
                else:
                    checked += 1
    assert problems == []
    if filtered:
        assert checked >= 3 * len(FIELDS)
    else:
        assert checked == total  # every field of every line of every namespace


@pytest.mark.parametrize("name", KERNELS)
def test_the_planted_namespace_and_tmpfs(name):
    fx = get_fixture(name)
    roles, procs = fx.truth["roles"], fx.truth["processes"]
    own = procs[str(roles["mntns"])]["mnt_ns"]
    init = procs["1"]["mnt_ns"]
    assert own != init
    with kvmfx.open(dump_path(name, "elf")) as s:
        rows = list(Mounts().run(s, {}))
    by_ns: dict[str, list[dict]] = {}
    for row in rows:
        by_ns.setdefault(row["mnt_ns"], []).append(row)
    assert by_ns[init][0]["pid"] == 1 and by_ns[init][0]["mount_point"] == "/"
    extra = [r for r in by_ns[own] if r["mount_point"] not in
             {m["mount_point"] for m in by_ns[init]}]
    assert extra and all(r["fstype"] == "tmpfs" for r in extra)
    assert any("noexec" in r["mount_options"] for r in extra)
    assert any(",size=" in r["super_options"] for r in extra)
    tmpfs = [r for r in by_ns[init] if r["fstype"] == "tmpfs"]
    assert tmpfs and all("nosuid" in r["mount_options"] for r in tmpfs)


@pytest.mark.parametrize("name", MATRIX)
def test_the_filesystems_real_systems_mount(name):
    """Every filesystem MORE_MOUNTS mounts is in the guest's mountinfo and kvmfx's, with
    the guest's exact line; the superblock options are rendered (not null) but where the
    kernel does not describe the filesystem (NOT_RENDERED, with its reason)."""
    fx = get_fixture(name)
    init = fx.truth["processes"]["1"]["mnt_ns"]
    want = {w["fstype"]: w for w in parse_mountinfo(fx.truth["mountinfo"][init])}
    assert {fstype: want[fstype]["mount_point"] for fstype in MORE} == MORE
    with kvmfx.open(dump_path(name, "elf")) as s:
        rows = {r["fstype"]: r for r in Mounts().run(s, {}) if r["mnt_ns"] == init}
    for fstype in MORE:
        row, line = rows[fstype], want[fstype]
        why_not = NOT_RENDERED.get((name, fstype))
        if why_not is not None:
            assert row["super_options"] is None
            assert why_not in row["missing"]["super_options"]
            line = {**line, "super_options": None}
        else:
            assert row["super_options"] is not None, row["missing"]
        assert {f: row[f] for f in FIELDS} == line, fstype
    assert ",nsdelegate" in rows["cgroup2"]["super_options"]
    assert rows["cgroup"]["super_options"].endswith(",xattr,name=kvmfx")
    assert rows["hugetlbfs"]["super_options"].startswith("rw,gid=1000,mode=1770,pagesize=")
    if (name, "ext4") not in NOT_RENDERED:
        assert ",commit=7," in rows["ext4"]["super_options"]
        assert ",shortname=winnt," in rows["vfat"]["super_options"]


def test_mountinfo_escapes_are_undone():
    assert unescape("/a\\040b\\011c\\012d\\134e") == "/a b\tc\nd\\e"
    assert unescape("\\0") == "\\0" and unescape("x\\") == "x\\"
    (row,) = parse_mountinfo("36 35 98:0 /mnt1 /mnt\\0402 rw,noatime master:1 - ext3 "
                             "/dev/root rw,errors=continue")
    assert row == {"mount_id": 36, "parent_id": 35, "dev": "98:0", "root": "/mnt1",
                   "mount_point": "/mnt 2", "mount_options": "rw,noatime",
                   "propagation": "master:1", "fstype": "ext3", "source": "/dev/root",
                   "super_options": "rw,errors=continue"}


def test_the_live_system_shows_its_own_mountinfo():
    with kvmfx.open() as s:
        rows = list(Mounts().run(s, {}))
    own = os.readlink("/proc/self/ns/mnt")
    mine = [r for r in rows if r["mnt_ns"] == own]
    want = parse_mountinfo(Path(f"/proc/{mine[0]['pid']}/mountinfo").read_text())
    assert [{f: r[f] for f in FIELDS} for r in mine] == want


def test_module_btf_is_read_by_name_and_bounded():
    """A module's split BTF: a struct's members by name (bitfields included), its size
    through the kernel's types for a base type id; a blob cut short or not BTF is a
    FormatError, never a traceback."""
    import struct

    from kvmfx.errors import FormatError
    from kvmfx_plugins.linux.mounts import ModuleBtf, seq_escape

    class Base:
        @staticmethod
        def sizeof(tid):
            return {1: 4}[tid]

    base_strings = b"\0int\0"
    strings = b"\0s\0a\0b\0"  # own offsets 1, 3, 5 follow the base's 5 bytes
    # type 2: struct s {int a; unsigned b:3 at bit 32;} (kind_flag set: bitfield offsets)
    types = struct.pack("<3I", 5 + 1, (1 << 31) | (4 << 24) | 2, 8)
    types += struct.pack("<3I", 5 + 3, 1, 0) + struct.pack("<3I", 5 + 5, 1, (3 << 24) | 32)
    header = struct.pack("<HBB5I", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    btf = ModuleBtf(header + types + strings, Base(), base_strings, 1)
    size, members = btf.layout("s")
    assert size == 8 and members == {"a": (0, 0, 4), "b": (32, 3, 4)}
    data = struct.pack("<iI", -2, 0b1101)
    st = btf.read(lambda at, n: data[:n], "s", 0)
    assert st["b"] == 0b101 and st.offset("b") == 4
    with pytest.raises(FormatError):
        btf.layout("missing")
    with pytest.raises(FormatError):
        ModuleBtf(b"junk", Base(), base_strings, 1)
    cut = ModuleBtf(header + types[:20], Base(), base_strings, 1)
    with pytest.raises(FormatError):
        cut.layout("s")
    assert seq_escape("a b,c", ", ") == "a\\040b\\054c"
