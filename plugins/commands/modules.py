"""Kernel module and integrity commands for dumps: lsmod, modxview, tainted,
check-syscalls."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kvmfx.commands import Column, Command, Option
from kvmfx.errors import UnsupportedError
from kvmfx.hookspecs import hookimpl
from kvmfx.session import Session
from kvmfx_plugins.commands.ps import MISSING


def hex_address(address: int | None) -> str | None:
    """An address as the kernel prints one with %px: 0x and 16 hex digits (JSON numbers
    and 64-bit signed columns, Parquet's, Elasticsearch's, cannot hold kernel addresses)."""
    return None if address is None else f"0x{address:016x}"


def _linux(session: Session, command: str) -> Any:
    """The dump's Linux kernel (:class:`~kvmfx_plugins.linux.tasks.LinuxKernel`)."""
    if session.live:
        raise UnsupportedError(f"{command} reads a dump's kernel memory; on a live system "
                               "use /proc/modules, /sys/module and /proc/sys/kernel/tainted")
    from kvmfx_plugins.linux.tasks import LinuxDumpProfile  # when the command runs

    profile = session.profile
    if not isinstance(profile, LinuxDumpProfile):
        raise UnsupportedError(f"{command} reads Linux kernel structures; this session's "
                               f"OS profile is {profile.name}")
    return profile.kernel(session)


class LsMod(Command):
    def __init__(self) -> None:
        super().__init__(
            name="lsmod",
            description="Loaded kernel modules, as /proc/modules lists them (the module list).",
            columns=[Column("name", "str", "module name"),
                     Column("size", "int", "bytes of memory, as /proc/modules (every region, "
                            "init regions while they exist)"),
                     Column("refcount", "int", "references held on it, as /proc/modules"),
                     Column("used_by", "list[str]", "modules using it, as /proc/modules' "
                            "fourth column (\"[permanent]\": it cannot be unloaded); [] none"),
                     Column("state", "str", "Live, Loading, Unloading (or Unformed)"),
                     Column("address", "str", "base of its core text, as /proc/modules "
                            "prints it (0x and 16 hex digits)"),
                     Column("taint", "str", "taint letters as /proc/modules prints them, "
                            "e.g. \"(OE)\"; \"\" when untainted"),
                     Column("module", "str", "address of its struct module"),
                     Column("sections", "dict[str, str]", "with --sections: section -> "
                            "address, as /sys/module/NAME/sections (null without it)"),
                     Column("partial", "bool", "used_by or sections cut short"),
                     MISSING],
            options=[Option("sections", "Add each module's sections and their addresses "
                            "(/sys/module/NAME/sections).", flag=True)])

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        k = _linux(session, "lsmod")
        from kvmfx_plugins.linux.modules import modules_of

        mods = modules_of(k.session)
        for address in mods.listed():
            info = mods.read(address)
            row = {"name": info.name, "size": info.size, "refcount": info.refcount,
                   "used_by": info.used_by, "state": info.state,
                   "address": hex_address(info.base), "taint": info.taint,
                   "module": hex_address(address), "sections": None,
                   "partial": info.partial}
            missing = dict(info.missing)
            if options.get("sections"):
                sections, why, cut = mods.sections(address)
                row["sections"] = None if sections is None else {
                    name: hex_address(at) for name, at in sections.items()}
                row["partial"] = row["partial"] or cut
                if why:
                    missing["sections"] = why
            row["missing"] = missing or None
            yield row


