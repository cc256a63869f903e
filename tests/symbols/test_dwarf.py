"""DWARF types read directly: the compiler's own layouts, the debug vmlinux, bad DWARF.

Three oracles: a C program compiled with gcc at DWARF 2, 4 and 5 prints its own offsets,
sizes and bitfield positions; pahole reads the DWARF of Debian's -dbg vmlinux; and the same
vmlinux's BTF (already checked against pahole) over every structure reachable from
task_struct.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import kvmfx
from kvmfx.types import ENUM, PTR, STRUCT, UNION
from kvmfx_plugins.symbols.btf import parse_btf
from kvmfx_plugins.symbols.dwarf import DwarfFile, DwarfTypeModel, has_dwarf, load_dwarf_types
from kvmfx_plugins.symbols.image import _KernelFile
from tests.factory import debug_vmlinux, get_fixture
from tests.symbols.test_btf_vs_dwarf import STRUCTS, kvmfx_member, pahole_members

SAMPLE = Path(__file__).parent / "data" / "dwarf_sample.c"
DWARF_FLAGS = {"dwarf2": ["-gdwarf-2", "-gstrict-dwarf"], "dwarf4": ["-gdwarf-4"],
               "dwarf5": ["-gdwarf-5"]}


@pytest.fixture(scope="module", params=sorted(DWARF_FLAGS))
def sample(request, tmp_path_factory):
    assert shutil.which("gcc"), "gcc is needed (apt-packages.txt)"
    exe = tmp_path_factory.mktemp("dwarf") / f"sample-{request.param}"
    subprocess.run(["gcc", "-g", *DWARF_FLAGS[request.param], "-O0", "-o", str(exe),
                    str(SAMPLE)], check=True)
    truth = json.loads(subprocess.run([str(exe)], check=True, capture_output=True,
                                      text=True).stdout)
    return exe, truth


def test_compiler_layouts_read_back_exactly(sample):
    exe, truth = sample
    assert has_dwarf(str(exe))
    model = load_dwarf_types(str(exe))
    for key, want in truth.items():
        kind, _, what = key.partition(":")
        if kind == "off":
            struct, member = what.split(".")
            assert model.offsetof(struct, member) == want, key
        elif kind == "bit":
            assert list(model.bitfield("sample", what)) == want, key
        elif what in ("grid", "u"):
            _, tid = model.member("sample", what)
            assert model.sizeof(tid) == want, key
        else:
            assert model.struct_size(what) == want, key


def test_compiler_types_have_the_right_shapes(sample):
    model = load_dwarf_types(str(sample[0]))
    sample_t = model.get(model.find("sample"))
    assert sample_t.kind == STRUCT and sample_t.name == "sample"
    grid = model.get(model.resolve(model.member("sample", "grid")[1]))
    assert (grid.nelems, model.get(grid.target).nelems) == (3, 4)
    assert model.type_name(model.member("sample", "self")[1]) == "struct sample *"
    assert model.get(model.resolve(model.member("sample", "u")[1])).kind == UNION
    tail = model.get(model.resolve(model.member("sample", "tail")[1]))
    assert tail.nelems == 0  # a flexible array member
    colour = model.get(model.find("colour", (ENUM,)))
    assert colour.enumerators == {"RED": -1, "GREEN": 7, "BLUE": 0x7FFFFFFF}
    assert model.type_name(model.variable_type("s_var")) == "struct sample"
    qualified = model.member("sample", "qualified")[1]
    assert model.get(model.resolve(qualified)).name == "long unsigned int"
    with pytest.raises(kvmfx.SymbolError, match="no struct/union named 'nosuch'"):
        model.find("nosuch")


@pytest.mark.hostile
def test_corrupted_dwarf_gives_types_or_a_symbol_error(sample):
    """Bytes of .debug_info / .debug_abbrev overwritten at random: every lookup either
    answers or raises SymbolError (one line), never another exception or a hang."""
    data = sample[0].read_bytes()
    probe = DwarfFile(str(sample[0]))
    spans = []
    for name in (".debug_info", ".debug_abbrev"):
        sec = probe.elf.get_section_by_name(name)
        spans.append((sec["sh_offset"], sec["sh_size"]))
    rng = random.Random(1234)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(300):
        buf = bytearray(data)
        offset, size = rng.choice(spans)
        for _ in range(rng.randint(1, 8)):
            buf[offset + rng.randrange(size)] = rng.randrange(256)
        try:
            model = DwarfTypeModel(DwarfFile("<corrupt>", bytes(buf)))
            model.layout("sample")
            model.offsetof("inner", "pair")
            model.variable_type("colour_var")
            outcomes["ok"] += 1
        except kvmfx.SymbolError as exc:
            assert "\n" not in str(exc)
            outcomes["error"] += 1
    assert outcomes["ok"] and outcomes["error"], outcomes


def test_files_without_dwarf_are_not_taken(tmp_path):
    stripped = tmp_path / "stripped"
    subprocess.run(["gcc", "-s", "-o", str(stripped), str(SAMPLE)], check=True)
    assert not has_dwarf(str(stripped))
    with pytest.raises(kvmfx.SymbolError, match="no DWARF"):
        load_dwarf_types(str(stripped))
    obj = tmp_path / "sample.o"
    subprocess.run(["gcc", "-g", "-c", "-o", str(obj), str(SAMPLE)], check=True)
    with pytest.raises(kvmfx.SymbolError, match="relocatable"):
        load_dwarf_types(str(obj))


# -- the Debian kernel ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fx():
    return get_fixture("basic")


@pytest.fixture(scope="module")
def vmlinux(fx):
    return str(debug_vmlinux(fx.truth["kernel"]["release"]))


@pytest.fixture(scope="module")
def kernel_dwarf(vmlinux):
    return load_dwarf_types(vmlinux)


@pytest.mark.parametrize("struct", STRUCTS)
def test_kernel_dwarf_offsets_equal_pahole(vmlinux, kernel_dwarf, struct):
    """Every member pahole prints, nested and bitfields included: the same bit offset and
    size in kvmfx's own reading of the DWARF."""
    oracle, size = pahole_members(vmlinux, struct)
    assert len(oracle) >= 2
    assert {path: kvmfx_member(kernel_dwarf, struct, path) for path in oracle} == oracle
    assert kernel_dwarf.struct_size(struct) == size


