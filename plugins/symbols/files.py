"""Symbol files: System.map / kallsyms text, and vmlinux ELF symbol tables.

These providers serve the kvm_open(3) chain: an explicit execfile, then (live systems) ksyms
(``/proc/kallsyms``), the booted kernel's files, and ``_PATH_UNIX``. Addresses in a file made
for an unrandomised kernel are slid by the KASLR offset the image reports
(:func:`kvmfx.symbols.relocate` via ``session.kaslr_slide``).
"""

from __future__ import annotations

import os
import re
import struct
from typing import TYPE_CHECKING

from kvmfx.errors import SymbolError
from kvmfx.hookspecs import hookimpl
from kvmfx.session import PATH_KSYMS, Session
from kvmfx.symbols import SymbolFile, SymbolProvider, SymbolTable, parse_system_map

if TYPE_CHECKING:  # pyelftools is imported when an ELF file is read
    from elftools.elf.elffile import ELFFile

#: Linux's stand-in for <paths.h> _PATH_UNIX.
PATH_UNIX = "/vmlinux"
#: Text symbol files larger than this are refused (a real System.map is a few MiB).
MAX_TEXT_BYTES = 256 << 20
_ELF_MAGIC = b"\x7fELF"


def _release() -> str:
    return os.uname().release


def booted_kernel_files() -> list[str]:
    """Files of the running kernel, in the order kvmfx tries them (docs/api.md)."""
    r = _release()
    return [f"/boot/System.map-{r}", f"/boot/vmlinux-{r}", f"/usr/lib/debug/boot/vmlinux-{r}",
            f"/lib/modules/{r}/build/System.map", f"/lib/modules/{r}/build/vmlinux"]


def _looks_like_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == _ELF_MAGIC
    except OSError:
        return False


_MAP_LINE = re.compile(rb"^[0-9a-fA-F]{8,16} [A-Za-z?] \S+")


def looks_like_text_map(head: bytes) -> bool:
    """Whether a file starts like System.map or /proc/kallsyms (``address type name``)."""
    lines = [ln for ln in head.split(b"\n")[:8] if ln.strip()]
    return bool(lines) and all(_MAP_LINE.match(ln) for ln in lines[:-1] or lines)


def load_text_map(path: str) -> SymbolTable:
    """System.map or kallsyms text; SymbolError when unreadable or malformed."""
    try:
        size = os.path.getsize(path)
        if size > MAX_TEXT_BYTES:
            raise SymbolError(f"symbol file of {size} bytes is too large to be a System.map",
                              path=path)
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise SymbolError(exc.strerror or str(exc), path=path) from None
    if b"\0" in data[:4096]:
        raise SymbolError("not a text symbol map (binary data)", path=path)
    table = parse_system_map(data.decode("utf-8", "replace"), source=path)
    if len(table) and all(s.address == 0 for s in table.symbols.values()):
        # kptr_restrict hides addresses: the file lists names only.
        raise SymbolError("all addresses are zero (kptr_restrict hides them)", path=path)
    return table


#: ELF symbol types and bindings (st_info) kvmfx tells apart.
_STT_OBJECT, _STT_FUNC, _STB_GLOBAL = 1, 2, 1
#: ELF symbol tables larger than this are refused (a debug vmlinux has ~3 MiB).
MAX_SYMTAB_BYTES = 256 << 20


def gnu_build_id(elf: ELFFile) -> str | None:
    """The GNU build id note of an ELF file, as hex (what VMCOREINFO's BUILD-ID says)."""
    from elftools.elf.sections import NoteSection

    for section in elf.iter_sections():
        if not isinstance(section, NoteSection):
            continue
        for note in section.iter_notes():
            if note["n_name"] == "GNU" and note["n_type"] == "NT_GNU_BUILD_ID":
                desc = note["n_desc"]
                return desc if isinstance(desc, str) else bytes(desc).hex()
    return None


def parse_elf_symbols(symtab: bytes, strtab: bytes, elfclass: int, little: bool,
                      source: str) -> SymbolTable:
    """A SymbolTable from raw ``.symtab`` and ``.strtab`` bytes (pure, fuzzable):
    undefined and unnamed symbols are skipped; names are bytes up to their NUL."""
    end = "<" if little else ">"
    if elfclass == 64:
        fmt, name_i, info_i, shndx_i, value_i = end + "IBBHQQ", 0, 1, 3, 4
    else:
        fmt, name_i, info_i, shndx_i, value_i = end + "IIIBBH", 0, 3, 5, 1
    size = struct.calcsize(fmt)
    table = SymbolTable(source)
    usable = len(symtab) - len(symtab) % size
    for entry in struct.iter_unpack(fmt, memoryview(symtab)[:usable]):
        name_off, shndx = entry[name_i], entry[shndx_i]
        if not name_off or shndx == 0 or name_off >= len(strtab):
            continue
        stop = strtab.find(b"\0", name_off)
        name = strtab[name_off:stop if stop >= 0 else len(strtab)].decode("utf-8", "replace")
        if not name:
            continue
        info = entry[info_i]
        kind = {_STT_FUNC: "t", _STT_OBJECT: "d"}.get(info & 0xF, "?")
        if info >> 4 == _STB_GLOBAL:
            kind = kind.upper()
        table.add(name, entry[value_i], kind)
    return table


