"""Which pages a filtered dump left out can be read as zeros, provably.

makedumpfile's dump level names what it leaves out: 1 pages of zeros, 2 and 4 page cache,
8 user data (anonymous and hugetlbfs pages), 16 free pages; poisoned and logically offline
pages always. A kdump file says only *that* a page was left out, not why. When the dump
level includes 1, a page left out that no other filter can have matched must have been a
page of zeros, and kvmfx reads it as such; in every other case it stays missing.

"No other filter can have matched" is decided from the kernel's own ``struct page`` (in
every dump: makedumpfile never leaves out the memory map) against *every* rule a makedumpfile
release has applied, not only the newest one, because the producer's release is not
recorded in the dump and older releases misclassify newer kernels (1.7.2 calls slab pages
of Linux 6.2+ user data when a slab field shares ``page.mapping``'s odd bit; 1.7.5-1.7.6 take
6.12's typed pages for hugetlb pages). So a page is refused when:

- its flags say LRU (page cache) or swap cache and the level drops cache pages;
- its ``mapping`` has the anonymous bit and the level drops user data (whatever else the
  page is: slab included);
- it is, or lies inside, a free buddy block, an unaccepted block or a hugetlb page as the
  level drops them (the filter excludes such a block from its first page);
- it carries any page type (``page_type``/``_mapcount`` holding a type value) and the level
  drops free pages or user data, since releases disagree on what those values mean;
- it is poisoned or offline (always excluded);
- its ``struct page`` (or its compound head's, or a block head's) cannot be read, or the
  VMCOREINFO entries a rule needs are absent.

Everything here except :class:`ZeroPageOracle` is a pure function of bytes.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Mapping
from typing import NamedTuple

from kvmfx.errors import KvmError
from kvmfx.layers import PhysicalLayer
from kvmfx.session import Session

DL_ZERO, DL_CACHE, DL_CACHE_PRI, DL_USER, DL_FREE = 1, 2, 4, 8, 16
#: Largest buddy order assumed when VMCOREINFO has no LENGTH(zone.free_area) (orders
#: reach 10 on x86_64 and 13 on arm64 with 64K pages): more than any kernel uses.
MAX_BUDDY_ORDER = 15
PAGE_MAPPING_ANON = 1
#: _mapcount of a page that has no type and is not mapped (-1).
NO_TYPE = 0xFFFFFFFF
#: Page types live in the top bits of _mapcount/page_type: 0xf0000000 and above, except -1.
TYPE_BASE = 0xF0000000

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


class PageFacts(NamedTuple):
    """What the rules need of ``struct page``, from VMCOREINFO (SIZE, OFFSET, NUMBER)."""

    size: int
    flags: int
    mapping: int
    mapcount: int
    private: int
    #: Offset of page.compound_head (tail pages hold head + 1), or None when the kernel
    #: names the field otherwise (then a tail page's head cannot be found: refused).
    compound_head: int | None
    #: Offset of page.compound_dtor in the first tail page (kernels before 6.6), or None.
    compound_dtor: int | None
    numbers: Mapping[str, int]
    #: Largest order of a free block (LENGTH(zone.free_area) - 1).
    max_order: int = MAX_BUDDY_ORDER

    def number(self, name: str) -> int | None:
        return self.numbers.get(name)


def page_facts(sizes: Mapping[str, int], offsets: Mapping[str, int],
               numbers: Mapping[str, int], lengths: Mapping[str, int] | None = None
               ) -> PageFacts | str:
    """The facts from VMCOREINFO's tables, or why they are not enough (a string)."""
    size = sizes.get("page")
    need = ("page.flags", "page.mapping", "page._mapcount", "page.private")
    lacking = [n for n in need if n not in offsets]
    if size is None or lacking:
        return ("VMCOREINFO lacks " + ", ".join((["SIZE(page)"] if size is None else [])
                                                 + [f"OFFSET({n})" for n in lacking]))
    for name in ("PG_lru", "PG_private", "PG_swapcache", "PG_head_mask"):
        if name not in numbers:
            return f"VMCOREINFO lacks NUMBER({name})"
    if "PAGE_BUDDY_MAPCOUNT_VALUE" not in numbers and "PG_buddy" not in numbers:
        return "VMCOREINFO names no way to tell free (buddy) pages"
    return PageFacts(size=size, flags=offsets["page.flags"], mapping=offsets["page.mapping"],
                     mapcount=offsets["page._mapcount"], private=offsets["page.private"],
                     compound_head=offsets.get("page.compound_head"),
                     compound_dtor=offsets.get("page.compound_dtor"), numbers=dict(numbers),
                     max_order=_max_order(lengths or {}))


