"""kvmfx: kernel-memory forensics for live systems and crash dumps.

``kvmfx.open()`` gives a :class:`~kvmfx.session.Session` (the Pythonic API);
:mod:`kvmfx.kvm` is the libkvm API of the BSD manual pages built on it; plugins implement
the hooks in :mod:`kvmfx.hookspecs`.
"""

from kvmfx.errors import (
    FormatError,
    KvmError,
    KvmOpenError,
    MissingPageError,
    ProcessError,
    ReadOnlyError,
    SymbolError,
    TranslationError,
    UnsupportedError,
    UsageError,
)

__version__ = "0.1.0"

#: Names imported on first use, so that ``import kvmfx`` costs only what is used (the
#: session pulls in pluggy, the registry and importlib.metadata).
_LAZY = {"hookimpl": "kvmfx.hookspecs", "ArgVector": "kvmfx.process",
         "Process": "kvmfx.process", "Session": "kvmfx.session", "open": "kvmfx.session"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kvmfx' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "ArgVector", "FormatError", "KvmError", "KvmOpenError", "MissingPageError",
    "Process", "ProcessError", "ReadOnlyError", "Session", "SymbolError", "TranslationError",
    "UnsupportedError", "UsageError", "hookimpl", "open",
]
