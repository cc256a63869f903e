"""pstree draws its branches as pstree(1) does: ├─ for all children but the last, └─ for the
last, │ below a child whose younger siblings are still to come."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from tests.cli.test_live_commands import kvmfx

SLEEP = "import time; time.sleep(600)"
# A child that starts a grandchild and tells its pid on the shared stdout.
WITH_GRANDCHILD = ("import subprocess, sys, time\n"
                   f"g = subprocess.Popen([sys.executable, '-c', {SLEEP!r}])\n"
                   "print('grandchild', g.pid, flush=True)\n"
                   "time.sleep(600)\n")
PARENT = ("import subprocess, sys, time\n"
          f"kids = [subprocess.Popen([sys.executable, '-c', {WITH_GRANDCHILD!r}])]\n"
          f"kids += [subprocess.Popen([sys.executable, '-c', {SLEEP!r}]) for _ in range(2)]\n"
          "print('children', *(k.pid for k in kids), flush=True)\n"
          "time.sleep(600)\n")


def _spawn_tree() -> tuple[subprocess.Popen[str], list[int], int]:
    """A parent with three children, the first with a child of its own."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    assert parent.stdout is not None
    said = {}
    while len(said) < 2:
        word, *pids = parent.stdout.readline().split()
        said[word] = [int(p) for p in pids]
    return parent, said["children"], said["grandchild"][0]


def _children_prefix(row: dict[str, object]) -> str:
    """The prefix a row's children are drawn after, from the row's own drawing."""
    drawn = str(row["tree"])[:-len(str(row["comm"]))]
    if row["depth"] == 0:
        return ""
    return drawn[:-3] + ("   " if drawn.endswith("└─ ") else "│  ")


def test_pstree_draws_siblings_and_continuations():
    parent, children, grandchild = _spawn_tree()
    try:
        r = kvmfx("run", "pstree", "--format", "json")
        assert r.returncode in (0, 4), r.stderr
        rows = json.loads(r.stdout)
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
    order = [row["pid"] for row in rows]
    by_pid = {row["pid"]: row for row in rows}
    top = by_pid[parent.pid]
    start = order.index(parent.pid)
    # the subtree follows its root, depth first, children in the order listed
    kids = sorted(children, key=order.index)
    first = kids.index(children[0])  # the child that has a child
    subtree = [parent.pid, *kids[:first + 1], grandchild, *kids[first + 1:]]
    assert order[start:start + 5] == subtree, (order[start:start + 5], subtree)
    below = _children_prefix(top)
    expected = {pid: below + ("└─ " if i == len(kids) - 1 else "├─ ") + by_pid[pid]["comm"]
                for i, pid in enumerate(kids)}
    expected[grandchild] = (_children_prefix(by_pid[children[0]]) + "└─ "
                            + by_pid[grandchild]["comm"])
    got = {pid: by_pid[pid]["tree"] for pid in expected}
    assert got == expected
    assert _children_prefix(by_pid[children[0]]) == below + (
        "   " if children[0] == kids[-1] else "│  ")
    assert [by_pid[p]["depth"] for p in subtree] == [top["depth"]] + [
        top["depth"] + (2 if p == grandchild else 1) for p in subtree[1:]]


def test_pstree_text_draws_the_same_tree():
    parent, children, grandchild = _spawn_tree()
    try:
        js = {row["pid"]: row["tree"]
              for row in json.loads(kvmfx("run", "pstree", "--format", "json").stdout)}
        text = kvmfx("run", "pstree").stdout.splitlines()
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
    for pid in (*children, grandchild):
        drawn = [ln for ln in text if ln.startswith(js[pid] + " ")
                 and ln[len(js[pid]):].split()[0] == str(pid)]
        assert len(drawn) == 1, (pid, js[pid], text)
