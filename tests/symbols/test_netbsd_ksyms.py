"""A NetBSD kernel ELF, or its /dev/ksyms image, as execfile: kvm_nlist(3) as on NetBSD.

No NetBSD kernel can be downloaded here, so the kernel is built: a static ELF at NetBSD's
amd64 kernel base with NetBSD's ident note and the kernel variables libkvm users look up
(``hostname``, ``nprocs``, ``allproc``, ``averunnable``). ``nm`` is the oracle. The ksyms
variant keeps the symbol table and drops the contents, as /dev/ksyms does.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from kvmfx import kvm

SOURCE = r"""
char hostname[256] = "evidence.example";
int nprocs = 42;
void *allproc[2];
const char ostype[] = "NetBSD";
long averunnable[4];
void start(void) { for (;;) ; }
__attribute__((section(".note.netbsd.ident"), aligned(4), used))
static const struct { unsigned namesz, descsz, type; char name[8]; unsigned desc; } ident =
    { 7, 4, 1, "NetBSD", 1000000000 };
"""
NAMES = ["_hostname", "nprocs", "_allproc", "averunnable", "_ostype"]


@pytest.fixture(scope="module", params=["kernel", "ksyms"])
def kernel(request, tmp_path_factory):
    assert shutil.which("gcc") and shutil.which("nm"), "gcc and binutils are needed"
    d = tmp_path_factory.mktemp("netbsd")
    (d / "kern.c").write_text(SOURCE)
    elf = d / "netbsd"
    subprocess.run(["gcc", "-static", "-nostdlib", "-no-pie", "-Wl,-e,start",
                    "-Wl,-Ttext=0xffffffff80200000", "-o", str(elf), str(d / "kern.c")],
                   check=True)
    if request.param == "ksyms":
        subprocess.run(["objcopy", "--only-keep-debug", str(elf), str(d / "ksyms")],
                       check=True)
        elf = d / "ksyms"
    listed = {}
    for line in subprocess.run(["nm", str(elf)], check=True, capture_output=True,
                               text=True).stdout.splitlines():
        addr, kind, name = line.split()
        listed[name] = (int(addr, 16), kind)
    core = d / "core.raw"
    core.write_bytes(bytes(1 << 20))
    return elf, core, listed


def test_kvm_nlist_fills_names_with_and_without_underscore(kernel):
    elf, core, listed = kernel
    errbuf = bytearray(kvm._POSIX2_LINE_MAX)
    kd = kvm.kvm_openfiles(str(elf), str(core), None, kvm.O_RDONLY, errbuf)
    assert kd is not None, errbuf
    nl = [kvm.nlist(n) for n in [*NAMES, "_no_such_symbol"]] + [kvm.nlist(None)]
    assert kvm.kvm_nlist(kd, nl) == 1
    for entry in nl[:len(NAMES)]:
        addr, kind = listed[entry.n_name.lstrip("_")]
        assert entry.n_value == addr, entry.n_name
        assert entry.n_type != kvm.N_UNDF and bool(entry.n_type & kvm.N_EXT) == kind.isupper()
    assert (nl[len(NAMES)].n_type, nl[len(NAMES)].n_value) == (kvm.N_UNDF, 0)
    assert kvm.kvm_close(kd) == 0
