"""BTF (BPF Type Format): the kernel's own compact type information.

:func:`parse_btf` is a pure function from bytes to a :class:`~kvmfx.types.TypeModel` or a
:class:`~kvmfx.errors.FormatError` (fuzzable). The layout follows the kernel's
Documentation/bpf/btf.rst: a header, a type section of variable-length records, a string
section.
"""

from __future__ import annotations

import array
import struct
from collections.abc import Sequence
from typing import Any

from kvmfx.arrays import from_little, to_little
from kvmfx.errors import FormatError
from kvmfx.types import (
    ARRAY,
    CONST,
    DATASEC,
    DECL_TAG,
    ENUM,
    FLOAT,
    FUNC,
    FUNC_PROTO,
    FWD,
    INT,
    PTR,
    RESTRICT,
    STRUCT,
    TYPE_TAG,
    TYPEDEF,
    UNION,
    VAR,
    VOLATILE,
    CType,
    Member,
    TypeModel,
)

BTF_MAGIC = 0xEB9F
#: Refuse BTF claiming more than this (the kernel's own is ~5 MiB).
MAX_BTF_BYTES = 64 << 20

#: struct btf_header: magic u16, version u8, flags u8, hdr_len, type_off, type_len,
#: str_off, str_len (u32 each), little-endian as the kernel writes it on x86 and arm64
_HEADER = struct.Struct("<HBBIIIII")
_HEADER_FIELDS = ("magic", "version", "flags", "hdr_len", "type_off", "type_len", "str_off",
                  "str_len")

_KINDS = {1: INT, 2: PTR, 3: ARRAY, 4: STRUCT, 5: UNION, 6: ENUM, 7: FWD, 8: TYPEDEF,
          9: VOLATILE, 10: CONST, 11: RESTRICT, 12: FUNC, 13: FUNC_PROTO, 14: VAR,
          15: DATASEC, 16: FLOAT, 17: DECL_TAG, 18: TYPE_TAG, 19: ENUM}
# Bytes that follow the 12-byte common record: fixed, and per vlen item.
_EXTRA_FIXED = {1: 4, 3: 12, 14: 4, 17: 4}
_EXTRA_PER_VLEN = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}
_U32x3 = struct.Struct("<III")
_I32 = struct.Struct("<i")


def btf_header(data: bytes) -> dict[str, int]:
    """Parse and check the BTF header; FormatError names the offset that is wrong."""
    if len(data) < 24:
        raise FormatError(f"BTF shorter than its header ({len(data)} bytes)", offset=0)
    hdr = dict(zip(_HEADER_FIELDS, _HEADER.unpack_from(data), strict=True))
    if hdr["magic"] != BTF_MAGIC:
        raise FormatError(f"not BTF (magic {hdr['magic']:#06x})", offset=0)
    if hdr["hdr_len"] < 24 or hdr["hdr_len"] > len(data):
        raise FormatError(f"BTF header length {hdr['hdr_len']} is impossible", offset=4)
    end_types = hdr["hdr_len"] + hdr["type_off"] + hdr["type_len"]
    end_strs = hdr["hdr_len"] + hdr["str_off"] + hdr["str_len"]
    if max(end_types, end_strs) > len(data):
        raise FormatError(f"BTF sections end at {max(end_types, end_strs)}, past the data "
                          f"({len(data)} bytes)", offset=8)
    return hdr


def btf_size(data: bytes) -> int:
    """Total size of the BTF blob that starts ``data`` (header + sections)."""
    h = btf_header(data)
    return h["hdr_len"] + max(h["type_off"] + h["type_len"], h["str_off"] + h["str_len"])


#: per BTF kind number: bytes of its record before the vlen items (-1: not a kind), and
#: bytes per vlen item (Documentation/bpf/btf.rst)
_FIXED = [-1] * 32
_PER_VLEN = [0] * 32
for _k in _KINDS:
    _FIXED[_k] = 12 + _EXTRA_FIXED.get(_k, 0)
    _PER_VLEN[_k] = _EXTRA_PER_VLEN.get(_k, 0)
