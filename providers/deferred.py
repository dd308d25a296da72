"""Importing a few submodules of a big SDK package without its `__init__`.

Python runs a package's `__init__` before any of its submodules. The `__init__`
of `google.cloud.aiplatform_v1` imports every service and message of the whole
Vertex API (about 50 MB of RSS and 3 s of CPU beyond what the schedule service
needs), and that of `kubernetes.client` every API and model class (about 55 MB
and 1 s). The providers need a handful of submodules of each.

`defer_package_init(package)` registers the package module without running its
`__init__`. Submodules then import as usual, also when asked for as attributes.
The first other attribute asked of the package (unless one of `light`) runs the
real `__init__`,
so code that uses the package normally sees all of it, as before; `light` names
re-exports the package's `__init__` would make (name -> submodule) that can be
answered from one submodule alone.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
import threading
from collections.abc import Mapping
from typing import Any


# Asked by import machinery and introspection; never a reason to import the whole package.
_PROBES = frozenset({"__path__", "__file__", "__spec__", "__loader__", "__package__", "__wrapped__"})


def defer_package_init(package: str, light: Mapping[str, str] | None = None) -> None:
    """Register `package` so that its `__init__` runs only when something needs it."""
    if package in sys.modules:
        return  # already imported in full: nothing to save, nothing to change
    spec = importlib.util.find_spec(package)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    module = importlib.util.module_from_spec(spec)
    submodules = {info.name for info in pkgutil.iter_modules(spec.submodule_search_locations)}
    light = dict(light or {})
    lock = threading.RLock()  # re-entered by the same thread while the real __init__ runs
    started = False

    def finish_import(name: str) -> Any:
        nonlocal started
        if name in light and not started:
            return getattr(importlib.import_module(f"{package}.{light[name]}"), name)
        if name in submodules:
            # Just that submodule (`from package import submodule`, `package.submodule`).
            return importlib.import_module(f"{package}.{name}")
        if name not in _PROBES:
            with lock:
                if not started:
                    started = True
                    spec.loader.exec_module(module)  # type: ignore[union-attr]
        if name in module.__dict__:
            return module.__dict__[name]
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    module.__getattr__ = finish_import  # type: ignore[attr-defined]
    sys.modules[package] = module
    parent, _, child = package.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], child, module)
