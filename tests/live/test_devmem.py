"""/dev/mem is recognised as the mem device, its RAM ranges come from /proc/iomem."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import kvmfx
from kvmfx import kvm
from kvmfx.arch import VirtualLayer
from kvmfx.errors import MissingPageError, ReadOnlyError, TranslationError
from kvmfx.kernel import KernelImage
from kvmfx.layers import PAGE_SIZE, FileSource, Range
from kvmfx_plugins.formats.devmem import DevMemFormat, DevMemLayer, parse_iomem

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


# -- writing (kvm_write): a temporary file stands in for the device -------------------------
RAM = [Range(0x1000, 0x5000)]


def _stand_in(tmp_path) -> str:
    mem = tmp_path / "mem"
    mem.write_bytes(bytes(range(256)) * (0x5000 // 256))  # 20 KiB: RAM at 4-20 KiB
    return str(mem)


def test_devmem_opened_for_writing_writes_ram(tmp_path):
    path = _stand_in(tmp_path)
    with DevMemLayer.open_device(path, writable=True, ranges=RAM) as layer:
        assert layer.writable and layer.describe()["writable"] is True
        assert layer.write(0x1ffe, b"kvmfx") == 5  # across a page boundary
        assert layer.read(0x1ffe, 5) == b"kvmfx"
    with open(path, "rb") as f:
        f.seek(0x1ffe)
        assert f.read(5) == b"kvmfx"


def test_devmem_opened_read_only_refuses_writes(tmp_path):
    path = _stand_in(tmp_path)
    before = Path(path).read_bytes()
    with DevMemLayer.open_device(path, ranges=RAM) as layer:
        assert not layer.writable
        with pytest.raises(ReadOnlyError, match="opened read-only"):
            layer.write(0x1000, b"x")
    assert Path(path).read_bytes() == before


def test_devmem_writes_only_system_ram(tmp_path):
    with DevMemLayer.open_device(_stand_in(tmp_path), writable=True, ranges=RAM) as layer:
        with pytest.raises(MissingPageError, match="not System RAM") as exc:
            layer.write(0x4ffe, b"abcd")  # the last two bytes lie past the RAM range
        assert exc.value.address == 0x5000


def test_strict_devmem_refusal_says_so(tmp_path, monkeypatch):
    def eperm(fd, data, offset):  # what write_mem() answers for RAM under STRICT_DEVMEM
        raise PermissionError(1, "Operation not permitted")

    with DevMemLayer.open_device(_stand_in(tmp_path), writable=True, ranges=RAM) as layer:
        monkeypatch.setattr(os, "pwrite", eperm)
        with pytest.raises(ReadOnlyError) as exc:
            layer.write(0x2000, b"x")
    assert str(exc.value) == (f"{tmp_path}/mem, address 0x2000: the kernel refuses writes to "
                              "this address through /dev/mem (EPERM: a kernel built with "
                              "CONFIG_STRICT_DEVMEM allows no writes to RAM above the first "
                              "MiB)")


class _Identity(VirtualLayer):
    """Kernel pages 0xffff0000_0000X000 map to physical pages in reverse order."""

    BASE = 0xFFFF000000000000

    def translate(self, vaddr: int) -> tuple[int, int]:
        page = (vaddr - self.BASE) // PAGE_SIZE
        if page not in (0, 1):
            raise TranslationError("not mapped", address=vaddr)
        return (0x3000 if page == 0 else 0x1000) + vaddr % PAGE_SIZE, PAGE_SIZE


def _live_session(tmp_path, writable: bool) -> kvmfx.Session:
    s = kvmfx.Session(writable=writable)
    s._physical = DevMemLayer.open_device(_stand_in(tmp_path), writable=writable, ranges=RAM)
    s._image = KernelImage(os="linux", layer=_Identity(s._physical, 0))
    return s


def test_kvm_write_translates_each_page(tmp_path):
    with _live_session(tmp_path, writable=True) as s:
        kd = kvm.kvm_t(s, flags=kvm.O_RDWR)
        addr = _Identity.BASE + PAGE_SIZE - 2
        assert kvm.kvm_write(kd, addr, b"ABCD", 4) == 4, kvm.kvm_geterr(kd)
        assert s.read_physical(0x3ffe, 2) == b"AB" and s.read_physical(0x1000, 2) == b"CD"
        buf = bytearray(4)
        assert kvm.kvm_read(kd, addr, buf, 4) == 4 and buf == b"ABCD"
        before = s.read_physical(0x1000, 0x4000)
        # a range running into an unmapped page fails before anything is written
        assert kvm.kvm_write(kd, _Identity.BASE + 2 * PAGE_SIZE - 1, b"xy", 2) == -1
        assert "not mapped" in kvm.kvm_geterr(kd)
        assert s.read_physical(0x1000, 0x4000) == before


def test_kvm_write_on_a_read_only_live_session_says_so(tmp_path):
    with _live_session(tmp_path, writable=False) as s:
        kd = kvm.kvm_t(s)
        assert kvm.kvm_write(kd, _Identity.BASE, b"x", 1) == -1
        assert kvm.kvm_geterr(kd) == (f"address {_Identity.BASE:#x}: kernel memory was "
                                      "opened read-only (O_RDONLY)")


def test_a_mem_device_that_refuses_ram_is_not_opened(tmp_path, monkeypatch):
    """Under CONFIG_STRICT_DEVMEM /dev/mem opens but refuses every read of RAM above the first
    MiB (EPERM): it holds none of the kernel, so opening it is refused naming why, and
    kvm_open(3)'s chain goes on to /proc/kcore."""
    from kvmfx.errors import KvmOpenError
    from kvmfx.layers import FileSource
    from kvmfx_plugins.formats import devmem

    path = _stand_in(tmp_path)
    real_pread = os.pread

    def strict(fd, size, offset):  # read_mem(): devmem_is_allowed() is false above 1 MiB
        if offset >= 1 << 20:
            raise PermissionError(1, "Operation not permitted")
        return real_pread(fd, size, offset)

    monkeypatch.setattr(devmem, "read_iomem_ranges", lambda *a: parse_iomem(IOMEM))
    monkeypatch.setattr(os, "pread", strict)
    source = FileSource(path)
    with pytest.raises(KvmOpenError) as exc:
        DevMemFormat().open(source)
    source.close()
    assert str(exc.value) == (f"{path}: the kernel refuses reads of RAM through it (EPERM at "
                              "0x100000: CONFIG_STRICT_DEVMEM); read /proc/kcore instead")
    monkeypatch.setattr(os, "pread", real_pread)  # a device that reads RAM opens as before
    with FileSource(path) as source:
        assert DevMemFormat().open(source).ranges == parse_iomem(IOMEM)
