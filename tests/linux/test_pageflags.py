"""Which excluded pages kvmfx may read as zeros: the rules on ``struct page`` bytes.

The numbers are those Linux 6.1 and 6.12 publish in VMCOREINFO (Debian 12's and 13's
kernels); the real-dump side (every page read as zeros was zeros) is in
test_kernel_matrix.py.
"""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from kvmfx.errors import KvmError
from kvmfx_plugins.linux.pageflags import (
    PageFacts,
    free_block,
    hugetlb_head,
    page_facts,
    zero_verdict,
)

OFFSETS = {"page.flags": 0, "page.mapping": 24, "page._mapcount": 48, "page.private": 40,
           "page.compound_head": 8, "page._refcount": 52}
V61 = {"PG_lru": 4, "PG_private": 13, "PG_swapcache": 10, "PG_swapbacked": 19, "PG_slab": 9,
       "PG_hwpoison": 23, "PG_head_mask": 1 << 16, "PAGE_BUDDY_MAPCOUNT_VALUE": -129,
       "HUGETLB_PAGE_DTOR": 2, "PAGE_OFFLINE_MAPCOUNT_VALUE": -257}
V612 = {"PG_lru": 5, "PG_private": 14, "PG_swapcache": 10, "PG_swapbacked": 17,
        "PAGE_SLAB_MAPCOUNT_VALUE": -184549376, "PG_hwpoison": 20, "PG_head_mask": 64,
        "PAGE_BUDDY_MAPCOUNT_VALUE": -268435456, "PAGE_HUGETLB_MAPCOUNT_VALUE": -201326592,
        "PAGE_OFFLINE_MAPCOUNT_VALUE": -251658240}


def facts(numbers: dict[str, int], **extra: int) -> PageFacts:
    offsets = dict(OFFSETS, **{f"page.{k}": v for k, v in extra.items()})
    out = page_facts({"page": 64}, offsets, numbers, {"zone.free_area": 11})
    assert isinstance(out, PageFacts)
    return out


def page(flags: int = 0, mapping: int = 0, mapcount: int = -1, private: int = 0,
         head: int = 0) -> bytes:
    raw = bytearray(64)
    struct.pack_into("<Q", raw, 0, flags)
    struct.pack_into("<Q", raw, 8, head)
    struct.pack_into("<Q", raw, 24, mapping)
    struct.pack_into("<Q", raw, 40, private)
    struct.pack_into("<I", raw, 48, mapcount & 0xFFFFFFFF)
    return bytes(raw)


VMEMMAP = 0xFFFFEA0000000000


def judge(pages: dict[int, bytes], pfn: int, level: int = 31,
          numbers: dict[str, int] = V61, **extra: int) -> str | None:
    def read(p: int) -> bytes:
        if p not in pages:
            if p < 0:
                raise KvmError("no such page")
            return page()  # an ordinary kernel page
        if pages[p] == b"unreadable":
            raise KvmError(f"struct page of pfn {p:#x} not in the dump")
        return pages[p]

    def pfn_of(addr: int) -> int | None:
        return (addr - VMEMMAP) // 64 if addr >= VMEMMAP else None

    return zero_verdict(pfn, level, facts(numbers, **extra), read, pfn_of)


def test_a_kernel_page_no_other_filter_matches_held_zeros():
    assert judge({}, 0x1234) is None
    assert judge({0x1234: page(flags=1 << 9)}, 0x1234) is None  # a 6.1 slab page


def test_without_the_zero_level_another_filter_left_it_out():
    assert "does not drop zero pages" in judge({}, 0x1234, level=30)


def test_page_cache_is_refused_only_when_the_level_drops_cache():
    lru = page(flags=1 << 4)
    assert "page cache" in judge({0x10: lru}, 0x10, level=31)
    assert judge({0x10: lru}, 0x10, level=1 | 8 | 16) is None
    swapcache = page(flags=1 << 10 | 1 << 19)
    assert "page cache" in judge({0x10: swapcache}, 0x10, level=1 | 2)


def test_the_anonymous_bit_is_refused_even_on_a_slab_page():
    """makedumpfile before 1.7.3 took a 6.2+ slab page whose field at page.mapping is odd
    for user data."""
    slab_odd = page(flags=1 << 9, mapping=1)
    assert "anonymous bit" in judge({0x10: slab_odd}, 0x10)
    assert judge({0x10: slab_odd}, 0x10, level=1 | 2 | 4) is None


