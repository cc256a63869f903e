"""Kernel image files: the vmlinux ELF inside a compressed x86 bzImage (vmlinuz).

:func:`extract_vmlinux` is a pure function: bzImage bytes in, vmlinux ELF bytes out (or the
input itself when it already is an ELF), FormatError otherwise.
"""

from __future__ import annotations

import struct
import zlib

from kvmfx.errors import FormatError

#: A decompressed kernel larger than this is refused (a bomb, or not a kernel).
MAX_VMLINUX = 512 << 20
_HDRS = b"HdrS"


# lzma and bz2 are imported when a kernel compressed with them is read (their errors
# given as ValueError)

def _xz(data: bytes) -> bytes:
    import lzma

    dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    try:
        out = dec.decompress(data, max_length=MAX_VMLINUX)
    except lzma.LZMAError as exc:
        raise ValueError(str(exc)) from None
    if not dec.eof:
        raise FormatError("xz payload is truncated or larger than the limit")
    return out


def _lzma(data: bytes) -> bytes:
    import lzma

    dec = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
    try:
        return dec.decompress(data, max_length=MAX_VMLINUX)
    except lzma.LZMAError as exc:
        raise ValueError(str(exc)) from None


def _gzip(data: bytes) -> bytes:
    dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
    return dec.decompress(data, MAX_VMLINUX)


def _zstd(data: bytes) -> bytes:
    import zstandard  # imported when a zstd kernel is read

    try:
        return zstandard.ZstdDecompressor().stream_reader(data).read(MAX_VMLINUX)
    except zstandard.ZstdError as exc:
        raise ValueError(str(exc)) from None


def _bzip2(data: bytes) -> bytes:
    import bz2

    dec = bz2.BZ2Decompressor()
    return dec.decompress(data, max_length=MAX_VMLINUX)


_CODECS = [(b"\xfd7zXZ\x00", "xz", _xz), (b"\x1f\x8b", "gzip", _gzip),
           (b"\x28\xb5\x2f\xfd", "zstd", _zstd), (b"\x5d\x00\x00", "lzma", _lzma),
           (b"BZh", "bzip2", _bzip2)]


def payload_codec(payload: bytes) -> str:
    for magic, name, _ in _CODECS:
        if payload.startswith(magic):
            return name
    return "unknown"


def extract_vmlinux(data: bytes) -> bytes:
    """The vmlinux ELF of a bzImage (or ``data`` itself when it is an ELF)."""
    if data[:4] == b"\x7fELF":
        return data
    if len(data) < 0x250 or data[0x202:0x206] != _HDRS:
        raise FormatError("not a kernel image (neither ELF nor an x86 bzImage)", offset=0x202)
    setup_sects = data[0x1F1] or 4
    pm_start = (setup_sects + 1) * 512
    payload_offset, payload_length = struct.unpack_from("<II", data, 0x248)
    start = pm_start + payload_offset
    if payload_length == 0 or start + payload_length > len(data):
        raise FormatError(f"bzImage payload {payload_offset:#x}+{payload_length:#x} lies "
                          "outside the file", offset=0x248)
    payload = data[start:start + payload_length]
    for magic, name, fn in _CODECS:
        if payload.startswith(magic):
            try:
                out = fn(payload)
            except (zlib.error, OSError, EOFError, ValueError) as exc:
                raise FormatError(f"{name} payload does not decompress: {exc}",
                                  offset=start) from None
            if out[:4] != b"\x7fELF":
                raise FormatError(f"{name} payload is not an ELF vmlinux", offset=start)
            return out
    raise FormatError(f"bzImage payload compression {payload[:6].hex()} is not supported "
                      "(xz, gzip, zstd, lzma, bzip2 are)", offset=start)
