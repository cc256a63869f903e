"""Loaded modules read from real dumps equal the guest's own /proc/modules and
/sys/module/*/sections, field by field, on every format of every kernel of the matrix
(filtered dumps included: modules are kernel memory); every view (module list, sysfs
kobjects, memory scan) finds each module; module symbols equal the guest's /proc/kallsyms.

Edited copies of a real dump check what a rootkit does to hide a module (unlinking it from
the list) and that hostile module memory (a looping list, wild pointers) costs only what it
breaks."""

from __future__ import annotations

import gzip
import subprocess
import sys
from typing import Any

import pytest

import kvmfx
from kvmfx_plugins.linux.modules import POISON_BASE, modules_of
from tests.factory import get_fixture
from tests.linux.test_hostile_memory import _copy, _patch
from tests.linux.test_kernel_matrix import FILTERED, QEMU_CANNOT, _formats

#: the kernel matrix: x86_64 5.10, 6.1, 6.12, the newest; arm64 6.1 (4K pages, kallsyms of
#: code only) and 6.12 (16K pages)
KERNELS = ("bullseye", "basic", "trixie", "backports", "arm64", "arm64-16k")
#: the aarch64 guests' formats (this machine's makedumpfile reads x86_64 dumps only)
ARM64_FORMATS = ("elf", "kdump-zlib", "raw", "lime")
MATRIX = [(name, key) for name in KERNELS
          for key in (ARM64_FORMATS if name.startswith("arm64") else _formats(name))
          if key not in QEMU_CANNOT]
assert {k for _, k in MATRIX} >= set(FILTERED)


def proc_modules(text: str) -> list[dict[str, Any]]:
    """/proc/modules lines as lsmod rows: name size refcount users state address [taint]
    (the address as the kernel prints it, as lsmod gives it)."""
    out = []
    for line in text.splitlines():
        name, size, refcount, users, state, address, *taint = line.split()
        out.append({"name": name, "size": int(size), "refcount": int(refcount),
                    "used_by": [] if users == "-" else users.rstrip(",").split(","),
                    "state": state, "address": address,
                    "taint": taint[0] if taint else ""})
    return out


def module_kallsyms(fx: Any) -> dict[str, set[tuple[int, str, str]]]:
    """The guest's /proc/kallsyms lines of modules: module -> {(address, type, name)}."""
    out: dict[str, set[tuple[int, str, str]]] = {}
    with gzip.open(fx.dir / "kallsyms.gz", "rt") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 4:
                out.setdefault(parts[3].strip("[]"), set()).add(
                    (int(parts[0], 16), parts[1], parts[2]))
    return out


def rows(session: kvmfx.Session, command: str, **options: Any) -> list[dict[str, Any]]:
    return list(session.registry.command(command).run(session, options))


@pytest.fixture(scope="module", params=MATRIX, ids=["-".join(p) for p in MATRIX])
def dump(request):
    """(fixture, format, open session) of each dump of the matrix, one session per dump."""
    name, key = request.param
    fx = get_fixture(name)
    assert key in fx.files, fx.manifest.get("not_produced", {}).get(key)
    with kvmfx.open(str(fx.path(key))) as s:
        yield fx, key, s


#: what a filtered dump may lack: a page makedumpfile -d 31 left out (it misjudges some
#: kernel pages of kernels newer than itself); every other value must be the guest's
LEFT_OUT = "not in the dump"


def _same(got: dict[str, Any], want: dict[str, Any], key: str) -> dict[str, Any]:
    """The fields of ``got`` that differ from ``want``: none on a full dump; on a filtered
    one, a field may also be null where ``missing`` says its page was left out."""
    missing = got.get("missing") or {}
    return {f: (got[f], v) for f, v in want.items()
            if got[f] != v and not (key in FILTERED and got[f] is None
                                    and LEFT_OUT in missing.get(f, ""))}


def _warnings_are_left_out_pages(s: kvmfx.Session, key: str) -> None:
    assert [w for w in s.warnings if key not in FILTERED or LEFT_OUT not in w] == []


