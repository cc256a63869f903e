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
#: pahole's comment after a member: byte offset, bit offset (bitfields), size
COMMENT = re.compile(r"/\*\s*(\d+)(?::\s*(\d+))?\s+(\d+)\s*\*/")
ATTRIBUTE = re.compile(r"__attribute__\(\((?:[^()]|\([^()]*\))*\)\)")
FUNC_PTR = re.compile(r"\(\*\s*(\w+)\)\s*\(")
#: an unnamed bitfield (``unsigned int :0;``): padding, not a member
PADDING = re.compile(r"[\w\s]+\s:\s*\d+;")
NAME = re.compile(r"(\w+)\s*(?:\[[^\]]*\])*\s*(?::\s*(\d+))?\s*;$")


def pahole_members(vmlinux: str, struct: str) -> tuple[dict[str, tuple[int, int]], int]:
    """Every member pahole prints for ``struct``: dotted path -> (bit offset, bit size), the
    members of named anonymous-typed members (``mm_struct.lru_gen.list``) as paths, those of
    unnamed ones flattened (as C reaches them); and the struct's size."""
    out = subprocess.run(["pahole", "-F", "dwarf", "-C", struct, vmlinux], check=True,
                         capture_output=True, text=True, timeout=600).stdout
    lines = out.splitlines()
    assert lines and lines[0].startswith(f"struct {struct} {{"), out[:200]
    size = int(re.search(r"/\* size: (\d+)", out).group(1))  # type: ignore[union-attr]
    frames: list[list[tuple[str, int, int]]] = [[]]
    for line in lines[1:]:
        body, _, comment = line.partition("/*")
        body = ATTRIBUTE.sub("", body).strip()
        if not body:
            continue
        if body.endswith("{"):
            frames.append([])
            continue
        if PADDING.fullmatch(body):
            continue
        where = COMMENT.search("/*" + comment)
        if body.startswith("}"):
            if len(frames) == 1:
                break  # the end of the struct itself
            inner = frames.pop()
            named = NAME.search(body)
            if named:
                name = named.group(1)
                assert where, line
                frames[-1].append((name, int(where.group(1)) * 8, 0))
                frames[-1].extend((f"{name}.{p}", b, z) for p, b, z in inner)
            else:
                frames[-1].extend(inner)
            continue
        assert where, f"no offset on pahole's line {line!r}"
        func = FUNC_PTR.search(body)
        named = None if func else NAME.search(body)
        assert func or named, f"no member name on pahole's line {line!r}"
        name = func.group(1) if func else named.group(1)  # type: ignore[union-attr]
        bit_size = int(named.group(2)) if named and named.group(2) else 0
        bits = int(where.group(1)) * 8 + int(where.group(2) or 0)
        frames[-1].append((name, bits, bit_size))
    return {p: (b, z) for p, b, z in frames[0]}, size


def kvmfx_member(types, struct: str, path: str) -> tuple[int, int]:
    """(bit offset, bit size) of a dotted member path, as kvmfx's type model has it."""
    from kvmfx.types import ARRAY
    tid, total, bit_size = types.find(struct), 0, 0
    for part in path.split("."):
        layout = types.layout_of(tid)
        if part not in layout:
            return (-1, -1)
        bits, member_tid, bit_size = layout[part]
        total += bits
        tid = types.resolve(member_tid)
        while types.get(tid).kind == ARRAY:
            tid = types.resolve(types.get(tid).target)
    return total, bit_size


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
    """Every member pahole prints (nested, bitfields, function pointers): the same bit
    offset and bit size in the BTF kvmfx read from the dump; the same struct size."""
    dwarf, dwarf_size = pahole_members(vmlinux, struct)
    assert len(dwarf) >= 2, f"pahole found no members of {struct}"
    btf = {path: kvmfx_member(image_types, struct, path) for path in dwarf}
    assert btf == dwarf
    assert image_types.struct_size(struct) == dwarf_size