def _max_order(lengths: Mapping[str, int]) -> int:
    n = lengths.get("zone.free_area")
    return n - 1 if n is not None and 1 <= n <= MAX_BUDDY_ORDER + 1 else MAX_BUDDY_ORDER


class PageView(NamedTuple):
    flags: int
    mapping: int
    mapcount: int
    private: int
    second: int  # the word at compound_head/compound_info (bit 0: tail page)

    @property
    def tail(self) -> bool:
        return bool(self.second & 1)


def view(raw: bytes, facts: PageFacts) -> PageView:
    """The fields of one ``struct page`` (``raw`` holds at least ``facts.size`` bytes)."""
    if len(raw) < facts.size:
        raise ValueError(f"struct page needs {facts.size} bytes, got {len(raw)}")
    second_off = facts.compound_head if facts.compound_head is not None else 8
    return PageView(flags=_U64.unpack_from(raw, facts.flags)[0],
                    mapping=_U64.unpack_from(raw, facts.mapping)[0],
                    mapcount=_U32.unpack_from(raw, facts.mapcount)[0],
                    private=_U64.unpack_from(raw, facts.private)[0],
                    second=_U64.unpack_from(raw, second_off)[0])


def _bit(value: int, nr: int | None) -> bool:
    return nr is not None and 0 <= nr < 64 and bool(value >> nr & 1)


def _value(facts: PageFacts, name: str) -> int | None:
    v = facts.number(name)
    return None if v is None else v & 0xFFFFFFFF


def _is_buddy(p: PageView, facts: PageFacts) -> bool:
    return (p.mapcount == _value(facts, "PAGE_BUDDY_MAPCOUNT_VALUE")
            or _bit(p.flags, facts.number("PG_buddy")))


def _typed(p: PageView) -> bool:
    return p.mapcount != NO_TYPE and p.mapcount >= TYPE_BASE


def own_reason(p: PageView, facts: PageFacts, level: int) -> str | None:
    """Why a filter other than the zero-page one may have left out this page itself
    (None: none can have)."""
    if _bit(p.flags, facts.number("PG_hwpoison")):
        return "the page is poisoned (always excluded)"
    if p.mapcount == _value(facts, "PAGE_OFFLINE_MAPCOUNT_VALUE"):
        return "the page is offline (always excluded)"
    if level & DL_FREE:
        if _is_buddy(p, facts):
            return "the page is free (buddy), and the dump level drops free pages"
        if p.mapcount == _value(facts, "PAGE_UNACCEPTED_MAPCOUNT_VALUE"):
            return "the page is unaccepted memory, and the dump level drops free pages"
    if level & (DL_CACHE | DL_CACHE_PRI):
        swapbacked = facts.number("PG_swapbacked")
        if _bit(p.flags, facts.number("PG_lru")) or (
                _bit(p.flags, facts.number("PG_swapcache"))
                and (swapbacked is None or _bit(p.flags, swapbacked))):
            return "the page is in the page cache, and the dump level drops cache pages"
    if level & DL_USER and p.mapping & PAGE_MAPPING_ANON:
        return ("the page's mapping field has the anonymous bit, which makedumpfile reads "
                "as user data (even on slab pages before 1.7.3)")
    if level & (DL_USER | DL_FREE) and _typed(p):
        return (f"the page has a page type ({p.mapcount:#x}), which makedumpfile releases "
                "read differently (free, hugetlb or kernel memory)")
    return None


