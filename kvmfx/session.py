"""The Session: one open kernel image (a dump or the live system) and everything read from it.

``kvmfx.open()`` returns a Session. It opens the evidence read-only, picks the dump format,
architecture, symbol source and OS profile from the plugins, lazily and once each, and offers
the reads and process queries that commands and the libkvm layer build on.
"""

from __future__ import annotations

import builtins
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kvmfx.arch import VirtualLayer
from kvmfx.boot import BootNotes
from kvmfx.errors import (
    FormatError,
    KvmError,
    KvmOpenError,
    ProcessError,
    ReadOnlyError,
    SymbolError,
    UnsupportedError,
    UsageError,
)
from kvmfx.kernel import KernelImage
from kvmfx.layers import PAGE_SIZE, FileSource, PhysicalLayer
from kvmfx.process import ArgVector, Credentials, Process
from kvmfx.registry import Registry, load_registry
from kvmfx.symbols import STAGES, TYPE_FORMATS, SymbolFile, SymbolTable, open_symbol_file
from kvmfx.types import TypeModel

#: Linux equivalents of the <paths.h> defaults kvm_open(3) falls back to.
PATH_MEM = ("/dev/mem", "/proc/kcore")
PATH_KSYMS = "/proc/kallsyms"
#: _PATH_DRUM, the system's swap: on Linux the list of active swap areas.
PATH_DRUM = "/proc/swaps"
#: ELF e_machine names, for messages about a dump of a CPU no plugin reads.
ELF_MACHINES = {3: "i386", 8: "mips", 20: "ppc", 21: "ppc64", 22: "s390", 40: "arm",
                62: "x86_64", 183: "aarch64", 243: "riscv", 258: "loongarch"}


def best_match(candidates: Iterable[Any], score: Callable[[Any], int]) -> Any:
    """The candidate with the highest score above 0 (a plugin that fails to score gets 0)."""
    best, top = None, 0
    for candidate in candidates:
        try:
            value = int(score(candidate))
        except KvmError:
            value = 0
        if value > top:
            best, top = candidate, value
    return best


def open_dump(path: str, registry: Registry, *, writable: bool = False) -> PhysicalLayer:
    """Open ``path`` and decode it with the format plugin that recognises it.

    Read-only, except that ``writable`` opens a live memory device read-write (a format
    whose ``writable`` attribute is true: /dev/mem); a dump asked for writing is refused.
    """
    source = FileSource(path)
    try:
        head = source.read_upto(0, 65536)
        best = best_match(registry.dump_formats, lambda fmt: fmt.probe(head, source))
        if best is None:
            if source.size == 0 and stat.S_ISREG(os.stat(path).st_mode):
                raise FormatError("empty file: not a memory image", path=path)
            raise FormatError("unrecognised dump format (no format plugin claims it)",
                              path=path, offset=0)
        if writable:
            if not getattr(best, "writable", False):
                raise UnsupportedError(f"{best.name} dumps are evidence and are never opened for "
                                       "writing (only a live /dev/mem is)", path=path)
            source.close()
            source = FileSource(path, writable=True)
        try:
            return best.open(source)
        except FormatError as exc:
            if exc.path is None:  # pure parsers know offsets, not files: name the file
                raise type(exc)(exc.message, path=path, offset=exc.offset,
                                address=exc.address) from None
            raise
    except BaseException:
        source.close()
        raise


def check_execfile(path: str) -> None:
    """Refuse, at open, an execfile (-N) that cannot be read: kvm_openfiles(3) fails then."""
    try:
        with FileSource(path) as source:
            empty = source.size == 0
    except KvmError as exc:
        raise KvmOpenError(f"cannot use the execfile: {exc.message}", path=path) from None
    if empty:
        raise KvmOpenError("cannot use the execfile: empty file", path=path)


def open_swap(path: str, registry: Registry) -> Any:
    """Open a swap area with the swap-format plugin that recognises it (read-only); a file
    that cannot be read or that no plugin recognises raises KvmError."""
    with FileSource(path) as source:
        head = source.read_upto(0, 1 << 16)
    fmt = best_match(registry.swap_formats, lambda f: f.probe(head))
    if fmt is None:
        raise KvmOpenError(("empty file: " if not head else "") + "not a swap area (no "
                           "swap-format plugin recognises it)", path=path)
    return fmt.open(path)


