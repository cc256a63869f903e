"""DWARF types read directly from a debug vmlinux (``-N vmlinux`` with ``.debug_info``).

A distribution's debug vmlinux holds hundreds of MiB of DWARF (Debian's 6.1: 174 MiB of
``.debug_info`` in 2,352 compile units). Converting all of it would take minutes in Python,
so :class:`DwarfTypeModel` is lazy:

* the file is mapped, not read: pyelftools parses DIEs through a window on the mapping;
* a name is found by searching bytes, not by walking DIEs: the name's offsets in
  ``.debug_str`` (tail-merged strings included) are searched for in ``.debug_info`` as
  ``DW_FORM_strp`` values (and the name itself as an inline ``DW_FORM_string``); each hit is
  checked by parsing the DIE that would hold it there;
* a DIE becomes a :class:`~kvmfx.types.CType` only when it is asked for: types referenced by
  a member get an id at once and are converted when :meth:`DwarfTypeModel.get` first sees
  them, so reading ``task_struct`` converts ``task_struct``, not the kernel.

Sections compressed with ``SHF_COMPRESSED`` are decompressed in memory (pyelftools does it).
Relocations are not applied: a linked vmlinux carries final values (``--emit-relocs`` keeps
the records only), and kernel modules (``ET_REL``) are not supported as type sources.
"""

from __future__ import annotations

import bisect
import json
import mmap
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from typing import TYPE_CHECKING, Any

from kvmfx.errors import SymbolError
from kvmfx.hookspecs import hookimpl
from kvmfx.session import Session
from kvmfx.symbols import SymbolFile, SymbolProvider, SymbolTable
from kvmfx.types import (
    ARRAY,
    CONST,
    ENUM,
    FLOAT,
    FUNC_PROTO,
    FWD,
    INT,
    PTR,
    RESTRICT,
    STRUCT,
    TYPEDEF,
    UNION,
    VOLATILE,
    CType,
    Member,
    TypeModel,
)
from kvmfx_plugins.symbols.files import gnu_build_id

if TYPE_CHECKING:  # pyelftools is imported when DWARF is read (kvmfx starts without it)
    from pathlib import Path

    from elftools.dwarf.die import DIE
    from elftools.dwarf.dwarfinfo import DebugSectionDescriptor

#: Candidate string offsets tried per name (short names occur as tails of many strings).
MAX_NAME_OFFSETS = 256
#: Bytes of .debug_info searched at a time for all of a name's patterns.
SEARCH_CHUNK = 4 << 20
#: Units indexed for one name before the search gives up.
MAX_UNITS_PER_LOOKUP = 256
#: Array dimensions and enumerators beyond these are refused as corrupt.
MAX_DIMENSIONS = 16
MAX_MEMBERS = 1 << 16
#: Children of one DIE (a unit's top level included) beyond this are refused as corrupt.
MAX_CHILDREN = 1 << 18

_TAG_KIND = {
    "DW_TAG_structure_type": STRUCT, "DW_TAG_class_type": STRUCT,
    "DW_TAG_union_type": UNION, "DW_TAG_enumeration_type": ENUM,
    "DW_TAG_typedef": TYPEDEF, "DW_TAG_pointer_type": PTR, "DW_TAG_reference_type": PTR,
    "DW_TAG_rvalue_reference_type": PTR, "DW_TAG_const_type": CONST,
    "DW_TAG_volatile_type": VOLATILE, "DW_TAG_restrict_type": RESTRICT,
    "DW_TAG_atomic_type": VOLATILE, "DW_TAG_immutable_type": CONST,
    "DW_TAG_array_type": ARRAY, "DW_TAG_subroutine_type": FUNC_PROTO,
    "DW_TAG_base_type": INT, "DW_TAG_unspecified_type": INT,
}
_TAGGED = ("DW_TAG_structure_type", "DW_TAG_union_type", "DW_TAG_enumeration_type",
           "DW_TAG_class_type")
