"""kallsyms in every layout Linux emitted from 5.10 to 7.0 (docs/symbols.md), built by a small
encoder that follows scripts/kallsyms.c's documented output, decoded back exactly: found by
structure and from the addresses VMCOREINFO gives; the encoding chosen by anchors, and a
decode the anchors contradict refused. Then the real dumps: the guest's /proc/kallsyms."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmfx.errors import FormatError
from kvmfx_plugins.symbols import kallsyms

TEXT = 0xFFFFFFFF81000000 + 0x2C00000  # _text with a KASLR slide
RODATA = TEXT + 0x1200000  # where the tables' buffer starts
#: a few two-character tokens in codes no name uses (scripts/kallsyms.c finds the best pairs)
PAIRS = ("sy", "m_", "_0", "ke", "rn")


@dataclass(frozen=True)
class Release:
    """What scripts/kallsyms.c of a release emits (see docs/symbols.md)."""

    name: str
    late: bool  # 6.4+: addresses after the token index
    encoding: str
    seqs: int  # bytes per kallsyms_seqs_of_names entry, 0: none
    align: int  # ALGN of every label (8 on 64-bit until 6.19, 4 from 7.0)


RELEASES = {r.name: r for r in (
    Release("5.10", False, kallsyms.ABSOLUTE_PERCPU, 0, 8),
    Release("5.10-absolute", False, kallsyms.ABSOLUTE, 0, 8),  # BASE_RELATIVE=n
    Release("5.10-arm64", False, kallsyms.BASE_RELATIVE, 0, 8),  # no ABSOLUTE_PERCPU
    Release("6.1", False, kallsyms.ABSOLUTE_PERCPU, 0, 8),
    Release("6.1.42", False, kallsyms.ABSOLUTE_PERCPU, 4, 8),
    Release("6.2", False, kallsyms.ABSOLUTE_PERCPU, 3, 8),
    Release("6.4", True, kallsyms.ABSOLUTE_PERCPU, 3, 8),
    Release("6.4-absolute", True, kallsyms.ABSOLUTE, 3, 8),
    Release("6.12-arm64", True, kallsyms.BASE_RELATIVE, 3, 8),
    Release("6.15", True, kallsyms.BASE_RELATIVE, 3, 8),
    Release("7.0", True, kallsyms.PLACE_RELATIVE, 3, 4),
)}


def symbols(n: int = 700, percpu: bool = True, big: bool = False) -> list[tuple[str, int, str]]:
    """Symbols in kallsyms order (by address); per-CPU ones at small absolute addresses
    when the kernel keeps them so (x86_64 before 6.15)."""
    out = [("_text", TEXT, "T"), ("_stext", TEXT, "T")]
    out += [(f"sym_{i:05d}_{'ke' * (i % 5)}", TEXT + 0x40 + 16 * i, "Tt"[i % 2])
            for i in range(n)]
    out += [("init_uts_ns", TEXT + 0x1000000, "D"), ("swapper_pg_dir", TEXT + 0x1002000, "D")]
    if big:  # a Rust-sized name: more than 127 tokens, so a two-byte length
        out.insert(5, ("_RNvXs_" + "core_fmt_" * 30 + "big", TEXT + 0x41, "t"))
        out.sort(key=lambda s: s[1])
    if percpu:
        out = [("fixed_percpu_data", 0, "A"), ("cpu_number", 0x1F000, "A"), *out]
    return out


class Encoder:
    """scripts/kallsyms.c's write_src() for one release, into bytes at a known address."""

    def __init__(self, release: Release, address: int = RODATA) -> None:
        self.r = release
        self.address = address
        self.out = bytearray(b"\xcc" * 72)  # unrelated .rodata before
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.out += bytes((-len(self.out)) % self.r.align)
        self.labels[name] = self.address + len(self.out)

    def build(self, syms: list[tuple[str, int, str]]) -> bytes:
        tokens, encoded = _compress([kind + name for name, _addr, kind in syms])
        if self.r.late:
            self.names(encoded)
            self.token_tables(tokens)
            self.addresses(syms)
            self.seqs(syms)
        else:
            self.addresses(syms)
            self.names(encoded)
            self.seqs(syms)
            self.token_tables(tokens)
        self.out += b"\xdd" * 64  # unrelated .rodata after
        return bytes(self.out)

    def addresses(self, syms: list[tuple[str, int, str]]) -> None:
        enc = self.r.encoding
        if enc == kallsyms.ABSOLUTE:
            self.label("kallsyms_addresses")
            for _, addr, _ in syms:
                self.out += struct.pack("<Q", addr)
            return
        self.label("kallsyms_offsets")
        if enc == kallsyms.ABSOLUTE_PERCPU:  # base: the first non-per-CPU symbol
            base = next(a for _, a, k in syms if a >= TEXT)
            for _, addr, _ in syms:
                self.out += struct.pack("<i", addr if addr < TEXT else base - addr - 1)
        elif enc == kallsyms.BASE_RELATIVE:  # base: the first symbol
            base = syms[0][1]
            for _, addr, _ in syms:
                self.out += struct.pack("<I", addr - base)
        else:  # place-relative: "_text - . + (addr - _text)"
            for _, addr, _ in syms:
                place = self.address + len(self.out)
                self.out += struct.pack("<i", addr - place)
            return
        self.label("kallsyms_relative_base")
        self.out += struct.pack("<Q", base)

    def names(self, encoded: list[bytes]) -> None:
        self.label("kallsyms_num_syms")
        self.out += struct.pack("<I", len(encoded))
        self.label("kallsyms_names")
        start = len(self.out)
        markers = []
        for i, e in enumerate(encoded):
            if i % 256 == 0:
                markers.append(len(self.out) - start)
            n = len(e)
            self.out += bytes([n]) if n <= 0x7F else bytes([(n & 0x7F) | 0x80, n >> 7])
            self.out += e
        self.label("kallsyms_markers")
        for m in markers:
            self.out += struct.pack("<I", m)

    def seqs(self, syms: list[tuple[str, int, str]]) -> None:
        if not self.r.seqs:
            return
        self.label("kallsyms_seqs_of_names")
        order = sorted(range(len(syms)), key=lambda i: (syms[i][0], syms[i][1], i))
        for seq in order:
            self.out += (struct.pack("<I", seq) if self.r.seqs == 4
                         else seq.to_bytes(3, "big"))

    def token_tables(self, tokens: list[bytes]) -> None:
        self.label("kallsyms_token_table")
        index = []
        start = len(self.out)
        for t in tokens:
            index.append(len(self.out) - start)
            self.out += t + b"\0"
        self.label("kallsyms_token_index")
        self.out += struct.pack("<256H", *index)


