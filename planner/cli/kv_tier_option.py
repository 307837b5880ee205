"""``--kv-tier``, ``--kv-load``, ``--kv-policy``: the KV-tier options every replaying verb shares, so their
help and parsing agree (the tiers themselves: :mod:`planner.contracts.kv_tiers`)."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from planner.contracts.kv_tiers import KVTiers


class KVLoad(StrEnum):
    """How tier loads meet the step: beside its compute (layer by layer) or before it."""

    OVERLAP = "overlap"
    BLOCKING = "blocking"


class KVPolicy(StrEnum):
    """Which tier hits are loaded: every one (LRU), or only where loading beats recomputing."""

    LRU = "lru"
    COST_AWARE = "cost-aware"


KVTierOpt = Annotated[list[str] | None, typer.Option(
    "--kv-tier",
    help="a KV tier below HBM that keeps evicted prefix blocks for later loads, from the catalog's "
         "kv_tiers (dram, ssd, remote), optionally NAME:GB (per GPU; the pool's GB for remote); repeat "
         "for several, e.g. --kv-tier dram --kv-tier ssd:2000")]
KVLoadOpt = Annotated[KVLoad, typer.Option(
    "--kv-load", help="tier loads overlap the step's compute (LMCache layer-wise, vLLM async loads) or "
                      "block before it")]
KVPolicyOpt = Annotated[KVPolicy, typer.Option(
    "--kv-policy", help="lru: load every tier hit; cost-aware: read a tier only where loading a token "
                        "is faster than recomputing it")]


KVSwapOpt = Annotated[float, typer.Option(
    "--swap-space-gb", help="host memory per GPU for preemption by swap (vLLM V0's --swap-space; needs a "
                            "local --kv-tier such as dram, whose link the copies use); 0: preempt by "
                            "recompute, as vLLM V1 does")]


def kv_tiers_of(names: list[str] | None, load: KVLoad, policy: KVPolicy, swap_gb: float = 0.0,
                catalog_files: tuple[str, ...] = ()) -> KVTiers | None:
    """The replay's tiers from the options (None without ``--kv-tier``)."""
    if not names:
        if swap_gb:
            from traces.errors import InputError

            raise InputError("--swap-space-gb needs a host tier to swap over", field="--swap-space-gb",
                             expected="--kv-tier dram (or another local tier) with it")
        return None
    from planner.catalog import load_catalog
    from planner.contracts.kv_tiers import tiers_from_names

    return tiers_from_names(load_catalog(catalog_files).kv_tiers, names, overlap=load is KVLoad.OVERLAP,
                            cost_aware=policy is KVPolicy.COST_AWARE, swap_gb=swap_gb)
