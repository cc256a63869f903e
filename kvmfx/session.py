"""The Session: one open kernel image (a dump or the live system) and everything read from it.

``kvmfx.open()`` returns a Session. It opens the evidence read-only, picks the dump format,
architecture, symbol source and OS profile from the plugins, lazily and once each, and offers
the reads and process queries that commands and the libkvm layer build on.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kvmfx.arch import VirtualLayer
from kvmfx.errors import (
    FormatError,
    KvmError,
    KvmOpenError,
    ProcessError,
    SymbolError,
    UnsupportedError,
    UsageError,
)
from kvmfx.layers import PAGE_SIZE, FileSource, PhysicalLayer
from kvmfx.process import ArgVector, Process
from kvmfx.registry import Registry, load_registry
from kvmfx.symbols import STAGES, SymbolTable
from kvmfx.types import TypeModel

#: Linux equivalents of the <paths.h> defaults kvm_open(3) falls back to.
PATH_MEM = ("/dev/mem", "/proc/kcore")
PATH_KSYMS = "/proc/kallsyms"
PATH_DRUM = "/proc/swaps"
#: Type formats a session may ask for (None: the first the chain finds).
TYPE_FORMATS = (None, "btf", "dwarf", "isf")


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
    """Open ``path`` read-only and decode it with the format plugin that recognises it."""
    if writable:
        raise UnsupportedError("dumps are evidence and are never opened for writing", path=path)
    source = FileSource(path)
    try:
        head = source.read_upto(0, 65536)
        best = best_match(registry.dump_formats, lambda fmt: fmt.probe(head, source))
        if best is None:
            if source.size == 0 and stat.S_ISREG(os.stat(path).st_mode):
                raise FormatError("empty file: not a memory image", path=path)
            raise FormatError("unrecognised dump format (no format plugin claims it)",
                              path=path, offset=0)
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
        self._kernel: VirtualLayer | None = None
        self._arch: Any = None
        self._symbols: SymbolTable | None = None
        self._types: TypeModel | None = None
        self._profile: Any = None
        self.symbol_failures: list[str] = []
        #: Per-session scratch space for plugins (caches), keyed by plugin name.
        self.plugin_data: dict[str, Any] = {}
        #: What could not be read although the command went on (a list walk cut short...):
        #: one line each; the CLI prints them and exits with the partial-result status.
        self.warnings: list[str] = []
        self.closed = False
        if corefile is not None and not no_files:
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
                    self._physical = open_dump(path, self.registry)
                    self.corefile_used = path
                    break
                except KvmError as exc:
                    reasons.append(str(exc))
            else:
                raise KvmOpenError("no live kernel memory: " + "; ".join(reasons))
        return self._physical

    @property
    def physical(self) -> PhysicalLayer:
        return self.open_memory()

    @property
    def arch(self) -> Any:
        """The architecture plugin that recognised this kernel."""
        if self._arch is None:
            self.open_memory()
            best = best_match(self.registry.architectures, lambda arch: arch.detect(self))
            if best is None:
                raise UnsupportedError("no architecture plugin recognises this kernel",
                                       path=self.corefile)
            self._arch = best
        return self._arch

    @property
    def kernel(self) -> VirtualLayer:
        """The kernel's virtual address space."""
        if self._kernel is None:
            self._kernel = self.arch.kernel_layer(self)
        return self._kernel

    def read(self, vaddr: int, size: int, *, zero_fill: bool = False) -> bytes:
        """Read kernel virtual memory."""
        self._require_files("kvm_read")
        return self.kernel.read(vaddr, size, zero_fill=zero_fill)

    def read_physical(self, paddr: int, size: int, *, zero_fill: bool = False) -> bytes:
        """Read physical memory."""
        self._require_files("physical reads")
        return self.physical.read(paddr, size, zero_fill=zero_fill)

    def write(self, vaddr: int, data: bytes) -> int:
        """Write kernel memory: refused for dumps (evidence) and for read-only sessions."""
        self._require_files("kvm_write")
        layer = self.physical
        if not self.writable or not layer.writable:
            from kvmfx.errors import ReadOnlyError

            raise ReadOnlyError("kernel memory was opened read-only" if layer.writable or
                                not self.corefile else "dumps are evidence and read-only",
                                path=self.corefile, address=vaddr)
        paddr, _ = self.kernel.translate(vaddr)
        return layer.write(paddr, data)

    # -- symbols --------------------------------------------------------------------------
    @property
    def symbols(self) -> SymbolTable:
        """Kernel symbols from the first provider of the kvm_open(3) chain that answers."""
        self._require_files("kernel symbols")
        if self._symbols is None:
            self._symbols = self._load_symbols()
        return self._symbols

    def relocate_symbols(self, table: SymbolTable) -> SymbolTable:
        """Check a symbol file against the image and slide it by the image's KASLR offset.

        The image's anchors (symbol addresses it reports itself) must all differ from the
        file's by one and the same offset; otherwise the file is for another kernel.
        """
        if self.no_files or (self.live and self._physical is None):
            return table
        try:
            anchors = self.kernel.anchors
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
            facts = self.kernel.describe()
        except KvmError:
            return "image kernel unknown"
        bid = facts.get("build_id")
        return f"the image is {facts.get('kernel_release') or '?'}" + (
            f" build {bid}" if bid else "")

    def check_build_id(self, file_build_id: str | None, path: str) -> None:
        """Refuse a kernel file whose build id differs from the image's (VMCOREINFO)."""
        if not file_build_id or self.live or self.no_files:
            return
        try:
            image_id = self.kernel.describe().get("build_id")
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

    def _first_answer(self, method: str, stages: list[tuple[str, str | None]],
                      type_format: str | None = None) -> Any:
        providers = self._providers()
        for stage, path in stages:
            for provider in providers:
                loader = getattr(provider, method, None)
                if provider.stage != stage or loader is None:
                    continue
                if type_format and getattr(provider, "type_format", None) != type_format:
                    continue
                try:
                    result = loader(self, path)
                except KvmError as exc:
                    self.symbol_failures.append(f"{provider.name}: {exc}")
                    continue
                if result is not None and (not isinstance(result, SymbolTable) or len(result)):
                    return result
        return None

    def _load_symbols(self) -> SymbolTable:
        failures_before = len(self.symbol_failures)
        table = self._first_answer("load", self._symbol_stages())
        if table is not None:
            return table
        if self.execfile is not None and not self.live and \
                len(self.symbol_failures) == failures_before:
            # the execfile was recognised but holds no symbols (a BTF file): the image's
            table = self._first_answer("load", [("image", None)])
            if table is not None:
                return table
        if self.execfile is not None:
            detail = "; ".join(self.symbol_failures) or "no provider recognises it"
            raise SymbolError(f"cannot read symbols: {detail}", path=self.execfile)
        detail = "; ".join(self.symbol_failures) or "no symbol source found"
        raise SymbolError(f"no kernel symbols: {detail}")

    @property
    def types(self) -> TypeModel:
        """Kernel types (BTF, DWARF, ISF...) from the same chain as :attr:`symbols`; a dump
        given an execfile without types falls back to the types the image carries."""
        self._require_files("kernel types")
        if self._types is None:
            stages = self._symbol_stages()
            if not self.live and ("image", None) not in stages:
                stages = [*stages, ("image", None)]
            model = self._first_answer("load_types", stages, self.type_format)
            if model is None:
                detail = "; ".join(self.symbol_failures) or "no type source found"
                what = f"{self.type_format} " if self.type_format else ""
                raise SymbolError(f"no kernel {what}type information: {detail}")
            self._types = model
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

    def loadavg(self) -> tuple[float, float, float]:
        return self.profile.loadavg(self)

    def uname(self) -> dict[str, str]:
        return self.profile.uname(self)

    def boot_time(self) -> float | None:
        """Wall-clock boot time (seconds since the epoch), when the source knows it."""
        return self.profile.boot_time(self)

    # -- description ----------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """What kvmfx knows about the image: format, architecture, kernel, symbols."""
        out: dict[str, Any] = {"live": self.live, "corefile": self.corefile,
                               "page_size": PAGE_SIZE}
        errors: dict[str, str] = {}
        if not self.no_files:
            try:
                out.update(self.physical.describe())
                out["corefile"] = self.corefile or getattr(self, "corefile_used", None)
            except KvmError as exc:
                errors["memory"] = str(exc)
            if "memory" not in errors:
                try:
                    out["arch"] = self.arch.name
                    out.update(self.kernel.describe())
                except KvmError as exc:
                    errors["arch"] = str(exc)
                try:
                    out["symbols"] = {"source": self.symbols.source, "count": len(self.symbols),
                                      "complete": self.symbols.complete,
                                      "kaslr_slide": self.symbols.slide}
                except KvmError as exc:
                    errors["symbols"] = str(exc)
                try:
                    out["types"] = self.types.describe()
                except KvmError as exc:
                    errors["types"] = str(exc)
        else:
            out["format"] = "none (KVM_NO_FILES)"
        try:
            out["os_profile"] = self.profile.name
            if not self.no_files and hasattr(self.profile, "banner"):
                out["banner"] = self.profile.banner(self)
            elif not self.no_files and callable(getattr(self._kernel, "banner", None)):
                out["banner"] = self._kernel.banner()  # type: ignore[union-attr]
            u = self.uname()
            out.setdefault("kernel_release", u.get("release"))
            out["kernel_version"] = u.get("version")
            out.setdefault("arch", u.get("machine"))
        except KvmError as exc:
            errors["os_profile"] = str(exc)
        if errors:
            out["errors"] = errors
        return out

    def close(self) -> None:
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