_NAMED_TYPES = (*_TAGGED, "DW_TAG_typedef", "DW_TAG_base_type")
_INDEXED_TAGS = frozenset((*_NAMED_TYPES, "DW_TAG_variable"))
_REF_FORMS = {"DW_FORM_ref1", "DW_FORM_ref2", "DW_FORM_ref4", "DW_FORM_ref8",
              "DW_FORM_ref_udata"}
_SIGNED_ENCODINGS = {5, 6, 0xD}  # DW_ATE_signed, DW_ATE_signed_char, DW_ATE_signed_fixed
_FLOAT_ENCODINGS = {3, 4}  # DW_ATE_complex_float, DW_ATE_float
_DW_OP_PLUS_UCONST = 0x23
_DW_AT_NAME, _DW_AT_DECLARATION, _DW_FORM_IMPLICIT_CONST = 0x03, 0x3C, 0x21
_TAG_NUMBERS = {"DW_TAG_structure_type": 0x13, "DW_TAG_union_type": 0x17,
                "DW_TAG_enumeration_type": 0x04, "DW_TAG_class_type": 0x02,
                "DW_TAG_typedef": 0x16, "DW_TAG_base_type": 0x24, "DW_TAG_variable": 0x34}
#: Abbreviation tables: entries and attributes per entry beyond these are refused.
MAX_ABBREVS = 1 << 16
MAX_ABBREV_ATTRS = 256
MAX_CACHED_TABLES = 4096


class _Window:
    """A read-only file-like view of ``size`` bytes at ``base`` of a mapping."""

    __slots__ = ("mm", "base", "size", "pos")

    def __init__(self, mm: Any, base: int, size: int) -> None:
        self.mm, self.base, self.size, self.pos = mm, base, size, 0

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else self.pos + offset if whence == 1 \
            else self.size + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int = -1) -> bytes:
        start = self.pos
        end = self.size if n is None or n < 0 else min(start + n, self.size)
        if end <= start:
            return b""
        self.pos = end
        return self.mm[self.base + start:self.base + end]

    def read_at(self, offset: int, n: int) -> bytes:
        return self.mm[self.base + offset:self.base + min(offset + n, self.size)]

    def find(self, pattern: bytes, start: int = 0, end: int | None = None) -> int:
        """Offset of ``pattern`` in the window in ``[start, end)`` (-1: none)."""
        stop = self.size if end is None else min(end, self.size)
        found = self.mm.find(pattern, self.base + start, self.base + stop)
        return -1 if found < 0 else found - self.base


