"""Typed views of kernel memory: ``task.comm``, ``task.mm``, not ``read(addr + 0x738, 16)``.

An :class:`Object` is a structure at an address, read once into a buffer; members decode from
that buffer by the type model (:mod:`kvmfx.types`): integers, enums and pointers as ``int``,
``char`` arrays as ``bytes``, nested structs as Objects over the same buffer, other arrays as
lists.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any

from kvmfx.errors import KvmError, MissingPageError, SymbolError
from kvmfx.types import ARRAY, ENUM, INT, PTR, STRUCT, UNION, TypeModel

Reader = Callable[[int, int], bytes]
#: Granularity of the fallback read of a structure that spans an unreadable page.
_PAGE = 4096
#: (start, end, reason) of the parts of a buffer that could not be read.
Holes = tuple[tuple[int, int, str], ...]


def read_with_holes(read: Reader, address: int, size: int) -> tuple[bytes, Holes]:
    """``size`` bytes at ``address``; where a page cannot be read (not in the dump, not
    mapped) its bytes are recorded as a hole, never returned as data. Raises the first
    error when nothing at all can be read."""
    try:
        return read(address, size), ()
    except KvmError as first:
        buf = bytearray()
        holes: list[tuple[int, int, str]] = []
        pos, end = address, address + size
        while pos < end:
            stop = min(end, (pos // _PAGE + 1) * _PAGE)
            try:
                buf += read(pos, stop - pos)
            except KvmError as exc:
                holes.append((pos - address, stop - address, str(exc)))
                buf += bytes(stop - pos)
            pos = stop
        if sum(e - s for s, e, _ in holes) >= size:
            raise first from None
        return bytes(buf), tuple(holes)


class Object:
    """A struct or union of type ``type_name`` at ``address`` (kernel virtual).

    A structure that straddles a page the dump does not hold is still readable: the members
    on readable pages decode as usual, a member on the missing page raises
    :class:`~kvmfx.errors.MissingPageError` naming it (its bytes are never invented).
    """

    __slots__ = ("_types", "_tid", "_name", "address", "_buf", "_base", "_holes")

    def __init__(self, types: TypeModel, type_name: str, address: int, read: Reader | None = None,
                 *, buf: bytes | None = None, base: int = 0, tid: int | None = None,
                 holes: Holes = ()) -> None:
        self._types = types
        self._tid = tid if tid is not None else types.find(type_name)
        self._name = type_name
        self.address = address
        if buf is None:
            if read is None:
                raise ValueError("an Object needs a reader or a buffer")
            buf, holes = read_with_holes(read, address, types.get(self._tid).size)
        self._buf = buf
        self._base = base
        self._holes = holes

    @property
    def complete(self) -> bool:
        """Whether every byte of the structure could be read."""
        return not self._holes

    def _check(self, name: str, off: int, size: int) -> None:
        """Refuse a member whose bytes (buffer offsets ``off``..``off+size``) lie in a hole."""
        for start, end, reason in self._holes:
            if off < end and start < off + size:
                raise MissingPageError(f"{self._name}.{name} is unreadable: {reason}",
                                       address=self.address + (off - self._base))

    @property
    def type_name(self) -> str:
        return self._name

    def raw(self) -> bytes:
        size = self._types.get(self._tid).size
        return bytes(self._buf[self._base:self._base + size])

    def offsetof(self, member: str) -> int:
        return self._types.offsetof(self._name, member)

    def member(self, name: str) -> Any:
        types = self._types
        layout = self._layout()
        if name not in layout:
            raise SymbolError(f"{self._name} has no member {name!r} ({types.source})")
        bits, tid, bit_size = layout[name]
        rtid = types.resolve(tid)
        t = types.get(rtid) if rtid else None
        off = self._base + bits // 8
        if bit_size:
            width = (bits % 8 + bit_size + 7) // 8
            if self._holes:
                self._check(name, off, width)
            word = int.from_bytes(self._buf[off:off + width], "little")
            return (word >> (bits % 8)) & ((1 << bit_size) - 1)
        if t is None:
            raise SymbolError(f"{self._name}.{name} has type void")
        if t.kind in (STRUCT, UNION):
            return Object(types, t.name or f"<anon {rtid}>", self.address + (off - self._base),
                          buf=self._buf, base=off, tid=rtid, holes=self._holes)
        if t.kind in (INT, ENUM):
            size = t.size or 4
        elif t.kind == PTR:
            size = types.pointer_size
        else:
            size = types.sizeof(rtid)
        if self._holes:
            self._check(name, off, size)
        if t.kind in (INT, ENUM):
            return int.from_bytes(self._buf[off:off + size], "little", signed=t.signed)
        if t.kind == PTR:
            return int.from_bytes(self._buf[off:off + size], "little")
        if t.kind == ARRAY:
            return self._array(t.target, t.nelems, off)
        return bytes(self._buf[off:off + size])

    def _array(self, elem_tid: int, nelems: int, off: int) -> Any:
        types = self._types
        elem = types.resolve(elem_tid)
        et = types.get(elem) if elem else None
        size = types.sizeof(elem)
        if et is not None and et.kind == INT and size == 1:
            return bytes(self._buf[off:off + nelems])
        out: list[Any] = []
        for i in range(min(nelems, 4096)):
            at = off + i * size
            if et is not None and et.kind in (INT, ENUM):
                out.append(int.from_bytes(self._buf[at:at + size], "little", signed=et.signed))
            elif et is not None and et.kind == PTR:
                out.append(int.from_bytes(self._buf[at:at + size], "little"))
            elif et is not None and et.kind in (STRUCT, UNION):
                out.append(Object(types, et.name, self.address + (at - self._base),
                                  buf=self._buf, base=at, tid=elem, holes=self._holes))
            else:
                out.append(bytes(self._buf[at:at + size]))
        return out

    def _layout(self) -> dict[str, tuple[int, int, int]]:
        return self._types.layout_of(self._tid)

    def has(self, name: str) -> bool:
        return name in self._layout()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self.member(name)

    def __repr__(self) -> str:
        return f"<{self._name} at {self.address:#x}>"


def cstring(data: bytes) -> bytes:
    """Bytes up to the first NUL."""
    end = data.find(b"\0")
    return data if end < 0 else data[:end]


#: a member path: names, each with optional ``[index]`` (``"uid.val"``, ``"pids[2]"``)
_PATH_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)$")
_INT_CODES = {1: "b", 2: "h", 4: "i", 8: "q"}


def member_at(types: TypeModel, type_name: str, path: str) -> tuple[int, int]:
    """``(byte offset, resolved type id)`` of a member path inside struct ``type_name``:
    dotted names, each optionally indexed (``"rss_stat.count[2].counter"``; a flexible array,
    of no declared length, at any index); SymbolError when the path does not exist or
    indexes past an array."""
    tid, off = types.find(type_name), 0
    for part in path.split("."):
        m = _PATH_PART.match(part)
        if m is None:
            raise SymbolError(f"bad member path {path!r}")
        t = types.get(tid)
        if t.kind not in (STRUCT, UNION):
            raise SymbolError(f"{type_name}.{path}: {part} is not in a struct")
        entry = types.layout_of(tid).get(m.group(1))
        if entry is None or entry[2]:
            raise SymbolError(f"{type_name} has no whole member {path!r} ({types.source})")
        off += entry[0] // 8
        tid = types.resolve(entry[1])
        for index in re.findall(r"\[(\d+)\]", m.group(2)):
            t = types.get(tid)
            if t.kind != ARRAY or (t.nelems and int(index) >= t.nelems):
                raise SymbolError(f"{type_name}.{path}: {part} is not an array that long")
            off += int(index) * types.sizeof(t.target)
            tid = types.resolve(t.target)
    return off, tid


class Fields:
    """Chosen members of one struct, decoded together from a single read of the bytes they
    span (``struct.unpack_from`` with a format made once): the fast way to read the same
    few members of many structures of one type. Members decode as :meth:`Object.member`
    would: integers and enums by their size and sign, pointers unsigned, ``char`` arrays as
    bytes. Bitfields, nested structs and other arrays are not taken (SymbolError).

    :meth:`read` reads nothing but the span and raises the reader's error when any byte of
    it cannot be read: callers that must report a partly readable structure member by member
    read it with :class:`Object` instead.
    """

    __slots__ = ("type_name", "names", "start", "size", "_unpack")
    _unpack: Callable[..., tuple[Any, ...]]

    def __init__(self, types: TypeModel, type_name: str, paths: Iterable[str]) -> None:
        self.type_name = type_name
        decoded: list[tuple[int, str, int, str]] = []  # (offset, code, size, path)
        for path in paths:
            off, tid = member_at(types, type_name, path)
            t = types.get(tid) if tid else None
            if t is None:
                raise SymbolError(f"{type_name}.{path} has type void")
            if t.kind in (INT, ENUM):
                size = t.size or 4
                code = _INT_CODES.get(size)
                if code is None:
                    raise SymbolError(f"{type_name}.{path}: {size}-byte integer")
                code = code if t.signed else code.upper()
            elif t.kind == PTR:
                size = types.pointer_size
                code = _INT_CODES[size].upper()
            elif t.kind == ARRAY and types.sizeof(t.target) == 1 and \
                    types.get(types.resolve(t.target)).kind == INT:
                size = t.nelems
                code = f"{size}s"
            else:
                raise SymbolError(f"{type_name}.{path}: not an integer, pointer or char array")
            decoded.append((off, code, size, path))
        if not decoded:
            raise SymbolError(f"no members of {type_name} asked for")
        self.names = tuple(path for *_, path in decoded)
        self.start = min(off for off, *_ in decoded)
        self.size = max(off + size for off, _, size, _ in decoded) - self.start
        order = sorted(range(len(decoded)), key=lambda i: decoded[i][0])
        fmt, pos, overlap = "<", self.start, False
        for i in order:
            off, code, size, _ = decoded[i]
            if off < pos:
                overlap = True
                break
            fmt += (f"{off - pos}x" if off > pos else "") + code
            pos = off + size
        if not overlap and order == list(range(len(decoded))):
            self._unpack = struct.Struct(fmt).unpack_from
        elif not overlap:  # named out of offset order: unpacked in order, then put back
            in_order = struct.Struct(fmt).unpack_from
            back = itemgetter(*(order.index(i) for i in range(len(decoded))))
            if len(decoded) == 1:
                self._unpack = in_order
            else:
                def permuted(buf: bytes, offset: int = 0) -> tuple[Any, ...]:
                    return back(in_order(buf, offset))

                self._unpack = permuted
        else:  # members out of order or overlapping (a union): one format each
            single = [(struct.Struct("<" + code).unpack_from, off - self.start)
                      for off, code, _, _ in decoded]

            def unpack(buf: bytes, offset: int = 0) -> tuple[Any, ...]:
                return tuple(u(buf, offset + at)[0] for u, at in single)

            self._unpack = unpack

    def read(self, read: Reader, address: int) -> tuple[Any, ...]:
        """The members of the structure at ``address``, in the order they were named."""
        return self._unpack(read(address + self.start, self.size))

    def decode(self, buf: bytes, offset: int = 0) -> tuple[Any, ...]:
        """The members from ``buf``, in which the structure starts at ``offset``."""
        return self._unpack(buf, offset + self.start)
