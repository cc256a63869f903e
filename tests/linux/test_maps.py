"""maps: every mapping of every process equals the guest's own /proc/PID/maps, line by line,
on every format of every kernel of the matrix; --suspicious finds the mapping of a binary
deleted after exec and nothing in a normal process; a damaged maple tree or VMA list ends
in a flagged partial listing, never a hang.

| fixture | kernel | where the mappings are |
| --- | --- | --- |
| bullseye | Debian 11's Linux 5.10 | the mm's VMA list (mm->mmap, vm_next) |
| basic, arm64 | Debian 12's Linux 6.1 (x86_64, arm64 4K) | the maple tree (mm->mm_mt) |
| trixie, arm64-16k | Debian 13's Linux 6.12 (x86_64, arm64 16K) | the maple tree |
| backports | the newest kernel in trixie-backports | the maple tree |
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest

import kvmfx
from kvmfx.errors import MissingPageError
from kvmfx_plugins.linux.vma import (
    MAPLE_HEIGHT_MAX,
    ULONG_MAX,
    MapleLayout,
    Mapping,
    maple_entries,
    maps,
    maps_line,
    vma_list,
)
from tests.factory import Fixture, get_fixture
from tests.factory.scenarios import SCENARIOS
from tests.linux.test_hostile_memory import _copy, _patch

X86 = ("bullseye", "basic", "trixie", "backports")
ARM64 = ("arm64", "arm64-16k")
#: QEMU 7.2 writes neither (the factory lists them under not_produced); makedumpfile reads
#: x86_64 dumps only, so an aarch64 guest has QEMU's own dumps and the LiME image
QEMU_CANNOT = ("kdump-lzo", "kdump-snappy")
ARM64_FORMATS = ("elf", "kdump-zlib", "raw", "lime")
#: makedumpfile -d 31: user pages left out, and on a kernel newer than makedumpfile knows
#: (1.7.2 knows up to 6.1) some kernel pages too; the mappings are all in the dump of a
#: kernel it knows
FILTERED = ("mdf-zlib-d31", "mdf-elf-d31")
KNOWN_TO_MAKEDUMPFILE = ("bullseye", "basic")
X86_FORMATS = {name: [key for key in SCENARIOS[name].dumps or
                      ("elf", "kdump-zlib", "raw", "mdf-zlib", "mdf-lzo", "mdf-zlib-d31",
                       "mdf-elf-d31", "mdf-zstd", "flattened", "lime")
                      if key not in QEMU_CANNOT] for name in X86}
MATRIX = [(name, key) for name in X86 for key in X86_FORMATS[name]
          if key not in FILTERED or name in KNOWN_TO_MAKEDUMPFILE] + \
    [(name, key) for name in ARM64 for key in ARM64_FORMATS]
#: the planted processes (docs/fixtures.md): each has mappings the others lack
ROLES = ("files", "deleted_exe", "chroot", "mntns", "caps")


def _dump(fx: Fixture, key: str) -> str:
    assert key in fx.files, fx.manifest.get("not_produced", {}).get(key)
    return str(fx.path(key))


def _expected(fx: Fixture) -> dict[int, list[str]]:
    """pid -> the lines of the guest's /proc/PID/maps (none for a kernel thread)."""
    return {int(pid): t["maps"].splitlines() for pid, t in fx.truth["processes"].items()}


def _row_line(row: dict) -> str:
    """The /proc/PID/maps line a maps row stands for."""
    head = (f"{row['start']}-{row['end']} {row['perms']} {row['offset']} {row['dev']} "
            f"{row['inode']} ")
    return head.ljust(72) + " " + row["path"] if row["path"] else head


# -- the guest's own /proc ------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "key"), MATRIX)
def test_every_mapping_of_every_process_matches_the_guest(name, key):
    fx = get_fixture(name)
    expected = _expected(fx)
    with kvmfx.open(_dump(fx, key)) as s:
        reader = maps(s.profile.kernel(s))
        assert reader.maple == (name != "bullseye")
        procs = {p.pid: p for p in s.processes()}
        got = {}
        for pid in expected:
            found = reader.process(procs[pid].handle)
            if found is not None:
                assert found.problems == [], pid
                assert all(not m.missing for m in found.mappings), pid
            got[pid] = [maps_line(m) for m in found.mappings] if found is not None else []
        assert {p: v for p, v in got.items() if v != expected[p]} == {}
        assert s.warnings == []
    mapped = [pid for pid, lines in expected.items() if lines]
    roles = fx.truth["roles"]
    assert {roles[r] for r in ROLES} <= set(mapped)
    assert sum(len(expected[p]) for p in mapped) > 10 * len(ROLES)


