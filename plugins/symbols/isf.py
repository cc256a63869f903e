"""Volatility 3 ISF export: a kernel nobody kept debug info for, made usable by Volatility.

``kvmfx profile export-isf DUMP --isf kernel.json.xz`` writes the dump's own symbols (kallsyms)
and types (BTF) as an Intermediate Symbol Format file: base types, user types (structs and
unions, anonymous members flattened into their parent as C lets code name them), enums, and
symbols at their unrandomised addresses, with ``linux_banner``'s bytes as the identifier
Volatility matches dumps by.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import lzma
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kvmfx.errors import KvmError
from kvmfx.symbols import SymbolTable
from kvmfx.types import (
    ARRAY,
    ENUM,
    FLOAT,
    FUNC,
    FUNC_PROTO,
    FWD,
    INT,
    PTR,
    QUALIFIERS,
    STRUCT,
    UNION,
    TypeModel,
)

MAX_DEPTH = 64
#: Types of well-known kernel variables (BTF describes only per-CPU variables; DWARF, which
#: an ISF usually comes from, describes all). Volatility's plugins start from these.
KNOWN_VARIABLES = {
    "init_task": {"kind": "struct", "name": "task_struct"},
    "init_uts_ns": {"kind": "struct", "name": "uts_namespace"},
    "init_mm": {"kind": "struct", "name": "mm_struct"},
    "init_pid_ns": {"kind": "struct", "name": "pid_namespace"},
    "init_net": {"kind": "struct", "name": "net"},
    "init_files": {"kind": "struct", "name": "files_struct"},
    "modules": {"kind": "struct", "name": "list_head"},
    "prb": {"kind": "pointer", "subtype": {"kind": "struct", "name": "printk_ringbuffer"}},
    "tk_core": None,
    "avenrun": {"kind": "array", "count": 3,
                "subtype": {"kind": "base", "name": "unsigned long"}},
    "jiffies": {"kind": "base", "name": "unsigned long"},
    "linux_banner": {"kind": "array", "count": 512, "subtype": {"kind": "base", "name": "char"}},
    "mem_section": {"kind": "pointer", "subtype": {"kind": "pointer", "subtype": {
        "kind": "struct", "name": "mem_section"}}},
    "page_offset_base": {"kind": "base", "name": "unsigned long"},
    "vmemmap_base": {"kind": "base", "name": "unsigned long"},
    "init_top_pgt": {"kind": "array", "count": 512, "subtype": {"kind": "base",
                                                                 "name": "unsigned long"}},
}


class IsfWriter:
    """Converts one TypeModel + SymbolTable to ISF (a JSON-ready dict)."""

    def __init__(self, types: TypeModel) -> None:
        self.types = types
        self.base: dict[str, Any] = {
            "void": {"kind": "void", "size": 0, "signed": False, "endian": "little"},
            "pointer": {"kind": "int", "size": types.pointer_size, "signed": False,
                        "endian": "little"},
        }
        self.user: dict[str, Any] = {}
        self.enums: dict[str, Any] = {}
        self._pending: list[int] = []

    def _name(self, tid: int, kind: str) -> str:
        t = self.types.get(tid)
        return t.name or f"unnamed_{kind}_{tid}"

    def desc(self, tid: int, depth: int = 0) -> dict[str, Any]:
        """The ISF type descriptor of a type id."""
        if depth > MAX_DEPTH:
            return {"kind": "base", "name": "void"}
        if tid == 0:
            return {"kind": "base", "name": "void"}
        t = self.types.get(tid)
        if t.kind in QUALIFIERS:
            return self.desc(t.target, depth + 1)
        if t.kind in (INT, FLOAT):
            name = t.name or f"int{t.size * 8}"
            if name not in self.base:
                kind = "float" if t.kind == FLOAT else (
                    "bool" if name == "_Bool" else "char" if t.size == 1 and "char" in name
                    else "int")
                self.base[name] = {"kind": kind, "size": t.size, "signed": t.signed,
                                   "endian": "little"}
            return {"kind": "base", "name": name}
        if t.kind == PTR:
            return {"kind": "pointer", "subtype": self.desc(t.target, depth + 1)}
        if t.kind == ARRAY:
            return {"kind": "array", "count": t.nelems,
                    "subtype": self.desc(t.target, depth + 1)}
        if t.kind in (STRUCT, UNION, FWD):
            kind = "union" if t.kind == UNION else "struct"
            name = self._name(tid, kind)
            if t.kind != FWD and name not in self.user:
                self.user[name] = None  # reserve; filled by write_structs
                self._pending.append(tid)
            return {"kind": kind, "name": name}
        if t.kind == ENUM:
            name = self._name(tid, "enum")
            if name not in self.enums:
                base = f"{'' if t.signed else 'unsigned '}{'long' if t.size == 8 else 'int'}"
                self.base.setdefault(base, {"kind": "int", "size": t.size or 4,
                                            "signed": t.signed, "endian": "little"})
                self.enums[name] = {"size": t.size or 4, "base": base,
                                    "constants": dict(t.enumerators)}
            return {"kind": "enum", "name": name}
        if t.kind in (FUNC, FUNC_PROTO):
            return {"kind": "function"}
        return {"kind": "base", "name": "void"}

    def _fields(self, tid: int, base_bits: int, out: dict[str, Any], depth: int) -> None:
        for m in self.types.get(tid).members:
            bits = base_bits + m.bit_offset
            if not m.name:
                inner = self.types.resolve(m.type_id)
                if inner and self.types.get(inner).kind in (STRUCT, UNION) and depth < 16:
                    self._fields(inner, bits, out, depth + 1)
                continue
            if m.name in out:
                continue
            if m.bit_size:
                storage = self.desc(m.type_id)
                out[m.name] = {"offset": bits // 8,
                               "type": {"kind": "bitfield", "bit_position": bits % 8,
                                        "bit_length": m.bit_size, "type": storage}}
            else:
                out[m.name] = {"offset": bits // 8, "type": self.desc(m.type_id)}

    def write_structs(self) -> None:
        while self._pending:
            tid = self._pending.pop()
            t = self.types.get(tid)
            fields: dict[str, Any] = {}
            self._fields(tid, 0, fields, 0)
            self.user[self._name(tid, "union" if t.kind == UNION else "struct")] = {
                "kind": "union" if t.kind == UNION else "struct", "size": t.size,
                "fields": fields}

    def all_named(self) -> None:
        """Describe every named struct, union and enum of the model."""
        for tid in range(1, self.types.count + 1):
            t = self.types.get(tid)
            if t.name and t.kind in (STRUCT, UNION, ENUM):
                self.desc(tid)
        self.write_structs()


def export_isf(symbols: SymbolTable, types: TypeModel, unslide: Callable[[int], int],
               banner: bytes | None) -> dict[str, Any]:
    """ISF of a kernel: symbols at unrandomised addresses (``unslide``), every named type."""
    w = IsfWriter(types)
    w.all_named()
    syms: dict[str, Any] = {}
    for sym in symbols.symbols.values():
        addr = unslide(sym.address)
        syms[sym.name] = {"address": addr}
        typ = KNOWN_VARIABLES.get(sym.name)
        if typ is None:
            try:
                typ = w.desc(types.variable_type(sym.name))
            except KvmError:
                typ = None
        if typ is not None:
            syms[sym.name]["type"] = typ
    w.write_structs()
    for base in ("unsigned long", "char"):
        if base not in w.base:
            w.base[base] = {"kind": "char" if base == "char" else "int",
                            "size": 1 if base == "char" else 8, "signed": base == "char",
                            "endian": "little"}
    if banner is not None and "linux_banner" in syms:
        syms["linux_banner"]["constant_data"] = base64.b64encode(banner).decode()
    return {
        "metadata": {"format": "6.1.0",
                     "producer": {"name": "kvmfx", "version": "0.1.0",
                                  "datetime": _dt.datetime.now(_dt.UTC).isoformat(
                                      timespec="seconds")},
                     "linux": {"symbols": [{"kind": "symtab", "name": symbols.source}],
                               "types": [{"kind": "btf", "name": types.source}]}},
        "base_types": w.base,
        "user_types": {k: v for k, v in w.user.items() if v is not None},
        "enums": w.enums,
        "symbols": syms,
    }


def write_isf(isf: dict[str, Any], path: str) -> int:
    data = json.dumps(isf, separators=(",", ":")).encode()
    if path.endswith(".xz"):
        data = lzma.compress(data, preset=1)
    Path(path).write_bytes(data)
    return len(data)
