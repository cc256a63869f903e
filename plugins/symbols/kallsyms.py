"""The kernel's own compressed symbol table (kallsyms), found and decoded in raw bytes.

Linux keeps every symbol in ``.rodata``: ``kallsyms_names`` (length-prefixed entries of token
indexes; a length byte with the high bit set is followed by a second one since 6.1),
``kallsyms_token_table`` (256 NUL-terminated strings) with ``kallsyms_token_index`` (u16
offsets), ``kallsyms_markers`` (u32 offset of every 256th entry), ``kallsyms_num_syms``,
``kallsyms_seqs_of_names`` (6.2+, and 6.1.42+ stable) and the addresses, in one of four
encodings (docs/symbols.md has the table of releases):

* ``absolute``: ``kallsyms_addresses``, one 64-bit address per symbol
  (CONFIG_KALLSYMS_BASE_RELATIVE=n, gone in 6.11);
* ``absolute-percpu``: 32-bit ``kallsyms_offsets`` below ``kallsyms_relative_base``
  (negative: base - 1 - offset) or absolute per-CPU offsets (x86_64 SMP before 6.15);
* ``base-relative``: unsigned 32-bit offsets above ``kallsyms_relative_base`` (other
  architectures; x86_64 6.15-6.19);
* ``place-relative``: signed 32-bit offsets from each entry's own address, no relative
  base (7.0+).

The tables are located by their structure, not by symbol names, so this works on a stripped
vmlinux and on a memory image; or from the addresses VMCOREINFO gives (6.0+). Everything
here is a pure function of a byte buffer (fuzzable); failures raise FormatError.
"""

from __future__ import annotations

import array
import bisect
import itertools
import operator
import re
import struct
from collections.abc import Callable, ItemsView, Iterator, Mapping, Sequence, ValuesView

from kvmfx.arrays import from_big, from_little
from kvmfx.errors import FormatError
from kvmfx.records import Record
from kvmfx.symbols import SortedSymbols, Symbol, _SearchedColumns, sorted_columns

#: The token table keeps the digits as single-character tokens, in order.
_DIGITS = b"0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00"
#: what a scan looks for first: the digits' tokens, in order, in the token table
TOKEN_DIGITS = _DIGITS
MAX_SYMS = 2_000_000
MAX_NAME = 1024
KERNEL_HALF = 0xFFFF800000000000
_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF

ABSOLUTE = "absolute"
ABSOLUTE_PERCPU = "absolute-percpu"
BASE_RELATIVE = "base-relative"
PLACE_RELATIVE = "place-relative"
ENCODINGS = (ABSOLUTE, ABSOLUTE_PERCPU, BASE_RELATIVE, PLACE_RELATIVE)


class KallsymsLayout(Record):
    """Where the tables are inside the buffer, and how the addresses are encoded.

    ``markers`` is None when the tables were named by VMCOREINFO (it does not name the
    markers, and decoding does not need them); ``relative_base`` is None for the absolute
    and place-relative encodings; ``address`` is the virtual address of the buffer's first
    byte when known (place-relative offsets need it).
    """

    __slots__ = ("token_table", "token_index", "markers", "marker_size", "names", "num_syms",
                 "offsets", "relative_base", "encoding", "entry_size", "address", "converted")
    _no_repr = _no_compare = frozenset({"converted"})

    token_table: int
    token_index: int
    markers: int | None
    marker_size: int
    names: int
    num_syms: int
    offsets: int
    relative_base: int | None
    encoding: str
    entry_size: int
    address: int | None
    #: whole-table conversions already made, by (encoding, base, place): the structure
    #: checks and the decode that follows them convert the same table (neither shown nor
    #: compared)
    converted: dict[tuple[str, int, int | None], list[int]]

    def __init__(self, token_table: int, token_index: int, markers: int | None,
                 marker_size: int, names: int, num_syms: int, offsets: int,
                 relative_base: int | None, encoding: str = ABSOLUTE_PERCPU,
                 entry_size: int = 4, address: int | None = None,
                 converted: dict[tuple[str, int, int | None], list[int]] | None = None,
                 ) -> None:
        self.token_table = token_table
        self.token_index = token_index
        self.markers = markers
        self.marker_size = marker_size
        self.names = names
        self.num_syms = num_syms
        self.offsets = offsets
        self.relative_base = relative_base
        self.encoding = encoding
        self.entry_size = entry_size
        self.address = address
        self.converted = {} if converted is None else converted

    @property
    def absolute_percpu(self) -> bool:
        """Negative offsets count down from the relative base (x86_64 before 6.15)."""
        return self.encoding == ABSOLUTE_PERCPU


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


def token_table_at(buf: bytes, digits_at: int) -> bool | None:
    """Whether the digits' tokens at ``digits_at`` are those of a token table followed by
    its index (:func:`locate`'s first check); None when ``buf`` ends too soon to tell."""
    try:
        _token_table(buf, digits_at)
    except FormatError:
        return None if len(buf) - digits_at < 256 * 64 + 1024 else False
    return True


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
    """kallsyms_markers: before the token table, with kallsyms_seqs_of_names in between
    from 6.2 to 6.3 (3 bytes per symbol; 4 bytes in 6.1.42-6.1.59). Entries are u32 since
    5.6 (u64 before, still accepted); the first is 0 and each next one 256 names further.

    u32 first (the kernels of today). A u64 array read as u32 gives at most two entries
    (its first word's high half, 0, then the second's low half): a run that short is
    only taken when no u64 array is there."""
    found = _markers_of_size(buf, table_start, 4)
    if found is not None and len(found[2]) > 2:
        return found
    wide = _markers_of_size(buf, table_start, 8)
    if wide is not None:
        return wide
    if found is not None:
        return found
    raise FormatError("kallsyms markers not found before the token table", offset=table_start)


def _markers_of_size(buf: bytes, table_start: int, size: int
                     ) -> tuple[int, int, list[int]] | None:
    """:func:`_read_markers` for entries of ``size`` bytes (None: no such array)."""
    lo = max(0, table_start - 4 * MAX_SYMS - 64)
    zero = bytes(size)
    hi = table_start
    while True:
        pos = buf.rfind(zero, lo, hi)
        if pos < 0:
            break
        # Inside a run of zero bytes only one aligned word can start the array: the one
        # whose next word reaches past the run (the second marker is at least 512).
        # Find the run's start in C and go on from there.
        run_end, run_start = pos + size, pos
        while run_start > lo:
            window = max(lo, run_start - 4096)
            kept = len(buf[window:run_start].rstrip(b"\0"))
            run_start = window + kept
            if kept:
                break
        hi = run_start
        pos = run_end - size - (run_end - size) % size
        if pos < run_start or pos + 2 * size <= run_end:
            continue
        values = _marker_run(buf, pos, size, table_start)
        if len(values) < 2:
            continue
        end = pos + size * len(values)
        gap = table_start - end
        nsyms_max = 256 * len(values)
        # directly before the table, or with a seqs_of_names array (3 or 4 bytes each)
        if gap < 16 or any(w * (nsyms_max - 256) <= gap <= w * nsyms_max + 16
                           for w in (3, 4)):
            return pos, size, values
    return None


