"""aarch64 on real dumps, with no symbol file and no cached profile: Debian 12's arm64
kernel (4K pages, 48-bit VA; kallsyms of code only, so BTF and init_task are found by their
shape) and Debian 13's arm64-16k kernel (16K pages, 52-bit VA with LPA2), every format QEMU
writes, against each guest's own /proc."""

from __future__ import annotations

import shutil
import struct

import pytest

import kvmfx
from kvmfx.errors import UnsupportedError
from tests.factory import get_fixture
from tests.linux.test_dump_processes import _check_session

#: scenario -> (granule, VA bits, levels)
ARM64 = {"arm64": (4096, 48, 4), "arm64-16k": (16384, 52, 4)}
FORMATS = ("elf", "kdump-zlib", "raw", "lime")


@pytest.fixture
def no_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path / "profiles"))


@pytest.mark.parametrize("key", FORMATS)
@pytest.mark.parametrize("name", sorted(ARM64))
def test_every_process_argv_and_environment_match_the_guest(name, key, no_profile):
    fx = get_fixture(name)
    assert key in fx.files, fx.manifest.get("not_produced", {}).get(key)
    with kvmfx.open(str(fx.path(key))) as s:
        assert s.arch.name == "aarch64"
        assert s.symbols.source == "image:kallsyms" and s.types.source == "image:BTF"
        assert _check_session(s, fx.truth) == len(fx.truth["processes"])


@pytest.mark.parametrize("name", sorted(ARM64))
def test_the_translation_regime_is_the_guests(name, no_profile):
    fx = get_fixture(name)
    granule, va_bits, levels = ARM64[name]
    k = fx.truth["kernel"]
    assert (k["page_size"], k["va_bits"], k["paging_levels"]) == (granule, va_bits, levels)
    with kvmfx.open(str(fx.path("elf"))) as s:
        info = s.info()
        assert (info["granule"], info["va_bits"], info["paging_levels"]) == (
            granule, va_bits, levels)
        assert info["output_addresses"] == ("52-bit LPA2" if va_bits == 52 else "48-bit")
        assert info["kaslr_offset_source"] == "vmcoreinfo" and info["kaslr_offset"] != 0
        assert info["page_size"] == granule


@pytest.mark.parametrize("name", sorted(ARM64))
def test_image_symbols_equal_the_guests_kallsyms(name, no_profile):
    """Every symbol the guest's /proc/kallsyms lists, at its address: the 4K kernel's lists
    code only (no CONFIG_KALLSYMS_ALL), and kvmfx adds what VMCOREINFO names."""
    fx = get_fixture(name)
    truth: dict[str, int] = {}
    for addr, _kind, symbol in fx.kallsyms():
        truth.setdefault(symbol, addr)
    with kvmfx.open(str(fx.path("elf"))) as s:
        table = s.symbols
        got = {n: v.address for n, v in table.symbols.items()}
        assert {n: got.get(n) for n in truth} == truth
        extra = set(got) - set(truth)
        vmcoreinfo = s.boot.symbols
        assert {n: got[n] for n in extra if n in vmcoreinfo} == {
            n: vmcoreinfo[n] for n in extra if n in vmcoreinfo}
        assert table.complete == (name != "arm64")


def test_init_task_and_btf_are_found_by_shape_without_data_symbols(no_profile):
    fx = get_fixture("arm64")
    names = {symbol for _a, _k, symbol in fx.kallsyms()}
    assert "init_task" not in names and "__start_BTF" not in names
    with kvmfx.open(str(fx.path("kdump-zlib"))) as s:
        procs = list(s.processes())
        assert procs[0].pid == 0 and procs[0].comm == "swapper/0"
        start = s.symbols.lookup("__start_BTF")
        assert s.read(start, 4) == b"\x9f\xeb\x01\x00"


@pytest.mark.parametrize("name", sorted(ARM64))
def test_uname_banner_and_dmesg(name, no_profile):
    fx = get_fixture(name)
    k = fx.truth["kernel"]
    with kvmfx.open(str(fx.path("elf"))) as s:
        u = s.uname()
        assert (u["release"], u["nodename"], u["machine"]) == (
            k["release"], k["hostname"], "aarch64")
        assert k["version"].endswith(u["version"])
        assert s.info()["banner"] == k["version"]
        rows = list(s.registry.command("dmesg").run(s, {}))
        guest = [line.split("] ", 1)[1] for line in k["dmesg"].splitlines() if "] " in line]
        assert rows[0]["text"] == guest[0] and k["version"] in guest
        texts = {r["text"] for r in rows}
        assert len(guest) > 100 and [line for line in guest if line not in texts] == []


@pytest.mark.parametrize("name", sorted(ARM64))
def test_loadavg_and_boot_time(name, no_profile):
    """Exact on both kernels; the 4K kernel's symbols name no data, so avenrun and tk_core
    are where get_avenrun() and getboottime64() reach them."""
    fx = get_fixture(name)
    with kvmfx.open(str(fx.path("kdump-zlib"))) as s:
        assert [f"{v:.2f}" for v in s.loadavg()] == fx.truth["kernel"]["loadavg"]
        assert abs(s.boot_time() - fx.truth["kernel"]["btime"]) <= 1


def test_variables_found_through_code_are_the_symbols(no_profile):
    """On the 16K kernel, whose symbols name its data, the addresses the code of
    get_avenrun() and getboottime64() reaches are those of avenrun and tk_core."""
    from kvmfx_plugins.linux.tasks import VARIABLE_USES

    fx = get_fixture("arm64-16k")
    with kvmfx.open(str(fx.path("elf"))) as s:
        for name, (function, kind, index) in VARIABLE_USES.items():
            start = s.symbols.address_of(function)
            refs = [a for k, a in s.arch.code_refs(s.read(start, 512), start) if k == kind]
            assert refs[index] == s.symbols.address_of(name), name


def test_a_dump_of_a_cpu_kvmfx_does_not_read_says_so_once(tmp_path):
    fx = get_fixture("arm64-16k")
    other = tmp_path / "arm32.elf"
    shutil.copyfile(fx.path("elf"), other)
    with open(other, "r+b") as f:
        f.seek(18)
        f.write(struct.pack("<H", 40))  # EM_ARM
    with kvmfx.open(str(other)) as s:
        with pytest.raises(UnsupportedError) as exc:
            _ = s.arch
        message = str(exc.value)
        assert "machine arm" in message and "aarch64" in message and "x86_64" in message
        info = s.info()
        assert list(info["errors"]) == ["arch"]
        assert repr(info).count("no architecture plugin") == 1


@pytest.mark.parametrize("command", ["pslist", "psaux", "envars", "pstree", "threads",
                                     "uname", "dmesg", "loadavg", "boottime", "psscan",
                                     "psxview"])
@pytest.mark.parametrize("name", sorted(ARM64))
def test_every_command_answers(name, command, no_profile):
    """Each command's rows: the process commands agree with the guest (pids), psscan finds
    every listed process in the task cache's slabs (on the 4K kernel the cache is where
    free_task() loads it from)."""
    fx = get_fixture(name)
    with kvmfx.open(str(fx.path("elf"))) as s:
        rows = list(s.registry.command(command).run(s, {}))
        assert rows and s.warnings == []
        pids = {int(p) for p in fx.truth["processes"]}
        if command in ("pslist", "psaux", "envars", "pstree"):
            assert {r["pid"] for r in rows} - {0} == pids
        if command == "psscan":
            assert pids <= {r["tgid"] for r in rows if r["in_task_list"]}