class DwarfFile:
    """The DWARF of one ELF file, mapped, with the byte searches names are found by."""

    SECTIONS = (".debug_info", ".debug_abbrev", ".debug_str", ".debug_line_str",
                ".debug_str_offsets", ".debug_addr")

    def __init__(self, path: str, data: bytes | None = None) -> None:
        """Map ``path`` (or use ``data``, its bytes: the pure form fuzzers call)."""
        from elftools.dwarf.dwarfinfo import DwarfConfig, DWARFInfo
        from elftools.elf.elffile import ELFFile

        self.path = path
        self._file: Any = None
        try:
            if data is None:
                self._file = open(path, "rb")  # noqa: SIM115 - lives with the model
                self.mm: Any = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
                self.elf = ELFFile(self._file)
            else:
                self.mm = data
                self.elf = ELFFile(BytesIO(data))
            if self.elf.get_section_by_name(".debug_info") is None:
                raise SymbolError("no DWARF (.debug_info) in this file", path=path)
            if self.elf["e_type"] == "ET_REL":
                raise SymbolError("relocatable objects are not supported as DWARF type "
                                  "sources (relocations are not applied)", path=path)
            secs = {name: self._section(name) for name in self.SECTIONS}
            if secs[".debug_info"] is None or secs[".debug_abbrev"] is None:
                raise SymbolError("DWARF without .debug_info contents or .debug_abbrev",
                                  path=path)
            none = dict.fromkeys(
                ("debug_aranges_sec", "debug_frame_sec", "eh_frame_sec", "debug_loc_sec",
                 "debug_ranges_sec", "debug_line_sec", "debug_pubtypes_sec",
                 "debug_pubnames_sec", "debug_loclists_sec", "debug_rnglists_sec",
                 "debug_sup_sec", "gnu_debugaltlink_sec", "debug_types_sec"))
            self.dwarf = DWARFInfo(
                config=DwarfConfig(little_endian=self.elf.little_endian,
                                   default_address_size=self.elf.elfclass // 8,
                                   machine_arch=self.elf.get_machine_arch()),
                debug_info_sec=secs[".debug_info"], debug_abbrev_sec=secs[".debug_abbrev"],
                debug_str_sec=secs[".debug_str"], debug_line_str_sec=secs[".debug_line_str"],
                debug_str_offsets_sec=secs[".debug_str_offsets"],
                debug_addr_sec=secs[".debug_addr"], **none)
            self.cus = list(self.dwarf.iter_CUs())
        except SymbolError:
            raise
        except (OSError, ValueError) as exc:
            raise SymbolError(getattr(exc, "strerror", None) or str(exc), path=path) from None
        except Exception as exc:  # pyelftools raises many types on corrupt DWARF
            raise SymbolError(f"corrupt DWARF: {type(exc).__name__}: {exc}",
                              path=path) from None
        self.cu_offsets = [cu.cu_offset for cu in self.cus]
        self.little = self.elf.little_endian
        self.info: Any = secs[".debug_info"].stream if secs[".debug_info"] else None
        self.strs: Any = secs[".debug_str"].stream if secs[".debug_str"] else None
        self.abbrev: Any = secs[".debug_abbrev"].stream
        #: name -> DIE offsets of its definitions, found by earlier searches
        self.remembered: dict[str, list[int]] = self._load_remembered()
        self._abbrev_cache: dict[int, dict[int, tuple[int, bool, bool]]] = {}
        #: name -> [(tag, DIE offset, is a declaration)] for the units indexed so far
        self.index: dict[str, list[tuple[str, int, bool]]] = {}
        self.indexed: set[int] = set()

    def _section(self, name: str) -> DebugSectionDescriptor | None:
        from elftools.dwarf.dwarfinfo import DebugSectionDescriptor

        sec = self.elf.get_section_by_name(name)
        if sec is None or sec["sh_type"] == "SHT_NOBITS":
            return None
        offset, size = sec["sh_offset"], sec["sh_size"]
        if sec["sh_flags"] & 0x800:  # SHF_COMPRESSED: pyelftools inflates it
            data = sec.data()
            stream: Any = _BytesWindow(data)
            size = len(data)
        else:
            if offset + size > len(self.mm):
                raise SymbolError(f"section {name} runs past the end of the file",
                                  path=self.path, offset=offset)
            stream = _Window(self.mm, offset, size)
        return DebugSectionDescriptor(stream, name, offset, size, 0)

    def close(self) -> None:
        if self._file is not None:
            try:
                self.mm.close()
            except (BufferError, ValueError):
                pass
            self._file.close()

    # -- locating DIEs ------------------------------------------------------------------------
    def cu_at(self, offset: int) -> Any:
        i = bisect.bisect_right(self.cu_offsets, offset) - 1
        if i < 0:
            raise SymbolError(f"DIE offset {offset:#x} is before the first unit",
                              path=self.path)
        return self.cus[i]

    def die_at(self, offset: int) -> DIE:
        from elftools.dwarf.die import DIE

        cu = self.cu_at(offset)
        return DIE(cu=cu, stream=self.info, offset=offset)

    def name_hits(self, name: str) -> Iterator[int]:
        """Offsets in ``.debug_info`` where a ``DW_AT_name`` equal to ``name`` may sit
        (``DW_FORM_strp`` values pointing at the name, and the name inline)."""
        if self.info is None:
            return
        raw = name.encode("utf-8", "surrogateescape")
        patterns = []
        if self.strs is not None:
            # The linker merges equal strings into one, and a string that ends another
            # into the longer one's tail: the name is either a string of its own or a
            # tail. Own copies first, and only them when there are any.
            pack = struct.Struct("<I" if self.little else ">I").pack
            whole: list[bytes] = []
            tails: list[bytes] = []
            pos = 0
            for _ in range(MAX_NAME_OFFSETS):
                pos = self.strs.find(raw + b"\0", pos)
                if pos < 0:
                    break
                own = pos == 0 or self.strs.read_at(pos - 1, 1) == b"\0"
                (whole if own else tails).append(pack(pos))
                pos += 1
            patterns = whole or tails
        patterns.append(raw + b"\0")  # DW_FORM_string
        # all patterns chunk by chunk: early units (where definitions usually are) first
        longest = max(len(p) for p in patterns)
        for chunk in range(0, self.info.size, SEARCH_CHUNK):
            found = []
            end = min(chunk + SEARCH_CHUNK + longest - 1, self.info.size)
            for pattern in patterns:
                pos = chunk
                while True:
                    pos = self.info.find(pattern, pos, end)
                    if pos < 0 or pos >= chunk + SEARCH_CHUNK:
                        break
                    found.append(pos)
                    pos += 1
            yield from sorted(found)

    def _index_cu(self, cu: Any) -> None:
        """Record the named types and variables at the top level of ``cu``."""
        self.indexed.add(cu.cu_offset)
        for child in _children(cu.get_top_DIE(), self.path):
            attr = child.attributes.get("DW_AT_name")
            if attr is None or child.tag not in _INDEXED_TAGS:
                continue
            self.index.setdefault(_text(attr.value), []).append(
                (child.tag, child.offset, "DW_AT_declaration" in child.attributes))
        # pyelftools keeps every DIE it parsed; the index is all that is needed
        for cache in ("_dielist", "_diemap"):
            if isinstance(getattr(cu, cache, None), list):
                getattr(cu, cache).clear()

    # -- what earlier searches found (kept per build id beside the profiles) -----------------
    def _cache_path(self) -> Path | None:
        if self._file is None:
            return None
        try:
            build_id = gnu_build_id(self.elf)
        except Exception:  # noqa: BLE001 - no usable note: no cache
            return None
        if not build_id or not build_id.isalnum():
            return None
        from pathlib import Path

        from kvmfx_plugins.symbols.profile_cache import cache_dir
        return Path(cache_dir()) / f"dwarf-{build_id}.json"

    def _load_remembered(self) -> dict[str, list[int]]:
        path = self._cache_path()
        try:
            if path is not None and path.exists():
                data = json.loads(path.read_text())
                return {str(k): [int(o) for o in v][:8] for k, v in data.items()
                        if isinstance(v, list)}
        except (OSError, ValueError, TypeError):
            pass
        return {}

    def remember(self, name: str, offset: int) -> None:
        """Keep where ``name`` was found, so that the next open need not search."""
        if offset in self.remembered.get(name, []):
            return
        self.remembered.setdefault(name, []).append(offset)
        path = self._cache_path()
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(self.remembered))
            os.replace(tmp, path)
        except OSError:
            pass  # a cache: never an error

    def _abbrevs(self, offset: int) -> dict[int, tuple[int, bool, bool]]:
        """``code -> (tag, named first, a declaration)`` of the abbreviation table at
        ``offset`` of .debug_abbrev (decoded by hand: ten times pyelftools' speed)."""
        table = self._abbrev_cache.get(offset)
        if table is not None:
            return table
        table = {}
        data, base, size = self.abbrev.mm, self.abbrev.base, self.abbrev.size
        pos = offset

        def uleb() -> int:
            nonlocal pos
            value = shift = 0
            while pos < size and shift < 70:
                byte = data[base + pos]
                pos += 1
                value |= (byte & 0x7F) << shift
                shift += 7
                if byte < 0x80:
                    return value
            raise SymbolError(f"abbreviation table at .debug_abbrev+{offset:#x} runs off "
                              "its section", path=self.path)

        while len(table) < MAX_ABBREVS:
            code = uleb()
            if code == 0:
                break
            tag = uleb()
            pos += 1  # DW_CHILDREN_yes/no
            first, declaration = -1, False
            for _ in range(MAX_ABBREV_ATTRS):
                attr, form = uleb(), uleb()
                if attr == 0 and form == 0:
                    break
                if form == _DW_FORM_IMPLICIT_CONST:
                    uleb()  # its (signed) value: skipped
                if first < 0:
                    first = attr
                declaration |= attr == _DW_AT_DECLARATION
            table[code] = (tag, first == _DW_AT_NAME, declaration)
        if len(self._abbrev_cache) > MAX_CACHED_TABLES:
            self._abbrev_cache.clear()
        self._abbrev_cache[offset] = table
        return table

    def _defines_here(self, cu: Any, hit: int, tags: tuple[str, ...]) -> bool:
        """Could a DIE with one of ``tags``, named first and not a declaration, begin just
        before ``hit``? Decided from the unit's abbreviations, without parsing DIEs."""
        data = self.info.mm
        base = self.info.base
        table = self._abbrevs(cu["debug_abbrev_offset"])
        wanted = {_TAG_NUMBERS[t] for t in tags}
        for lead in range(1, 4):
            start = hit - lead
            if start < cu.cu_offset:
                break
            raw = data[base + start:base + hit]
            if raw[-1] & 0x80 or any(b < 0x80 for b in raw[:-1]):
                continue
            found = table.get(_uleb(list(raw)))
            if found is not None and found[0] in wanted and found[1] and not found[2]:
                return True
        return False

    def named_dies(self, name: str, tags: tuple[str, ...]) -> Iterator[DIE]:
        """Top-level DIEs with one of ``tags`` named ``name``: those of the units already
        indexed, then of units found by :meth:`name_hits` (indexed as they are met)."""
        done: set[int] = set()

        def matches() -> Iterator[DIE]:
            for tag, offset, _decl in self.index.get(name, ()):
                if tag in tags and offset not in done:
                    done.add(offset)
                    yield self.die_at(offset)

        yield from matches()
        for offset in self.remembered.get(name, ()):
            if offset in done:
                continue
            done.add(offset)
            try:
                die = self.die_at(offset)
                attr = die.attributes.get("DW_AT_name")
            except Exception:  # noqa: BLE001 - a stale cache entry: searched for below
                continue
            if die.tag in tags and attr is not None and _text(attr.value) == name:
                yield die
        units = 0
        for hit in self.name_hits(name):
            cu = self.cu_at(hit)
            if cu.cu_offset in self.indexed or not self._defines_here(cu, hit, tags):
                continue
            units += 1
            if units > MAX_UNITS_PER_LOOKUP:
                raise SymbolError(f"{name!r}: not found in the first {MAX_UNITS_PER_LOOKUP} "
                                  "units that mention it", path=self.path)
            self._index_cu(cu)
            yield from matches()