def _skip_entries(buf: bytes, pos: int, count: int, limit: int) -> int:
    """Where ``count`` kallsyms_names entries from ``pos`` end (FormatError past ``limit``)."""
    size = len(buf)
    for _ in range(count):
        if pos >= limit:
            raise FormatError("kallsyms names run past their table", offset=pos)
        n = buf[pos]
        if n & 0x80:  # "big" symbols (Linux 6.1+): two-byte ULEB128 length
            if pos + 1 >= size:
                raise FormatError("kallsyms names run past the data", offset=pos)
            pos += 2 + ((n & 0x7F) | (buf[pos + 1] << 7))
        else:
            pos += 1 + n
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
                # the last block (from the last marker) ends the table: the blocks between
                # are checked against their markers once the entries are walked
                last = start + markers[-1]
                if last >= markers_at:
                    continue
                end = _skip_entries(buf, last, num - 256 * (nmark - 1), markers_at + 1)
            except (FormatError, IndexError):
                continue
            if 0 <= markers_at - end < 16:
                return start, num, at
    raise FormatError("kallsyms names not found before the markers", offset=markers_at)


def locate(buf: bytes, hint: int = 0, address: int | None = None) -> KallsymsLayout:
    """Find the kallsyms tables in ``buf`` (a vmlinux ``.rodata`` or a run of kernel memory)
    by their structure, in any of the layouts of docs/symbols.md.

    ``address`` is the virtual address of ``buf[0]`` when known: place-relative offsets
    (Linux 7.0+) only give addresses with it.
    """
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
        for layout in _candidates(buf, table_start, token_index, markers_at, marker_size,
                                  names, num, num_at, address):
            plausible = plausible_encodings(buf, layout)
            if plausible:
                layout.encoding = plausible[0]
                return layout


