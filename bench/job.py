"""The job the headline figures time, as a whole process: every process's pid, ppid, comm,
argv and environment, as one JSON document on stdout.

    python -m bench.job kvmfx DUMP
    python -m bench.job drgn DUMP VMLINUX      (under the peers' interpreter)

Both list thread-group leaders (drgn's for_each_task gives every thread: threads are left
out) and decode strings as kvmfx does (UTF-8, undecodable bytes as \\xNN). The process's
own peak resident set (VmHWM) is written to ``$BENCH_RSS_FILE`` when it is set (ru_maxrss
would also count what the launching process had at fork).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def _strings(items: Any) -> list[str] | None:
    if items is None:
        return None
    return [bytes(b).decode("utf-8", "backslashreplace") for b in items]


def kvmfx_job(dump: str) -> list[dict[str, Any]]:
    import kvmfx

    with kvmfx.open(dump) as s:
        rows = []
        for p in s.processes():
            argv, envv = s.argv(p), s.envv(p)
            rows.append({"pid": p.pid, "ppid": p.ppid, "comm": p.comm,
                         "argv": argv.strings() if argv.readable else None,
                         "envv": envv.strings() if envv.readable else None})
        return rows


def drgn_job(dump: str, vmlinux: str) -> list[dict[str, Any]]:
    import drgn
    from drgn.helpers.linux.mm import cmdline, environ
    from drgn.helpers.linux.pid import for_each_task

    prog = drgn.Program()
    prog.set_core_dump(dump)
    prog.load_debug_info([vmlinux])
    rows = []
    for t in for_each_task(prog):
        if t.pid.value_() != t.tgid.value_():
            continue
        row: dict[str, Any] = {"pid": t.pid.value_(), "ppid": t.real_parent.tgid.value_(),
                               "comm": t.comm.string_().decode("utf-8", "backslashreplace")}
        for key, helper in (("argv", cmdline), ("envv", environ)):
            try:
                row[key] = _strings(helper(t))
            except drgn.FaultError:
                row[key] = None
        rows.append(row)
    return rows


def peak_rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    tool, args = sys.argv[1], sys.argv[2:]
    rows = kvmfx_job(*args) if tool == "kvmfx" else drgn_job(*args)
    json.dump(rows, sys.stdout)
    sys.stdout.flush()
    where = os.environ.get("BENCH_RSS_FILE")
    if where:
        with open(where, "w") as f:
            f.write(str(peak_rss_kib()))


if __name__ == "__main__":
    main()
