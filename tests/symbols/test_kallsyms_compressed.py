"""Names of a kallsyms table without a name index (kernels before 6.2 and 6.1.42) looked up
without decoding the table: compressed as scripts/kallsyms compressed every symbol, then
searched for. Tables made by that algorithm (tests/symbols/kallsyms_compress.py) give
every name at all its entries and nothing for names they lack; tables it did not make
are refused by the check (and the index is built instead); damaged ones give misses."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmfx_plugins.symbols import kallsyms
from tests.symbols.kallsyms_compress import entries

LETTERS = "TtDdBbRrWVA"
PARTS = ["init", "task", "_", "do", "sys", "ksys", "read", "write", "mem", "map", "page",
         "cpu", "per", "node", "online", "uts", "ns", "list", "lock", "spin", "irq", "tt",
         "ter", "ter_", "it_", "__", "x86", "64", "v2", "d__", "le_", "se", "_se", "ttt"]


def _names(seed: int, n: int = 1500) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        name = "".join(rng.choice(PARTS) for _ in range(rng.randint(1, 6)))
        out.append((rng.choice(LETTERS), name))
    out += [("T", "_stext"), ("D", "prb"), ("d", "x"), ("t", "x"), ("T", "a" * 150),
            ("b", "ttttttt"), ("B", "tttttttt")]
    return out


def _table(syms: list[tuple[str, str]]) -> kallsyms.CompressedNames:
    tokens, names = entries([(k + n).encode("latin-1") for k, n in syms])
    big: list[int] = []
    offsets = kallsyms.entry_offsets(names, len(syms), big)
    return kallsyms.CompressedNames(names, tokens, offsets,
                                    kallsyms.entry_letters(names, offsets, tokens, big))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_name_is_found_at_every_entry_and_absent_names_are_not(seed):
    syms = _names(seed)
    table = _table(syms)
    assert table.check() and table.key == "compressed"
    assert "".join(b.decode() for b in table.letters()) == "".join(sorted(set(LETTERS)))
    where: dict[str, list[int]] = {}
    for i, (_kind, name) in enumerate(syms):
        where.setdefault(name, []).append(i)
    for name, at in where.items():
        assert table.find_all(name) == at, name
        for miss in (name + "_", name[:-1], "q" + name):
            if miss not in where:
                assert table.find_all(miss) == [], miss
    assert table.find_all("x") == where["x"] and len(where["x"]) == 2  # two letters
    assert table.find("no such name") == -1 and table.find("") == -1
    assert table.find("\u0100") == -1


def test_the_tables_pairs_can_spell_a_token_more_than_one_way():
    """The merges of a real-sized table are often ambiguous (``d__`` = ``d_`` ``_`` or ``d``
    ``__``): every spelling is tried, and the check and lookups still hold."""
    tokens, _packed = entries([(k + n).encode() for k, n in _names(1)])
    made = kallsyms.token_merges(tokens)
    assert made is not None
    merges, chars = made
    assert any(len(pairs) > 1 for _code, pairs in merges)
    assert {ord(c) for c in "".join(LETTERS) + "_stext"} <= chars


def test_forms_past_the_limit_fall_back_to_an_index_made_of_every_name():
    merges = [(b"\x80", (b"ab", b"cd"))]  # both spellings in the text: both forms
    assert sorted(kallsyms.compressed_forms(b"abcd", merges, limit=4)) == [b"ab\x80",
                                                                           b"\x80cd"]
    assert kallsyms.compressed_forms(b"abcd", merges, limit=1) is None
    syms = _names(2)
    table = _table(syms)
    table._merges = [(code, pairs * 2) for code, pairs in table._merges]  # more spellings
    name = max((n for _k, n in syms if "aaaa" not in n), key=len)
    assert table.find_all(name) == [i for i, (_k, n) in enumerate(syms) if n == name]
    assert table._built is not None


def test_a_table_not_made_by_merging_pairs_is_refused():
    syms = _names(3)
    table = _table(syms)
    tokens = list(table.tokens)
    code = next(c for c in range(256) if len(tokens[c]) > 2)
    tokens[code] = "QZ" + tokens[code]  # no earlier tokens spell it
    assert kallsyms.token_merges(tokens) is None
    other = kallsyms.CompressedNames(table.names, tokens, table.offsets)
    assert not other.check() and other.find_all(syms[0][1]) == []


def test_a_table_compressed_otherwise_fails_the_check():
    """Tokens that merging could have made, entries not compressed that way (every pair
    replaced in one left-to-right pass): the check finds the difference."""
    syms = _names(1)
    tokens, names = entries([(k + n).encode() for k, n in syms])
    plain = bytearray()
    for k, n in syms:  # no compression at all: every character its own token
        text = (k + n).encode()
        plain += bytes((len(text),)) if len(text) < 0x80 else \
            bytes((0x80 | (len(text) & 0x7F), len(text) >> 7))
        plain += text
    offsets = kallsyms.entry_offsets(bytes(plain), len(syms))
    assert not kallsyms.CompressedNames(bytes(plain), tokens, offsets).check()


def test_markers_that_disagree_with_the_names_are_an_error():
    buf = bytes(64)
    layout = kallsyms.KallsymsLayout(0, 0, 0, 4, 0, 300, 0, None)
    with pytest.raises(kallsyms.FormatError, match="markers disagree"):
        kallsyms.check_markers(buf, layout, list(range(0, 600, 2)))
    kallsyms.check_markers((0).to_bytes(4, "little") + (512).to_bytes(4, "little"), layout,
                           list(range(0, 600, 2)))


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(0, 1 << 20), max_size=40),
       st.lists(st.text(max_size=4), min_size=256, max_size=256), st.text(max_size=12),
       st.text(max_size=6))
def test_a_damaged_table_gives_misses_not_errors(names, offsets, tokens, query, letters):
    table = kallsyms.CompressedNames(names, tokens, sorted(offsets), letters or None)
    table.check()
    got = table.find_all(query.encode("utf-8", "surrogatepass").decode("latin-1"))
    assert all(0 <= i < table.count for i in got)


def test_a_wide_tables_forms_are_joined_by_a_character_no_merge_touches():
    """With more pairs than free codes (as in every kernel), some character is in no
    merge: every letter's form is compressed in one text joined by it, and a name that
    has that character is compressed a letter at a time, never by decoding the table."""
    rng = random.Random(5)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
    syms = [(rng.choice(LETTERS), "".join(rng.choice(alphabet)
                                          for _ in range(rng.randint(3, 14))))
            for _ in range(3000)]
    syms += [("t", "a$b"), ("T", "c$d$e"), ("D", "c$d$e")]
    table = _table(syms)
    assert table.check() and table._separator == b"$"
    where: dict[str, list[int]] = {}
    for i, (_kind, name) in enumerate(syms):
        where.setdefault(name, []).append(i)
    for name, at in list(where.items())[::7] + [("a$b", where["a$b"]),
                                                 ("c$d$e", where["c$d$e"])]:
        assert table.find_all(name) == at, name
    assert table.find_all("a$c") == [] and table.find_all("zzzzzzzzzzzzzzzzz") == []
    assert table._built is None


def test_remembered_answers_are_used_only_while_they_fit_the_table():
    syms = _names(4, 300)
    table = _table(syms)
    first = {name: [i for i, (_k, n) in enumerate(syms) if n == name] for _k, name in syms}
    right, wrong = "_stext", "prb"
    table.remember({right: first[right], wrong: [first[right][0]], "gone": [],
                    "bad": ["1"], "far": [10 ** 9], 7: [1]})  # type: ignore[dict-item]
    assert table.find_all(right) == first[right] and right not in table.searched
    assert table.find_all("gone") == [] and "gone" not in table.searched
    assert table.find_all(wrong) == first[wrong] and table.searched[wrong] == first[wrong]
    assert table.find_all("bad") == [] and "bad" in table.searched
    assert table.find_all("far") == [] and "far" in table.searched
