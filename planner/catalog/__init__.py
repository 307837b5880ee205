"""Hardware and model catalog: data files with a source for every number, validated on load.

>>> from planner.catalog import load_catalog
>>> cat = load_catalog()
>>> cat.gpu("H100-SXM").hbm_gb
80.0
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from traces.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from planner.catalog.load import load_catalog, source_of
    from planner.catalog.schema import Catalog, GPUSpec, KVTierSpec, MLASpec, ModelSpec, MoESpec

lazy_exports(__name__, {
    "load_catalog": "planner.catalog.load",
    "source_of": "planner.catalog.load",
    "Catalog": "planner.catalog.schema",
    "GPUSpec": "planner.catalog.schema",
    "KVTierSpec": "planner.catalog.schema",
    "MLASpec": "planner.catalog.schema",
    "ModelSpec": "planner.catalog.schema",
    "MoESpec": "planner.catalog.schema",
})

__all__ = ["Catalog", "GPUSpec", "KVTierSpec", "MLASpec", "MoESpec", "ModelSpec", "load_catalog", "source_of"]