def check_swapfile(path: str, registry: Registry) -> None:
    """Refuse, at open, a swapfile (-W) that cannot be read or that no swap-format plugin
    recognises (kvm_openfiles(3) fails at open)."""
    try:
        open_swap(path, registry).close()
    except KvmError as exc:
        raise KvmOpenError(f"cannot use the swapfile: {exc.message}", path=path) from None


def parse_proc_swaps(text: str) -> list[str]:
    """Paths of the swap areas listed in /proc/swaps, in the kernel's order (swap type order).

    The kernel writes space, tab, newline and backslash in names as octal escapes (``\\040``).
    """
    out: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or (fields[0] == "Filename" and not out):
            continue
        name = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8) & 0xFF]),
                      os.fsencode(fields[0]))
        out.append(os.fsdecode(name))
    return out


def active_swap_areas(registry: Registry, path: str | None = None
                      ) -> tuple[list[str], list[str]]:
    """The usable active swap areas (``_PATH_DRUM``) and one reason per unusable one.

    Reads ``path`` (default :data:`PATH_DRUM`); an area that cannot be opened or holds no
    swap header is reported, not fatal. No /proc/swaps: no areas.
    """
    try:
        with builtins.open(path or PATH_DRUM, encoding="utf-8", errors="surrogateescape") as f:
            listed = parse_proc_swaps(f.read())
    except OSError:
        return [], []
    usable, failures = [], []
    for area in listed:
        try:
            check_swapfile(area, registry)
        except KvmError as exc:
            failures.append(str(exc))
        else:
            usable.append(area)
    return usable, failures


