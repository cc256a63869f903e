"""Every kdump page codec, on pages compressed by the codecs' own libraries.

The real fixtures cover zlib and LZO (QEMU 7.2 and Debian's makedumpfile build no snappy or
zstd), so snappy and zstd pages are built here with the same libraries makedumpfile links.
"""

from __future__ import annotations

import os
import zlib

import cramjam
import lzallright
import pytest
import zstandard

import kvmfx
from kvmfx_plugins.formats.kdump import (
    DUMP_DH_COMPRESSED_LZO,
    DUMP_DH_COMPRESSED_SNAPPY,
    DUMP_DH_COMPRESSED_ZLIB,
    DUMP_DH_COMPRESSED_ZSTD,
)
from tests.formats.test_bad_input import PAGE, _kdump

CODECS = {
    "zlib": (DUMP_DH_COMPRESSED_ZLIB, zlib.compress),
    "lzo": (DUMP_DH_COMPRESSED_LZO, lambda d: bytes(lzallright.LZOCompressor().compress(d))),
    "snappy": (DUMP_DH_COMPRESSED_SNAPPY, lambda d: bytes(cramjam.snappy.compress_raw(d))),
    "zstd": (DUMP_DH_COMPRESSED_ZSTD, lambda d: zstandard.ZstdCompressor().compress(d)),
}


@pytest.mark.parametrize("name", sorted(CODECS))
def test_codec_pages_decode_exactly(tmp_path, name):
    flag, compress = CODECS[name]
    pages = {pfn: (os.urandom(PAGE // 2) + bytes([pfn]) * (PAGE // 2)) for pfn in (1, 2, 7)}
    path = tmp_path / f"{name}.kdump"
    path.write_bytes(_kdump({pfn: (compress(data), flag) for pfn, data in pages.items()}))
    with kvmfx.open(str(path)) as s:
        assert s.physical.describe()["codec"] == name
        for pfn, data in pages.items():
            assert s.read_physical(pfn * PAGE, PAGE) == data
        assert s.read_physical(PAGE + 100, PAGE) == pages[1][100:] + pages[2][:100]


def test_a_snappy_page_claiming_a_huge_size_is_refused_unread(tmp_path):
    from kvmfx.errors import FormatError

    # varint 0x40000000 (1 GiB) then junk: the library would allocate 1 GiB up front
    bomb = bytes([0x80, 0x80, 0x80, 0x80, 0x04]) + b"\x00" * 32
    path = tmp_path / "snappy-bomb.kdump"
    path.write_bytes(_kdump({1: (bomb, DUMP_DH_COMPRESSED_SNAPPY)}))
    with kvmfx.open(str(path)) as s, pytest.raises(FormatError) as exc:
        s.read_physical(PAGE, 16)
    assert "more than one 4096-byte page" in str(exc.value) and "0x1000" in str(exc.value)
