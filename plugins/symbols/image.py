"""Symbols and types with nothing to download: what the kernel image itself carries.

* Kernel image files given as execfile: a vmlinuz (bzImage) or a stripped vmlinux still holds
  the kernel's compressed kallsyms tables and its ``.BTF`` section.
* A dump: the same kallsyms tables and BTF, found in the kernel's memory, plus VMCOREINFO's
  ``SYMBOL()`` entries as a last resort.
"""

from __future__ import annotations

import array
import os
import re
from collections.abc import Mapping
from io import BytesIO
from typing import Any

from kvmfx.errors import FormatError, KvmError, MissingPageError, SymbolError, TranslationError
from kvmfx.hookspecs import hookimpl
from kvmfx.layers import FileSource
from kvmfx.session import Session
from kvmfx.symbols import SymbolFile, SymbolProvider, SymbolTable
from kvmfx.types import TypeModel
from kvmfx_plugins.symbols import kallsyms
from kvmfx_plugins.symbols.btf import (
    BTF_START,
    btf_size,
    find_btf,
    header_blob_size,
    parse_btf,
)
from kvmfx_plugins.symbols.files import gnu_build_id
from kvmfx_plugins.symbols.profile_cache import remember
from kvmfx_plugins.symbols.vmlinuz import extract_vmlinux

#: How much of the kernel image is searched for kallsyms (Debian's is ~60 MiB).
KERNEL_IMAGE_SPAN = 96 << 20
#: how far before the token table the kallsyms tables reach (names, markers, the index,
#: and the addresses up to 6.3: some 2 MiB for 100,000 symbols, 3 MiB for 200,000), and
#: after it (the token index, and the addresses and the index from 6.4); a scan reads
#: that much around each place the token table may be (at most SCAN_CANDIDATES of them),
#: a usual kernel's reach first, before it reads the whole image
TABLES_AROUND_TOKENS = ((4 << 20, 2 << 20), (12 << 20, 4 << 20))
SCAN_CANDIDATES = 8
MAX_KERNEL_FILE = 1 << 30
#: btf.BTF_START as a pattern: re searches memory that is mostly zeros faster than
#: bytes.find
_BTF_START = re.compile(re.escape(BTF_START))


class _KernelFile:
    """A vmlinux ELF (from a vmlinuz or as is) with its loadable bytes at their addresses."""

    def __init__(self, path: str) -> None:
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile

        try:
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                head = f.read(4)
                if head == b"\x7fELF":
                    # a vmlinux (debug ones are 600 MB+): read sections from the file
                    self.elf = ELFFile(open(path, "rb"))  # noqa: SIM115 - lives with self
                    self.path = path
                    return
                if size > MAX_KERNEL_FILE:
                    raise SymbolError(f"kernel file of {size} bytes is too large", path=path)
                raw = head + f.read()
        except OSError as exc:
            raise SymbolError(exc.strerror or str(exc), path=path) from None
        except ELFError as exc:
            raise SymbolError(f"not a usable ELF kernel: {exc}", path=path) from None
        try:
            self.data = extract_vmlinux(raw)
            self.elf = ELFFile(BytesIO(self.data))
        except FormatError as exc:
            raise SymbolError(exc.message, path=path, offset=exc.offset) from None
        except ELFError as exc:
            raise SymbolError(f"not a usable ELF kernel: {exc}", path=path) from None
        self.path = path

    def build_id(self) -> str | None:
        """The GNU build id note of the kernel (what VMCOREINFO's BUILD-ID says)."""
        return gnu_build_id(self.elf)

    def section(self, name: str) -> bytes | None:
        sec = self.elf.get_section_by_name(name)
        return sec.data() if sec is not None and sec["sh_type"] != "SHT_NOBITS" else None


