"""Package exports resolved on first use.

Why: a package ``__init__`` that imports every submodule makes any import of one small module (a
dataclass, an enum) pay for the whole package: numba, OR-Tools, pandas, scipy. Every command's start-up,
``--help`` included, paid for that. A package lists where each public name lives and imports that module
when the name is first read (PEP 562); type checkers still see the names through ``TYPE_CHECKING`` imports.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from types import ModuleType


class _LazyPackage(ModuleType):
    """A package whose exports are imported when first read.

    Python binds a submodule to its package's attribute of the same name when the submodule is first
    imported (``planner.sim.replay`` the module over ``planner.sim.replay`` the function); an export
    named like its own module keeps the export.
    """

    def __getattr__(self, name: str) -> object:
        home = self.__dict__["_lazy_homes"].get(name)
        if home is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        self.__dict__[name] = value  # later reads skip the hook
        return value

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, ModuleType) and self.__dict__["_lazy_homes"].get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


def lazy_exports(package: str, homes: Mapping[str, str]) -> None:
    """Make the already-imported ``package`` export each name of ``homes`` from the module it maps to.

    >>> import types
    >>> sys.modules["demo_pkg"] = types.ModuleType("demo_pkg")
    >>> lazy_exports("demo_pkg", {"sqrt": "math"})
    >>> import demo_pkg
    >>> demo_pkg.sqrt(4.0), "sqrt" in vars(demo_pkg)
    (2.0, True)
    """
    module = sys.modules[package]
    module.__dict__["_lazy_homes"] = dict(homes)
    module.__class__ = _LazyPackage
