"""The kernel log of Linux 5.10+ kernels: the lockless printk ring buffer (``prb``).

kernel/printk/printk_ringbuffer.h: a descriptor ring (``descs``, ``infos``; each descriptor's
``state_var`` holds its id and state in the top two bits) and a text data ring whose blocks
start with the owning descriptor's id. Records are read from ``tail_id`` to ``head_id``;
records that are not committed/finalized, or whose text block is inconsistent, are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from kvmfx.errors import KvmError
from kvmfx.objects import Object
from kvmfx.session import Session

DESC_FLAGS_SHIFT = 62
DESC_ID_MASK = (1 << DESC_FLAGS_SHIFT) - 1
DESC_COMMITTED, DESC_FINALIZED = 1, 2
#: The most records read (the ring holds far fewer; a corrupt head/tail cannot loop).
MAX_RECORDS = 1 << 20


@dataclass
class LogRecord:
    seq: int
    ts_nsec: int
    level: int
    facility: int
    caller_id: int
    text: str


def atomic(value: int | Object) -> int:
    """The value of an atomic_t / atomic_long_t member (a struct with ``counter``)."""
    return int(value.counter) if isinstance(value, Object) else int(value)


def log_records(session: Session) -> Iterator[LogRecord]:
    """Every readable record of the printk ring buffer, oldest first."""
    types, read = session.types, session.read
    prb_ptr = int.from_bytes(read(session.symbols.address_of("prb"), 8), "little")
    prb = Object(types, "printk_ringbuffer", prb_ptr, read)
    desc_ring, text_ring = prb.desc_ring, prb.text_data_ring
    count_bits, size_bits = desc_ring.count_bits, text_ring.size_bits
    if not 0 < count_bits <= 24 or not 0 < size_bits <= 31:
        raise KvmError(f"printk ring buffer sizes are implausible (2^{count_bits} "
                       f"descriptors, 2^{size_bits} bytes)", address=prb_ptr)
    count, size = 1 << count_bits, 1 << size_bits
    desc_size = types.struct_size("prb_desc")
    info_size = types.struct_size("printk_info")
    data = read(text_ring.data, size)
    tail = atomic(desc_ring.tail_id) & DESC_ID_MASK
    head = atomic(desc_ring.head_id) & DESC_ID_MASK
    span = (head - tail) & DESC_ID_MASK
    if span >= min(count, MAX_RECORDS):
        span = count - 1
        tail = (head - span) & DESC_ID_MASK
    descs = read(desc_ring.descs, count * desc_size)
    infos = read(desc_ring.infos, count * info_size)
    for i in range(span + 1):
        rid = (tail + i) & DESC_ID_MASK
        slot = rid % count
        desc = Object(types, "prb_desc", 0, buf=descs, base=slot * desc_size)
        sv = atomic(desc.state_var) & ((1 << 64) - 1)
        if sv & DESC_ID_MASK != rid or (sv >> DESC_FLAGS_SHIFT) not in (DESC_COMMITTED,
                                                                       DESC_FINALIZED):
            continue
        info = Object(types, "printk_info", 0, buf=infos, base=slot * info_size)
        begin, nxt = desc.text_blk_lpos.begin, desc.text_blk_lpos.next
        text_len = info.text_len
        start = begin % size
        if begin & 1 or nxt & 1 or not text_len:
            continue  # data-less record
        if (nxt % size) <= start and nxt // size != begin // size:
            start = 0  # the block wrapped: it was written at the ring's start
        block = data[start:start + 8 + text_len]
        if len(block) < 8 + text_len or int.from_bytes(block[:8], "little") != rid:
            continue
        yield LogRecord(info.seq, info.ts_nsec, info.level, info.facility, info.caller_id,
                        block[8:].decode("utf-8", "backslashreplace"))