def load_elf_symtab(path: str) -> SymbolTable:
    """The .symtab of a vmlinux (or any kernel ELF); SymbolError when it has none."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            tables = [sec for sec in elf.iter_sections() if isinstance(sec, SymbolTableSection)]
            # .symtab when there is one, else the dynamic symbols
            section = next((sec for sec in tables if sec["sh_type"] == "SHT_SYMTAB"),
                           tables[0] if tables else None)
            if section is None:
                raise SymbolError("ELF file has no symbol table", path=path)
            strtab = elf.get_section(section["sh_link"])
            if section["sh_size"] > MAX_SYMTAB_BYTES or strtab["sh_size"] > MAX_SYMTAB_BYTES:
                raise SymbolError("ELF symbol table too large", path=path,
                                  offset=section["sh_offset"])
            f.seek(section["sh_offset"])
            symbols = f.read(section["sh_size"])
            f.seek(strtab["sh_offset"])
            names = f.read(strtab["sh_size"])
            table = parse_elf_symbols(symbols, names, elf.elfclass, elf.little_endian, path)
    except (ELFError, OSError, ValueError, KeyError, struct.error) as exc:
        raise SymbolError(f"unreadable ELF symbol table: {exc}", path=path) from None
    if not len(table):
        raise SymbolError("ELF file has no symbol table", path=path)
    return table


def load_symbol_file(path: str) -> SymbolTable:
    return load_elf_symtab(path) if _looks_like_elf(path) else load_text_map(path)


class ExecfileProvider:
    """An explicit execfile (``-N``): a vmlinux ELF or a System.map."""

    name = "execfile"
    description = "explicit kernel file (-N): vmlinux ELF symtab or System.map"
    stage = "execfile"
    priority = 50

    def probe(self, file: SymbolFile) -> int:
        if file.is_elf:
            return 80 if ".symtab" in file.sections or ".dynsym" in file.sections else 0
        if looks_like_text_map(file.head):
            return 80
        # other text: the weakest claim, so that a broken map is named by its bad line
        return 10 if file.head and b"\0" not in file.head else 0

    def load(self, session: Session, path: str | None) -> SymbolTable | None:
        if path is None:
            return None
        return session.relocate_symbols(load_symbol_file(path))


class KsymsProvider:
    """The running kernel's /proc/kallsyms (Linux's ksyms(4))."""

    name = "ksyms"
    description = "live: /proc/kallsyms (_PATH_KSYMS)"
    stage = "ksyms"
    priority = 50

    def load(self, session: Session, path: str | None) -> SymbolTable | None:
        if not os.path.exists(PATH_KSYMS):
            return None
        table = load_text_map(PATH_KSYMS)
        table.source = PATH_KSYMS
        return table


class BootedKernelProvider:
    """The running release's System.map / vmlinux (machdep.booted_kernel's Linux analogue)."""

    name = "booted-kernel"
    description = "live: /boot/System.map-$(uname -r), vmlinux, debug vmlinux"
    stage = "booted"
    priority = 50

    def load(self, session: Session, path: str | None) -> SymbolTable | None:
        for candidate in booted_kernel_files():
            if os.path.exists(candidate):
                try:
                    return session.relocate_symbols(load_symbol_file(candidate))
                except SymbolError as exc:
                    session.record_failure(self.name, candidate, str(exc))
        return None


class PathUnixProvider:
    """``_PATH_UNIX``: /vmlinux."""

    name = "path-unix"
    description = "live: /vmlinux (_PATH_UNIX)"
    stage = "path_unix"
    priority = 50

    def load(self, session: Session, path: str | None) -> SymbolTable | None:
        if not os.path.exists(PATH_UNIX):
            return None
        return session.relocate_symbols(load_symbol_file(PATH_UNIX))


@hookimpl
def kvmfx_symbol_providers() -> list[SymbolProvider]:
    return [ExecfileProvider(), KsymsProvider(), BootedKernelProvider(), PathUnixProvider()]
