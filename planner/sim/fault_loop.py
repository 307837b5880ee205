"""Faults while :func:`planner.sim.cluster.replay_cluster` runs: one pool's incidents, retries and detector.

The rules (:mod:`planner.sim.faults` says why):

* a fail-stop fault on a slot that holds a replica takes it down at once: the step in flight and every
  request it holds are lost (:meth:`planner.sim.state.ShardEngine.fail`); each lost request is sent
  again at that moment, from scratch (same prompt, same prefix hashes, routed anew) until it has been
  lost ``retry_budget + 1`` times, then it counts as failed; the replica's replacement is handed over
  ``duration_s`` later and serves after its cold start (GPU-hours count from the hand-over);
* a straggler episode multiplies the slot's step time by its slowdown until it ends (overlapping
  episodes: the largest factor holds);
* the detector ticks every ``interval_s``: each serving replica's mean step time over the last
  ``window_s`` (from the engine's time series), over what the perf model predicts for its mean step
  composition, against its peers' (:func:`planner.sim.faults.flag_stragglers`);
  a flag is a true positive when the slot is slowed at that moment; with mitigation the replica is
  drained and a replacement starts on a free slot (its cold start first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from planner.sim import engine as E  # noqa: N812
from planner.sim.coldstart import ColdStart
from planner.sim.faults import FaultConfig, ReplicaFault, flag_stragglers, replica_faults
from planner.sim.lifecycle import start_instance
from planner.sim.pool_run import DRAINING, OFF, SERVING, STARTING, PoolRun


@dataclass
class FaultRun:
    """One pool's faults during a replay (mutable; the loop's own state)."""

    config: FaultConfig
    pending: list[ReplicaFault]
    attempts: np.ndarray  # per trace request: times lost so far
    cold_start: ColdStart
    next_tick: float = math.inf
    slow: list[tuple[float, float, int, float]] = field(default_factory=list)  # (start, end, slot, factor)
    episodes: list[tuple[float, float, int]] = field(default_factory=list)  # all: (start, end, slot)
    fail_events: int = 0
    slow_events: int = 0
    lost: int = 0
    retried: int = 0
    failed: int = 0
    flags: list[tuple[float, int, bool]] = field(default_factory=list)  # (t, slot, slot was slowed)
    flagged: set[int] = field(default_factory=set)  # slots flagged at the last tick (a flag is a new one)
    replaced: int = 0

    def next_time(self) -> float:
        """The next moment this pool's faults need the loop: an incident, an episode's end, a tick."""
        cand = [self.next_tick]
        if self.pending:
            cand.append(self.pending[0].time_s)
        cand.extend(end for _, end, _, _ in self.slow)
        return min(cand)


def start_faults(r: PoolRun, config: FaultConfig, *, servers_per_rack: int, requests: int,
                 cold_start: ColdStart) -> FaultRun:
    """The pool's incidents on its slots (node and rack incidents expanded) and its retry counters."""
    per_node = r.pool.gpu.gpus_per_node if r.pool.gpu is not None else 8
    events = replica_faults(config.events, replicas=r.slots, gpus_per_replica=r.gpus, gpus_per_node=per_node,
                            servers_per_rack=servers_per_rack)
    det = config.detector
    return FaultRun(config=config, pending=list(events), attempts=np.zeros(requests, dtype=np.int64),
                    cold_start=cold_start, next_tick=det.interval_s if det is not None else math.inf)


def _slowdown_of(fr: FaultRun, slot: int, t: float) -> float:
    return max((f for s0, end, sl, f in fr.slow if sl == slot and s0 <= t < end), default=1.0)


def apply_faults(r: PoolRun, fr: FaultRun, t: float, next_instance: list[int]) -> None:
    """Everything due by ``t``: incidents, ends of straggler episodes, a detector tick."""
    eng = r.eng
    ended = [x for x in fr.slow if x[1] <= t]
    if ended:
        fr.slow = [x for x in fr.slow if x[1] > t]
        for _, _, slot, _ in ended:
            eng.set_slowdown(slot, _slowdown_of(fr, slot, t), t)
    while fr.pending and fr.pending[0].time_s <= t:
        f = fr.pending.pop(0)
        if f.kind == "slow":
            fr.slow_events += 1
            fr.slow.append((f.time_s, f.time_s + f.duration_s, f.slot, f.slowdown))
            fr.episodes.append((f.time_s, f.time_s + f.duration_s, f.slot))
            eng.set_slowdown(f.slot, _slowdown_of(fr, f.slot, t), t)
        elif r.state[f.slot] in (SERVING, DRAINING, STARTING):
            fr.fail_events += 1
            _fail(r, fr, f, t, next_instance)
    if t >= fr.next_tick - 1e-12 and fr.config.detector is not None:
        _tick(r, fr, t, next_instance)
        fr.next_tick += fr.config.detector.interval_s