def hugetlb_head(p: PageView, first_tail: bytes | None, facts: PageFacts) -> bool | None:
    """Whether compound head ``p`` is a hugetlb page (None: cannot tell). Linux 6.9+ types
    the head (PAGE_HUGETLB_MAPCOUNT_VALUE); 6.6-6.8 flag the first tail (PG_hugetlb); before,
    the first tail's compound_dtor holds HUGETLB_PAGE_DTOR."""
    typed = _value(facts, "PAGE_HUGETLB_MAPCOUNT_VALUE")
    if typed is not None:
        return p.mapcount == typed
    if first_tail is None or len(first_tail) < facts.size:
        return None
    flag = facts.number("PG_hugetlb")
    if flag is not None:
        return _bit(_U64.unpack_from(first_tail, facts.flags)[0], flag)
    dtor_value = facts.number("HUGETLB_PAGE_DTOR")
    if facts.compound_dtor is not None and dtor_value is not None:
        return first_tail[facts.compound_dtor] == dtor_value
    return None


#: Reads the ``struct page`` of a page frame number: bytes, or raises KvmError.
PageReader = Callable[[int], bytes]


def zero_verdict(pfn: int, level: int, facts: PageFacts, read_page: PageReader,
                 struct_page_pfn: Callable[[int], int | None],
                 seen_block: Callable[[int, int], None] | None = None) -> str | None:
    """None when page ``pfn``, left out of a dump made at ``level``, provably held zeros;
    else why that cannot be shown. ``read_page(pfn)`` returns its ``struct page``;
    ``struct_page_pfn(addr)`` maps a ``struct page`` address back to its pfn (for tails);
    ``seen_block(first, order)`` hears of the free block that holds the page, if one does."""
    if not level & DL_ZERO:
        return f"dump level {level} does not drop zero pages, so another filter did"
    page = _view_or_why(read_page, pfn, facts, "its struct page")
    if isinstance(page, str):
        return page
    why = own_reason(page, facts, level)
    if why:
        return why
    head_pfn = pfn
    if page.tail:
        if facts.compound_head is None:
            return "it is a tail page, and this kernel's compound-page field is not known"
        found = struct_page_pfn(page.second - 1)
        if found is None:
            return "it is a tail page whose head cannot be located"
        head_pfn = found
        head = _view_or_why(read_page, head_pfn, facts, "its compound head's struct page")
        if isinstance(head, str):
            return head
        why = own_reason(head, facts, level)
        if why:
            return "its compound head: " + why
        if level & DL_USER:
            why = _hugetlb_reason(head_pfn, head, facts, read_page)
            if why:
                return why
    elif level & DL_USER and page.flags & (facts.number("PG_head_mask") or 0):
        why = _hugetlb_reason(pfn, page, facts, read_page)
        if why:
            return why
    if level & DL_FREE:
        block = free_block(pfn, facts, read_page)
        if not isinstance(block, tuple):
            return block
        if seen_block is not None:
            seen_block(*block)
        return f"it lies in a free block of order {block[1]} at pfn {block[0]:#x}"
    return None


def _view_or_why(read_page: PageReader, pfn: int, facts: PageFacts,
                 what: str) -> PageView | str:
    try:
        return view(read_page(pfn), facts)
    except (KvmError, ValueError) as exc:
        return f"{what} cannot be read ({exc})"


def _hugetlb_reason(head_pfn: int, head: PageView, facts: PageFacts,
                    read_page: PageReader) -> str | None:
    try:
        first_tail = read_page(head_pfn + 1)
    except KvmError:
        first_tail = None
    verdict = hugetlb_head(head, first_tail, facts)
    if verdict is None:
        return "it belongs to a compound page whose hugetlb state cannot be read"
    if verdict:
        return "it belongs to a hugetlb page, and the dump level drops user data"
    return None


