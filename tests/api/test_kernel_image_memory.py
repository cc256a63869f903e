"""KernelImage's reads of the kernel image for searching (image_bytes, image_chunks,
image_windows), on a synthetic address space: runs mapped contiguously, runs mapped page by
page in any order, unmapped stretches the walk reports whole or page by page, and physical
pages the dump lacks. Each must read as a page-by-page read with zero fill would."""

from __future__ import annotations

import random

import pytest

from kvmfx.arch import VirtualLayer
from kvmfx.errors import TranslationError
from kvmfx.kernel import RUN, KernelImage
from kvmfx.layers import PAGE_SIZE, FileSource, Segment, SegmentedLayer

BASE = 0xFFFF_8000_1000_0000  # 2 MiB-aligned
PAGES_PER_RUN = RUN // PAGE_SIZE
PHYS_PAGES = 6 * PAGES_PER_RUN


class _PageMap(VirtualLayer):
    """Virtual page -> physical page; an unmapped page reports its whole 2 MiB run as
    unmapped when nothing in the run is mapped (as an invalid upper-level entry does)."""

    def __init__(self, physical: SegmentedLayer, pages: dict[int, int]) -> None:
        super().__init__(physical, 0)
        self.pages = pages
        self.translations = 0

    def translate(self, vaddr: int) -> tuple[int, int]:
        self.translations += 1
        page = (vaddr - BASE) // PAGE_SIZE
        if page not in self.pages:
            exc = TranslationError("not mapped", address=vaddr)
            run = page - page % PAGES_PER_RUN
            if not any(p in self.pages for p in range(run, run + PAGES_PER_RUN)):
                exc.span = RUN
            raise exc
        return self.pages[page] * PAGE_SIZE + vaddr % PAGE_SIZE, PAGE_SIZE


def _image(tmp_path, pages: dict[int, int]) -> tuple[KernelImage, bytes]:
    """A kernel image over random physical memory of which one 64 KiB stretch is not in
    the dump; and that memory as it reads with the stretch zero-filled."""
    rnd = random.Random(7)
    mem = bytearray(rnd.randbytes(PHYS_PAGES * PAGE_SIZE))
    path = tmp_path / "mem.raw"
    path.write_bytes(bytes(mem))
    hole = (3 * PAGES_PER_RUN + 5) * PAGE_SIZE
    physical = SegmentedLayer(FileSource(str(path)), [
        Segment(0, hole, 0), Segment(hole + 0x10000, len(mem) - hole - 0x10000, hole + 0x10000)])
    mem[hole:hole + 0x10000] = bytes(0x10000)
    return KernelImage(os="linux", layer=_PageMap(physical, pages)), bytes(mem)


def _page_by_page(pages: dict[int, int], mem: bytes, span: int) -> bytes:
    out = bytearray()
    for page in range(span // PAGE_SIZE):
        phys = pages.get(page)
        out += bytes(PAGE_SIZE) if phys is None else mem[phys * PAGE_SIZE:(phys + 1) * PAGE_SIZE]
    return bytes(out)


def _layout() -> dict[int, int]:
    """Run 0 linear; run 1 linear to a third, then unmapped (an image segment's end); run 2
    unmapped; run 3 unmapped for a quarter, then linear again at another offset, across the
    physical stretch the dump lacks; run 4 pages in shuffled physical order with holes;
    run 5 one page."""
    pages = {p: p for p in range(PAGES_PER_RUN + PAGES_PER_RUN // 3)}
    quarter = 3 * PAGES_PER_RUN + PAGES_PER_RUN // 4
    pages.update({p: p - PAGES_PER_RUN // 4 for p in range(quarter, 4 * PAGES_PER_RUN)})
    shuffled = list(range(PAGES_PER_RUN))
    random.Random(3).shuffle(shuffled)
    for i, phys in enumerate(shuffled):
        if i % 7:
            pages[4 * PAGES_PER_RUN + i] = 5 * PAGES_PER_RUN + phys
    pages[5 * PAGES_PER_RUN + 9] = 2
    return pages


def test_image_bytes_read_as_page_by_page_with_zero_fill(tmp_path):
    pages = _layout()
    image, mem = _image(tmp_path, pages)
    span = 6 * RUN
    want = _page_by_page(pages, mem, span)
    assert image.image_bytes(BASE, span) == want
    assert b"".join(image.image_chunks(BASE, span)) == want
    assert all(len(c) <= RUN for c in image.image_chunks(BASE, span))
    # not from the run's start, and ending inside one
    assert image.image_bytes(BASE + 0x3000, span - 0x5000) == want[0x3000:span - 0x2000]


def test_a_contiguous_run_takes_two_translations_and_an_unmapped_one_one(tmp_path):
    pages = {p: p for p in range(PAGES_PER_RUN)}
    image, mem = _image(tmp_path, pages)
    assert image.image_bytes(BASE, 2 * RUN) == mem[:RUN] + bytes(RUN)
    assert image.layer.translations == 3


@pytest.mark.parametrize("overlap", [0, 1, 24, 5000, 3 * RUN])
def test_windows_hold_everything_up_to_the_overlap_once(tmp_path, overlap):
    """Anything of up to ``overlap`` bytes (one byte when 0), wherever it lies, is whole in
    exactly one window past that window's ``fresh``, as the whole image holds it; but for
    what lies whole inside a run nothing of which is mapped, away from its ends (zeros)."""
    image, _ = _image(tmp_path, _layout())
    start, span = BASE + 0x1000, 6 * RUN - 0x1000
    whole = image.image_bytes(start, span)
    windows = list(image.image_windows(start, span, overlap))
    assert max(len(data) for _a, data, _f in windows) <= RUN + 2 * overlap
    size = max(1, overlap)
    seams = [k * RUN - 0x1000 for k in range(1, 6)]
    offsets = {0, len(whole) - size, *random.Random(5).sample(range(len(whole) - size), 50)}
    for seam in seams:
        offsets |= {o for o in (seam - size, seam - size + 1, seam - size // 2, seam - 1, seam)
                    if 0 <= o <= len(whole) - size}
    unmapped = range(2 * RUN - 0x1000, 3 * RUN - 0x1000)  # run 2
    offsets |= {o for o in (unmapped.start + RUN // 2, unmapped.start + 1,
                            unmapped.stop - size - 1) if 0 <= o <= len(whole) - size}
    for offset in sorted(offsets):
        at = start + offset
        holders = [(address, data) for address, data, fresh in windows
                   if address <= at and at + size <= address + len(data)
                   and at + size > address + fresh]
        if not holders and offset in unmapped and offset + size <= unmapped.stop:
            assert whole[offset:offset + size] == bytes(size)
            continue
        assert len(holders) == 1, hex(offset)
        address, data = holders[0]
        assert data[at - address:at - address + size] == whole[offset:offset + size]
