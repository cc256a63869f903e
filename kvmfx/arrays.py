"""Integer arrays as little-endian bytes: the form profiles and type indexes are saved in,
whatever the byte order of the machine that reads or writes them."""

from __future__ import annotations

import array
import sys


def to_little(values: array.array[int]) -> bytes:
    """``values`` as little-endian bytes."""
    if sys.byteorder != "little":
        values = array.array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def from_little(typecode: str, blob: bytes) -> array.array[int]:
    """An array of ``typecode`` items from little-endian bytes (``len(blob)`` must be a
    multiple of the item size: ValueError otherwise)."""
    out = array.array(typecode)
    out.frombytes(blob)
    if sys.byteorder != "little":
        out.byteswap()
    return out


def from_big(typecode: str, blob: bytes) -> array.array[int]:
    """An array of ``typecode`` items from big-endian bytes (as :func:`from_little`)."""
    out = array.array(typecode)
    out.frombytes(blob)
    if sys.byteorder != "big":
        out.byteswap()
    return out
