"""The aarch64 fixtures themselves (kvmfx reading them: test_aarch64.py): each scenario
builds, its dumps are aarch64 dumps of the scenario's kernel with VMCOREINFO, and its ground
truth is the guest's own view of the scenario's processes.

| fixture | kernel | pages |
| --- | --- | --- |
| arm64 | Debian 12's Linux 6.1 (arm64) | 4K, 48-bit VA |
| arm64-16k | Debian 13's Linux 6.12 (arm64-16k) | 16K, 52-bit VA (LPA2) |
"""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import pytest

from tests.factory import ARCHES, FOREIGN_MAKEDUMPFILE, Fixture, debug_files, get_fixture
from tests.factory.scenarios import SCENARIOS

EM_AARCH64 = 183
PT_LOAD, PT_NOTE = 1, 4
#: scenario -> (page size, start of its kernel release)
ARM64 = {"arm64": (4096, "6.1.0-"), "arm64-16k": (16384, "6.12.")}
RAM_BASE = ARCHES["aarch64"].ram_base


@pytest.fixture(scope="module", params=sorted(ARM64))
def fx(request: pytest.FixtureRequest) -> Fixture:
    return get_fixture(request.param)


def _elf(path: Path) -> tuple[int, list[tuple[int, int, int]], dict[bytes, bytes]]:
    """(e_machine, [(paddr, filesz, offset)] of PT_LOAD, {note name: the last such note's
    descriptor}) of an ELF core."""
    with open(path, "rb") as f:
        ehdr = f.read(64)
        assert ehdr[:4] == b"\x7fELF" and ehdr[4] == 2 and ehdr[5] == 1  # 64-bit, LE
        e_machine, = struct.unpack_from("<H", ehdr, 18)
        phoff, = struct.unpack_from("<Q", ehdr, 32)
        phentsize, phnum = struct.unpack_from("<HH", ehdr, 54)
        f.seek(phoff)
        phdrs = f.read(phentsize * phnum)
        loads, notes = [], {}
        for i in range(phnum):
            p_type, _fl, off, _va, paddr, filesz, _msz, _al = struct.unpack_from(
                "<IIQQQQQQ", phdrs, i * phentsize)
            if p_type == PT_LOAD:
                loads.append((paddr, filesz, off))
            elif p_type == PT_NOTE:
                f.seek(off)
                data, pos = f.read(filesz), 0
                while pos + 12 <= len(data):
                    namesz, descsz, _type = struct.unpack_from("<III", data, pos)
                    name = data[pos + 12:pos + 12 + namesz].rstrip(b"\0")
                    desc_at = pos + 12 + (namesz + 3) // 4 * 4
                    notes[name] = data[desc_at:desc_at + descsz]
                    pos = desc_at + (descsz + 3) // 4 * 4
    return e_machine, loads, notes


def _vmcoreinfo(fx: Fixture) -> dict[str, str]:
    _m, _l, notes = _elf(fx.path("elf"))
    assert b"VMCOREINFO" in notes, f"{fx.name}: no VMCOREINFO note (qemu_fw_cfg not loaded?)"
    text = notes[b"VMCOREINFO"].decode().rstrip("\0")
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_elf_dump_is_aarch64(fx):
    e_machine, loads, _n = _elf(fx.path("elf"))
    assert e_machine == EM_AARCH64
    ram = SCENARIOS[fx.name].ram_mb << 20
    assert [(p, s) for p, s, _o in loads] == [(RAM_BASE, ram)]  # virt: RAM at 1 GiB


def test_vmcoreinfo_matches_the_scenario(fx):
    page, release = ARM64[fx.name]
    info = _vmcoreinfo(fx)
    assert int(info["PAGESIZE"]) == page
    assert info["OSRELEASE"] == fx.truth["kernel"]["release"]
    assert info["OSRELEASE"].startswith(release)
    assert int(info["NUMBER(PHYS_OFFSET)"], 16) == RAM_BASE
    config = fx.truth["kernel"]["config"]
    assert int(info["NUMBER(VA_BITS)"]) == int(config["CONFIG_ARM64_VA_BITS"])
    # TCR_EL1.T1SZ is the VA size the kernel runs with: the guest measured the same
    assert 64 - int(info["NUMBER(TCR_EL1_T1SZ)"], 16) == fx.truth["kernel"]["va_bits"]
    # KASLR: the kernel's text is where the guest's kallsyms says, moved by KERNELOFFSET
    stext = int(fx.truth["kernel"]["kallsyms"]["_stext"], 16)
    assert int(info["SYMBOL(_stext)"], 16) == stext
    assert int(info["KERNELOFFSET"], 16) != 0
    assert "NUMBER(KERNELPACMASK)" in info  # -cpu max has pointer authentication