def test_lsmod_is_the_guests_proc_modules(dump):
    fx, key, s = dump
    want = proc_modules(fx.truth["modules"])
    assert len(want) >= 2  # the guests load modules with a dependency between two
    got = rows(s, "lsmod")
    assert [r["name"] for r in got] == [w["name"] for w in want]
    assert [_same(r, w, key) for r, w in zip(got, want, strict=True)] == [{}] * len(want)
    if key not in FILTERED:
        assert [r["missing"] for r in got] == [None] * len(got)
    assert not any(r["partial"] for r in got)
    assert any(r["used_by"] for r in got)
    _warnings_are_left_out_pages(s, key)


def _part_left_out(row: dict[str, Any], sections: dict[str, str], key: str) -> bool:
    """On a filtered dump, a module's sections read in part (the rest of the list on a
    page the filter left out, as ``missing`` says): each section shown is the guest's."""
    got = row["sections"]
    return (key in FILTERED and isinstance(got, dict) and got != sections
            and LEFT_OUT in (row.get("missing") or {}).get("sections", "")
            and all(sections.get(name) == addr for name, addr in got.items()))


def test_sections_are_the_guests_sysfs(dump):
    fx, key, s = dump
    want = fx.truth["module_sections"]
    got = {r["name"]: r for r in rows(s, "lsmod", sections=True)}
    assert set(want) == set(got)
    whole = [name for name, sections in want.items()
             if not _part_left_out(got[name], sections, key)]
    assert {name: _same(got[name], {"sections": want[name]}, key) for name in whole} == \
        {name: {} for name in whole}
    assert sum(r["sections"] is not None for r in got.values()) >= (
        len(want) if key not in FILTERED else 1)


def test_every_view_finds_every_module(dump):
    fx, key, s = dump
    names = [m["name"] for m in proc_modules(fx.truth["modules"])]
    got = rows(s, "modxview")
    assert [r["name"] for r in got] == names
    lsmod = {r["name"]: r["module"] for r in rows(s, "lsmod")}
    for r in got:
        assert (r["module_list"], r["scan"], r["missing"]) == (True, True, None), r
        # a filtered dump may lack a page of /sys/module's kset (a warning then says so)
        assert r["sysfs"] is True or (key in FILTERED and r["sysfs"] is False
                                      and s.warnings), r
        assert r["note"] is None or not r["sysfs"], r
        assert r["module"] == lsmod[r["name"]] and r["state"] == "Live"
    _warnings_are_left_out_pages(s, key)


def test_module_symbols_are_the_guests_kallsyms(dump):
    fx, _key, s = dump
    want = module_kallsyms(fx)
    mods = modules_of(s)
    got = {}
    for address in mods.listed():
        got[mods.read(address).name] = set(mods.symbols(address))
    assert set(got) == set(want)
    for name, symbols in want.items():
        assert got[name] == symbols, name


@pytest.mark.parametrize("name", ["basic", "trixie"])
def test_modules_found_when_the_symbols_name_no_data(name, tmp_path, monkeypatch):
    """With every data symbol taken out of the table (kallsyms of code only, as Debian's
    arm64 6.1 has), the module list, /sys/module's kset, tainted_mask and taint_flags are
    found where the code reaches them, and every command answers as before."""
    monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path))
    fx = get_fixture(name)
    with kvmfx.open(str(fx.path("elf"))) as s:
        want = {c: rows(s, c) for c in ("lsmod", "modxview", "tainted")}
        want["sections"] = rows(s, "lsmod", sections=True)
    with kvmfx.open(str(fx.path("elf"))) as s:
        table = s.symbols
        for sym in [n for n, v in table.symbols.items() if v.type not in "TtWw"]:
            del table.symbols[sym]
        for sym in ("modules", "module_kset", "tainted_mask", "taint_flags"):
            assert table.lookup(sym) is None
        got = {c: rows(s, c) for c in ("lsmod", "modxview", "tainted")}
        got["sections"] = rows(s, "lsmod", sections=True)
        assert table.lookup("modules") is not None and table.lookup("tainted_mask")
    assert got == want


# -- edited copies of a real dump -------------------------------------------------------
@pytest.fixture(scope="module")
def fx():
    return get_fixture("basic")


def _modules(path: Any) -> tuple[list[int], dict[str, int]]:
    """The listed modules' addresses, and the offsets of struct module's members used."""
    with kvmfx.open(str(path)) as s:
        t = s.types
        offs = {m: t.offsetof("module", m) for m in ("list", "state", "taints",
                                                      "source_list", "sect_attrs",
                                                      "kallsyms")}
        return modules_of(s).listed(), offs


