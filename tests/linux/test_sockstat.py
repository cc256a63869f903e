"""sockstat on real dumps, against the guest's own /proc: every socket of its
/proc/net/{tcp,tcp6,udp,udp6,unix} is a row with the same addresses, ports, state, inode, uid
and unix name, no row is more, and each socket's owners are exactly the processes and
descriptors whose /proc/PID/fd/N link shows ``socket:[INODE]``; on every format of every
kernel of the matrix (5.10 .. the newest, x86_64 and arm64 with 4K and 16K pages), and on
the PREEMPT_RT and 5-level paging builds."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

import kvmfx
from kvmfx_plugins.linux.net import UNIX_HASH_SIZE, net
from tests.factory import ALL_DUMPS, get_fixture
from tests.factory.scenarios import SCENARIOS
from tests.linux.test_hostile_memory import _copy
from tests.linux.test_kernel_matrix import FILTERED, KERNELS, QEMU_CANNOT

#: the aarch64 fixtures: Debian 12's 6.1 with 4K pages, Debian 13's 6.12 with 16K pages
#: (symbol tables of code only: the tables are found through struct net and the code)
ARM64 = ("arm64", "arm64-16k")
#: this machine's makedumpfile reads x86_64 dumps only: the aarch64 fixtures record its
#: formats as not produced (tests/arch/test_aarch64_fixtures.py)
MAKEDUMPFILE = {key for key, (_, producer) in ALL_DUMPS.items()
                if "makedumpfile" in producer}
#: the same kernel as basic in another build (PREEMPT_RT: other lock sizes, so other
#: bucket strides) and with 5-level paging (kernel addresses from 0xff11...)
OTHER = ("rt", "la57")
CASES = [(name, key) for name in (*KERNELS, *ARM64, *OTHER)
         for key in (SCENARIOS[name].dumps or ALL_DUMPS) if key not in QEMU_CANNOT
         and not (name in ARM64 and key in MAKEDUMPFILE)]
#: makedumpfile -d 31 leaves out what it takes for user pages: on kernels newer than it
#: knows (1.7.2 before 6.1), slab pages among them, where sockets and files live
FULL = [(name, key) for name, key in CASES if key not in FILTERED]
PARTIAL = [(name, key) for name, key in CASES if key in FILTERED]

#: include/net/tcp_states.h, in order from 1
TCP_STATES = ["ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
              "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"]
#: /proc/net/unix: its Type column (enum sock_type) and St column (socket_state)
UNIX_TYPES = {1: "stream", 2: "dgram", 5: "seqpacket"}
UNIX_ST = {1: "UNCONNECTED", 2: "CONNECTING", 3: "CONNECTED", 4: "DISCONNECTING"}
__SO_ACCEPTCON = 1 << 16


def _proc_addr(text: str) -> tuple[Any, int]:
    """``ADDR:PORT`` as /proc/net/tcp prints it: the address as the machine's words in hex
    (%08X of each __be32), the port in host order."""
    addr, port = text.split(":")
    raw = b"".join(int(addr[i:i + 8], 16).to_bytes(4, "little")
                   for i in range(0, len(addr), 8))
    return ipaddress.ip_address(raw), int(port, 16)


def inet_truth(truth: dict[str, Any]) -> Counter:
    """The sockets of the guest's /proc/net/{tcp,tcp6,udp,udp6}: (proto, local address,
    local port, remote address, remote port, state, inode, uid)."""
    out: Counter = Counter()
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        text = truth["net"][proto]
        if text is None:
            assert proto.endswith("6") and not truth["ipv6"]
            continue
        for line in text.splitlines()[1:]:
            f = line.split()
            if not f:
                continue
            local, lport = _proc_addr(f[1])
            remote, rport = _proc_addr(f[2])
            out[(proto, local, lport, remote, rport, TCP_STATES[int(f[3], 16) - 1],
                 int(f[9]), int(f[7]))] += 1
    return out


def unix_truth(truth: dict[str, Any]) -> Counter:
    """The sockets of the guest's /proc/net/unix: (inode, name, type, St, listening)."""
    out: Counter = Counter()
    for line in truth["net"]["unix"].splitlines()[1:]:
        f = line.split(None, 7)
        if not f:
            continue
        flags, type_, st, inode = int(f[3], 16), int(f[4], 16), int(f[5], 16), int(f[6])
        out[(inode, f[7] if len(f) > 7 else None, UNIX_TYPES[type_], UNIX_ST[st],
             bool(flags & __SO_ACCEPTCON))] += 1
    return out