@pytest.mark.parametrize("name", ["rt", "la57", "many"])
def test_other_builds_paging_and_scale_match_the_guest(name):
    """The PREEMPT_RT build (other structure layouts), 5-level paging, and 325 processes."""
    fx = get_fixture(name)
    expected = _expected(fx)
    with kvmfx.open(str(fx.path("elf"))) as s:
        reader = maps(s.profile.kernel(s))
        got = {}
        for p in s.processes():
            found = reader.process(p.handle)
            got[p.pid] = [maps_line(m) for m in found.mappings] if found is not None else []
            assert found is None or found.problems == [], p.pid
    assert {pid: got[pid] for pid in expected} == expected
    assert sum(1 for lines in expected.values() if lines) > (300 if name == "many" else 20)


def _fields(line: str) -> dict:
    """A /proc/PID/maps line as a maps row's fields."""
    start_end, perms, offset, dev, inode, *rest = line.split(maxsplit=5)
    start, end = start_end.split("-")
    return {"start": start, "end": end, "perms": perms, "offset": offset, "dev": dev,
            "inode": int(inode), "path": rest[0] if rest else ""}


@pytest.mark.parametrize(("name", "key"), [(n, k) for n in X86 for k in FILTERED
                                           if n not in KNOWN_TO_MAKEDUMPFILE])
def test_a_filtered_dump_never_shows_a_wrong_mapping(name, key):
    """On a kernel makedumpfile does not know, -d 31 also leaves out kernel pages (dentries,
    mm_structs it takes for user data): each mapping's field is the guest's own or null
    with why; a process whose mappings cannot be reached has one row saying so."""
    fx = get_fixture(name)
    expected = _expected(fx)
    with kvmfx.open(_dump(fx, key)) as s:
        rows = list(s.registry.commands["maps"].run(s, {}))
        listed = {p.pid for p in s.processes()}  # (the process listing has its own tests)
    by_pid: dict[int, list[dict]] = {}
    for row in rows:
        by_pid.setdefault(row["pid"], []).append(row)
    flagged = exact = 0
    for pid, lines in expected.items():
        if pid not in listed:
            continue
        got = by_pid.get(pid, [])
        want = {f["start"]: f for f in map(_fields, lines)}
        for row in got:
            if row["start"] is None:  # nothing of its mappings could be reached
                assert row["partial"] and row["missing"]["maps"] and len(got) == 1, row
                flagged += 1
                continue
            fields = want[row["start"]]
            for name_, value in fields.items():
                if row[name_] is None:
                    assert row["missing"][name_], row
                    flagged += 1
                else:
                    assert row[name_] == value, (pid, name_, row)
                    exact += 1
        if len(got) != len(lines) and not (got and got[0]["start"] is None):
            assert got and all(r["partial"] for r in got), pid
    assert exact > 10 * len(ROLES)


@pytest.mark.parametrize("name", [*X86, *ARM64])
def test_the_command_rows_are_the_guests_lines(name):
    """``kvmfx run maps``: each row is one line of /proc/PID/maps, field by field, in
    order; --pid and --comm select as in the process commands."""
    fx = get_fixture(name)
    expected = _expected(fx)
    with kvmfx.open(str(fx.path("elf"))) as s:
        command = s.registry.commands["maps"]
        rows = list(command.run(s, {}))
        by_pid: dict[int, list[str]] = {}
        for row in rows:
            assert row["partial"] is False and row["missing"] is None, row
            assert row["suspicious"] is None and row["first_bytes"] is None
            by_pid.setdefault(row["pid"], []).append(_row_line(row))
        assert by_pid == {pid: lines for pid, lines in expected.items() if lines}
        pid = fx.truth["roles"]["files"]
        only = list(command.run(s, {"pid": pid}))
        assert [_row_line(r) for r in only] == expected[pid]
        comm = fx.truth["processes"][str(pid)]["comm"]
        assert {r["comm"] for r in command.run(s, {"comm": comm})} == {comm}