def test_kdump_and_raw_and_lime_hold_the_same_ram(fx):
    page, _r = ARM64[fx.name]
    # QEMU's kdump-zlib (flattened): VMCOREINFO follows the headers, uncompressed
    with open(fx.path("kdump-zlib"), "rb") as f:
        head = f.read(1 << 20)
    assert head.startswith(b"makedumpfile\0") and b"KDUMP   " in head
    assert f"PAGESIZE={page}\n".encode() in head
    ram = SCENARIOS[fx.name].ram_mb << 20
    assert fx.path("raw").stat().st_size == ram
    _m, loads, _n = _elf(fx.path("elf"))
    (_p, _s, elf_off), = loads
    with open(fx.path("elf"), "rb") as e, open(fx.path("raw"), "rb") as r, \
            open(fx.path("lime"), "rb") as lime:
        magic, version, start, end, _pad = struct.unpack("<IIQQQ", lime.read(32))
        assert (magic, version, start, end) == (0x4C694D45, 1, RAM_BASE, RAM_BASE + ram - 1)
        for at in (0, ram // 2, ram - (1 << 20)):  # a few MiB of RAM, byte for byte
            e.seek(elf_off + at)
            r.seek(at)
            lime.seek(32 + at)
            chunk = e.read(1 << 20)
            assert chunk == r.read(1 << 20) == lime.read(1 << 20)


def test_makedumpfile_formats_are_recorded_as_not_produced(fx):
    for key in ("mdf-zlib", "mdf-lzo", "mdf-zlib-d31", "mdf-elf-d31", "flattened"):
        assert key not in fx.files
        assert fx.manifest["not_produced"][key] == FOREIGN_MAKEDUMPFILE
    assert fx.manifest["machine"] == "aarch64"
    assert fx.manifest["qemu_command"][0] == "qemu-system-aarch64"
    assert "-enable-kvm" not in fx.manifest["qemu_command"]
    assert fx.manifest["qemu_command"][fx.manifest["qemu_command"].index("-accel") + 1] == "tcg"


def test_ground_truth_is_an_aarch64_guest(fx):
    page, release = ARM64[fx.name]
    kernel = fx.truth["kernel"]
    assert kernel["machine"] == "aarch64"
    assert kernel["page_size"] == kernel["kernel_page_size"] == page
    assert kernel["release"].startswith(release) and kernel["version"].startswith("Linux")
    assert kernel["hostname"] == "kvmfx-guest"
    assert kernel["paging_levels"] == int(kernel["config"]["CONFIG_PGTABLE_LEVELS"])
    assert {"fp", "asimd"} <= set(kernel["cpu_features"])
    symbols = fx.kallsyms()
    assert any(name == "_stext" for _a, _t, name in symbols)
    if kernel["config"]["CONFIG_KALLSYMS_ALL"] == "y":  # data symbols too
        assert {"init_task", "linux_banner", "swapper_pg_dir"} <= set(kernel["kallsyms"])


def test_ground_truth_lists_the_distinctive_processes(fx):
    procs = fx.truth["processes"]
    by_argv = {tuple(p["cmdline"]): p for p in procs.values()}
    for spec in SCENARIOS[fx.name].procs:
        p = by_argv.get(spec.argv)
        assert p is not None, f"{fx.name}: {spec.argv[0]!r} not in the ground truth"
        assert tuple(p["environ"]) == spec.env
        assert p["uid"][0] == spec.uid and p["gid"][0] == spec.gid
        want = b"".join(a.encode() + b"\0" for a in spec.argv)
        assert base64.b64decode(p["cmdline_b64"]) == want
        assert p["tasks"] == [p["pid"]] and p["state"] == "S"
    assert procs["1"]["comm"] == "init"
    comms = [p["comm"] for p in procs.values()]
    assert "kvmfx-helper" in comms
    assert any(p["state"] == "Z" for p in procs.values())  # the zombie
    assert any(len(p["tasks"]) == 3 for p in procs.values())  # threads 3


def test_debug_system_map_is_the_guests_kernel(fx):
    """The -dbg package's System.map (debug_files, from the arm64 package index) is the
    guest's kernel: every symbol of the guest's kallsyms sits at its System.map address moved
    by VMCOREINFO's KERNELOFFSET (KASLR), and so do VMCOREINFO's own symbols. Debian 12's
    arm64 kernel has no CONFIG_KALLSYMS_ALL: its data symbols are in System.map only."""
    _vmlinux, system_map = debug_files(fx.truth["kernel"]["release"])
    smap: dict[str, int] = {}
    for line in system_map.read_text().splitlines():
        addr, _t, name = line.split()[:3]
        smap.setdefault(name, int(addr, 16))
    info = _vmcoreinfo(fx)
    offset = int(info["KERNELOFFSET"], 16)
    guest: dict[str, int] = {}  # both lists run by address: the first of a name is its lowest
    for addr, _t, name in fx.kallsyms():
        guest.setdefault(name, addr)
    common = [n for n in guest if n in smap]
    assert len(common) == len(guest) > 40000
    assert [n for n in common if guest[n] != smap[n] + offset] == []
    for name in ("swapper_pg_dir", "init_uts_ns", "_stext"):
        assert int(info[f"SYMBOL({name})"], 16) == smap[name] + offset
