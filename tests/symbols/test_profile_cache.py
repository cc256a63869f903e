"""Cached profiles: the second open of a kernel build reuses its symbols and types."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kvmfx
from tests.factory import get_fixture


@pytest.fixture
def profile_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path / "profiles"))
    return tmp_path / "profiles"


def _truth_symbols(fx) -> dict[str, int]:
    out: dict[str, int] = {}
    for addr, _kind, name in fx.kallsyms():
        out.setdefault(name, addr)
    return out


def test_second_open_uses_the_profile_and_agrees(profile_dir):
    fx = get_fixture("basic")
    with kvmfx.open(str(fx.path("elf"))) as s:
        assert s.symbols.source == "image:kallsyms"
        cold = {n: v.address for n, v in s.symbols.symbols.items()}
        offset = s.types.offsetof("task_struct", "comm")
    assert len(list(profile_dir.glob("*.zip"))) == 1
    t = time.perf_counter()
    with kvmfx.open(str(fx.path("mdf-zlib"))) as s:
        assert s.symbols.source.startswith("profile:")
        assert {n: v.address for n, v in s.symbols.symbols.items()} == cold
        assert s.types.offsetof("task_struct", "comm") == offset
        warm = time.perf_counter() - t
        assert len(list(s.processes())) == len(fx.truth["processes"]) + 1
    assert warm < 5  # a loose bound; the figure itself is in docs/performance.md


def test_profile_serves_another_boot_with_its_own_kaslr_offset(profile_dir):
    basic, la57 = get_fixture("basic"), get_fixture("la57")
    with kvmfx.open(str(basic.path("elf"))) as s:
        s.types  # noqa: B018 - symbols and types loaded: the profile is saved
    with kvmfx.open(str(la57.path("elf"))) as s:
        assert s.symbols.source.startswith("profile:")
        truth = _truth_symbols(la57)
        assert {n: v.address for n, v in s.symbols.symbols.items()} == truth


def test_a_corrupt_profile_is_skipped(profile_dir):
    fx = get_fixture("basic")
    with kvmfx.open(str(fx.path("elf"))) as s:
        s.types  # noqa: B018
    (path,) = profile_dir.glob("*.zip")
    path.write_bytes(b"not a zip")
    with kvmfx.open(str(fx.path("elf"))) as s:
        assert s.symbols.source == "image:kallsyms"
        assert any("profile" in f and "unreadable" in f for f in s.symbol_failures)


def test_profile_build_command_reports_the_cached_file(profile_dir):
    import subprocess
    import sys

    fx = get_fixture("basic")
    r = subprocess.run([sys.executable, "-m", "kvmfx.cli", "profile", "build",
                        str(fx.path("elf")), "--format", "json"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert row["symbols_from"] == "image:kallsyms" and row["symbols"] > 80000
    assert (profile_dir / row["profile"].rsplit("/", 1)[1]).exists()


@pytest.mark.parametrize(("scenario", "member"), [
    ("basic", "kallsyms.addresses"),  # 6.1: the kernel's tables and name index
    ("bullseye", "kallsyms.offsets"),  # 5.10: names looked up compressed
])
def test_a_profile_with_malformed_symbol_columns_is_skipped(profile_dir, scenario, member):
    import zipfile

    fx = get_fixture(scenario)
    with kvmfx.open(str(fx.path("elf"))) as s:
        _ = s.types
    (path,) = profile_dir.glob("*.zip")
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    files[member] = files[member][:-3]  # columns of two lengths
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    with kvmfx.open(str(fx.path("elf"))) as s:
        assert s.symbols.source == "image:kallsyms"  # the bad profile is passed over
        assert any("unreadable profile symbols" in f for f in s.symbol_failures)


def test_a_profile_shipped_in_profiles_is_found_after_the_cache(profile_dir, tmp_path,
                                                                monkeypatch):
    from kvmfx_plugins.symbols import profile_cache

    fx = get_fixture("basic")
    with kvmfx.open(str(fx.path("elf"))) as s:
        s.types  # noqa: B018 - symbols and types loaded: the profile is saved
    (made,) = profile_dir.glob("*.zip")
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    made.rename(shipped / made.name)
    monkeypatch.setattr(profile_cache, "shipped_dir", lambda: shipped)
    with kvmfx.open(str(fx.path("kdump-zlib"))) as s:
        assert s.symbols.source == f"profile:{made.name}"
        assert len(list(s.processes())) == len(fx.truth["processes"]) + 1
    assert list(profile_dir.glob("*.zip")) == []  # the shipped one served; nothing re-made


def test_sorted_symbols_behave_as_a_mapping():
    from kvmfx.symbols import SortedSymbols, Symbol, SymbolTable, sorted_columns

    blob, offsets, addrs, kinds = sorted_columns(["zeta", "alpha", "mid", "é"],
                                                 [4, 1, 3, 9], "TdDt")
    syms = SortedSymbols(blob, offsets, addrs, kinds, lambda a: a + 0x100)
    assert len(syms) == 4 and set(syms) == {"zeta", "alpha", "mid", "é"}
    assert syms["alpha"] == Symbol("alpha", 0x101, "d") and syms["é"].address == 0x109
    assert "zz" not in syms and syms.get("zz") is None and "mid" in syms
    syms["new"] = Symbol("new", 7, "b")
    syms["mid"] = Symbol("mid", 8, "B")
    del syms["zeta"]
    assert len(syms) == 4 and "zeta" not in syms and syms["mid"].address == 8
    names, got, letters = syms.columns()
    assert dict(zip(names, zip(got, letters, strict=True), strict=True)) == {
        "alpha": (0x101, "d"), "mid": (8, "B"), "é": (0x109, "t"), "new": (7, "b")}
    table = SymbolTable("t", syms)
    assert table.lookup("_alpha") == 0x101 and table.reverse(0x102) == ("alpha", 1)
    moved = table.slid(0x10)
    assert moved.lookup("alpha") == 0x111 and moved.lookup("new") == 0x17
    assert "zeta" not in moved
    empty = SortedSymbols(*sorted_columns([], [], ""))
    assert len(empty) == 0 and "a" not in empty and empty.columns() == ([], [], "")


def test_symbols_found_by_searching_are_kept_with_the_profile(profile_dir, monkeypatch):
    """Debian 12's arm64 kallsyms lists code only: init_task is found by its shape and
    tk_core where the code reaches it; the next open of that kernel reads both with the
    profile and searches for neither."""
    from kvmfx_plugins.linux import tasks

    fx = get_fixture("arm64")
    with kvmfx.open(str(fx.path("elf"))) as s:
        first = [(p.pid, p.comm) for p in s.processes()]
        found = {n: s.symbols.lookup(n) for n in ("init_task", "tk_core")}
    assert all(found.values())
    (kept,) = profile_dir.glob("*.found.json")
    assert set(json.loads(kept.read_text())) >= {"init_task"}

    def no_search(session):
        raise AssertionError("init_task searched for again")

    monkeypatch.setattr(tasks, "find_init_task", no_search)
    with kvmfx.open(str(fx.path("kdump-zlib"))) as s:  # another file of the same kernel
        assert [(p.pid, p.comm) for p in s.processes()] == first
        assert s.symbols.lookup("init_task") == found["init_task"]


def _stored_zip(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def test_a_profile_archive_is_read_member_by_member_and_checked():
    """Profiles are read without the zipfile module: every member as zipfile stored it,
    a damaged one refused by its CRC-32, a compressed or cut archive a FormatError."""
    import io
    import zipfile

    from kvmfx.errors import FormatError
    from kvmfx_plugins.symbols.profile_cache import StoredZip

    members = {"meta.json": b'{"format": 1}', "types.btf": bytes(range(256)) * 64, "e": b""}
    data = _stored_zip(members)
    z = StoredZip(data)
    assert z.names == list(members) and {n: z.read(n) for n in members} == members
    damaged = bytearray(data)
    damaged[data.index(bytes(range(256))) + 7] ^= 0xFF
    with pytest.raises(FormatError, match="damaged"):
        StoredZip(bytes(damaged)).read("types.btf")
    with pytest.raises(KeyError):
        z.read("absent")
    deflated = io.BytesIO()
    with zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as zz:
        zz.writestr("meta.json", b"{}" * 100)
    with pytest.raises(FormatError, match="not stored plainly"):
        StoredZip(deflated.getvalue())
    for cut in (0, 30, len(data) // 2, len(data) - 1):
        with pytest.raises(FormatError):
            StoredZip(data[:cut])


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600), st.integers(0, 2000), st.integers(0, 255))
def test_a_hostile_profile_archive_is_an_error_never_a_crash(junk, at, value):
    from kvmfx.errors import FormatError
    from kvmfx_plugins.symbols.profile_cache import StoredZip

    data = bytearray(_stored_zip({"meta.json": b"{}", "m": junk}))
    data[at % len(data)] = value
    try:
        z = StoredZip(bytes(data))
        for name in z.names:
            z.read(name)
    except FormatError:
        pass
