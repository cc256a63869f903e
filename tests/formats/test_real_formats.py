"""Every dump format of one real capture reads byte-for-byte like the raw physical image."""

from __future__ import annotations

import hashlib
import random

import pytest

import kvmfx
from kvmfx.errors import MissingPageError
from tests.factory import get_fixture

PAGE = 4096
VGA_HOLE = range(0xA0000, 0xC0000)
FULL = ["elf", "kdump-zlib", "mdf-zlib", "mdf-lzo", "flattened", "lime"]
FORMAT_NAMES = {"elf": "elf", "kdump-zlib": "flattened", "mdf-zlib": "kdump",
                "mdf-lzo": "kdump", "flattened": "flattened", "lime": "lime", "raw": "raw",
                "mdf-zlib-d31": "kdump"}


@pytest.fixture(scope="module")
def fx():
    return get_fixture("basic")


@pytest.fixture(scope="module")
def raw(fx):
    return fx.path("raw").read_bytes()


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("key", FULL)
def test_every_page_equals_the_raw_image(fx, raw, key):
    with kvmfx.open(str(fx.path(key))) as s:
        layer = s.physical
        assert layer.format_name == FORMAT_NAMES[key]
        for page in range(0, len(raw), PAGE):
            if page in VGA_HOLE:
                with pytest.raises(MissingPageError):
                    layer.read(page, PAGE)  # QEMU does not dump the legacy VGA window
                continue
            assert layer.read(page, PAGE) == raw[page:page + PAGE], hex(page)


@pytest.mark.parametrize("key", [*FULL, "raw"])
def test_random_unaligned_reads_agree(fx, raw, key):
    rnd = random.Random(key)
    with kvmfx.open(str(fx.path(key))) as s:
        for _ in range(2000):
            addr = rnd.randrange(0, len(raw) - 3 * PAGE)
            size = rnd.randrange(1, 3 * PAGE)
            if key != "raw" and addr < VGA_HOLE.stop and addr + size > VGA_HOLE.start:
                continue
            assert s.read_physical(addr, size) == raw[addr:addr + size], hex(addr)


def test_excluded_pages_are_missing_not_zero(fx, raw):
    with kvmfx.open(str(fx.path("mdf-zlib-d31"))) as s:
        layer = s.physical
        present = missing = 0
        for page in range(0, len(raw), PAGE):
            if page in VGA_HOLE:
                continue
            try:
                data = layer.read(page, PAGE)
            except MissingPageError as exc:
                assert exc.address == page and "not in the dump" in str(exc)
                missing += 1
                continue
            assert data == raw[page:page + PAGE]
            present += 1
        assert missing > 1000 and present > 1000
        assert "excluded" in layer.describe()["missing"]
        first_missing = next(p for p in range(0x100000, len(raw), PAGE)
                             if not layer._range_at(p))
        assert layer.read(first_missing, PAGE, zero_fill=True) == bytes(PAGE)


def test_holes_between_ranges_are_missing(fx):
    with kvmfx.open(str(fx.path("elf"))) as s, pytest.raises(MissingPageError,
                                                             match="not in the dump"):
        s.read_physical(0xA0000, 16)  # the legacy VGA hole QEMU does not dump


@pytest.mark.parametrize("key", [*FULL, "raw", "mdf-zlib-d31"])
def test_notes_and_kernel_found_and_evidence_unchanged(fx, key):
    path = fx.path(key)
    before = fx.manifest["files"][key]["sha256"]
    with kvmfx.open(str(path)) as s:
        info = s.info()
        assert info["kernel_release"] == fx.truth["kernel"]["release"]
        assert info["dtb_source"] == "vmcoreinfo"
        assert info["banner"] == fx.truth["kernel"]["version"]
        assert "errors" not in info, info.get("errors")
        with pytest.raises(kvmfx.ReadOnlyError):
            s.write(s.symbols.address_of("linux_banner"), b"X")
    assert _sha(path) == before


def test_cpu_notes_carry_cr3(fx):
    for key in ("elf", "kdump-zlib"):
        with kvmfx.open(str(fx.path(key))) as s:
            cpus = s.cpus
            assert cpus and all(c["cr3"] for c in cpus)