def owner_truth(truth: dict[str, Any]) -> dict[int, list[tuple[int, int]]]:
    """socket inode -> the (pid, fd) whose /proc/PID/fd/N link names it. pid 1 (the shell
    that records the truth, its descriptors changing meanwhile) is left out."""
    out: dict[int, list[tuple[int, int]]] = {}
    for pid, proc in truth["processes"].items():
        if pid == "1":
            continue
        for fd, link in proc["fd"].items():
            if link.startswith("socket:["):
                out.setdefault(int(link[8:-1]), []).append((int(pid), int(fd)))
    return {inode: sorted(held) for inode, held in out.items()}


def inet_rows(rows: list[dict[str, Any]]) -> Counter:
    return Counter((r["proto"], ipaddress.ip_address(r["local_addr"]), r["local_port"],
                    ipaddress.ip_address(r["remote_addr"]), r["remote_port"], r["state"],
                    r["inode"], r["uid"])
                   for r in rows if r["proto"] in ("tcp", "tcp6", "udp", "udp6"))


def unix_rows(rows: list[dict[str, Any]]) -> Counter:
    return Counter((r["inode"], r["path"], r["type"], r["state"], r["listening"])
                   for r in rows if r["proto"] == "unix")


def owner_rows(rows: list[dict[str, Any]]) -> dict[int, list[tuple[int, int]]]:
    out = {}
    for r in rows:
        held = sorted((o["pid"], o["fd"]) for o in r["owners"] if o["pid"] != 1)
        if held:
            assert r["inode"] not in out, r
            out[r["inode"]] = held
    return out


def _sockstat(path: str, **options: Any) -> tuple[list[dict[str, Any]], list[str]]:
    with kvmfx.open(path) as s:
        rows = list(s.registry.command("sockstat").run(s, options))
        return rows, list(s.warnings)


def _dump(fx: Any, key: str) -> str:
    assert key in fx.files, fx.manifest.get("not_produced", {}).get(key)
    return str(fx.path(key))


@pytest.mark.parametrize(("name", "key"), FULL)
def test_every_socket_matches_the_guest(name, key):
    fx = get_fixture(name)
    rows, warnings = _sockstat(_dump(fx, key))
    assert warnings == []
    assert [r for r in rows if r["missing"] or r["partial"]] == []
    assert len({r["netns"] for r in rows}) == 1  # the guest has one network namespace
    assert [r for r in rows if not r["in_table"]] == []  # every socket is bound or listed
    expected_inet, expected_unix = inet_truth(fx.truth), unix_truth(fx.truth)
    assert sum(expected_inet.values()) >= (6 if fx.truth["ipv6"] else 4)
    assert inet_rows(rows) == expected_inet
    assert unix_rows(rows) == expected_unix
    assert len(rows) == sum(expected_inet.values()) + sum(expected_unix.values())
    assert owner_rows(rows) == owner_truth(fx.truth)


def _by_address(path: str) -> tuple[dict[int, dict[str, Any]], list[str]]:
    """sockstat's rows by the address of each socket's structure, and the warnings."""
    with kvmfx.open(path) as s:
        found = net(s.profile.kernel(s)).sockets()
        return {sock.address: sock.as_row() for sock in found}, list(s.warnings)


#: the table each protocol's sockets are found in, as the warnings name it
TABLES = {"tcp": "TCP", "tcp6": "TCP", "udp": "UDP", "udp6": "UDP", "unix": "unix"}


