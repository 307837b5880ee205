"""One shard's (or pool's) live engine state, advanced by the numba loop in slices of simulated time.

Why a class around the arrays: autoscaling and power capping need Python at control ticks (policies are
plain Python functions), so the event loop is run in time slices: :meth:`ShardEngine.run_until` lets the
numba loop take every arrival before ``t`` and run every replica up to its last step boundary before
``t``; Python then reads the replicas' state (the metrics a live autoscaler would scrape), changes which
replicas are routable, locks clocks, and resumes. Between ticks nothing runs in Python.

Replica *slots*: the arrays hold a fixed number of slots; autoscaling turns slots on (cold start, then
routable), off (drain, then stopped) and reuses stopped ones (their prefix cache flushed). Without an
autoscaler every slot is a routable replica from the start, and the results are those of one call over
all arrivals.

Clock levels: each slot runs its steps with one row of the kernel-parameter and decode tables
(``P_LVL``); level 0 is the perf model as given, levels for locked clocks are added on first use from
``perf.at_clock(mhz)`` (the kernel function must be the same, only its parameters change).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from planner.perf.api import ReplicaPerf
from planner.sim import engine as E  # noqa: N812 (the engine's field constants read as E.R_*)
from planner.sim.config import RouterName, SimConfig
from planner.sim.kernels import kernel_id, power_kernel_id

CHUNK_ARRIVALS = 1 << 16
"""Arrivals per call of the numba loop (between two progress updates)."""

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
U64 = NDArray[np.uint64]


def _decode_tables(perf: ReplicaPerf, maxseq: int) -> tuple[F64, F64]:
    a = np.zeros(maxseq + 1)
    b = np.zeros(maxseq + 1)
    for d in range(1, maxseq + 1):
        a[d], b[d] = perf.decode_affine(d)
    return a, b


def prefill_time_per_token(perf: ReplicaPerf, chunk_tokens: int) -> float:
    """Seconds per prompt token of one prefill step of ``chunk_tokens`` fresh tokens (no cached context,
    no decodes): what a queued prompt token costs a replica that prefills at full budget, the rate a
    router turns a queue of prompt tokens into a wait with.

    >>> from planner.sim.testing import LinearPerf
    >>> round(prefill_time_per_token(LinearPerf(base_s=0.01, per_prefill_token_s=1e-4), 100), 6)
    0.0002
    """
    n = float(max(chunk_tokens, 1))
    return float(perf.step_time_s(n, n * (n + 1) / 2.0, 0.0, 0.0)) / n


def gather_prefixes(ph: U64, offsets: I64, rows: I64) -> tuple[U64, I64]:
    """The prefix hashes of ``rows`` (in this order) as a new flat array and its offsets.

    >>> ph, off = gather_prefixes(np.array([7, 8, 9], dtype=np.uint64), np.array([0, 2, 3]), np.array([1, 0]))
    >>> ph.tolist(), off.tolist()
    ([9, 7, 8], [0, 1, 3])
    """
    starts = offsets[rows]
    lens = offsets[rows + 1] - starts
    new_off = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(lens, out=new_off[1:])
    total = int(new_off[-1])
    idx = np.repeat(starts - new_off[:-1], lens) + np.arange(total, dtype=np.int64)
    out: U64 = ph[idx]
    return out, new_off


TierState = tuple[I64, U64, I64, I64, I64, I64, I64, F64, I64]
"""The engine's ``tiers`` tuple (see the KV-tier layout in :mod:`planner.sim.engine`)."""


