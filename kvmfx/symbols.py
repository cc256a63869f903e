"""Symbols: the table every provider produces, and the provider contract.

Providers are tried in the kvm_open(3) order: an explicit execfile, then ksyms, then the booted
kernel, then _PATH_UNIX, then what the image itself carries (VMCOREINFO, kallsyms, BTF).
"""

from __future__ import annotations

import bisect
import itertools
import operator
import os
import struct
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from kvmfx.errors import SymbolError
from kvmfx.records import Record

if TYPE_CHECKING:
    from kvmfx.session import Session

#: Type formats a session may ask for (None: the first the chain finds).
TYPE_FORMATS = (None, "btf", "dwarf", "isf")
#: The order of the kvm_open(3) fallback chain, then the image's own sources.
STAGES = ("execfile", "ksyms", "booted", "path_unix", "image")


class Symbol(Record):
    __slots__ = ("name", "address", "type")
    name: str
    address: int
    type: str  # nm-style type letter: T, t, D, d, B, ...

    def __init__(self, name: str, address: int, type: str = "?") -> None:
        self.name = name
        self.address = address
        self.type = type


class _Columns(MutableMapping[str, Symbol]):
    """What the column-backed symbol maps share: a Symbol is made from column ``i`` when
    a name is first asked for (its address moved by ``move`` when set)."""

    _addresses: Sequence[int]
    _types: str
    _move: Callable[[int], int] | None
    _made: dict[str, Symbol]

    def _symbol(self, name: str, i: int) -> Symbol:
        addr = self._addresses[i]
        sym = self._made[name] = Symbol(name, self._move(addr) if self._move else addr,
                                        self._types[i])
        return sym

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def columns(self) -> tuple[list[str], list[int], str]:
        """Every symbol as columns (names, addresses as found or moved, type letters), one
        entry a name, without making a Symbol of each."""
        raise NotImplementedError

    def is_empty(self) -> bool:
        """Whether no symbol is held."""
        return len(self) == 0

    def type_letters(self) -> Iterator[str]:
        """Each symbol's type letter (no Symbol made)."""
        raise NotImplementedError

    def moved(self, offset: int) -> _Columns:
        """A copy whose every address is ``offset`` further on (symbols set by hand too)."""
        raise NotImplementedError


class _SearchedColumns(_Columns):
    """What the column maps found by searching share: a name is looked for by ``_find``
    (its column index, or -1) when it was neither set by hand nor made before; symbols
    set or deleted by hand are kept beside the columns."""

    _by_hand: dict[str, Symbol]
    _deleted: set[str]

    def _find(self, name: str) -> int:
        raise NotImplementedError

    def __getitem__(self, name: str) -> Symbol:
        sym = self._by_hand.get(name) or self._made.get(name)
        if sym is not None:
            return sym
        i = -1 if name in self._deleted else self._find(name)
        if i < 0:
            raise KeyError(name)
        return self._symbol(name, i)

    def __setitem__(self, name: str, sym: Symbol) -> None:
        self._by_hand[name] = sym
        self._deleted.discard(name)

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._by_hand.pop(name, None)
        self._made.pop(name, None)
        self._deleted.add(name)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str) or name in self._deleted:
            return False
        return name in self._by_hand or name in self._made or self._find(name) >= 0