class _BytesWindow(_Window):
    def __init__(self, data: bytes) -> None:
        super().__init__(data, 0, len(data))

    def find(self, pattern: bytes, start: int = 0, end: int | None = None) -> int:
        found: int = self.mm.find(pattern, start, self.size if end is None else end)
        return found


@contextmanager
def _corrupt(path: str, where: str) -> Iterator[None]:
    """Turn whatever pyelftools raises on corrupt DWARF into one SymbolError line."""
    try:
        yield
    except SymbolError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyelftools raises many types
        raise SymbolError(f"corrupt DWARF {where}: {type(exc).__name__}: {exc}",
                          path=path) from None


def _children(die: DIE, path: str) -> Iterator[DIE]:
    """The children of ``die``, refusing sibling links that go backwards (a loop) and
    more children than any real type has."""
    last = die.offset
    for n, child in enumerate(die.iter_children()):
        if child.offset <= last or n > MAX_CHILDREN:
            raise SymbolError(f"DWARF children of the DIE at .debug_info+{die.offset:#x} loop "
                              "or never end", path=path)
        last = child.offset
        yield child


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def _int(die: DIE, name: str, default: int = 0) -> int:
    attr = die.attributes.get(name)
    if attr is None or not isinstance(attr.value, int):
        return default
    return attr.value