class Session:
    """An open kernel image. Use as a context manager, or call :meth:`close`.

    A live session (no corefile) reads processes through /proc and opens kernel memory
    (/dev/mem, then /proc/kcore) only when a memory read asks for it.
    """

    def __init__(self, *, corefile: str | None = None, execfile: str | None = None,
                 swapfile: str | None = None, writable: bool = False, no_files: bool = False,
                 registry: Registry | None = None, plugin_dirs: Iterable[str] = (),
                 types: str | None = None) -> None:
        if types not in TYPE_FORMATS:
            raise UsageError(f"unknown type format {types!r} (one of "
                             f"{', '.join(t for t in TYPE_FORMATS if t)})")
        #: the type format asked for (``btf``, ``dwarf``, ``isf``); None: the first found
        self.type_format = types
        self.registry = registry if registry is not None else load_registry(plugin_dirs)
        self.corefile = corefile
        self.execfile = execfile
        self.swapfile = swapfile
        self.writable = writable
        self.no_files = no_files
        self.live = corefile is None
        self._physical: PhysicalLayer | None = None
        self._boot: tuple[Any, BootNotes | None] | None = None
        self._image: KernelImage | None = None
        self._arch: Any = None
        self._symbols: SymbolTable | None = None
        self._symbol_file: SymbolFile | None = None
        self._types: TypeModel | None = None
        self._profile: Any = None
        #: failures of a stage, kept so that the stage's chain runs once (kernel, symbols...)
        self._stage_errors: dict[str, KvmError] = {}
        #: why each symbol provider gave nothing, one line per provider and path
        self.symbol_failures: list[str] = []
        self._failure_keys: set[tuple[str, str | None]] = set()
        #: the live /dev/mem or /proc/kcore kernel memory was read from (live sessions)
        self.corefile_used: str | None = None
        #: swap areas whose pages may be read (swap type order): ``[swapfile]`` when given;
        #: on a live memory session with ``swapfile=None``, the usable areas of /proc/swaps
        #: (filled when kernel memory is opened); otherwise none
        self.swap_paths: list[str] = []
        #: the /proc/swaps areas that could not be used, one line each (not fatal)
        self.swap_failures: list[str] = []
        self._swap_areas: dict[int, Any] = {}
        #: Per-session scratch space for plugins (caches), keyed by plugin name.
        self.plugin_data: dict[str, Any] = {}
        #: What could not be read although the command went on (a list walk cut short...):
        #: one line each; the CLI prints them and exits with the partial-result status.
        self.warnings: list[str] = []
        self.closed = False
        self._at_close: list[Callable[[], None]] = []
        if no_files:  # KVM_NO_FILES ignores execfile, corefile and swapfile
            return
        # Files the caller named are checked now: kvm_openfiles(3) fails at open.
        if execfile is not None:
            check_execfile(execfile)
        if swapfile is not None:
            check_swapfile(swapfile, self.registry)
            self.swap_paths = [swapfile]
        if corefile is not None:
            self._physical = open_dump(corefile, self.registry, writable=writable)

    # -- layers -------------------------------------------------------------------------
    def _require_files(self, what: str) -> None:
        if self.no_files:
            raise UnsupportedError(f"{what} is not available with KVM_NO_FILES "
                                   "(only process information is)")
        if self.closed:
            raise UnsupportedError(f"{what}: the session is closed")

    def open_memory(self) -> PhysicalLayer:
        """The physical layer; on a live system the first of /dev/mem, /proc/kcore that opens."""
        self._require_files("kernel memory")
        if self._physical is None:
            reasons = []
            for path in PATH_MEM:
                try:
                    self._physical = open_dump(path, self.registry, writable=self.writable)
                    self.corefile_used = path
                    break
                except KvmError as exc:
                    reasons.append(str(exc))
            else:
                raise KvmOpenError("no live kernel memory: " + "; ".join(reasons))
            if self.swapfile is None:  # _PATH_DRUM: the system's active swap areas
                self.swap_paths, self.swap_failures = active_swap_areas(self.registry)
        return self._physical

    @property
    def physical(self) -> PhysicalLayer:
        return self.open_memory()

    def _once(self, stage: str, load: Callable[[], Any]) -> Any:
        """Run ``load`` for ``stage``; a failure is kept and raised again on the next ask,
        so that each stage's chain runs (and records its failures) once per session."""
        failed = self._stage_errors.get(stage)
        if failed is not None:
            raise failed
        try:
            return load()
        except KvmError as exc:
            self._stage_errors[stage] = exc
            raise

    # The assembly, in this order: evidence (physical) -> what the kernel says of itself
    # (boot notes, by the kernel finders) -> architecture -> kernel image -> symbols and
    # types -> OS profile. Each stage runs once; a failure is kept and raised again.
    def _find_boot(self) -> tuple[Any, BootNotes | None]:
        physical = self.open_memory()
        finders = self.registry.kernel_finders
        if not finders:
            raise UnsupportedError("no kernel finder plugin is installed", path=self.corefile)
        for finder in finders:
            notes = finder.boot_notes(physical)
            if notes is not None:
                return finder, notes
        return finders[0], None

    @property
    def boot(self) -> BootNotes | None:
        """What the kernel says of itself (VMCOREINFO), or None when it says nothing."""
        if self._boot is None:
            self._boot = self._once("boot", self._find_boot)
        return self._boot[1]

    def _detect_arch(self) -> Any:
        physical, boot = self.open_memory(), self.boot
        best = best_match(self.registry.architectures, lambda a: a.detect(physical, boot))
        if best is None:
            elf_machine = physical.details.get("elf_machine")
            machine = physical.details.get("machine") or (
                ELF_MACHINES.get(elf_machine, str(elf_machine)) if elf_machine else None)
            known = ", ".join(a.name for a in self.registry.architectures) or "none"
            raise UnsupportedError(
                "no architecture plugin reads this kernel"
                + (f" (the dump's header names machine {machine}; kvmfx reads {known})"
                   if machine else f" (kvmfx reads {known})"), path=self.corefile)
        return best

    @property
    def arch(self) -> Any:
        """The architecture plugin that recognised this kernel."""
        if self._arch is None:
            self._arch = self._once("arch", self._detect_arch)
        return self._arch

    @property
    def image(self) -> KernelImage:
        """The kernel in the image: identity, KASLR offset, address space."""
        if self._image is None:
            def find() -> KernelImage:
                arch = self.arch
                assert self._boot is not None
                finder, boot = self._boot
                return finder.find(self.physical, arch, boot)
            self._image = self._once("kernel", find)
        return self._image

    @property
    def kernel(self) -> VirtualLayer:
        """The kernel's virtual address space."""
        return self.image.layer

    @property
    def cpus(self) -> list[dict[str, Any]]:
        """Registers of each CPU the dump saved (decoded by the architecture)."""
        return self.image.cpus

    def read(self, vaddr: int, size: int, *, zero_fill: bool = False) -> bytes:
        """Read kernel virtual memory."""
        self._require_files("kvm_read")
        return self.kernel.read(vaddr, size, zero_fill=zero_fill)

    def read_physical(self, paddr: int, size: int, *, zero_fill: bool = False) -> bytes:
        """Read physical memory."""
        self._require_files("physical reads")
        return self.physical.read(paddr, size, zero_fill=zero_fill)

    def write(self, vaddr: int, data: bytes) -> int:
        """Write kernel virtual memory; the bytes written.

        Only a live memory device opened for writing (``writable=True``: /dev/mem) takes
        writes; dumps are evidence and read-only. Every page is translated before anything
        is written, so an unmapped page fails the write without a partial one.
        """
        self._require_files("kvm_write")
        layer = self.physical
        if not self.writable or not layer.writable:
            if not self.writable:
                why = ("kernel memory was opened read-only (O_RDONLY)" if self.live
                       else "dumps are evidence and read-only")
            else:
                why = f"{layer.format_name} memory cannot be written (only /dev/mem can)"
            raise ReadOnlyError(why, path=self.corefile or self.corefile_used, address=vaddr)
        chunks = []
        pos, end = vaddr, vaddr + len(data)
        while pos < end:
            paddr, page_size = self.kernel.translate(pos)
            stop = min(end, (pos // page_size + 1) * page_size)
            chunks.append((paddr, data[pos - vaddr:stop - vaddr]))
            pos = stop
        return sum(layer.write(paddr, chunk) for paddr, chunk in chunks)

    def swap_area(self, swap_type: int = 0) -> Any:
        """Swap area ``swap_type`` (an object with ``read_slot(offset) -> bytes``), opened
        read-only on first use: the image given with -W (area 0), or on a live system the
        active areas of /proc/swaps in their order (the kernel numbers them in the order they
        were turned on); None when there is no such area (or it cannot be opened: then a
        warning says why)."""
        if swap_type not in self._swap_areas:
            area = None
            if swap_type < len(self.swap_paths):
                try:
                    area = open_swap(self.swap_paths[swap_type], self.registry)
                except KvmError as exc:
                    self.warnings.append(f"swap area {swap_type}: {exc}")
            self._swap_areas[swap_type] = area
        return self._swap_areas[swap_type]

    # -- symbols --------------------------------------------------------------------------
    @property
    def symbols(self) -> SymbolTable:
        """Kernel symbols from the first provider of the kvm_open(3) chain that answers."""
        self._require_files("kernel symbols")
        if self._symbols is None:
            self._symbols = self._once("symbols", self._load_symbols)
        return self._symbols

    def found_symbol(self, name: str, address: int, kind: str = "d") -> None:
        """A symbol found by other means than the symbol source (where code uses it, a
        structure's shape): added to the table, and offered to every symbol provider that
        remembers what is found (``remember_symbol(session, name, address, kind)``: a cached
        profile keeps it, so the next open of this kernel need not search again)."""
        self.symbols.add(name, address, kind)
        for provider in self.registry.symbol_providers:
            keep = getattr(provider, "remember_symbol", None)
            if keep is not None:
                try:
                    keep(self, name, address, kind)
                except (KvmError, OSError):
                    pass  # a cache: the search is made again next time

    def relocate_symbols(self, table: SymbolTable) -> SymbolTable:
        """Check a symbol file against the image and slide it by the image's KASLR offset.

        The image's anchors (symbol addresses it reports itself) must all differ from the
        file's by one and the same offset; otherwise the file is for another kernel.
        """
        if self.no_files or (self.live and self._physical is None):
            return table
        try:
            anchors = self.image.anchors
        except KvmError:
            return table
        slides = {}
        for name, addr in anchors.items():
            found = table.lookup(name)
            if found is not None:
                slides[name] = addr - found
        if not slides:
            return table
        if len(set(slides.values())) > 1:
            detail = ", ".join(f"{n} {anchors[n]:#x} in the image, {anchors[n] - d:#x} in "
                               "the file" for n, d in list(slides.items())[:2])
            raise SymbolError(f"symbol file does not match the image ({self._kernel_id()}; "
                              f"{detail})", path=table.source)
        slide = next(iter(slides.values()))
        return table.slid(slide) if slide else table

    def _kernel_id(self) -> str:
        """The image's kernel as one phrase (release and build id), for messages."""
        try:
            return self.image.identity()
        except KvmError:
            return "image kernel unknown"

    def check_build_id(self, file_build_id: str | None, path: str) -> None:
        """Refuse a kernel file whose build id differs from the image's (VMCOREINFO)."""
        if not file_build_id or self.live or self.no_files:
            return
        try:
            image_id = self.image.build_id
        except KvmError:
            return
        if image_id and image_id.lower() != file_build_id.lower():
            raise SymbolError(f"kernel file is for another build: file build {file_build_id}, "
                              f"{self._kernel_id()}", path=path)

    def _symbol_stages(self) -> list[tuple[str, str | None]]:
        if self.execfile is not None:
            return [("execfile", self.execfile)]
        if self.live:
            return [("ksyms", None), ("booted", None), ("path_unix", None), ("image", None)]
        return [("image", None)]

    def _providers(self) -> list[Any]:
        return sorted(self.registry.symbol_providers,
                      key=lambda p: (STAGES.index(p.stage) if p.stage in STAGES else 99,
                                     p.priority))

    def _execfile_providers(self, path: str) -> list[Any]:
        """The execfile-stage providers that recognise ``path``, best first: each scores the
        file (read once) as dump formats score a dump."""
        if self._symbol_file is None or self._symbol_file.path != path:
            self._symbol_file = open_symbol_file(path)
        file = self._symbol_file
        scored: list[tuple[int, int, int, Any]] = []
        for provider in self.registry.symbol_providers:
            if provider.stage != "execfile" or not callable(getattr(provider, "probe", None)):
                continue
            try:
                score = int(provider.probe(file))
            except KvmError:
                score = 0
            if score > 0:
                scored.append((-score, provider.priority, len(scored), provider))
        return [p for *_k, p in sorted(scored, key=lambda t: t[:3])]

    def record_failure(self, provider: str, path: str | None, reason: str) -> None:
        """Note in :attr:`symbol_failures` why ``provider`` gave nothing for ``path``
        (``reason`` is one line): once per provider and path, however often it is asked."""
        key = (provider, path)
        if key not in self._failure_keys and reason not in self.symbol_failures:
            self._failure_keys.add(key)
            self.symbol_failures.append(reason)

    def _first_answer(self, method: str, stages: list[tuple[str, str | None]],
                      type_format: str | None = None) -> tuple[Any, list[str], set[str]]:
        """The first provider answer along ``stages``; why the providers before it failed
        (each reason once, recorded once in :attr:`symbol_failures`); and, when every
        failure only repeats an earlier stage's (``kernel``, ``symbols``), those stages."""
        start = len(self.symbol_failures)
        failed: list[str] = []
        recorded: list[str] = []
        causes: set[str] = set()
        for stage, path in stages:
            candidates = (self._execfile_providers(path) if stage == "execfile" and path
                          else [p for p in self._providers() if p.stage == stage])
            for provider in candidates:
                loader = getattr(provider, method, None)
                if loader is None:
                    continue
                if type_format and getattr(provider, "type_format", None) != type_format:
                    continue
                try:
                    result = loader(self, path)
                except KvmError as exc:
                    earlier = [st for st, e in self._stage_errors.items() if e is exc]
                    if earlier:  # the kernel or symbols stage failed before: its reason
                        line = str(exc)
                        causes.update(earlier)
                    else:
                        line = f"{provider.name}: {exc}"
                        self.record_failure(provider.name, path, line)
                        recorded.append(line)
                    if line not in failed:
                        failed.append(line)
                    continue
                if result is not None and (not isinstance(result, SymbolTable)
                                           or not result.is_empty()):
                    return result, failed, set()
        # providers may also record failures themselves (one candidate file of several)
        own = [f for f in self.symbol_failures[start:] if f not in failed + recorded]
        failed += own
        return None, failed, causes if not (recorded or own) else set()

    def _load_symbols(self) -> SymbolTable:
        table, failed, _ = self._first_answer("load", self._symbol_stages())
        if table is not None:
            return table
        if self.execfile is not None and not self.live and not failed and \
                self._execfile_providers(self.execfile):
            # the execfile was recognised but holds no symbols (a BTF file): the image's
            table, failed, _ = self._first_answer("load", [("image", None)])
            if table is not None:
                return table
        if self.execfile is not None:
            detail = "; ".join(failed) or ("no symbol provider recognises the file: not an "
                                           "ELF kernel, System.map, BTF, ISF or vmlinuz")
            raise SymbolError(f"cannot read symbols: {detail}", path=self.execfile)
        detail = "; ".join(failed) or "no symbol source found"
        raise SymbolError(f"no kernel symbols: {detail}")

    def _load_types(self) -> TypeModel:
        stages = self._symbol_stages()
        if not self.live and ("image", None) not in stages:
            stages = [*stages, ("image", None)]
        model, failed, causes = self._first_answer("load_types", stages, self.type_format)
        if model is None:
            detail = "; ".join(failed) or "no type source found"
            what = f"{self.type_format} " if self.type_format else ""
            exc = SymbolError(f"no kernel {what}type information: {detail}")
            #: the earlier stages whose failure is the whole reason (for info())
            exc.repeats = causes  # type: ignore[attr-defined]
            raise exc
        return model

    @property
    def types(self) -> TypeModel:
        """Kernel types (BTF, DWARF, ISF...) from the same chain as :attr:`symbols`; a dump
        given an execfile without types falls back to the types the image carries."""
        self._require_files("kernel types")
        if self._types is None:
            self._types = self._once("types", self._load_types)
        return self._types

    # -- processes ------------------------------------------------------------------------
    @property
    def profile(self) -> Any:
        """The OS profile (process model) that understands this kernel."""
        if self._profile is None:
            best = best_match(self.registry.os_profiles, lambda prof: prof.applies(self))
            if best is None:
                raise ProcessError("no OS profile understands this kernel"
                                   + self._why_no_profile(), path=self.corefile)
            self._profile = best
        return self._profile

    def _why_no_profile(self) -> str:
        """What a dump lacks that every OS profile needs (symbols, types), for the message."""
        if self.live or self.no_files:
            return ""
        for what in ("symbols", "types"):
            try:
                getattr(self, what)
            except KvmError as exc:
                return f" ({exc.message})"
        return ""

    def processes(self) -> Iterator[Process]:
        """Every process, in the kernel's list order."""
        return self.profile.processes(self)

    def threads(self, proc: Process) -> Iterator[Process]:
        return self.profile.threads(self, proc)

    def argv(self, proc: Process) -> ArgVector:
        return self.profile.argv(self, proc)

    def envv(self, proc: Process) -> ArgVector:
        return self.profile.envv(self, proc)

    def credentials(self, proc: Process) -> Credentials:
        """The process's credentials and privileges (ids, supplementary groups,
        capability sets, no_new_privs, seccomp), where its OS profile reads them."""
        profile = self.profile
        read = getattr(profile, "credentials", None)
        if read is None:
            raise UnsupportedError(f"the {profile.name} OS profile does not read credentials")
        return read(self, proc)

    def loadavg(self) -> tuple[float, float, float]:
        return self.profile.loadavg(self)

    def uname(self) -> dict[str, str]:
        return self.profile.uname(self)

    def boot_time(self) -> float | None:
        """Wall-clock boot time (seconds since the epoch), when the source knows it."""
        return self.profile.boot_time(self)

    # -- description ----------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """What kvmfx knows about the image: format, architecture, kernel, symbols.

        Failures are under ``errors``, one entry per stage and each reason once: ``memory``
        (the dump cannot be read) and ``arch`` (no architecture or kernel address space found
        in it) mean the image is unusable, and the stages that need it (symbols, types,
        OS profile) are then not tried; ``symbols``, ``types``, ``os_profile`` mean processes
        cannot be listed (on a dump the OS profile is not tried after any failure, and a
        types failure that only repeats the symbols one is left out). On the live system,
        kernel memory that cannot be opened is no error (processes come from /proc):
        ``kernel_memory`` says why it is unavailable.
        """
        out: dict[str, Any] = {"live": self.live, "corefile": self.corefile,
                               "page_size": PAGE_SIZE}
        errors: dict[str, str] = {}
        if not self.no_files:
            memory = kernel = False
            try:
                out.update(self.physical.describe())
                out["corefile"] = self.corefile or self.corefile_used
                memory = True
            except KvmError as exc:
                if self.live:
                    out["kernel_memory"] = f"unavailable: {exc}"
                else:
                    errors["memory"] = str(exc)
            if memory:
                try:
                    facts = self.image.describe()
                    out["arch"] = self.arch.name
                    out["page_size"] = self.image.page_size
                    out.update(facts)
                    kernel = True
                except KvmError as exc:
                    errors["arch"] = str(exc)
            if memory and (kernel or self.live or self.execfile is not None):
                try:
                    out["symbols"] = {"source": self.symbols.source, "count": len(self.symbols),
                                      "complete": self.symbols.complete,
                                      "kaslr_slide": self.symbols.slide}
                except KvmError as exc:
                    errors["symbols"] = str(exc)
                try:
                    out["types"] = self.types.describe()
                except KvmError as exc:
                    # not when it only repeats why the symbols could not be read
                    if not getattr(exc, "repeats", set()) & {"symbols"} & errors.keys():
                        errors["types"] = str(exc)
            if self.swap_paths or self.swap_failures:
                out["swap"] = list(self.swap_paths)
            if self.swap_failures:
                out["swap_unusable"] = list(self.swap_failures)
        else:
            out["format"] = "none (KVM_NO_FILES)"
        if self.live or not errors:  # every dump profile needs what failed
            self._describe_os(out, errors)
        if errors:
            out["errors"] = errors
        return out

    def _describe_os(self, out: dict[str, Any], errors: dict[str, str]) -> None:
        try:
            out["os_profile"] = self.profile.name
            if not self.no_files and hasattr(self.profile, "banner"):
                out["banner"] = self.profile.banner(self)
            elif not self.no_files and self._image is not None:
                out["banner"] = self._image.banner()
            u = self.uname()
            out.setdefault("kernel_release", u.get("release"))
            out["kernel_version"] = u.get("version")
            out.setdefault("arch", u.get("machine"))
            if not self.no_files and callable(getattr(self.profile, "describe", None)):
                out.update(self.profile.describe(self))
        except KvmError as exc:
            errors["os_profile"] = str(exc)

    def at_close(self, keep: Callable[[], None]) -> None:
        """Have ``keep`` run when the session closes (a plugin writing what it learned to
        its cache once, not on every find); an OSError or KvmError it raises is ignored."""
        self._at_close.append(keep)

    def close(self) -> None:
        keeps, self._at_close = self._at_close, []
        for keep in keeps:
            try:
                keep()
            except (KvmError, OSError):
                pass  # a cache: written again on a later open
        for area in self._swap_areas.values():
            if area is not None:
                area.close()
        self._swap_areas.clear()
        if self._physical is not None:
            self._physical.close()
            self._physical = None
        self.closed = True

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open(corefile: str | None = None, execfile: str | None = None,  # noqa: A001
         swapfile: str | None = None, writable: bool = False, *, no_files: bool = False,
         plugin_dirs: Iterable[str] = (), registry: Registry | None = None,
         types: str | None = None) -> Session:
    """Open a dump (or, with ``corefile=None``, the live system) and return a Session.

    ``types`` asks for one type format (``"btf"``, ``"dwarf"``, ``"isf"``) instead of the
    first the chain finds (a debug vmlinux carries both BTF and DWARF)."""
    return Session(corefile=corefile, execfile=execfile, swapfile=swapfile, writable=writable,
                   no_files=no_files, plugin_dirs=plugin_dirs, registry=registry, types=types)


__all__ = ["Session", "open", "open_dump", "PAGE_SIZE"]
