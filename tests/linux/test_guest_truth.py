"""The fixture guest itself: the planted processes (files, sockets, mounts, privileges),
modules and taint are in every kernel's ground truth as guest/init.sh and kvmfx-helper.c
plant them, so a broken guest fails here rather than in the commands' tests.

Reads only the ground truth (no dump is opened)."""

from __future__ import annotations

import re

import pytest

from tests.factory import get_fixture

#: one fixture of each kernel of the matrix (x86_64 5.10 .. 7.3, arm64 4K and 16K pages)
KERNELS = ["basic", "bullseye", "trixie", "backports", "arm64", "arm64-16k"]
ROLES = {"files", "deleted_exe", "chroot", "tcp_server", "tcp_client", "udp", "unix", "caps",
         "mntns"}
PF_KTHREAD = 0x00200000
CAPS = "0000000000002400"  # CAP_NET_BIND_SERVICE (10) | CAP_NET_RAW (13)


@pytest.fixture(scope="module", params=KERNELS)
def truth(request):
    return get_fixture(request.param).truth


def _proc(truth, role):
    return truth["processes"][str(truth["roles"][role])]


def _fdinfo(p, fd):
    return dict(line.split(":", 1) for line in p["fdinfo"][str(fd)].splitlines())


def _inode(link):
    m = re.fullmatch(r"(?:socket|pipe):\[(\d+)\]", link)
    assert m, link
    return int(m.group(1))


def _net(truth, table):
    """/proc/net/TABLE's rows as (local, remote, state, inode) (tcp, udp and their 6)."""
    rows = []
    for line in truth["net"][table].splitlines()[1:]:
        f = line.split()
        rows.append((f[1], f[2], f[3], int(f[9])))
    return rows


def _status(p):
    return {k: v.strip() for k, _, v in (ln.partition(":")
                                         for ln in p["status_raw"].splitlines())}


def test_every_role_is_a_sleeping_child_of_init(truth):
    assert set(truth["roles"]) == ROLES
    for role in ROLES:
        p = _proc(truth, role)
        assert (p["state"], p["ppid"]) == ("S", 1), role
        assert p["fd"]["0"] == p["fd"]["1"] == p["fd"]["2"] == "/dev/null", role


def test_every_process_has_its_links_and_kernel_threads_have_none(truth):
    zombies = 0
    for pid, p in truth["processes"].items():
        assert p["status_raw"].startswith(f"Name:\t{p['comm']}\n"), pid
        if p["state"] == "Z":  # (kvmfx-helper zombie's child): no files, memory or links
            assert (p["fd"], p["maps"], p["exe"], p["cwd"], p["root"], p["mnt_ns"]) == (
                {}, "", None, None, None, None), pid
            zombies += 1
            continue
        assert p["mnt_ns"] and re.fullmatch(r"mnt:\[\d+\]", p["mnt_ns"]), pid
        if p["flags"] & PF_KTHREAD:
            assert (p["fd"], p["fdinfo"], p["maps"], p["exe"]) == ({}, {}, "", None), pid
        else:
            assert p["exe"] and p["maps"] and p["cwd"] and p["root"], pid
            assert set(p["fd"]) == set(p["fdinfo"]), pid
    assert zombies == 1


def test_files(truth):
    p = _proc(truth, "files")
    assert {k: v for k, v in p["fd"].items() if int(k) > 2 and k not in ("6", "7")} == {
        "3": "/tmp/kvmfx-read", "4": "/tmp/kvmfx-append", "5": "/tmp/kvmfx-deleted (deleted)",
        "8": "/mnt/kvmfx/file"}
    assert p["fd"]["6"] == p["fd"]["7"] and p["fd"]["6"].startswith("pipe:[")
    pos = {fd: int(_fdinfo(p, fd)["pos"]) for fd in range(3, 9)}
    assert pos == {3: 4097, 4: 63, 5: 4096, 6: 0, 7: 0, 8: 15}
    flags = {fd: int(_fdinfo(p, fd)["flags"], 8) for fd in range(3, 9)}
    assert [flags[fd] & 0o3 for fd in range(3, 9)] == [0, 1, 2, 0, 1, 2]  # O_ACCMODE
    assert flags[4] & 0o2000  # O_APPEND
    # fd 8 is on init's tmpfs: its mount id is the /mnt/kvmfx line of init's mountinfo
    init_ns = truth["processes"]["1"]["mnt_ns"]
    tmpfs = [ln.split() for ln in truth["mountinfo"][init_ns].splitlines()
             if ln.split()[4] == "/mnt/kvmfx"]
    assert len(tmpfs) == 1 and tmpfs[0][0] == _fdinfo(p, 8)["mnt_id"].strip()
    assert "nosuid,nodev" in tmpfs[0][5] and tmpfs[0][-3:-1] == ["tmpfs", "kvmfx-tmp"]
    assert "size=4096k" in tmpfs[0][-1].split(",")
    maps = p["maps"].splitlines()
    assert any(ln.endswith(" /tmp/kvmfx-read") and " r--p " in ln for ln in maps)
    assert any(ln.endswith(" /tmp/kvmfx-deleted (deleted)") and " rw-s " in ln for ln in maps)


