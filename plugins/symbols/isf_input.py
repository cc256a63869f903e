"""Volatility 3 ISF files as execfile (``-N kernel.json[.xz]``): symbols and types.

:func:`parse_isf` turns an ISF document into a SymbolTable and a TypeModel (base types,
structs and unions with their fields, enums; pointers and arrays built as they are met).
Symbol addresses in an ISF are unrandomised; they are slid by the image's KASLR offset like
any symbol file.
"""

from __future__ import annotations

import json
import os
from typing import Any

from kvmfx.errors import FormatError, SymbolError
from kvmfx.hookspecs import hookimpl
from kvmfx.session import Session
from kvmfx.symbols import SymbolFile, SymbolProvider, SymbolTable
from kvmfx.types import (
    ARRAY,
    ENUM,
    FUNC_PROTO,
    FWD,
    INT,
    PTR,
    STRUCT,
    UNION,
    CType,
    Member,
    TypeModel,
)

MAX_ISF_BYTES = 1 << 30
_XZ = b"\xfd7zXZ\x00"


class _Builder:
    def __init__(self, isf: dict[str, Any], source: str) -> None:
        self.isf = isf
        self.model = TypeModel(source, fmt="isf")
        self.ids: dict[str, int] = {}
        self.user = isf.get("user_types", {})
        self.enums = isf.get("enums", {})
        self.base = isf.get("base_types", {})

    def _add(self, key: str, ctype: CType) -> int:
        tid = self.model.add(ctype)
        self.ids[key] = tid
        return tid

    def type_id(self, desc: dict[str, Any], depth: int = 0) -> int:
        if depth > 64 or not isinstance(desc, dict):
            raise FormatError("ISF type descriptor nested too deep or malformed")
        kind = desc.get("kind")
        if kind == "base":
            name = desc.get("name", "void")
            if name == "void":
                return 0
            key = f"base:{name}"
            if key not in self.ids:
                b = self.base.get(name, {})
                self._add(key, CType(INT, name, int(b.get("size", 0)),
                                     signed=bool(b.get("signed"))))
            return self.ids[key]
        if kind == "pointer":
            key = "ptr:" + json.dumps(desc.get("subtype"), sort_keys=True)
            if key not in self.ids:
                tid = self._add(key, CType(PTR))
                self.model.get(tid).target = self.type_id(desc.get("subtype", {}), depth + 1)
            return self.ids[key]
        if kind == "array":
            key = "arr:" + json.dumps(desc, sort_keys=True)
            if key not in self.ids:
                elem = self.type_id(desc.get("subtype", {}), depth + 1)
                self._add(key, CType(ARRAY, target=elem, nelems=int(desc.get("count", 0))))
            return self.ids[key]
        if kind in ("struct", "union", "class"):
            return self.struct(desc.get("name", ""))
        if kind == "enum":
            name = desc.get("name", "")
            key = f"enum:{name}"
            if key not in self.ids:
                e = self.enums.get(name, {})
                self._add(key, CType(ENUM, name, int(e.get("size", 4)),
                                     enumerators=dict(e.get("constants", {}))))
            return self.ids[key]
        if kind == "bitfield":
            return self.type_id(desc.get("type", {}), depth + 1)
        if kind == "function":
            key = "func"
            if key not in self.ids:
                self._add(key, CType(FUNC_PROTO))
            return self.ids[key]
        raise FormatError(f"unknown ISF type kind {kind!r}")

    def struct(self, name: str) -> int:
        key = f"struct:{name}"
        if key in self.ids:
            return self.ids[key]
        u = self.user.get(name)
        if u is None:  # only declared (a forward declaration): opaque, as in C
            return self._add(key, CType(FWD, name))
        ctype = CType(UNION if u.get("kind") == "union" else STRUCT, name,
                      int(u.get("size", 0)))
        tid = self._add(key, ctype)  # added before its fields: self-references resolve
        for fname, field in u.get("fields", {}).items():
            desc = field.get("type", {})
            bits = int(field.get("offset", 0)) * 8
            size = 0
            if desc.get("kind") == "bitfield":
                bits += int(desc.get("bit_position", 0))
                size = int(desc.get("bit_length", 0))
            ctype.members.append(Member(fname, self.type_id(desc), bits, size))
        return tid


def parse_isf(data: bytes, source: str = "ISF") -> tuple[SymbolTable, TypeModel]:
    """Symbols and types of an ISF document (JSON, or xz-compressed JSON)."""
    try:
        if data.startswith(_XZ):
            import lzma  # an xz ISF only

            try:
                data = lzma.LZMADecompressor().decompress(data, max_length=MAX_ISF_BYTES)
            except lzma.LZMAError as exc:
                raise ValueError(str(exc)) from None
        isf = json.loads(data)
    except ValueError as exc:
        raise FormatError(f"not an ISF file: {exc}") from None
    if not isinstance(isf, dict) or "metadata" not in isf or "user_types" not in isf:
        raise FormatError("not an ISF file (no metadata / user_types)")
    try:
        b = _Builder(isf, source)
        for name in b.user:
            b.struct(name)
        table = SymbolTable(source)
        for name, sym in dict(isf.get("symbols", {})).items():
            if isinstance(sym, dict) and isinstance(sym.get("address"), int):
                table.add(str(name), sym["address"], "D")
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        raise FormatError(f"malformed ISF: {type(exc).__name__}: {exc}") from None
    return table, b.model


class IsfProvider:
    """An explicit execfile that is a Volatility 3 ISF."""

    name = "isf"
    description = "Volatility 3 ISF (-N kernel.json or .json.xz): symbols and types"
    stage = "execfile"
    priority = 45
    type_format = "isf"

    def __init__(self) -> None:
        self._cache: dict[str, tuple[SymbolTable, TypeModel]] = {}

    def _load(self, path: str | None) -> tuple[SymbolTable, TypeModel] | None:
        if path is None:
            return None
        try:
            if os.path.getsize(path) > MAX_ISF_BYTES:
                raise SymbolError("ISF file too large", path=path)
            if path not in self._cache:
                with open(path, "rb") as f:
                    self._cache = {path: parse_isf(f.read(), path)}
        except OSError as exc:
            raise SymbolError(exc.strerror or str(exc), path=path) from None
        except FormatError as exc:
            raise SymbolError(exc.message, path=path) from None
        return self._cache[path]

    def probe(self, file: SymbolFile) -> int:
        return 90 if file.head.startswith(_XZ) or file.head.lstrip().startswith(b"{") else 0

    def load(self, session: Session, path: str | None) -> SymbolTable | None:
        found = self._load(path)
        return session.relocate_symbols(found[0]) if found else None

    def load_types(self, session: Session, path: str | None) -> TypeModel | None:
        found = self._load(path)
        return found[1] if found else None


@hookimpl
def kvmfx_symbol_providers() -> list[SymbolProvider]:
    return [IsfProvider()]