def _fail(r: PoolRun, fr: FaultRun, f: ReplicaFault, t: float, next_instance: list[int]) -> None:
    eng = r.eng
    s = f.slot
    it = r.slot_inst[s]
    if it is not None:
        it.t_stop = t
        if it in r.pending_ready:
            r.pending_ready.remove(it)
    rows = eng.fail(s, t)
    # the replacement: handed over after the repair, serving after its cold start (GPU-hours from hand-over)
    start_instance(r, s, t + f.duration_s, fr.cold_start, next_instance)
    serving = r.serving()
    if serving:
        eng.set_routable(serving)
    else:  # nothing serves: requests queue on the slot that comes back first, which starts when ready
        first = min(r.pending_ready, key=lambda i: i.t_ready)
        eng.set_routable([first.slot])
        eng.pf[first.slot, E.Q_NOW] = max(float(eng.pf[first.slot, E.Q_NOW]), first.t_ready)
    _retry(r, fr, rows, t)


def _retry(r: PoolRun, fr: FaultRun, rows: np.ndarray, t: float) -> None:
    if rows.size == 0:
        return
    eng = r.eng
    fr.lost += int(rows.size)
    req = r.rows[rows]
    fr.attempts[req] += 1
    again = fr.attempts[req] <= fr.config.retry_budget
    fr.failed += int((~again).sum())
    rows, req = rows[again], req[again]
    if rows.size == 0:
        return
    fr.retried += int(rows.size)
    lo, hi = eng.q_next, eng.known
    perm = eng.extend(np.full(rows.size, t), eng.inp[rows].copy(), eng.out[rows].copy(),
                      eng.rkey[rows].copy(), prefix_of=rows, affinity_keys=eng.akey[rows].copy())
    r.rows[lo:hi + rows.size] = np.concatenate([r.rows[lo:hi], req])[perm]


def _tick(r: PoolRun, fr: FaultRun, t: float, next_instance: list[int]) -> None:
    det = fr.config.detector
    assert det is not None
    eng = r.eng
    serving = r.serving()
    i1 = int(t / eng.dt)
    i0 = max(0, int((t - det.window_s) / eng.dt))
    if i1 <= i0 or len(serving) < 3:
        return
    win = eng.ts[i0:i1][:, serving].sum(axis=0)  # [replica, field]
    steps = win[:, E.T_STEPS]
    per = np.maximum(steps, 1e-12)
    # observed over predicted mean step time: a replica that merely runs bigger batches than its peers
    # (the router sent it more) has longer steps but a ratio near 1; a straggler's ratio is its slowdown
    predicted = np.asarray(r.pool.perf.step_time_s(win[:, E.T_PREFILL] / per, win[:, E.T_PAIRS] / per,
                                                   win[:, E.T_DECODE] / per, win[:, E.T_DKV] / per),
                           dtype=np.float64)
    ratio = np.where((steps > 0) & (predicted > 0), win[:, E.T_BUSY] / per / np.maximum(predicted, 1e-12),
                     np.nan)
    now = {serving[i] for i in flag_stragglers(ratio.tolist(), det)}
    fresh = sorted(now - fr.flagged)
    fr.flagged = now
    for s in fresh:
        fr.flags.append((t, s, _slowdown_of(fr, s, t) > 1.0))
        if not det.mitigate:
            continue
        free = np.flatnonzero(r.state == OFF)
        if free.size == 0:
            continue  # no room for a replacement: keep the slow replica rather than lose its capacity
        r.state[s] = DRAINING
        held = r.slot_inst[s]
        if held is not None:
            held.t_drain = t
        start_instance(r, int(free[0]), t, fr.cold_start, next_instance)
        fr.replaced += 1
    eng.set_routable(r.serving() or serving)


@dataclass(frozen=True)
class FaultStats:
    """What faults did in a replay (summed over pools).

    Attributes:
        fail_events, slow_events: incidents that hit a replica.
        lost: request attempts lost to fail-stop faults; retried: of them, sent again; failed: requests
            lost more often than the retry budget allows (never served).
        flags: detector flags (a replica newly flagged at a tick); true_flags: of them, on a slot slowed at
            that moment (false positives are the rest).
        detection_delay_s: per straggler episode flagged, seconds from its start to its first true flag.
        replaced: replicas drained and replaced after a flag.
    """

    fail_events: int
    slow_events: int
    lost: int
    retried: int
    failed: int
    flags: int
    true_flags: int
    detection_delay_s: tuple[float, ...]
    replaced: int

    def as_dict(self) -> dict[str, object]:
        return {**self.__dict__, "detection_delay_s": list(self.detection_delay_s)}


def fault_stats(runs: list[tuple[PoolRun, FaultRun]]) -> FaultStats:
    delays: list[float] = []
    for _, fr in runs:
        for s0, end, slot in fr.episodes:
            hit = [t for t, s, ok in fr.flags if ok and s == slot and s0 <= t < end]
            if hit:
                delays.append(min(hit) - s0)
    return FaultStats(
        fail_events=sum(fr.fail_events for _, fr in runs), slow_events=sum(fr.slow_events for _, fr in runs),
        lost=sum(fr.lost for _, fr in runs), retried=sum(fr.retried for _, fr in runs),
        failed=sum(fr.failed for _, fr in runs), flags=sum(len(fr.flags) for _, fr in runs),
        true_flags=sum(sum(1 for f in fr.flags if f[2]) for _, fr in runs),
        detection_delay_s=tuple(sorted(delays)), replaced=sum(fr.replaced for _, fr in runs))