def _candidates(buf: bytes, table_start: int, token_index: int, markers_at: int,
                marker_size: int, names: int, num: int, num_at: int,
                address: int | None) -> list[KallsymsLayout]:
    """Where the address table can be, most specific first.

    Up to 6.3 the addresses come first: offsets (or absolute addresses), relative_base,
    num_syms, names... From 6.4 they follow the token index: ...token_index, offsets,
    relative_base, seqs_of_names; from 7.0 without relative_base, every label 4-aligned.
    """
    def make(offsets: int, base: int | None, entry: int) -> KallsymsLayout:
        return KallsymsLayout(table_start, token_index, markers_at, marker_size, names, num,
                              offsets, base, entry_size=entry, address=address)

    early = num_at - 8 - 4 * num
    late = token_index + 512
    late8 = late + (-late) % 8
    return [
        make(early - early % 8, num_at - 8, 4),
        make(early, num_at - 8, 4),
        make(num_at - 8 * num, None, 8),
        make(late8, late8 + ((4 * num + 7) // 8) * 8, 4),
        make(late8, None, 8),
        make(late, None, 4),
    ]


def _offsets(buf: bytes, layout: KallsymsLayout) -> tuple[int, ...]:
    """The raw address table: signed 32-bit offsets, or 64-bit absolute addresses."""
    n = layout.num_syms
    fmt = f"<{n}Q" if layout.entry_size == 8 else f"<{n}i"
    if layout.offsets < 0 or layout.offsets + layout.entry_size * n > len(buf):
        raise FormatError("kallsyms address table runs past the data", offset=layout.offsets)
    return struct.unpack_from(fmt, buf, layout.offsets)


def _base(buf: bytes, layout: KallsymsLayout) -> int:
    if layout.relative_base is None:
        raise FormatError("kallsyms layout has no relative base")
    if not 0 <= layout.relative_base <= len(buf) - 8:
        raise FormatError("kallsyms relative base outside the data",
                          offset=layout.relative_base)
    return int.from_bytes(buf[layout.relative_base:layout.relative_base + 8], "little")


def shape_encodings(layout: KallsymsLayout) -> tuple[str, ...]:
    """The encodings a table of this shape can hold (64-bit entries, a relative base or
    neither)."""
    if layout.entry_size == 8:
        return (ABSOLUTE,)
    if layout.relative_base is not None:
        return (ABSOLUTE_PERCPU, BASE_RELATIVE)
    return (PLACE_RELATIVE,)


def _convert(offs: tuple[int, ...], encoding: str, base: int, place: int | None,
             indexes: range | list[int]) -> list[int]:
    """Addresses of the entries at ``indexes`` under ``encoding`` (kernel/kallsyms.c's
    kallsyms_sym_address() of each release)."""
    whole = isinstance(indexes, range) and indexes == range(len(offs))
    picked = offs if whole else [offs[i] for i in indexes]
    if encoding == ABSOLUTE:
        return list(picked)
    if encoding == BASE_RELATIVE:
        unsigned = array.array("I", array.array("i", picked).tobytes())  # o & 0xffffffff
        return _in_u64(list(map(base.__add__, unsigned)))
    if encoding == ABSOLUTE_PERCPU:
        # relative entries count down from the base; absolute ones (o >= 0: per-CPU
        # offsets, a few at the start of the table) are patched after, in C either way
        out = _in_u64(list(map(operator.sub, itertools.repeat(base - 1), picked)))
        for i in itertools.compress(itertools.count(), map((0).__le__, picked)):
            out[i] = picked[i]
        return out
    if encoding == PLACE_RELATIVE:
        if place is None:
            raise FormatError("place-relative kallsyms offsets need the table's address")
        if whole:  # one pass in C
            return _in_u64(list(map(operator.add, picked,
                                    range(place, place + 4 * len(offs), 4))))
        return [(place + 4 * i + o) & _U64 for i, o in zip(indexes, picked, strict=True)]
    raise FormatError(f"unknown kallsyms encoding {encoding!r}")


def _whole(layout: KallsymsLayout, offs: tuple[int, ...], encoding: str, base: int
           ) -> list[int]:
    """Every entry's address under ``encoding``, converted once per layout."""
    key = (encoding, base, _place(layout))
    got = layout.converted.get(key)
    if got is None:
        got = layout.converted[key] = _convert(offs, encoding, base, key[2],
                                               range(layout.num_syms))
    return got


def _in_u64(values: list[int]) -> list[int]:
    """``values`` wrapped to 64 bits, as the kernel's unsigned arithmetic does (checked
    in C; a Python pass only when some value is out of range)."""
    if values and (min(values) < 0 or max(values) > _U64):
        return [v & _U64 for v in values]
    return values


def decode_addresses(buf: bytes, layout: KallsymsLayout,
                     encoding: str | None = None) -> list[int]:
    """Every symbol's address, in table order, under ``encoding`` (the layout's own by
    default)."""
    encoding = encoding or layout.encoding
    offs = _offsets(buf, layout)
    base = _base(buf, layout) if encoding in (BASE_RELATIVE, ABSOLUTE_PERCPU) else 0
    return list(_whole(layout, offs, encoding, base))


def _place(layout: KallsymsLayout) -> int | None:
    return None if layout.address is None else layout.address + layout.offsets


def _sorted(values: list[int]) -> bool:
    return values == sorted(values)  # timsort finds a sorted list in one pass


#: tables longer than 4 * SORTED_SAMPLE entries are checked for order on every
#: SORTED_SAMPLE_STEP-th entry (and the last), not on all
SORTED_SAMPLE, SORTED_SAMPLE_STEP = 1024, 16


def plausible_encodings(buf: bytes, layout: KallsymsLayout,
                        only: Sequence[str] | None = None) -> list[str]:
    """The encodings under which this table reads as kallsyms keeps it: sorted addresses
    ending in the kernel half, and the relative base where scripts/kallsyms.c puts it
    (the first symbol's address; the first non-per-CPU one's with absolute per-cpu)."""
    try:
        offs = _offsets(buf, layout)
    except FormatError:
        return []
    out = []
    for enc in shape_encodings(layout):
        if only is not None and enc not in only:
            continue
        try:
            base = _base(buf, layout) if layout.relative_base is not None else 0
        except FormatError:
            continue
        if enc in (BASE_RELATIVE, ABSOLUTE_PERCPU) and base < KERNEL_HALF:
            continue
        if enc == BASE_RELATIVE and offs[0] != 0:
            continue
        if enc == ABSOLUTE_PERCPU and next((o for o in offs if o < 0), 0) != -1:
            continue
        if enc == PLACE_RELATIVE and layout.address is None:
            # no address: only the order can be checked (place + offset increases)
            if _sorted([4 * i + o for i, o in enumerate(offs)]):
                out.append(enc)
            continue
        n = len(offs)
        if n <= 4 * SORTED_SAMPLE:
            addrs = _whole(layout, offs, enc, base)
        else:  # every 16th entry and the last: a table read wrongly is unsorted throughout
            addrs = _convert(offs, enc, base, _place(layout),
                             [*range(0, n - 1, SORTED_SAMPLE_STEP), n - 1])
        if addrs and addrs[-1] >= KERNEL_HALF and _sorted(addrs):
            out.append(enc)
    return out


_AFTER_SEPARATOR = re.compile("\u0100(.)", re.DOTALL)
_SEPARATOR_AND_LETTER = re.compile("\u0100.", re.DOTALL)


def decode_name_columns(buf: bytes, layout: KallsymsLayout) -> tuple[list[str], str]:
    """Every symbol's name, and its type letter (one character each), in table order."""
    tokens = token_strings(buf, layout)
    start = layout.names
    # the names table ends before the token table in every layout: decode up to it once
    limit = layout.token_table if layout.token_table > start else len(buf)
    return expand_entries(buf, start, limit, layout.num_syms, tokens)


def expand_entries(buf: bytes, start: int, limit: int, count: int, tokens: Sequence[str]
                   ) -> tuple[list[str], str]:
    """The names and type letters of ``count`` kallsyms_names entries from ``start``
    (ending by ``limit``), each token index expanded to its token (latin-1 strings)."""
    # Expand every name in C: the entries' token bytes, joined by a character no token
    # index can be (U+0100), go through one str.translate whose table maps each token
    # index to its token; the type letter is each name's first character.
    pos = start
    size = len(buf)
    region = bytes(buf[start:limit]).decode("latin-1")
    pieces: list[str] = []
    add = pieces.append
    for _ in range(count):
        if pos >= size:
            raise FormatError("kallsyms names run past the data", offset=pos)
        n = buf[pos]
        if n & 0x80:  # "big" symbols (Linux 6.1+): two-byte ULEB128 length
            if pos + 1 >= size:
                raise FormatError("kallsyms names run past the data", offset=pos)
            n = (n & 0x7F) | (buf[pos + 1] << 7)
            pos += 2
        else:
            pos += 1
        if not n:
            raise FormatError(f"kallsyms entry {len(pieces)} is empty", offset=pos)
        if pos + n > limit:
            raise FormatError("kallsyms names run past their table", offset=pos)
        add(region[pos - start:pos - start + n])
        pos += n
    del region
    joined = "\u0100".join(pieces).translate(dict(enumerate(tokens)))
    del pieces
    ascii_only = joined.isascii()
    # each entry is its type letter and its name: split off both in C (an entry whose
    # tokens expand to nothing leaves two separators together)
    if "\u0100\u0100" in joined or joined[:1] == "\u0100" or joined[-1:] == "\u0100":
        full = joined.split("\u0100")
        raise FormatError(f"kallsyms entry {full.index('')} is empty", offset=start)
    kinds = joined[:1] + "".join(_AFTER_SEPARATOR.findall(joined))
    names = _SEPARATOR_AND_LETTER.split(joined)
    del joined
    names[0] = names[0][1:]
    if not ascii_only:  # tokens hold UTF-8 bytes: decode the names that have any
        names = [n if n.isascii() else n.encode("latin-1").decode("utf-8", "replace")
                 for n in names]
    return names, kinds


def decode_names(buf: bytes, layout: KallsymsLayout) -> list[tuple[str, str]]:
    """Every symbol's ``(name, type letter)``, in table order."""
    names, kinds = decode_name_columns(buf, layout)
    return list(zip(names, kinds, strict=True))


def choose_encoding(buf: bytes, layout: KallsymsLayout,
                    names: Sequence[str] | Sequence[tuple[str, str]],
                    anchors: Mapping[str, int] | None = None) -> str:
    """The encoding of the address table: the one whose addresses agree with every anchor
    (symbol addresses the kernel reports itself, e.g. VMCOREINFO's SYMBOL()s) found in the
    table; by structure alone when no anchor is in the table.

    FormatError when anchors are in the table and no encoding gives all of them.
    """
    where: dict[str, list[int]] = {}
    plain: Sequence[str] = [n if isinstance(n, str) else n[0] for n in names] if \
        names and not isinstance(names[0], str) else names  # type: ignore[assignment]
    if anchors:  # every entry of each anchor's name, found in one pass in C
        wanted_names = set(anchors)
        for at in itertools.compress(itertools.count(), map(wanted_names.__contains__,
                                                               plain)):
            where.setdefault(plain[at], []).append(at)
    return choose_encoding_where(buf, layout, where, anchors or {})


def choose_encoding_where(buf: bytes, layout: KallsymsLayout, where: Mapping[str, list[int]],
                          anchors: Mapping[str, int]) -> str:
    """:func:`choose_encoding` given the table indexes of each anchor's name (``where``)."""
    candidates = shape_encodings(layout)
    if not where:
        plausible = plausible_encodings(buf, layout)
        if not plausible:
            raise FormatError("kallsyms address table gives no sorted kernel addresses under "
                              f"any encoding ({', '.join(candidates)})",
                              offset=layout.offsets)
        return layout.encoding if layout.encoding in plausible else plausible[0]
    offs = _offsets(buf, layout)
    wanted = sorted({i for ix in where.values() for i in ix})
    scores: list[tuple[int, str]] = []
    disagreements: list[str] = []
    for enc in candidates:
        try:
            base = _base(buf, layout) if enc in (BASE_RELATIVE, ABSOLUTE_PERCPU) else 0
            got = dict(zip(wanted, _convert(offs, enc, base, _place(layout), wanted),
                           strict=True))
        except FormatError as exc:
            disagreements.append(f"{enc}: {exc.message}")
            continue
        bad = [n for n, ix in where.items() if all(got[i] != anchors[n] for i in ix)]
        if not bad:
            scores.append((len(where), enc))
            continue
        n = sorted(bad)[0]
        disagreements.append(f"{enc} decodes {n} at {got[where[n][0]]:#x}, the kernel says "
                             f"{anchors[n]:#x}")
    if not scores:
        raise FormatError("kallsyms tables disagree with the kernel's own symbol addresses "
                          "under every encoding: " + "; ".join(disagreements),
                          offset=layout.offsets)
    best = max(s for s, _ in scores)
    agreeing = [enc for s, enc in scores if s == best]
    if len(agreeing) > 1:
        plausible = plausible_encodings(buf, layout, agreeing)
        if plausible:
            return plausible[0]
    return agreeing[0]


def decode(buf: bytes, layout: KallsymsLayout,
           anchors: Mapping[str, int] | None = None) -> list[tuple[str, int, str]]:
    """Every symbol as ``(name, address, type letter)``, in table order.

    The address encoding is chosen by :func:`choose_encoding` (anchors first, structure
    otherwise); the layout is updated with the one chosen.
    """
    return list(zip(*decode_columns(buf, layout, anchors), strict=True))


def decode_columns(buf: bytes, layout: KallsymsLayout,
                   anchors: Mapping[str, int] | None = None) -> tuple[list[str], list[int], str]:
    """:func:`decode` as columns: names, addresses and type letters."""
    names, kinds = decode_name_columns(buf, layout)
    layout.encoding = choose_encoding(buf, layout, names, anchors)
    return names, decode_addresses(buf, layout), kinds


# -- tables named by VMCOREINFO (Linux 6.0+) ---------------------------------------------

#: VMCOREINFO SYMBOL()s that locate the tables (kernel/crash_core.c 6.0, vmcore_info.c 6.9+)
VMCOREINFO_TABLES = ("kallsyms_names", "kallsyms_num_syms", "kallsyms_token_table",
                     "kallsyms_token_index")
#: most the tables span in memory (Debian's 6.1: 2.2 MiB for 88,582 symbols)
MAX_TABLES_SPAN = 64 << 20


def named_tables(symbols: Mapping[str, int]) -> dict[str, int] | None:
    """The kallsyms table addresses among VMCOREINFO's SYMBOL()s, or None when they are
    not all there (kernels before 6.0 name none)."""
    found = {k: v for k, v in symbols.items() if k.startswith("kallsyms_")}
    if not all(k in found for k in VMCOREINFO_TABLES):
        return None
    if "kallsyms_offsets" not in found and "kallsyms_addresses" not in found:
        return None
    return found


def tables_span(tables: Mapping[str, int], num_syms: int) -> tuple[int, int]:
    """The address range holding every named table (read once, then decoded from bytes).

    kallsyms_names always precedes kallsyms_token_table (every layout since 2.6), so the
    names' unknown length is covered.
    """
    if not 0 < num_syms <= MAX_SYMS:
        raise FormatError(f"kallsyms_num_syms is {num_syms}")
    names, table = tables["kallsyms_names"], tables["kallsyms_token_table"]
    if not names < table:
        raise FormatError("kallsyms_names does not precede kallsyms_token_table",
                          address=names)
    ends = [names, table, tables["kallsyms_token_index"] + 512,
            tables["kallsyms_num_syms"] + 4]
    starts = list(ends) + [tables["kallsyms_token_index"], tables["kallsyms_num_syms"]]
    if "kallsyms_addresses" in tables:
        starts.append(tables["kallsyms_addresses"])
        ends.append(tables["kallsyms_addresses"] + 8 * num_syms)
    else:
        starts.append(tables["kallsyms_offsets"])
        ends.append(tables["kallsyms_offsets"] + 4 * num_syms)
    if "kallsyms_relative_base" in tables:
        starts.append(tables["kallsyms_relative_base"])
        ends.append(tables["kallsyms_relative_base"] + 8)
    lo, hi = min(starts), max(ends)
    if hi - lo > MAX_TABLES_SPAN:
        raise FormatError(f"kallsyms tables spread over {hi - lo:#x} bytes", address=lo)
    return lo, hi


def layout_from_tables(buf: bytes, address: int, tables: Mapping[str, int], *,
                       guess_encoding: bool = True, check_names: bool = True
                       ) -> KallsymsLayout:
    """The layout of tables whose addresses VMCOREINFO gives, ``buf`` read from ``address``
    (see :func:`tables_span`); checked as :func:`locate` checks what it finds. The address
    encoding is the first plausible one, or (``guess_encoding`` false, for a caller that
    runs :func:`choose_encoding` next) the first this table's shape can hold."""
    def at(name: str, size: int) -> int:
        off = tables[name] - address
        if not 0 <= off <= len(buf) - size:
            raise FormatError(f"{name} outside the tables read", address=tables[name])
        return off

    num = int.from_bytes(buf[at("kallsyms_num_syms", 4):][:4], "little")
    if not 0 < num <= MAX_SYMS:
        raise FormatError(f"kallsyms_num_syms is {num}", address=tables["kallsyms_num_syms"])
    token_table = at("kallsyms_token_table", 2)
    token_index = at("kallsyms_token_index", 512)
    idx = struct.unpack_from("<256H", buf, token_index)
    if idx[0] != 0 or not _sorted_strict(idx) or token_table + idx[-1] >= len(buf) or any(
            buf[token_table + i - 1] != 0 for i in idx[1:]):
        raise FormatError("kallsyms_token_index does not index a token table",
                          address=tables["kallsyms_token_index"])
    names = at("kallsyms_names", 1)
    try:  # (a caller that walks the names itself next, as every decode does, skips this)
        if check_names:
            _skip_entries(buf, names, num, token_table)
    except IndexError:
        raise FormatError("kallsyms names run past the data", offset=names) from None
    if "kallsyms_addresses" in tables:
        offsets, base, entry = at("kallsyms_addresses", 8 * num), None, 8
    else:
        offsets, entry = at("kallsyms_offsets", 4 * num), 4
        base = at("kallsyms_relative_base", 8) if "kallsyms_relative_base" in tables else None
    layout = KallsymsLayout(token_table, token_index, None, 0, names, num, offsets, base,
                            entry_size=entry, address=address)
    plausible = plausible_encodings(buf, layout) if guess_encoding else []
    layout.encoding = plausible[0] if plausible else shape_encodings(layout)[0]
    return layout


def _sorted_strict(values: tuple[int, ...]) -> bool:
    return all(a < b for a, b in zip(values, values[1:], strict=False))


# -- the kernel's own name index (kallsyms_seqs_of_names, Linux 6.2+) ---------------------

#: names compared by the name-sorted index in the positions a lookup checks before it is
#: trusted (evenly spread; each costs one decoded block of 256 entries)
INDEX_CHECKS = 64


def _aligned_up(pos: int, address: int | None, align: int) -> int:
    base = address or 0
    return pos + (-(base + pos)) % align


def _aligned_down(pos: int, address: int | None, align: int) -> int:
    base = address or 0
    return pos - (base + pos) % align


def _seqs_at(buf: bytes, pos: int, num: int, width: int = 3) -> array.array | None:
    """The table indexes at ``pos`` (3-byte big-endian; ``width`` 4: little-endian u32,
    6.1.42-6.1.59) as u32, when they are a permutation of the table (in C: byte slices,
    no Python code per entry)."""
    if pos < 0 or pos + width * num > len(buf) or not num:
        return None
    head = buf[pos:pos + width * min(num, 64)]  # a wrong place fails on its first entries
    big = width == 3
    if any(int.from_bytes(head[i:i + width], "big" if big else "little") >= num
           for i in range(0, len(head), width)):
        return None
    raw = buf[pos:pos + width * num]
    if width == 3:
        wide = bytearray(4 * num)
        wide[1::4], wide[2::4], wide[3::4] = raw[0::3], raw[1::3], raw[2::3]
        seqs = from_big("I", bytes(wide))
    else:
        seqs = from_little("I", bytes(raw))
    if max(seqs) >= num or len(set(seqs)) != num:
        return None
    return seqs


def _markers_at(buf: bytes, pos: int, num: int, names: int, names_end: int
                ) -> list[int] | None:
    """kallsyms_markers at ``pos`` (u32, one per 256 entries), when they fit the names:
    0 first, increasing, inside the table, and the first block's 256 entries end where
    the second marker says."""
    count = (num + 255) // 256
    if pos < 0 or pos + 4 * count > len(buf):
        return None
    markers = list(struct.unpack_from(f"<{count}I", buf, pos))
    if markers[0] != 0 or not _sorted_strict(tuple(markers)) or \
            names + markers[-1] >= names_end:
        return None
    if count > 1:
        try:
            if _skip_entries(buf, names, 256, names_end) - names != markers[1]:
                return None
        except (FormatError, IndexError):
            return None
    return markers


def entry_offsets(names: bytes, count: int, big: list[int] | None = None) -> array.array:
    """Where each of ``count`` kallsyms_names entries starts in ``names`` (the table
    alone, from its first entry); FormatError when they run past it. The entries with a
    two-byte length are added to ``big`` when it is given."""
    out = [0] * count
    pos = 0
    if big is None:
        big = []
    try:
        for k in range(count):
            out[k] = pos
            n = names[pos]
            if n < 0x80:
                pos += n + 1
            else:  # "big" symbols (Linux 6.1+): two-byte ULEB128 length
                big.append(pos)
                pos += ((n & 0x7F) | (names[pos + 1] << 7)) + 2
    except IndexError:
        raise FormatError("kallsyms names run past their table", offset=pos) from None
    if pos > len(names):
        raise FormatError("kallsyms names run past their table", offset=pos)
    return array.array("I", out)


def find_name_index(buf: bytes, layout: KallsymsLayout
                    ) -> tuple[list[int], array.array] | None:
    """kallsyms_markers and kallsyms_seqs_of_names (the table's indexes sorted by name,
    Linux 6.2+) in ``buf``, or None when the kernel has no such index there.

    From 6.2 to 6.3 the index lies between the markers and the token table; from 6.4 it
    is the last table, after the address offsets (and the relative base, before 7.0).
    Labels are 8-aligned (4-aligned from 7.0): each candidate is tried under both.
    """
    num, addr = layout.num_syms, layout.address
    names_end = layout.token_table
    after_addresses = layout.offsets + layout.entry_size * num
    if layout.relative_base is not None:
        after_addresses = max(after_addresses, layout.relative_base + 8)
    count = (num + 255) // 256
    for align in (8, 4):
        # 6.4+: markers right before the token table, the index after the addresses
        seqs = _seqs_at(buf, _aligned_up(after_addresses, addr, align), num)
        if seqs is not None:
            markers = _markers_at(buf, _aligned_down(names_end - 4 * count, addr, align),
                                  num, layout.names, names_end)
            if markers is not None:
                return markers, seqs
        # 6.2-6.3 (and 6.1.42+, 4 bytes an entry until 6.1.59): names, markers, index,
        # token table
        for width in (3, 4):
            seqs_pos = _aligned_down(names_end - width * num, addr, align)
            seqs = _seqs_at(buf, seqs_pos, num, width)
            if seqs is not None:
                markers = _markers_at(buf, _aligned_down(seqs_pos - 4 * count, addr, align),
                                      num, layout.names, seqs_pos)
                if markers is not None:
                    return markers, seqs
    return None


def token_strings(buf: bytes, layout: KallsymsLayout) -> list[str]:
    """The 256 tokens, as latin-1 strings (a token's bytes, one character each)."""
    if not (0 <= layout.token_index <= len(buf) - 512):
        raise FormatError("kallsyms token index outside the data", offset=layout.token_index)
    tokens = []
    for off in struct.unpack_from("<256H", buf, layout.token_index):
        p = layout.token_table + off
        end = buf.find(b"\0", p, p + 256)
        if end < 0:
            raise FormatError("kallsyms token without terminator", offset=p)
        tokens.append(bytes(buf[p:end]).decode("latin-1"))
    return tokens


#: most entries of one name a lookup goes through (a hostile index cannot make it scan
#: the whole table)
MAX_RUN = 65536


def _lto_key(name: str) -> str:
    """The name as kallsyms sorts it in a clang LTO kernel (up to the first '.')."""
    return name.partition(".")[0]


def _full_key(name: str) -> str:
    return name


class IndexedNames:
    """The names of a kallsyms table, looked up the kernel's way (kallsyms_lookup_name
    since 6.2): binary search over kallsyms_seqs_of_names, expanding only the entries it
    compares, so no name is decoded until one is asked for.

    Pure: built from the names table's bytes (entries from offset 0), the 256 tokens,
    where each entry starts (:func:`entry_offsets`) and the index; nothing is read past
    ``names`` (a hostile table gives misses, never an exception). :meth:`check` must pass
    before lookups are trusted."""

    def __init__(self, names: bytes, tokens: Sequence[str], offsets: Sequence[int],
                 seqs: Sequence[int], key: str | None = None) -> None:
        self.names, self.tokens, self.offsets, self.seqs = names, list(tokens), offsets, seqs
        self.count = min(len(seqs), len(offsets))
        self._cache: dict[int, str] = {}
        #: how the index sorts names: "full" (strcmp of whole names) or "lto" (names up
        #: to their first '.', a clang LTO kernel's); set by :meth:`check`
        self.key = key
        self._key = _lto_key if key == "lto" else _full_key

    # -- entries ------------------------------------------------------------------------
    def _span(self, i: int) -> tuple[int, int]:
        """Where entry ``i``'s token bytes start and end."""
        names, size = self.names, len(self.names)
        pos = self.offsets[i]
        if pos >= size:
            return size, size
        n = names[pos]
        if n & 0x80:
            n = (n & 0x7F) | (names[pos + 1] << 7) if pos + 1 < size else 0
            pos += 1
        return pos + 1, min(size, pos + 1 + n)

    def entry(self, i: int) -> str:
        """Entry ``i`` expanded: its type letter, then its name (latin-1: one character a
        byte)."""
        got = self._cache.get(i)
        if got is None:
            lo, hi = self._span(i)
            got = "".join(map(self.tokens.__getitem__, self.names[lo:hi]))
            if len(self._cache) < 100_000:
                self._cache[i] = got
        return got

    def letter(self, i: int) -> str:
        """Entry ``i``'s type letter (the first character of its first token)."""
        lo, hi = self._span(i)
        return self.tokens[self.names[lo]][:1] or "?" if lo < hi else "?"

    # -- lookups ------------------------------------------------------------------------
    def _sorted_name(self, p: int) -> str:
        i = self.seqs[p]
        return self.entry(i)[1:] if 0 <= i < self.count else ""

    def find_all(self, name: str) -> list[int]:
        """Every table index whose name is ``name`` (latin-1, as :meth:`entry`), in
        table order."""
        key, target = self._key, self._key(name)
        lo, hi = 0, self.count
        while lo < hi:
            mid = (lo + hi) // 2
            if key(self._sorted_name(mid)) < target:
                lo = mid + 1
            else:
                hi = mid
        found = []
        for p in range(lo, min(self.count, lo + MAX_RUN)):
            got = self._sorted_name(p)
            if key(got) != target:
                break
            if got == name and 0 <= self.seqs[p] < self.count:
                found.append(self.seqs[p])
        return sorted(found)

    def find(self, name: str) -> int:
        """The first table index whose name is ``name``, or -1."""
        found = self.find_all(name)
        return found[0] if found else -1

    def check(self, samples: int = INDEX_CHECKS) -> bool:
        """Whether the index reads as sorted by name: ``samples`` positions spread over it
        and their neighbours in order, by whole names or (a clang LTO kernel's) by names
        up to their first '.'. Chooses the comparison lookups use."""
        if self.count < 2:
            return False
        step = max(1, (self.count - 1) // samples)
        picks = sorted({min(p, self.count - 2) for p in range(0, self.count - 1, step)})
        names = [(self._sorted_name(p), self._sorted_name(p + 1)) for p in picks]
        flat = [n for pair in names for n in pair]
        if any(not n for n in flat):
            return False
        lto = any(".llvm." in n for n in flat)
        for key in ((_lto_key, _full_key) if lto else (_full_key, _lto_key)):
            keys = [key(n) for n in flat]
            if keys == sorted(keys):
                self._key = key
                self.key = "lto" if key is _lto_key else "full"
                return True
        return False

    def expand_all(self) -> tuple[list[str], str]:
        """Every name and type letter in table order (as :func:`decode_name_columns`)."""
        return expand_entries(self.names, 0, len(self.names), self.count, self.tokens)


#: most spellings of one name a lookup in a table without an index tries (pairs of
#: tokens that spell the same string multiply them; past this the index is built)
MAX_FORMS = 64


def token_merges(tokens: Sequence[str]) -> tuple[list[tuple[bytes, tuple[bytes, ...]]],
                                                  frozenset[int]] | None:
    """How scripts/kallsyms made a token table, or None when it was not made that way.

    scripts/kallsyms gives each character some symbol uses the token of its own code, then
    fills the free codes from 255 down, each with the pair of existing tokens that occurs
    most often, replacing that pair in every symbol (left to right) before choosing the
    next. The result: the merges in the order they were made, each its code (one byte) and
    every pair of tokens existing by then that spells it (one, or more when the table
    alone cannot tell which), and the codes that are characters."""
    if len(tokens) != 256:
        return None
    chars = frozenset(i for i, t in enumerate(tokens) if t == chr(i))
    spelled: dict[str, list[int]] = {chr(i): [i] for i in chars}
    merges = []
    for code in range(255, -1, -1):
        token = tokens[code]
        if code in chars or not token:
            continue
        if len(token) < 2:
            return None  # a character in another character's code
        pairs = tuple(bytes((a, b)) for cut in range(1, len(token))
                      for a in spelled.get(token[:cut], ()) for b in spelled.get(token[cut:], ()))
        if not pairs:
            return None
        merges.append((bytes((code,)), pairs))
        spelled.setdefault(token, []).append(code)
    return merges, chars


def compressed_forms(text: bytes, merges: Sequence[tuple[bytes, tuple[bytes, ...]]],
                     limit: int = MAX_FORMS) -> list[bytes] | None:
    """``text`` (a type letter and a name, one byte a character) compressed as
    scripts/kallsyms compressed it, by :func:`token_merges`'s merges: every form it can
    take (one unless the table is ambiguous), or None past ``limit`` of them."""
    work: list[tuple[bytes, int]] = [(text, 0)]
    out: list[bytes] = []
    while work:
        data, start = work.pop()
        for k in range(start, len(merges)):
            code, pairs = merges[k]
            if len(pairs) == 1:
                data = data.replace(pairs[0], code)
                continue
            hits = [p for p in pairs if p in data]
            if len(hits) > 1:
                work.extend((data.replace(p, code), k + 1) for p in hits[1:])
                if len(work) + len(out) >= limit:
                    return None
            if hits:
                data = data.replace(hits[0], code)
        out.append(data)
    return out


def _length_prefix(n: int) -> bytes:
    """An entry's length as kallsyms_names writes it (two bytes from 128, Linux 6.1+)."""
    return bytes((n,)) if n < 0x80 else bytes((0x80 | (n & 0x7F), n >> 7))


class CompressedNames(IndexedNames):
    """The names of a kallsyms table without a name index (before 6.2, 6.1.42), looked up
    without decoding the table: the name is compressed as scripts/kallsyms compressed
    every symbol (:func:`token_merges`), once for each type letter the table has, and
    those entries searched for in the compressed names (a byte search, then the match
    checked to be an entry, and expanded). :meth:`check` compresses entries spread over
    the table and must get their bytes back before a miss is trusted to mean absent.

    Pure, as :class:`IndexedNames`: a hostile table gives misses, never an exception."""

    def __init__(self, names: bytes, tokens: Sequence[str], offsets: Sequence[int],
                 letters: str | None = None) -> None:
        super().__init__(names, tokens, offsets, (), "compressed")
        self.count = len(offsets)
        made = token_merges(self.tokens)
        self._merges, self._chars = made if made is not None else ([], frozenset())
        self._usable = made is not None
        self._letters = None if letters is None else sorted(
            {c.encode("latin-1") for c in letters if ord(c) < 256})
        self._built: IndexedNames | None = None
        #: a character no merge touches: joins the forms of every letter into one text
        free = sorted(self._chars - {b for _code, pairs in self._merges for p in pairs
                                    for b in p})
        self._separator = bytes((free[0],)) if free else b""
        #: names searched for on this open -> what was found (table indexes, in order)
        self.searched: dict[str, list[int]] = {}
        self._known: dict[str, list[int]] = {}

    def remember(self, known: Mapping[str, Sequence[int]]) -> None:
        """Take what earlier opens found (``name -> table indexes``, as :attr:`searched`)
        as answers without searching: an index is used only while it is an entry that
        expands to the name, and a name answered wrongly is searched for again."""
        for name, found in known.items():
            if isinstance(name, str) and isinstance(found, (list, tuple)) and all(
                    type(i) is int and 0 <= i < self.count for i in found):
                self._known[name] = list(found)

    def letters(self) -> list[bytes]:
        """The type letters the table's entries have (the first character of each first
        token), each one byte: as given, else found (:func:`entry_letters`)."""
        if self._letters is None:
            self._letters = [c.encode("latin-1") for c in
                             entry_letters(self.names, self.offsets, self.tokens)]
        return self._letters

    def _forms(self, raw: bytes) -> set[bytes] | None:
        """Every entry (length prefix and tokens) that spells ``raw`` under one of the
        table's type letters; None when there are too many to try."""
        letters, sep = self.letters(), self._separator
        if sep in raw:
            sep = b""
        texts = [sep.join(letter + raw for letter in letters)] if sep else \
            [letter + raw for letter in letters]
        out: set[bytes] = set()
        for text in texts:
            forms = compressed_forms(text, self._merges)
            if forms is None:
                return None
            for form in forms:
                parts = form.split(sep) if sep else [form]
                if sep and len(parts) != len(letters):
                    return None
                out.update(_length_prefix(len(p)) + p for p in parts if 0 < len(p) < 0x4000)
        return out

    def _entries_at(self, starts: Sequence[int]) -> list[int]:
        offsets, count = self.offsets, self.count
        out = []
        for st in starts:
            i = bisect.bisect_left(offsets, st)
            if i < count and offsets[i] == st:
                out.append(i)
        return out

    def find_all(self, name: str) -> list[int]:
        known = self._known.get(name)
        if known is not None and all(self.entry(i)[1:] == name for i in known):
            return list(known)
        found = self._search(name)
        self.searched[name] = found
        return list(found)

    def _search(self, name: str) -> list[int]:
        if not self._usable or not name:
            return []
        try:
            raw = name.encode("latin-1")
        except UnicodeEncodeError:
            return []
        if not set(raw) <= self._chars:
            return []  # a character no symbol of the table has
        forms = self._forms(raw)
        if forms is None:  # too ambiguous to spell: every name expanded once instead
            return self._fallback().find_all(name)
        names = self.names
        starts: set[int] = set()
        ordered = sorted(forms)
        tail = _common_suffix(ordered)
        if len(tail) >= 2:  # one search for what every form ends with
            lengths = {len(f) for f in forms}
            at = names.find(tail)
            while at >= 0:
                end = at + len(tail)
                for n in lengths:
                    if end >= n and names[end - n:end] in forms:
                        starts.add(end - n)
                at = names.find(tail, at + 1)
        else:  # short names: every form at once (a match may overlap the last one)
            either = re.compile(b"|".join(map(re.escape, ordered)))
            match = either.search(names)
            while match:
                starts.add(match.start())
                match = either.search(names, match.start() + 1)
        return sorted(i for i in self._entries_at(sorted(starts))
                      if self.entry(i)[1:] == name)

    def _fallback(self) -> IndexedNames:
        made = self._built
        if made is None:
            try:
                made = build_name_index(self.names, self.count, self.tokens)
            except FormatError:
                made = IndexedNames(self.names, self.tokens, self.offsets, (), "full")
            self._built = made
        return made

    def check(self, samples: int = INDEX_CHECKS) -> bool:
        """Whether entries spread over the table (``samples`` of them, and the first and
        last) compress back to their own bytes."""
        if not self._usable or self.count < 1:
            return False
        step = max(1, self.count // samples)
        for i in sorted({*range(0, self.count, step), self.count - 1}):
            lo, hi = self._span(i)
            if lo >= hi:
                return False
            entry = self.names[lo:hi]
            text = self.entry(i).encode("latin-1")
            forms = compressed_forms(text, self._merges)
            if forms is None or entry not in forms:
                return False
        return True


def check_markers(buf: bytes, layout: KallsymsLayout, offsets: Sequence[int]) -> None:
    """FormatError unless kallsyms_markers (when the layout knows where) give the offset of
    every 256th entry as ``offsets`` do."""
    if layout.markers is None:
        return
    count = (len(offsets) + 255) // 256
    fmt = f"<{count}{'I' if layout.marker_size == 4 else 'Q'}"
    try:
        markers = struct.unpack_from(fmt, buf, layout.markers)
    except struct.error:
        raise FormatError("kallsyms markers run past the data", offset=layout.markers) from None
    if list(markers) != list(offsets[::256]):
        raise FormatError("kallsyms markers disagree with the names", offset=layout.markers)


def entry_letters(names: bytes, offsets: Sequence[int], tokens: Sequence[str],
                  big: Sequence[int] | None = None) -> str:
    """Every type letter entries of the table have (the first character of each entry's
    first token), sorted; ``big``: the entries with a two-byte length, when known (else
    found)."""
    size = len(names)
    starts = map((1).__add__, offsets)
    try:
        firsts = set(map(names.__getitem__, starts))
    except IndexError:
        firsts = {names[o + 1] for o in offsets if o + 1 < size}
    if big is None:
        big = [o for o in offsets if o < size and names[o] & 0x80]
    firsts.update(names[o + 2] for o in big if o + 2 < size)
    return "".join(sorted({tokens[b][:1] for b in firsts if b < len(tokens)} - {""}))


def _common_suffix(items: Sequence[bytes]) -> bytes:
    """The longest byte string every item ends with."""
    if not items:
        return b""
    first, n, shortest = items[0], 0, min(map(len, items))
    while n < shortest and all(it[-1 - n] == first[-1 - n] for it in items):
        n += 1
    return first[len(first) - n:]


class IndexedSymbols(_SearchedColumns):
    """``name -> Symbol`` over a kallsyms table read through its own name index
    (:class:`IndexedNames`): opening a table of 200,000 symbols decodes none of them; a
    name is found by binary search, expanding some 18 entries. Listing every symbol
    (iteration, ``len``, columns) decodes the whole table once, when first asked.

    ``addresses`` in table order; ``move`` and symbols set or deleted by hand as in
    :class:`SortedSymbols`."""

    def __init__(self, index: IndexedNames, addresses: Sequence[int],
                 move: Callable[[int], int] | None = None) -> None:
        self.index, self._addresses, self._move = index, addresses, move
        self._made: dict[str, Symbol] = {}
        self._by_hand: dict[str, Symbol] = {}
        self._deleted: set[str] = set()
        self._absent: set[str] = set()
        self._whole: SortedSymbols | None = None

    def _find(self, name: str) -> int:
        if name in self._absent:
            return -1
        try:
            key = name.encode("utf-8", "surrogateescape").decode("latin-1")
        except UnicodeEncodeError:
            return -1
        i = self.index.find(key)
        if not 0 <= i < min(self.index.count, len(self._addresses)):
            self._absent.add(name)
            return -1
        return i

    def _symbol(self, name: str, i: int) -> Symbol:
        addr = self._addresses[i]
        sym = self._made[name] = Symbol(name, self._move(addr) if self._move else addr,
                                        self.index.letter(i))
        return sym

    @property
    def addresses(self) -> Sequence[int]:
        """Every entry's address in table order, as found (not moved)."""
        return self._addresses

    @property
    def move(self) -> Callable[[int], int] | None:
        return self._move

    @property
    def by_hand(self) -> dict[str, Symbol]:
        """Symbols set by hand (found by searching, or anchors), by name."""
        return dict(self._by_hand)

    @property
    def deleted(self) -> set[str]:
        return set(self._deleted)

    def forget(self, name: str) -> None:
        """Delete ``name`` whether or not it is held (a profile's record of deletions)."""
        self._by_hand.pop(name, None)
        self._made.pop(name, None)
        self._deleted.add(name)

    def whole(self) -> SortedSymbols:
        """Every symbol decoded and sorted (once), with what was set or deleted by hand."""
        if self._whole is None:
            names, kinds = self.index.expand_all()
            if not "".join(names).isascii():  # tokens hold UTF-8 bytes
                names = [n if n.isascii() else n.encode("latin-1").decode("utf-8", "replace")
                         for n in names]
            count = min(len(names), len(self._addresses))
            self._whole = SortedSymbols(*sorted_columns(
                names[:count], list(self._addresses[:count]), kinds[:count]), self._move)
        out = SortedSymbols(self._whole._blob, self._whole._offsets,
                            self._whole._addresses, self._whole._types, self._move)
        out._by_hand, out._deleted = dict(self._by_hand), set(self._deleted)
        return out

    def __iter__(self) -> Iterator[str]:
        return iter(self.whole())

    def items(self) -> ItemsView[str, Symbol]:
        """Every symbol from the table decoded once (:meth:`whole`), not looked up one by
        one (a lookup in a table without a name index reads all its names)."""
        return self.whole().items()

    def values(self) -> ValuesView[Symbol]:
        return self.whole().values()

    def is_empty(self) -> bool:
        return not (self.index.count or self._by_hand)

    def __len__(self) -> int:
        return len(self.whole())

    def columns(self) -> tuple[list[str], list[int], str]:
        return self.whole().columns()

    def type_letters(self) -> Iterator[str]:
        return self.whole().type_letters()

    def count_types(self, letters: str) -> int:
        return self.whole().count_types(letters)

    def sample_types(self, letters: str) -> tuple[int, int]:
        """``(entries with one of letters, entries looked at)`` over the first entry of
        each block of 256 (no decoding: an estimate of the table's mix)."""
        picks = range(0, self.index.count, 256)
        hits = sum(1 for i in picks if self.index.letter(i) in letters)
        return hits, len(picks)

    def sorted_columns(self) -> tuple[bytes, list[int], list[int], str]:
        return self.whole().sorted_columns()

    def moved(self, offset: int) -> IndexedSymbols:
        move = self._move
        out = IndexedSymbols(self.index, self._addresses,
                             (lambda a: move(a) + offset) if move else (lambda a: a + offset))
        out._by_hand = {n: Symbol(n, s.address + offset, s.type)
                        for n, s in self._by_hand.items()}
        out._deleted = set(self._deleted)
        out._absent = self._absent
        return out


def build_name_index(names: bytes, count: int, tokens: Sequence[str],
                     offsets: Sequence[int] | None = None) -> IndexedNames:
    """The name index a kernel without one (before 6.2) would have: every entry expanded
    once (one ``str.translate``) and the table's indexes sorted by name, so the table is
    then read as :class:`IndexedNames` reads the kernel's own (and a profile keeps it in
    that form, nothing sorted or copied per symbol). Every step runs in C over the whole
    table; FormatError when the entries do not all expand to a type letter and a name.
    ``offsets``: what :func:`entry_offsets` gave for these names, when walked already."""
    if offsets is None or len(offsets) != count:
        offsets = entry_offsets(names, count)
    if not count:
        raise FormatError("kallsyms table of no entries")
    # each entry's token bytes: from past its length byte(s) to the next entry
    heads = operator.itemgetter(*offsets)(names) if count > 1 else (names[offsets[0]],)
    starts = list(map(operator.add, offsets, itertools.repeat(1)))
    for i in itertools.compress(itertools.count(), map((0x80).__le__, heads)):
        starts[i] += 1  # "big" symbols: a two-byte length
    ends = list(offsets[1:])
    last = names[offsets[-1]]
    ends.append(offsets[-1] + 1 + (last if last < 0x80 else (
        (last & 0x7F) | (names[offsets[-1] + 1] << 7)) + 1))
    region = names.decode("latin-1")
    pieces = list(map(region.__getitem__, map(slice, starts, ends)))
    del region
    joined = "\u0100".join(pieces).translate(dict(enumerate(tokens)))
    del pieces
    if "\u0100\u0100" in joined or joined[:1] == "\u0100" or joined[-1:] == "\u0100":
        raise FormatError("a kallsyms entry expands to nothing")
    plain = _SEPARATOR_AND_LETTER.split(joined)
    del joined
    plain[0] = plain[0][1:]
    if len(plain) != count:
        raise FormatError(f"kallsyms entries expand to {len(plain)} names, not {count}")
    seqs = array.array("I", sorted(range(count), key=plain.__getitem__))
    return IndexedNames(names, tokens, offsets, seqs, "full")