def test_a_deleted_file_and_a_chroot_are_shown_as_the_guest_shows_them():
    fx = get_fixture("basic")
    roles, expected = fx.truth["roles"], _expected(fx)
    with kvmfx.open(str(fx.path("elf"))) as s:
        reader = maps(s.profile.kernel(s))
        procs = {p.pid: p for p in s.processes()}

        def paths(role: str) -> set[str]:
            found = reader.process(procs[roles[role]].handle)
            return {m.path for m in found.mappings}

        assert "/tmp/kvmfx-deleted-exe (deleted)" in paths("deleted_exe")
        assert {"/tmp/kvmfx-deleted (deleted)", "/tmp/kvmfx-read"} <= paths("files")
        assert "/jail/bin/kvmfx-helper" in paths("chroot")  # against the reader's root
    shared = [line for line in expected[roles["files"]] if "(deleted)" in line]
    assert shared and shared[0].split()[1] == "rw-s"


@pytest.mark.parametrize("name", [*X86, *ARM64])
def test_suspicious_finds_the_deleted_binary_and_nothing_in_a_normal_process(name):
    fx = get_fixture(name)
    target = fx.truth["roles"]["deleted_exe"]
    helper = (fx.dir / "kvmfx-helper").read_bytes()
    with kvmfx.open(str(fx.path("elf"))) as s:
        rows = list(s.registry.commands["maps"].run(s, {"suspicious": True}))
    assert rows and {r["pid"] for r in rows} == {target}
    (row,) = rows  # the binary's one executable mapping
    assert row["perms"] == "r-xp" and row["path"] == "/tmp/kvmfx-deleted-exe (deleted)"
    assert row["suspicious"] == "executable of a deleted file"
    offset = int(row["offset"], 16)
    # the deleted file was a copy of the helper: its first bytes are the helper's own
    assert row["first_bytes"] == helper[offset:offset + 64].hex()
    assert _row_line(row) in _expected(fx)[target]


def test_first_bytes_of_a_filtered_dump_are_null_with_the_reason():
    """makedumpfile -d 31 leaves user pages out: the mapping is still listed and
    suspicious, its first bytes null, and the row says why."""
    fx = get_fixture("basic")
    with kvmfx.open(_dump(fx, "mdf-zlib-d31")) as s:
        (row,) = list(s.registry.commands["maps"].run(s, {"suspicious": True}))
    assert row["pid"] == fx.truth["roles"]["deleted_exe"]
    assert row["first_bytes"] is None and "not in the dump" in row["missing"]["first_bytes"]
    assert row["partial"] is False and set(row["missing"]) == {"first_bytes"}


def test_the_maple_layout_is_the_kernels_own():
    """The node layout read from each kernel's BTF is the one include/linux/maple_tree.h
    declares for 64-bit kernels (the synthetic trees below are built with it)."""
    for name in ("basic", "trixie", "backports", "arm64-16k"):
        with kvmfx.open(str(get_fixture(name).path("elf"))) as s:
            assert MapleLayout.from_types(s.types) == MapleLayout(), name


# -- the maple tree walk on synthetic nodes -------------------------------------------------------
LEAF, RANGE, ARANGE = 1, 2, 3
SHAPES = MapleLayout().shapes


class Memory:
    """Maple nodes at made-up kernel addresses; anything else is not in the dump."""

    def __init__(self) -> None:
        self.nodes: dict[int, bytes] = {}
        self.reads = 0

    def node(self, at: int, ntype: int, pivots: list[int], slots: list[int],
             end: int | None = None, parent: int = 0x1) -> int:
        """Write a node of ``ntype`` at ``at``; its encoded pointer."""
        shape = SHAPES[ntype]
        buf = bytearray(256)
        struct.pack_into("<Q", buf, 0, parent)
        struct.pack_into(f"<{len(pivots)}Q", buf, shape.pivot_off, *pivots)
        struct.pack_into(f"<{len(slots)}Q", buf, shape.slot_off, *slots)
        if end is None:
            end = len(slots) - 1
        if end < shape.slots - 1 or ntype == ARANGE:
            buf[shape.meta_end_off] = end
        self.nodes[at] = bytes(buf)
        return at | ntype << 3

    def read(self, address: int, size: int) -> bytes:
        self.reads += 1
        base = address & ~0xFF
        if base not in self.nodes:
            raise MissingPageError("not in the dump", address=address)
        return self.nodes[base][address - base:address - base + size]


def _walk(mem: Memory, root: int) -> tuple[list[tuple[int, int, int]], list[str]]:
    problems: list[str] = []
    return list(maple_entries(mem.read, MapleLayout(), root, problems)), problems