def free_block(pfn: int, facts: PageFacts, read_page: PageReader
               ) -> tuple[int, int] | str | None:
    """The (first pfn, order) of a free or unaccepted block holding ``pfn`` from an earlier
    first page (the filter excludes such a block from its first page); None when there is
    none; a string when a first page that could be one cannot be read."""
    unaccepted = _value(facts, "PAGE_UNACCEPTED_MAPCOUNT_VALUE")
    for order in range(1, facts.max_order + 1):
        start = pfn & ~((1 << order) - 1)
        if start == pfn:
            continue
        try:
            p = view(read_page(start), facts)
        except (KvmError, ValueError) as exc:
            return (f"the struct page of pfn {start:#x}, which may head a free block "
                    f"holding it, cannot be read ({exc})")
        if _is_buddy(p, facts) and facts.max_order >= p.private >= order:
            return start, p.private
        if unaccepted is not None and p.mapcount == unaccepted:
            return start, facts.max_order
    return None


#: Low bits of mem_section.section_mem_map that hold section flags, not the map's address.
SECTION_FLAG_BITS = 6
SECTION_HAS_MEM_MAP = 1 << 1


class ZeroPageOracle:
    """Judges a dump's excluded pages from the kernel's memory map (SPARSEMEM, as on every
    64-bit Linux kvmfx reads): VMCOREINFO gives ``mem_section`` and the page layout, reads
    go through the kernel's address space. Install it with :meth:`install`."""

    def __init__(self, facts: PageFacts, read: Callable[[int, int], bytes],
                 symbols: Mapping[str, int], numbers: Mapping[str, int],
                 lengths: Mapping[str, int], sizes: Mapping[str, int], level: int,
                 page_size: int) -> None:
        self.facts = facts
        self.read = read
        self.level = level
        self.page_shift = page_size.bit_length() - 1
        self.mem_section = symbols.get("mem_section")
        self.vmemmap = symbols.get("vmemmap")
        self.section_bits = numbers.get("SECTION_SIZE_BITS")
        self.roots = lengths.get("mem_section")
        self.section_size = sizes.get("mem_section")
        self._sections: dict[int, int | None] = {}
        self._map_pages: dict[int, bytes] = {}
        self._last_block: tuple[int, int, str] | None = None

    def _section_map(self, nr: int) -> int | None:
        """The encoded mem_map of section ``nr`` (address of pfn 0's struct page)."""
        if nr in self._sections:
            return self._sections[nr]
        value = None
        if self.mem_section is not None and self.section_size:
            per_root = (1 << self.page_shift) // self.section_size
            try:
                if self.roots and self.roots > 1:  # SPARSEMEM_EXTREME: an array of roots
                    root = int.from_bytes(self.read(self.mem_section + 8 * (nr // per_root), 8),
                                          "little")
                    at = root + (nr % per_root) * self.section_size if root else None
                else:
                    at = self.mem_section + nr * self.section_size
                if at is not None:
                    raw = int.from_bytes(self.read(at, 8), "little")
                    if raw & SECTION_HAS_MEM_MAP:
                        value = raw & ~((1 << SECTION_FLAG_BITS) - 1)
            except KvmError:
                value = None
        self._sections[nr] = value
        return value

    def page_address(self, pfn: int) -> int | None:
        if self.section_bits is None:
            return None
        base = self._section_map(pfn >> (self.section_bits - self.page_shift))
        if base is None:
            return None
        return (base + pfn * self.facts.size) & 0xFFFFFFFFFFFFFFFF

    def read_page(self, pfn: int) -> bytes:
        addr = self.page_address(pfn)
        if addr is None:
            raise KvmError(f"no memory map entry for pfn {pfn:#x}")
        size, chunk = self.facts.size, 1 << self.page_shift
        base = addr - addr % chunk
        if addr + size > base + chunk:  # straddles two pages of the map
            return self.read(addr, size)
        if base not in self._map_pages:
            if len(self._map_pages) > 4096:
                self._map_pages.clear()
            self._map_pages[base] = self.read(base, chunk)
        return self._map_pages[base][addr - base:addr - base + size]

    def pfn_of(self, addr: int) -> int | None:
        """The pfn whose struct page is at ``addr`` (a vmemmap kernel's single map)."""
        base = self.vmemmap
        if base is None:
            base = self._section_map(0)
        if base is None or addr < base or (addr - base) % self.facts.size:
            return None
        pfn = (addr - base) // self.facts.size
        return pfn if self.page_address(pfn) == addr else None

    def verdict(self, pfn: int) -> str | None:
        last = self._last_block
        if last is not None and last[0] <= pfn < last[1]:
            return last[2]
        found: list[tuple[int, int]] = []
        why = zero_verdict(pfn, self.level, self.facts, self.read_page, self.pfn_of,
                           lambda first, order: found.append((first, order)))
        if found and why is not None:  # the rest of the block shares the verdict
            first, order = found[0]
            self._last_block = (first, first + (1 << order), why)
        return why

    @classmethod
    def for_session(cls, session: Session) -> ZeroPageOracle | str:
        """The oracle of a session's dump, or why there is none."""
        physical = session.physical
        if physical.zeros_kept is not None:
            return physical.zeros_kept
        # a format that does not record the level (ELF) is judged against every filter
        level = physical.dump_level if physical.dump_level is not None else 31
        info = session.boot
        if info is None:
            return "the dump has no VMCOREINFO"
        lengths = info.lengths
        facts = page_facts(info.sizes, info.offsets, info.numbers, lengths)
        if isinstance(facts, str):
            return facts
        if "mem_section" not in info.symbols:
            return "VMCOREINFO lacks SYMBOL(mem_section)"
        return cls(facts, session.read, info.symbols, info.numbers, lengths, info.sizes,
                   level, session.image.page_size)

    def install(self, physical: PhysicalLayer) -> None:
        physical.zero_verdict = self.verdict


def install_zero_pages(session: Session) -> None:
    """Let the session's dump read excluded pages that provably held zeros as zeros (once;
    a dump with no excluded pages, or whose format keeps zero pages, is left alone)."""
    physical = session.physical
    if physical.zero_verdict is not None or physical.zeros_kept is not None:
        return
    if physical.format_name == "elf":  # ELF says nothing of pages: the kernel's size
        physical.page_size = session.image.page_size  # type: ignore[attr-defined]
    if next(iter(physical.excluded_pfns()), None) is None:
        return
    oracle = ZeroPageOracle.for_session(session)
    if isinstance(oracle, str):
        physical.zero_verdict = lambda _pfn, why=oracle: why
    else:
        oracle.install(physical)


def excluded_summary(session: Session, limit: int = 1 << 22) -> dict[str, object] | None:
    """For ``kvmfx info``: how many pages the dump's filter left out, and how many of those
    provably held zeros (judged for at most ``limit`` pages). None: nothing was left out."""
    physical = session.physical
    total = zeros = judged = 0
    install_zero_pages(session)
    reasons: dict[str, int] = {}
    for pfn in physical.excluded_pfns():
        total += 1
        if judged >= limit:
            continue
        judged += 1
        why = physical.excluded_as_zeros(pfn)
        if why is None:
            zeros += 1
        else:
            key = re.sub(r"\b(0x[0-9a-f]+|\d+)\b", "N", why.split(" (")[0])
            reasons[key] = reasons.get(key, 0) + 1
    if not total:
        return None
    out: dict[str, object] = {"pages": total, "read_as_zeros": zeros}
    if judged < total:
        out["judged"] = judged
    if reasons:
        top = sorted(reasons.items(), key=lambda kv: -kv[1])[:4]
        out["others"] = "; ".join(f"{n}: {why}" for why, n in top)
    return out
