"""Linux swap areas: the header, and pages read back by swap slot.

A swapped-out user page leaves a swap entry (area type, slot offset) in its page-table entry;
the page's bytes are at ``slot * PAGE_SIZE`` in that swap area. ``parse_swap_header`` is a
pure function of the area's first page.
"""

from __future__ import annotations

import functools
from typing import Any

from kvmfx.errors import FormatError, MissingPageError
from kvmfx.hookspecs import hookimpl
from kvmfx.layers import PAGE_SIZE, FileSource
from kvmfx.records import Record

SWAP_MAGIC = b"SWAPSPACE2"
#: union swap_header, info view (include/linux/swap.h); the magic ends the first page.
#: construct is imported when a swap area is read, not at start-up
INFO_SIZE = 1536  # the size of SWAP_INFO
MAX_BADPAGES = (PAGE_SIZE - 10 - INFO_SIZE) // 4


@functools.cache
def _swap_info() -> Any:
    import construct as cs

    return cs.Struct(
        "bootbits" / cs.Bytes(1024),
        "version" / cs.Int32ul,
        "last_page" / cs.Int32ul,
        "nr_badpages" / cs.Int32ul,
        "uuid" / cs.Bytes(16),
        "volume" / cs.Bytes(16),
        "padding" / cs.Bytes(4 * 117),
    )


def __getattr__(name: str) -> Any:
    if name == "SWAP_INFO":
        return _swap_info()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class SwapHeader(Record):
    __slots__ = ("version", "last_page", "bad_pages", "uuid", "label")
    version: int
    last_page: int
    bad_pages: frozenset[int]
    uuid: str
    label: str

    def __init__(self, version: int, last_page: int, bad_pages: frozenset[int], uuid: str,
                 label: str) -> None:
        self.version = version
        self.last_page = last_page
        self.bad_pages = bad_pages
        self.uuid = uuid
        self.label = label


def parse_swap_header(page: bytes, path: str | None = None) -> SwapHeader:
    """Decode the first page of a swap area; FormatError when it is not one."""
    if len(page) < PAGE_SIZE:
        raise FormatError(f"swap header needs {PAGE_SIZE} bytes, got {len(page)}", path=path,
                          offset=0)
    if page[PAGE_SIZE - 10:PAGE_SIZE] != SWAP_MAGIC:
        raise FormatError("not a Linux swap area (no SWAPSPACE2 magic)", path=path,
                          offset=PAGE_SIZE - 10)
    info = _swap_info().parse(page)
    if info.version != 1:
        raise FormatError(f"unsupported swap header version {info.version}", path=path,
                          offset=1024)
    if info.nr_badpages > MAX_BADPAGES:
        raise FormatError(f"swap header lists {info.nr_badpages} bad pages (at most "
                          f"{MAX_BADPAGES} fit)", path=path, offset=1032)
    bad_at = INFO_SIZE
    bad = frozenset(int.from_bytes(page[bad_at + 4 * i:bad_at + 4 * i + 4], "little")
                    for i in range(info.nr_badpages))
    u = info.uuid.hex()
    uuid = f"{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}"
    return SwapHeader(info.version, info.last_page, bad, uuid,
                      info.volume.split(b"\0", 1)[0].decode("utf-8", "replace"))


class SwapArea:
    """A swap image opened read-only (a swap partition image or a swap file)."""

    def __init__(self, path: str) -> None:
        self.source = FileSource(path)
        try:
            self.header = parse_swap_header(self.source.read_upto(0, PAGE_SIZE), path)
        except BaseException:
            self.source.close()
            raise
        self.path = path

    def read_slot(self, offset: int) -> bytes:
        """The page stored in swap slot ``offset``."""
        if offset == 0 or offset > self.header.last_page or offset in self.header.bad_pages:
            raise MissingPageError(f"swap slot {offset} is not a data page of this area "
                                   f"(last page {self.header.last_page})", path=self.path,
                                   offset=offset * PAGE_SIZE)
        try:
            return self.source.read(offset * PAGE_SIZE, PAGE_SIZE)
        except FormatError:
            raise MissingPageError(f"swap slot {offset} lies past the end of the image",
                                   path=self.path, offset=offset * PAGE_SIZE) from None

    def close(self) -> None:
        self.source.close()


class LinuxSwapFormat:
    """Linux swap areas (mkswap's SWAPSPACE2 with 4 KiB pages)."""

    name = "linux-swap"
    description = "Linux swap area (SWAPSPACE2, 4 KiB pages): partition or file image"

    def probe(self, head: bytes) -> int:
        return 100 if head[PAGE_SIZE - len(SWAP_MAGIC):PAGE_SIZE] == SWAP_MAGIC else 0

    def open(self, path: str) -> SwapArea:
        return SwapArea(path)


@hookimpl
def kvmfx_swap_formats() -> list[LinuxSwapFormat]:
    return [LinuxSwapFormat()]