_FIXED_WORDS = [-1 if n < 0 else n // 4 for n in _FIXED]
_PER_VLEN_WORDS = [n // 4 for n in _PER_VLEN]
#: the index's parts, as a profile saves them (u32 arrays, little-endian)
INDEX_PARTS = ("offsets", "tags", "fwds", "typedefs", "vars")
#: and, saved since, the names of the named types and variables alone (their text and the
#: offset of each in the string section)
NAME_PARTS = ("names", "namekeys")




class _Names:
    """``(namespace, name) -> type id`` over the index, which is keyed by the name's offset
    in the string section: a name is looked up (all its copies: BTF's strings need not be
    unique) when it is first asked for, so indexing decodes no name."""

    def __init__(self, model: BtfTypeModel) -> None:
        self._model = model
        self._found: dict[tuple[str, str], int | None] = {}

    def get(self, key: tuple[str, str], default: Any = None) -> Any:
        if key not in self._found:
            self._found[key] = self._model._lookup(*key)
        found = self._found[key]
        return default if found is None else found


class _Vars:
    """``variable name -> type id`` over the index (looked up as :class:`_Names` does)."""

    def __init__(self, model: BtfTypeModel) -> None:
        self._model = model

    def get(self, name: str, default: Any = None) -> Any:
        found = self._model._var_type(name)
        return default if found is None else found


class BtfTypeModel(TypeModel):
    """Types of a BTF blob, indexed in one pass (record offsets, and named types by the
    offset of their name) and decoded on first use."""

    def __init__(self, data: bytes, source: str, header: dict[str, int],
                 index: dict[str, bytes] | None = None) -> None:
        super().__init__(source, fmt="btf")
        t0 = header["hdr_len"] + header["type_off"]
        self._t_end = t0 + header["type_len"]
        s0 = header["hdr_len"] + header["str_off"]
        self._strings = bytes(data[s0:s0 + header["str_len"]])
        self._data = bytes(data)
        self._decoded: dict[int, CType] = {}
        self._found_names: dict[str, list[int]] = {}
        self._named: tuple[bytes, Sequence[int]] | None = None
        self._saved_names: tuple[bytes, bytes] | None = None
        self._tags: dict[int, int] = {}
        self._fwds: dict[int, int] = {}
        self._typedefs: dict[int, int] = {}
        self._var_types: dict[int, int] = {}
        if index is None:
            self._offsets = self._index(t0)
        else:
            self._offsets = self._restore(index)
        self.types.extend([None] * len(self._offsets))
        self._by_name = _Names(self)  # type: ignore[assignment]
        self._vars = _Vars(self)  # type: ignore[assignment]

    def index_state(self) -> dict[str, bytes]:
        """The one-pass index, for a profile to save (restored without the pass)."""
        def pairs(d: dict[int, int]) -> bytes:
            return to_little(array.array("I", [x for kv in d.items() for x in kv]))

        text, keys = self._named_strings()
        return {"offsets": to_little(self._offsets), "tags": pairs(self._tags),
                "fwds": pairs(self._fwds), "typedefs": pairs(self._typedefs),
                "vars": pairs(self._var_types), "names": text,
                "namekeys": to_little(array.array("I", keys))}

    def _restore(self, index: dict[str, bytes]) -> array.array[int]:
        if set(index) - set(NAME_PARTS) != set(INDEX_PARTS):
            raise FormatError("saved BTF index has other parts than " + ", ".join(INDEX_PARTS))
        if all(part in index for part in NAME_PARTS):
            self._saved_names = (index["names"], index["namekeys"])
        offsets = from_little("I", index["offsets"])
        if any(not 0 <= o < self._t_end for o in offsets[:1] + offsets[-1:]):
            raise FormatError("saved BTF index does not fit the BTF data")
        for part, target in (("tags", self._tags), ("fwds", self._fwds),
                             ("typedefs", self._typedefs), ("vars", self._var_types)):
            flat = from_little("I", index[part])
            target.update(zip(flat[0::2], flat[1::2], strict=True))
        return offsets

    def _name(self, off: int, where: int) -> str:
        if off >= len(self._strings):
            raise FormatError(f"BTF name offset {off} outside the string section",
                              offset=where)
        end = self._strings.find(b"\0", off)
        return self._strings[off:end if end >= 0 else len(self._strings)].decode(
            "utf-8", "replace")

    def _named_strings(self) -> tuple[bytes, Sequence[int]]:
        """The names of the named types and variables alone (a tenth of the string
        section, which holds every member's name too), NUL-separated between a leading and
        a trailing NUL, and the offset in the section of each (name ``k`` follows the
        text's ``k + 1``-th NUL); a profile's when it fits together, else made on the first
        lookup."""
        if self._named is not None:
            return self._named
        if self._saved_names is not None:
            text, raw_keys = self._saved_names
            self._saved_names = None
            if len(raw_keys) % 4 == 0 and text[:1] == text[-1:] == b"\0":
                keys = from_little("I", raw_keys)
                if text.count(b"\0") == len(keys) + 1:
                    self._named = (text, keys)
                    return self._named
        strings = self._strings + b"\0"  # every name ends, even the section's last
        keys = array.array("I", sorted({*self._tags, *self._fwds, *self._typedefs,
                                        *self._var_types}))
        names = [strings[o:strings.find(b"\0", o)] for o in keys]
        self._named = (b"\0" + b"\0".join(names) + b"\0", keys)
        return self._named

    def _name_offsets(self, name: str) -> list[int]:
        """Offsets in the string section of every copy of ``name`` that names a type or a
        variable (each name searched for once, in :meth:`_named_strings`)."""
        out = self._found_names.get(name)
        if out is not None:
            return out
        text, keys = self._named_strings()
        needle = b"\0" + name.encode("utf-8") + b"\0"
        out = []
        at = text.find(needle)
        k = -1  # the index of the name after the NUL at ``at``: NULs before it, less one
        counted = 0
        while at >= 0:
            k += text.count(b"\0", counted, at + 1)
            counted = at + 1
            out.append(keys[k])
            at = text.find(needle, at + 1)
        if len(self._found_names) < 65536:
            self._found_names[name] = out
        return out

    def _lookup(self, namespace: str, name: str) -> int | None:
        """The type id of ``name``: of a tag (a definition before a forward declaration;
        the first of each), or of a typedef."""
        offs = self._name_offsets(name)
        if namespace == "tag":
            found = [self._tags[o] for o in offs if o in self._tags]
            if not found:
                found = [self._fwds[o] for o in offs if o in self._fwds]
        else:
            found = [self._typedefs[o] for o in offs if o in self._typedefs]
        return min(found) if found else None

    def _var_type(self, name: str) -> int | None:
        found = [(o, self._var_types[o]) for o in self._name_offsets(name)
                 if o in self._var_types]
        return found[0][1] if found else None

    def _index(self, pos: int) -> array.array[int]:
        """Walk the type records once: where each starts, and the named ones by the offset
        of their name (the first definition of each kept). Records are whole u32 words, so
        the walk reads the type section as one array of them."""
        length = self._t_end - pos
        if length % 4:
            raise FormatError(f"BTF type section of {length} bytes is not whole records",
                              offset=pos)
        words = from_little("I", self._data[pos:self._t_end])
        count = len(words)
        # an unknown kind jumps past the end (the record is named after the walk)
        jump = [count + 1 if n < 0 else n for n in _FIXED_WORDS]
        per_vlen = _PER_VLEN_WORDS
        tags, fwds, typedefs, var_types = self._tags, self._fwds, self._typedefs, \
            self._var_types
        offsets = array.array("I")
        add = offsets.append
        tid = 0
        w = last = 0
        try:
            while w < count:
                add(pos + 4 * w)
                last = w
                tid += 1
                name_off = words[w]
                info = words[w + 1]
                kind_no = (info >> 24) & 0x1F
                if name_off:
                    if 4 <= kind_no <= 8 or kind_no == 19:  # struct union enum fwd typedef
                        if kind_no == 8:
                            typedefs.setdefault(name_off, tid)
                        elif kind_no == 7:
                            fwds.setdefault(name_off, tid)
                        else:
                            tags.setdefault(name_off, tid)
                    elif kind_no == 14:
                        var_types.setdefault(name_off, words[w + 2])
                w += jump[kind_no] + per_vlen[kind_no] * (info & 0xFFFF)
        except IndexError:
            raise FormatError("BTF type record truncated", offset=pos + 4 * last) from None
        if w > count:
            kind_no = (words[last + 1] >> 24) & 0x1F
            if _FIXED_WORDS[kind_no] < 0:
                raise FormatError(f"unknown BTF kind {kind_no}", offset=pos + 4 * last)
            if last + 3 > count:
                raise FormatError("BTF type record truncated", offset=pos + 4 * last)
            raise FormatError(f"BTF {_KINDS[kind_no]} record runs past the type section",
                              offset=pos + 4 * last)
        if any(o >= len(self._strings) for o in (max(tags, default=0), max(fwds, default=0),
                                                  max(typedefs, default=0),
                                                  max(var_types, default=0))):
            raise FormatError("BTF name offset outside the string section")
        return offsets

    def get(self, tid: int) -> CType:
        t = self._decoded.get(tid)
        if t is None:
            if not 0 < tid <= len(self._offsets):
                return super().get(tid)
            t = self._decode(self._offsets[tid - 1])
            self._decoded[tid] = t
        return t

    def _decode(self, pos: int) -> CType:
        view = self._data
        name_off, info, size_or_type = _U32x3.unpack_from(view, pos)
        kind_no = (info >> 24) & 0x1F
        vlen = info & 0xFFFF
        kind_flag = info >> 31
        t = CType(_KINDS[kind_no], self._name(name_off, pos) if name_off else "")
        body = pos + 12
        if kind_no == 1:  # INT
            (enc,) = struct.unpack_from("<I", view, body)
            t.size = size_or_type
            t.signed = bool((enc >> 24) & 1)
        elif kind_no == 3:  # ARRAY
            elem, _index, nelems = _U32x3.unpack_from(view, body)
            t.target, t.nelems = elem, nelems
        elif kind_no in (4, 5):  # STRUCT, UNION
            t.size = size_or_type
            for i in range(vlen):
                m_name, m_type, m_off = _U32x3.unpack_from(view, body + 12 * i)
                bits, bit_size = (m_off & 0xFFFFFF, m_off >> 24) if kind_flag else (m_off, 0)
                t.members.append(Member(self._name(m_name, body + 12 * i) if m_name else "",
                                        m_type, bits, bit_size))
        elif kind_no in (6, 19):  # ENUM, ENUM64
            t.size = size_or_type
            t.signed = bool(kind_flag)
            step = 8 if kind_no == 6 else 12
            for i in range(vlen):
                at = body + step * i
                e_name = struct.unpack_from("<I", view, at)[0]
                if kind_no == 6:
                    value = _I32.unpack_from(view, at + 4)[0]
                else:
                    lo, hi = struct.unpack_from("<II", view, at + 4)
                    value = (hi << 32) | lo
                t.enumerators[self._name(e_name, at)] = value
        elif kind_no in (15, 16):  # DATASEC, FLOAT
            t.size = size_or_type
        elif kind_no != 7:  # PTR, TYPEDEF, qualifiers, FUNC, FUNC_PROTO, VAR, tags
            t.target = size_or_type
        return t

    def decode_all(self) -> None:
        """Decode every type now (validation; fuzzing)."""
        for tid in range(1, len(self._offsets) + 1):
            self.get(tid)


def parse_btf(data: bytes, source: str = "BTF",
              index: dict[str, bytes] | None = None) -> BtfTypeModel:
    """Index a BTF blob into a lazily decoded TypeModel (or restore a saved index);
    FormatError when malformed."""
    if len(data) > MAX_BTF_BYTES:
        raise FormatError(f"BTF of {len(data)} bytes is larger than {MAX_BTF_BYTES}")
    return BtfTypeModel(data, source, btf_header(data), index)


#: how a BTF header starts: magic 0xeb9f, version 1, flags 0 (Documentation/bpf/btf.rst)
BTF_START = b"\x9f\xeb\x01\x00"


def find_btf(buf: bytes) -> tuple[int, int] | None:
    """Offset and size of the largest BTF blob in ``buf`` (a kernel image's memory): a
    version-1 header of 24 bytes whose type and string sections follow it back to back,
    the strings starting with their empty string, all inside ``buf``. Pure, for images
    whose symbols do not name it (kallsyms without CONFIG_KALLSYMS_ALL has no
    __start_BTF)."""
    best: tuple[int, int] | None = None
    at = buf.find(BTF_START)
    while at >= 0:
        if at % 4 == 0:
            found = header_blob_size(buf, at)
            if found is not None and at + found[0] <= len(buf) and buf[at + found[1]] == 0 \
                    and (best is None or found[0] > best[1]):
                best = (at, found[0])
        at = buf.find(BTF_START, at + 1)
    return best


def header_blob_size(buf: bytes, at: int) -> tuple[int, int] | None:
    """``(size of the blob, where its strings start)``, both from ``at``, when the BTF
    header at ``at`` in ``buf`` reads as the kernel writes it (version 1, 24 bytes, the
    type and string sections back to back, neither empty, no larger than MAX_BTF_BYTES);
    None otherwise. (The strings' first byte, their empty string, is the caller's to
    check: it may lie past ``buf``.)"""
    if at < 0 or at + 24 > len(buf):
        return None
    hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<5I", buf, at + 4)
    size = hdr_len + str_off + str_len
    if hdr_len == 24 and type_off == 0 and str_off == type_len and type_len > 0 and \
            str_len > 0 and size <= MAX_BTF_BYTES:
        return size, hdr_len + str_off
    return None
