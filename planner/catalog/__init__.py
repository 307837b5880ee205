"""Hardware and model catalog: data files with a source for every number, validated on load.

>>> from planner.catalog import load_catalog
>>> cat = load_catalog()
>>> cat.gpu("H100-SXM").hbm_gb
80.0
"""

from planner.catalog.load import load_catalog, source_of
from planner.catalog.schema import Catalog, GPUSpec, MLASpec, ModelSpec, MoESpec

__all__ = ["Catalog", "GPUSpec", "MLASpec", "MoESpec", "ModelSpec", "load_catalog", "source_of"]