@pytest.mark.parametrize(("name", "key"), PARTIAL)
def test_a_filtered_dump_never_shows_a_wrong_socket_and_says_what_it_lacks(name, key):
    """A dump that leaves pages out: each socket listed is the full dump's socket of the
    same instant (the same structure), every field that is not null is that socket's, an
    owner list that may be cut short says so; a socket not listed at all sits behind a
    table chain or a file table the warnings name as unreadable."""
    fx = get_fixture(name)
    full, full_warnings = _by_address(str(fx.path("elf")))
    assert full_warnings == []
    part, warnings = _by_address(_dump(fx, key))
    assert set(part) <= set(full)
    for address, row in part.items():
        want, missing = full[address], row["missing"] or {}
        for column, value in row.items():
            if column in ("owners", "partial", "missing"):
                continue  # (owners: a list, cut short where partial)
            if column in missing:
                assert value is None, (column, row)
            else:
                assert value == want[column], (column, row, want)
        held = [o for o in want["owners"] if o in row["owners"]]
        assert held == row["owners"]  # never an owner the full dump does not show
        assert row["partial"] == ("owners" in missing)
        if not row["partial"]:
            assert row["owners"] == want["owners"]
    for address in set(full) - set(part):
        want = full[address]
        table = TABLES[want["proto"]]
        assert any(w.startswith(table) for w in warnings), (want, warnings)
        for owner in want["owners"]:
            assert any(w.startswith(f"pid {owner['pid']}") for w in warnings), (want, owner)
    if part != full:
        assert warnings  # exit status 4: partial


@pytest.fixture(scope="module")
def basic_rows():
    fx = get_fixture("basic")
    rows, _ = _sockstat(str(fx.path("elf")))
    return fx, rows


def _held(rows: list[dict[str, Any]], pid: int, fd: int) -> dict[str, Any]:
    (row,) = [r for r in rows if {"pid": pid, "fd": fd} in r["owners"]]
    return row


def test_the_planted_sockets_of_each_role(basic_rows):
    """What each planted process set up (tests/factory/guest/kvmfx-helper.c), row by row."""
    fx, rows = basic_rows
    roles = fx.truth["roles"]
    server, client, udp, unix = (roles[r] for r in ("tcp_server", "tcp_client", "udp",
                                                    "unix"))
    listen = _held(rows, server, 3)
    assert (listen["proto"], listen["state"], listen["listening"], listen["local_addr"],
            listen["local_port"]) == ("tcp", "LISTEN", True, "127.0.0.1", 4444)
    assert (listen["remote_addr"], listen["remote_port"]) == ("0.0.0.0", 0)
    listen6 = _held(rows, server, 4)
    assert (listen6["proto"], listen6["state"], listen6["local_addr"],
            listen6["local_port"]) == ("tcp6", "LISTEN", "::1", 4446)
    accepted, connected = _held(rows, server, 5), _held(rows, client, 3)
    assert accepted["state"] == connected["state"] == "ESTABLISHED"
    assert (accepted["local_addr"], accepted["local_port"]) == \
        (connected["remote_addr"], connected["remote_port"]) == ("127.0.0.1", 4444)
    assert (accepted["remote_addr"], accepted["remote_port"]) == \
        (connected["local_addr"], connected["local_port"])
    assert connected["owners"] == [{"pid": client, "fd": 3}]
    u4, u6 = _held(rows, udp, 3), _held(rows, udp, 4)
    assert (u4["proto"], u4["type"], u4["state"], u4["local_addr"], u4["local_port"]) == \
        ("udp", "dgram", "CLOSE", "0.0.0.0", 5353)
    assert (u6["proto"], u6["local_addr"], u6["local_port"]) == ("udp6", "::", 5354)
    bound = _held(rows, unix, 3)
    assert (bound["proto"], bound["type"], bound["path"], bound["listening"],
            bound["state"]) == ("unix", "stream", "/tmp/kvmfx.sock", True, "UNCONNECTED")
    abstract = _held(rows, unix, 4)
    assert (abstract["type"], abstract["path"], abstract["listening"]) == \
        ("dgram", "@kvmfx-abstract", False)
    pair = [_held(rows, unix, 5), _held(rows, unix, 6)]
    assert [(p["type"], p["state"], p["path"]) for p in pair] == \
        [("stream", "CONNECTED", None)] * 2
    for r in rows:
        assert (r["local_addr"] is None) == (r["proto"] == "unix")
        assert r["uid"] == 0  # the planted processes run as root


