"""/dev/mem is recognised as the mem device, its RAM ranges come from /proc/iomem."""

from __future__ import annotations

import os

import pytest

from kvmfx.layers import FileSource, Range
from kvmfx_plugins.formats.devmem import DevMemFormat, parse_iomem

IOMEM = """00000000-00000fff : Reserved
00001000-0009fbff : System RAM
000f0000-000fffff : System ROM
00100000-bffd9fff : System RAM
  01000000-01e00db1 : Kernel code
100000000-23fffffff : System RAM
"""


def test_iomem_system_ram_ranges():
    assert parse_iomem(IOMEM) == [Range(0x1000, 0x9FC00), Range(0x100000, 0xBFFDA000),
                                  Range(0x100000000, 0x240000000)]


def test_only_the_mem_device_is_claimed(tmp_path):
    fmt = DevMemFormat()
    plain = tmp_path / "mem"
    plain.write_bytes(b"\0" * 4096)  # a file merely named like it
    with FileSource(str(plain)) as src:
        assert fmt.probe(b"", src) == 0
    dev = tmp_path / "memdev"
    try:
        os.mknod(dev, 0o600 | 0o020000, os.makedev(1, 1))
    except (PermissionError, OSError):
        pytest.skip("cannot create device nodes here")
    src = FileSource.__new__(FileSource)
    src.path = str(dev)
    assert fmt.probe(b"", src) == 100
