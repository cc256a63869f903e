"""Built-in architectures: one module each in this folder, found by name.

The package is the plugin the ``kvmfx`` entry point registers: its hook returns the
architectures of every module here, so adding a CPU is adding one file (docs/architecture.md).
An outside package registers its own module instead.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from kvmfx.hookspecs import hookimpl


@hookimpl
def kvmfx_architectures() -> list[Any]:
    out: list[Any] = []
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        hook = getattr(importlib.import_module(f"{__name__}.{module}"),
                       "kvmfx_architectures", None)
        if callable(hook):
            out.extend(hook())
    return out