class DwarfTypeModel(TypeModel):
    """A :class:`TypeModel` whose types are converted from DWARF when first asked for."""

    def __init__(self, dwarf: DwarfFile) -> None:
        super().__init__(f"{dwarf.path} (DWARF)", dwarf.elf.elfclass // 8, "dwarf")
        self.dwarf = dwarf
        self._die_tid: dict[int, int] = {}
        self._pending: dict[int, int] = {}  # tid -> DIE offset
        self._looked_up: set[tuple[str, tuple[str, ...]]] = set()
        self.converted = 0

    # -- lazy conversion ----------------------------------------------------------------------
    def tid_of(self, offset: int) -> int:
        """Type id of the DIE at ``offset`` (converted later, on first use)."""
        tid = self._die_tid.get(offset)
        if tid is None:
            self.types.append(None)
            tid = len(self.types) - 1
            self._die_tid[offset] = tid
            self._pending[tid] = offset
        return tid

    def get(self, tid: int) -> CType:
        offset = self._pending.pop(tid, None)
        if offset is not None:
            self._materialise(tid, offset)
        return super().get(tid)

    def _set(self, tid: int, ctype: CType) -> None:
        self.types[tid] = ctype
        self.converted += 1
        if ctype.name and ctype.kind != FWD:
            key = (self._namespace(ctype.kind), ctype.name)
            prev = self._by_name.get(key)
            if prev is None or self.types[prev] is None or \
                    self.types[prev].kind == FWD:  # type: ignore[union-attr]
                self._by_name[key] = tid

    def _materialise(self, tid: int, offset: int) -> None:
        with _corrupt(self.dwarf.path, f"type at .debug_info+{offset:#x}"):
            ctype = self._convert(self.dwarf.die_at(offset))
        self._set(tid, ctype)

    def _ref(self, die: DIE, name: str = "DW_AT_type") -> int:
        attr = die.attributes.get(name)
        if attr is None:
            return 0
        if attr.form in _REF_FORMS:
            return self.tid_of(die.cu.cu_offset + attr.value)
        if attr.form == "DW_FORM_ref_addr":
            return self.tid_of(attr.value)
        return 0  # DW_FORM_ref_sig8 (type units) and others: opaque

    def _convert(self, die: DIE) -> CType:
        tag = str(die.tag)
        kind = _TAG_KIND.get(tag)
        name = _text(die.attributes["DW_AT_name"].value) if "DW_AT_name" in die.attributes \
            else ""
        if kind is None:
            raise SymbolError(f"DIE at .debug_info+{die.offset:#x} is a {tag}, not a type",
                              path=self.dwarf.path)
        if kind == INT:
            enc = _int(die, "DW_AT_encoding")
            return CType(FLOAT if enc in _FLOAT_ENCODINGS else INT, name,
                         _int(die, "DW_AT_byte_size"), signed=enc in _SIGNED_ENCODINGS)
        if kind in (PTR, TYPEDEF, CONST, VOLATILE, RESTRICT):
            return CType(kind, name if kind == TYPEDEF else "", target=self._ref(die))
        if kind == FUNC_PROTO:
            return CType(FUNC_PROTO, target=self._ref(die))
        if kind == ARRAY:
            return self._array(die)
        if "DW_AT_declaration" in die.attributes:
            return self._declared(kind, name)
        size = _int(die, "DW_AT_byte_size")
        if kind == ENUM:
            values: dict[str, int] = {}
            for child in _children(die, self.dwarf.path):
                if child.tag == "DW_TAG_enumerator" and len(values) < MAX_MEMBERS:
                    values[_text(child.attributes["DW_AT_name"].value)] = \
                        _int(child, "DW_AT_const_value")
            return CType(ENUM, name, size or 4, enumerators=values)
        ctype = CType(kind, name, size)
        for child in _children(die, self.dwarf.path):
            if child.tag != "DW_TAG_member":
                continue
            if len(ctype.members) >= MAX_MEMBERS:
                raise SymbolError(f"{kind} {name} has more than {MAX_MEMBERS} members",
                                  path=self.dwarf.path)
            ctype.members.append(self._member(child))
        return ctype

    def _member(self, die: DIE) -> Member:
        attrs = die.attributes
        name = _text(attrs["DW_AT_name"].value) if "DW_AT_name" in attrs else ""
        loc = attrs.get("DW_AT_data_member_location")
        byte_off = 0
        if loc is not None:
            if isinstance(loc.value, int):
                byte_off = loc.value
            elif isinstance(loc.value, list) and len(loc.value) >= 2 and \
                    loc.value[0] == _DW_OP_PLUS_UCONST:
                byte_off = _uleb(loc.value[1:])
        bit_size = _int(die, "DW_AT_bit_size")
        bits = byte_off * 8
        if "DW_AT_data_bit_offset" in attrs:  # DWARF 4+: from the start of the struct
            bits = _int(die, "DW_AT_data_bit_offset")
        elif bit_size and "DW_AT_bit_offset" in attrs:  # DWARF 2/3: from the storage MSB
            storage = _int(die, "DW_AT_byte_size") or self.sizeof(self._ref(die))
            msb = _int(die, "DW_AT_bit_offset")
            bits = byte_off * 8 + (storage * 8 - msb - bit_size if self.dwarf.little
                                   else msb)
        return Member(name, self._ref(die), bits, bit_size)

    def _array(self, die: DIE) -> CType:
        dims: list[int] = []
        for child in _children(die, self.dwarf.path):
            if child.tag not in ("DW_TAG_subrange_type", "DW_TAG_enumeration_type"):
                continue
            if len(dims) >= MAX_DIMENSIONS:
                raise SymbolError(f"array at .debug_info+{die.offset:#x} has too many "
                                  "dimensions", path=self.dwarf.path)
            if "DW_AT_count" in child.attributes:
                dims.append(_int(child, "DW_AT_count"))
            elif "DW_AT_upper_bound" in child.attributes and \
                    isinstance(child.attributes["DW_AT_upper_bound"].value, int):
                dims.append(_int(child, "DW_AT_upper_bound") - _int(child, "DW_AT_lower_bound")
                            + 1)
            else:
                dims.append(0)  # flexible or variable length
        target = self._ref(die)
        dims = dims or [0]
        for n in reversed(dims[1:]):
            inner = CType(ARRAY, target=target, nelems=max(n, 0))
            target = self.add(inner)
        return CType(ARRAY, target=target, nelems=max(dims[0], 0))

    def _declared(self, kind: str, name: str) -> CType:
        """A declaration: the definition of the same name elsewhere, or an opaque type."""
        if name:
            tid = self._lookup(name, (STRUCT, UNION, ENUM) if kind != ENUM else (ENUM,))
            if tid is not None and self.get(tid).kind == kind:
                return self.get(tid)
        return CType(FWD, name)

    # -- lookups ------------------------------------------------------------------------------
    def _lookup(self, name: str, kinds: tuple[str, ...]) -> int | None:
        """Type id of the first DWARF definition of ``name`` with one of ``kinds``."""
        for ns in ("tag", "ordinary"):
            tid = self._by_name.get((ns, name))
            if tid is not None:
                t = self.types[tid]
                if t is not None and (t.kind in kinds or ns == "ordinary"):
                    return tid
        key = (name, kinds)
        if key in self._looked_up:
            return None
        self._looked_up.add(key)
        tags = tuple(t for t in _NAMED_TYPES if _TAG_KIND[t] in kinds)
        with _corrupt(self.dwarf.path, f"while looking for {name!r}"):
            for die in self.dwarf.named_dies(name, tags):
                if "DW_AT_declaration" in die.attributes:
                    continue
                self.dwarf.remember(name, die.offset)
                return self.tid_of(die.offset)
        return None

    def find(self, name: str, kinds: tuple[str, ...] = (STRUCT, UNION)) -> int:
        try:
            return super().find(name, kinds)
        except SymbolError:
            pass
        wanted = tuple(sorted(set(kinds) | {TYPEDEF}))
        tid = self._lookup(name, wanted)
        if tid is not None:
            self.get(tid)  # convert it: registers its name
        return super().find(name, kinds)

    def variable_type(self, name: str) -> int:
        tid = self._vars.get(name)
        if tid is not None:
            return tid
        with _corrupt(self.dwarf.path, f"while looking for {name!r}"):
            for die in self.dwarf.named_dies(name, ("DW_TAG_variable",)):
                if "DW_AT_type" in die.attributes:
                    self.dwarf.remember(name, die.offset)
                    tid = self._ref(die)
                    self._vars[name] = tid
                    return tid
        raise SymbolError(f"no variable {name!r} in {self.source}")

    @property
    def count(self) -> int:
        """Types converted so far (DWARF is converted on demand)."""
        return len(self.types) - 1

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "units": len(self.dwarf.cus),
                "converted": "on demand"}