def _two_leaves(mem: Memory) -> int:
    """A root allocation-range node over two leaves: VMAs A (0x1000-0x2fff), B (0x5000-
    0x5fff) in the first, C (0x9000-0x9fff) in the second; the root pointer."""
    left = mem.node(0x10000, LEAF, [0xFFF, 0x2FFF, 0x4FFF, 0x5FFF, 0x8FFF],
                    [0, 0xA000, 0, 0xB000, 0], end=4)
    right = mem.node(0x10100, LEAF, [0x9FFF, ULONG_MAX], [0xC000, 0], end=1)
    root = mem.node(0x10200, ARANGE, [0x8FFF, ULONG_MAX], [left, right], end=1)
    return root | 2


def test_the_walk_lists_every_range_in_order_reading_each_node_once():
    mem = Memory()
    entries, problems = _walk(mem, _two_leaves(mem))
    assert entries == [(0x1000, 0x2FFF, 0xA000), (0x5000, 0x5FFF, 0xB000),
                       (0x9000, 0x9FFF, 0xC000)]
    assert problems == [] and mem.reads == 3


def test_a_full_leaf_takes_its_last_range_up_to_the_nodes_end():
    """ma_data_end(): a last pivot neither 0 nor the node's end means all 16 slots are
    used, the 16th up to the end (no metadata)."""
    mem = Memory()
    pivots = [0x1000 * (i + 1) - 1 for i in range(15)]
    slots = [0xA000 + 0x100 * i for i in range(16)]
    root = mem.node(0x20000, LEAF, pivots, slots, end=15) | 2
    entries, problems = _walk(mem, root)
    assert problems == [] and len(entries) == 16
    assert entries[-1] == (0xF000, ULONG_MAX, 0xAF00)


def test_a_node_pointing_to_itself_is_read_once_and_flagged():
    mem = Memory()
    left = mem.node(0x30000, LEAF, [0xFFF, 0x1FFF], [0, 0xA000], end=1)
    # the root's second child is the root itself
    root = mem.node(0x30100, ARANGE, [0x1FFF, ULONG_MAX], [left, 0x30100 | ARANGE << 3],
                    end=1)
    entries, problems = _walk(mem, root | 2)
    assert entries == [(0x1000, 0x1FFF, 0xA000)]
    assert len(problems) == 1 and "reached twice" in problems[0]


def test_a_pivot_out_of_order_cuts_the_node_short_and_is_flagged():
    mem = Memory()
    root = mem.node(0x40000, LEAF, [0xFFF, 0x2FFF, 0x1FFF, ULONG_MAX],
                    [0, 0xA000, 0xB000, 0], end=3) | 2
    entries, problems = _walk(mem, root)
    assert entries == [(0x1000, 0x2FFF, 0xA000)]
    assert len(problems) == 1 and "out of order" in problems[0]


def test_a_pivot_past_the_parents_range_is_flagged():
    mem = Memory()
    child = mem.node(0x50000, LEAF, [0xFFF, 0x7FFF], [0xA000, 0xB000], end=1)
    other = mem.node(0x50100, LEAF, [ULONG_MAX], [0xC000], end=0)
    root = mem.node(0x50200, ARANGE, [0x3FFF, ULONG_MAX], [child, other], end=1)
    entries, problems = _walk(mem, root | 2)
    assert entries == [(0, 0xFFF, 0xA000), (0x4000, ULONG_MAX, 0xC000)]
    assert len(problems) == 1 and "out of order" in problems[0]


def test_an_unreadable_dead_or_unknown_node_is_flagged_and_the_rest_read():
    mem = Memory()
    good = mem.node(0x60000, LEAF, [0xFFF, 0x1FFF], [0, 0xA000], end=1)
    dead = mem.node(0x60100, LEAF, [0x2FFF, 0x3FFF], [0, 0xB000], end=1, parent=0x60100)
    missing = 0x60200 | LEAF << 3  # no node there
    dense = 0x60300 | 0 << 3  # maple_dense: no VMA tree holds one
    root = mem.node(0x60400, RANGE, [0x1FFF, 0x3FFF, 0x5FFF, 0x7FFF, ULONG_MAX],
                    [good, dead, missing, dense, 0], end=4)
    entries, problems = _walk(mem, root | 2)
    assert entries == [(0x1000, 0x1FFF, 0xA000)]
    text = " | ".join(problems)
    assert "dead" in text and "unreadable" in text and "type 0" in text and \
        "points to no node" in text
    assert len(problems) == 4