def test_typed_pages_are_refused_when_free_or_user_pages_were_dropped():
    slab_612 = page(mapcount=V612["PAGE_SLAB_MAPCOUNT_VALUE"])
    assert "page type" in judge({0x10: slab_612}, 0x10, numbers=V612)
    assert judge({0x10: slab_612}, 0x10, level=1 | 2 | 4, numbers=V612) is None


def test_free_pages_and_the_blocks_they_head():
    buddy = page(mapcount=-129, private=2)
    assert "free (buddy)" in judge({0x400: buddy}, 0x400)
    # a block of order 2 at 0x400 holds 0x400-0x403, whose own struct pages look ordinary
    assert "free block of order 2 at pfn 0x400" in judge({0x400: buddy}, 0x403)
    assert judge({0x400: buddy}, 0x404) is None
    # the level does not drop free pages: the block is no reason
    assert judge({0x400: buddy}, 0x403, level=1 | 2 | 4 | 8) is None


def test_a_block_head_that_cannot_be_read_refuses():
    assert "cannot be read" in judge({0x400: b"unreadable"}, 0x401)


def test_poisoned_and_offline_pages_are_always_refused():
    assert "poisoned" in judge({0x10: page(flags=1 << 23)}, 0x10, level=1)
    assert "offline" in judge({0x10: page(mapcount=-257)}, 0x10, level=1)


def test_a_tail_page_follows_its_compound_head():
    head_pfn = 0x800
    head = page(flags=1 << 6, mapcount=V612["PAGE_HUGETLB_MAPCOUNT_VALUE"])
    tail = page(head=VMEMMAP + head_pfn * 64 + 1)
    why = judge({head_pfn: head, head_pfn + 3: tail}, head_pfn + 3, numbers=V612)
    assert "hugetlb" in why or "page type" in why
    ordinary_head = page(flags=1 << 6)
    assert judge({head_pfn: ordinary_head, head_pfn + 3: tail}, head_pfn + 3,
                 numbers=V612) is None
    assert "head cannot be located" in judge({0x10: page(head=0x1001)}, 0x10)


def test_a_tail_page_of_a_kernel_naming_the_field_otherwise_is_refused():
    offsets = {k: v for k, v in OFFSETS.items() if k != "page.compound_head"}
    f = page_facts({"page": 64}, offsets, V612)
    assert isinstance(f, PageFacts)
    tail = page(head=VMEMMAP + 1)
    why = zero_verdict(0x10, 31, f, lambda p: tail if p == 0x10 else page(), lambda a: 0)
    assert "compound-page field is not known" in why


def test_hugetlb_heads_of_each_kernel_generation():
    f61 = facts(V61, compound_dtor=16)
    first_tail = bytearray(page())
    first_tail[16] = 2
    assert hugetlb_head(PageView_of(page(flags=1 << 16), f61), bytes(first_tail), f61)
    first_tail[16] = 1
    assert not hugetlb_head(PageView_of(page(flags=1 << 16), f61), bytes(first_tail), f61)
    assert hugetlb_head(PageView_of(page(flags=1 << 16), f61), None, f61) is None
    f612 = facts(V612)
    assert hugetlb_head(PageView_of(page(mapcount=-201326592), f612), None, f612)


def PageView_of(raw: bytes, f: PageFacts):  # noqa: N802 - reads as the type it builds
    from kvmfx_plugins.linux.pageflags import view

    return view(raw, f)


def test_vmcoreinfo_that_lacks_an_entry_is_named():
    assert "OFFSET(page._mapcount)" in page_facts(
        {"page": 64}, {k: v for k, v in OFFSETS.items() if k != "page._mapcount"}, V61)
    assert "NUMBER(PG_lru)" in page_facts({"page": 64}, OFFSETS,
                                          {k: v for k, v in V61.items() if k != "PG_lru"})
    no_buddy = {k: v for k, v in V61.items() if k != "PAGE_BUDDY_MAPCOUNT_VALUE"}
    assert "free (buddy)" in page_facts({"page": 64}, OFFSETS, no_buddy)


def test_free_block_reports_the_first_page_and_order():
    f = facts(V61)
    pages = {0x400: page(mapcount=-129, private=3)}
    assert free_block(0x405, f, lambda p: pages.get(p, page())) == (0x400, 3)
    assert free_block(0x409, f, lambda p: pages.get(p, page())) is None


@given(st.binary(min_size=0, max_size=80), st.integers(0, 1 << 40), st.integers(0, 63))
def test_any_struct_page_bytes_give_a_verdict_never_an_exception(raw, pfn, level):
    f = facts(V612)

    def read(p: int) -> bytes:
        return raw

    out = zero_verdict(pfn, level, f, read, lambda a: None)
    assert out is None or isinstance(out, str)