def test_kernel_dwarf_equals_btf_over_task_structs_reach(vmlinux, kernel_dwarf):
    """Every named struct/union reachable from task_struct (through members, pointers and
    arrays) has the same size, member bit offsets, bitfield widths and member sizes in the
    DWARF as in the vmlinux's own BTF."""
    btf = parse_btf(_KernelFile(vmlinux).section(".BTF"), "vmlinux BTF")
    model = kernel_dwarf
    todo, seen, compared = [model.find("task_struct")], set(), 0
    while todo and compared < 400:
        tid = model.resolve(todo.pop())
        if tid == 0 or tid in seen:
            continue
        seen.add(tid)
        t = model.get(tid)
        if t.kind == PTR or t.nelems:
            todo.append(t.target)
            continue
        if t.kind not in (STRUCT, UNION):
            continue
        todo.extend(m.type_id for m in t.members)
        if not t.name or not btf.has(t.name):
            continue
        ours, theirs = model.layout_of(tid), btf.layout(t.name)
        assert model.sizeof(tid) == btf.struct_size(t.name), t.name
        assert {k: (v[0], v[2]) for k, v in ours.items()} == \
            {k: (v[0], v[2]) for k, v in theirs.items()}, t.name
        for name, (_bits, mtid, width) in ours.items():
            if not width:
                assert model.sizeof(mtid) == btf.sizeof(theirs[name][1]), (t.name, name)
        compared += 1
    assert compared == 400


def test_kernel_enums_and_variables(vmlinux, kernel_dwarf):
    btf = parse_btf(_KernelFile(vmlinux).section(".BTF"), "vmlinux BTF")
    for enum in ("pid_type", "node_stat_item"):
        assert kernel_dwarf.get(kernel_dwarf.find(enum, (ENUM,))).enumerators == \
            btf.get(btf.find(enum, (ENUM,))).enumerators
    assert kernel_dwarf.type_name(kernel_dwarf.variable_type("init_task")) == \
        "struct task_struct"
    assert kernel_dwarf.type_name(kernel_dwarf.variable_type("prb")) == \
        "struct printk_ringbuffer *"


def test_dwarf_alone_serves_the_process_plugins(fx, vmlinux, tmp_path, monkeypatch):
    from tests.linux.test_dump_processes import _check_session

    monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path))
    with kvmfx.open(str(fx.path("kdump-zlib")), execfile=vmlinux, types="dwarf") as s:
        assert s.types.source == f"{vmlinux} (DWARF)"
        assert s.symbols.source == vmlinux  # the same file's symbol table
        assert _check_session(s, fx.truth) == len(fx.truth["processes"])
        assert s.uname()["release"] == fx.truth["kernel"]["release"]
        info = s.info()
        assert info["types"]["format"] == "dwarf" and info["types"]["units"] > 1000


def test_asking_for_a_type_format_nobody_has_is_an_error(fx, tmp_path, monkeypatch):
    monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path))
    with kvmfx.open(str(fx.path("elf")), types="dwarf") as s, \
            pytest.raises(kvmfx.SymbolError, match="no kernel dwarf type information"):
        _ = s.types
    with pytest.raises(kvmfx.UsageError, match="unknown type format"):
        kvmfx.open(str(fx.path("elf")), types="stabs")
    r = subprocess.run([sys.executable, "-m", "kvmfx.cli", "--types", "dwarf", "run", "pslist",
                        str(fx.path("elf"))], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "no kernel dwarf type information" in r.stderr