class SortedSymbols(_SearchedColumns):
    """``name -> Symbol`` over a blob of unique names sorted by their UTF-8 bytes, each
    ending in NUL, with ``offsets`` (where each name starts, and one past the last): a
    name is found by binary search in the blob, so a table of 88,000 symbols opens with no
    per-symbol work at all (a profile's form). ``move`` (optional) gives each column
    address where it lies in this image (a KASLR slide), applied when a symbol is made;
    symbols set or deleted by hand are kept beside the columns."""

    def __init__(self, blob: bytes, offsets: Sequence[int], addresses: Sequence[int],
                 types: str, move: Callable[[int], int] | None = None) -> None:
        self._blob, self._offsets = blob, offsets
        self._addresses, self._types, self._move = addresses, types, move
        self._count = len(offsets) - 1 if offsets else 0
        self._made: dict[str, Symbol] = {}
        self._by_hand: dict[str, Symbol] = {}
        self._deleted: set[str] = set()

    def _key(self, i: int) -> bytes:
        return self._blob[self._offsets[i]:self._offsets[i + 1] - 1]

    def _find(self, name: str) -> int:
        """The column index of ``name``, or -1."""
        key = name.encode("utf-8", "surrogateescape")
        i = bisect.bisect_left(range(self._count), key, key=self._key)
        return i if i < self._count and self._key(i) == key else -1

    def _names(self) -> list[str]:
        if not self._count:
            return []
        return self._blob[:-1].decode("utf-8", "surrogateescape").split("\0")

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns()[0])

    def __len__(self) -> int:
        extra = sum(1 for n in self._by_hand if self._find(n) < 0)
        return self._count + extra - len(self._deleted)

    def columns(self) -> tuple[list[str], list[int], str]:
        """Every symbol as columns (names, addresses as found or moved, type letters)."""
        names = self._names()
        move = self._move
        addrs = [move(a) for a in self._addresses] if move else list(self._addresses)
        kinds = self._types
        if self._by_hand or self._deleted:
            letters = list(kinds)
            for k, name in enumerate(names):
                sym = self._by_hand.get(name)
                if sym is not None:
                    addrs[k], letters[k] = sym.address, sym.type[:1] or "?"
            keep = [k for k, n in enumerate(names) if n not in self._deleted]
            names = [names[k] for k in keep]
            addrs = [addrs[k] for k in keep]
            letters = [letters[k] for k in keep]
            for name, sym in self._by_hand.items():
                if self._find(name) < 0:
                    names.append(name)
                    addrs.append(sym.address)
                    letters.append(sym.type[:1] or "?")
            kinds = "".join(letters)
        return names, addrs, kinds

    def type_letters(self) -> Iterator[str]:
        """Each symbol's type letter (no Symbol made)."""
        if not self._by_hand and not self._deleted:
            return iter(self._types)
        return iter(self.columns()[2])

    def sorted_columns(self) -> tuple[bytes, list[int], list[int], str]:
        """The table in :func:`sorted_columns`'s form (addresses as found or moved): what
        it holds already when nothing was set or deleted by hand."""
        if self._by_hand or self._deleted:
            return sorted_columns(*self.columns())
        move = self._move
        addrs = list(map(move, self._addresses)) if move else list(self._addresses)
        return self._blob, list(self._offsets), addrs, self._types

    def count_types(self, letters: str) -> int:
        """How many symbols have one of ``letters`` as their type letter."""
        if self._by_hand or self._deleted:
            return sum(1 for kind in self.type_letters() if kind in letters)
        return sum(self._types.count(letter) for letter in set(letters))

    def moved(self, offset: int) -> SortedSymbols:
        """A copy whose every address is ``offset`` further on (symbols set by hand too)."""
        move = self._move
        out = SortedSymbols(self._blob, self._offsets, self._addresses, self._types,
                            (lambda a: move(a) + offset) if move else (lambda a: a + offset))
        out._by_hand = {n: Symbol(n, s.address + offset, s.type)
                        for n, s in self._by_hand.items()}
        out._deleted = set(self._deleted)
        return out


def sorted_columns(names: Sequence[str], addresses: Sequence[int], types: str
                   ) -> tuple[bytes, list[int], list[int], str]:
    """Columns in the form :class:`SortedSymbols` reads: one entry a name (the first of a
    repeated name, in column order, as nm and the kernel's lookup keep), the names sorted
    by their UTF-8 bytes, NUL-terminated in one blob, with their start offsets.

    Every step runs in C over the whole column (no Python code per symbol): a kernel's
    200,000 kallsyms names sort in about 60 ms."""
    count = len(names)
    if not count:
        return b"", [0], [], ""
    joined = "\0".join(names)
    if joined.count("\0") != count - 1:  # a name holding NUL (no kernel's has one) is left out
        keep = [i for i, n in enumerate(names) if "\0" not in n]
        return sorted_columns([names[i] for i in keep], [addresses[i] for i in keep],
                              "".join([types[i] for i in keep]))
    # ASCII names: str order is byte order; others are sorted by their UTF-8 bytes
    keys: Sequence[str] | list[bytes] = names if joined.isascii() else \
        joined.encode("utf-8", "surrogateescape").split(b"\0")
    del joined
    # a stable sort: the entries of one name stay in column order, the first one first
    order = sorted(range(count), key=keys.__getitem__)
    ordered: list[Any] = list(map(keys.__getitem__, order))
    firsts = list(itertools.compress(range(1, count), map(operator.ne, itertools.islice(
        ordered, 1, None), ordered)))
    if len(firsts) != count - 1:  # repeated names: keep the first entry of each
        firsts.insert(0, 0)
        order = list(map(order.__getitem__, firsts))
        ordered = list(map(ordered.__getitem__, firsts))
    offsets = list(itertools.accumulate(map((1).__add__, map(len, ordered)), initial=0))
    if ordered and isinstance(ordered[0], str):
        blob = ("\0".join(ordered) + "\0").encode("ascii")
    else:
        blob = b"\0".join(ordered) + b"\0"
    return (blob, offsets, list(map(addresses.__getitem__, order)),
            "".join(map(types.__getitem__, order)))


