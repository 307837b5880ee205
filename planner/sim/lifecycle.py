"""A replica's life in a pool: start (cold start, GPUs held from the decision), serve, drain, stop.

One home for the rules every closed loop follows (the replay's autoscaler in
:mod:`planner.sim.cluster`, the live test fleet behind a ``/metrics`` endpoint):

* scale-up takes the lowest free slot, flushes the prefix cache its previous replica left, and holds
  the GPUs from the decision; the replica becomes routable when its cold start (drawn from the pool's
  seeded generator, one draw per start, in start order) has passed;
* scale-down cancels starting replicas first, newest request first (they serve nobody yet), then stops
  routing to the serving replicas with the fewest requests (running + waiting; ties: the higher slot),
  which finish what they hold and give their GPUs back at their last step;
* a scale-up with no free slot is counted as deferred (a full node pool), not an error.
"""

from __future__ import annotations

import math

import numpy as np

from planner.sim import engine as E  # noqa: N812 (the engine's field constants read as E.P_*)
from planner.sim.coldstart import ColdStart
from planner.sim.pool_run import DRAINING, OFF, SERVING, STARTING, Instance, PoolRun


def finish_drains(r: PoolRun) -> None:
    """Stop every draining replica that has nothing left (its GPUs are free from its last step)."""
    for s in (int(v) for v in np.flatnonzero(r.state == DRAINING)):
        if r.eng.idle(s):
            it = r.slot_inst[s]
            assert it is not None
            it.t_stop = max(it.t_drain, float(r.eng.pf[s, E.Q_NOW]))
            r.state[s] = OFF
            r.slot_inst[s] = None


def become_ready(r: PoolRun, t: float) -> None:
    """Make routable every starting replica whose cold start has passed by ``t``."""
    if not r.pending_ready:
        return
    now = [i for i in r.pending_ready if i.t_ready <= t]
    if not now:
        return
    r.pending_ready = [i for i in r.pending_ready if i.t_ready > t]
    for it in now:
        r.state[it.slot] = SERVING
    r.eng.set_routable(r.serving())


def start_instance(r: PoolRun, slot: int, t_request: float, cold_start: ColdStart,
                   next_instance: list[int]) -> Instance:
    """A new replica on free ``slot``: its GPUs held from ``t_request``, routable after a cold start drawn
    from the pool's generator (the one rule for scale-ups, fault replacements and drained stragglers)."""
    if r.history[slot]:
        r.eng.flush(slot)
    cold = float(cold_start.sample(r.rng, 1)[0])
    it = Instance(inst=next_instance[0], pool=r.index, slot=slot, t_request=t_request,
                  t_ready=t_request + max(cold, 0.0))
    next_instance[0] += 1
    r.history[slot].append(it)
    r.slot_inst[slot] = it
    r.state[slot] = STARTING
    r.pending_ready.append(it)
    return it


def asked(r: PoolRun) -> int:
    """Replicas asked for: serving plus starting (a Deployment's ``spec.replicas``)."""
    return int(((r.state == SERVING) | (r.state == STARTING)).sum())


def scale_to(r: PoolRun, desired: int, t: float, *, cold_start: ColdStart, next_instance: list[int]) -> None:
    """Apply a replica count at time ``t`` (already within the pool's bounds).

    Args:
        r: the pool.
        desired: serving plus starting replicas wanted.
        t: now.
        cold_start: draws the time to ready of each start from ``r.rng``.
        next_instance: the cluster-wide instance counter (a one-element list, advanced per start).
    """
    eng = r.eng
    serving = r.serving()
    current = asked(r)
    if desired > current:
        for _ in range(desired - current):
            free = np.flatnonzero(r.state == OFF)
            if free.size == 0:
                r.deferred += 1
                break
            start_instance(r, int(free[0]), t, cold_start, next_instance)
            r.scale_ups += 1
    elif desired < current:
        k = current - desired
        for it in sorted(r.pending_ready, key=lambda i: -i.t_request)[:k]:
            it.t_stop = t
            it.t_ready = math.inf
            r.state[it.slot] = OFF
            r.slot_inst[it.slot] = None
            r.pending_ready.remove(it)
            r.scale_downs += 1
            k -= 1
        if k > 0:
            load = [(int(eng.pi[s, E.P_NRUN] + eng.pi[s, E.P_NWAIT]), -s, s) for s in serving]
            for _, _, s in sorted(load)[:k]:
                r.state[s] = DRAINING
                held = r.slot_inst[s]
                assert held is not None
                held.t_drain = t
                r.scale_downs += 1
            eng.set_routable(r.serving())
            finish_drains(r)
