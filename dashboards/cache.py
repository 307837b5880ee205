"""Cached library calls for the Streamlit app, keyed on hashable inputs only.

Why keys and not objects: a :class:`~dashboards.scenario.TraceSource` carries the file's path, mtime and
size, and the specs are frozen dataclasses, so Streamlit hashes a few bytes instead of a 20,000-row frame,
and an edited trace file misses the cache while an unchanged one hits it. Functions that raise
:class:`~traces.errors.InputError` cache nothing; the page shows the message.

Nothing here calls a Streamlit element: cached functions replay their elements on a hit, and progress
bars belong to the page that runs the work.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from dashboards import scenario as sc
from planner.autoscale.context import TargetParams
from planner.plan import PlanReport
from planner.sim import SimResult
from solvers.experts import (
    Cluster,
    MoEShape,
    Placement,
    PlacementProblem,
    PlacementSolution,
    SolveParams,
    eplb_placement,
    make_placement,
    synthetic_loads,
)
from traces.schema import RequestTrace
from traces.stats import TraceStats, describe


@st.cache_data(show_spinner=False, max_entries=8)
def trace(src: sc.TraceSource, load_factor: float, seed: int) -> RequestTrace:
    """The trace of ``src`` at ``load_factor`` times its rate."""
    return sc.with_load(sc.load_source(src), load_factor, seed=seed)


@st.cache_data(show_spinner=False, max_entries=8)
def stats(src: sc.TraceSource, load_factor: float, seed: int, window_s: float) -> TraceStats:
    """:func:`traces.stats.describe` of the cached trace."""
    return describe(trace(src, load_factor, seed), window_s=window_s)


@st.cache_data(show_spinner=False, max_entries=16)
def plan(src: sc.TraceSource, load_factor: float, seed: int, spec: sc.PlanSpec) -> PlanReport:
    """:func:`dashboards.scenario.run_plan` on the cached trace."""
    return sc.run_plan(trace(src, load_factor, seed), spec)


@st.cache_data(show_spinner=False, max_entries=16)
def replay(src: sc.TraceSource, load_factor: float, seed: int, spec: sc.ReplaySpec) -> SimResult:
    """:func:`dashboards.scenario.run_replay` on the cached trace."""
    return sc.run_replay(trace(src, load_factor, seed), spec)


@st.cache_data(show_spinner=False, max_entries=16)
def scenario(
    src: sc.TraceSource, seed: int, case: sc.Scenario, model: str, router: str, ttft_s: float, tpot_s: float
) -> sc.ScenarioOutcome:
    """Size (when asked) and replay one Compare scenario."""
    tr = trace(src, case.load_factor, seed)
    spec, planned = sc.scenario_spec(
        tr, case, model=model, router=router, ttft_s=ttft_s, tpot_s=tpot_s, seed=seed
    )
    return sc.ScenarioOutcome(
        scenario=case, spec=spec, planned=planned, result=replay(src, case.load_factor, seed, spec)
    )


@st.cache_data(show_spinner=False, max_entries=8)
def expert_loads(shape: MoEShape, sigma: float, seed: int) -> np.ndarray:
    """Synthetic ``[layers, experts]`` loads from :func:`solvers.experts.synthetic_loads`."""
    out: np.ndarray = synthetic_loads(shape, sigma=sigma, seed=seed)[0]
    return out


@st.cache_data(show_spinner=False, max_entries=8)
def expert_plans(
    shape: MoEShape,
    sigma: float,
    seed: int,
    gpus: int,
    gpus_per_node: int,
    redundant: int,
    time_limit_s: float,
) -> tuple[Placement, Placement, PlacementSolution]:
    """The static layout (expert ``e`` in slot ``e``, no replicas), EPLB's greedy plan and ours."""
    w = expert_loads(shape, sigma, seed)
    static_cluster = Cluster(num_gpus=gpus, gpus_per_node=gpus_per_node, num_slots=shape.experts)
    static = make_placement(
        np.tile(np.arange(shape.experts), (shape.layers, 1)),
        static_cluster,
        num_experts=shape.experts,
        source="static layout",
    )
    cluster = Cluster(num_gpus=gpus, gpus_per_node=gpus_per_node, num_slots=shape.experts + redundant)
    greedy = eplb_placement(w, cluster, num_groups=shape.groups, hierarchical=False)
    from solvers.experts import solve

    ours = solve(
        PlacementProblem(loads=w, cluster=cluster, num_groups=shape.groups),
        params=SolveParams(max_time_in_seconds=time_limit_s, processes=1, random_seed=seed),
    )
    return static, greedy, ours


@st.cache_data(show_spinner=False, max_entries=16)
def policy_preview(
    src: sc.TraceSource, load_factor: float, seed: int, spec: sc.ReplaySpec, params: TargetParams
) -> sc.PolicyPreview:
    """:func:`dashboards.scenario.policy_preview` over the cached replay."""
    return sc.policy_preview(replay(src, load_factor, seed, spec), params)
