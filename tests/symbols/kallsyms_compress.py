"""The token table and compressed entries scripts/kallsyms makes for a list of symbols, by its
algorithm: every character a symbol uses keeps the token of its own code; the free codes
are filled from 255 down, each with the adjacent pair of tokens occurring most often over
all symbols (the lowest ``first | second << 8`` on a tie), replaced left to right in every
symbol before the next is chosen, until no pair is left (the codes below stay empty)."""

from __future__ import annotations

from collections import Counter


def _pairs(sym: bytes) -> Counter[int]:
    return Counter(sym[i] | sym[i + 1] << 8 for i in range(len(sym) - 1))


def compress(texts: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """``(tokens, entries)``: the 256 tokens expanded (empty for a code left unused) and
    each text's compressed bytes, as kallsyms_token_table and kallsyms_names hold them
    (without the length prefix)."""
    syms = [bytearray(t) for t in texts]
    table: list[bytes | None] = [None] * 256
    for s in syms:
        for c in s:
            table[c] = bytes([c])
    profit: Counter[int] = Counter()
    for s in syms:
        profit.update(_pairs(s))
    for code in range(255, -1, -1):
        if table[code] is not None:
            continue
        best = min(profit, key=lambda p: (-profit[p], p), default=None)
        if best is None or profit[best] <= 0:
            break
        first, second = best & 0xFF, best >> 8
        table[code] = bytes((first, second))  # a pair of codes, expanded below
        pair = bytes((first, second))
        for k, s in enumerate(syms):
            if pair not in s:
                continue
            profit.subtract(_pairs(s))
            syms[k] = s = bytearray(bytes(s).replace(pair, bytes((code,))))
            profit.update(_pairs(s))
        profit = +profit
    expanded: list[bytes] = [b""] * 256

    def expand(c: int) -> bytes:
        t = table[c]
        if t is None:
            return b""
        if len(t) == 1:
            return t
        return expand(t[0]) + expand(t[1])

    for c in range(256):
        expanded[c] = expand(c)
    return expanded, [bytes(s) for s in syms]


def entries(texts: list[bytes]) -> tuple[list[str], bytes]:
    """The tokens (latin-1 strings) and the kallsyms_names bytes of ``texts``, each entry
    its length (two bytes from 128) and its tokens."""
    tokens, packed = compress(texts)
    out = bytearray()
    for p in packed:
        n = len(p)
        out += bytes((n,)) if n < 0x80 else bytes((0x80 | (n & 0x7F), n >> 7))
        out += p
    return [t.decode("latin-1") for t in tokens], bytes(out)
