"""Offsets from the image's own BTF equal the DWARF of Debian's debug vmlinux.

The oracle is pahole reading the DWARF (-F dwarf) of the kernel's -dbg package (downloaded
once by the fixture factory); kvmfx reads the BTF out of the dump itself.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

import kvmfx
from tests.factory import debug_vmlinux, get_fixture

STRUCTS = ["task_struct", "mm_struct", "cred", "list_head", "signal_struct", "pid", "upid",
           "uts_namespace", "new_utsname", "tty_struct", "tty_driver", "printk_ringbuffer",
           "prb_desc_ring", "prb_data_ring", "printk_info", "timekeeper", "kthread", "worker"]
#: a member line of pahole's output (offsets are absolute, nested anonymous aggregates too)
MEMBER = re.compile(r"^\t+[^\t/].*?[\s*}](\w+)(?:\[\d*\])*;\s+/\*\s+(\d+)\s+(\d+)\s+\*/")


def pahole_offsets(vmlinux: str, struct: str) -> dict[str, int]:
    out = subprocess.run(["pahole", "-F", "dwarf", "-C", struct, vmlinux], check=True,
                         capture_output=True, text=True, timeout=600).stdout
    offsets = {}
    for line in out.splitlines():
        m = MEMBER.match(line)
        if m:
            offsets[m.group(1)] = int(m.group(2))
    return offsets


@pytest.fixture(scope="module")
def vmlinux():
    assert shutil.which("pahole"), "pahole (Debian package dwarves) is needed"
    fx = get_fixture("basic")
    return str(debug_vmlinux(fx.truth["kernel"]["release"]))


@pytest.fixture(scope="module")
def image_types(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("KVMFX_PROFILE_DIR", str(tmp_path_factory.mktemp("profiles")))
    with kvmfx.open(str(get_fixture("basic").path("elf"))) as s:
        types = s.types
    mp.undo()
    assert types.source == "image:BTF"
    return types


@pytest.mark.parametrize("struct", STRUCTS)
def test_btf_offsets_equal_dwarf(vmlinux, image_types, struct):
    dwarf = pahole_offsets(vmlinux, struct)
    assert len(dwarf) >= 2, f"pahole found no members of {struct}"
    types = image_types
    btf = {name: types.offsetof(struct, name) for name in dwarf
           if name in types.layout(struct)}
    # members of named anonymous-typed members (mm.lru_gen.list) are listed by pahole
    # but are not members of the struct itself; everything else must be found
    assert len(btf) >= 0.8 * len(dwarf), sorted(set(dwarf) - set(btf))
    assert btf == {name: dwarf[name] for name in btf}
    dwarf_size = re.search(r"/\* size: (\d+)", subprocess.run(
        ["pahole", "-F", "dwarf", "-C", struct, vmlinux], capture_output=True,
        text=True).stdout)
    assert dwarf_size and types.struct_size(struct) == int(dwarf_size.group(1))