def _compress(names: list[str]) -> tuple[list[bytes], list[bytes]]:
    """Token table and compressed names: every character a token of itself, the PAIRS in
    codes no character uses, other codes empty."""
    used = sorted({c for n in names for c in n.encode()})
    tokens = [bytes([c]) if c in used else b"" for c in range(256)]
    free = [c for c in range(255, 0, -1) if c not in used]
    pair_code = {}
    for pair, code in zip(PAIRS, free, strict=False):
        tokens[code] = pair.encode()
        pair_code[pair.encode()] = code
    encoded = []
    for n in names:
        b, out, i = n.encode(), bytearray(), 0
        while i < len(b):
            if b[i:i + 2] in pair_code:
                out.append(pair_code[b[i:i + 2]])
                i += 2
            else:
                out.append(b[i])
                i += 1
        encoded.append(bytes(out))
    return tokens, encoded


def build(release: str, **kw: bool) -> tuple[bytes, dict[str, int], list[tuple[str, int, str]]]:
    r = RELEASES[release]
    syms = symbols(percpu=r.encoding == kallsyms.ABSOLUTE_PERCPU or
                   r.encoding == kallsyms.ABSOLUTE and not r.late, **kw)
    enc = Encoder(r)
    return enc.build(syms), enc.labels, syms


def anchors_of(syms: list[tuple[str, int, str]]) -> dict[str, int]:
    """What VMCOREINFO would give: SYMBOL(_stext), SYMBOL(init_uts_ns), ..."""
    return {n: a for n, a, _ in syms if n in ("_stext", "init_uts_ns", "swapper_pg_dir")}


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_found_by_structure_and_decoded_exactly(release):
    buf, _labels, syms = build(release)
    layout = kallsyms.locate(buf, address=RODATA)
    assert layout.num_syms == len(syms)
    assert layout.encoding == RELEASES[release].encoding
    assert kallsyms.decode(buf, layout) == syms
    assert kallsyms.decode(buf, layout, anchors_of(syms)) == syms


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_big_names_use_two_length_bytes(release):
    buf, _labels, syms = build(release, big=True)
    assert max(len(n) for n, _, _ in syms) > 200
    assert kallsyms.decode(buf, kallsyms.locate(buf, address=RODATA)) == syms


