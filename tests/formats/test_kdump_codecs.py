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