class ModXView(Command):
    def __init__(self) -> None:
        super().__init__(
            name="modxview",
            description="Modules by module list, sysfs kobjects and memory scan, side by side.",
            columns=[Column("name", "str", "module name"),
                     Column("module", "str", "address of its struct module"),
                     Column("module_list", "bool", "on the modules list (what /proc/modules "
                            "and lsmod show)"),
                     Column("sysfs", "bool", "in module_kset (what /sys/module shows)"),
                     Column("scan", "bool", "found by scanning module memory"),
                     Column("state", "str", "Live, Loading, Unloading, Unformed"),
                     Column("note", "str", "why the views disagree, when they do"),
                     MISSING])

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        k = _linux(session, "modxview")
        from kvmfx.errors import KvmError
        from kvmfx_plugins.linux.modules import modules_of

        mods = modules_of(k.session)
        views: dict[str, set[int]] = {}
        why: dict[str, str] = {}
        names: dict[int, str | None] = {}
        for view, read in (("module_list", mods.listed),
                           ("sysfs", lambda: [a for a, _ in mods.in_sysfs()]),
                           ("scan", mods.scanned)):
            try:
                views[view] = set(read())
            except KvmError as exc:
                why[view] = str(exc)
                session.warnings.append(f"modxview: the {view} view: {exc}")
        if "sysfs" in views:
            names.update(mods.in_sysfs())
        order = list(mods.listed()) if "module_list" in views else []
        rest = set().union(*views.values()) - set(order)
        for address in order + sorted(rest):
            info = mods.read(address)
            seen = {view: (address in views[view] if view in views else None)
                    for view in ("module_list", "sysfs", "scan")}
            missing = {view: reason for view, reason in why.items()}
            name = info.name if info.name is not None else names.get(address)
            if name is None and "name" in info.missing:
                missing["name"] = info.missing["name"]
            yield {"name": name, "module": hex_address(address), **seen, "state": info.state,
                   "note": _note(seen), "missing": missing or None}


def _note(seen: dict[str, bool | None]) -> str | None:
    """Why the views of one module disagree."""
    if seen["module_list"] is False:
        return "not on the module list: unlinked (hidden)"
    if seen["sysfs"] is False:
        return "not in sysfs: its kobject was removed (hidden, or unloading)"
    if seen["scan"] is False:
        return "not found by the scan"
    return None


class Tainted(Command):
    def __init__(self) -> None:
        super().__init__(
            name="tainted",
            description="The kernel's taint mask, decoded (/proc/sys/kernel/tainted).",
            columns=[Column("tainted", "int", "the mask, as /proc/sys/kernel/tainted"),
                     Column("letters", "str", "the letter of each set flag, in bit order "
                            "(\"OE\"); \"\" when untainted"),
                     Column("flags", "list[str]", "the name of each set flag "
                            "(\"OOT_MODULE\", ...)"),
                     MISSING])

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        k = _linux(session, "tainted")
        from kvmfx.errors import KvmError
        from kvmfx_plugins.linux.integrity import kernel_taint

        try:
            taint = kernel_taint(k)
        except KvmError as exc:
            yield {"tainted": None, "letters": None, "flags": None,
                   "missing": {f: str(exc) for f in ("tainted", "letters", "flags")}}
            return
        yield {"tainted": taint.mask, "letters": taint.letters, "flags": taint.flags,
               "missing": None}


class CheckSyscalls(Command):
    def __init__(self) -> None:
        super().__init__(
            name="check-syscalls",
            description="Every system-call table entry, and whether it points outside the "
                        "kernel's text (hooked).",
            columns=[Column("table", "str", "sys_call_table, ia32_sys_call_table, "
                            "x32_sys_call_table, compat_sys_call_table"),
                     Column("index", "int", "entry number (the system call's number)"),
                     Column("address", "str", "the handler address the entry holds"),
                     Column("symbol", "str", "the symbol there (name or name+0xOFF): the "
                            "kernel's, or the module's own; null where none is"),
                     Column("hooked", "bool", "the address is outside the kernel's text"),
                     Column("module", "str", "for a hooked entry, the module it points into "
                            "(\"unknown\": none); null otherwise"),
                     MISSING],
            options=[Option("hooked", "Only hooked entries.", flag=True)])

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        k = _linux(session, "check-syscalls")
        from kvmfx_plugins.linux.integrity import check_syscalls

        for e in check_syscalls(k):
            if options.get("hooked") and not e.hooked:
                continue
            yield {"table": e.table, "index": e.index, "address": hex_address(e.address),
                   "symbol": e.symbol, "hooked": e.hooked, "module": e.module,
                   "missing": e.missing or None}


@hookimpl
def kvmfx_commands() -> list[Command]:
    return [LsMod(), ModXView(), Tainted(), CheckSyscalls()]
