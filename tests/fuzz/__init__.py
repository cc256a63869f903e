"""Fuzz targets: every kvmfx parser as a function of bytes that may only return or raise a
KvmError. Anything else (IndexError, struct.error, a hang, a memory blow-up) is a bug.

``python -m tests.fuzz [--target NAME] [--seconds N]`` runs atheris (coverage-guided) on
each target, seeded from the real fixtures; tests/fuzz/test_fuzz_short.py runs a short
round of every target in the test suite.

Nothing of kvmfx is imported at module level: the fuzzing child imports kvmfx itself, under
atheris's instrumentation, or coverage would not be seen.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from pathlib import Path

Target = Callable[[bytes], None]


class _Errors:
    """``KvmError``, imported when first needed (see the module docstring)."""

    def __getattr__(self, name: str) -> type:
        import kvmfx.errors
        return getattr(kvmfx.errors, name)  # type: ignore[no-any-return]


_errors = _Errors()


class BytesSource:
    """An in-memory stand-in for FileSource (read-only evidence of a fuzz input)."""

    #: FileSource's memory map of the file; none here (readers then read)
    mapping = None

    def __init__(self, data: bytes, path: str = "<fuzz>") -> None:
        self.data, self.size, self.path = data, len(data), path

    def read(self, offset: int, size: int) -> bytes:
        from kvmfx.errors import FormatError
        if offset < 0 or size < 0 or offset + size > self.size:
            raise FormatError("read past the end", path=self.path, offset=offset)
        return self.data[offset:offset + size]

    def read_upto(self, offset: int, size: int) -> bytes:
        return self.data[offset:offset + size] if offset < self.size else b""

    def close(self) -> None:
        pass


def t_elf(data: bytes) -> None:
    from kvmfx_plugins.formats.elf import ElfFormat
    layer = ElfFormat().open(BytesSource(data))  # type: ignore[arg-type]
    for r in layer.ranges[:4]:
        layer.read(r.start, min(64, r.size), zero_fill=True)


def t_kdump(data: bytes) -> None:
    from kvmfx_plugins.formats.kdump import open_kdump
    src = BytesSource(data)
    layer = open_kdump(src, src, "kdump")  # type: ignore[arg-type]
    for r in layer.ranges[:4]:
        try:
            layer.read(r.start, 64)
        except _errors.KvmError:
            pass


def t_flattened(data: bytes) -> None:
    from kvmfx_plugins.formats.flattened import FlattenedFormat
    layer = FlattenedFormat().open(BytesSource(data))  # type: ignore[arg-type]
    for r in layer.ranges[:2]:
        try:
            layer.read(r.start, 64)
        except _errors.KvmError:
            pass


def t_lime(data: bytes) -> None:
    from kvmfx_plugins.formats.lime import parse_lime
    src = BytesSource(data)
    parse_lime(src.read, src.size)


def t_vmcoreinfo(data: bytes) -> None:
    from kvmfx_plugins.linux.vmcoreinfo import parse_vmcoreinfo
    info = parse_vmcoreinfo(data)
    _ = (info.symbols, info.numbers, info.offsets, info.sizes, info.kernel_offset,
         info.phys_base, info.page_size)


def t_kallsyms(data: bytes) -> None:
    from kvmfx_plugins.symbols import kallsyms
    kallsyms.decode(data, kallsyms.locate(data))


def t_btf(data: bytes) -> None:
    from kvmfx_plugins.symbols.btf import parse_btf
    model = parse_btf(data)
    model.decode_all()
    for name in ("task_struct", "list_head"):
        if model.has(name):
            model.layout(name)


def t_system_map(data: bytes) -> None:
    from kvmfx.symbols import parse_system_map
    parse_system_map(data.decode("utf-8", "replace"))


def t_elf_symbols(data: bytes) -> None:
    """An ELF .symtab and .strtab (the input split at its first byte's position)."""
    from kvmfx_plugins.symbols.files import parse_elf_symbols
    cut = data[0] * 24 if data else 0
    for elfclass in (64, 32):
        parse_elf_symbols(data[1:cut + 1], data[cut + 1:], elfclass, True, "<fuzz>")


def t_swap(data: bytes) -> None:
    from kvmfx_plugins.formats.swap import parse_swap_header
    parse_swap_header(data)


def t_isf(data: bytes) -> None:
    from kvmfx_plugins.symbols.isf_input import parse_isf
    parse_isf(data)


def t_vmlinuz(data: bytes) -> None:
    from kvmfx_plugins.symbols.vmlinuz import extract_vmlinux
    extract_vmlinux(data)


def t_pagetable(data: bytes) -> None:
    """Page-table walks over arbitrary memory: 16 pages of tables, translate a few VAs."""
    from kvmfx.layers import Segment, SegmentedLayer
    from kvmfx_plugins.arch.x86_64 import X86_64Layer
    mem = (data + bytes(16 * 4096))[:16 * 4096]
    layer = SegmentedLayer(BytesSource(mem), [Segment(0, len(mem), 0)])  # type: ignore[arg-type]
    for levels in (4, 5):
        v = X86_64Layer(layer, 0, levels)
        for vaddr in (0, 0x1234000, 0xFFFF888000001000, 0xFFFFFFFF81000000):
            try:
                v.translate(vaddr)
            except _errors.KvmError:
                pass


def t_dwarf(data: bytes) -> None:
    """DWARF of a small compiled program: find, lay out and resolve its types."""
    from kvmfx.types import ENUM
    from kvmfx_plugins.symbols.dwarf import DwarfFile, DwarfTypeModel
    model = DwarfTypeModel(DwarfFile("<fuzz>", data))
    try:
        model.layout("sample")
        model.offsetof("inner", "pair")
    finally:
        for name in ("colour_var", "s_var"):
            try:
                model.type_name(model.variable_type(name))
            except _errors.KvmError:
                pass
        model.find("colour", (ENUM,))


class _Overlay:
    """A real dump's session whose physical memory at one place reads as the fuzz input:
    the kernel structures the walks read are replaced, the rest of memory is real."""

    def __init__(self, what: str) -> None:
        import kvmfx
        from tests.factory import get_fixture
        self.session = s = kvmfx.open(str(get_fixture("basic").path("elf")))
        init = next(p for p in s.processes() if p.pid == 1)
        types = s.types
        if what == "task":
            vaddr, self.size = init.handle, types.struct_size("task_struct")
        else:
            mm_off = types.offsetof("task_struct", "mm")
            vaddr = int.from_bytes(s.read(init.handle + mm_off, 8), "little")
            self.size = types.struct_size("mm_struct")
        self.init = init
        self.paddr, _ = s.kernel.translate(vaddr)
        self.real = s.read(vaddr, self.size)
        self.data = self.real
        physical = s.physical
        original = physical.read

        def read(paddr: int, size: int, *, zero_fill: bool = False) -> bytes:
            out = original(paddr, size, zero_fill=zero_fill)
            lo, hi = max(paddr, self.paddr), min(paddr + size, self.paddr + self.size)
            if lo >= hi:
                return out
            buf = bytearray(out)
            buf[lo - paddr:hi - paddr] = self.data[lo - self.paddr:hi - self.paddr]
            return bytes(buf)

        physical.read = read  # type: ignore[method-assign]

    def run(self, data: bytes, walk: Callable[[object], None]) -> None:
        s = self.session
        self.data = (data + self.real[len(data):])[:self.size]
        s.plugin_data.pop("linux-kernel", None)
        s.warnings.clear()
        walk(s)


_OVERLAYS: dict[str, _Overlay] = {}


def _overlay(what: str) -> _Overlay:
    if what not in _OVERLAYS:
        _OVERLAYS[what] = _Overlay(what)
    return _OVERLAYS[what]


def t_tasks(data: bytes) -> None:
    """The task-list walk with init's task_struct replaced by the input."""
    import itertools

    def walk(s: object) -> None:
        # init_task, init (the input), and what init's list links lead to
        for p in itertools.islice(s.processes(), 4):  # type: ignore[attr-defined]
            if p.handle == _overlay("task").init.handle:
                for _ in itertools.islice(s.threads(p), 4):  # type: ignore[attr-defined]
                    pass
                s.argv(p)  # type: ignore[attr-defined]
    _overlay("task").run(data, walk)


def t_argv(data: bytes) -> None:
    """argv/environ of init with its mm_struct replaced by the input."""
    ov = _overlay("mm")

    def walk(s: object) -> None:
        s.argv(ov.init)  # type: ignore[attr-defined]
        s.envv(ov.init)  # type: ignore[attr-defined]
    ov.run(data, walk)


TARGETS: dict[str, Target] = {
    "elf": t_elf, "kdump": t_kdump, "flattened": t_flattened, "lime": t_lime,
    "vmcoreinfo": t_vmcoreinfo, "kallsyms": t_kallsyms, "btf": t_btf,
    "system_map": t_system_map, "swap": t_swap, "isf": t_isf, "vmlinuz": t_vmlinuz,
    "pagetable": t_pagetable, "dwarf": t_dwarf, "elf_symbols": t_elf_symbols,
    "tasks": t_tasks, "argv": t_argv,
}


def run_one(target: Target, data: bytes) -> None:
    """Run a target on one input: a KvmError is the expected way to refuse it."""
    try:
        target(data)
    except _errors.KvmError:
        pass


def seeds(name: str) -> list[bytes]:
    """Real inputs for a target, cut from the fixture factory's dumps and files."""
    from tests.factory import get_fixture
    fx = get_fixture("basic")
    head = lambda key, n=1 << 16: fx.path(key).open("rb").read(n)  # noqa: E731
    if name == "elf":
        return [head("elf", 1 << 14)]
    if name == "kdump":
        return [head("mdf-zlib", 1 << 14), *_small_kdumps()]
    if name == "flattened":
        return [head("flattened", 1 << 15), head("kdump-zlib", 1 << 15)]
    if name == "lime":
        data = head("lime", 4096)
        return [data[:32] + bytes(64)]
    if name == "vmcoreinfo":
        elf = head("elf", 1 << 16)
        at = elf.find(b"OSRELEASE=")
        return [elf[at:at + 4096]]
    if name in ("kallsyms", "btf", "vmlinuz"):
        from kvmfx_plugins.symbols.image import _KernelFile
        kf = _KernelFile(str(fx.vmlinuz))
        if name == "btf":
            return [(kf.section(".BTF") or b"")[:1 << 16]]
        if name == "vmlinuz":
            return [Path(fx.vmlinuz).read_bytes()[:1 << 16], *_small_bzimages(fx.vmlinuz)]
        return [_small_kallsyms()]
    if name == "system_map":
        return [b"ffffffff81000000 T _stext\nffffffff82000000 D init_task\n"]
    if name == "swap":
        page = bytearray(4096)
        page[1024:1036] = struct.pack("<III", 1, 100, 0)
        page[4086:] = b"SWAPSPACE2"
        return [bytes(page)]
    if name == "isf":
        return [b'{"metadata": {}, "user_types": {"a": {"kind": "struct", "size": 8, '
                b'"fields": {"x": {"offset": 0, "type": {"kind": "pointer", "subtype": '
                b'{"kind": "struct", "name": "a"}}}}}}, "symbols": {"s": {"address": 1}}, '
                b'"base_types": {}, "enums": {}}']
    if name == "pagetable":
        return [struct.pack("<Q", 0x1007) + bytes(4088) + struct.pack("<Q", 0x2007)]
    if name == "dwarf":
        return [_sample_program()]
    if name == "elf_symbols":
        return [_sample_symbols()]
    if name in ("tasks", "argv"):
        return [_overlay("task" if name == "tasks" else "mm").real]
    return [b""]


def _sample_program() -> bytes:
    """The types of tests/symbols/data/dwarf_sample.c, DWARF 4, as a small shared object."""
    import subprocess
    import tempfile
    src = Path(__file__).resolve().parents[1] / "symbols" / "data" / "dwarf_sample.c"
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "sample"
        subprocess.run(["gcc", "-g", "-gdwarf-4", "-DTYPES_ONLY", "-shared", "-nostdlib",
                        "-fPIC", "-o", str(exe), str(src)], check=True)
        return exe.read_bytes()


def _small_bzimages(vmlinuz: Path) -> list[bytes]:
    """The real bzImage's setup code with a small ELF as payload, one per codec (the real
    payload is megabytes: beyond what the fuzzer mutates)."""
    import bz2
    import gzip
    import lzma

    import zstandard
    real = Path(vmlinuz).read_bytes()
    setup = bytearray(real[:((real[0x1F1] or 4) + 1) * 512])
    elf = _sample_program()
    out = []
    for payload in (lzma.compress(elf, format=lzma.FORMAT_XZ), gzip.compress(elf),
                    zstandard.ZstdCompressor().compress(elf),
                    lzma.compress(elf, format=lzma.FORMAT_ALONE), bz2.compress(elf)):
        setup[0x248:0x250] = struct.pack("<II", 0, len(payload))
        out.append(bytes(setup) + payload)
    return out


def _sample_symbols() -> bytes:
    """The sample program's .symtab and .strtab in the elf_symbols target's layout."""
    from elftools.elf.elffile import ELFFile
    elf = ELFFile(io.BytesIO(_sample_program()))
    symtab = elf.get_section_by_name(".symtab")
    strtab = elf.get_section(symtab["sh_link"])
    data = symtab.data()[:255 * 24]
    return bytes([len(data) // 24]) + data + strtab.data()


def _small_kdumps() -> list[bytes]:
    """Two-page kdump files, one per codec (the real ones have zlib and LZO only)."""
    from tests.formats.test_bad_input import _kdump
    from tests.formats.test_kdump_codecs import CODECS
    page = bytes(range(256)) * 16
    return [_kdump({1: (compress(page), flag), 3: (page, 0)})
            for flag, compress in CODECS.values()]


def _small_kallsyms() -> bytes:
    from tests.symbols.test_kallsyms import build, sample
    return build(sample(300), 4, True)


__all__ = ["TARGETS", "run_one", "seeds", "io"]
