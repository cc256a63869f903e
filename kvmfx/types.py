"""One type model for kernel structures, fed by BTF, DWARF, ISF or a profile.

A :class:`TypeModel` holds C types by id. Plugins ask it for member offsets by name
(``model.offsetof("task_struct", "mm")``), for typed views of memory
(:class:`kvmfx.objects.Object`) or for a ``construct`` definition of a whole structure
(:meth:`TypeModel.construct`), never for numeric offsets written in code.
"""

from __future__ import annotations

from typing import Any

from kvmfx.errors import SymbolError
from kvmfx.records import Record

#: Kinds of the model (BTF's names, lower case).
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = (
    "int", "ptr", "array", "struct", "union", "enum", "fwd", "typedef", "volatile", "const",
    "restrict")
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG = (
    "func", "func_proto", "var", "datasec", "float", "decl_tag", "type_tag")
QUALIFIERS = frozenset({TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG})
#: Guard against type chains that loop (hostile or corrupt type data).
MAX_TYPE_DEPTH = 64


class Member(Record):
    """A struct/union member: offsets in bits; ``bit_size`` 0 for a whole member."""

    __slots__ = ("name", "type_id", "bit_offset", "bit_size")
    name: str
    type_id: int
    bit_offset: int
    bit_size: int

    def __init__(self, name: str, type_id: int, bit_offset: int, bit_size: int = 0) -> None:
        self.name = name
        self.type_id = type_id
        self.bit_offset = bit_offset
        self.bit_size = bit_size


class CType(Record):
    __slots__ = ("kind", "name", "size", "target", "members", "nelems", "signed",
                 "enumerators")
    kind: str
    name: str
    size: int
    #: the referenced type (pointer target, array element, typedef target...).
    target: int
    members: list[Member]
    nelems: int
    signed: bool
    enumerators: dict[str, int]

    def __init__(self, kind: str, name: str = "", size: int = 0, target: int = 0,
                 members: list[Member] | None = None, nelems: int = 0, signed: bool = False,
                 enumerators: dict[str, int] | None = None) -> None:
        self.kind = kind
        self.name = name
        self.size = size
        self.target = target
        self.members = [] if members is None else members
        self.nelems = nelems
        self.signed = signed
        self.enumerators = {} if enumerators is None else enumerators


class StructMember(Record):
    """A member of :class:`StructType`: byte offset, and bit offset/size for bitfields."""

    __slots__ = ("name", "offset", "type_name", "size", "bit_offset", "bit_size")
    name: str
    offset: int
    type_name: str
    size: int
    bit_offset: int
    bit_size: int

    def __init__(self, name: str, offset: int, type_name: str, size: int,
                 bit_offset: int = 0, bit_size: int = 0) -> None:
        self.name = name
        self.offset = offset
        self.type_name = type_name
        self.size = size
        self.bit_offset = bit_offset
        self.bit_size = bit_size


class StructType(Record):
    """A struct or union as plugins see it (``session.types.struct("task_struct")``):
    its size and its members at their offsets (anonymous members flattened in, as C names
    them). Instances are read field by field with :class:`kvmfx.objects.Object`."""

    __slots__ = ("name", "kind", "size", "members", "model")
    _no_repr = frozenset({"model"})

    name: str
    kind: str
    size: int
    members: dict[str, StructMember]
    model: TypeModel

    def __init__(self, name: str, kind: str, size: int, members: dict[str, StructMember],
                 model: TypeModel) -> None:
        self.name = name
        self.kind = kind
        self.size = size
        self.members = members
        self.model = model

    def offsetof(self, member: str) -> int:
        """Byte offset of a (dotted) member path."""
        return self.model.offsetof(self.name, member)