def tier_params(config: SimConfig, perf: ReplicaPerf, prefix_hashes: U64, hbt: int) -> tuple[I64, F64, int]:
    """Blocks each KV-tier level holds per owner (``tcap``, 0: off) and its load costs (``tpar``), as the
    engine's KV-tier layout reads them, and the swap space in tokens per replica; all zero without tiers.

    A level never holds more blocks than the shard has distinct prefix blocks, so its capacity is clipped
    there (same behaviour, and a multi-terabyte tier costs no more memory than the trace). The recompute
    cost the cost-aware rule weighs a load against is the perf model's seconds per token of a fresh
    prompt's first ``max_batched_tokens`` chunk.
    """
    tcap = np.zeros(E.N_LEVELS + 1, dtype=np.int64)
    tpar = np.zeros((E.N_LEVELS + 1, 2))
    tiers = config.kv_tiers
    if tiers is None:
        return tcap, tpar, 0
    kvb = float(perf.kv_bytes_per_token)
    distinct = int(np.unique(prefix_hashes).size)
    for k, lv in tiers.slots():
        tcap[k] = min(lv.capacity_tokens(kvb, perf.gpus) // hbt, distinct)
        tpar[k, E.TP_S_PER_TOKEN] = lv.seconds_per_token(kvb)
        tpar[k, E.TP_LATENCY] = lv.latency_s
    tpar[0, E.TP_S_PER_TOKEN] = prefill_time_per_token(perf, config.engine.max_batched_tokens)
    swap = 0
    if tiers.swap_gb > 0:  # each GPU swaps its own share of a token's KV over its own host link
        swap = int(tiers.swap_gb * 1e9 / max(kvb, 1.0))
        tpar[0, E.TP_SWAP] = tiers.levels[0].seconds_per_token(kvb)
    return tcap, tpar, swap


def _tier_state(config: SimConfig, perf: ReplicaPerf, ci: I64, prefix_hashes: U64, prefix_offsets: I64,
                hbt: int, slots: int, prefix_on: bool) -> TierState:
    """The KV tiers' arrays (sized by :func:`tier_params`); sets the tier flags in ``ci``."""
    tiers = config.kv_tiers
    tcap, tpar, swap = tier_params(config, perf, prefix_hashes, hbt)
    ci[E.C_SWAP_CAP] = swap
    if tiers is not None and prefix_on:
        ci[E.C_TIERS] = 1
        ci[E.C_OVERLAP] = 1 if tiers.overlap else 0
        ci[E.C_COSTAWARE] = 1 if tiers.cost_aware else 0
    else:
        tcap[:] = 0
    n_ent = int(slots * (tcap[1] + tcap[2]) + tcap[E.N_LEVELS]) + 1
    size = 1 << max(4, int(2 * n_ent - 1).bit_length())
    tent = np.full((n_ent, E.N_ENT), -1, dtype=np.int64)
    tfree = np.zeros(n_ent + 1, dtype=np.int64)
    tfree[0] = n_ent
    tfree[1:] = np.arange(n_ent - 1, -1, -1)
    tlru = np.full((2 * slots + 1, 3), -1, dtype=np.int64)
    tlru[:, E.TL_COUNT] = 0
    lens = np.diff(prefix_offsets)
    longest = max(1, int(lens.max()) if lens.size else 1)  # the lookup scratch (HBM and tier entries)
    return (tent, np.zeros(n_ent, dtype=np.uint64), np.full(size, -1, dtype=np.int64), tfree, tlru, tcap,
            np.zeros((E.N_LEVELS + 1, 2), dtype=np.int64), tpar, np.zeros((2, longest), dtype=np.int64))


class ShardEngine:
    """The numba loop's state for one group of replica slots behind one router.

    Args:
        arrival_s, input_tokens, output_tokens: the requests in arrival order (the arrays may be
            filled in later, up to :attr:`known`, by a P/D hand-off; see :meth:`extend`).
        prefix_hashes, prefix_offsets, route_key, affinity_key: as in ``ShardTask``.
        perf: the replicas' performance at full clock (level 0).
        blocks, hash_block_tokens: KV blocks per replica and the prefix-hash granularity.
        config: scheduler and router options.
        slots: replica slots in the arrays.
        routable: slots routable from the start.
        dt: time-series resolution of the ``ts`` array.
        metrics: keep vLLM counters and histograms (bounds ``ttft_buckets`` / ``itl_buckets``).
        power: compute each step's power in the loop (needs ``perf.power_kernel()``).
        preload: requests arrive with their prompt's KV (decode pool of a P/D split).
        known: requests whose arrival is known (default: all).
        prefill_s_per_token: the ``dualmap`` router's prefill time per queued prompt token (default: the
            router options' value, else derived from ``perf``: :func:`prefill_time_per_token`).
    """

    def __init__(self, *, arrival_s: F64, input_tokens: I64, output_tokens: I64, prefix_hashes: U64,
                 prefix_offsets: I64, route_key: U64, affinity_key: U64, perf: ReplicaPerf, blocks: int,
                 hash_block_tokens: int, config: SimConfig, slots: int, routable: list[int], dt: float,
                 metrics: bool = False, power: bool = False, preload: bool = False,
                 ttft_buckets: tuple[float, ...] = (), itl_buckets: tuple[float, ...] = (),
                 known: int | None = None, prefill_s_per_token: float | None = None) -> None:
        eng = config.engine
        n = int(arrival_s.size)
        self.n = n
        self.known = n if known is None else known
        self.arr, self.inp, self.out = arrival_s, input_tokens, output_tokens
        self.ph, self.ph_off = prefix_hashes, prefix_offsets
        self.rkey, self.akey = route_key, affinity_key
        self.perf = perf
        self.slots = slots
        maxseq = eng.max_num_seqs
        self.maxseq = maxseq
        kernel, kp = perf.kernel()
        self.kernel = kernel
        self.kid = kernel_id(kernel)
        self.power = power
        pfn: object | None = None
        if power:
            pk = getattr(perf, "power_kernel", None)
            if pk is None:
                raise TypeError("power in the loop needs a perf model with power_kernel()")
            pfn, pp = pk()
        else:
            pp = kp
        self.pkernel = pfn
        self.pkid = power_kernel_id(pfn)
        self.kparams = np.ascontiguousarray(np.asarray(kp, dtype=np.float64)[None, :])
        self.pparams = np.ascontiguousarray(np.asarray(pp, dtype=np.float64)[None, :])
        a, b = _decode_tables(perf, maxseq)
        self.a_tab = a[None, :].copy()
        self.b_tab = b[None, :].copy()
        self.levels: dict[float | None, int] = {None: 0}
        hbt = hash_block_tokens
        hb = hbt // eng.block_size
        prefix_on = eng.enable_prefix_caching and prefix_hashes.size > 0 and not preload
        ci = np.zeros(E.N_CI, dtype=np.int64)
        ci[E.C_BS] = eng.block_size
        ci[E.C_MBT] = eng.max_batched_tokens
        ci[E.C_MAXSEQ] = maxseq
        ci[E.C_BLOCKS] = blocks
        ci[E.C_HBT] = hbt
        ci[E.C_HB] = hb
        ci[E.C_PREFIX] = 1 if prefix_on else 0
        ci[E.C_ROUTER] = config.router.code
        ci[E.C_NREP] = slots
        ci[E.C_POWER] = 1 if power else 0
        ci[E.C_METRICS] = 1 if metrics else 0
        ci[E.C_PRELOAD] = 1 if preload else 0
        ci[E.C_ASYNC] = 1 if eng.async_scheduling else 0
        self.ci = ci
        self.tiers = _tier_state(config, perf, ci, prefix_hashes, prefix_offsets, hbt, slots, prefix_on)
        pi = np.zeros((slots, E.N_PI), dtype=np.int64)
        pi[:, E.P_HEAD] = -1
        pi[:, E.P_TAIL] = -1
        pi[:, E.P_LRU_HEAD] = -1
        pi[:, E.P_LRU_TAIL] = -1
        pi[:, E.P_FREE] = blocks
        pi[:, E.P_TR_HEAD] = -1
        pi[:, E.P_TR_TAIL] = -1
        self.pi = pi
        self._router_state(config, blocks, hb, slots, prefix_hashes.size > 0, prefill_s_per_token)
        pf = np.zeros((slots, E.N_PF))
        pf[:, E.Q_BUSY_UNTIL] = np.inf
        pf[:, E.Q_SLOW] = 1.0
        self.pf = pf
        rq = np.zeros((n, E.N_RQ), dtype=np.int64)
        rq[:, E.R_CACHED] = -1
        rq[:, E.R_NEXT] = -1
        rq[:, E.R_REP] = -1
        self.rq = rq
        self.rf = np.full((n, E.N_RF), np.nan)
        if prefix_on:
            n_ent = slots * (blocks // hb) + 1
            size = 1 << max(4, int(2 * n_ent - 1).bit_length())
        else:
            n_ent = 1
            size = 16
        ent = np.full((n_ent, E.N_ENT), -1, dtype=np.int64)
        ent[:, E.E_REF] = 0
        self.ent = ent
        self.ent_hash = np.zeros(n_ent, dtype=np.uint64)
        self.tab_ent = np.full(size, -1, dtype=np.int64)
        ent_free = np.zeros(n_ent + 1, dtype=np.int64)  # [0] = count, then a stack of free entry ids
        ent_free[0] = n_ent
        ent_free[1:] = np.arange(n_ent - 1, -1, -1)
        self.ent_free = ent_free
        self.lst = np.zeros((slots, E.N_L, 2 * maxseq), dtype=np.int64)
        self.hist = np.zeros((slots, eng.block_size), dtype=np.int64)
        self.scratch = np.zeros(self.tiers[E.TI_SCR].shape[1], dtype=np.int64)
        self.dt = float(dt)
        horizon = float(arrival_s[self.known - 1]) if self.known else 0.0
        self.ts = np.zeros((int(horizon / self.dt) + 2, slots, E.N_TS))
        self.tb = np.asarray(ttft_buckets, dtype=np.float64)
        self.ib = np.asarray(itl_buckets, dtype=np.float64)
        self.mh = np.zeros(E.M_HIST + self.tb.size + 1 + self.ib.size + 1, dtype=np.int64)
        self.route = np.zeros(slots, dtype=np.int64)
        self.q_next = 0
        self.set_routable(routable)

    def _router_state(self, config: SimConfig, blocks: int, hb: int, slots: int, hashes: bool,
                      prefill_s_per_token: float | None) -> None:
        """The routers' thresholds (``cf``) and the sglang router's per-replica prefix record."""
        opt = config.router_options
        tok = prefill_s_per_token or opt.prefill_s_per_token or prefill_time_per_token(
            self.perf, config.engine.max_batched_tokens)
        cf = np.zeros(E.N_CF)
        cf[E.G_CACHE_THR] = opt.cache_threshold
        cf[E.G_BAL_REL] = opt.balance_rel_threshold
        cf[E.G_TTFT] = opt.ttft_slo_s or config.default_slo.ttft_s
        cf[E.G_TOK_S] = tok
        cf[E.G_HOT] = opt.hotspot_factor
        self.cf = cf
        cap = 0
        if config.router is RouterName.SGLANG_CACHE_AWARE and hashes:
            cap = opt.tree_blocks or max(1, blocks // hb)
        self.ci[E.C_TREE_CAP] = cap
        self.ci[E.C_BAL_ABS] = opt.balance_abs_threshold
        n_tr = max(1, slots * cap)
        self.tr_ent = np.full((n_tr, E.N_ENT), -1, dtype=np.int64)
        self.tr_hash = np.zeros(n_tr, dtype=np.uint64)
        self.tr_tab = np.full(1 << max(4, int(2 * n_tr - 1).bit_length()), -1, dtype=np.int64)
        tr_free = np.zeros(n_tr + 1, dtype=np.int64)
        tr_free[0] = n_tr
        tr_free[1:] = np.arange(n_tr - 1, -1, -1)
        self.tr_free = tr_free

    # --- control ---------------------------------------------------------------------------------

    def set_routable(self, slots: list[int]) -> None:
        """The router's candidates from now on (slot numbers, in this order)."""
        if not slots:
            raise ValueError("at least one routable replica is needed")
        self.route[: len(slots)] = slots
        self.ci[E.C_NROUTE] = len(slots)

    def level_for(self, mhz: float | None) -> int:
        """The clock level of ``mhz`` (None: unlocked), adding its kernel parameters on first use."""
        if mhz in self.levels:
            return self.levels[mhz]
        assert mhz is not None
        p = self.perf.at_clock(mhz)
        fn, kp = p.kernel()
        if fn is not self.kernel:
            raise TypeError("at_clock() must keep the perf kernel function (only its parameters change)")
        if self.power:
            pfn, pp = p.power_kernel()  # type: ignore[attr-defined]
            if pfn is not self.pkernel:
                raise TypeError("at_clock() must keep the power kernel function")
        else:
            pp = kp
        a, b = _decode_tables(p, self.maxseq)
        self.kparams = np.ascontiguousarray(np.vstack([self.kparams, np.asarray(kp, dtype=np.float64)]))
        self.pparams = np.ascontiguousarray(np.vstack([self.pparams, np.asarray(pp, dtype=np.float64)]))
        self.a_tab = np.ascontiguousarray(np.vstack([self.a_tab, a]))
        self.b_tab = np.ascontiguousarray(np.vstack([self.b_tab, b]))
        lvl = len(self.levels)
        self.levels[mhz] = lvl
        return lvl

    def set_level(self, slot: int, level: int, t: float) -> None:
        """Slot ``slot`` runs its next steps at clock ``level``; a decode run in flight is cut at its
        first step boundary at or after ``t`` so the change is not delayed by a long run."""
        if self.pi[slot, E.P_LVL] == level:
            return
        self.pi[slot, E.P_LVL] = level
        E.truncate_run(self.pi, self.pf, slot, t)

    def set_slowdown(self, slot: int, factor: float, t: float) -> None:
        """Slot ``slot``'s steps take ``factor`` times longer from its next step on (a straggler; 1:
        healthy); a decode run in flight is cut at its first step boundary at or after ``t``."""
        if self.pf[slot, E.Q_SLOW] == factor:
            return
        self.pf[slot, E.Q_SLOW] = factor
        E.truncate_run(self.pi, self.pf, slot, t)

    def fail(self, slot: int, t: float) -> I64:
        """Slot ``slot`` fails at ``t`` (fail-stop): the rows of the requests it held, now lost
        (:func:`planner.sim.engine.fail_replica`)."""
        lost = np.zeros(int(self.pi[slot, E.P_RUNLEN] + self.pi[slot, E.P_NWAIT]) + 1, dtype=np.int64)
        n = E.fail_replica(self.lst, self.pi, self.pf, self.ci, self.rq, self.hist, self.ent, self.ent_hash,
                           self.tab_ent, self.ent_free, self.tiers, self.ph, self.ph_off, self.inp, slot, t,
                           lost)
        out: I64 = lost[:n].copy()
        return out

    def flush(self, slot: int) -> None:
        """Forget a stopped slot's prefix cache before it hosts a new replica."""
        E.flush_replica(self.pi, self.ent, self.ent_hash, self.tab_ent, self.ent_free, self.ci, slot)
        if self.ci[E.C_TIERS]:
            E.flush_tiers(self.ci, self.tiers, slot)
        E.flush_tree(self.pi, self.tr_ent, self.tr_hash, self.tr_tab, self.tr_free, slot)

    def idle(self, slot: int) -> bool:
        """No request queued or running on ``slot`` and no step in flight."""
        p = self.pi[slot]
        return bool(p[E.P_MODE] == E.MODE_IDLE and p[E.P_NWAIT] == 0 and p[E.P_NRUN] == 0)

    def all_idle(self) -> bool:
        """Every slot idle and every known arrival taken."""
        return self.q_next >= self.known and bool(
            np.all(self.pi[:, E.P_MODE] == E.MODE_IDLE) and np.all(self.pi[:, E.P_NWAIT] == 0))

    # --- running ---------------------------------------------------------------------------------

    def _call(self, i1: int, t_stop: float, advance_to: float, drain: bool) -> None:
        self.ts, q = E.run_arrivals(
            self.kid, self.kparams, self.pkid, self.pparams, self.a_tab, self.b_tab, self.pi,
            self.pf, self.ci, self.cf, self.rq, self.rf, self.ent, self.ent_hash, self.tab_ent, self.ent_free,
            self.ph, self.ph_off, self.arr, self.inp, self.out, self.rkey, self.akey, self.route, self.lst,
            self.hist, self.scratch, self.tiers, self.ts, self.dt, self.mh, self.tb, self.ib, self.tr_ent,
            self.tr_hash, self.tr_tab, self.tr_free, self.q_next, i1, t_stop, advance_to, drain)
        self.q_next = int(q)

    def run_until(self, t_stop: float, progress: Callable[[int, int], None] | None = None) -> None:
        """Take every known arrival before ``t_stop``, then run each slot to its last step boundary
        before ``t_stop`` (``inf``: take every known arrival, leave the replicas running)."""
        while self.q_next < self.known and self.arr[self.q_next] < t_stop:
            i1 = min(self.known, self.q_next + CHUNK_ARRIVALS)
            self._call(i1, t_stop, np.inf, False)
            if progress is not None:
                progress(self.q_next, self.n)
        if np.isfinite(t_stop):
            self._call(self.q_next, t_stop, t_stop, False)

    def drain(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Take every remaining known arrival and run every slot until idle."""
        self.run_until(np.inf, progress)
        self._call(self.known, np.inf, np.inf, True)

    def extend(self, arrival_s: F64, input_tokens: I64, output_tokens: I64, keys: U64,
               prefix_of: I64 | None = None, affinity_keys: U64 | None = None,
               hashes: tuple[U64, I64] | None = None) -> I64:
        """Add arrivals (P/D hand-off, retries) at or after the last taken one.

        The rows not yet taken are re-sorted by arrival (stable), so the loop still sees arrivals in
        time order. Returns the permutation applied to rows ``q_next..`` as the new order of those rows
        (callers keep their own row -> request maps in step). ``prefix_of``: for each new arrival, the
        row whose prefix hashes it carries (a retry is the same prompt); ``hashes``: instead, the new
        arrivals' own prefix hashes (flat, offsets; a session's next turn); ``affinity_keys``: their
        affinity keys (default ``keys``).
        """
        k = int(arrival_s.size)
        lo = self.q_next
        hi = self.known
        if hi + k > self.n:
            raise ValueError("more hand-offs than rows")
        arr = np.concatenate([self.arr[lo:hi], arrival_s])
        order = np.argsort(arr, kind="stable")
        inp = np.concatenate([self.inp[lo:hi], input_tokens])
        out = np.concatenate([self.out[lo:hi], output_tokens])
        rk = np.concatenate([self.rkey[lo:hi], keys])
        ak = np.concatenate([self.akey[lo:hi], keys if affinity_keys is None else affinity_keys])
        if prefix_of is not None and self.ph.size:
            src = np.concatenate([np.arange(lo, hi, dtype=np.int64), prefix_of])[order]
            self._set_prefix_rows(lo, *gather_prefixes(self.ph, self.ph_off, src))
        elif hashes is not None and self.ph.size:
            old_ph, old_off = gather_prefixes(self.ph, self.ph_off, np.arange(lo, hi, dtype=np.int64))
            flat, off = hashes
            both = np.concatenate([old_ph, flat])
            both_off = np.concatenate([old_off[:-1], old_off[-1] + off])
            self._set_prefix_rows(lo, *gather_prefixes(both, both_off, order.astype(np.int64)))
        self.arr[lo:hi + k] = arr[order]
        self.inp[lo:hi + k] = inp[order]
        self.out[lo:hi + k] = out[order]
        self.rkey[lo:hi + k] = rk[order]
        self.akey[lo:hi + k] = ak[order]
        self.known = hi + k
        return order.astype(np.int64)

    def _set_prefix_rows(self, lo: int, tail: U64, tail_off: I64) -> None:
        """Rows ``lo..`` take the prefix hashes ``tail`` (offsets ``tail_off``); later rows have none."""
        off = self.ph_off
        k = tail_off.size - 1
        self.ph = np.concatenate([self.ph[:off[lo]], tail])
        new_off = off.copy()
        new_off[lo + 1:lo + 1 + k] = off[lo] + tail_off[1:]
        new_off[lo + 1 + k:] = off[lo] + tail_off[-1]
        self.ph_off = new_off

    # --- reading ---------------------------------------------------------------------------------

    @property
    def tier_io(self) -> I64:
        """Per KV-tier level: tokens loaded from it, blocks stored into it (engine layout)."""
        return self.tiers[6]

    def kv_usage(self) -> F64:
        """Used KV blocks over capacity per slot (``vllm:kv_cache_usage_perc`` as a fraction)."""
        used = self.ci[E.C_BLOCKS] - self.pi[:, E.P_FREE] - self.pi[:, E.P_EVICT]
        out: F64 = used / max(1, int(self.ci[E.C_BLOCKS]))
        return out

    def inflight_overlap(self, t0: float, t1: float) -> tuple[F64, F64]:
        """Per slot: (busy seconds, joules per GPU) of the step in flight that fall in ``[t0, t1)``
        (not yet in ``ts``, which steps enter when they end)."""
        active = self.pi[:, E.P_MODE] != E.MODE_IDLE
        start = np.maximum(self.pf[:, E.Q_T0], t0)
        ov = np.where(active, np.maximum(0.0, t1 - start), 0.0)
        return ov, ov * self.pf[:, E.Q_PW]
