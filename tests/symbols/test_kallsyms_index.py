"""kallsyms read through the kernel's own name index (kallsyms_seqs_of_names, 6.2+; 4 bytes
an entry in 6.1.42-6.1.59): found beside the tables VMCOREINFO names in every layout the
encoder of test_kallsyms_layouts emits, every name found at its first entry without
decoding the table, a clang LTO kernel's order (names up to their first '.') recognised,
an index that is not sorted refused, and a damaged one giving misses, never an error."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmfx.errors import FormatError
from kvmfx.symbols import SymbolTable
from kvmfx_plugins.symbols import kallsyms
from tests.symbols.test_kallsyms_layouts import (
    RELEASES,
    RODATA,
    TEXT,
    Encoder,
    Release,
    anchors_of,
    build,
)

INDEXED = sorted(r for r, rel in RELEASES.items() if rel.seqs)


def _named_part(buf: bytes, labels: dict[str, int], num: int
                ) -> tuple[bytes, kallsyms.KallsymsLayout]:
    """What image.kallsyms_named_by_vmcoreinfo reads: the tables VMCOREINFO names and the
    3 bytes a symbol after them."""
    tables = kallsyms.named_tables({k: v for k, v in labels.items()
                                    if k not in ("kallsyms_markers", "kallsyms_seqs_of_names")})
    assert tables is not None
    lo, hi = kallsyms.tables_span(tables, num)
    part = buf[lo - RODATA:hi - RODATA + 3 * num + 16]
    return part, kallsyms.layout_from_tables(part, lo, tables)


def _index(buf: bytes, layout: kallsyms.KallsymsLayout) -> kallsyms.IndexedNames:
    found = kallsyms.find_name_index(buf, layout)
    assert found is not None
    markers, seqs = found
    names = bytes(buf[layout.names:layout.token_table])
    offsets = kallsyms.entry_offsets(names, layout.num_syms)
    assert list(offsets[::256]) == markers
    return kallsyms.IndexedNames(names, kallsyms.token_strings(buf, layout), offsets, seqs)


@pytest.mark.parametrize("release", INDEXED)
def test_every_name_is_found_at_its_first_entry(release):
    buf, labels, syms = build(release, big=True)
    part, layout = _named_part(buf, labels, len(syms))
    index = _index(part, layout)
    assert index.check() and index.key == "full"
    first: dict[str, int] = {}
    for i, (name, _addr, _kind) in enumerate(syms):
        first.setdefault(name, i)
    for name, i in first.items():
        assert index.find(name) == i
    for absent in ("", "sym", "sym_00001_x", "zzz", "_text_", "\xff"):
        assert index.find(absent) == -1


@pytest.mark.parametrize("release", [r for r in sorted(RELEASES) if r not in INDEXED])
def test_tables_without_an_index_have_none(release):
    if release.startswith("5."):
        return  # VMCOREINFO names no tables before 6.0
    buf, labels, syms = build(release)
    part, layout = _named_part(buf, labels, len(syms))
    assert kallsyms.find_name_index(part, layout) is None


@pytest.mark.parametrize("release", ["6.2", "6.15", "7.0"])
def test_indexed_symbols_behave_as_the_decoded_table(release):
    buf, labels, syms = build(release)
    part, layout = _named_part(buf, labels, len(syms))
    index = _index(part, layout)
    assert index.check()
    layout.encoding = kallsyms.choose_encoding(part, layout, kallsyms.decode_names(
        part, layout), anchors_of(syms))
    addrs = kallsyms.decode_addresses(part, layout)
    table = SymbolTable("t", kallsyms.IndexedSymbols(index, addrs))
    decoded = SymbolTable.from_columns("d", [n for n, _, _ in syms], addrs,
                                       "".join(k for _, _, k in syms))
    assert table.lookup("_stext") == TEXT and table.symbols["init_uts_ns"].type == "D"
    assert "nothing" not in table.symbols and table.lookup("nothing") is None
    assert not table.is_empty() and len(table) == len(decoded)
    assert table.symbols.columns() == decoded.symbols.columns()
    assert table.count_types("D") == decoded.count_types("D") == 2
    hits, seen = table.symbols.sample_types("Tt")
    assert seen == (len(syms) + 255) // 256 and hits >= 1
    moved = table.slid(0x1000)
    assert moved.lookup("_stext") == TEXT + 0x1000 and moved.lookup("_text") == TEXT + 0x1000
    table.add("found_by_search", TEXT + 8, "d")
    assert table.lookup("found_by_search") == TEXT + 8 and len(table) == len(decoded) + 1
    del table.symbols["_stext"]
    assert "_stext" not in table.symbols and len(table) == len(decoded)


def _lto_build() -> tuple[bytes, dict[str, int], list[tuple[str, int, str]]]:
    """A clang LTO kernel's table: promoted statics named foo.llvm.<hash>, the index sorted
    by names up to their first '.', ties by address (scripts/kallsyms.c with --lto-clang)."""
    syms = [("_text", TEXT, "T"), ("_stext", TEXT, "T")]
    rng = random.Random(7)
    names = [f"fn_{i:04d}" for i in range(600)]
    for i, base in enumerate(names):
        suffix = f".llvm.{rng.randrange(10**12)}" if i % 3 == 0 else ""
        syms.append((base + suffix, TEXT + 0x40 + 16 * i, "t"))
        if i % 7 == 0:  # a name whose cleaned form repeats another's
            syms.append((base + ".cold", TEXT + 0x40 + 16 * i + 8, "t"))
    syms.append(("init_uts_ns", TEXT + 0x1000000, "D"))
    syms.sort(key=lambda s: s[1])

    class LtoEncoder(Encoder):
        def seqs(self, table: list[tuple[str, int, str]]) -> None:
            self.label("kallsyms_seqs_of_names")
            order = sorted(range(len(table)), key=lambda i: (
                table[i][0].partition(".")[0], table[i][1], i))
            for seq in order:
                self.out += seq.to_bytes(3, "big")

    enc = LtoEncoder(Release("lto", True, kallsyms.BASE_RELATIVE, 3, 8))
    return enc.build(syms), enc.labels, syms


@pytest.mark.parametrize("release", [r for r in sorted(RELEASES) if r not in INDEXED])
def test_a_table_without_an_index_gets_one_made_as_the_kernel_makes_it(release):
    buf, _labels, syms = build(release, big=True)
    layout = kallsyms.locate(buf, address=RODATA)
    names = bytes(buf[layout.names:layout.token_table])
    index = kallsyms.build_name_index(names, layout.num_syms,
                                      kallsyms.token_strings(buf, layout))
    assert index.check() and index.key == "full"
    by_name = sorted(range(len(syms)), key=lambda i: (syms[i][0].encode(), i))
    assert list(index.seqs) == by_name
    first: dict[str, int] = {}
    for i, (name, _addr, _kind) in enumerate(syms):
        first.setdefault(name, i)
    assert all(index.find(name) == i for name, i in first.items())
    assert index.find("not_there") == -1


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 40))
def test_an_index_made_of_damaged_entries_is_an_index_or_an_error(names, count):
    tokens = [chr(65 + i % 26) * (i % 3) for i in range(256)]
    try:
        index = kallsyms.build_name_index(names, count, tokens)
    except FormatError:
        return
    assert sorted(index.seqs) == list(range(count))


def test_a_clang_lto_kernels_order_is_recognised():
    buf, labels, syms = _lto_build()
    part, layout = _named_part(buf, labels, len(syms))
    index = _index(part, layout)
    assert index.check() and index.key == "lto"
    for i, (name, _a, _k) in enumerate(syms):
        assert index.find(name) == i, name
    assert index.find("fn_0003.llvm.1") == -1 and index.find("fn_0000") in (-1, 2)


def test_an_index_that_is_not_sorted_is_refused():
    buf, labels, syms = build("6.15")
    part, layout = _named_part(buf, labels, len(syms))
    index = _index(part, layout)
    shuffled = list(index.seqs)
    random.Random(1).shuffle(shuffled)
    bad = kallsyms.IndexedNames(index.names, index.tokens, index.offsets, shuffled)
    assert not bad.check()


def test_entry_offsets_past_the_table_are_an_error():
    buf, labels, syms = build("6.15")
    part, layout = _named_part(buf, labels, len(syms))
    names = bytes(part[layout.names:layout.token_table])
    with pytest.raises(FormatError, match="run past"):
        kallsyms.entry_offsets(names[:len(names) // 2], layout.num_syms)


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(0, 1 << 20), max_size=40),
       st.lists(st.integers(0, 1 << 20), max_size=40), st.text(max_size=12),
       st.sampled_from(["full", "lto", None]))
def test_a_damaged_index_gives_misses_not_errors(names, offsets, seqs, query, key):
    index = kallsyms.IndexedNames(names, [chr(65 + i % 26) * (i % 3) for i in range(256)],
                                  offsets, seqs, key)
    index.check()
    got = index.find(query.encode("utf-8", "surrogatepass").decode("latin-1"))
    assert got == -1 or 0 <= got < index.count
    symbols = kallsyms.IndexedSymbols(index, list(range(len(seqs))))
    assert symbols.get(query) is None or symbols.get(query).name == query
    symbols.sample_types("D")


@pytest.mark.parametrize("release", ["5.10", "6.1", "6.15", "7.0"])
def test_a_large_tables_encoding_is_told_by_a_sample_of_its_order(release):
    """Past 4,096 entries the structure check reads every 16th address: still exactly
    one encoding reads as sorted kernel addresses, and the decode is exact."""
    buf, _labels, syms = build(release, n=6000)  # type: ignore[arg-type]
    layout = kallsyms.locate(buf, address=RODATA)
    assert layout.num_syms == len(syms) > 4 * kallsyms.SORTED_SAMPLE
    assert kallsyms.plausible_encodings(buf, layout) == [RELEASES[release].encoding]
    assert kallsyms.decode(buf, layout, anchors_of(syms)) == syms
