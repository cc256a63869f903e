"""Linux swap areas made by the real mkswap; swap entries of x86_64 PTEs."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest

from kvmfx.errors import FormatError, MissingPageError
from kvmfx_plugins.arch.x86_64 import swap_entry as x86_64_swap_entry
from kvmfx_plugins.formats.swap import SwapArea, parse_swap_header

PAGE = 4096


@pytest.fixture
def swapfile(tmp_path):
    path = tmp_path / "swap.img"
    path.write_bytes(bytes(PAGE * 64))
    mkswap = shutil.which("mkswap") or "/sbin/mkswap"
    subprocess.run([mkswap, "-L", "kvmfxswap", "-U", "0b3c9c9e-6a6f-4f43-9b5e-0123456789ab",
                    str(path)], check=True, capture_output=True)
    data = bytearray(path.read_bytes())
    data[5 * PAGE:6 * PAGE] = b"swapped argv\0" * (PAGE // 13) + b"\0" * (PAGE % 13)
    path.write_bytes(bytes(data))
    return path


def test_mkswap_header_is_understood(swapfile):
    h = parse_swap_header(swapfile.read_bytes()[:PAGE])
    assert h.version == 1 and h.last_page == 63
    assert h.label == "kvmfxswap"
    assert h.uuid == "0b3c9c9e-6a6f-4f43-9b5e-0123456789ab"


def test_slot_reads_and_bounds(swapfile):
    before = hashlib.sha256(swapfile.read_bytes()).hexdigest()
    area = SwapArea(str(swapfile))
    assert area.read_slot(5).startswith(b"swapped argv\0")
    with pytest.raises(MissingPageError, match="slot 0"):
        area.read_slot(0)
    with pytest.raises(MissingPageError, match="slot 64"):
        area.read_slot(64)
    area.close()
    assert hashlib.sha256(swapfile.read_bytes()).hexdigest() == before


def test_not_swap_is_a_format_error(tmp_path):
    with pytest.raises(FormatError, match="SWAPSPACE2"):
        parse_swap_header(bytes(PAGE))
    with pytest.raises(FormatError, match="needs 4096"):
        parse_swap_header(b"short")


def test_x86_64_swap_entry_round_trip():
    # __swp_entry(type, offset) as the kernel builds it: ~offset in bits 9..58, type on top
    def make(t: int, off: int) -> int:
        return ((t << 59) | ((~off & ((1 << 50) - 1)) << 9)) & 0xFFFFFFFFFFFFFFFF
    for t, off in [(0, 1), (0, 12345), (3, 0x3FFFF), (31, 1 << 40)]:
        assert x86_64_swap_entry(make(t, off)) == (t, off)