def unlink(path: Any, module: int, list_off: int) -> None:
    """list_del() of a module from the module list, as a rootkit hiding it does."""
    with kvmfx.open(str(path)) as s:
        at = module + list_off
        nxt, prev = (int.from_bytes(s.read(at + i, 8), "little") for i in (0, 8))
    _patch(path, prev, nxt.to_bytes(8, "little"))
    _patch(path, nxt + 8, prev.to_bytes(8, "little"))
    _patch(path, at, (POISON_BASE + 0x100).to_bytes(8, "little") +
           (POISON_BASE + 0x122).to_bytes(8, "little"))


def test_a_module_unlinked_from_the_list_is_still_found(fx, tmp_path):
    path = _copy(fx, tmp_path)
    listed, offs = _modules(path)
    names = [m["name"] for m in proc_modules(fx.truth["modules"])]
    hidden = listed[-1]
    unlink(path, hidden, offs["list"])
    with kvmfx.open(str(path)) as s:
        assert [r["name"] for r in rows(s, "lsmod")] == names[:-1]
        view = {r["name"]: r for r in rows(s, "modxview")}
        assert set(view) == set(names)
        r = view[names[-1]]
        assert (r["module"], r["module_list"], r["sysfs"], r["scan"]) == (
            f"0x{hidden:016x}", False, True, True)
        assert r["note"].startswith("not on the module list")
        assert all(v["note"] is None for n, v in view.items() if n != names[-1])
        assert s.warnings == []


@pytest.mark.hostile
def test_a_looping_module_list_stops_and_says_so(fx, tmp_path):
    path = _copy(fx, tmp_path)
    listed, offs = _modules(path)
    first = listed[0] + offs["list"]
    _patch(path, first, first.to_bytes(8, "little"))  # its next is itself
    with kvmfx.open(str(path)) as s:
        got = rows(s, "lsmod")
        assert [int(r["module"], 16) for r in got] == listed[:1]
        assert any("module list" in w and "loops" in w for w in s.warnings)
    r = subprocess.run([sys.executable, "-m", "kvmfx.cli", "run", "lsmod", str(path),
                        "--format", "json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 4 and "loops" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.hostile
def test_wild_module_pointers_cost_only_their_fields(fx, tmp_path):
    path = _copy(fx, tmp_path)
    listed, offs = _modules(path)
    wild = (0x4141414141414141).to_bytes(8, "little")
    target = listed[0]
    for member in ("source_list", "sect_attrs", "kallsyms"):
        _patch(path, target + offs[member], wild)
    want = proc_modules(fx.truth["modules"])
    with kvmfx.open(str(path)) as s:
        got = rows(s, "lsmod", sections=True)
        assert [r["name"] for r in got] == [m["name"] for m in want]
        bad = got[0]
        assert bad["used_by"] == [] and bad["partial"] is True
        assert bad["sections"] is None
        assert set(bad["missing"]) == {"used_by", "sections"}
        assert (bad["size"], bad["address"], bad["state"]) == (
            want[0]["size"], want[0]["address"], want[0]["state"])
        assert all(r["missing"] is None for r in got[1:])
        mods = modules_of(s)
        with pytest.raises(kvmfx.KvmError):
            mods.symbols(target)


def test_module_taint_is_printed_as_proc_modules_does(fx, tmp_path):
    """module_flags(): the module's taint letters in parentheses, "+" while it loads."""
    path = _copy(fx, tmp_path)
    listed, offs = _modules(path)
    oot_unsigned = (1 << 12) | (1 << 13)
    _patch(path, listed[0] + offs["taints"], oot_unsigned.to_bytes(8, "little"))
    _patch(path, listed[1] + offs["taints"], (1 << 12).to_bytes(8, "little"))
    _patch(path, listed[1] + offs["state"], (1).to_bytes(4, "little"))  # COMING
    with kvmfx.open(str(path)) as s:
        got = rows(s, "lsmod")
    assert [(r["taint"], r["state"]) for r in got[:2]] == [("(OE)", "Live"),
                                                          ("(O+)", "Loading")]
    assert all(r["taint"] == "" for r in got[2:])
