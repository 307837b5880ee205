"""A plain-Python reference engine: one step at a time, no jumps, no numba.

Why it exists: it is the oracle the fast loop is checked against (same scheduler rules, written the
obvious way: Python lists, a deque, an ``OrderedDict`` LRU, and every decode step summed one by one),
and the baseline ``fleetwise bench replay`` measures the fast loop against.

Differences by design: routers see the same state as the fast loop except ``least-kv`` (inside a decode
run the fast loop shows the KV blocks as of the run's start; this loop shows them step by step), so
``least-kv`` results may differ slightly.

>>> import numpy as np, polars as pl
>>> from traces.schema import RequestTrace, TraceMeta
>>> from planner.sim.config import SimConfig
>>> from planner.sim.replay import engine_setup, make_shard_tasks
>>> from planner.sim.testing import LinearPerf
>>> df = pl.DataFrame({"arrival_s": [0.0], "input_tokens": [10], "output_tokens": [3]},
...                   schema_overrides={"input_tokens": pl.Int32, "output_tokens": pl.Int32})
>>> tr = RequestTrace(df, TraceMeta("doc", "inline"))
>>> cfg = SimConfig(replicas=1)
>>> out = reference_shard(make_shard_tasks(tr, cfg)[0], engine_setup(LinearPerf(), tr, cfg), cfg)
>>> int(out.rq[0, 1])  # tokens generated
3
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from planner.sim import engine as E  # noqa: N812 (the engine's field constants read as E.R_*)
from planner.sim.config import (
    BALANCE_FACTOR,
    PRECISE_PREFIX_WEIGHT,
    QUEUE_WEIGHT,
    TIER_BLOCK_WEIGHT,
    RouterName,
    RouterOptions,
    SimConfig,
)
from planner.sim.replay import EngineSetup, ShardOutput, ShardTask, splitmix64_np
from planner.sim.state import prefill_time_per_token, tier_params


@dataclass
class _Req:
    i: int
    inp: int
    out: int
    hashes: list[int]
    gen: int = 0
    target: int = 0
    done: int = 0
    held: int = 0
    own: int = 0
    chunk: int = 0
    decoding: bool = False
    preempt: int = 0
    fresh: bool = False
    cached: int = -1
    first: float = math.nan
    finish: float = math.nan
    sched: float = math.nan
    arr: float = 0.0
    tier_tokens: list[int] = field(default_factory=lambda: [0] * (E.N_LEVELS + 1))
    swapped: int = 0


@dataclass
class _Entry:
    h: int
    ref: int = 0


@dataclass
class _Replica:
    free: int
    running: list[_Req] = field(default_factory=list)
    waiting: deque[_Req] = field(default_factory=deque)
    table: dict[int, _Entry] = field(default_factory=dict)
    lru: OrderedDict[int, _Entry] = field(default_factory=OrderedDict)
    tree: OrderedDict[int, None] = field(default_factory=OrderedDict)  # sglang router's record, LRU first
    busy_until: float = math.inf
    t0: float = 0.0
    now: float = 0.0
    busy: float = 0.0
    steps: int = 0
    max_used: int = 0
    load: float = 0.0
    swap: float = 0.0
    swap_used: int = 0
    tiers: dict[int, OrderedDict[int, None]] = field(
        default_factory=lambda: {k: OrderedDict() for k in range(1, E.N_LEVELS)})

    @property
    def evictable(self) -> int:
        return len(self.lru)


class _Engine:
    def __init__(self, setup: EngineSetup, config: SimConfig, nrep: int) -> None:
        eng = config.engine
        self.perf = setup.perf
        self.bs = eng.block_size
        self.mbt = eng.max_batched_tokens
        self.maxseq = eng.max_num_seqs
        self.blocks = setup.blocks
        self.hbt = setup.hash_block_tokens
        self.hb = self.hbt // self.bs
        self.prefix = False
        self.async_scheduling = eng.async_scheduling
        self.reps = [_Replica(free=setup.blocks) for _ in range(nrep)]
        self.tcap = [0] * (E.N_LEVELS + 1)
        self.tpar = np.zeros((E.N_LEVELS + 1, 2))
        self.overlap = True
        self.cost_aware = False
        self.swap_cap = 0
        self.pool: OrderedDict[int, None] = OrderedDict()  # the shared level

    # --- KV tiers (the victim hierarchy of planner.contracts.kv_tiers) ------------------------------
    def level(self, p: _Replica, k: int) -> OrderedDict[int, None]:
        return self.pool if k == E.N_LEVELS else p.tiers[k]

    def tier_put(self, p: _Replica, h: int) -> None:
        k = 1
        carry: int | None = h
        while carry is not None and k <= E.N_LEVELS:
            if self.tcap[k] == 0:
                k += 1
                continue
            od = self.level(p, k)
            if carry in od:
                od.move_to_end(carry)
                return
            victim = od.popitem(last=False)[0] if len(od) >= self.tcap[k] else None
            od[carry] = None
            carry = victim
            k += 1

    def tier_levels(self, p: _Replica, hashes: list[int]) -> list[int]:
        """The level serving each of ``hashes`` in order, up to the first held nowhere."""
        out: list[int] = []
        for h in hashes:
            k = next((k for k in range(1, E.N_LEVELS + 1) if self.tcap[k] and not (
                self.cost_aware and self.tpar[k, E.TP_S_PER_TOKEN] >= self.tpar[0, E.TP_S_PER_TOKEN])
                and h in self.level(p, k)), 0)
            if k == 0:
                break
            out.append(k)
        return out

    # --- blocks -------------------------------------------------------------------------------------
    def avail(self, p: _Replica) -> int:
        return p.free + self.hb * p.evictable

    def alloc(self, p: _Replica, n: int) -> bool:
        if n <= 0:
            p.free -= n
            return True
        if self.avail(p) < n:
            return False
        while p.free < n:
            h, _ = p.lru.popitem(last=False)
            del p.table[h]
            if any(self.tcap):
                self.tier_put(p, h)
            p.free += self.hb
        p.free -= n
        return True

    def release(self, p: _Replica, q: _Req) -> None:
        for h in q.hashes[: q.held]:
            e = p.table.get(h)
            if e is not None:
                e.ref -= 1
                if e.ref == 0:
                    p.lru[h] = e
        q.held = 0
        p.free += q.own
        q.own = 0

    def register(self, p: _Replica, q: _Req) -> None:
        n_full = min(len(q.hashes), q.inp // self.hbt)
        for j in range(q.held, n_full):
            h = q.hashes[j]
            e = p.table.get(h)
            if e is not None:
                if e.ref == 0:
                    del p.lru[h]
                e.ref += 1
                p.free += self.hb
            else:
                p.table[h] = _Entry(h, 1)
            q.own -= self.hb
            q.held = j + 1

    # --- one step -----------------------------------------------------------------------------------
    def preempt_last(self, p: _Replica) -> None:
        q = p.running.pop()
        kv = q.inp + q.gen - 1 if q.decoding else q.done
        if self.swap_cap and kv > 0 and p.swap_used + kv <= self.swap_cap:
            q.swapped = kv
            p.swap_used += kv
            p.swap += kv * self.tpar[0, E.TP_SWAP]
        self.release(p, q)
        q.decoding = False
        q.done = 0
        q.target = q.inp + q.gen
        q.preempt += 1
        q.chunk = 0
        p.waiting.appendleft(q)

    def schedule(self, p: _Replica, t: float, t_seen: float = math.inf) -> None:
        """Plan the step starting at ``t``; with async scheduling, requests that arrived at or after
        ``t_seen`` (the previous step's start) wait for the next one while anything runs."""
        p.load = 0.0
        p.swap = 0.0
        while True:  # decodes first, then prefill chunks in admission order; preempt the newest if short
            decoding = [q for q in p.running if q.decoding]
            prefilling = [q for q in p.running if not q.decoding]
            needs = {id(q): (1 if (q.inp + q.gen - 1) % self.bs == 0 else 0) for q in decoding}
            budget = self.mbt - len(decoding)
            for q in prefilling:
                n = max(0, min(q.target - q.done, budget))
                q.chunk = n
                have = q.own + q.held * self.hb
                needs[id(q)] = max(0, -(-(q.done + n) // self.bs) - have) if n > 0 else 0
                budget -= n
            if sum(needs.values()) <= self.avail(p) or not p.running:
                break
            self.preempt_last(p)
        for q in p.running:  # blocks taken one sequence at a time
            self.alloc(p, needs[id(q)])
            q.own += needs[id(q)]
        n_pre = sum(q.chunk for q in prefilling)
        pairs = sum(q.chunk * (q.done + (q.chunk + 1) / 2.0) for q in prefilling)
        d = len(decoding)
        dkv = float(sum(q.inp + q.gen for q in decoding))
        lagging = bool(p.running)
        while p.waiting and len(p.running) < self.maxseq and budget > 0:
            q = p.waiting[0]
            if lagging and q.arr >= t_seen:
                break
            hits: list[_Entry] = []
            levels: list[int] = []
            if self.prefix:
                lim = min(len(q.hashes), (q.target - 1) // self.hbt + 1, q.inp // self.hbt)
                for h in q.hashes[:lim]:
                    e = p.table.get(h)
                    if e is None:
                        break
                    hits.append(e)
                if any(self.tcap):
                    levels = self.tier_levels(p, q.hashes[len(hits):lim])
            if q.swapped:
                hits, levels = [], []
            nh = len(hits)
            done = min((nh + len(levels)) * self.hbt, q.target - 1)
            if q.swapped:
                done = min(q.swapped, q.target - 1)
            n = min(q.target - done, budget)
            need = max(0, -(-(done + n) // self.bs) - nh * self.hb)
            taken = self.hb * sum(1 for e in hits if e.ref == 0)
            if need > self.avail(p) - taken:
                break
            for e in hits:
                if e.ref == 0:
                    del p.lru[e.h]
                e.ref += 1
            if levels:
                self.load_tiers(p, q, nh, levels, done)
            if q.swapped:
                p.swap += done * self.tpar[0, E.TP_SWAP]
                p.swap_used -= q.swapped
                q.swapped = 0
            self.alloc(p, need)
            p.waiting.popleft()
            q.held, q.own, q.done, q.chunk = nh, need, done, n
            if q.cached < 0:
                q.cached = done
                q.sched = t
            p.running.append(q)
            n_pre += n
            pairs += n * (done + (n + 1) / 2.0)
            budget -= n
        p.t0 = t
        if n_pre == 0 and d == 0:
            p.busy_until = math.inf
            p.now = t
            return
        dt = float(self.perf.step_time_s(float(n_pre), pairs, float(d), dkv))
        if p.load > 0.0:
            dt = max(dt, p.load) if self.overlap else dt + p.load
        p.busy_until = t + dt + p.swap

    def load_tiers(self, p: _Replica, q: _Req, nh: int, levels: list[int], done: int) -> None:
        """Refresh the tier blocks an admission loads and add their load time to the step."""
        left = done - nh * self.hbt
        loaded = [0] * (E.N_LEVELS + 1)
        for h, k in zip(q.hashes[nh:], levels, strict=False):
            if left <= 0:
                break
            self.level(p, k).move_to_end(h)
            n = min(self.hbt, left)
            loaded[k] += n
            left -= n
        for k in range(1, E.N_LEVELS + 1):
            if loaded[k]:
                p.load += self.tpar[k, E.TP_LATENCY] + loaded[k] * self.tpar[k, E.TP_S_PER_TOKEN]
        if q.cached < 0:
            q.tier_tokens = loaded

    def commit(self, p: _Replica) -> None:
        """Prefill progress in admission order, then finished decodes by request index."""
        t1 = p.busy_until
        p.busy += t1 - p.t0
        p.steps += 1
        gone: set[int] = set()
        for q in [q for q in p.running if not q.decoding]:
            q.done += q.chunk
            q.chunk = 0
            if q.done >= q.target:
                q.gen += 1
                if math.isnan(q.first):
                    q.first = t1
                if self.prefix:
                    self.register(p, q)
                if q.gen >= q.out:
                    self.release(p, q)
                    q.finish = t1
                    gone.add(q.i)
                else:
                    q.decoding = True
                    q.fresh = True
        decoding = sorted((q for q in p.running if q.decoding), key=lambda q: q.i)
        for q in decoding:
            if q.fresh:
                q.fresh = False
                continue
            q.gen += 1
            if q.gen >= q.out:
                self.release(p, q)
                q.finish = t1
                gone.add(q.i)
        p.running = [q for q in p.running if q.i not in gone]
        p.max_used = max(p.max_used, self.blocks - p.free - self.hb * p.evictable)
        p.now = t1


def _precise(eng: _Engine, q: _Req, skip: int) -> int:
    """llm-d's default profile, as :func:`planner.sim.engine._route_precise` (same arithmetic, same ties)."""
    waits = [len(p.waiting) for p in eng.reps]
    qmin, qmax = min(waits), max(waits)
    own = len(q.hashes) - skip
    best, best_score, best_load = 0, -1.0, 0
    for r, p in enumerate(eng.reps):
        share = 0.0
        if own > 0:
            hbm = next((j for j, h in enumerate(q.hashes) if h not in p.table), len(q.hashes))
            held = float(max(hbm - skip, 0))
            if any(eng.tcap):
                more = 0
                for h in q.hashes[hbm:]:
                    if not any(eng.tcap[k] and h in p.tiers[k] for k in range(1, E.N_LEVELS)):
                        break
                    more += 1
                held += TIER_BLOCK_WEIGHT * max(0, hbm + more - max(hbm, skip))
            share = held / own
        qs = 1.0 if qmax == qmin else (qmax - waits[r]) / (qmax - qmin)
        score = PRECISE_PREFIX_WEIGHT * share + QUEUE_WEIGHT * qs
        load = len(p.running) + len(p.waiting)
        if score > best_score or (score == best_score and load < best_load):
            best, best_score, best_load = r, score, load
    return best


def _bounded(nrep: int, load: Callable[[int], int], key: int) -> int:
    """Consistent hashing with bounded loads, as :func:`planner.sim.engine._route_bounded`."""
    num, den = BALANCE_FACTOR
    total = sum(load(r) for r in range(nrep))
    cap = (num * (total + 1) + den * nrep - 1) // (den * nrep)
    home = int(splitmix64_np(np.array([key], dtype=np.uint64))[0] % np.uint64(nrep))
    return next((r for r in ((home + k) % nrep for k in range(nrep)) if load(r) + 1 <= cap), home)


def _load(p: _Replica) -> int:
    return len(p.running) + len(p.waiting)


def _queued(p: _Replica) -> int:
    return sum(w.target for w in p.waiting)


def _sglang(eng: _Engine, q: _Req, skip: int, opt: RouterOptions) -> int:
    """SGLang's ``cache_aware``, as :func:`planner.sim.engine._route_sglang` (same arithmetic, same ties)."""
    loads = [_load(p) for p in eng.reps]
    lmin, lmax = min(loads), max(loads)
    if lmax - lmin > opt.balance_abs_threshold and lmax > opt.balance_rel_threshold * lmin:
        return loads.index(lmin)
    n = len(q.hashes)
    if n > 0:
        def match(p: _Replica) -> int:
            held = next((j for j, h in enumerate(q.hashes) if h not in p.tree), n)
            return max(held, skip)
        best = min(range(len(eng.reps)), key=lambda r: (-match(eng.reps[r]), loads[r], r))
        if match(eng.reps[best]) / n > opt.cache_threshold:
            return best
    return min(range(len(eng.reps)), key=lambda r: (len(eng.reps[r].tree), loads[r], r))


def _record(p: _Replica, q: _Req, cap: int) -> None:
    """The sglang router records ``q``'s blocks as sent to ``p``: last block first, oldest out past cap."""
    if cap <= 0:
        return
    for h in reversed(q.hashes):
        if h in p.tree:
            p.tree.move_to_end(h)
            continue
        if len(p.tree) >= cap:
            p.tree.popitem(last=False)
        p.tree[h] = None


def _dualmap(eng: _Engine, key: int, opt: RouterOptions, ttft_s: float, tok_s: float) -> int:
    """DualMap, as :func:`planner.sim.engine._route_dualmap` (same arithmetic, same ties)."""
    nrep = len(eng.reps)
    loads = [_load(p) for p in eng.reps]
    queued = [_queued(p) for p in eng.reps]
    cap = math.ceil(opt.hotspot_factor * (sum(loads) + 1) / nrep)
    h1 = splitmix64_np(np.array([key], dtype=np.uint64))
    c1 = int(h1[0] % np.uint64(nrep))
    c2 = int(splitmix64_np(h1)[0] % np.uint64(nrep - 1))
    c2 += 1 if c2 >= c1 else 0
    least = min(range(nrep), key=lambda r: (queued[r], loads[r], r))
    hot1, hot2 = loads[c1] + 1 > cap, loads[c2] + 1 > cap
    if hot1 and hot2:
        return least
    r = c2 if hot1 else c1 if hot2 else min((c1, c2), key=lambda c: (queued[c], loads[c], c != c1))
    return least if queued[r] * tok_s > ttft_s else r


def reference_shard(task: ShardTask, setup: EngineSetup, config: SimConfig) -> ShardOutput:
    """Simulate one shard step by step; inputs and outputs as :func:`planner.sim.replay.simulate_shard`."""
    nrep = int(task.replica_ids.size)
    eng = _Engine(setup, config, nrep)
    eng.prefix = config.engine.enable_prefix_caching and task.prefix_hashes.size > 0
    if config.kv_tiers is not None:
        tcap, eng.tpar, eng.swap_cap = tier_params(config, setup.perf, task.prefix_hashes,
                                                   setup.hash_block_tokens)
        eng.tcap = [int(c) for c in tcap] if eng.prefix else [0] * len(tcap)
        eng.overlap = config.kv_tiers.overlap
        eng.cost_aware = config.kv_tiers.cost_aware
    off = task.prefix_offsets
    reqs = [_Req(i, int(task.input_tokens[i]), int(task.output_tokens[i]),
                 [int(h) for h in task.prefix_hashes[off[i]:off[i + 1]]]) for i in range(task.arrival_s.size)]
    rep_of = np.full(len(reqs), -1, dtype=np.int64)
    rejected = np.zeros(len(reqs), dtype=bool)
    rr = 0
    cap = setup.blocks * config.engine.block_size
    opt = config.router_options
    tree_cap = 0
    if config.router is RouterName.SGLANG_CACHE_AWARE and task.prefix_hashes.size > 0:
        tree_cap = opt.tree_blocks or max(1, setup.blocks // eng.hb)
    ttft_s = opt.ttft_slo_s or config.default_slo.ttft_s
    tok_s = setup.prefill_s_per_token or opt.prefill_s_per_token or prefill_time_per_token(
        setup.perf, config.engine.max_batched_tokens)

    def load(r: int) -> int:
        return _load(eng.reps[r])

    for q in reqs:
        t = float(task.arrival_s[q.i])
        for p in eng.reps:
            while p.busy_until < t:
                eng.commit(p)
                eng.schedule(p, p.busy_until, p.t0 if eng.async_scheduling else math.inf)
        router = config.router
        if nrep == 1:
            r = 0
        elif router is RouterName.ROUND_ROBIN:
            r = rr % nrep
            rr += 1
        elif router is RouterName.HASH:
            r = int(task.route_key[q.i] % np.uint64(nrep))
        elif router is RouterName.LEAST_OUTSTANDING:
            r = min(range(nrep), key=load)
        elif router is RouterName.PRECISE_PREFIX:
            r = _precise(eng, q, int(task.affinity_key[q.i]))
        elif router is RouterName.SESSION_AFFINITY:
            r = _bounded(nrep, load, int(task.affinity_key[q.i]))
        elif router is RouterName.SGLANG_CACHE_AWARE:
            r = _sglang(eng, q, int(task.affinity_key[q.i]), opt)
        elif router is RouterName.DUALMAP:
            r = _dualmap(eng, int(task.affinity_key[q.i]), opt, ttft_s, tok_s)
        elif router is RouterName.LEAST_KV:
            r = min(range(nrep), key=lambda k: (eng.blocks - eng.reps[k].free
                                                 - eng.hb * eng.reps[k].evictable)
                    + sum(w.target for w in eng.reps[k].waiting) / eng.bs)
        else:
            key = task.route_key[q.i] if router is RouterName.POWER_OF_TWO else task.affinity_key[q.i]
            h1 = splitmix64_np(np.array([key], dtype=np.uint64))
            h2 = splitmix64_np(h1)
            c1 = int(h1[0] % np.uint64(nrep))
            c2 = int(h2[0] % np.uint64(nrep - 1))
            c2 += 1 if c2 >= c1 else 0
            r = c1 if load(c1) <= load(c2) else c2
        if router is RouterName.SGLANG_CACHE_AWARE:
            _record(eng.reps[r], q, tree_cap)
        rep_of[q.i] = r
        if q.inp + q.out > cap:
            rejected[q.i] = True
            continue
        q.target = q.inp
        q.arr = t
        p = eng.reps[r]
        p.waiting.append(q)
        if p.busy_until == math.inf:
            eng.schedule(p, max(t, p.now))
    for p in eng.reps:
        while p.busy_until < math.inf:
            eng.commit(p)
            eng.schedule(p, p.busy_until, p.t0 if eng.async_scheduling else math.inf)
    n = len(reqs)
    rq = np.zeros((n, E.N_RQ), dtype=np.int64)
    rf = np.full((n, E.N_RF), np.nan)
    for q in reqs:
        rq[q.i, E.R_GEN] = q.gen
        rq[q.i, E.R_PREEMPT] = q.preempt
        rq[q.i, E.R_CACHED] = q.cached
        rq[q.i, E.R_T1:E.R_T3 + 1] = q.tier_tokens[1:]
        rq[q.i, E.R_REP] = rep_of[q.i]
        rq[q.i, E.R_PHASE] = E.PH_REJECTED if rejected[q.i] else E.PH_DONE
        rf[q.i] = (q.first, q.finish, q.sched)
    return ShardOutput(
        index=task.index, replica_ids=task.replica_ids, request_ids=task.request_ids, rq=rq, rf=rf,
        ts=np.zeros((1, nrep, E.N_TS)), busy_s=np.array([p.busy for p in eng.reps]),
        steps=np.array([p.steps for p in eng.reps], dtype=np.int64),
        kernel_steps=np.array([p.steps for p in eng.reps], dtype=np.int64),
        max_used_blocks=np.array([p.max_used for p in eng.reps], dtype=np.int64), violations=0,
    )
