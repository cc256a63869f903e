"""Finding a Linux kernel in a dump: VMCOREINFO, the page-table root, KASLR, the banner.

The kernel finder of Linux (:class:`LinuxKernelFinder`): what the kernel says of itself is its
VMCOREINFO (the dump's note, or the page it keeps in memory); its page-table root is the one
VMCOREINFO names (``swapper_pg_dir``, through the architecture's kernel-image mapping), else
one a CPU register saved in the dump holds (CR3, TTBR1), else one found by scanning memory for
a table that maps the kernel's own banner. Everything CPU-specific is asked of the
architecture plugin.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from kvmfx.arch import Architecture, VirtualLayer
from kvmfx.boot import BootNotes
from kvmfx.errors import KvmError, TranslationError
from kvmfx.hookspecs import hookimpl
from kvmfx.kernel import KernelFinder, KernelImage
from kvmfx.layers import PhysicalLayer
from kvmfx_plugins.linux.vmcoreinfo import find_vmcoreinfo

_BANNER = b"Linux version "


def find_banners(physical: PhysicalLayer, release: str | None) -> Iterator[tuple[int, bytes]]:
    """Physical address and text of each copy of a kernel banner in memory, in address
    order (bounded chunked scan): ``linux_banner`` itself, and any copy of it a program
    read (a page-cache copy of /proc/version)."""
    needle = _BANNER + (release.encode() + b" (" if release else b"")
    chunk_size = 16 << 20
    for r in physical.ranges:
        pos = r.start
        while pos < r.end:
            size = min(chunk_size + 4096, r.end - pos)
            try:
                chunk = physical.read(pos, size, zero_fill=True)
            except KvmError:
                pos += chunk_size
                continue
            at = chunk.find(needle)
            while 0 <= at < chunk_size:
                end = chunk.find(b"\n", at, at + 512)
                # linux_banner itself: one line, with UTS_VERSION's "#<build number>"
                if end > 0 and re.search(rb"\) #\d+ ", chunk[at:end]):
                    yield pos + at, bytes(chunk[at:end])
                at = chunk.find(needle, at + 1)
            pos += chunk_size


def find_banner(physical: PhysicalLayer, release: str | None) -> tuple[int, bytes] | None:
    """The kernel's ``linux_banner`` (physical address and text): the first copy that does
    not start a page (a file's copy in the page cache does; linux_banner lies inside the
    kernel's read-only data), else the first copy."""
    first = None
    for found in find_banners(physical, release):
        if found[0] % 4096:
            return found
        first = first or found
    return first


def _place_raw_image(physical: PhysicalLayer, base: int, root: int) -> None:
    """A raw image (no addresses in it) whose kernel page-table root lies past its end but
    inside it when it starts at the RAM base: it is a capture of RAM from there."""
    if not getattr(physical, "base_assumed", False) or not base or not physical.ranges:
        return
    end = physical.ranges[-1].end
    if not root < end and base <= root < base + end:
        physical.rebase(base)  # type: ignore[attr-defined]


def _maps_text(layer: VirtualLayer, text: int) -> bool:
    try:
        layer.translate(text)
    except KvmError:
        return False
    return True


class LinuxKernelFinder:
    name = "linux"
    description = "Linux: VMCOREINFO (note or memory), swapper_pg_dir, KASLR, linux_banner"

    def boot_notes(self, physical: PhysicalLayer) -> BootNotes | None:
        return find_vmcoreinfo(physical)

    def find(self, physical: PhysicalLayer, arch: Architecture,
             boot: BootNotes | None) -> KernelImage:
        cpus = arch.cpu_states(physical.notes.get("elf_notes", []))
        kaslr = boot.kernel_offset if boot is not None else None
        text = (boot.symbols.get("_stext") if boot is not None else None) or (
            arch.default_text(boot) + (kaslr or 0))
        layer: VirtualLayer | None = None
        if boot is not None:
            root = arch.image_root(boot)
            if root is not None:
                _place_raw_image(physical, arch.ram_base(boot), root)
                layer = arch.kernel_space(physical, root, boot, cpus)
                layer.dtb_source = "vmcoreinfo"
        if layer is None:
            for root in arch.root_candidates(cpus):
                cand = arch.kernel_space(physical, root, boot, cpus)
                if _maps_text(cand, text) or kaslr is None:
                    layer, layer.dtb_source = cand, "cpu-notes"
                    break
        if layer is None:
            banner = find_banner(physical, None)
            root = (arch.scan_root(physical, banner[0], boot, cpus)
                    if banner is not None else None)
            if root is None:
                raise TranslationError("no kernel page-table root: no VMCOREINFO, no saved "
                                       "page-table register, and no page table maps the "
                                       "kernel banner")
            layer = arch.kernel_space(physical, root, boot, cpus)
            layer.dtb_source = "scan"
        release = boot.osrelease if boot is not None else None
        extra: dict[str, Any] = {}
        if boot is not None and boot.phys_base is not None:
            extra["phys_base"] = boot.phys_base
        return KernelImage(
            os="linux", layer=layer, release=release,
            build_id=boot.build_id if boot is not None else None,
            kaslr_offset=kaslr or 0,
            kaslr_source="vmcoreinfo" if kaslr is not None else "assumed 0 (no VMCOREINFO)",
            anchors=image_anchors(boot, text),
            boot=boot if boot is not None else BootNotes(), cpus=cpus,
            page_size=(boot.page_size if boot is not None else None) or 4096, extra=extra,
            image_window=(arch.default_text(boot) - (16 << 20),
                          arch.default_text(boot) + IMAGE_SPAN),
            _find_banner=lambda: _banner_text(physical, release))


#: The kernel image spans less than this from its text (the rest of a VMCOREINFO SYMBOL()
#: may be a pointer's value: mem_section's, vmemmap's).
IMAGE_SPAN = 1 << 30


def image_anchors(boot: BootNotes | None, text: int) -> dict[str, int]:
    """VMCOREINFO SYMBOL()s that are addresses in the kernel image (near its text)."""
    if boot is None:
        return {}
    return {n: a for n, a in boot.symbols.items() if text - (16 << 20) <= a < text + IMAGE_SPAN}


def _banner_text(physical: PhysicalLayer, release: str | None) -> str | None:
    found = find_banner(physical, release)
    return found[1].decode("utf-8", "replace") if found else None


@hookimpl
def kvmfx_kernel_finders() -> list[KernelFinder]:
    return [LinuxKernelFinder()]
