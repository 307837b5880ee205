"""Cached library calls for the Streamlit app, keyed on hashable inputs only.

Why keys and not objects: a :class:`~dashboards.scenario.TraceSource` carries the file's path, mtime and
size, and the specs are frozen dataclasses, so Streamlit hashes a few bytes instead of a 20,000-row frame,
and an edited trace file misses the cache while an unchanged one hits it. Functions that raise
:class:`~traces.errors.InputError` cache nothing; the page shows the message.

Nothing here calls a Streamlit element: cached functions replay their elements on a hit, and progress
bars belong to the page that runs the work.

The long computations (plans, replays, autoscaler comparisons, power studies) do not go through
``st.cache_data``: they run in a child process (:mod:`dashboards.jobs`) so that they can be cancelled,
and their results are kept in :func:`results`, a small store shared by the server's sessions and keyed
on the same hashable inputs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

import numpy as np
import streamlit as st

from dashboards import scenario as sc
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


class ResultStore:
    """Results of finished jobs, least recently used dropped first; safe across sessions' threads.

    Why not ``st.cache_data``: a cached function cannot show a live progress bar or be interrupted in
    the middle; the page runs the job itself (:func:`dashboards.views.common.computed`) and files the
    result here. Results are frozen dataclasses and polars frames, read and never changed by the pages.

    >>> store = ResultStore(max_entries=1)
    >>> store.put("a", 1); store.put("b", 2)
    >>> store.get("a") is None, store.get("b")
    (True, 2)
    """

    def __init__(self, *, max_entries: int) -> None:
        self._max = max_entries
        self._items: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> object | None:
        """The stored result, or None."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value: object) -> None:
        """Store ``value`` (dropping the least recently used beyond ``max_entries``)."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._max:
                self._items.popitem(last=False)


@st.cache_resource(show_spinner=False)
def results() -> ResultStore:
    """The server's one store of job results (created on first use)."""
    return ResultStore(max_entries=48)