def test_deleted_exe_and_chroot(truth):
    p = _proc(truth, "deleted_exe")
    assert p["exe"] == "/tmp/kvmfx-deleted-exe (deleted)"
    assert p["cmdline"] == ["/tmp/kvmfx-deleted-exe", "deleted_exe"]
    j = _proc(truth, "chroot")
    assert (j["exe"], j["cwd"], j["root"]) == ("/jail/bin/kvmfx-helper", "/jail", "/jail")
    assert j["fd"]["3"] == "/jail/data" and int(_fdinfo(j, 3)["pos"]) == 0
    assert j["cmdline"] == ["kvmfx-helper", "jailed"]


def test_sockets_in_the_network_tables(truth):
    server, client = _proc(truth, "tcp_server"), _proc(truth, "tcp_client")
    tcp = _net(truth, "tcp")
    listen4, accepted = _inode(server["fd"]["3"]), _inode(server["fd"]["5"])
    connected = _inode(client["fd"]["3"])
    assert ("0100007F:115C", "00000000:0000", "0A", listen4) in tcp  # 127.0.0.1:4444
    by_inode = {row[3]: row for row in tcp}
    assert by_inode[accepted][0] == by_inode[connected][1] == "0100007F:115C"
    assert by_inode[accepted][1] == by_inode[connected][0]
    assert by_inode[accepted][2] == by_inode[connected][2] == "01"  # ESTABLISHED
    udp = _net(truth, "udp")
    u = _proc(truth, "udp")
    assert ("00000000:14E9", "00000000:0000", "07", _inode(u["fd"]["3"])) in udp  # :5353
    if truth["ipv6"]:
        assert (f"{'0' * 24}01000000:115E", f"{'0' * 32}:0000", "0A",  # [::1]:4446
                _inode(server["fd"]["4"])) in _net(truth, "tcp6")
        assert (f"{'0' * 32}:14EA", f"{'0' * 32}:0000", "07",  # [::]:5354
                _inode(u["fd"]["4"])) in _net(truth, "udp6")
    else:
        assert truth["net"]["tcp6"] is None and truth["net"]["udp6"] is None
    x = _proc(truth, "unix")
    unix = {int(f[6]): f[7:] for f in (ln.split()
                                       for ln in truth["net"]["unix"].splitlines()[1:])}
    inodes = [_inode(x["fd"][str(fd)]) for fd in range(3, 7)]
    assert [unix[i] for i in inodes] == [["/tmp/kvmfx.sock"], ["@kvmfx-abstract"], [], []]


def test_caps(truth):
    s = _status(_proc(truth, "caps"))
    assert s["Uid"].split() == ["1000", "1001", "1002", "1001"]
    assert s["Gid"].split() == ["1000", "1001", "1002", "1001"]
    assert s["Groups"].split() == ["2000", "2001"]
    assert [s[k] for k in ("CapInh", "CapPrm", "CapEff", "CapAmb")] == [CAPS] * 4
    assert (s["NoNewPrivs"], s["Seccomp"]) == ("1", "2")


def test_mount_namespaces(truth):
    init_ns = truth["processes"]["1"]["mnt_ns"]
    ns = _proc(truth, "mntns")["mnt_ns"]
    assert ns != init_ns and {ns, init_ns} <= set(truth["mountinfo"])
    own = [ln.split() for ln in truth["mountinfo"][ns].splitlines()
           if ln.split()[4] == "/mnt/kvmfx-ns"]
    assert len(own) == 1 and own[0][-3:-1] == ["tmpfs", "kvmfx-ns"]
    assert "nosuid" in own[0][5] and "noexec" in own[0][5]
    assert " /mnt/kvmfx-ns " not in truth["mountinfo"][init_ns]
    assert _proc(truth, "mntns")["fd"]["3"] == "/mnt/kvmfx-ns/inside"


def test_modules_taint_and_sections(truth):
    mods = {f[0]: f for f in (ln.split() for ln in truth["modules"].splitlines())}
    assert {"fat", "vfat", "nls_cp437", "qemu_fw_cfg"} <= set(mods)
    assert mods["fat"][2] == "1" and mods["fat"][3] == "vfat,"  # used by vfat
    assert mods["vfat"][3] == "-"
    assert truth["tainted"] & 64  # TAINT_USER, set by init
    for name, f in mods.items():
        sections = truth["module_sections"][name]
        assert ".text" in sections and f[5].startswith("0x"), name
        assert all(re.fullmatch(r"0x[0-9a-f]+", a) for a in sections.values()), name
        assert int(sections[".text"], 16) != 0, name