def test_filters_by_process_and_protocol(basic_rows):
    fx, rows = basic_rows
    unix = fx.truth["roles"]["unix"]
    by_pid, _ = _sockstat(str(fx.path("elf")), pid=unix)
    assert by_pid == [r for r in rows if any(o["pid"] == unix for o in r["owners"])]
    assert len(by_pid) == 4
    udp6, _ = _sockstat(str(fx.path("elf")), proto="udp6")
    assert [r["local_port"] for r in udp6] == [5354]


def test_the_command_line_json(basic_rows):
    fx, rows = basic_rows
    r = subprocess.run([sys.executable, "-m", "kvmfx.cli", "run", "sockstat",
                        str(fx.path("elf")), "--format", "json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == rows


# -- hostile memory: a copy of the dump, edited (tests/linux/test_hostile_memory.py) --------
def _edited(fx: Any, tmp_path: Any, edit: Any) -> tuple[str, list[dict[str, Any]]]:
    """A copy of the basic ELF dump with ``edit(session, net, sockets)`` -> [(address,
    bytes)] written into it, and the rows the original gives."""
    path = _copy(fx, tmp_path)
    with kvmfx.open(str(path)) as s:
        n = net(s.profile.kernel(s))
        found = n.sockets()
        patches = []
        for vaddr, data in edit(s, n, found):
            paddr, _ = s.kernel.translate(vaddr)
            seg = next(g for g in s.physical.segments if g.paddr <= paddr < g.paddr + g.size)
            patches.append((seg.offset + (paddr - seg.paddr), data))
    with open(path, "r+b") as f:
        for offset, data in patches:
            f.seek(offset)
            f.write(data)
    return str(path), [sock.as_row() for sock in found]


def _client(fx: Any, found: list[Any]) -> Any:
    (sock,) = [x for x in found if (fx.truth["roles"]["tcp_client"], 3) in x.owners]
    return sock


@pytest.mark.hostile
def test_a_looping_hash_chain_stops_and_says_so(tmp_path):
    fx = get_fixture("basic")

    def loop(s, n, found):  # the client's socket links to itself in the established hash
        node = _client(fx, found).address + n.nulls_off
        return [(node, node.to_bytes(8, "little"))]

    path, before = _edited(fx, tmp_path, loop)
    rows, warnings = _sockstat(path)
    assert any(w.startswith("TCP established hash: a chain loops") for w in warnings)
    assert rows == before  # each socket once


@pytest.mark.hostile
def test_a_hash_chain_into_poison_stops_and_says_so(tmp_path):
    fx = get_fixture("basic")

    def poison(s, n, found):  # LIST_POISON1, what hlist_nulls_del leaves behind
        node = _client(fx, found).address + n.nulls_off
        return [(node, (0xDEAD000000000100).to_bytes(8, "little"))]

    path, before = _edited(fx, tmp_path, poison)
    rows, warnings = _sockstat(path)
    assert any("a chain is broken at 0xdead000000000100: not a kernel" in w
               for w in warnings)
    assert len(rows) == len(before)  # the rest of the chain was the poison


@pytest.mark.hostile
def test_an_absurd_table_size_is_not_read(tmp_path):
    fx = get_fixture("basic")

    def huge(s, n, found):  # ehash_mask: 2^32 buckets
        (table,) = n.tcp_tables(n.namespaces())
        return [(table + s.types.offsetof("inet_hashinfo", "ehash_mask"),
                 (0xFFFFFFFF).to_bytes(4, "little"))]

    path, before = _edited(fx, tmp_path, huge)
    rows, warnings = _sockstat(path)
    assert any("4294967296 buckets is no table's size" in w for w in warnings)
    established = [r for r in before if r["state"] == "ESTABLISHED"]
    assert len(established) == 2
    # the connections are still listed, through their descriptors: whether the table
    # holds them is unknown (null), not false
    for r in established:
        (row,) = [x for x in rows if x["inode"] == r["inode"]]
        assert row["in_table"] is None and "TCP established hash" in row["missing"]["in_table"]
        assert {k: v for k, v in row.items() if k not in ("in_table", "missing")} == \
            {k: v for k, v in r.items() if k not in ("in_table", "missing")}
    assert [r for r in rows if r["in_table"]] == [r for r in before
                                                  if r["state"] != "ESTABLISHED"]


def test_time_wait_and_syn_recv_entries_read_as_proc_prints_them(tmp_path):
    """The established hash's smaller entries (the guest keeps none: its connections are
    idle), made in a copy from its two connected sockets: the client's becomes an
    inet_timewait_sock in FIN_WAIT2 (TIME_WAIT's substate while the peer's FIN is awaited),
    the server's accepted one a request_sock whose listener is the server's listener (its
    uid made 1234): both show inode 0, the TIME_WAIT uid 0, the request its listener's."""
    fx = get_fixture("basic")
    roles = fx.truth["roles"]

    def mini(s, n, found):
        (listener,) = [x for x in found if (roles["tcp_server"], 3) in x.owners]
        (accepted,) = [x for x in found if (roles["tcp_server"], 5) in x.owners]
        client = _client(fx, found)
        state = s.types.offsetof("sock_common", "skc_state")
        return [(client.address + state, bytes([6])),
                (client.address + s.types.offsetof("inet_timewait_sock", "tw_substate"),
                 bytes([5])),
                (accepted.address + state, bytes([12])),
                (accepted.address + s.types.offsetof("sock_common", "skc_listener"),
                 listener.address.to_bytes(8, "little")),
                (listener.address + s.types.offsetof("sock", "sk_uid"),
                 (1234).to_bytes(4, "little"))]

    path, before = _edited(fx, tmp_path, mini)
    rows, warnings = _sockstat(path)
    assert warnings == []
    was = {(o["pid"], o["fd"]): r for r in before for o in r["owners"]}
    now = {(o["pid"], o["fd"]): r for r in rows for o in r["owners"]}
    same = ("netns", "proto", "type", "listening", "local_addr", "local_port",
            "remote_addr", "remote_port", "path", "owners", "in_table")
    for key, state, uid in (((roles["tcp_client"], 3), "FIN_WAIT2", 0),
                            ((roles["tcp_server"], 5), "SYN_RECV", 1234)):
        assert (now[key]["state"], now[key]["inode"], now[key]["uid"]) == (state, 0, uid)
        assert {c: now[key][c] for c in same} == {c: was[key][c] for c in same}
    assert now[(roles["tcp_server"], 3)]["uid"] == 1234


def test_a_socket_unlinked_from_its_table_is_still_listed_from_its_descriptor(tmp_path):
    """A unix socket taken out of the unix table in a copy of the dump (what a rootkit does
    to hide it from /proc/net/unix and ss): its descriptor still shows it, with in_table
    false."""
    fx = get_fixture("basic")
    key = (fx.truth["roles"]["unix"], 5)

    def unlink(s, n, found):
        (sock,) = [x for x in found if key in x.owners]
        node = sock.address + n.node_off
        after = s.read(node, 8)
        (table,) = n.unix_tables(n.namespaces())
        for bucket in range(UNIX_HASH_SIZE):  # the link that leads to it: a head or a node
            link = table + bucket * 8
            while (at := int.from_bytes(s.read(link, 8), "little")) not in (0, node):
                link = at
            if at == node:
                return [(link, after)]
        raise AssertionError("the socket is in no chain")

    path, before = _edited(fx, tmp_path, unlink)
    rows, warnings = _sockstat(path)
    assert warnings == []
    (was,) = [r for r in before if {"pid": key[0], "fd": key[1]} in r["owners"]]
    (now,) = [r for r in rows if {"pid": key[0], "fd": key[1]} in r["owners"]]
    assert was["in_table"] is True and now == {**was, "in_table": False}
    assert len(rows) == len(before)