def symbols_from_kallsyms_bytes(buf: bytes, source: str, *, address: int | None = None,
                                anchors: Mapping[str, int] | None = None) -> SymbolTable:
    """Symbols of the kallsyms tables found by structure in ``buf`` (read from ``address``
    when known), their encoding checked against ``anchors`` (see kallsyms.choose_encoding)."""
    try:
        layout = kallsyms.locate(buf, address=address)
        return _indexed_table(buf, layout, anchors or {}, source)
    except (FormatError, IndexError, ValueError) as exc:
        raise SymbolError(f"no usable kallsyms tables: {exc}", path=source) from None


class KernelImageProvider:
    """An execfile that is a vmlinuz or a vmlinux: its symtab or kallsyms, and its BTF."""

    name = "kernel-image"
    description = "vmlinuz/vmlinux (-N): kallsyms tables and .BTF inside the image"
    stage = "execfile"
    priority = 40
    type_format = "btf"

    def __init__(self) -> None:
        self._cache: dict[str, _KernelFile] = {}

    def _file(self, path: str, session: Session) -> _KernelFile:
        if path not in self._cache:
            kf = _KernelFile(path)
            session.check_build_id(kf.build_id(), path)
            self._cache = {path: kf}
        return self._cache[path]

    def probe(self, file: SymbolFile) -> int:
        """A bzImage; an ELF kernel with .BTF (types: preferred to DWARF), or with
        kallsyms in .rodata and no symbol table."""
        if file.head[0x202:0x206] == b"HdrS":
            return 90
        if file.is_elf and (".BTF" in file.sections or (
                ".rodata" in file.sections and ".symtab" not in file.sections)):
            return 75
        return 0

    def load(self, session: Session, path: str | None) -> SymbolTable | None:
        if path is None:
            return None
        kf = self._file(path, session)
        if kf.elf.get_section_by_name(".symtab") is not None:
            return None  # the plain ELF symtab provider reads it
        rodata = kf.section(".rodata")
        if rodata is None:
            raise SymbolError("kernel image has no .rodata section", path=path)
        sec = kf.elf.get_section_by_name(".rodata")
        table = symbols_from_kallsyms_bytes(rodata, f"{path} (kallsyms)",
                                            address=sec["sh_addr"] if sec else None)
        return session.relocate_symbols(table)

    def load_types(self, session: Session, path: str | None) -> TypeModel | None:
        if path is None:
            return None
        data = self._file(path, session).section(".BTF")
        if data is None:
            return None
        try:
            return parse_btf(data, f"{path} (.BTF)")
        except FormatError as exc:
            raise SymbolError(f"corrupt .BTF: {exc.message}", path=path,
                              offset=exc.offset) from None


def _kernel_span(session: Session, span: int = KERNEL_IMAGE_SPAN) -> tuple[int, bytes]:
    """The kernel image's virtual bytes from its text (unmapped or missing pages read as
    zeroes for the search only; nothing found there is reported as evidence)."""
    image = session.image
    start = image.text_start(session.arch.default_text(image.boot))
    return start, image.image_bytes(start, span)


def _btf_by_shape(session: Session, span: int = KERNEL_IMAGE_SPAN) -> tuple[int, bytes] | None:
    """Address and bytes of the kernel's BTF found by its header in the image's memory (for
    kallsyms that names no __start_BTF): the blob :func:`find_btf` would take from the
    image's bytes, found a window at a time so the image is never held whole (a header
    says how long its blob is, and only the largest is read)."""
    image = session.image
    start = image.text_start(session.arch.default_text(image.boot))
    best: tuple[int, int] | None = None
    for address, data, fresh in image.image_windows(start, span, 24):
        for found in _BTF_START.finditer(data, max(0, fresh - 23)):
            at = found.start()
            where = address + at
            header = header_blob_size(data, at) if (where - start) % 4 == 0 else None
            if header is not None:
                size, strings = header[0], at + header[1]
                if (where + size <= start + span and (best is None or size > best[1])
                        and (data[strings] if strings < len(data) else
                             image.image_bytes(address + strings, 1)[0]) == 0):
                    best = (where, size)
    if best is None:
        return None
    blob = image.image_bytes(*best)
    return (best[0], blob) if find_btf(blob) == (0, best[1]) else None