class TypeModel:
    """C types by id (0 is void), with lookup by name and member-path resolution."""

    def __init__(self, source: str, pointer_size: int = 8, fmt: str = "") -> None:
        self.source = source
        #: where the types were read from: ``btf``, ``dwarf``, ``isf`` ("" unknown)
        self.format = fmt
        self.pointer_size = pointer_size
        self.types: list[CType | None] = [None]
        self._by_name: dict[tuple[str, str], int] = {}
        self._layouts: dict[str, dict[str, tuple[int, int, int]]] = {}
        self._layouts_by_id: dict[int, dict[str, tuple[int, int, int]]] = {}
        self._vars: dict[str, int] = {}

    # -- building -----------------------------------------------------------------------
    def add(self, ctype: CType | None) -> int:
        self.types.append(ctype)
        tid = len(self.types) - 1
        if ctype is not None and ctype.kind == VAR and ctype.name:
            self._vars.setdefault(ctype.name, ctype.target)
            return tid
        if ctype is not None and ctype.name:
            key = (self._namespace(ctype.kind), ctype.name)
            # A full definition wins over a forward declaration.
            if key not in self._by_name or ctype.kind != FWD:
                prev = self._by_name.get(key)
                if prev is None or self.types[prev].kind == FWD:  # type: ignore[union-attr]
                    self._by_name[key] = tid
        return tid

    @staticmethod
    def _namespace(kind: str) -> str:
        return "tag" if kind in (STRUCT, UNION, FWD, ENUM) else "ordinary"

    # -- queries ------------------------------------------------------------------------
    def get(self, tid: int) -> CType:
        if not 0 < tid < len(self.types) or self.types[tid] is None:
            raise SymbolError(f"type id {tid} is not defined in {self.source}")
        return self.types[tid]  # type: ignore[return-value]

    def find(self, name: str, kinds: tuple[str, ...] = (STRUCT, UNION)) -> int:
        """Type id of a struct/union (or other ``kinds``) named ``name``."""
        tid = self._by_name.get(("tag", name))
        if tid is not None and self.get(tid).kind in kinds:
            return tid
        tid = self._by_name.get(("ordinary", name))
        if tid is not None:
            resolved = self.resolve(tid)
            if self.get(resolved).kind in kinds:
                return resolved
        raise SymbolError(f"no {'/'.join(kinds)} named {name!r} in {self.source}")

    @property
    def count(self) -> int:
        """Number of types (void excluded)."""
        return len(self.types) - 1

    def describe(self) -> dict[str, Any]:
        """What ``kvmfx info`` shows of the types."""
        return {"source": self.source, "format": self.format, "count": self.count}

    def has(self, name: str) -> bool:
        try:
            self.find(name)
        except SymbolError:
            return False
        return True

    def resolve(self, tid: int) -> int:
        """Follow typedefs and qualifiers to the underlying type id."""
        for _ in range(MAX_TYPE_DEPTH):
            if tid == 0:
                return 0
            t = self.get(tid)
            if t.kind not in QUALIFIERS:
                return tid
            tid = t.target
        raise SymbolError(f"type chain too deep (a loop?) at type {tid} in {self.source}")

    def sizeof(self, tid: int) -> int:
        tid = self.resolve(tid)
        if tid == 0:
            return 0
        t = self.get(tid)
        if t.kind == PTR:
            return self.pointer_size
        if t.kind == ARRAY:
            return t.nelems * self.sizeof(t.target)
        return t.size

    def struct(self, name: str) -> StructType:
        """The struct/union ``name`` with its layout (:class:`StructType`)."""
        tid = self.find(name)
        t = self.get(tid)
        members = {}
        for mname, (bits, mtid, bit_size) in self.layout_of(tid).items():
            members[mname] = StructMember(mname, bits // 8, self.type_name(mtid),
                                          self.sizeof(mtid), bits % 8 if bit_size else 0,
                                          bit_size)
        return StructType(name, t.kind, t.size, members, self)

    def struct_size(self, name: str) -> int:
        return self.get(self.find(name)).size

    def layout(self, name: str) -> dict[str, tuple[int, int, int]]:
        """``member -> (bit offset, type id, bit size)`` of a struct, anonymous members
        flattened in (as C lets code name them); bit size 0 for whole members."""
        cached = self._layouts.get(name)
        if cached is None:
            cached = self.layout_of(self.find(name))
            self._layouts[name] = cached
        return cached

    def layout_of(self, tid: int) -> dict[str, tuple[int, int, int]]:
        """:meth:`layout` of a struct/union by type id (anonymous ones included)."""
        cached = self._layouts_by_id.get(tid)
        if cached is None:
            cached = {}
            self._flatten(tid, 0, cached, 0)
            self._layouts_by_id[tid] = cached
        return cached

    def variable_type(self, name: str) -> int:
        """Type id of a global variable described in the type data (BTF VAR)."""
        tid = self._vars.get(name)
        if tid is None:
            raise SymbolError(f"no variable {name!r} in {self.source}")
        return tid

    def _flatten(self, tid: int, base_bits: int, out: dict[str, tuple[int, int, int]],
                 depth: int) -> None:
        if depth > MAX_TYPE_DEPTH:
            raise SymbolError(f"anonymous members nested too deep in {self.source}")
        for m in self.get(tid).members:
            bits = base_bits + m.bit_offset
            if m.name:
                out.setdefault(m.name, (bits, m.type_id, m.bit_size))
                continue
            inner = self.resolve(m.type_id)
            if inner and self.get(inner).kind in (STRUCT, UNION):
                self._flatten(inner, bits, out, depth + 1)

    def _entry(self, struct: str, member: str) -> tuple[int, int, int]:
        try:
            return self.layout(struct)[member]
        except KeyError:
            raise SymbolError(f"struct {struct} has no member {member!r} "
                              f"({self.source})") from None

    def member(self, struct: str, member: str) -> tuple[int, int]:
        """``(byte offset, type id)`` of ``struct.member``."""
        bits, tid, _ = self._entry(struct, member)
        return bits // 8, tid

    def bitfield(self, struct: str, member: str) -> tuple[int, int]:
        """``(bit offset, bit size)`` of a member (bit size 0: not a bitfield)."""
        bits, _, size = self._entry(struct, member)
        return bits, size

    def offsetof(self, struct: str, path: str) -> int:
        """Byte offset of a dotted member path inside ``struct`` (``"signal.pids"``)."""
        total, current = 0, struct
        parts = path.split(".")
        for i, part in enumerate(parts):
            off, tid = self.member(current, part)
            total += off
            if i + 1 < len(parts):
                inner = self.get(self.resolve(tid))
                if inner.kind not in (STRUCT, UNION) or not inner.name:
                    raise SymbolError(f"{current}.{part} is not a named struct "
                                      f"({self.source})")
                current = inner.name
        return total

    def type_name(self, tid: int) -> str:
        """A C-ish spelling of a type, for messages and profiles."""
        if tid == 0:
            return "void"
        t = self.get(tid)
        if t.kind == PTR:
            return self.type_name(t.target) + " *"
        if t.kind == ARRAY:
            return f"{self.type_name(t.target)}[{t.nelems}]"
        if t.kind in (STRUCT, UNION, ENUM):
            return f"{t.kind} {t.name or '<anon>'}"
        if t.kind in (CONST, VOLATILE, RESTRICT, TYPE_TAG):
            return self.type_name(t.target)
        return t.name or t.kind
