"""Closed-loop sessions: a session's next turn is sent only when its previous turn has finished.

Why: an agent (or a user) sends turn ``k + 1`` after it has read turn ``k``'s answer and run its tool
(``think_s``). Replaying the trace's own arrival times instead (open loop) keeps sending turns on a
schedule recorded on some other fleet: a slower fleet then gets the next turn before it has answered
the previous one, and a session's completion time does not grow with the queueing it meets, as it does
in production. With ``SimConfig.closed_loop`` a session's first turn keeps its trace arrival and turn
``k + 1`` is released at ``finish(k) + output_delay_s + think_s(k + 1)``; requests without a session keep
their trace arrivals.

How (exact, one pass): the numba loop (:class:`~planner.sim.state.ShardEngine`) runs in slices of
simulated time, and turns are added to its arrivals as their predecessors finish
(:meth:`~planner.sim.state.ShardEngine.extend`). A slice ends at the earliest time any pending turn could
be released: for each session whose current turn is not finished, a lower bound of that turn's finish
(the slice start, its arrival, and the end of the step its replica is running, whichever is latest)
plus the next turn's delay. Every finish before the slice end is then known, and every turn it releases
arrives at or after the slice end, so the loop takes arrivals in time order, exactly as one open-loop
run over the realised arrival times would (:func:`tests.planner.sim.test_session_loop` checks that
against a step-by-step reference). A rejected turn (larger than a replica's KV) answers at once: the
session goes on from its arrival.

What is not fed back: the engine's per-step hand-over lag (``output_delay_steps``) is a reporting
correction computed from each interval's mean step time after the run (:func:`planner.sim.result.
handover_s`), so it cannot delay a release; ``output_delay_s`` does. Ties: a turn released at the very
instant of a step boundary (zero think time) is routed after that boundary, which is the causal order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from numpy.typing import NDArray

from planner.sim import engine as E  # noqa: N812 (the engine's field constants read as E.R_*)
from planner.sim.config import SimConfig
from planner.sim.state import gather_prefixes
from traces.errors import InputError
from traces.schema import RequestTrace

if TYPE_CHECKING:
    from planner.sim.replay import EngineSetup, ShardOutput, ShardTask
    from planner.sim.state import ShardEngine

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]


def session_links(trace: RequestTrace) -> tuple[I64, F64]:
    """For each request: the row of its session's previous turn (-1: none) and its think time.

    Turns follow each other in arrival order within a session (the loader checks that ``turn`` agrees).

    Raises:
        InputError: the trace has sessions but no ``think_s``, or a later turn has no think time.

    >>> import polars as pl
    >>> from traces.schema import TraceMeta
    >>> df = pl.DataFrame({"arrival_s": [0.0, 1.0, 2.0], "input_tokens": [5, 5, 5],
    ...                    "output_tokens": [2, 2, 2], "session_id": ["a", None, "a"],
    ...                    "think_s": [None, None, 0.5]})
    >>> prev, think = session_links(RequestTrace(df, TraceMeta("doc", "inline")))
    >>> prev.tolist(), think.tolist()
    ([-1, -1, 0], [0.0, 0.0, 0.5])
    """
    df = trace.df
    n = df.height
    prev = np.full(n, -1, dtype=np.int64)
    think = np.zeros(n, dtype=np.float64)
    if "session_id" not in df.columns:
        return prev, think
    idx = df.select(pl.int_range(0, n, dtype=pl.Int64).alias("_row"), pl.col("session_id"))
    linked = (idx.filter(pl.col("session_id").is_not_null())
              .with_columns(pl.col("_row").shift(1).over("session_id").alias("_prev")))
    rows = linked["_row"].to_numpy()
    p = linked["_prev"].fill_null(-1).to_numpy().astype(np.int64)
    prev[rows] = p
    later = prev >= 0
    if not later.any():
        return prev, think
    if "think_s" not in df.columns:
        raise InputError("a closed-loop replay needs think times", path=trace.meta.source, field="think_s",
                         expected="a think_s column (seconds after the previous turn's finish)")
    t = df["think_s"].to_numpy().astype(np.float64)
    missing = later & np.isnan(t)
    if missing.any():
        row = int(np.argmax(missing)) + 1
        raise InputError("a later turn of a session has no think time", path=trace.meta.source, row=row,
                         field="think_s", expected="seconds >= 0 on every turn after a session's first")
    think[later] = t[later]
    return prev, think


def simulate_sessions(task: ShardTask, setup: EngineSetup, config: SimConfig,
                      progress: Callable[[int, int], None] | None = None) -> ShardOutput:
    """Run one shard with its sessions in closed loop (see the module docstring).

    Args:
        task: the shard's requests in trace order, with ``prev`` and ``think_s`` set.
        setup: per-replica constants.
        config: the replay's configuration (``closed_loop`` on).
        progress: ``(taken, total)`` arrivals, between slices.

    Returns:
        The shard's arrays in task order, with ``arrival_s`` the times the turns were actually sent.
    """
    from planner.sim.replay import ShardTask, _shard_output, shard_engine

    n = int(task.arrival_s.size)
    prev = task.prev if task.prev is not None else np.full(n, -1, dtype=np.int64)
    think = task.think_s if task.think_s is not None else np.zeros(n)
    succ = np.full(n, -1, dtype=np.int64)
    later = np.flatnonzero(prev >= 0)
    succ[prev[later]] = later
    first = np.flatnonzero(prev < 0)  # in arrival order: the task is
    start = np.concatenate([first, later])  # engine rows: first turns, then room for the later ones
    ph, ph_off = gather_prefixes(task.prefix_hashes, task.prefix_offsets, start)
    arrival = np.full(n, np.nan)
    arrival[first] = task.arrival_s[first]
    eng_task = ShardTask(
        index=task.index, replica_ids=task.replica_ids, request_ids=task.request_ids,
        arrival_s=np.where(np.isnan(arrival[start]), np.inf, arrival[start]),
        input_tokens=task.input_tokens[start].copy(), output_tokens=task.output_tokens[start].copy(),
        prefix_hashes=ph, prefix_offsets=ph_off, route_key=task.route_key[start].copy(),
        affinity_key=task.affinity_key[start].copy())
    nrep = int(task.replica_ids.size)
    eng = shard_engine(eng_task, setup, config, slots=nrep, routable=list(range(nrep)), dt=config.interval_s,
                       known=int(first.size))
    rows = np.full(n, -1, dtype=np.int64)  # engine row -> task row
    rows[:first.size] = first
    where = np.full(n, -1, dtype=np.int64)  # task row -> engine row
    where[first] = np.arange(first.size, dtype=np.int64)
    delay = float(config.engine.output_delay_s)
    pending = first[succ[first] >= 0]  # released turns whose successor is not yet released
    t = 0.0
    while pending.size:
        t_next = _next_release(eng, pending, where, arrival, t, delay + think[succ[pending]])
        if t_next <= t:  # zero delay at a step boundary due now: run that boundary (causal order)
            t_next = float(np.nextafter(t, np.inf))
        eng.run_until(t_next, progress)
        t = t_next
        er = where[pending]
        phase = eng.rq[er, E.R_PHASE]
        done = (phase == E.PH_DONE) | (phase == E.PH_REJECTED)
        if not done.any():
            continue
        fin = pending[done]
        answered = np.where(phase[done] == E.PH_DONE, eng.rf[er[done], E.F_FINISH], arrival[fin])
        nxt = succ[fin]
        arrival[nxt] = answered + delay + think[nxt]
        _release(eng, task, nxt, arrival, rows, where)
        pending = np.concatenate([pending[~done], nxt[succ[nxt] >= 0]])
    eng.drain(progress)
    rq = np.empty_like(eng.rq)
    rf = np.empty_like(eng.rf)
    rq[rows] = eng.rq
    rf[rows] = eng.rf
    out = _shard_output(task, rq, rf, eng.ts, eng.pf, eng.pi, eng.ci, eng.tier_io)
    return replace(out, arrival_s=arrival)


def _next_release(eng: ShardEngine, pending: I64, where: I64, arrival: F64, t: float, delay: F64) -> float:
    """The earliest time a successor of ``pending`` could be released: each pending turn finishes no
    earlier than ``t`` (finishes before ``t`` are known), its own arrival, nor the end of the step its
    replica is running (it cannot finish inside a step)."""
    er = where[pending]
    lb = np.maximum(t, arrival[pending])
    rep = eng.rq[er, E.R_REP]
    phase = eng.rq[er, E.R_PHASE]
    live = (rep >= 0) & ((phase == E.PH_WAIT) | (phase == E.PH_PREFILL) | (phase == E.PH_DECODE))
    r = np.maximum(rep, 0)
    busy = live & (eng.pi[r, E.P_MODE] != E.MODE_IDLE)
    lb = np.where(busy, np.maximum(lb, eng.pf[r, E.Q_BUSY_UNTIL]), lb)
    return float((lb + delay).min())


def _release(eng: ShardEngine, task: ShardTask, nxt: I64, arrival: F64, rows: I64, where: I64) -> None:
    """Add turns ``nxt`` (task rows) to the engine's arrivals; keep the row maps in step."""
    lo, hi = eng.q_next, eng.known
    flat, off = gather_prefixes(task.prefix_hashes, task.prefix_offsets, nxt)
    order = eng.extend(arrival[nxt], task.input_tokens[nxt], task.output_tokens[nxt], task.route_key[nxt],
                       affinity_keys=task.affinity_key[nxt], hashes=(flat, off))
    moved = np.concatenate([rows[lo:hi], nxt])[order]
    rows[lo:lo + moved.size] = moved
    where[moved] = np.arange(lo, lo + moved.size, dtype=np.int64)