def columns_of(symbols: Mapping[str, Symbol]) -> tuple[list[str], list[int], str]:
    """``symbols`` as columns (names, addresses, type letters)."""
    if isinstance(symbols, _Columns):
        return symbols.columns()
    names, addrs, kinds = [], [], []
    for sym in symbols.values():
        names.append(sym.name)
        addrs.append(sym.address)
        kinds.append(sym.type[:1] or "?")
    return names, addrs, "".join(kinds)


class SymbolTable(Record):
    """Name <-> address maps of one kernel, with where they came from."""

    __slots__ = ("source", "symbols", "complete", "slide", "_sorted")
    _no_repr = frozenset({"_sorted"})

    source: str
    symbols: MutableMapping[str, Symbol]
    complete: bool
    #: KASLR slide applied to the file's addresses (0: used as found).
    slide: int
    _sorted: list[tuple[int, str]]

    def __init__(self, source: str, symbols: MutableMapping[str, Symbol] | None = None,
                 complete: bool = True, slide: int = 0,
                 _sorted: list[tuple[int, str]] | None = None) -> None:
        self.source = source
        self.symbols = {} if symbols is None else symbols
        self.complete = complete
        self.slide = slide
        self._sorted = [] if _sorted is None else _sorted

    @classmethod
    def from_pairs(cls, source: str, pairs: Mapping[str, int] | Iterator[tuple[str, int, str]],
                   ) -> SymbolTable:
        table = cls(source)
        if isinstance(pairs, Mapping):
            for name, addr in pairs.items():
                table.add(name, addr)
        else:
            for name, addr, kind in pairs:
                table.add(name, addr, kind)
        return table

    def add(self, name: str, address: int, kind: str = "?") -> None:
        # The first definition wins, as nm and the kernel's own lookup do.
        if name not in self.symbols:
            self.symbols[name] = Symbol(name, address, kind)
            self._sorted = []

    def lookup(self, name: str) -> int | None:
        """Address of ``name`` (a leading underscore is tolerated, as in BSD nlist)."""
        sym = self.symbols.get(name)
        if sym is None and name.startswith("_"):
            sym = self.symbols.get(name[1:])
        return sym.address if sym is not None else None

    def address_of(self, name: str) -> int:
        addr = self.lookup(name)
        if addr is None:
            raise SymbolError(f"symbol {name!r} not found in {self.source}")
        return addr

    def reverse(self, address: int) -> tuple[str, int] | None:
        """``(name, offset)`` of the symbol at or below ``address``."""
        if not self._sorted:
            names, addrs, _ = columns_of(self.symbols)
            self._sorted = sorted(zip(addrs, names, strict=True))
        i = bisect.bisect_right(self._sorted, (address, "\U0010ffff")) - 1
        if i < 0:
            return None
        addr, name = self._sorted[i]
        return name, address - addr

    def following(self, address: int) -> tuple[str, int] | None:
        """``(name, address)`` of the first symbol above ``address`` (where an object that
        starts at ``address`` ends at the latest), or None."""
        if not self._sorted:
            self.reverse(address)
        i = bisect.bisect_right(self._sorted, (address, "\U0010ffff"))
        if i >= len(self._sorted):
            return None
        addr, name = self._sorted[i]
        return name, addr

    def slid(self, offset: int) -> SymbolTable:
        """A copy with every address moved by ``offset`` (a KASLR slide)."""
        table = SymbolTable(self.source, complete=self.complete)
        table.slide = self.slide + offset
        if isinstance(self.symbols, _Columns):
            table.symbols = self.symbols.moved(offset)
            return table
        for sym in self.symbols.values():
            table.symbols[sym.name] = Symbol(sym.name, sym.address + offset, sym.type)
        return table

    @classmethod
    def from_columns(cls, source: str, names: list[str], addresses: Sequence[int],
                     types: str) -> SymbolTable:
        """A table over columns (the first entry of a repeated name wins), sorted once
        into the form a profile keeps (:func:`sorted_columns`)."""
        return cls(source, SortedSymbols(*sorted_columns(names, addresses, types)))

    def is_empty(self) -> bool:
        """Whether the table holds no symbol (without counting a large one)."""
        if isinstance(self.symbols, _Columns):
            return self.symbols.is_empty()
        return not self.symbols

    def __bool__(self) -> bool:
        return not self.is_empty()

    def count_types(self, letters: str) -> int:
        """How many symbols have one of ``letters`` as their type letter."""
        if isinstance(self.symbols, SortedSymbols):
            return self.symbols.count_types(letters)
        return sum(1 for kind in self.type_letters() if kind in letters)

    def type_letters(self) -> Iterator[str]:
        """Every symbol's type letter."""
        if isinstance(self.symbols, _Columns):
            return self.symbols.type_letters()
        return (sym.type for sym in self.symbols.values())

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.lookup(name) is not None


