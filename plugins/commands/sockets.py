"""sockstat: every socket of a dump with the processes that hold it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kvmfx.commands import Column, Command, Option
from kvmfx.errors import UnsupportedError
from kvmfx.hookspecs import hookimpl
from kvmfx.session import Session


class SockStat(Command):
    def __init__(self) -> None:
        super().__init__(
            name="sockstat",
            description="Sockets (TCP, UDP, unix and any a process holds) with the "
                        "processes and descriptors that hold them.",
            columns=[
                Column("netns", "int", "network namespace (inode number, as "
                       "/proc/PID/ns/net shows net:[N])"),
                Column("proto", "str", "tcp, tcp6, udp, udp6, unix; raw, raw6, udplite, "
                       "icmp, netlink, packet, ... for sockets no table lists"),
                Column("type", "str", "socket type: stream, dgram, seqpacket, raw, ..."),
                Column("state", "str", "TCP state name (LISTEN, ESTABLISHED, TIME_WAIT, "
                       "CLOSE, ...; UDP: CLOSE or ESTABLISHED); unix: /proc/net/unix's St "
                       "(UNCONNECTED, CONNECTING, CONNECTED, DISCONNECTING)"),
                Column("listening", "bool", "a listening socket (TCP LISTEN; unix: "
                       "/proc/net/unix's __SO_ACCEPTCON flag)"),
                Column("local_addr", "str", "local IP address"),
                Column("local_port", "int", "local port"),
                Column("remote_addr", "str", "remote IP address"),
                Column("remote_port", "int", "remote port"),
                Column("path", "str", "unix: the bound name as /proc/net/unix shows it "
                       "(abstract names with @)"),
                Column("inode", "int", "socket inode number (socket:[N]; 0: none, as "
                       "TIME_WAIT and SYN_RECV entries)"),
                Column("uid", "int", "owner's uid, as /proc/net/tcp's uid column"),
                Column("owners", "list[dict]", "each descriptor that holds the socket: "
                       "{pid, fd}; empty: no process holds it"),
                Column("in_table", "bool", "listed in the kernel's table /proc/net reads "
                       "(TCP, UDP, unix); false: only a descriptor holds it (an unbound "
                       "or unconnected socket, another family; a connected TCP socket "
                       "missing from the table has been unhooked)"),
                Column("partial", "bool", "owners may be cut short: a process's "
                       "descriptors could not all be read (missing names it)"),
                Column("missing", "dict[str, str]", "fields that could not be read: "
                       "field -> why; null when all were read")],
            options=[Option("pid", "Only sockets this process holds.", type="int"),
                     Option("proto", "Only sockets of this protocol (tcp, udp6, unix, "
                            "...).")])

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        from kvmfx_plugins.linux.tasks import LinuxDumpProfile  # when the command runs

        profile = session.profile
        if not isinstance(profile, LinuxDumpProfile):
            raise UnsupportedError("sockstat reads the kernel's memory (a dump, /dev/mem or "
                                   "/proc/kcore); on a live system use ss(8)")
        from kvmfx_plugins.linux.net import net

        pid, proto = options.get("pid"), options.get("proto")
        for sock in net(profile.kernel(session)).sockets():
            if pid is not None and all(p != pid for p, _ in sock.owners):
                continue
            if proto is not None and sock.proto != proto:
                continue
            yield sock.as_row()


@hookimpl
def kvmfx_commands() -> list[Command]:
    return [SockStat()]