class BtfFileProvider:
    """An execfile that is a raw BTF blob (e.g. a copy of /sys/kernel/btf/vmlinux): types
    only; symbols then come from the image."""

    name = "btf-file"
    description = "raw BTF file (-N vmlinux.btf): types; symbols from the image"
    stage = "execfile"
    priority = 30
    type_format = "btf"

    def probe(self, file: SymbolFile) -> int:
        return 90 if file.head[:2] == b"\x9f\xeb" else 0

    def load(self, session: Session, path: str | None) -> SymbolTable | None:
        return None  # no symbols in BTF; recognised, so the image's are used

    def load_types(self, session: Session, path: str | None) -> TypeModel | None:
        if path is None:
            return None
        try:
            with open(path, "rb") as f:
                return parse_btf(f.read(), path)
        except OSError as exc:
            raise SymbolError(exc.strerror or str(exc), path=path) from None
        except FormatError as exc:
            raise SymbolError(f"corrupt BTF: {exc.message}", path=path,
                              offset=exc.offset) from None


class ImageKallsymsProvider:
    """The dump's own kallsyms tables: where VMCOREINFO says they are (Linux 6.0+), else
    found by structure in kernel memory; either way checked against VMCOREINFO's SYMBOL()s."""

    name = "image-kallsyms"
    description = "dump: the kernel's compressed kallsyms tables (VMCOREINFO or a scan)"
    stage = "image"
    priority = 10
    type_format = "btf"

    def load(self, session: Session, path: str | None) -> SymbolTable | None:
        cache = _image_cache(session)
        if "kallsyms" not in cache:
            anchors = _anchors(session)
            table = None
            try:
                table = kallsyms_named_by_vmcoreinfo(session, anchors, cache)
            except _Disagreement as exc:
                raise SymbolError(exc.message, path="image:kallsyms") from None
            except (FormatError, MissingPageError, TranslationError) as exc:
                cache["kallsyms_vmcoreinfo_error"] = str(exc)  # then scan
            if table is None:
                table = kallsyms_by_scan(session, anchors, cache)
            _check_text(table, session)
            # kallsyms of code only (no CONFIG_KALLSYMS_ALL): the table says it is not
            # complete, and the data symbols VMCOREINFO names fill in (init_uts_ns, prb...)
            if _code_only(table):
                table.complete = False
                for name, addr in anchors.items():
                    if name not in table:
                        table.add(name, addr, "D")
            cache["kallsyms"] = table
        return cache["kallsyms"]

    def load_types(self, session: Session, path: str | None) -> TypeModel | None:
        symbols = session.symbols
        start = symbols.lookup("__start_BTF")
        stop = symbols.lookup("__stop_BTF")
        try:
            if start is None or stop is None or not 0 < stop - start < (64 << 20):
                # kallsyms without CONFIG_KALLSYMS_ALL names no data: find it by its shape
                found = _btf_by_shape(session)
                if found is None:
                    return None
                start, data = found
                if symbols.source == "image:kallsyms":
                    symbols.add("__start_BTF", start, "R")
                    symbols.add("__stop_BTF", start + len(data), "R")
            else:
                data = session.image.read(start, stop - start)  # 2 MiB runs
            data = data[:btf_size(data)]
            model = parse_btf(data, "image:BTF")
            if symbols.source == "image:kallsyms":
                remember(session, symbols, data, model)  # the next open of this kernel is instant
            return model
        except FormatError as exc:
            where = (start or 0) + (exc.offset or 0)
            raise SymbolError(f"corrupt BTF in the image at {where:#x}: {exc.message}") from None