#: How much of a symbol file its providers are shown to recognise it.
HEAD_BYTES = 65536
#: An ELF section table larger than this is not read for names (a vmlinux has ~80 sections).
MAX_SECTIONS = 4096


class SymbolFile(NamedTuple):
    """An execfile as the providers are offered it: read once, its first bytes and, for an
    ELF file, its section names, so that each provider scores it without opening it."""

    path: str
    head: bytes
    size: int
    #: ELF section names (empty for other files, or an ELF whose section table is unusable).
    sections: frozenset[str] = frozenset()

    @property
    def is_elf(self) -> bool:
        return self.head[:4] == b"\x7fELF"


def elf_section_names(head: bytes, read: Any, size: int) -> frozenset[str]:
    """Section names of an ELF file (pure: ``read(offset, n)`` gives bytes; nothing on a
    malformed table)."""
    if head[:4] != b"\x7fELF" or len(head) < 64 or head[4] not in (1, 2) or \
            head[5] not in (1, 2):
        return frozenset()
    wide, end = head[4] == 2, "<" if head[5] == 1 else ">"
    try:
        if wide:
            shoff, = struct.unpack_from(end + "Q", head, 0x28)
            shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", head, 0x3A)
        else:
            shoff, = struct.unpack_from(end + "I", head, 0x20)
            shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", head, 0x2E)
        if not 0 < shnum <= MAX_SECTIONS or shentsize < (64 if wide else 40) or \
                shoff + shnum * shentsize > size or shstrndx >= shnum:
            return frozenset()
        table = read(shoff, shnum * shentsize)
        fields = end + ("IIQQQQ" if wide else "IIIIII")

        def header(i: int) -> tuple[int, ...]:
            return struct.unpack_from(fields, table, i * shentsize)

        strs = header(shstrndx)
        str_off, str_size = strs[4], strs[5]
        if str_off + str_size > size or str_size > 1 << 20:
            return frozenset()
        names = read(str_off, str_size)
        out = set()
        for i in range(shnum):
            name_off = header(i)[0]
            if name_off < len(names):
                stop = names.find(b"\0", name_off)
                out.add(names[name_off:stop if stop >= 0 else None].decode("ascii", "replace"))
        return frozenset(out - {""})
    except (struct.error, OSError):
        return frozenset()


def open_symbol_file(path: str) -> SymbolFile:
    """Read what the providers need to score ``path``; SymbolError when it cannot be read."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(HEAD_BYTES)

            def read(offset: int, n: int) -> bytes:
                f.seek(offset)
                return f.read(n)

            sections = elf_section_names(head, read, size)
    except OSError as exc:
        raise SymbolError(exc.strerror or str(exc), path=path) from None
    return SymbolFile(path, head, size, sections)


class SymbolProvider(Protocol):
    """What a symbol-provider plugin gives (:func:`kvmfx.hookspecs.kvmfx_symbol_providers`).

    Providers of the ``execfile`` stage also score the file they are offered,
    ``probe(file: SymbolFile) -> int`` (0-100, as dump formats do): the session asks them
    best first, each file read once for all of them.
    """

    name: str
    description: str
    stage: str
    priority: int

    def load(self, session: Session, path: str | None) -> SymbolTable | None:
        """A table, or None when this provider has nothing for the session."""
        ...


def parse_system_map(text: str, source: str = "System.map") -> SymbolTable:
    """Parse ``nm``-style lines (System.map, /proc/kallsyms): ``address type name [module]``."""
    table = SymbolTable(source)
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 3:
            raise SymbolError(f"{source} line {lineno}: expected 'address type name'")
        try:
            addr = int(parts[0], 16)
        except ValueError:
            raise SymbolError(f"{source} line {lineno}: bad address {parts[0]!r}") from None
        table.add(parts[2], addr, parts[1])
    return table
