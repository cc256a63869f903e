"""The kernel's own compressed symbol table (kallsyms), found and decoded in raw bytes.

Linux keeps every symbol in ``.rodata``: ``kallsyms_names`` (length-prefixed entries of token
indexes), ``kallsyms_token_table`` (256 NUL-terminated strings) with
``kallsyms_token_index`` (u16 offsets), ``kallsyms_markers`` (offset of every 256th entry),
``kallsyms_num_syms`` and the addresses as ``kallsyms_offsets`` relative to
``kallsyms_relative_base`` (CONFIG_KALLSYMS_BASE_RELATIVE; with ABSOLUTE_PERCPU, negative
offsets count down from the base). The tables are located by their structure, not by symbol
names, so this works on a stripped vmlinux and on a memory image.

Everything here is a pure function of a byte buffer (fuzzable); failures raise FormatError.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from kvmfx.errors import FormatError

#: The token table keeps the digits as single-character tokens, in order.
_DIGITS = b"0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00"
MAX_SYMS = 2_000_000
MAX_NAME = 1024


@dataclass
class KallsymsLayout:
    """Where the tables are inside the buffer, and how they are encoded."""

    token_table: int
    token_index: int
    markers: int
    marker_size: int
    names: int
    num_syms: int
    offsets: int
    relative_base: int
    absolute_percpu: bool = True


def _token_table(buf: bytes, digits_at: int) -> tuple[int, int]:
    """Start of the token table and of the token index, from the position of token '0'.

    Tokens from '0' (0x30) to 0xff are walked forward (unambiguous); the index that follows
    the table gives every token's offset, so the table's start is known without walking
    back into whatever precedes it.
    """
    rel = []
    pos = digits_at
    for _ in range(256 - 0x30):
        end = buf.find(b"\0", pos, pos + 64)
        if end < 0:
            raise FormatError("kallsyms token table: token without terminator", offset=pos)
        rel.append(pos - digits_at)
        pos = end + 1
    table_end = pos
    for index_at in range(table_end + (table_end % 2), table_end + 16, 2):
        if index_at + 512 > len(buf):
            break
        idx = struct.unpack_from("<256H", buf, index_at)
        if idx[0] != 0 or any(a >= b for a, b in zip(idx, idx[1:], strict=False)):
            continue
        if [i - idx[0x30] for i in idx[0x30:]] != rel:
            continue
        start = digits_at - idx[0x30]
        if start < 0 or any(buf[start + i - 1] != 0 for i in idx[1:]):
            continue
        return start, index_at
    raise FormatError("kallsyms token index not found after the token table",
                      offset=table_end)


def _marker_run(buf: bytes, pos: int, size: int, limit: int) -> list[int]:
    """Values of an increasing array starting at ``pos`` with 0 (a markers candidate)."""
    fmt = "<Q" if size == 8 else "<I"
    values = [0]
    at = pos + size
    while at + size <= limit and len(values) < MAX_SYMS // 256 + 2:
        (v,) = struct.unpack_from(fmt, buf, at)
        step = v - values[-1]
        if not 256 * 2 <= step <= 256 * (MAX_NAME + 2):
            break
        values.append(v)
        at += size
    return values


def _read_markers(buf: bytes, table_start: int) -> tuple[int, int, list[int]]:
    """kallsyms_markers: before the token table, possibly with kallsyms_seqs_of_names
    (3 bytes per symbol, Linux 6.2+ and some stable kernels) in between. Entries are u64
    before 6.4 and u32 after; the first is 0 and each next one 256 names further."""
    lo = max(0, table_start - 3 * MAX_SYMS - 64)
    for size in (8, 4):
        zero = bytes(size)
        hi = table_start
        while True:
            pos = buf.rfind(zero, lo, hi)
            if pos < 0:
                break
            hi = pos + size - 1
            if pos % size:
                continue
            values = _marker_run(buf, pos, size, table_start)
            if len(values) < 2:
                continue
            end = pos + size * len(values)
            gap = table_start - end
            nsyms_max = 256 * len(values)
            # directly before the table, or with a seqs_of_names array (3 bytes/symbol)
            if gap < 16 or 3 * (nsyms_max - 256) <= gap <= 3 * nsyms_max + 16:
                return pos, size, values
    raise FormatError("kallsyms markers not found before the token table", offset=table_start)


def _entry_len(buf: bytes, pos: int) -> tuple[int, int]:
    n = buf[pos]
    if n & 0x80:  # "big" symbols (Linux 6.1+): two-byte ULEB128 length
        return (n & 0x7F) | (buf[pos + 1] << 7), 2
    return n, 1


def _skip_entries(buf: bytes, pos: int, count: int, limit: int) -> int:
    for _ in range(count):
        if pos >= limit:
            raise FormatError("kallsyms names run past their table", offset=pos)
        n, hdr = _entry_len(buf, pos)
        pos += hdr + n
    return pos


def _find_names(buf: bytes, markers_at: int, markers: list[int]) -> tuple[int, int, int]:
    """kallsyms_names start and kallsyms_num_syms: the u32/u64 count right before names
    whose markers agree with the entries decoded from there."""
    nmark = len(markers)
    lo = max(0, markers_at - (markers[-1] + 256 * (MAX_NAME + 2)) - 64)
    span = markers[-1]
    # names start at markers_at - (names length); names length >= markers[-1]
    hi = markers_at - span
    for start in range(hi, max(lo, hi - 256 * 130) - 1, -1):
        for cnt_size in (4, 8):
            at = start - cnt_size
            while at % cnt_size and at > 0:
                at -= 1
            if at < 0:
                continue
            num = int.from_bytes(buf[at:at + cnt_size], "little")
            if not 0 < num <= MAX_SYMS or (num + 255) // 256 != nmark:
                continue
            try:
                if nmark > 1 and _skip_entries(buf, start, 256, markers_at) - start != markers[1]:
                    continue
                end = _skip_entries(buf, start, num, markers_at + 1)
            except (FormatError, IndexError):
                continue
            if 0 <= markers_at - end < 16:
                return start, num, at
    raise FormatError("kallsyms names not found before the markers", offset=markers_at)


def locate(buf: bytes, hint: int = 0) -> KallsymsLayout:
    """Find the kallsyms tables in ``buf`` (a vmlinux image or a run of kernel memory)."""
    search = hint
    while True:
        digits_at = buf.find(_DIGITS, search)
        if digits_at < 0:
            raise FormatError("no kallsyms token table in the data")
        search = digits_at + 1
        try:
            table_start, token_index = _token_table(buf, digits_at)
            markers_at, marker_size, markers = _read_markers(buf, table_start)
            names, num, num_at = _find_names(buf, markers_at, markers)
        except FormatError:
            continue
        # Up to 6.3 the addresses come first: offsets, relative_base, num_syms, names...
        # From 6.4 they follow the token index: ...token_index, offsets, relative_base.
        early = num_at - 8 - 4 * num
        late = token_index + 512
        late += (-late) % 8
        candidates = [(early - early % 8 if early % 8 else early, num_at - 8),
                      (early, num_at - 8),
                      (late, late + ((4 * num + 7) // 8) * 8)]
        for offsets, base_at in candidates:
            layout = KallsymsLayout(table_start, token_index, markers_at, marker_size, names,
                                    num, offsets, base_at)
            if offsets >= 0 and _plausible(buf, layout):
                return layout


def _plausible(buf: bytes, layout: KallsymsLayout) -> bool:
    """Kernel-half relative base, and addresses sorted as kallsyms keeps them."""
    if layout.relative_base + 8 > len(buf) or layout.offsets + 4 * layout.num_syms > len(buf):
        return False
    (base,) = struct.unpack_from("<Q", buf, layout.relative_base)
    if base < 0xFFFF800000000000:
        return False
    n = layout.num_syms
    offs = struct.unpack_from(f"<{n}i", buf, layout.offsets)
    addrs = [o if o >= 0 else base - 1 - o for o in offs[n // 2:n // 2 + 256]]
    return all(a <= b for a, b in zip(addrs, addrs[1:], strict=False))


def decode(buf: bytes, layout: KallsymsLayout) -> list[tuple[str, int, str]]:
    """Every symbol as ``(name, address, type letter)``, in table order."""
    tokens: list[bytes] = []
    idx = struct.unpack_from("<256H", buf, layout.token_index)
    for off in idx:
        p = layout.token_table + off
        tokens.append(bytes(buf[p:buf.find(b"\0", p, p + 64)]))
    (base,) = struct.unpack_from("<Q", buf, layout.relative_base)
    offsets = struct.unpack_from(f"<{layout.num_syms}i", buf, layout.offsets)
    out = []
    pos = layout.names
    for i in range(layout.num_syms):
        n, hdr = _entry_len(buf, pos)
        pos += hdr
        name = b"".join(tokens[b] for b in buf[pos:pos + n])
        pos += n
        if not name:
            raise FormatError(f"kallsyms entry {i} is empty", offset=pos)
        off = offsets[i]
        if layout.absolute_percpu:
            addr = off if off >= 0 else (base - 1 - off) & 0xFFFFFFFFFFFFFFFF
        else:
            addr = (base + (off & 0xFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
        out.append((name[1:].decode("utf-8", "replace"), addr, chr(name[0])))
    return out
