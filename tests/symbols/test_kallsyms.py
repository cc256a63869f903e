"""kallsyms tables: built synthetically for edge cases, decoded; junk never escapes FormatError."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmfx.errors import FormatError
from kvmfx_plugins.symbols import kallsyms

BASE = 0xFFFFFFFF81000000


def build(symbols: list[tuple[str, int, str]], marker_size: int = 8, seqs: bool = False,
          big_first: bool = False) -> bytes:
    """kallsyms tables as Linux 6.1-6.3 lay them out: offsets, relative_base, num_syms,
    names, markers, [seqs_of_names], token_table, token_index. Tokens are single bytes."""
    symbols = sorted(symbols, key=lambda s: s[1])
    n = len(symbols)
    out = bytearray(b"\xcc" * 64)  # unrelated data before
    for _, addr, _ in symbols:
        out += struct.pack("<i", -(addr - BASE) - 1 if addr >= BASE else addr)
    out += bytes((-len(out)) % 8)
    out += struct.pack("<Q", BASE)
    out += struct.pack("<Q", n)
    names = bytearray()
    markers = []
    for i, (name, _, kind) in enumerate(symbols):
        if i % 256 == 0:
            markers.append(len(names))
        enc = (kind + name).encode()
        if big_first and i == 0:
            enc = enc + b"x" * (200 - len(enc))
        if len(enc) > 127:
            names += bytes([0x80 | (len(enc) & 0x7F), len(enc) >> 7]) + enc
        else:
            names += bytes([len(enc)]) + enc
    out += names
    out += bytes((-len(out)) % 8)
    fmt = "<Q" if marker_size == 8 else "<I"
    for m in markers:
        out += struct.pack(fmt, m)
    if seqs:
        for i in range(n):
            out += i.to_bytes(3, "big")
        out += bytes((-len(out)) % 8)
    table_start = len(out)
    offs = []
    for b in range(256):
        offs.append(len(out) - table_start)
        out += bytes([b if b else 0x01]) + b"\0"
    out += bytes((-len(out)) % 8)
    out += struct.pack("<256H", *offs)
    out += b"\xdd" * 64
    return bytes(out)


def sample(n: int = 700) -> list[tuple[str, int, str]]:
    return [(f"sym_{i:05d}_{'x' * (i % 7)}", BASE + 16 * i, "Tt"[i % 2]) for i in range(n)]


@pytest.mark.parametrize("marker_size, seqs", [(8, False), (4, False), (4, True), (8, True)])
def test_synthetic_tables_decode_exactly(marker_size, seqs):
    syms = sample()
    buf = build(syms, marker_size, seqs)
    layout = kallsyms.locate(buf)
    assert layout.num_syms == len(syms) and layout.marker_size == marker_size
    assert kallsyms.decode(buf, layout) == syms


def test_big_symbol_names_use_two_length_bytes():
    syms = sample(300)
    buf = build(syms, big_first=True)
    decoded = kallsyms.decode(buf, kallsyms.locate(buf))
    assert decoded[0][0] == syms[0][0] + "x" * (200 - len(syms[0][0]) - 1)
    assert decoded[1:] == syms[1:]


def test_no_tables_is_a_format_error():
    with pytest.raises(FormatError, match="no kallsyms"):
        kallsyms.locate(b"\0" * 4096 + b"0\x001\x002\x00")


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 20000), st.binary(min_size=1, max_size=64))
def test_corrupted_tables_give_symbols_or_format_error(at, junk):
    buf = bytearray(build(sample(600)))
    at %= len(buf)
    buf[at:at + len(junk)] = junk
    try:
        kallsyms.decode(bytes(buf), kallsyms.locate(bytes(buf)))
    except FormatError:
        pass
