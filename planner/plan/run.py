"""Run the planner's sweeps in this process or as Ray tasks: one scoring task per GPU type, one replay task
per window slice.

Where: :func:`run_plan` decides (:func:`use_ray`). Starting a local Ray costs seconds of CPU before any
work (:data:`RAY_START_S`), and a small plan (the bundled hour on one model) is done in-process before Ray
would be up, so ``--ray auto`` (the default) runs a plan on Ray only when a cluster is named
(``--ray-address`` or ``RAY_ADDRESS``) or when its estimated work, spread over this machine's CPUs, saves
more than Ray's start costs. ``--ray on`` and ``--ray off`` force either way.

On Ray: a local embedded Ray by default, a cluster by address (:func:`planner.ray_runtime.ray_session`:
``host:port``, ``ray://host:10001`` or ``auto``); the core (:func:`planner.plan.sizing.plan_fleet`) is the
same code with in-process maps. Every task is a pure function of its arguments (the replay seed travels in
the task), so a task re-run after its node died (:func:`planner.ray_runtime.map_tasks`) gives the same
answer, the report does not depend on which node ran what, and a plan run in-process is byte for byte the
plan run on Ray (``tests/planner/test_plan_dispatch.py``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from planner.catalog import GPUSpec, ModelSpec
from planner.plan.sizing import PlanReport, PlanRequest, plan_fleet, window_length
from planner.plan.verify import ReplayOut, ReplayTask, run_replay
from planner.ray_runtime import RayMode, map_tasks, ray_session
from solvers.capacity import LengthMix, ScoringOptions, candidate_count, score_gpu
from traces.schema import RequestTrace

RAY_START_S = 8.5
"""Wall seconds a local Ray adds to a plan before and after its work: ``ray.init`` 7.4 s and shutdown
1.2 s, measured on a 2-core machine (the figure the threshold weighs the estimated work against)."""

SCORE_S_PER_CANDIDATE = 0.004
"""In-process seconds to score one candidate row (measured: 1,140 candidates of the bundled hour in
4.5 s on one core of the 2-core machine, after the exact fixed point)."""

REPLAY_S_PER_REQUEST = 5e-5
"""In-process seconds to replay one request of a verification's first round (measured: 3 x 19,902 requests
of the bundled hour, the plan and two alternatives, in 1.1 s with the cached event loop, rounded up for
larger fleets). The estimate leaves out further rounds, which the first replay decides: ``fleet-day`` on
Llama-3.1-70B is estimated at 16 s and replays 70 s in 3 rounds; on 2 cores the rule keeps it in-process,
which measured 87 s against 97 s on a local Ray, and from 3 cores it goes to Ray."""


@dataclass(frozen=True)
class PlanWork:
    """How much work a plan is, estimated before any of it runs.

    Attributes:
        candidates: candidate rows to score.
        replayed_requests: requests the first verification round replays (the plan and its
            alternatives over the windows it checks).
    """

    candidates: int
    replayed_requests: int

    @property
    def in_process_s(self) -> float:
        """Estimated seconds on one core (:data:`SCORE_S_PER_CANDIDATE`, :data:`REPLAY_S_PER_REQUEST`)."""
        return self.candidates * SCORE_S_PER_CANDIDATE + self.replayed_requests * REPLAY_S_PER_REQUEST


def plan_work(trace: RequestTrace, request: PlanRequest) -> PlanWork:
    """The work of planning ``trace``: candidates scored and requests replayed by the check.

    The check replays at most ``verify_windows`` of the windows, each for the plan and its
    ``alternatives``; a window holds its share of the trace's requests on average.
    """
    candidates = candidate_count(request.model, request.gpus, request.scoring)
    if not request.verify:
        return PlanWork(candidates, 0)
    span = max(trace.duration_s, 1e-9)
    windows = math.ceil(span / window_length(span, request.window_s, request.max_windows))
    share = min(1.0, request.verify_windows / max(windows, 1))
    replayed = round(trace.num_requests * share * (1 + request.alternatives))
    return PlanWork(candidates, replayed)


def use_ray(work: PlanWork, *, mode: RayMode = RayMode.AUTO, address: str | None = None,
            environ: Mapping[str, str] | None = None, cpus: int | None = None) -> bool:
    """Whether a plan of ``work`` runs its sweeps on Ray.

    ``on``/``off`` decide. ``auto``: on Ray when a cluster is named (``address`` or ``RAY_ADDRESS``), or
    when spreading the estimated work over ``cpus`` saves more than a local Ray's start
    (``in_process_s * (1 - 1/cpus) > RAY_START_S``); never on one CPU.

    >>> small, big = PlanWork(1_140, 60_000), PlanWork(20_000, 2_000_000)
    >>> use_ray(small, environ={}, cpus=2), use_ray(big, environ={}, cpus=2), use_ray(big, environ={}, cpus=1)
    (False, True, False)
    >>> use_ray(small, address="10.0.0.5:6379", environ={}), use_ray(big, mode=RayMode.OFF, environ={})
    (True, False)
    """
    if mode is not RayMode.AUTO:
        return mode is RayMode.ON
    env = os.environ if environ is None else environ
    if (address or "").strip() or env.get("RAY_ADDRESS", "").strip():
        return True
    n = (os.cpu_count() or 1) if cpus is None else cpus
    return n > 1 and work.in_process_s * (1.0 - 1.0 / n) > RAY_START_S


def score_on_ray(model: ModelSpec, gpus: Sequence[GPUSpec], mix: LengthMix,
                 options: ScoringOptions) -> list[pl.DataFrame]:
    """One stateless Ray task per GPU type (call inside a Ray session)."""
    return map_tasks(score_gpu, [(model, g, mix, options) for g in gpus])


def replay_on_ray(tasks: Sequence[ReplayTask]) -> list[ReplayOut]:
    """One stateless Ray task per replay slice (call inside a Ray session)."""
    return map_tasks(run_replay, [(t,) for t in tasks])


def plan_on_ray(trace: RequestTrace, request: PlanRequest, *, address: str | None = None) -> PlanReport:
    """Same result as :func:`planner.plan.sizing.plan_fleet`, with the sweeps on Ray.

    Args:
        trace: the request trace.
        request: what to plan.
        address: Ray cluster (see :mod:`planner.ray_runtime`); None: ``RAY_ADDRESS`` or a local Ray.

    Raises:
        InputError: bad trace or request, or a bad or unreachable Ray address.
    """
    with ray_session(address):
        return plan_fleet(trace, request, score_map=score_on_ray, replay_map=replay_on_ray)


def run_plan(trace: RequestTrace, request: PlanRequest, *, mode: RayMode = RayMode.AUTO,
             address: str | None = None) -> PlanReport:
    """Plan ``trace`` in this process or on Ray, as :func:`use_ray` decides for its :func:`plan_work`.

    Raises:
        InputError: bad trace or request, or a bad or unreachable Ray address.
    """
    if use_ray(plan_work(trace, request), mode=mode, address=address):
        return plan_on_ray(trace, request, address=address)
    return plan_fleet(trace, request)