def test_a_chain_deeper_than_the_tallest_tree_stops():
    mem = Memory()
    child = mem.node(0x70000, LEAF, [ULONG_MAX], [0xA000], end=0)
    for i in range(1, MAPLE_HEIGHT_MAX + 5):
        child = mem.node(0x70000 + i * 0x100, RANGE, [ULONG_MAX], [child], end=0)
    entries, problems = _walk(mem, child | 2)
    assert entries == [] and any("deeper than" in p for p in problems)
    assert mem.reads <= MAPLE_HEIGHT_MAX


def test_a_node_claiming_more_entries_than_slots_is_read_to_its_last_slot():
    mem = Memory()
    root = mem.node(0x80000, ARANGE, [0xFFF] + [0] * 8, [0] * 10, end=200)
    entries, problems = _walk(mem, root | 2)
    assert entries == [] and "at most 10" in problems[0]


def test_the_vma_list_walk_stops_at_a_loop_and_a_broken_link():
    words = {0xA000: 0xB000, 0xB000: 0xA000}  # vm_next of A is B, of B is A

    def read(address: int, size: int) -> bytes:
        if address not in words:
            raise MissingPageError("not in the dump", address=address)
        return words[address].to_bytes(8, "little")

    problems: list[str] = []
    assert list(vma_list(read, 0xA000, 0, problems)) == [0xA000, 0xB000]
    assert "loops" in problems[0]
    words[0xB000] = 0xDEAD000000000100
    problems = []
    assert list(vma_list(read, 0xA000, 0, problems)) == [0xA000, 0xB000,
                                                         0xDEAD000000000100]
    assert "broken" in problems[0]


def test_the_line_is_laid_out_as_seq_pad_lays_it_out():
    m = Mapping(0x400000, 0x401000, flags=0x5, offset=0x1000, dev=(0xFE, 0x101), inode=42,
                path="/bin/x")
    assert maps_line(m) == "00400000-00401000 r-xp 00001000 fe:101 42".ljust(72) + \
        " /bin/x"
    assert maps_line(Mapping(0x1000, 0x2000, flags=0x89, offset=0, dev=(0, 0), inode=0,
                             path="")) == "00001000-00002000 r--s 00000000 00:00 0 "


# -- damaged trees in a real dump -----------------------------------------------------------------
@pytest.fixture(scope="module")
def basic():
    return get_fixture("basic")


def _process_tree(path, pid: int) -> tuple[int, int, int]:
    """(the maple root's node address, its encoded type, the mm_struct's ma_root address)
    of process ``pid``."""
    with kvmfx.open(str(path)) as s:
        (p,) = [p for p in s.processes() if p.pid == pid]
        types = s.types
        mm = int.from_bytes(s.read(p.handle + types.offsetof("task_struct", "mm"), 8),
                            "little")
        at = mm + types.offsetof("mm_struct", "mm_mt") + types.offsetof("maple_tree",
                                                                        "ma_root")
        root = int.from_bytes(s.read(at, 8), "little")
    return root & ~0xFF, (root >> 3) & 0xF, at


def _run_maps(path, pid: int) -> tuple[int, list[dict], str]:
    r = subprocess.run([sys.executable, "-m", "kvmfx.cli", "run", "maps", str(path), "--pid",
                        str(pid), "--format", "json"], capture_output=True, text=True,
                       timeout=60)
    return r.returncode, json.loads(r.stdout or "[]"), r.stderr


@pytest.mark.hostile
def test_a_maple_root_pointing_to_itself_gives_a_flagged_row_not_a_hang(basic, tmp_path):
    path = _copy(basic, tmp_path)
    pid = basic.truth["roles"]["files"]
    node, _ntype, root_at = _process_tree(path, pid)
    # the root becomes an internal range node whose first slot is the root itself
    _patch(path, root_at, (node | RANGE << 3 | 2).to_bytes(8, "little"))
    _patch(path, node + SHAPES[RANGE].slot_off, (node | RANGE << 3).to_bytes(8, "little"))
    code, rows, err = _run_maps(path, pid)
    assert code == 4 and "Traceback" not in err and "reached twice" in err
    assert rows and all(r["partial"] and "reached twice" in r["missing"]["maps"]
                        for r in rows)


