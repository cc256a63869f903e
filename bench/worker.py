"""One measurement, run in its own process: ``python -m bench.worker '<json task>'``.

Prints one JSON line: the figures and ``rss_mib`` (peak resident set of this process).
Runs under kvmfx's interpreter or the peers' (drgn), so it imports kvmfx only when needed.
"""

from __future__ import annotations

import json
import random
import resource
import sys
import time
from typing import Any

PAGE = 4096


def _pages(ranges: list[tuple[int, int]]) -> list[int]:
    return [p for a, b in ranges for p in range(a - a % PAGE, b, PAGE)]


def kvmfx_read(task: dict[str, Any]) -> dict[str, Any]:
    import kvmfx
    from kvmfx.errors import MissingPageError

    t0 = time.perf_counter()
    with kvmfx.open(task["path"]) as s:
        layer = s.physical
        pages = _pages([(r.start, r.end) for r in layer.ranges])
        if task["mode"] == "random":
            random.Random(1).shuffle(pages)
        pages = pages[:task.get("limit") or len(pages)]
        t1 = time.perf_counter()
        total = missing = 0
        for p in pages:
            try:
                total += len(layer.read(p, PAGE))
            except MissingPageError:
                missing += 1
        t2 = time.perf_counter()
    return {"bytes": total, "missing_pages": missing, "open_s": t1 - t0, "read_s": t2 - t1}


def drgn_read(task: dict[str, Any]) -> dict[str, Any]:
    import drgn

    t0 = time.perf_counter()
    prog = drgn.Program()
    prog.set_core_dump(task["path"])
    t1 = time.perf_counter()
    pages = _pages([tuple(r) for r in task["ranges"]])  # type: ignore[misc]
    if task["mode"] == "random":
        random.Random(1).shuffle(pages)
    total = missing = 0
    for p in pages:
        try:
            total += len(prog.read(p, PAGE, True))
        except drgn.FaultError:
            missing += 1
    t2 = time.perf_counter()
    return {"bytes": total, "missing_pages": missing, "open_s": t1 - t0, "read_s": t2 - t1}


def kvmfx_symbols(task: dict[str, Any]) -> dict[str, Any]:
    import kvmfx

    t0 = time.perf_counter()
    with kvmfx.open(task["path"], execfile=task.get("execfile"), types=task.get("types")) as s:
        s.types  # noqa: B018 - a cold run saves the profile only once types are loaded
        n = len(s.symbols)
        t1 = time.perf_counter()
        for struct in ("task_struct", "mm_struct", "cred", "signal_struct", "pid"):
            s.types.layout(struct)  # DWARF converts on demand: what psaux needs, ready
        nt = s.types.count
        t2 = time.perf_counter()
        src = s.symbols.source
    return {"symbols": n, "types": nt, "source": src, "symbols_s": t1 - t0,
            "types_s": t2 - t1, "total_s": t2 - t0}


def kvmfx_psaux(task: dict[str, Any]) -> dict[str, Any]:
    import kvmfx

    t0 = time.perf_counter()
    with kvmfx.open(task["path"], execfile=task.get("execfile"), types=task.get("types")) as s:
        n = 0
        for p in s.processes():
            s.argv(p)
            n += 1
    return {"processes": n, "total_s": time.perf_counter() - t0}


def codec_limit(task: dict[str, Any]) -> dict[str, Any]:
    """The codec's own speed on the dump's compressed pages (reads excluded)."""
    import kvmfx
    from kvmfx_plugins.formats.kdump import _PAGE_DESC, CODECS, PAGE_DESC_SIZE, _decompress

    with kvmfx.open(task["path"]) as s:
        layer = s.physical
        if not hasattr(layer, "h"):
            return {}
        h, reader = layer.h, layer.reader
        blobs = []
        for i in range(layer.dumped_pages):
            off, size, flags, _ = _PAGE_DESC.unpack(
                reader.read(h.desc_offset + i * PAGE_DESC_SIZE, PAGE_DESC_SIZE))
            blobs.append((flags & 0x27, reader.read(off, size)))
        t = time.perf_counter()
        out = 0
        for codec, blob in blobs:
            out += len(_decompress(codec, blob, h.block_size)) if codec else len(blob)
        dt = time.perf_counter() - t
        codecs = sorted({CODECS.get(c, "none") for c, _ in blobs})
    return {"mbps": out / (1 << 20) / dt, "codec": "+".join(codecs) + " alone"}


def drgn_symbols(task: dict[str, Any]) -> dict[str, Any]:
    import drgn

    t0 = time.perf_counter()
    prog = drgn.Program()
    prog.set_core_dump(task["path"])
    prog.load_debug_info([task["vmlinux"]])
    prog.type("struct task_struct")
    prog.symbol("init_task")
    return {"total_s": time.perf_counter() - t0}


def drgn_psaux(task: dict[str, Any]) -> dict[str, Any]:
    import drgn
    from drgn.helpers.linux.mm import cmdline
    from drgn.helpers.linux.pid import for_each_task

    t0 = time.perf_counter()
    prog = drgn.Program()
    prog.set_core_dump(task["path"])
    prog.load_debug_info([task["vmlinux"]])
    n = 0
    for t in for_each_task(prog):
        n += 1
        try:
            cmdline(t)
        except drgn.FaultError:
            pass
    return {"processes": n, "total_s": time.perf_counter() - t0}


TASKS = {"kvmfx-read": kvmfx_read, "drgn-read": drgn_read, "kvmfx-symbols": kvmfx_symbols,
         "kvmfx-psaux": kvmfx_psaux, "codec-limit": codec_limit, "drgn-symbols": drgn_symbols,
         "drgn-psaux": drgn_psaux}


def peak_rss_mib() -> float:
    """This process's own peak resident set (VmHWM of its address space). ru_maxrss is not:
    Linux carries the parent's high-water mark into it across fork and exec."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    task = json.loads(sys.argv[1])
    result = TASKS[task["kind"]](task)
    result["rss_mib"] = peak_rss_mib()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