def _uleb(data: list[int]) -> int:
    value = shift = 0
    for byte in data[:10]:
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return value


def has_dwarf(path: str) -> bool:
    """True when ``path`` is an ELF file with a ``.debug_info`` section."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as f:
            if f.read(4) != b"\x7fELF":
                return False
            f.seek(0)
            return ELFFile(f).get_section_by_name(".debug_info") is not None
    except (OSError, ELFError, ValueError):
        return False
    except Exception:  # noqa: BLE001 - a corrupt ELF is simply not a DWARF source
        return False


def load_dwarf_types(path: str) -> DwarfTypeModel:
    """The lazily converted DWARF types of ``path``; :class:`SymbolError` if unusable."""
    return DwarfTypeModel(DwarfFile(path))


class DwarfProvider:
    """An execfile that is an ELF with DWARF (a debug vmlinux): types from ``.debug_info``.

    Symbols come from the same file's symbol table (the ``execfile`` provider); a vmlinux
    that also carries ``.BTF`` is read through BTF unless DWARF is asked for
    (``--types dwarf``), since both describe the same build and BTF is faster to load.
    """

    name = "dwarf"
    description = "vmlinux with DWARF (-N): types from .debug_info, converted on demand"
    stage = "execfile"
    priority = 42
    type_format = "dwarf"

    def __init__(self) -> None:
        self._cache: dict[str, DwarfTypeModel] = {}

    def probe(self, file: SymbolFile) -> int:
        return 70 if file.is_elf and ".debug_info" in file.sections else 0

    def load(self, session: Session, path: str | None) -> SymbolTable | None:
        return None

    def load_types(self, session: Session, path: str | None) -> TypeModel | None:
        if path is None:
            return None
        if path not in self._cache:
            self._cache = {path: load_dwarf_types(path)}
        return self._cache[path]


@hookimpl
def kvmfx_symbol_providers() -> list[SymbolProvider]:
    return [DwarfProvider()]


__all__ = ["DwarfFile", "DwarfTypeModel", "load_dwarf_types", "has_dwarf", "DwarfProvider"]