@pytest.mark.hostile
def test_a_pivot_out_of_order_in_a_real_tree_lists_what_comes_before(basic, tmp_path):
    path = _copy(basic, tmp_path)
    pid = basic.truth["roles"]["deleted_exe"]
    node, ntype, _root_at = _process_tree(path, pid)
    assert ntype == LEAF  # a few mappings: one leaf
    # pivot 3 (the end of the fourth range) drops below pivot 2
    shape = SHAPES[LEAF]
    _patch(path, node + shape.pivot_off + 3 * 8, (0x1000).to_bytes(8, "little"))
    code, rows, err = _run_maps(path, pid)
    assert code == 4 and "Traceback" not in err
    want = _expected(basic)[pid]
    lines = [_row_line(r) for r in rows]
    assert 0 < len(lines) < len(want) and lines == want[:len(lines)]
    assert all(r["partial"] and "out of order" in r["missing"]["maps"] for r in rows)


@pytest.mark.parametrize("name", ["bullseye", "basic"])
def test_the_vsyscall_page_follows_the_last_mapping_where_the_kernel_shows_it(name, tmp_path):
    """Debian boots with vsyscall=none (no vsyscall line); with the mode patched to
    emulate, every 64-bit process shows the gate VMA last, as get_gate_vma() gives it: the
    5.10 kernel by context.ia32_compat, 6.1 by context.flags."""
    fx = get_fixture(name)
    path = _copy(fx, tmp_path)
    with kvmfx.open(str(path)) as s:
        mode_at = s.symbols.address_of("vsyscall_mode")
        assert s.read(mode_at, 4) == (2).to_bytes(4, "little")  # NONE
    _patch(path, mode_at, (0).to_bytes(4, "little"))  # EMULATE
    gate = "ffffffffff600000-ffffffffff601000 r-xp 00000000 00:00 0".ljust(72) + \
        " [vsyscall]"
    expected = _expected(fx)
    with kvmfx.open(str(path)) as s:
        reader = maps(s.profile.kernel(s))
        for p in s.processes():
            found = reader.process(p.handle)
            if found is None:
                continue
            assert [maps_line(m) for m in found.mappings] == [*expected[p.pid], gate]
        assert s.warnings == []


@pytest.mark.hostile
def test_a_looping_vma_list_lists_each_mapping_once_and_is_flagged(tmp_path):
    """Linux 5.10's VMA list: the third VMA's vm_next leads back to the first."""
    fx = get_fixture("bullseye")
    path = _copy(fx, tmp_path)
    pid = fx.truth["roles"]["deleted_exe"]
    with kvmfx.open(str(path)) as s:
        (p,) = [p for p in s.processes() if p.pid == pid]
        types = s.types
        mm = int.from_bytes(s.read(p.handle + types.offsetof("task_struct", "mm"), 8),
                            "little")
        first = int.from_bytes(s.read(mm + types.offsetof("mm_struct", "mmap"), 8), "little")
        next_off = types.offsetof("vm_area_struct", "vm_next")
        second = int.from_bytes(s.read(first + next_off, 8), "little")
        third = int.from_bytes(s.read(second + next_off, 8), "little")
    _patch(path, third + next_off, first.to_bytes(8, "little"))
    code, rows, err = _run_maps(path, pid)
    assert code == 4 and "Traceback" not in err
    assert [_row_line(r) for r in rows] == _expected(fx)[pid][:3]
    assert all(r["partial"] and "loops" in r["missing"]["maps"] for r in rows)


@pytest.mark.hostile
def test_an_unreadable_vma_keeps_its_row_with_the_trees_range(basic, tmp_path):
    """A leaf slot pointing into memory the dump does not hold: the mapping keeps its row,
    its range from the tree's pivots, every other field null with why; the rest is read."""
    path = _copy(basic, tmp_path)
    pid = basic.truth["roles"]["deleted_exe"]
    node, ntype, _root_at = _process_tree(path, pid)
    assert ntype == LEAF
    _patch(path, node + SHAPES[LEAF].slot_off + 2 * 8,
           (0xDEAD000000000100).to_bytes(8, "little"))  # the second mapping's VMA
    code, rows, err = _run_maps(path, pid)
    assert code == 0 and "Traceback" not in err
    want = _expected(basic)[pid]
    assert len(rows) == len(want)
    broken = rows[1]
    assert (broken["start"], broken["end"]) == tuple(want[1].split()[0].split("-"))
    assert all(broken[f] is None for f in ("perms", "offset", "dev", "inode", "path"))
    assert set(broken["missing"]) == {"perms", "offset", "dev", "inode", "path"}
    assert "0xdead000000000100" in broken["missing"]["path"] and not broken["partial"]
    assert [_row_line(r) for i, r in enumerate(rows) if i != 1] == want[:1] + want[2:]
