"""Linux sockets from kernel memory: the kernel's socket hash tables and the processes that
hold each socket open.

Sockets are found two ways and joined by their ``struct sock``:

* the tables /proc/net reads, of every network namespace: TCP's listening hash and its
  established hash (``struct inet_hashinfo``: ``listening_hash`` up to 5.18, ``lhash2``
  since; ``ehash``, which also holds TIME_WAIT and SYN_RECV entries as the smaller
  ``inet_timewait_sock`` and ``request_sock``), UDP's ``udp_table`` and the unix sockets'
  table (``unix_socket_table`` up to 5.18, each namespace's ``net->unx.table`` since);
* each process's open files: a descriptor whose file is a socket (``f_op`` is
  ``socket_file_ops``, or the file lives on sockfs) holds the ``struct socket`` in
  ``private_data``, and the socket's ``sk`` is the ``struct sock``.

A socket in a table that no descriptor holds (TIME_WAIT, a connection still in the accept
queue, a kernel socket, an orphan) has no owners; a socket that a descriptor holds but no
table lists (an unbound TCP socket, netlink, packet and raw sockets) is still listed.

Fields are decoded as /proc/net/{tcp,tcp6,udp,udp6,unix} print them (net/ipv4/tcp_ipv4.c
get_tcp4_sock, get_timewait4_sock, get_openreq4; net/ipv4/udp.c udp4_format_sock;
net/unix/af_unix.c unix_seq_show). Every walk is bounded (a chain loop, a wild pointer or a
table of absurd size ends it with a session warning), and one unreadable field is None with
the reason, never the loss of the socket.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kvmfx.errors import FormatError, KvmError
from kvmfx.objects import Fields, Object, member_at, read_with_holes
from kvmfx_plugins.linux.tasks import LinuxKernel, for_each_task

#: at most this many sockets are read from one table (a chain loop cannot spin)
MAX_SOCKETS = 1 << 20
#: a hash table of more buckets than this is memory that is not one (the kernel sizes its
#: established hash by RAM: a few million buckets on the largest machines)
MAX_BUCKETS = 1 << 24
#: at most this many network namespaces
MAX_NETNS = 1 << 16
#: buckets of the unix socket table: UNIX_HASH_SIZE (256) twice, the second half for
#: unbound sockets (include/net/af_unix.h; 512 on every kernel 5.10 .. 7.x, per
#: namespace since 5.19)
UNIX_HASH_SIZE = 512
#: buckets of 5.x's TCP listening hash (INET_LHTABLE_SIZE)
INET_LHTABLE_SIZE = 32
#: a unix socket's address is a struct sockaddr_un: 2 bytes of family, 108 of path
SOCKADDR_UN_SIZE = 110
#: buckets read at once
_CHUNK = 4096
#: the table (Net.incomplete's keys) each protocol's sockets are listed in
_TABLE_OF = {"tcp": "tcp", "tcp6": "tcp", "udp": "udp", "udp6": "udp", "unix": "unix"}
#: the fields of a socket whose structure cannot be read
UNREADABLE_FIELDS = ("netns", "proto", "type", "state", "listening", "local_addr",
                     "local_port", "remote_addr", "remote_port", "path", "inode", "uid")

AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW = 1, 2, 3
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6 = 1, 6, 17, 58

#: include/net/tcp_states.h
TCP_ESTABLISHED, TCP_SYN_RECV, TCP_TIME_WAIT, TCP_LISTEN, TCP_NEW_SYN_RECV = 1, 3, 6, 10, 12
TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1",
              5: "FIN_WAIT2", 6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK",
              10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV", 13: "BOUND_INACTIVE"}
#: /proc/net/unix's St column: the socket_state it shows (include/uapi/linux/net.h)
UNIX_STATES = {1: "UNCONNECTED", 2: "CONNECTING", 3: "CONNECTED", 4: "DISCONNECTING"}
SS_UNCONNECTED, SS_CONNECTING, SS_CONNECTED, SS_DISCONNECTING = 1, 2, 3, 4
#: include/linux/net.h enum sock_type
SOCK_TYPES = {1: "stream", 2: "dgram", 3: "raw", 4: "rdm", 5: "seqpacket", 6: "dccp",
              10: "packet"}
#: address families (include/linux/socket.h) named as ss(8) and /proc/net name them
FAMILIES = {1: "unix", 2: "inet", 3: "ax25", 4: "ipx", 5: "appletalk", 6: "netrom",
            7: "bridge", 8: "atmpvc", 9: "x25", 10: "inet6", 11: "rose", 12: "decnet",
            13: "netbeui", 14: "security", 15: "key", 16: "netlink", 17: "packet",
            18: "ash", 19: "econet", 20: "atmsvc", 21: "rds", 22: "sna", 23: "irda",
            24: "pppox", 25: "wanpipe", 26: "llc", 27: "ib", 28: "mpls", 29: "can",
            30: "tipc", 31: "bluetooth", 32: "iucv", 33: "rxrpc", 34: "isdn", 35: "phonet",
            36: "ieee802154", 37: "caif", 38: "alg", 39: "nfc", 40: "vsock", 41: "kcm",
            42: "qipcrtr", 43: "smc", 44: "xdp", 45: "mctp"}
#: IP protocols with a /proc/net table of their own (net/ipv4/proc.c, net/ipv6/proc.c)
IP_PROTOCOLS = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", 136: "udplite", 132: "sctp",
                33: "dccp", 262: "mptcp", IPPROTO_ICMP: "icmp", IPPROTO_ICMPV6: "icmp"}


@dataclass
class Socket:
    """One socket as the tables and the file tables show it."""

    address: int  # its struct sock (inet_timewait_sock, request_sock: their sock_common)
    family: int | None  # None: the structure is unreadable
    proto: str | None
    netns: int | None = None
    type: str | None = None
    state: str | None = None
    listening: bool | None = None
    local_addr: str | None = None
    local_port: int | None = None
    remote_addr: str | None = None
    remote_port: int | None = None
    inode: int | None = None
    uid: int | None = None
    path: str | None = None
    #: (pid, fd) of each descriptor that holds it
    owners: list[tuple[int, int]] = field(default_factory=list)
    #: found in a table /proc/net reads (TCP, UDP, unix); False: only a descriptor holds it;
    #: None: not found where the table could not all be read
    in_table: bool | None = False
    #: the owners may be cut short (a file table that could not be read)
    partial: bool = False
    missing: dict[str, str] = field(default_factory=dict)

    def as_row(self) -> dict[str, Any]:
        return {"netns": self.netns, "proto": self.proto, "type": self.type,
                "state": self.state, "listening": self.listening,
                "local_addr": self.local_addr, "local_port": self.local_port,
                "remote_addr": self.remote_addr, "remote_port": self.remote_port,
                "path": self.path, "inode": self.inode, "uid": self.uid,
                "owners": [{"pid": pid, "fd": fd} for pid, fd in sorted(self.owners)],
                "in_table": self.in_table, "partial": self.partial,
                "missing": dict(self.missing) or None}


def ip_text(raw: bytes) -> str:
    """An IPv4 or IPv6 address as text; an IPv4-mapped IPv6 address as ``::ffff:a.b.c.d``
    (whatever the Python version's own choice)."""
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    addr = ipaddress.IPv6Address(raw)
    if addr.ipv4_mapped is not None:
        return f"::ffff:{addr.ipv4_mapped}"
    return addr.compressed


def _be16(value: int) -> int:
    """A __be16 read as a little-endian integer, in host order."""
    return ((value & 0xFF) << 8) | (value >> 8 & 0xFF)


def _u64(raw: bytes, at: int = 0) -> int:
    return int.from_bytes(raw[at:at + 8], "little")


class Net:
    """The socket readers of one kernel: type offsets looked up once, the tables found."""

    def __init__(self, k: LinuxKernel) -> None:
        self.k = k
        types = k.types
        self.types = types
        self.warnings = k.session.warnings
        self.node_off = types.offsetof("sock_common", "skc_node")
        self.nulls_off = types.offsetof("sock_common", "skc_nulls_node")
        self.net_list_off = types.offsetof("net", "list")
        self.net_list = k.symbols.lookup("net_namespace_list")
        self.inum_off = member_at(types, "net", "ns.inum")[0]
        self.sock_ops = k.symbols.lookup("socket_file_ops")
        #: SOCK_INODE: the inode follows the struct socket in a struct socket_alloc
        self.inode_off = (types.offsetof("socket_alloc", "vfs_inode")
                          - types.offsetof("socket_alloc", "socket"))
        self.ino_off = types.offsetof("inode", "i_ino")
        #: what file_socket reads of each open file
        self._file_fields = Fields(types, "file", ("f_op", "private_data", "f_path.dentry"))
        self._inums: dict[int, int | None] = {}
        #: file operations already classified: f_op -> whether its files are sockets
        self._socket_fops: dict[int, bool] = {}
        #: struct net addresses seen on tasks (where no symbol names the namespace list)
        self.task_nets: list[int] = []
        #: the tables that could not be read whole: "tcp", "udp", "unix" -> why
        self.incomplete: dict[str, str] = {}

    # -- namespaces ------------------------------------------------------------------------
    def namespaces(self) -> list[int]:
        """Every network namespace (its ``struct net``): the kernel's
        ``net_namespace_list``, else, for symbol tables that name no data, init_task's
        and those of the processes read so far."""
        k = self.k
        head = self.net_list
        if head is not None:
            nets = list(k.list_entries(head, self.net_list_off, limit=MAX_NETNS,
                                       what="network namespace list"))
            if nets:
                return nets
        out = []
        try:
            init = k.task(k.symbols.address_of("init_task"))
            nsproxy = k.obj("nsproxy", init.nsproxy)
            if nsproxy is not None and nsproxy.net_ns:
                out.append(int(nsproxy.net_ns))
        except KvmError as exc:
            self.warnings.append(f"init_task's network namespace is unreadable: {exc}")
        out.extend(n for n in self.task_nets if n not in out)
        return out

    def inum(self, net: int) -> int | None:
        """A namespace's inode number (as /proc/PID/ns/net shows ``net:[N]``)."""
        if net not in self._inums:
            try:
                self._inums[net] = int.from_bytes(self.k.read(net + self.inum_off, 4),
                                                  "little")
            except KvmError:
                self._inums[net] = None
        return self._inums[net]

    def _net_pointer(self, net: int, path: str) -> int | None:
        """A pointer member of ``struct net`` by path; None where this kernel has no such
        member or it is NULL or unreadable."""
        try:
            off = member_at(self.types, "net", path)[0]
            return _u64(self.k.read(net + off, 8)) or None
        except KvmError:
            return None

    # -- walking tables --------------------------------------------------------------------
    def _incomplete(self, what: str, warning: str) -> None:
        """A table (named ``what``: "TCP ...", "UDP ...", "unix ...") was not read whole."""
        self.warnings.append(warning)
        self.incomplete.setdefault(what.split()[0].lower(), warning)

    def _heads(self, table: int, count: int, stride: int, head_off: int,
               what: str) -> Iterator[int]:
        """The first node of each non-empty bucket of a table of ``count`` buckets
        (``stride`` bytes each, the chain's head at ``head_off``); buckets on pages the dump
        does not hold are reported and passed over."""
        if not 0 < count <= MAX_BUCKETS:
            self._incomplete(what, f"{what} at {table:#x}: {count} buckets is no table's "
                             "size: not read")
            return
        lost = 0
        for base in range(0, count, _CHUNK):
            n = min(_CHUNK, count - base)
            try:
                raw, holes = read_with_holes(self.k.read, table + base * stride, n * stride)
            except KvmError:
                lost += n
                continue
            for i in range(n):
                at = i * stride + head_off
                if holes and any(s <= at < e for s, e, _ in holes):
                    lost += 1
                    continue
                first = _u64(raw, at)
                if first and not first & 1:  # NULL ends an hlist, an odd value an hlist_nulls
                    yield first
        if lost:
            self._incomplete(what, f"{what} at {table:#x}: {lost} of {count} buckets are "
                             "unreadable: their sockets are not listed")

    def _chain(self, first: int, seen: set[int], what: str) -> Iterator[int]:
        """The nodes of one hash chain (an hlist or hlist_nulls: each node's first word is
        the next node), from ``first``; ``seen`` is shared by the whole table."""
        node = first
        while node and not node & 1:
            if node >> 56 != 0xFF:  # not in the kernel's half (x86_64, aarch64): no socket
                self._incomplete(what, f"{what}: a chain is broken at {node:#x}: not a "
                                 "kernel address")
                return
            if node in seen:
                self._incomplete(what, f"{what}: a chain loops at {node:#x}: the rest of "
                                 "it is not listed")
                return
            if len(seen) >= MAX_SOCKETS:
                self._incomplete(what, f"{what}: more than {MAX_SOCKETS} sockets: the "
                                 "rest are not listed")
                return
            seen.add(node)
            yield node  # (its link led here: a socket, even if it cannot be read)
            try:
                node = _u64(self.k.read(node, 8))
            except KvmError as exc:
                self._incomplete(what, f"{what}: a chain is broken at {node:#x}: {exc}")
                return

    def _table(self, table: int, count: int, stride: int, head_off: int, link_off: int,
               what: str) -> Iterator[int]:
        """The sockets on the chains of a hash table (their address: the node's, less
        ``link_off``)."""
        seen: set[int] = set()
        for first in self._heads(table, count, stride, head_off, what):
            for node in self._chain(first, seen, what):
                yield node - link_off

    # -- the tables ------------------------------------------------------------------------
    def tcp_tables(self, nets: list[int]) -> list[int]:
        """The TCP hash tables (``struct inet_hashinfo``) of the namespaces: each
        namespace's ``ipv4.tcp_death_row.hashinfo`` (its own since 6.1 when
        tcp_child_ehash_entries asks for one), else the kernel's ``tcp_hashinfo``."""
        found: list[int] = []
        for net in nets:
            table = self._net_pointer(net, "ipv4.tcp_death_row.hashinfo")
            if table is not None and table not in found:
                found.append(table)
        glob = self.k.symbols.lookup("tcp_hashinfo")
        if glob is not None and glob not in found:
            found.append(glob)
        return found

    def tcp_sockets(self, hashinfo: int) -> Iterator[int]:
        """Addresses of the sockets in a TCP hash table: listeners first, then the
        established hash (TIME_WAIT and SYN_RECV entries too), as /proc/net/tcp lists
        them."""
        k = self.k
        info = k.obj("inet_hashinfo", hashinfo)
        assert info is not None
        bucket = self.types.struct_size("inet_listen_hashbucket")
        if info.has("listening_hash"):  # up to 5.18: the listeners' own hash, by port
            head = self.types.offsetof("inet_listen_hashbucket", "head")
            yield from self._table(hashinfo + info.offsetof("listening_hash"),
                                   INET_LHTABLE_SIZE, bucket, head, self.node_off,
                                   "TCP listening hash")
        else:  # since 5.19: lhash2, by port and address, hlist_nulls through skc_nulls_node
            head = self.types.offsetof("inet_listen_hashbucket", "nulls_head")
            yield from self._table(int(info.lhash2), int(info.lhash2_mask) + 1, bucket,
                                   head, self.nulls_off, "TCP listening hash")
        yield from self._table(int(info.ehash), int(info.ehash_mask) + 1,
                               self.types.struct_size("inet_ehash_bucket"),
                               self.types.offsetof("inet_ehash_bucket", "chain"),
                               self.nulls_off, "TCP established hash")

    def udp_tables(self, nets: list[int], owned: list[Socket]) -> list[int]:
        """The UDP tables (``struct udp_table``): each namespace's ``ipv4.udp_table``
        (since 6.2), else the kernel's ``udp_table``, else the one a UDP socket's protocol
        names (``sk_prot->h.udp_table``, for symbol tables that name no data)."""
        found: list[int] = []
        for net in nets:
            table = self._net_pointer(net, "ipv4.udp_table")
            if table is not None and table not in found:
                found.append(table)
        glob = self.k.symbols.lookup("udp_table")
        if glob is None and not found:
            glob = self._udp_table_by_code()
        if glob is not None and glob not in found:
            found.append(glob)
        if not found:
            for sock in owned:
                if sock.proto in ("udp", "udp6"):
                    table = self._prot_udp_table(sock.address)
                    if table is not None and table not in found:
                        found.append(table)
        return found

    def _udp_table_by_code(self) -> int | None:
        """``udp_table`` where the symbols name no data: the address udp_rcv() passes to
        __udp4_lib_rcv (up to 6.1; later kernels name each namespace's table), taken only
        if the structure there has a UDP table's shape."""
        k = self.k
        start = k.symbols.lookup("udp_rcv")
        if start is None:
            return None
        try:
            refs = k.session.arch.code_refs(k.read(start, 256), start)
        except KvmError:
            return None
        for kind, addr in refs:
            if kind == "addr" and self._is_udp_table(addr):
                k.session.found_symbol("udp_table", addr, "d")
                return addr
        return None

    def _is_udp_table(self, addr: int) -> bool:
        """A udp_table as udp_table_init() leaves it: ``mask`` 2^log - 1 and ``hash2``
        right after the ``mask + 1`` slots of ``hash`` (one allocation)."""
        try:
            t = self.k.obj("udp_table", addr)
            assert t is not None
            mask, log, hash_, hash2 = int(t.mask), int(t.log), int(t.hash), int(t.hash2)
        except KvmError:
            return False
        slot = self.types.struct_size("udp_hslot")
        return 0 < log < 32 and mask == (1 << log) - 1 and hash_ != 0 and \
            hash2 == hash_ + (mask + 1) * slot

    def _prot_udp_table(self, sk: int) -> int | None:
        try:
            prot = self.k.obj("proto", int(self.k.obj("sock_common", sk).skc_prot))
            return int(prot.h.udp_table) if prot is not None else None
        except KvmError:
            return None

    def udp_sockets(self, table: int) -> Iterator[int]:
        """Addresses of the sockets in a UDP table, by its primary (port) hash."""
        udp = self.k.obj("udp_table", table)
        assert udp is not None
        return self._table(int(udp.hash), int(udp.mask) + 1,
                           self.types.struct_size("udp_hslot"),
                           self.types.offsetof("udp_hslot", "head"), self.node_off,
                           "UDP table")

    def unix_tables(self, nets: list[int]) -> list[int]:
        """The unix sockets' tables (arrays of UNIX_HASH_SIZE hlist heads): each
        namespace's ``unx.table.buckets`` (since 5.19), else the kernel's
        ``unix_socket_table``."""
        found: list[int] = []
        for net in nets:
            table = self._net_pointer(net, "unx.table.buckets")
            if table is not None and table not in found:
                found.append(table)
        if not found:
            glob = self.k.symbols.lookup("unix_socket_table")
            if glob is not None:
                found.append(glob)
        return found

    def unix_sockets(self, table: int) -> Iterator[int]:
        return self._table(table, UNIX_HASH_SIZE, 8, 0, self.node_off, "unix socket table")

    # -- decoding --------------------------------------------------------------------------
    def decode(self, address: int) -> Socket:
        """A socket from its ``struct sock`` (or the ``sock_common`` of a TIME_WAIT or
        SYN_RECV entry): what cannot be read is None, with why."""
        k = self.k
        common = k.obj("sock_common", address)
        assert common is not None
        family = int(common.skc_family)
        state = int(common.skc_state)
        sock = Socket(address, family, FAMILIES.get(family, f"family-{family}"))
        missing = sock.missing
        try:
            net = int(common.skc_net.net)
            sock.netns = self.inum(net) if net else None
        except KvmError as exc:
            missing["netns"] = str(exc)
        if family in (AF_INET, AF_INET6) and state in (TCP_TIME_WAIT, TCP_NEW_SYN_RECV):
            self._mini(sock, common, state)
            return sock
        full = k.obj("sock", address)
        assert full is not None
        type_ = _get(full, "sk_type", missing, "type")
        protocol = _get(full, "sk_protocol", missing, "proto")
        sock.type = SOCK_TYPES.get(type_, str(type_)) if type_ is not None else None
        sock.uid = _get(full, "sk_uid", missing, "uid", lambda v: int(v.val))
        sock.inode = self._sock_inode(full, missing)
        if family in (AF_INET, AF_INET6):
            sock.proto = _ip_proto(family, type_, protocol)
            sock.state = TCP_STATES.get(state, str(state))
            sock.listening = state == TCP_LISTEN
            self._inet_addresses(sock, common)
        elif family == AF_UNIX:
            self._unix(sock, full, state)
        else:
            sock.state = TCP_STATES.get(state, str(state))
        return sock

    def _mini(self, sock: Socket, common: Object, state: int) -> None:
        """A TIME_WAIT (``inet_timewait_sock``) or SYN_RECV (``request_sock``) entry of the
        established hash: no socket inode (0), uid 0 for TIME_WAIT and the listener's for
        SYN_RECV, the TIME_WAIT's own substate (TIME_WAIT, or FIN_WAIT2 while it waits for
        the peer's FIN), as /proc/net/tcp shows them."""
        k = self.k
        sock.proto = "tcp" if sock.family == AF_INET else "tcp6"
        sock.type = "stream"
        sock.listening = False
        sock.inode = 0
        if state == TCP_TIME_WAIT:
            tw = k.obj("inet_timewait_sock", sock.address)
            assert tw is not None
            sub = _get(tw, "tw_substate", sock.missing, "state")
            sock.state = TCP_STATES.get(sub, str(sub)) if sub is not None else None
            sock.uid = 0
        else:
            sock.state = TCP_STATES[TCP_SYN_RECV]
            try:
                listener = int(common.skc_listener)
                sk = k.obj("sock", listener)
                sock.uid = int(sk.sk_uid.val) if sk is not None else None
                if sk is None:
                    sock.missing["uid"] = "the request has no listener"
            except KvmError as exc:
                sock.missing["uid"] = f"the listener is unreadable: {exc}"
        self._inet_addresses(sock, common)

    def _inet_addresses(self, sock: Socket, common: Object) -> None:
        """Local and remote address and port of an IPv4 or IPv6 socket."""
        try:
            if sock.family == AF_INET:
                sock.local_addr = ip_text(int(common.skc_rcv_saddr).to_bytes(4, "little"))
                sock.remote_addr = ip_text(int(common.skc_daddr).to_bytes(4, "little"))
            else:
                sock.local_addr = ip_text(common.skc_v6_rcv_saddr.raw())
                sock.remote_addr = ip_text(common.skc_v6_daddr.raw())
        except KvmError as exc:
            sock.missing["local_addr"] = sock.missing["remote_addr"] = str(exc)
        sock.local_port = _get(common, "skc_num", sock.missing, "local_port")
        sock.remote_port = _get(common, "skc_dport", sock.missing, "remote_port", _be16)

    def _sock_inode(self, full: Object, missing: dict[str, str]) -> int | None:
        """sock_i_ino(): the cached ``sk_ino`` (6.17+), else the inode of the socket's
        ``struct socket`` (SOCK_INODE), 0 for a socket no struct socket holds."""
        try:
            if full.has("sk_ino"):
                return int(full.sk_ino)
            sock = int(full.sk_socket)
            if not sock:
                return 0
            return _u64(self.k.read(sock + self.inode_off + self.ino_off, 8))
        except KvmError as exc:
            missing["inode"] = str(exc)
            return None

    def _unix(self, sock: Socket, full: Object, state: int) -> None:
        """A unix socket as unix_seq_show prints it: St (the socket_state it derives),
        listening (the __SO_ACCEPTCON flag), and the bound name."""
        k = self.k
        sock.proto = "unix"
        sock.listening = state == TCP_LISTEN
        try:
            has_socket = bool(int(full.sk_socket))
        except KvmError as exc:
            sock.missing["state"] = str(exc)
        else:
            established = state == TCP_ESTABLISHED
            st = (SS_CONNECTED if established else SS_UNCONNECTED) if has_socket else \
                (SS_CONNECTING if established else SS_DISCONNECTING)
            sock.state = UNIX_STATES[st]
        try:
            u = k.obj("unix_sock", sock.address)
            assert u is not None
            addr = int(u.addr)
            if addr:
                sock.path = self._unix_name(addr)
        except KvmError as exc:
            sock.missing["path"] = str(exc)

    def _unix_name(self, addr: int) -> str:
        """A bound name as /proc/net/unix shows it: a path without its final NUL; an
        abstract name with '@' for its leading NUL and for every NUL in it."""
        ua = self.k.obj("unix_address", addr)
        assert ua is not None
        size = int(ua.len)
        if not 2 < size <= SOCKADDR_UN_SIZE:
            raise FormatError(f"unix address of {size} bytes", address=addr)
        raw = self.k.read(addr + ua.offsetof("name") + 2, size - 2)
        raw = raw[:-1] if raw[0] else b"@" + raw[1:]
        return raw.replace(b"\0", b"@").decode("utf-8", "surrogateescape")

    # -- owners ----------------------------------------------------------------------------
    def file_socket(self, file: int) -> int | None:
        """The ``struct socket`` an open file is (its ``private_data``), or None for a file
        that is not a socket."""
        k = self.k
        fop, private, dentry = self._file_fields.read(k.read, file)
        known = self._socket_fops.get(fop)
        if known is None:
            if self.sock_ops is not None:
                known = fop == self.sock_ops
            else:
                from kvmfx_plugins.linux.vfs import vfs

                v = vfs(k)
                known = v.fs_type(v.dentry(dentry)) == "sockfs"
            self._socket_fops[fop] = known
        return int(private) if known else None

    def owned_sockets(self, unread: list[int]) -> Iterator[tuple[int, int, int, int]]:
        """(pid, fd, struct socket, struct sock) of every descriptor of every process that
        holds a socket. A process whose file table (or one of its files) cannot be read is
        reported and its pid added to ``unread``."""
        from kvmfx_plugins.linux.vfs import vfs

        k = self.k
        v = vfs(k)
        for task in for_each_task(k):
            try:
                pid = int(task.tgid)
            except KvmError as exc:
                self.warnings.append(f"task at {task.address:#x} is unreadable: {exc}")
                unread.append(-1)
                continue
            if self.net_list is None:  # the namespaces are found through the processes
                try:
                    nsproxy = k.obj("nsproxy", int(task.nsproxy))
                    net = int(nsproxy.net_ns) if nsproxy is not None else 0
                    if net and net not in self.task_nets:
                        self.task_nets.append(net)
                except KvmError:
                    pass  # and through init_task
            try:
                for of in v.task_files(task):
                    try:
                        socket = self.file_socket(of.file)
                        if socket is None:
                            continue
                        s = k.obj("socket", socket)
                        assert s is not None
                        sk = int(s.sk)
                    except KvmError as exc:
                        self.warnings.append(f"pid {pid} fd {of.fd}: the file is "
                                             f"unreadable: {exc}")
                        unread.append(pid)
                        continue
                    yield pid, of.fd, socket, sk
            except KvmError as exc:
                self.warnings.append(f"pid {pid}: the file table is unreadable: {exc}")
                unread.append(pid)

    # -- everything ------------------------------------------------------------------------
    def sockets(self) -> list[Socket]:
        """Every socket of every network namespace with its owners: those of the TCP, UDP
        and unix tables, in table order, then those only a descriptor holds."""
        self.incomplete, self.task_nets = {}, []
        owners: dict[int, list[tuple[int, int]]] = {}
        fd_inodes: dict[int, int] = {}
        unread: list[int] = []
        for pid, fd, socket, sk in self.owned_sockets(unread):
            if sk not in owners:
                owners[sk] = []
                try:
                    fd_inodes[sk] = _u64(self.k.read(socket + self.inode_off + self.ino_off,
                                                     8))
                except KvmError:
                    pass
            owners[sk].append((pid, fd))
        held = {sk: self.decode_or_unreadable(sk) for sk in owners if sk}
        nets = self.namespaces()
        out: dict[int, Socket | None] = {}

        def walk(sockets: Iterator[int], families: tuple[int, ...], what: str) -> None:
            for sk in sockets:
                if sk in out:
                    continue
                sock: Socket | None = held[sk] if sk in held else \
                    self.decode_or_unreadable(sk)
                assert sock is not None
                if sock.family is not None and sock.family not in families:
                    self.warnings.append(f"{what}: the entry at {sk:#x} is of another "
                                         f"family ({sock.family}): not taken as its socket")
                    if sk in held:
                        continue  # a descriptor's socket all the same: listed below
                    sock = None
                if sock is not None:
                    sock.in_table = True
                out[sk] = sock

        inet = (AF_INET, AF_INET6)
        kinds = (("TCP table", inet, self.tcp_tables(nets), self.tcp_sockets),
                 ("UDP table", inet, self.udp_tables(nets, list(held.values())),
                  self.udp_sockets),
                 ("unix socket table", (AF_UNIX,), self.unix_tables(nets), self.unix_sockets))
        for what, families, tables, sockets in kinds:
            if not tables:
                self._incomplete(what, f"{what}: not found (no symbol names it, and no "
                                 "network namespace leads to it): its sockets are listed "
                                 "only where a descriptor holds them")
            for table in tables:
                try:
                    walk(sockets(table), families, what)
                except KvmError as exc:
                    self._incomplete(what, f"{what} at {table:#x} is unreadable: {exc}")
        for sk, found in held.items():
            out.setdefault(sk, found)
        why = _unread_owners(unread)
        result = []
        for sk, sock in out.items():
            if sock is None:
                continue
            if not sock.in_table:
                lists = sorted(set(_TABLE_OF.values())) if sock.proto is None else \
                    [_TABLE_OF.get(sock.proto, "")]
                unknown = [self.incomplete[t] for t in lists if t in self.incomplete]
                if unknown:  # it may be in what could not be read
                    sock.in_table = None
                    sock.missing["in_table"] = unknown[0]
            if sk in owners:
                sock.owners = owners[sk]
                if sock.inode is None and sk in fd_inodes:  # SOCK_INODE, as the fd shows it
                    sock.inode = fd_inodes[sk]
                    sock.missing.pop("inode", None)
            if why is not None:
                sock.missing["owners"] = why
                sock.partial = True
            result.append(sock)
        return result

    def decode_or_unreadable(self, sk: int) -> Socket:
        """:meth:`decode`, or, where not even the socket's common part can be read, a
        socket of which nothing is known but where it is (and, held by a descriptor, its
        owners and inode)."""
        try:
            return self.decode(sk)
        except KvmError as exc:
            why = f"the socket at {sk:#x} is unreadable: {exc}"
            sock = Socket(sk, None, None)
            sock.missing = {name: why for name in UNREADABLE_FIELDS}
            return sock


def _unread_owners(pids: list[int]) -> str | None:
    """Why every socket's owners may be cut short: the processes whose descriptors could
    not all be read (-1: a task whose pid could not be read)."""
    if not pids:
        return None
    known = sorted({p for p in pids if p >= 0})
    whose = []
    if known:
        whose.append("pid " + ", ".join(str(p) for p in known[:8])
                     + (f" and {len(known) - 8} more" if len(known) > 8 else ""))
    if -1 in pids:
        whose.append("tasks that could not be read")
    return f"the descriptors of {' and '.join(whose)} could not all be read: they may " \
        "hold it too"


def _get(obj: Object, member: str, missing: dict[str, str], name: str,
         convert: Any = int) -> Any:
    """``obj.member`` converted; None with why in ``missing[name]`` where unreadable."""
    try:
        return convert(obj.member(member))
    except KvmError as exc:
        missing[name] = str(exc)
        return None


def _ip_proto(family: int, type_: int | None, protocol: int | None) -> str:
    """An IPv4/IPv6 socket's protocol as /proc/net names its table: tcp, udp, raw, ...;
    IPv6 with a 6 (tcp6, udp6, raw6)."""
    suffix = "6" if family == AF_INET6 else ""
    if type_ == SOCK_RAW:
        return "raw" + suffix
    if protocol is None:
        return "inet" + suffix
    return IP_PROTOCOLS.get(protocol, f"ip-{protocol}") + suffix


def net(k: LinuxKernel) -> Net:
    """The kernel's socket reader (one per LinuxKernel)."""
    found = k.session.plugin_data.get("linux-net")
    if found is None:
        found = k.session.plugin_data["linux-net"] = Net(k)
    return found