@pytest.mark.parametrize("release", [r for r in sorted(RELEASES) if not r.startswith("5.")])
def test_tables_named_by_vmcoreinfo_decode_exactly(release):
    buf, labels, syms = build(release)
    # what kernel/vmcore_info.c exports: not the markers, not seqs_of_names
    tables = kallsyms.named_tables({k: v for k, v in labels.items()
                                    if k not in ("kallsyms_markers", "kallsyms_seqs_of_names")})
    assert tables is not None
    num = len(syms)
    lo, hi = kallsyms.tables_span(tables, num)
    part = buf[lo - RODATA:hi - RODATA]
    layout = kallsyms.layout_from_tables(part, lo, tables)
    assert layout.markers is None and layout.encoding == RELEASES[release].encoding
    assert kallsyms.decode(part, layout, anchors_of(syms)) == syms


def test_vmcoreinfo_without_the_tables_names_none():
    assert kallsyms.named_tables({"_stext": TEXT, "init_uts_ns": TEXT + 0x1000000}) is None
    assert kallsyms.named_tables({"kallsyms_names": 1, "kallsyms_num_syms": 2,
                                  "kallsyms_token_table": 3,
                                  "kallsyms_token_index": 4}) is None  # no addresses


def test_anchors_choose_the_encoding_the_structure_cannot():
    # a 6.15 table read as if per-CPU were absolute: its offsets are all positive, so that
    # reading gives tiny addresses; VMCOREINFO's _stext settles it either way
    buf, _labels, syms = build("6.15")
    layout = kallsyms.locate(buf, address=RODATA)
    layout.encoding = kallsyms.ABSOLUTE_PERCPU
    names = kallsyms.decode_names(buf, layout)
    assert kallsyms.choose_encoding(buf, layout, names, anchors_of(syms)) == \
        kallsyms.BASE_RELATIVE
    # and a pre-6.15 x86 table is absolute per-CPU, not base-relative
    buf, _labels, syms = build("6.4")
    layout = kallsyms.locate(buf, address=RODATA)
    names = kallsyms.decode_names(buf, layout)
    assert kallsyms.choose_encoding(buf, layout, names, anchors_of(syms)) == \
        kallsyms.ABSOLUTE_PERCPU


@pytest.mark.parametrize("release", ["6.1", "6.15", "7.0"])
def test_a_decode_the_anchors_contradict_is_refused(release):
    buf, _labels, syms = build(release)
    layout = kallsyms.locate(buf, address=RODATA)
    wrong = dict(anchors_of(syms), _stext=TEXT + 0x200000)
    with pytest.raises(FormatError, match=r"disagree.*_stext.*0xffffffff83e00000"):
        kallsyms.decode(buf, layout, wrong)
    # symbols VMCOREINFO names that kallsyms leaves out are no disagreement
    extra = dict(anchors_of(syms), kallsyms_names=RODATA, vmap_area_list=TEXT + 0x1234)
    assert kallsyms.decode(buf, layout, extra) == syms


def test_place_relative_needs_the_tables_address():
    buf, _labels, syms = build("7.0")
    layout = kallsyms.locate(buf)  # address unknown: the order still identifies it
    assert layout.encoding == kallsyms.PLACE_RELATIVE
    with pytest.raises(FormatError, match="address"):
        kallsyms.decode(buf, layout)
    layout.address = RODATA
    assert kallsyms.decode(buf, layout) == syms


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(RELEASES)), st.integers(0, 40000), st.binary(min_size=1,
                                                                          max_size=32))
def test_corrupted_layouts_give_symbols_or_format_error(release, at, junk):
    data, labels, syms = build(release)
    buf = bytearray(data)
    at %= len(buf)
    buf[at:at + len(junk)] = junk
    try:
        kallsyms.decode(bytes(buf), kallsyms.locate(bytes(buf), address=RODATA),
                        anchors_of(syms))
    except FormatError:
        pass
    tables = kallsyms.named_tables(labels)
    if tables is None:
        return
    try:
        lo, hi = kallsyms.tables_span(tables, len(syms))
        part = bytes(buf[lo - RODATA:hi - RODATA])
        kallsyms.decode(part, kallsyms.layout_from_tables(part, lo, tables), anchors_of(syms))
    except FormatError:
        pass
