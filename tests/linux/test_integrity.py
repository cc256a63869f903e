"""The taint mask and the system-call tables from real dumps: tainted equals the guest's
/proc/sys/kernel/tainted, and every entry of every system-call table points into the
kernel's text at a system call's handler, the tables as long as the debug vmlinux says, on
every format of every kernel of the matrix. Edited copies of a real dump check that a
hooked entry is reported naming the module it points into, a hidden module's too."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

import kvmfx
from kvmfx_plugins.linux.modules import modules_of
from tests.factory import debug_files, get_fixture
from tests.linux.test_hostile_memory import _copy, _patch
from tests.linux.test_modules import MATRIX, _modules, proc_modules, rows, unlink

#: the taint letters of include/linux/panic.h's bits, in order (kernel/panic.c)
LETTERS = "PFSRMBUDAWCIOELKXTNJ"
#: the system-call tables each kernel has, per architecture
TABLES = {"x86_64": ("sys_call_table", "ia32_sys_call_table", "x32_sys_call_table"),
          "aarch64": ("sys_call_table", "compat_sys_call_table")}
#: handler names: x86_64 __x64_sys_*, __ia32_sys_*, __x32_compat_sys_*, __ia32_compat_...;
#: arm64 __arm64_sys_*, __arm64_compat_sys_*; and what an unused number holds
HANDLER_PREFIXES = ("__x64_sys_", "__ia32_sys_", "__ia32_compat_sys_", "__x32_compat_sys_",
                    "__arm64_sys_", "__arm64_compat_sys_", "sys_ni_syscall",
                    "__x64_sys_ni_syscall", "__arm64_sys_ni_syscall")


def elf_symbol_sizes(path: Path, names: set[str]) -> dict[str, int]:
    """``st_size`` of the named symbols in an ELF64 file's .symtab (a debug vmlinux)."""
    with open(path, "rb") as f:
        ehdr = f.read(64)
        shoff, = struct.unpack_from("<Q", ehdr, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", ehdr, 0x3A)
        f.seek(shoff)
        table = f.read(shentsize * shnum)
        headers = [struct.unpack_from("<IIQQQQIIQQ", table, i * shentsize)
                   for i in range(shnum)]
        symtab = next(h for h in headers if h[1] == 2)  # SHT_SYMTAB
        strtab = headers[symtab[6]]  # sh_link
        f.seek(strtab[4])
        strings = f.read(strtab[5])
        f.seek(symtab[4])
        symbols = f.read(symtab[5])
    wanted = {}  # every place a name ends in the string table (linkers merge tails)
    for name in names:
        for m in re.finditer(re.escape(name.encode()) + b"\0", strings):
            wanted[m.start()] = name
    out = {}
    for st_name, _info, _other, _shndx, _value, size in struct.iter_unpack("<IBBHQQ",
                                                                           symbols):
        if st_name in wanted:
            out[wanted[st_name]] = size
    return out


@pytest.fixture(scope="module", params=MATRIX, ids=["-".join(p) for p in MATRIX])
def dump(request):
    name, key = request.param
    fx = get_fixture(name)
    assert key in fx.files, fx.manifest.get("not_produced", {}).get(key)
    with kvmfx.open(str(fx.path(key))) as s:
        yield fx, key, s


def test_tainted_is_the_guests(dump):
    fx, _key, s = dump
    want = fx.truth["tainted"]
    (row,) = rows(s, "tainted")
    letters = "".join(c for i, c in enumerate(LETTERS) if want >> i & 1)
    assert (row["tainted"], row["letters"], row["missing"]) == (want, letters, None)
    assert len(row["flags"]) == bin(want).count("1")


_SIZES: dict[str, dict[str, int]] = {}


def _table_sizes(release: str) -> dict[str, int]:
    """The system-call tables' entry counts in the kernel's debug vmlinux."""
    if release not in _SIZES:
        vmlinux, _ = debug_files(release)
        names = set(TABLES["x86_64"] + TABLES["aarch64"])
        _SIZES[release] = {n: size // 8
                           for n, size in elf_symbol_sizes(vmlinux, names).items()}
    return _SIZES[release]


def test_every_syscall_entry_is_a_handler_in_the_kernel_text(dump):
    fx, key, s = dump
    got = rows(s, "check-syscalls")
    sizes = _table_sizes(fx.truth["kernel"]["release"])
    counts: dict[str, int] = {}
    for r in got:
        counts[r["table"]] = counts.get(r["table"], 0) + 1
    assert counts == sizes
    names: dict[int, set[str]] = {}
    for addr, _kind, name in fx.kallsyms():
        names.setdefault(addr, set()).add(name)
    wrong = [r for r in got
             if r["hooked"] is not False or r["module"] is not None or r["missing"]
             or r["symbol"] not in names.get(int(r["address"], 16), ())
             or not r["symbol"].startswith(HANDLER_PREFIXES)]
    assert wrong == []
    assert [r["index"] for r in got if r["table"] == "sys_call_table"] == \
        list(range(sizes["sys_call_table"]))
    assert rows(s, "check-syscalls", hooked=True) == []


# -- edited copies of a real dump -------------------------------------------------------
@pytest.fixture(scope="module")
def fx():
    return get_fixture("basic")


def _hook(path: Path, index: int) -> tuple[int, str, str]:
    """Point sys_call_table[index] at the first function of the last listed module's text;
    (that address, its name, the module)."""
    with kvmfx.open(str(path)) as s:
        mods = modules_of(s)
        module = mods.listed()[-1]
        info = mods.read(module)
        target, name = min((a, n) for a, kind, n in mods.symbols(module)
                           if kind in "tT" and not n.startswith("$") and a > info.base)
        table = s.symbols.address_of("sys_call_table")
    _patch(path, table + 8 * index, target.to_bytes(8, "little"))
    return target, name, info.name


def test_a_hooked_entry_names_the_module_it_points_into(fx, tmp_path):
    with kvmfx.open(str(fx.path("elf"))) as s:
        assert rows(s, "check-syscalls", hooked=True) == []
    path = _copy(fx, tmp_path)
    target, name, module = _hook(path, 39)  # getpid
    with kvmfx.open(str(path)) as s:
        got = rows(s, "check-syscalls", hooked=True)
        assert got == [{"table": "sys_call_table", "index": 39,
                        "address": f"0x{target:016x}",
                        "symbol": name, "hooked": True, "module": module, "missing": None}]
        assert len(rows(s, "check-syscalls")) == _table_sizes(
            fx.truth["kernel"]["release"])["sys_call_table"]
        assert s.warnings == []


def test_a_hook_into_a_hidden_module_names_it(fx, tmp_path):
    """A rootkit that hooks a system call and unlinks its module from the list: the entry
    still names the module (found in /sys/module's kset and by the scan)."""
    path = _copy(fx, tmp_path)
    target, name, module = _hook(path, 62)  # kill
    listed, offs = _modules(path)
    unlink(path, listed[-1], offs["list"])
    with kvmfx.open(str(path)) as s:
        assert module not in [r["name"] for r in rows(s, "lsmod")]
        (got,) = rows(s, "check-syscalls", hooked=True)
        assert (got["index"], got["address"], got["symbol"], got["module"]) == (
            62, f"0x{target:016x}", name, module)


def test_a_hook_to_nowhere_is_unknown(fx, tmp_path):
    path = _copy(fx, tmp_path)
    with kvmfx.open(str(path)) as s:
        table = s.symbols.address_of("sys_call_table")
        heap = s.symbols.address_of("init_task")  # kernel data, no module's
    _patch(path, table, heap.to_bytes(8, "little"))
    with kvmfx.open(str(path)) as s:
        (got,) = rows(s, "check-syscalls", hooked=True)
    assert (got["index"], got["hooked"], got["module"], got["symbol"]) == (
        0, True, "unknown", "init_task")


def test_taint_letters_and_names_are_the_kernels(fx, tmp_path):
    path = _copy(fx, tmp_path)
    mask = (1 << 0) | (1 << 9) | (1 << 12) | (1 << 13)
    with kvmfx.open(str(path)) as s:
        at = s.symbols.address_of("tainted_mask")
    _patch(path, at, mask.to_bytes(8, "little"))
    with kvmfx.open(str(path)) as s:
        (row,) = rows(s, "tainted")
        lsmod = rows(s, "lsmod")
    assert row == {"tainted": mask, "letters": "PWOE", "missing": None,
                   "flags": ["PROPRIETARY_MODULE", "WARN", "OOT_MODULE", "UNSIGNED_MODULE"]}
    assert [r["name"] for r in lsmod] == [m["name"] for m in proc_modules(
        fx.truth["modules"])]