def _code_only(table: SymbolTable) -> bool:
    """Whether a kallsyms table lists code only (fewer than one data symbol in 20, and
    under 1,000 of them): counted, or for a table read through its index estimated from
    the first entry of each block of 256 (nothing decoded)."""
    if isinstance(table.symbols, kallsyms.IndexedSymbols):
        hits, seen = table.symbols.sample_types("DdBbRr")
        return hits * 20 < seen
    return table.count_types("DdBbRr") < min(1000, len(table) // 20)


class _Disagreement(FormatError):
    """The tables VMCOREINFO names decode to addresses its own SYMBOL()s contradict."""


def _anchors(session: Session) -> dict[str, int]:
    """Symbol addresses the kernel reports itself (VMCOREINFO SYMBOL()s in the image)."""
    try:
        return dict(session.image.anchors)
    except KvmError:
        return {}


def kallsyms_named_by_vmcoreinfo(session: Session, anchors: Mapping[str, int],
                                  cache: dict[str, Any]) -> SymbolTable | None:
    """The tables at the addresses VMCOREINFO gives (one read of ~2 MiB), or None when it
    does not name them (before Linux 6.0; LiME or raw images without VMCOREINFO)."""
    info = session.boot
    tables = kallsyms.named_tables(info.symbols) if info is not None else None
    if tables is None:
        return None
    num = int.from_bytes(session.read(tables["kallsyms_num_syms"], 4), "little")
    lo, hi = kallsyms.tables_span(tables, num)
    try:  # 6.4+: the name index (3 bytes a symbol) follows the tables VMCOREINFO names
        buf = session.image.read(lo, hi - lo + 3 * num + 16)  # 2 MiB runs
    except KvmError:
        buf = session.image.read(lo, hi - lo)
    layout = kallsyms.layout_from_tables(buf, lo, tables, guess_encoding=False,
                                         check_names=False)  # both decodes walk them
    try:
        table = _indexed_table(buf, layout, anchors)
    except _Disagreement as exc:
        raise _Disagreement(f"kallsyms tables named by VMCOREINFO: {exc.message}") from None
    cache["kallsyms_found_by"] = "vmcoreinfo"
    cache["kallsyms_encoding"] = layout.encoding
    return table


def _indexed_table(buf: bytes, layout: kallsyms.KallsymsLayout, anchors: Mapping[str, int],
                   source: str = "image:kallsyms") -> SymbolTable:
    """The table read through a name index: the kernel's own (6.2+, 6.1.42+) when it has
    one that reads as sorted, nothing decoded but the names looked up; else each name
    looked up compressed as the kernel's build compressed them
    (:class:`kallsyms.CompressedNames`); else an index made here
    (:func:`kallsyms.build_name_index`: every name expanded once and sorted). FormatError
    when the tables do not decode."""
    names = bytes(buf[layout.names:layout.token_table])
    tokens = kallsyms.token_strings(buf, layout)
    big: list[int] = []
    offsets = kallsyms.entry_offsets(names, layout.num_syms, big)
    index = None
    found = kallsyms.find_name_index(buf, layout)
    if found is not None:
        markers, seqs = found
        if list(offsets[::256]) == list(markers):
            index = kallsyms.IndexedNames(names, tokens, offsets, seqs)
    if index is None or not index.check():
        # before 6.2: the names looked up compressed as scripts/kallsyms compressed them
        kallsyms.check_markers(buf, layout, offsets)
        index = kallsyms.CompressedNames(
            names, tokens, offsets, kallsyms.entry_letters(names, offsets, tokens, big))
        if not index.check():
            index = kallsyms.build_name_index(names, layout.num_syms, tokens, offsets)
    where = {}
    for name in anchors:
        try:
            at = index.find_all(name.encode("utf-8").decode("latin-1"))
        except UnicodeEncodeError:
            continue
        if at:
            where[name] = at
    try:
        layout.encoding = kallsyms.choose_encoding_where(buf, layout, where, anchors)
    except FormatError as exc:
        raise _Disagreement(exc.message) from None
    addrs = array.array("Q", kallsyms.decode_addresses(buf, layout))
    return SymbolTable(source, kallsyms.IndexedSymbols(index, addrs))


def kallsyms_by_scan(session: Session, anchors: Mapping[str, int],
                      cache: dict[str, Any]) -> SymbolTable:
    """The tables found by structure in the kernel image's memory: around each place the
    token table's digits are found (a window of the image at a time), then, failing
    that, in the whole span (kallsyms sits in .rodata, some 20 MiB into the image: read
    more only if needed)."""
    image = session.image
    start = image.text_start(session.arch.default_text(image.boot))
    mark = kallsyms.TOKEN_DIGITS
    tried = 0
    for address, data, fresh in image.image_windows(start, KERNEL_IMAGE_SPAN // 4, len(mark)):
        at = data.find(mark, max(0, fresh - len(mark) + 1))
        while at >= 0 and tried < SCAN_CANDIDATES:
            if kallsyms.token_table_at(data, at) is False:  # digits, but no token table
                at = data.find(mark, at + 1)
                continue
            tried += 1
            for before, after in TABLES_AROUND_TOKENS:  # a kernel of usual size first
                # page-aligned: the tables' alignment is read from offsets in the buffer
                lo = max(start, (address + at - before) & ~0xFFF)
                hi = min(start + KERNEL_IMAGE_SPAN, address + at + after)
                tables = image.image_bytes(lo, hi - lo)
                _release(session)  # what the search mapped, before the decode needs memory
                try:
                    table = symbols_from_kallsyms_bytes(tables, "image:kallsyms",
                                                        address=lo, anchors=anchors)
                except SymbolError:
                    continue
                cache["kallsyms_found_by"] = "scan"
                return table
            at = data.find(mark, at + 1)
    error: SymbolError | None = None
    for span in (KERNEL_IMAGE_SPAN // 4, KERNEL_IMAGE_SPAN):
        start, data = _kernel_span(session, span)
        try:
            table = symbols_from_kallsyms_bytes(data, "image:kallsyms", address=start,
                                                anchors=anchors)
        except SymbolError as exc:
            error = exc
            continue
        cache["kallsyms_found_by"] = "scan"
        return table
    assert error is not None
    raise error


def _release(session: Session) -> None:
    """Give back the dump file's pages a bulk read of the image left mapped (see
    FileSource.release)."""
    source = getattr(session.physical, "source", None)
    if isinstance(source, FileSource):
        source.release()


def _check_text(table: SymbolTable, session: Session) -> None:
    """``_text`` less the KASLR offset VMCOREINFO gives must be where the architecture
    links a kernel (x86_64: a CONFIG_PHYSICAL_ALIGN multiple in the first GiB of
    __START_KERNEL_map): a decode that moves every address fails this too."""
    text = table.lookup("_text")
    try:
        image, arch = session.image, session.arch
    except KvmError:
        return
    if text is None or image.kaslr_source != "vmcoreinfo":
        return
    if not arch.text_is_plausible(text - image.kaslr_offset):
        raise SymbolError(f"kallsyms gives _text {text:#x}, which less the KASLR offset "
                          f"{image.kaslr_offset:#x} is no {arch.name} kernel start",
                          path=table.source)


class VmcoreinfoSymbolsProvider:
    """VMCOREINFO's SYMBOL() entries: a handful of symbols the kernel exports to dumps."""

    name = "vmcoreinfo"
    description = "dump: SYMBOL() entries of VMCOREINFO (few symbols; last resort)"
    stage = "image"
    priority = 90

    def load(self, session: Session, path: str | None) -> SymbolTable | None:
        try:
            anchors = session.image.anchors
        except KvmError:
            return None
        if not anchors:
            return None
        table = SymbolTable("image:vmcoreinfo", complete=False)
        for name, addr in anchors.items():
            table.add(name, addr, "D")
        return table


def _image_cache(session: Session) -> dict[str, Any]:
    return session.plugin_data.setdefault("image-symbols", {})


@hookimpl
def kvmfx_symbol_providers() -> list[SymbolProvider]:
    return [KernelImageProvider(), BtfFileProvider(), ImageKallsymsProvider(),
            VmcoreinfoSymbolsProvider()]
