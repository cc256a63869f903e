"""The whole extension contract of kvmfx.

A plugin is a module (or object) that implements some of these hooks with
``@kvmfx.hookimpl``. Built-in plugins in ``kvmfx_plugins`` and outside packages are loaded the
same way: through the ``kvmfx`` entry-point group, or as plain files from ``--plugin-dir`` /
``KVMFX_PLUGIN_PATH``. Each hook returns a list of provider objects; the core collects the
lists from every plugin and never imports a plugin by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from kvmfx.arch import Architecture
    from kvmfx.commands import Command
    from kvmfx.kernel import KernelFinder
    from kvmfx.layers import DumpFormat
    from kvmfx.process import OSProfile
    from kvmfx.symbols import SymbolProvider

PROJECT = "kvmfx"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def kvmfx_swap_formats() -> list[Any]:
    """Swap-area formats this plugin reads (the swapfile, ``-W``, and the system's swap).

    Each has ``name``, ``description``, ``probe(head) -> int`` (0-100 confidence from the
    area's first page) and ``open(path)``, returning an area with ``read_slot(offset) ->
    bytes`` and ``close()``; a file that is not such an area raises a KvmError.
    """
    raise NotImplementedError


@hookspec
def kvmfx_dump_formats() -> list[DumpFormat]:
    """Dump formats this plugin decodes.

    Each :class:`~kvmfx.layers.DumpFormat` has ``name``, ``description``,
    ``probe(head, source) -> int`` (0-100 confidence from the file's content, never its name)
    and ``open(source) -> PhysicalLayer``.
    """
    raise NotImplementedError


@hookspec
def kvmfx_symbol_providers() -> list[SymbolProvider]:
    """Symbol and type sources (vmlinux, System.map, BTF, kallsyms in memory, ...).

    Each :class:`~kvmfx.symbols.SymbolProvider` has ``name``, ``priority`` (lower is tried
    first within its ``stage``), ``stage`` (``execfile``, ``ksyms``, ``booted``, ``path_unix``
    or ``image``) and ``load(session, path) -> SymbolTable | None``; a provider that also
    knows types adds ``load_types(session, path) -> TypeModel | None``. Providers of the
    ``execfile`` stage also score the file, ``probe(file: SymbolFile) -> int`` (0-100 from
    its head and ELF section names, read once for all of them): the best is asked first.
    """
    raise NotImplementedError


@hookspec
def kvmfx_architectures() -> list[Architecture]:
    """CPU architectures: page-table walks, where kernels live, swap entries, CPU notes.

    Each :class:`~kvmfx.arch.Architecture` has ``name``, ``machines``, ``elf_machine``,
    ``kernel_start``, ``detect(physical, boot) -> int``, ``cpu_states(notes)``,
    ``root_candidates(cpus)``, ``image_root(boot)``, ``kernel_space(physical, root, boot,
    cpus)``, ``process_space(kernel, root)``, ``default_text(boot)``,
    ``text_is_plausible(linked_text)`` and ``scan_root(physical, target, boot, cpus)``.
    docs/architecture.md has the checklist for adding one.
    """
    raise NotImplementedError


@hookspec
def kvmfx_kernel_finders() -> list[KernelFinder]:
    """Finding one OS's kernel in an image (Linux: VMCOREINFO, swapper_pg_dir, KASLR).

    Each :class:`~kvmfx.kernel.KernelFinder` has ``name``, ``boot_notes(physical) ->
    BootNotes | None`` (what the kernel says of itself) and ``find(physical, arch, boot) ->
    KernelImage``.
    """
    raise NotImplementedError


@hookspec
def kvmfx_os_profiles() -> list[OSProfile]:
    """Operating-system process models (Linux from /proc, Linux from a dump, NetBSD, ...).

    Each :class:`~kvmfx.process.OSProfile` has ``name``, ``applies(session) -> int`` and
    ``processes(session)``, ``argv(session, proc)``, ``envv(session, proc)``; optionally
    ``credentials(session, proc) -> Credentials`` (``Session.credentials``).
    """
    raise NotImplementedError


@hookspec
def kvmfx_commands() -> list[Command]:
    """Analysis commands run by ``kvmfx run NAME``.

    Each :class:`~kvmfx.commands.Command` has ``name``, ``description``, ``columns``,
    ``options`` and ``run(session, options) -> Iterable[dict]``.
    """
    raise NotImplementedError
