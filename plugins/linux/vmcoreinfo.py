"""VMCOREINFO: the ``KEY=value`` text a Linux kernel publishes for dump tools.

:func:`parse_vmcoreinfo` is a pure function (bytes to :class:`VmcoreInfo`, or FormatError).
:func:`session_vmcoreinfo` finds it for a session: in the dump's notes, or, for formats
without notes (LiME, raw), in physical memory where the kernel keeps it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kvmfx.errors import FormatError, MissingPageError
from kvmfx.session import Session

MAX_VMCOREINFO = 1 << 16
_LINE = re.compile(rb"^([A-Za-z_][A-Za-z0-9_\-]*(?:\([!-(*-~]{1,128}\))?)=([^\n]*)$", re.M)
_SCAN_CHUNK = 16 << 20


@dataclass
class VmcoreInfo:
    """Parsed VMCOREINFO: raw entries plus typed views of the common ones."""

    entries: dict[str, str] = field(default_factory=dict)

    def _group(self, kind: str) -> dict[str, str]:
        prefix = kind + "("
        return {k[len(prefix):-1]: v for k, v in self.entries.items()
                if k.startswith(prefix) and k.endswith(")")}

    @property
    def symbols(self) -> dict[str, int]:
        return {k: int(v, 16) for k, v in self._group("SYMBOL").items() if _is_hex(v)}

    @property
    def numbers(self) -> dict[str, int]:
        out = {}
        for k, v in self._group("NUMBER").items():
            try:
                out[k] = int(v, 0) if v.lower().startswith("0x") else int(v)
            except ValueError:
                continue
        return out

    @property
    def offsets(self) -> dict[str, int]:
        return {k: int(v) for k, v in self._group("OFFSET").items() if v.isdigit()}

    @property
    def sizes(self) -> dict[str, int]:
        return {k: int(v) for k, v in self._group("SIZE").items() if v.isdigit()}

    @property
    def lengths(self) -> dict[str, int]:
        return {k: int(v) for k, v in self._group("LENGTH").items() if v.isdigit()}

    @property
    def osrelease(self) -> str | None:
        return self.entries.get("OSRELEASE")

    @property
    def build_id(self) -> str | None:
        return self.entries.get("BUILD-ID")

    @property
    def page_size(self) -> int | None:
        v = self.entries.get("PAGESIZE", "")
        return int(v) if v.isdigit() else None

    @property
    def kernel_offset(self) -> int | None:
        v = self.entries.get("KERNELOFFSET")
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


def parse_vmcoreinfo(data: bytes) -> VmcoreInfo:
    """Parse VMCOREINFO text; lines that are not ``KEY=value`` are ignored."""
    if len(data) > MAX_VMCOREINFO:
        data = data[:MAX_VMCOREINFO]
    data = data.split(b"\0", 1)[0]
    info = VmcoreInfo()
    for m in _LINE.finditer(data):
        key = m.group(1).decode("ascii")
        info.entries.setdefault(key, m.group(2).decode("utf-8", "replace").strip())
    if "OSRELEASE" not in info.entries:
        raise FormatError("VMCOREINFO has no OSRELEASE entry")
    return info


def scan_vmcoreinfo(session: Session) -> VmcoreInfo | None:
    """Find the kernel's in-memory VMCOREINFO text by scanning physical memory (bounded)."""
    layer = session.physical
    for r in layer.ranges:
        pos = r.start
        while pos < r.end:
            size = min(_SCAN_CHUNK, r.end - pos)
            try:
                chunk = layer.read(pos, size, zero_fill=True)
            except MissingPageError:
                pos += size
                continue
            at = chunk.find(b"OSRELEASE=")
            while at >= 0:
                # the text starts a page (vmcoreinfo_data is page-aligned)
                if at % 4096 == 0:
                    try:
                        return parse_vmcoreinfo(bytes(chunk[at:at + 4096 * 2]))
                    except FormatError:
                        pass
                at = chunk.find(b"OSRELEASE=", at + 1)
            pos += size
    return None


def session_vmcoreinfo(session: Session) -> VmcoreInfo | None:
    """VMCOREINFO of the session's dump (notes first, then memory), cached per session."""
    cache = session.plugin_data
    if "vmcoreinfo" not in cache:
        note = session.physical.notes.get("vmcoreinfo")
        info = None
        if note:
            try:
                info = parse_vmcoreinfo(note)
            except FormatError:
                info = None
        if info is None:
            info = scan_vmcoreinfo(session)
        cache["vmcoreinfo"] = info
    return cache["vmcoreinfo"]
