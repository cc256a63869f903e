"""What a kernel says of itself for dump tools: ``KEY=value`` notes (Linux's VMCOREINFO).

A pure parser (:func:`parse_boot_notes`, bytes to :class:`BootNotes`) and typed views; which
OS writes them and where they are found is a kernel finder's business (:mod:`kvmfx.kernel`).
"""

from __future__ import annotations

import re

from kvmfx.errors import FormatError

MAX_NOTES = 1 << 16
_LINE = re.compile(rb"^([A-Za-z_][A-Za-z0-9_\-]*(?:\([!-(*-~]{1,128}\))?)=([^\n]*)$", re.M)


class BootNotes(dict[str, str]):
    """``KEY=value`` notes a kernel publishes about itself for dump tools (Linux's
    VMCOREINFO: ``OSRELEASE``, ``SYMBOL(name)``, ``NUMBER(name)``, ``OFFSET(s.m)``,
    ``SIZE(s)``, ``LENGTH(a)``...), with typed views of the groups."""

    def group(self, kind: str) -> dict[str, str]:
        prefix = kind + "("
        return {k[len(prefix):-1]: v for k, v in self.items()
                if k.startswith(prefix) and k.endswith(")")}

    @property
    def symbols(self) -> dict[str, int]:
        return {k: int(v, 16) for k, v in self.group("SYMBOL").items() if _is_hex(v)}

    @property
    def numbers(self) -> dict[str, int]:
        out = {}
        for k, v in self.group("NUMBER").items():
            try:
                out[k] = int(v, 0) if v.lower().startswith(("0x", "-0x")) else int(v)
            except ValueError:
                try:
                    out[k] = int(v, 16)  # arm64 writes some numbers in bare hex
                except ValueError:
                    continue
        return out

    @property
    def offsets(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.group("OFFSET").items() if v.isdigit()}

    @property
    def sizes(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.group("SIZE").items() if v.isdigit()}

    @property
    def lengths(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.group("LENGTH").items() if v.isdigit()}

    @property
    def osrelease(self) -> str | None:
        return self.get("OSRELEASE")

    @property
    def build_id(self) -> str | None:
        return self.get("BUILD-ID")

    @property
    def page_size(self) -> int | None:
        v = self.get("PAGESIZE", "")
        return int(v) if v.isdigit() else None

    @property
    def kernel_offset(self) -> int | None:
        v = self.get("KERNELOFFSET")
        return int(v, 16) if v is not None and _is_hex(v) else None

    @property
    def phys_base(self) -> int | None:
        return self.numbers.get("phys_base")


def _is_hex(v: str) -> bool:
    try:
        int(v, 16)
    except ValueError:
        return False
    return True


def parse_boot_notes(data: bytes, required: str = "OSRELEASE") -> BootNotes:
    """Parse ``KEY=value`` lines (up to the first NUL, at most 64 KiB); other lines are
    ignored. Notes without the ``required`` key are not a kernel's: FormatError."""
    data = data[:MAX_NOTES].split(b"\0", 1)[0]
    notes = BootNotes()
    for m in _LINE.finditer(data):
        notes.setdefault(m.group(1).decode("ascii"),
                         m.group(2).decode("utf-8", "replace").strip())
    if required not in notes:
        raise FormatError(f"boot notes have no {required} entry")
    return notes
