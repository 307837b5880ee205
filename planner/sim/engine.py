"""The numba hot loop: every replica of one shard, vLLM-class scheduler, event to event.

Why one loop for all replicas of a shard: the state-dependent routers (least outstanding, least KV,
power of two, prefix affinity) need every replica's state at the moment a request arrives. The loop
therefore takes arrivals in time order; before routing an arrival at ``t`` it advances each replica
through its step boundaries that fall strictly before ``t`` (an O(1) check per replica when nothing is
due). Replicas are independent between arrivals, so the order in which they are advanced does not
matter.

Engine model (per replica, after vLLM v1's scheduler):

* a step has a token budget (``max_batched_tokens``) and at most ``max_num_seqs`` running sequences;
* running sequences go first, in admission order: a decoding sequence takes one token, a sequence in
  (chunked) prefill takes ``min(remaining, budget)``; then waiting requests are admitted FCFS while the
  budget, the sequence limit and the KV blocks allow (head-of-line blocking, as FCFS does);
* KV is paged in blocks of ``block_size`` tokens; when a sequence needs a block and none is free (nor
  evictable from the prefix cache), the most recently admitted running sequence is preempted by
  recompute: it frees its blocks, goes back to the front of the queue and later re-prefills its prompt
  plus the tokens it had generated;
* the prefix cache is an LRU over ``prefix_hashes`` blocks (of ``hash_block_tokens`` tokens each): the
  leading blocks of a prompt found in the replica's cache are not recomputed (at least one token always
  is); blocks of a finished prompt stay cached (evictable, LRU) until the space is needed.

Jumps: when the next step would be a pure-decode step with a fixed batch, the replica runs ``k`` such
steps as one event, ``k`` = steps to the next finish, bounded so that the KV blocks the batch can grow
into are guaranteed free. Its duration is ``sum_{i<k} a + b (kv0 + i D)`` from
:meth:`ReplicaPerf.decode_affine`. A run is cut short only when a request is routed to that replica
while its queue is empty (then the run ends at the first step boundary after the arrival, found by
solving the quadratic).

State lives in a few arrays of structs (row per request / replica, one column per field, see the
``R_*``, ``P_*`` constants) so the hot loop can be called in chunks of arrivals (for a progress bar)
and the state survives between calls.

Routers see each replica's state as of its last processed step boundary before the arrival.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from planner.sim.kernels import step_power_of, step_time_of

# --- request int fields (rq[i, F]) -------------------------------------------------------------------
R_PHASE = 0  # 0 not arrived, 1 waiting, 2 prefill, 3 decode, 4 done, 5 rejected, 6 lost to a fault
R_GEN = 1  # tokens generated (valid while not decoding; while decoding gen = x - R_C)
R_TARGET = 2  # prefill target: input + generated (recompute after preemption)
R_DONE = 3  # prefill progress in tokens (cached prefix included)
R_CACHED = 4  # cached prefix tokens at first admission (-1 before)
R_C = 5  # decode: generated = replica step counter - R_C
R_PREEMPT = 6
R_REP = 7
R_HELD = 8  # leading prefix-hash entries held (referenced)
R_OWN = 9  # KV blocks held outside the prefix cache
R_NEXT = 10  # waiting-queue link
R_CHUNK = 11  # tokens scheduled in the step in flight
R_ADM = 12  # admission number on its replica (tells live running-list entries from stale ones)
R_T1 = 13  # prompt tokens loaded from KV tier 1 at first admission (R_T1 + k - 1: tier k; 0 without tiers)
R_T2 = 14
R_T3 = 15
R_SWAP = 16  # KV tokens swapped out to host DRAM at its last preemption (0: none; swap preemption only)
N_RQ = 17

PH_NONE = 0
PH_WAIT = 1
PH_PREFILL = 2
PH_DECODE = 3
PH_DONE = 4
PH_REJECTED = 5
PH_LOST = 6  # taken off a replica that failed (fail-stop); a retry, if any, is a row of its own

# --- request float fields (rf[i, F]) -----------------------------------------------------------------
F_FIRST = 0
F_FINISH = 1
F_SCHED = 2
N_RF = 3

# --- replica int fields (pi[r, F]) -------------------------------------------------------------------
P_MODE = 0  # 0 idle, 1 mixed step in flight, 2 decode run in flight
P_NRUN = 1
P_HEAD = 2
P_TAIL = 3
P_NWAIT = 4
P_X = 5  # steps executed
P_D = 6  # decoding sequences
P_SUMBASE = 7  # sum over decoding seqs of input - R_C (decode kv = SUMBASE + D * X)
P_FREE = 8  # empty KV blocks
P_EVICT = 9  # blocks held by unreferenced prefix-cache entries (evictable)
P_LRU_HEAD = 10
P_LRU_TAIL = 11
P_WAIT_TOK = 12  # prompt tokens waiting
P_RUN_K = 13
P_STEPS = 14  # steps executed (statistics)
P_MAXUSED = 15  # highest KV blocks in use seen at a step boundary
P_RUNLEN = 16  # entries in the running list (live and stale)
P_NPRE = 17  # sequences in prefill (the prefill list)
P_HLEN = 18  # entries in the finish heap
P_ADMSEQ = 19  # admissions so far
P_MIXED = 20  # steps timed by the perf kernel (prefill or mixed); the rest were summed in closed form
P_LVL = 21  # clock level: row of the kernel-parameter and decode tables this replica's steps use
P_TR_HEAD = 22  # sglang-cache-aware: the router's record of the prefixes sent here, LRU list head (oldest)
P_TR_TAIL = 23  # ... its tail (most recent)
P_TR_SIZE = 24  # ... blocks in it
P_SWAP_USED = 25  # swap-space tokens held by swapped-out requests
N_PI = 26

# --- per-replica lists (lst[r, L, i]); capacity 2 * max_num_seqs -------------------------------------
L_RUN = 0  # running sequences in admission order (lazy deletion)
L_ADM = 1  # their admission numbers
L_PRE = 2  # sequences in prefill, admission order (compact)
L_HKEY = 3  # finish heap: step counter at which the sequence has its last token
L_HQ = 4  # finish heap: request
N_L = 5

MODE_IDLE = 0
MODE_STEP = 1
MODE_RUN = 2

# --- replica float fields (pf[r, F]) -----------------------------------------------------------------
Q_NOW = 0
Q_BUSY_UNTIL = 1
Q_T0 = 2  # start of the step/run in flight
Q_A = 3
Q_B = 4
Q_KV0 = 5
Q_P = 6  # prefill tokens of the step in flight
Q_PAIRS = 7
Q_DKV = 8  # decode kv of the step in flight
Q_BUSY_TOTAL = 9
Q_PW = 10  # power per GPU of the step or run in flight (power in the loop), W
Q_LOAD = 11  # seconds of KV-tier loads the step in flight waits for (overlapped or not: C_OVERLAP)
Q_SWAP = 12  # seconds of swap-out and swap-in copies before the step in flight's compute (never overlapped)
Q_SLOW = 13  # step-time multiplier of a straggling replica (1: healthy; faults in the loop set it)
N_PF = 14

# --- config ints (ci[F]) -----------------------------------------------------------------------------
C_BS = 0
C_MBT = 1
C_MAXSEQ = 2
C_BLOCKS = 3
C_HBT = 4  # tokens per prefix-hash block
C_HB = 5  # KV blocks per prefix-hash block
C_PREFIX = 6  # prefix cache on
C_ROUTER = 7
C_NREP = 8
C_RR = 9  # round-robin counter (state)
C_VIOL = 10  # invariant violations seen (time going back, KV over capacity): must stay 0
C_NROUTE = 11  # routable replicas: the first C_NROUTE entries of the route list
C_POWER = 12  # power in the loop: step power from the power kernel into T_ENERGY
C_METRICS = 13  # vLLM-style counters and histograms into the metrics vector
C_PRELOAD = 14  # requests arrive with their prompt's KV already present (decode pool of a P/D split)
C_ASYNC = 15  # async scheduling: a request that arrives during a step joins the step after the next
C_TIERS = 16  # KV tiers below HBM on (planner.contracts.kv_tiers): evicted prefix blocks go down, hits load
C_OVERLAP = 17  # tier loads overlap the step's compute (step = max(compute, load)); else compute + load
C_COSTAWARE = 18  # a tier serves a block only where loading it beats recomputing it
C_TREE_CAP = 19  # sglang-cache-aware: blocks the router's record keeps per replica (0: no record)
C_BAL_ABS = 20  # sglang-cache-aware: balance_abs_threshold
C_SWAP_CAP = 21  # swap space per replica, tokens (0: preemption by recompute only)
N_CI = 22

# --- config floats (cf[F]): router thresholds and targets (planner.sim.config.RouterOptions) ---------
G_CACHE_THR = 0  # sglang-cache-aware: cache_threshold
G_BAL_REL = 1  # sglang-cache-aware: balance_rel_threshold
G_TTFT = 2  # dualmap: TTFT target, seconds
G_TOK_S = 3  # dualmap: prefill seconds per queued prompt token
G_HOT = 4  # dualmap: hot-spot factor over the fair share
N_CF = 5

# routers (codes; names in planner.sim.config.RouterName)
ROUTER_ROUND_ROBIN = 0
ROUTER_LEAST_OUTSTANDING = 1
ROUTER_LEAST_KV = 2
ROUTER_POWER_OF_TWO = 3
ROUTER_PREFIX_AFFINITY = 4
ROUTER_HASH = 5  # stateless: replica = hash(request) mod replicas (sharding-independent)
ROUTER_PRECISE_PREFIX = 6  # llm-d: prefix share held in each replica's own cache (x3) + queue score (x2)
W_PREFIX = 3.0  # planner.sim.config.PRECISE_PREFIX_WEIGHT
W_QUEUE = 2.0  # planner.sim.config.QUEUE_WEIGHT
W_TIER = 0.8  # planner.sim.config.TIER_BLOCK_WEIGHT
ROUTER_SESSION_AFFINITY = 7  # a session's home on a hash ring, bounded loads (1.25 x the mean)
BAL_NUM = 5  # planner.sim.config.BALANCE_FACTOR
BAL_DEN = 4
ROUTER_SGLANG_CACHE_AWARE = 8  # SGLang's cache_aware: balance thresholds, then the router's prefix record
ROUTER_DUALMAP = 9  # two prefix candidates, hot-spot spill, TTFT-target switch to the least loaded

# --- prefix-cache entries (ent[e, F]); the sglang router's record uses the same layout (tr_ent) ------
E_REP = 0
E_REF = 1
E_PREV = 2
E_NEXT = 3
E_SLOT = 4
N_ENT = 5

# --- KV tiers (the ``tiers`` tuple; planner.contracts.kv_tiers) -------------------------------------
# (tent, thash, ttab, tfree, tlru, tcap, tio, tpar, tscr):
#   tent[e, E_*]: tier entries, laid out as prefix-cache entries (E_REP holds the owner, E_REF unused), so
#       the open-addressing table functions serve both; owner (level k, replica r) = (k - 1) * slots + r for
#       the local levels 1..2, 2 * slots for the shared level 3;
#   tlru[owner, TL_*]: LRU list head / tail and entry count; tcap[k]: blocks level k holds per owner (0: off);
#   tio[k, TIO_*]: tokens loaded from / blocks stored into level k;
#   tpar[k, TP_*]: load seconds per token and per load of level k; tpar[0, TP_S_PER_TOKEN]: recompute
#       seconds per prompt token (the cost-aware rule); tscr[0 | 1, j]: entry / level of a lookup's block j.
TI_ENT = 0  # positions in the tuple
TI_HASH = 1
TI_TAB = 2
TI_FREE = 3
TI_LRU = 4
TI_CAP = 5
TI_IO = 6
TI_PAR = 7
TI_SCR = 8
TL_HEAD = 0
TL_TAIL = 1
TL_COUNT = 2
TIO_LOADED = 0
TIO_STORED = 1
TP_S_PER_TOKEN = 0
TP_LATENCY = 1
TP_SWAP = 1  # tpar[0, TP_SWAP]: seconds per token of a swap copy (the host link, either way)
N_LEVELS = 3  # = planner.contracts.kv_tiers.SHARED_SLOT: levels 1, 2 per replica, 3 the shared pool

# --- time series fields (ts[interval, replica, F]) ---------------------------------------------------
T_BUSY = 0  # seconds executing steps
T_STEPS = 1
T_PREFILL = 2  # prefill tokens computed
T_PAIRS = 3
T_DECODE = 4  # decode tokens (= sum of decode_seqs over steps)
T_DKV = 5  # sum over steps of decode kv
T_RUNNING = 6  # integral of running seqs over busy time (seq-seconds)
T_WAITING = 7  # integral of waiting requests over busy time
T_KV = 8  # integral of used KV blocks over busy time
T_ENERGY = 9  # joules per GPU spent executing steps (power in the loop only)
N_TS = 10

# --- metrics vector (mh[F]), vLLM's names: the autoscaler's view ------------------------------------
M_ARRIVED = 0  # requests routed to the shard
M_SUCCESS = 1  # vllm:request_success_total
M_PROMPT = 2  # vllm:prompt_tokens_total (counted when the first token is out)
M_GEN = 3  # vllm:generation_tokens_total
M_TTFT_SUM_US = 4  # TTFT histogram _sum, microseconds
M_ITL_SUM_US = 5  # inter-token-latency histogram _sum, microseconds
M_HIST = 6  # then the TTFT buckets (len(tb) + 1, last = +Inf), then the ITL buckets (len(ib) + 1),
# each cumulative like Prometheus' ``le`` buckets

_MIX = np.uint64(0x9E3779B97F4A7C15)


@nb.njit(cache=True)
def splitmix64(x: np.uint64) -> np.uint64:  # pragma: no cover - numba
    """A 64-bit mixing hash (SplitMix64 finaliser): sharding-independent pseudo-randomness."""
    z = np.uint64(x) + _MIX
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


# ----------------------------------------------------------------------------------------------------
# prefix cache: open-addressing table (key = (replica, hash)) + LRU list of unreferenced entries
# ----------------------------------------------------------------------------------------------------


@nb.njit(cache=True, inline="always")
def _slot_of(h: np.uint64, r: int, mask: int) -> np.int64:  # pragma: no cover - numba
    return np.int64(splitmix64(h ^ (np.uint64(r) * np.uint64(0xD6E8FEB86659FD93))) & np.uint64(mask))


@nb.njit(cache=True)
def _tab_find(tab_ent, ent, ent_hash, h, r):  # type: ignore[no-untyped-def]  # pragma: no cover
    mask = tab_ent.shape[0] - 1
    s = _slot_of(h, r, mask)
    while True:
        e = tab_ent[s]
        if e < 0:
            return -1
        if ent_hash[e] == h and ent[e, E_REP] == r:
            return e
        s = (s + 1) & mask


@nb.njit(cache=True)
def _tab_insert(tab_ent, ent, ent_hash, h, r, e):  # type: ignore[no-untyped-def]  # pragma: no cover
    mask = tab_ent.shape[0] - 1
    s = _slot_of(h, r, mask)
    while tab_ent[s] >= 0:
        s = (s + 1) & mask
    tab_ent[s] = e
    ent[e, E_SLOT] = s
    ent_hash[e] = h
    ent[e, E_REP] = r


@nb.njit(cache=True)
def _tab_delete(tab_ent, ent, ent_hash, e):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Backward-shift deletion keeps linear probing correct without tombstones."""
    mask = tab_ent.shape[0] - 1
    i = ent[e, E_SLOT]
    tab_ent[i] = -1
    j = i
    while True:
        j = (j + 1) & mask
        f = tab_ent[j]
        if f < 0:
            return
        home = _slot_of(ent_hash[f], ent[f, E_REP], mask)
        # move f back to i when its home is not cyclically within (i, j]
        if (j > i and (home <= i or home > j)) or (j < i and (home <= i and home > j)):
            tab_ent[i] = f
            ent[f, E_SLOT] = i
            tab_ent[j] = -1
            i = j


@nb.njit(cache=True)
def _entry_take(free):  # type: ignore[no-untyped-def]  # pragma: no cover
    """An unused entry id from the free stack ``free`` (``free[0]``: how many; then the ids)."""
    e = free[free[0]]
    free[0] -= 1
    return e


@nb.njit(cache=True)
def _entry_free(tab, ents, hashes, free, e):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Entry ``e`` leaves its hash table and goes back on the free stack (prefix cache, KV tiers and
    the SGLang router's record alike)."""
    _tab_delete(tab, ents, hashes, e)
    ents[e, E_REP] = -1
    free[0] += 1
    free[free[0]] = e


@nb.njit(cache=True)
def _dl_unlink(own, row, head, tail, links, e):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Take entry ``e`` out of the doubly linked list whose ends are ``own[row, head]`` / ``own[row, tail]``
    (links in ``links[:, E_PREV]`` / ``links[:, E_NEXT]``): one list code for the prefix cache's LRU, the KV
    tiers' LRUs and the SGLang router's record."""
    p = links[e, E_PREV]
    n = links[e, E_NEXT]
    if p >= 0:
        links[p, E_NEXT] = n
    else:
        own[row, head] = n
    if n >= 0:
        links[n, E_PREV] = p
    else:
        own[row, tail] = p
    links[e, E_PREV] = -1
    links[e, E_NEXT] = -1


@nb.njit(cache=True)
def _dl_append(own, row, head, tail, links, e):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Put entry ``e`` at the tail (most recent end) of the list of :func:`_dl_unlink`."""
    t = own[row, tail]
    links[e, E_PREV] = t
    links[e, E_NEXT] = -1
    if t >= 0:
        links[t, E_NEXT] = e
    else:
        own[row, head] = e
    own[row, tail] = e


@nb.njit(cache=True)
def _lru_remove(pi, ent, r, e):  # type: ignore[no-untyped-def]  # pragma: no cover
    _dl_unlink(pi, r, P_LRU_HEAD, P_LRU_TAIL, ent, e)


@nb.njit(cache=True)
def _lru_push(pi, ent, r, e):  # type: ignore[no-untyped-def]  # pragma: no cover
    _dl_append(pi, r, P_LRU_HEAD, P_LRU_TAIL, ent, e)


@nb.njit(cache=True)
def _alloc(pi, ci, ent, ent_hash, tab_ent, ent_free, tiers, r, n):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Take ``n`` KV blocks on replica ``r``, evicting LRU prefix entries if needed (down to the KV tiers
    when there are any); False if impossible."""
    if n <= 0:
        pi[r, P_FREE] -= n  # n < 0 gives blocks back
        return True
    if pi[r, P_FREE] >= n:
        pi[r, P_FREE] -= n
        return True
    if pi[r, P_FREE] + pi[r, P_EVICT] < n:
        return False
    hb = ci[C_HB]
    while pi[r, P_FREE] < n:
        e = pi[r, P_LRU_HEAD]
        _lru_remove(pi, ent, r, e)
        if ci[C_TIERS] != 0:
            _tier_put(ci, tiers, 1, r, ent_hash[e])
        _entry_free(tab_ent, ent, ent_hash, ent_free, e)
        pi[r, P_EVICT] -= hb
        pi[r, P_FREE] += hb
    pi[r, P_FREE] -= n
    return True


@nb.njit(cache=True)
def _release(pi, ci, rq, ent, ent_hash, tab_ent, ph, ph_off, r, q):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Give back every block request ``q`` holds: own blocks freed, prefix entries unreferenced."""
    hb = ci[C_HB]
    o = ph_off[q]
    for j in range(rq[q, R_HELD]):
        e = _tab_find(tab_ent, ent, ent_hash, ph[o + j], r)
        if e >= 0:
            ent[e, E_REF] -= 1
            if ent[e, E_REF] == 0:
                _lru_push(pi, ent, r, e)
                pi[r, P_EVICT] += hb
    rq[q, R_HELD] = 0
    pi[r, P_FREE] += rq[q, R_OWN]
    rq[q, R_OWN] = 0


@nb.njit(cache=True)
def _register_prompt(pi, ci, rq, ent, ent_hash, tab_ent, ent_free, ph, ph_off, inp, r, q):  # type: ignore[no-untyped-def]  # pragma: no cover
    """At prefill completion, the full prompt blocks become (shared) prefix-cache entries."""
    hb = ci[C_HB]
    o = ph_off[q]
    nh = ph_off[q + 1] - o
    n_full = min(nh, inp[q] // ci[C_HBT])
    for j in range(rq[q, R_HELD], n_full):
        h = ph[o + j]
        e = _tab_find(tab_ent, ent, ent_hash, h, r)
        if e >= 0:
            if ent[e, E_REF] == 0:
                _lru_remove(pi, ent, r, e)
                pi[r, P_EVICT] -= hb
            ent[e, E_REF] += 1
            pi[r, P_FREE] += hb  # our duplicate copy is released
        else:
            if ent_free[0] == 0:
                break  # table full (cannot happen when sized from the block count)
            e = _entry_take(ent_free)
            _tab_insert(tab_ent, ent, ent_hash, h, r, e)
            ent[e, E_REF] = 1
        rq[q, R_OWN] -= hb
        rq[q, R_HELD] = j + 1


# ----------------------------------------------------------------------------------------------------
# KV tiers below HBM (victim hierarchy; see planner.contracts.kv_tiers)
# ----------------------------------------------------------------------------------------------------


@nb.njit(cache=True, inline="always")
def _owner(ci, k, r):  # type: ignore[no-untyped-def]  # pragma: no cover
    """The tier owner of level ``k`` for replica ``r`` (the shared level has one owner)."""
    if k == N_LEVELS:
        return 2 * ci[C_NREP]
    return (k - 1) * ci[C_NREP] + r


@nb.njit(cache=True)
def _tlru_remove(tlru, tent, o, e):  # type: ignore[no-untyped-def]  # pragma: no cover
    _dl_unlink(tlru, o, TL_HEAD, TL_TAIL, tent, e)


@nb.njit(cache=True)
def _tlru_push(tlru, tent, o, e):  # type: ignore[no-untyped-def]  # pragma: no cover
    _dl_append(tlru, o, TL_HEAD, TL_TAIL, tent, e)


@nb.njit(cache=True)
def _tier_drop(tiers, o, e):  # type: ignore[no-untyped-def]  # pragma: no cover
    tent, thash = tiers[TI_ENT], tiers[TI_HASH]
    ttab, tfree, tlru = tiers[TI_TAB], tiers[TI_FREE], tiers[TI_LRU]
    _tlru_remove(tlru, tent, o, e)
    _entry_free(ttab, tent, thash, tfree, e)
    tlru[o, TL_COUNT] -= 1


@nb.njit(cache=True)
def _tier_put(ci, tiers, k, r, h):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Keep block ``h``, evicted from level ``k - 1`` of replica ``r``, at level ``k`` or the next one on;
    a full level makes room by passing its least recently used block on down (the last level drops it).
    A block the level already holds is only refreshed."""
    tent, thash, ttab = tiers[TI_ENT], tiers[TI_HASH], tiers[TI_TAB]
    tfree, tlru, tcap, tio = tiers[TI_FREE], tiers[TI_LRU], tiers[TI_CAP], tiers[TI_IO]
    while k <= N_LEVELS:
        if tcap[k] == 0:
            k += 1
            continue
        o = _owner(ci, k, r)
        e = _tab_find(ttab, tent, thash, h, o)
        if e >= 0:
            _tlru_remove(tlru, tent, o, e)
            _tlru_push(tlru, tent, o, e)
            return
        vh = np.uint64(0)
        victim = tlru[o, TL_COUNT] >= tcap[k]
        if victim:
            v = tlru[o, TL_HEAD]
            vh = thash[v]
            _tier_drop(tiers, o, v)
        e = _entry_take(tfree)
        _tab_insert(ttab, tent, thash, h, o, e)
        _tlru_push(tlru, tent, o, e)
        tlru[o, TL_COUNT] += 1
        tio[k, TIO_STORED] += 1
        if not victim:
            return
        h = vh
        k += 1


@nb.njit(cache=True)
def _tier_lookup(ci, tiers, ph, o0, j0, lim, r):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Blocks ``j0 <= j < lim`` of a prompt (hashes at ``ph[o0 + j]``) found in replica ``r``'s tiers,
    up to the first one held nowhere; each found block's entry and level go to ``tscr[:, j]``. With
    the cost-aware rule a level whose load is slower than recomputation is not read."""
    tent, thash, ttab = tiers[TI_ENT], tiers[TI_HASH], tiers[TI_TAB]
    tcap, tpar, tscr = tiers[TI_CAP], tiers[TI_PAR], tiers[TI_SCR]
    costaware = ci[C_COSTAWARE] != 0
    j = j0
    while j < lim:
        h = ph[o0 + j]
        found = 0
        for k in range(1, N_LEVELS + 1):
            if tcap[k] == 0 or (costaware and tpar[k, TP_S_PER_TOKEN] >= tpar[0, TP_S_PER_TOKEN]):
                continue
            e = _tab_find(ttab, tent, thash, h, _owner(ci, k, r))
            if e >= 0:
                tscr[0, j] = e
                tscr[1, j] = k
                found = k
                break
        if found == 0:
            break
        j += 1
    return j


@nb.njit(cache=True)
def _tier_load(ci, tiers, rq, hbt, nh, j1, done, r, q, first):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Admit the tier blocks ``nh <= j < j1`` found by :func:`_tier_lookup`: refresh them in their level,
    count the tokens loaded (the prompt's part of ``done`` beyond the HBM hits) and return the seconds
    the loads take (per level: its latency plus tokens x seconds per token)."""
    tent, tlru, tio, tpar, tscr = tiers[TI_ENT], tiers[TI_LRU], tiers[TI_IO], tiers[TI_PAR], tiers[TI_SCR]
    left = done - nh * hbt
    loaded = np.zeros(N_LEVELS + 1, dtype=np.int64)
    for j in range(nh, j1):
        if left <= 0:
            break
        e = tscr[0, j]
        k = tscr[1, j]
        o = _owner(ci, k, r)
        _tlru_remove(tlru, tent, o, e)
        _tlru_push(tlru, tent, o, e)
        n = min(hbt, left)
        loaded[k] += n
        left -= n
    secs = 0.0
    for k in range(1, N_LEVELS + 1):
        if loaded[k] > 0:
            tio[k, TIO_LOADED] += loaded[k]
            secs += tpar[k, TP_LATENCY] + loaded[k] * tpar[k, TP_S_PER_TOKEN]
            if first:
                rq[q, R_T1 + k - 1] = loaded[k]
    return secs


@nb.njit(cache=True)
def flush_tiers(ci, tiers, r):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Empty replica ``r``'s own tiers (a stopped replica's host memory and disk go with it; a shared
    pool stays)."""
    tlru = tiers[TI_LRU]
    for k in range(1, N_LEVELS):
        o = _owner(ci, k, r)
        while tlru[o, TL_HEAD] >= 0:
            _tier_drop(tiers, o, tlru[o, TL_HEAD])


# ----------------------------------------------------------------------------------------------------
# queue
# ----------------------------------------------------------------------------------------------------


@nb.njit(cache=True)
def _push_back(pi, rq, r, q):  # type: ignore[no-untyped-def]  # pragma: no cover
    rq[q, R_NEXT] = -1
    t = pi[r, P_TAIL]
    if t >= 0:
        rq[t, R_NEXT] = q
    else:
        pi[r, P_HEAD] = q
    pi[r, P_TAIL] = q
    pi[r, P_NWAIT] += 1


@nb.njit(cache=True)
def _push_front(pi, rq, r, q):  # type: ignore[no-untyped-def]  # pragma: no cover
    rq[q, R_NEXT] = pi[r, P_HEAD]
    pi[r, P_HEAD] = q
    if pi[r, P_TAIL] < 0:
        pi[r, P_TAIL] = q
    pi[r, P_NWAIT] += 1


@nb.njit(cache=True)
def _pop_front(pi, rq, r):  # type: ignore[no-untyped-def]  # pragma: no cover
    q = pi[r, P_HEAD]
    pi[r, P_HEAD] = rq[q, R_NEXT]
    if pi[r, P_HEAD] < 0:
        pi[r, P_TAIL] = -1
    rq[q, R_NEXT] = -1
    pi[r, P_NWAIT] -= 1
    return q


# ----------------------------------------------------------------------------------------------------
# time series
# ----------------------------------------------------------------------------------------------------


@nb.njit(cache=True)
def _accum(ts, dt, r, t0, t1, steps, pre, pairs, dec, dkv, running, waiting, kvb, energy):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Spread a step (or run of steps) over the intervals it covers, in proportion to time."""
    dur = t1 - t0
    i0 = int(t0 / dt)
    i1 = int(t1 / dt)
    if i1 >= ts.shape[0]:
        n = ts.shape[0]
        while n <= i1:
            n *= 2
        grown = np.zeros((n, ts.shape[1], ts.shape[2]))
        grown[: ts.shape[0]] = ts
        ts = grown
    if i1 == i0 or dur <= 0.0:
        w = 1.0
        i = i0
        ts[i, r, T_BUSY] += dur
        ts[i, r, T_STEPS] += steps * w
        ts[i, r, T_PREFILL] += pre * w
        ts[i, r, T_PAIRS] += pairs * w
        ts[i, r, T_DECODE] += dec * w
        ts[i, r, T_DKV] += dkv * w
        ts[i, r, T_RUNNING] += running * dur
        ts[i, r, T_WAITING] += waiting * dur
        ts[i, r, T_KV] += kvb * dur
        ts[i, r, T_ENERGY] += energy
        return ts
    for i in range(i0, i1 + 1):
        a = max(t0, i * dt)
        b = min(t1, (i + 1) * dt)
        if b <= a:
            continue
        part = b - a
        w = part / dur
        ts[i, r, T_BUSY] += part
        ts[i, r, T_STEPS] += steps * w
        ts[i, r, T_PREFILL] += pre * w
        ts[i, r, T_PAIRS] += pairs * w
        ts[i, r, T_DECODE] += dec * w
        ts[i, r, T_DKV] += dkv * w
        ts[i, r, T_RUNNING] += running * part
        ts[i, r, T_WAITING] += waiting * part
        ts[i, r, T_KV] += kvb * part
        ts[i, r, T_ENERGY] += energy * w
    return ts


# ----------------------------------------------------------------------------------------------------
# scheduling one replica
# ----------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------
# running list (admission order, lazy deletion), prefill list, finish heap
# ----------------------------------------------------------------------------------------------------


@nb.njit(cache=True)
def _live(lst, rq, r, i):  # type: ignore[no-untyped-def]  # pragma: no cover
    q = lst[r, L_RUN, i]
    ph_q = rq[q, R_PHASE]
    return (ph_q == PH_PREFILL or ph_q == PH_DECODE) and rq[q, R_ADM] == lst[r, L_ADM, i]  # noqa: PLR1714, SIM109


@nb.njit(cache=True)
def _run_append(lst, pi, rq, r, q):  # type: ignore[no-untyped-def]  # pragma: no cover
    n = pi[r, P_RUNLEN]
    if n == lst.shape[2]:  # compact away finished/preempted entries (amortised O(1))
        w = 0
        for i in range(n):
            if _live(lst, rq, r, i):
                lst[r, L_RUN, w] = lst[r, L_RUN, i]
                lst[r, L_ADM, w] = lst[r, L_ADM, i]
                w += 1
        n = w
    pi[r, P_ADMSEQ] += 1
    rq[q, R_ADM] = pi[r, P_ADMSEQ]
    lst[r, L_RUN, n] = q
    lst[r, L_ADM, n] = pi[r, P_ADMSEQ]
    pi[r, P_RUNLEN] = n + 1
    pi[r, P_NRUN] += 1


@nb.njit(cache=True)
def _run_last(lst, pi, rq, r):  # type: ignore[no-untyped-def]  # pragma: no cover
    """The most recently admitted running sequence (dead trailing entries are dropped)."""
    while pi[r, P_RUNLEN] > 0:
        i = pi[r, P_RUNLEN] - 1
        if _live(lst, rq, r, i):
            return lst[r, L_RUN, i]
        pi[r, P_RUNLEN] = i
    return -1


@nb.njit(cache=True)
def _heap_less(lst, r, i, j):  # type: ignore[no-untyped-def]  # pragma: no cover
    ki = lst[r, L_HKEY, i]
    kj = lst[r, L_HKEY, j]
    return ki < kj or (ki == kj and lst[r, L_HQ, i] < lst[r, L_HQ, j])


@nb.njit(cache=True)
def _heap_swap(lst, r, i, j):  # type: ignore[no-untyped-def]  # pragma: no cover
    k = lst[r, L_HKEY, i]
    q = lst[r, L_HQ, i]
    lst[r, L_HKEY, i] = lst[r, L_HKEY, j]
    lst[r, L_HQ, i] = lst[r, L_HQ, j]
    lst[r, L_HKEY, j] = k
    lst[r, L_HQ, j] = q


@nb.njit(cache=True)
def _heap_down(lst, r, i, n):  # type: ignore[no-untyped-def]  # pragma: no cover
    while True:
        a = 2 * i + 1
        if a >= n:
            return
        b = a + 1
        m = b if b < n and _heap_less(lst, r, b, a) else a
        if _heap_less(lst, r, m, i):
            _heap_swap(lst, r, m, i)
            i = m
        else:
            return


@nb.njit(cache=True)
def _heap_valid(lst, rq, out, r, i):  # type: ignore[no-untyped-def]  # pragma: no cover
    q = lst[r, L_HQ, i]
    return rq[q, R_PHASE] == PH_DECODE and rq[q, R_C] + out[q] == lst[r, L_HKEY, i]


@nb.njit(cache=True)
def _heap_push(lst, pi, rq, out, r, key, q):  # type: ignore[no-untyped-def]  # pragma: no cover
    n = pi[r, P_HLEN]
    if n == lst.shape[2]:  # drop stale entries (preempted sequences) and re-heapify
        w = 0
        for i in range(n):
            if _heap_valid(lst, rq, out, r, i):
                lst[r, L_HKEY, w] = lst[r, L_HKEY, i]
                lst[r, L_HQ, w] = lst[r, L_HQ, i]
                w += 1
        n = w
        for i in range(n // 2 - 1, -1, -1):
            _heap_down(lst, r, i, n)
    lst[r, L_HKEY, n] = key
    lst[r, L_HQ, n] = q
    i = n
    pi[r, P_HLEN] = n + 1
    while i > 0:
        p = (i - 1) // 2
        if _heap_less(lst, r, i, p):
            _heap_swap(lst, r, i, p)
            i = p
        else:
            break


@nb.njit(cache=True)
def _heap_pop(lst, pi, r):  # type: ignore[no-untyped-def]  # pragma: no cover
    n = pi[r, P_HLEN] - 1
    _heap_swap(lst, r, 0, n)
    pi[r, P_HLEN] = n
    _heap_down(lst, r, 0, n)


@nb.njit(cache=True)
def _heap_top(lst, pi, rq, out, r):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Smallest valid finish step (stale entries popped), or -1 when no sequence decodes."""
    while pi[r, P_HLEN] > 0:
        if _heap_valid(lst, rq, out, r, 0):
            return lst[r, L_HKEY, 0]
        _heap_pop(lst, pi, r)
    return -1


# ----------------------------------------------------------------------------------------------------
# scheduling one replica
# ----------------------------------------------------------------------------------------------------


@nb.njit(cache=True)
def _enter_decode(lst, pi, rq, hist, inp, out, bs, r, q, gen):  # type: ignore[no-untyped-def]  # pragma: no cover
    c = pi[r, P_X] - gen
    rq[q, R_PHASE] = PH_DECODE
    rq[q, R_C] = c
    pi[r, P_D] += 1
    pi[r, P_SUMBASE] += inp[q] - c
    hist[r, (inp[q] - c - 1) % bs] += 1
    _heap_push(lst, pi, rq, out, r, c + out[q], q)


@nb.njit(cache=True)
def _leave_decode(pi, ci, rq, hist, inp, r, q):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Take ``q`` out of the decode set; its generated count and own blocks become explicit again."""
    bs = ci[C_BS]
    c = rq[q, R_C]
    gen = pi[r, P_X] - c
    rq[q, R_GEN] = gen
    rq[q, R_OWN] = (inp[q] + gen - 1 + bs - 1) // bs - rq[q, R_HELD] * ci[C_HB]
    pi[r, P_D] -= 1
    pi[r, P_SUMBASE] -= inp[q] - c
    hist[r, (inp[q] - c - 1) % bs] -= 1


@nb.njit(cache=True)
def _finish(pi, ci, rq, rf, ent, ent_hash, tab_ent, ph, ph_off, r, q, t):  # type: ignore[no-untyped-def]  # pragma: no cover
    _release(pi, ci, rq, ent, ent_hash, tab_ent, ph, ph_off, r, q)
    rq[q, R_PHASE] = PH_DONE
    rf[q, F_FINISH] = t
    pi[r, P_NRUN] -= 1


@nb.njit(cache=True)
def _preempt_last(lst, pi, pf, ci, rq, hist, ent, ent_hash, tab_ent, tiers, ph, ph_off, inp, r):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Preempt the most recently admitted running sequence (back to the queue's front): by recompute, or
    with swap space (``C_SWAP_CAP``) that still holds its KV, by swapping its KV out to host memory
    (the copy delays the step being planned; it is copied back when it is admitted again)."""
    tpar = tiers[TI_PAR]
    q = _run_last(lst, pi, rq, r)
    if rq[q, R_PHASE] == PH_DECODE:
        _leave_decode(pi, ci, rq, hist, inp, r, q)
    else:  # the newest running sequence is also the last one in prefill
        pi[r, P_NPRE] -= 1
    pi[r, P_RUNLEN] -= 1
    kv = rq[q, R_DONE] if rq[q, R_PHASE] == PH_PREFILL else inp[q] + rq[q, R_GEN] - 1
    if ci[C_SWAP_CAP] > 0 and kv > 0 and pi[r, P_SWAP_USED] + kv <= ci[C_SWAP_CAP]:
        rq[q, R_SWAP] = kv  # its KV goes to host memory now and comes back at re-admission
        pi[r, P_SWAP_USED] += kv
        pf[r, Q_SWAP] += kv * tpar[0, TP_SWAP]
    _release(pi, ci, rq, ent, ent_hash, tab_ent, ph, ph_off, r, q)
    rq[q, R_PHASE] = PH_WAIT
    rq[q, R_DONE] = 0
    rq[q, R_TARGET] = inp[q] + rq[q, R_GEN]
    rq[q, R_PREEMPT] += 1
    rq[q, R_CHUNK] = 0
    pi[r, P_NRUN] -= 1
    _push_front(pi, rq, r, q)
    pi[r, P_WAIT_TOK] += rq[q, R_TARGET]


@nb.njit(cache=True)
def _used_blocks(pi, ci, r):  # type: ignore[no-untyped-def]  # pragma: no cover
    return ci[C_BLOCKS] - pi[r, P_FREE] - pi[r, P_EVICT]


@nb.njit(cache=True)
def _schedule(a_tab, b_tab, pi, pf, ci, rq, rf, ent, ent_hash, tab_ent, ent_free,  # type: ignore[no-untyped-def]  # pragma: no cover
              ph, ph_off, arr, inp, out, lst, hist, scratch, tiers, r, t, t_seen):
    """Plan the next step of replica ``r`` at boundary ``t`` and put it in flight (or go idle).

    ``t_seen``: with async scheduling (``C_ASYNC``) the step starting at ``t`` was planned when the
    previous one started, so requests that arrived after that (``arr >= t_seen``) wait for the step
    after, unless nothing is running (an idle engine plans at once); ``inf`` sees every arrival.

    Order (decodes first, as vLLM's chunked prefill does): every decoding sequence takes one token;
    sequences in prefill take ``min(remaining, budget left)`` in admission order; then the queue is
    admitted FCFS. When the blocks these need are not there, the newest running sequence is preempted
    and the plan is made again.

    Returns True when the step in flight is a mixed step whose duration the caller must still set
    from the perf kernel (:func:`_set_step_time`); kept out of here so that this large function does
    not take the kernel as an argument and stays in numba's on-disk cache.
    """
    bs = ci[C_BS]
    hb = ci[C_HB]
    hbt = ci[C_HBT]
    x = pi[r, P_X]
    pf[r, Q_LOAD] = 0.0
    pf[r, Q_SWAP] = 0.0
    while True:
        d = pi[r, P_D]
        total = hist[r, (-x) % bs] if d > 0 else 0
        budget = ci[C_MBT] - d
        for j in range(pi[r, P_NPRE]):
            q = lst[r, L_PRE, j]
            done = rq[q, R_DONE]
            n = max(0, min(rq[q, R_TARGET] - done, budget))
            if n > 0:
                total += max(0, (done + n + bs - 1) // bs - rq[q, R_OWN] - rq[q, R_HELD] * hb)
            rq[q, R_CHUNK] = n
            budget -= n
        if total <= pi[r, P_FREE] + pi[r, P_EVICT] or pi[r, P_NRUN] == 0:
            break
        _preempt_last(lst, pi, pf, ci, rq, hist, ent, ent_hash, tab_ent, tiers, ph, ph_off, inp, r)
    _alloc(pi, ci, ent, ent_hash, tab_ent, ent_free, tiers, r, total)
    n_pre = 0
    pairs = 0.0
    for j in range(pi[r, P_NPRE]):
        q = lst[r, L_PRE, j]
        n = rq[q, R_CHUNK]
        if n > 0:
            done = rq[q, R_DONE]
            rq[q, R_OWN] += max(0, (done + n + bs - 1) // bs - rq[q, R_OWN] - rq[q, R_HELD] * hb)
            n_pre += n
            pairs += n * (done + (n + 1) / 2.0)
    d = pi[r, P_D]
    dkv = float(pi[r, P_SUMBASE] + d * x)
    lagging = pi[r, P_NRUN] > 0
    while pi[r, P_NWAIT] > 0 and pi[r, P_NRUN] < ci[C_MAXSEQ] and budget > 0:
        q = pi[r, P_HEAD]
        if lagging and arr[q] >= t_seen:
            break  # not yet seen by the scheduler that planned this step (FCFS: nor is anyone behind)
        target = rq[q, R_TARGET]
        # prefix-cache lookup: leading hash blocks present on this replica, then in its KV tiers
        nh = 0
        nt = 0
        evict_taken = 0
        if ci[C_PREFIX] != 0:
            o = ph_off[q]
            m = ph_off[q + 1] - o
            lim = min(m, (target - 1) // hbt + 1, inp[q] // hbt)
            while nh < lim:
                e = _tab_find(tab_ent, ent, ent_hash, ph[o + nh], r)
                if e < 0:
                    break
                scratch[nh] = e
                if ent[e, E_REF] == 0:
                    evict_taken += hb
                nh += 1
            nt = nh
            if ci[C_TIERS] != 0:
                nt = _tier_lookup(ci, tiers, ph, o, nh, lim, r)
        done = min(nt * hbt, target - 1)
        if ci[C_PRELOAD] != 0 and rq[q, R_CACHED] < 0:
            done = target - 1  # the prompt's KV came over the link: only the last token is computed
        swapped = rq[q, R_SWAP]
        if swapped > 0:  # its KV comes back from swap space into blocks of its own, not the prefix cache
            nh = 0
            nt = 0
            evict_taken = 0
            done = min(swapped, target - 1)
        n = min(target - done, budget)
        need = max(0, (done + n + bs - 1) // bs - nh * hb)
        if need > pi[r, P_FREE] + pi[r, P_EVICT] - evict_taken:
            break  # head-of-line blocked on KV
        for j in range(nh):
            e = scratch[j]
            if ent[e, E_REF] == 0:
                _lru_remove(pi, ent, r, e)
                pi[r, P_EVICT] -= hb
            ent[e, E_REF] += 1
        if nt > nh:  # refreshed before the allocation below can demote blocks into (and out of) the tiers
            pf[r, Q_LOAD] += _tier_load(ci, tiers, rq, hbt, nh, nt, done, r, q, rq[q, R_CACHED] < 0)
        if swapped > 0:
            pf[r, Q_SWAP] += done * tiers[TI_PAR][0, TP_SWAP]
            pi[r, P_SWAP_USED] -= swapped
            rq[q, R_SWAP] = 0
        _alloc(pi, ci, ent, ent_hash, tab_ent, ent_free, tiers, r, need)
        _pop_front(pi, rq, r)
        pi[r, P_WAIT_TOK] -= target
        rq[q, R_HELD] = nh
        rq[q, R_OWN] = need
        rq[q, R_DONE] = done
        rq[q, R_PHASE] = PH_PREFILL
        if rq[q, R_CACHED] < 0:
            rq[q, R_CACHED] = done
            rf[q, F_SCHED] = t
        rq[q, R_CHUNK] = n
        _run_append(lst, pi, rq, r, q)
        lst[r, L_PRE, pi[r, P_NPRE]] = q
        pi[r, P_NPRE] += 1
        n_pre += n
        pairs += n * (done + (n + 1) / 2.0)
        budget -= n
    pf[r, Q_T0] = t
    if n_pre == 0 and d == 0:
        pi[r, P_MODE] = MODE_IDLE
        pf[r, Q_BUSY_UNTIL] = np.inf
        pf[r, Q_NOW] = t
        return False
    if n_pre > 0:
        pi[r, P_MODE] = MODE_STEP
        pf[r, Q_P] = n_pre
        pf[r, Q_PAIRS] = pairs
        pf[r, Q_DKV] = dkv
        pf[r, Q_BUSY_UNTIL] = t
        pi[r, P_MIXED] += 1
        return True
    # pure decode with a fixed batch: a run to the next finish, bounded by guaranteed-free KV.
    # With a queue, stop before any prefix-cache eviction: evicting a cached block can unblock the
    # queue's head (its leading hits vanish, and with them the blocks they pinned), so a step-by-step
    # scheduler could admit it mid-run.
    k = _heap_top(lst, pi, rq, out, r) - x
    avail = pi[r, P_FREE] if pi[r, P_NWAIT] > 0 else pi[r, P_FREE] + pi[r, P_EVICT]
    k_safe = 1 + bs * (avail // d)
    k = min(k, k_safe)
    if pi[r, P_NWAIT] > 0 and arr[pi[r, P_HEAD]] >= t_seen:
        k = 1  # the queue's head becomes visible after this step
    if pf[r, Q_SWAP] > 0.0:
        k = 1  # a swap-out delays this one step (added below)
    k = max(k, 1)
    a = a_tab[pi[r, P_LVL], d] * pf[r, Q_SLOW]
    b = b_tab[pi[r, P_LVL], d] * pf[r, Q_SLOW]
    pi[r, P_MODE] = MODE_RUN
    pi[r, P_RUN_K] = k
    pf[r, Q_A] = a
    pf[r, Q_B] = b
    pf[r, Q_KV0] = dkv
    _set_run_end(pi, pf, r)
    pf[r, Q_BUSY_UNTIL] += pf[r, Q_SWAP]
    return False


@nb.njit(cache=True)
def _set_step_time(kernel, kparams, pi, pf, ci, r):  # type: ignore[no-untyped-def]  # pragma: no cover
    """``kernel``: a step-kernel id (:mod:`planner.sim.kernels`). KV-tier loads of the step's admissions
    (``Q_LOAD``) run beside its compute (``C_OVERLAP``) or before it."""
    dt = step_time_of(kernel, kparams[pi[r, P_LVL]], pf[r, Q_P], pf[r, Q_PAIRS], float(pi[r, P_D]),
                      pf[r, Q_DKV]) * pf[r, Q_SLOW]
    load = pf[r, Q_LOAD]
    if load > 0.0:
        dt = max(dt, load) if ci[C_OVERLAP] != 0 else dt + load
    pf[r, Q_BUSY_UNTIL] = pf[r, Q_T0] + dt + pf[r, Q_SWAP]


@nb.njit(cache=True)
def _set_power(pkernel, pparams, pi, pf, r):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Power per GPU of the step (or run, at its middle step's composition) just put in flight
    (``pkernel``: a power-kernel id)."""
    d = float(pi[r, P_D])
    if pi[r, P_MODE] == MODE_RUN:
        kv = pf[r, Q_KV0] + d * (pi[r, P_RUN_K] - 1) / 2.0
        pf[r, Q_PW] = step_power_of(pkernel, pparams[pi[r, P_LVL]], 0.0, 0.0, d, kv)
    elif pi[r, P_MODE] == MODE_STEP:
        pf[r, Q_PW] = step_power_of(pkernel, pparams[pi[r, P_LVL]], pf[r, Q_P], pf[r, Q_PAIRS], d,
                                    pf[r, Q_DKV])
    else:
        pf[r, Q_PW] = 0.0


@nb.njit(cache=True)
def _run_le(a, b, kv0, d, k, bound):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Steps ``i < k`` of a decode run whose duration ``a + b (kv0 + i d)`` is at most ``bound``."""
    first = a + b * kv0
    if first > bound:
        return 0
    slope = b * d
    if slope <= 0.0:
        return k
    return min(k, math.floor((bound - first) / slope) + 1)


@nb.njit(cache=True)
def _run_growth(pi, ci, hist, r, k):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Blocks replica ``r``'s decode batch grows into over the first ``k`` steps of its run, after the
    first step (whose blocks were taken when the run was planned)."""
    bs = ci[C_BS]
    x0 = pi[r, P_X]
    extra = 0
    for b in range(bs):
        cnt = hist[r, b]
        if cnt > 0:
            first = (-(b + x0)) % bs
            if first == 0:
                first = bs
            if first <= k - 1:
                extra += cnt * (1 + (k - 1 - first) // bs)
    return extra


@nb.njit(cache=True)
def _split_evicting_run(pi, pf, ci, hist, r, t):  # type: ignore[no-untyped-def]  # pragma: no cover
    """End replica ``r``'s decode run at its last step boundary before ``t`` when the steps up to the one
    in flight at ``t`` evict prefix blocks; True if it did.

    A run takes the blocks of its later steps when it is committed, so a reader of the prefix cache at
    ``t`` (the precise-prefix router) would otherwise see blocks that a step-by-step engine has evicted.
    Ended there, the rest is planned again as a new run whose first step, the one in flight at ``t``,
    takes its blocks (and evicts) when planned, as a step does.
    """
    if pi[r, P_MODE] != MODE_RUN or pi[r, P_EVICT] == 0 or pf[r, Q_T0] >= t:
        return False
    k = pi[r, P_RUN_K]
    _truncate_run(pi, pf, r, t)  # ends at the step in flight at t
    kk = pi[r, P_RUN_K]
    if _run_growth(pi, ci, hist, r, kk) <= pi[r, P_FREE]:
        if kk < k:  # no eviction before t: the run goes on unchanged
            pi[r, P_RUN_K] = k
            _set_run_end(pi, pf, r)
        return False
    if kk == 1:
        return False  # the step in flight is the run's first: its blocks were taken when planned
    pi[r, P_RUN_K] = kk - 1
    _set_run_end(pi, pf, r)
    return True


@nb.njit(cache=True)
def _set_run_end(pi, pf, r):  # type: ignore[no-untyped-def]  # pragma: no cover
    """End of replica ``r``'s decode run of ``P_RUN_K`` steps: ``k a + b (k kv0 + d k (k - 1) / 2)`` after
    its start (step ``i`` takes ``a + b (kv0 + i d)``)."""
    k = pi[r, P_RUN_K]
    pf[r, Q_BUSY_UNTIL] = pf[r, Q_T0] + k * pf[r, Q_A] + pf[r, Q_B] * (
        k * pf[r, Q_KV0] + pi[r, P_D] * k * (k - 1) / 2.0)


@nb.njit(cache=True)
def _commit(pi, pf, ci, rq, rf, ent, ent_hash, tab_ent, ent_free, tiers, ph, ph_off, inp, out,  # type: ignore[no-untyped-def]  # pragma: no cover
            lst, hist, ts, dt, r, arr, mh, tb, ib):
    """Apply the step or run in flight of replica ``r`` (it ends at ``busy_until``).

    Order: prefill progress in admission order (completions emit their first token, register their
    prompt blocks in the prefix cache, and join the decode set or finish), then the decode sequences
    that reached their output length, by request index. With ``C_METRICS`` on, the vLLM counters and
    the TTFT / inter-token-latency histograms (bounds ``tb`` / ``ib``) in ``mh`` are updated too.
    """
    t1 = pf[r, Q_BUSY_UNTIL]
    t0 = pf[r, Q_T0]
    bs = ci[C_BS]
    kvb = _used_blocks(pi, ci, r)
    metrics = ci[C_METRICS] != 0
    ntb = tb.shape[0]
    nib = ib.shape[0]
    itl0 = M_HIST + ntb + 1
    energy = pf[r, Q_PW] * (t1 - t0)
    if pi[r, P_MODE] == MODE_RUN:
        k = pi[r, P_RUN_K]
        d = pi[r, P_D]
        kv0 = pf[r, Q_KV0]
        ts = _accum(ts, dt, r, t0, t1, float(k), 0.0, 0.0, float(d * k), k * kv0 + d * k * (k - 1) / 2.0,
                    float(pi[r, P_NRUN]), float(pi[r, P_NWAIT]), float(kvb), energy)
        if metrics:
            mh[M_GEN] += d * k
            mh[M_ITL_SUM_US] += np.int64(round(d * (t1 - t0) * 1e6))
            for j in range(nib):
                mh[itl0 + j] += d * _run_le(pf[r, Q_A], pf[r, Q_B], kv0, float(d), k, ib[j])
            mh[itl0 + nib] += d * k
        extra = _run_growth(pi, ci, hist, r, k)
        if extra > 0 and not _alloc(pi, ci, ent, ent_hash, tab_ent, ent_free, tiers, r, extra):
            ci[C_VIOL] += 1  # k_safe guarantees the blocks
        pi[r, P_X] += k
        pi[r, P_STEPS] += k
    else:
        ts = _accum(ts, dt, r, t0, t1, 1.0, pf[r, Q_P], pf[r, Q_PAIRS], float(pi[r, P_D]), pf[r, Q_DKV],
                    float(pi[r, P_NRUN]), float(pi[r, P_NWAIT]), float(kvb), energy)
        if metrics:
            d = pi[r, P_D]
            mh[M_GEN] += d
            mh[M_ITL_SUM_US] += np.int64(round(d * (t1 - t0) * 1e6))
            for j in range(nib):
                if t1 - t0 <= ib[j]:
                    mh[itl0 + j] += d
            mh[itl0 + nib] += d
        pi[r, P_X] += 1
        pi[r, P_STEPS] += 1
        w = 0
        for j in range(pi[r, P_NPRE]):
            q = lst[r, L_PRE, j]
            rq[q, R_DONE] += rq[q, R_CHUNK]
            rq[q, R_CHUNK] = 0
            if rq[q, R_DONE] < rq[q, R_TARGET]:
                lst[r, L_PRE, w] = q
                w += 1
                continue
            gen = rq[q, R_GEN] + 1
            rq[q, R_GEN] = gen
            if math.isnan(rf[q, F_FIRST]):
                rf[q, F_FIRST] = t1
                if metrics:
                    mh[M_PROMPT] += inp[q]
                    mh[M_TTFT_SUM_US] += np.int64(round((t1 - arr[q]) * 1e6))
                    for jb in range(ntb):
                        if t1 - arr[q] <= tb[jb]:
                            mh[M_HIST + jb] += 1
                    mh[M_HIST + ntb] += 1
            if metrics:
                mh[M_GEN] += 1
            if ci[C_PREFIX] != 0:
                _register_prompt(pi, ci, rq, ent, ent_hash, tab_ent, ent_free, ph, ph_off, inp, r, q)
            if gen >= out[q]:
                _finish(pi, ci, rq, rf, ent, ent_hash, tab_ent, ph, ph_off, r, q, t1)
                mh[M_SUCCESS] += 1
            else:
                _enter_decode(lst, pi, rq, hist, inp, out, bs, r, q, gen)
        pi[r, P_NPRE] = w
    x = pi[r, P_X]
    while True:
        key = _heap_top(lst, pi, rq, out, r)
        if key < 0 or key > x:
            break
        q = lst[r, L_HQ, 0]
        _heap_pop(lst, pi, r)
        _leave_decode(pi, ci, rq, hist, inp, r, q)
        _finish(pi, ci, rq, rf, ent, ent_hash, tab_ent, ph, ph_off, r, q, t1)
        mh[M_SUCCESS] += 1
    if t1 < t0 or t0 < pf[r, Q_NOW]:
        ci[C_VIOL] += 1
    used = _used_blocks(pi, ci, r)
    if used > ci[C_BLOCKS] or pi[r, P_FREE] < 0 or pi[r, P_EVICT] < 0:
        ci[C_VIOL] += 1
    pi[r, P_MAXUSED] = max(pi[r, P_MAXUSED], used)
    pf[r, Q_BUSY_TOTAL] += t1 - t0
    pf[r, Q_NOW] = t1
    return ts


@nb.njit(cache=True)
def _truncate_run(pi, pf, r, t):  # type: ignore[no-untyped-def]  # pragma: no cover
    """End replica ``r``'s decode run at its first step boundary at or after ``t``."""
    k = pi[r, P_RUN_K]
    t0 = pf[r, Q_T0]
    delta = t - t0
    a = pf[r, Q_A]
    b = pf[r, Q_B]
    kv0 = pf[r, Q_KV0]
    d = pi[r, P_D]
    c2 = b * d / 2.0
    c1 = a + b * kv0 - c2
    kr = (-c1 + math.sqrt(c1 * c1 + 4.0 * c2 * delta)) / (2.0 * c2) if c2 > 0.0 else delta / c1
    kk = math.ceil(kr)
    kk = max(kk, 1)
    while kk > 1 and (kk - 1) * c1 + c2 * (kk - 1) * (kk - 1) >= delta:
        kk -= 1
    while kk < k and kk * c1 + c2 * kk * kk < delta:
        kk += 1
    if kk >= k:
        return
    pi[r, P_RUN_K] = kk
    _set_run_end(pi, pf, r)


@nb.njit(cache=True)
def _held_blocks(tab_ent, ent, ent_hash, ph, ph_off, q, r):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Leading prefix blocks of request ``q`` that replica ``r``'s cache holds."""
    o = ph_off[q]
    n = ph_off[q + 1] - o
    for j in range(n):
        if _tab_find(tab_ent, ent, ent_hash, ph[o + j], r) < 0:
            return j
    return n


@nb.njit(cache=True)
def _tier_held(ci, tiers, ph, o0, j0, n, r):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Blocks ``j0 <= j < n`` of a prompt that replica ``r``'s own tiers hold, up to the first one they do
    not (a shared pool is left out: it serves every replica alike)."""
    tent, thash, ttab, tcap = tiers[TI_ENT], tiers[TI_HASH], tiers[TI_TAB], tiers[TI_CAP]
    j = j0
    while j < n:
        h = ph[o0 + j]
        found = False
        for k in range(1, N_LEVELS):
            if tcap[k] > 0 and _tab_find(ttab, tent, thash, h, _owner(ci, k, r)) >= 0:
                found = True
                break
        if not found:
            break
        j += 1
    return j - j0


@nb.njit(cache=True)
def _route_precise(pi, ci, route, akey, tab_ent, ent, ent_hash, tiers, ph, ph_off, q):  # type: ignore[no-untyped-def]  # pragma: no cover
    """llm-d's endpoint picker: ``3 * held share + 2 * queue score``, highest first, then the least
    outstanding, then the first; ``akey[q]``: leading hot blocks left out of the share. With KV tiers the
    blocks that follow in the replica's own tiers count ``W_TIER`` each (llm-d indexes offloaded blocks
    too and weighs them per medium)."""
    nrep = ci[C_NROUTE]
    qmin = pi[route[0], P_NWAIT]
    qmax = qmin
    for j in range(1, nrep):
        w = pi[route[j], P_NWAIT]
        qmin = min(qmin, w)
        qmax = max(qmax, w)
    skip = np.int64(akey[q])
    own = ph_off[q + 1] - ph_off[q] - skip
    best = route[0]
    bests = -1.0
    bestl = np.int64(0)
    for j in range(nrep):
        r = route[j]
        share = 0.0
        if own > 0:
            hbm = _held_blocks(tab_ent, ent, ent_hash, ph, ph_off, q, r)
            held = float(max(hbm - skip, 0))
            if ci[C_TIERS] != 0:  # the tier blocks past the hot ones
                more = _tier_held(ci, tiers, ph, ph_off[q], hbm, ph_off[q + 1] - ph_off[q], r)
                held += W_TIER * max(0, hbm + more - max(hbm, skip))
            share = held / own
        qs = 1.0 if qmax == qmin else (qmax - pi[r, P_NWAIT]) / (qmax - qmin)
        sc = W_PREFIX * share + W_QUEUE * qs
        load = pi[r, P_NRUN] + pi[r, P_NWAIT]
        if sc > bests or (sc == bests and load < bestl):
            best = r
            bests = sc
            bestl = load
    return best


@nb.njit(cache=True)
def _route_bounded(pi, ci, route, akey, q):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Consistent hashing with bounded loads: from the session's home on the ring, the first replica
    whose outstanding requests stay within ``ceil(5/4 (total + 1) / R)`` with this one."""
    nrep = ci[C_NROUTE]
    total = np.int64(0)
    for j in range(nrep):
        total += pi[route[j], P_NRUN] + pi[route[j], P_NWAIT]
    cap = (BAL_NUM * (total + 1) + BAL_DEN * nrep - 1) // (BAL_DEN * nrep)
    home = np.int64(splitmix64(akey[q]) % np.uint64(nrep))
    for k in range(nrep):
        r = route[(home + k) % nrep]
        if pi[r, P_NRUN] + pi[r, P_NWAIT] + 1 <= cap:
            return r
    return route[home]


# ----------------------------------------------------------------------------------------------------
# sglang-cache-aware: the router's own record of the prefix blocks it sent to each replica (LRU-bounded)
# ----------------------------------------------------------------------------------------------------


@nb.njit(cache=True)
def _tree_unlink(pi, tr_ent, r, e):  # type: ignore[no-untyped-def]  # pragma: no cover
    _dl_unlink(pi, r, P_TR_HEAD, P_TR_TAIL, tr_ent, e)


@nb.njit(cache=True)
def _tree_append(pi, tr_ent, r, e):  # type: ignore[no-untyped-def]  # pragma: no cover
    _dl_append(pi, r, P_TR_HEAD, P_TR_TAIL, tr_ent, e)


@nb.njit(cache=True)
def _tree_drop(pi, tr_ent, tr_hash, tr_tab, tr_free, r, e):  # type: ignore[no-untyped-def]  # pragma: no cover
    _tree_unlink(pi, tr_ent, r, e)
    _entry_free(tr_tab, tr_ent, tr_hash, tr_free, e)
    pi[r, P_TR_SIZE] -= 1


@nb.njit(cache=True)
def _tree_insert(pi, ci, tr_ent, tr_hash, tr_tab, tr_free, ph, ph_off, q, r):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Record request ``q``'s prefix blocks as sent to replica ``r``.

    Its last block is touched first and its first block last, so a prefix is always more recent than
    its extensions and the LRU end drops leaves first, as SGLang's tree evicts least recently used
    leaves. A replica holds at most ``C_TREE_CAP`` blocks: each new one over it evicts the oldest.
    """
    cap = ci[C_TREE_CAP]
    if cap <= 0:
        return
    o = ph_off[q]
    for j in range(ph_off[q + 1] - o - 1, -1, -1):
        h = ph[o + j]
        e = _tab_find(tr_tab, tr_ent, tr_hash, h, r)
        if e >= 0:
            _tree_unlink(pi, tr_ent, r, e)
        else:
            if pi[r, P_TR_SIZE] >= cap:
                _tree_drop(pi, tr_ent, tr_hash, tr_tab, tr_free, r, pi[r, P_TR_HEAD])
            e = _entry_take(tr_free)
            _tab_insert(tr_tab, tr_ent, tr_hash, h, r, e)
            pi[r, P_TR_SIZE] += 1
        _tree_append(pi, tr_ent, r, e)


@nb.njit(cache=True)
def flush_tree(pi, tr_ent, tr_hash, tr_tab, tr_free, r):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Forget the router's record of slot ``r`` (SGLang drops a removed worker's tenant)."""
    while pi[r, P_TR_HEAD] >= 0:
        _tree_drop(pi, tr_ent, tr_hash, tr_tab, tr_free, r, pi[r, P_TR_HEAD])


@nb.njit(cache=True)
def _outstanding(pi, r):  # type: ignore[no-untyped-def]  # pragma: no cover
    return pi[r, P_NRUN] + pi[r, P_NWAIT]


@nb.njit(cache=True)
def _route_sglang(pi, ci, cf, route, akey, tr_ent, tr_hash, tr_tab, ph, ph_off, q):  # type: ignore[no-untyped-def]  # pragma: no cover
    """SGLang's ``cache_aware``: imbalanced outstanding requests (``max - min > abs`` and
    ``max > rel * min``): the least loaded replica; else the best prefix match in the router's record when
    its ratio exceeds ``cache_threshold`` (ties: less loaded, then first), else the smallest record
    (ties likewise). ``akey[q]``: the prompt's leading hot blocks, counted as matched on every replica."""
    nrep = ci[C_NROUTE]
    lo = route[0]
    lmin = _outstanding(pi, lo)
    lmax = lmin
    for j in range(1, nrep):
        v = _outstanding(pi, route[j])
        if v < lmin:
            lmin = v
            lo = route[j]
        lmax = max(lmax, v)
    if lmax - lmin > ci[C_BAL_ABS] and lmax > cf[G_BAL_REL] * lmin:
        return lo
    n = ph_off[q + 1] - ph_off[q]
    if n > 0:
        skip = np.int64(akey[q])
        best = route[0]
        bestm = np.int64(-1)
        bestl = np.int64(0)
        for j in range(nrep):
            r = route[j]
            m = max(_held_blocks(tr_tab, tr_ent, tr_hash, ph, ph_off, q, r), skip)
            v = _outstanding(pi, r)
            if m > bestm or (m == bestm and v < bestl):
                best = r
                bestm = m
                bestl = v
        if bestm / n > cf[G_CACHE_THR]:
            return best
    best = route[0]
    bests = pi[best, P_TR_SIZE]
    bestl = _outstanding(pi, best)
    for j in range(1, nrep):
        r = route[j]
        sz = pi[r, P_TR_SIZE]
        v = _outstanding(pi, r)
        if sz < bests or (sz == bests and v < bestl):
            best = r
            bests = sz
            bestl = v
    return best


@nb.njit(cache=True)
def _least_queued(pi, ci, route):  # type: ignore[no-untyped-def]  # pragma: no cover
    """The replica with the fewest queued prompt tokens, then the fewest outstanding requests, then first."""
    best = route[0]
    for j in range(1, ci[C_NROUTE]):
        r = route[j]
        if pi[r, P_WAIT_TOK] < pi[best, P_WAIT_TOK] or (
                pi[r, P_WAIT_TOK] == pi[best, P_WAIT_TOK] and _outstanding(pi, r) < _outstanding(pi, best)):
            best = r
    return best


@nb.njit(cache=True)
def _route_dualmap(pi, ci, cf, route, akey, q):  # type: ignore[no-untyped-def]  # pragma: no cover
    """DualMap: the two candidates hashed from the prefix key (as prefix-affinity); a candidate whose
    outstanding requests would pass ``ceil(factor (total + 1) / R)`` is a hot spot and is skipped (both hot:
    the least queued replica); of the rest, the one with fewer queued prompt tokens (then fewer outstanding,
    then the first); when that one's queue times the prefill time per token exceeds the TTFT target, the
    least queued replica instead."""
    nrep = ci[C_NROUTE]
    total = np.int64(0)
    for j in range(nrep):
        total += _outstanding(pi, route[j])
    cap = math.ceil(cf[G_HOT] * (total + 1) / nrep)
    h1 = splitmix64(akey[q])
    h2 = splitmix64(h1)
    c1 = np.int64(h1 % np.uint64(nrep))
    c2 = np.int64(h2 % np.uint64(nrep - 1))
    if c2 >= c1:
        c2 += 1
    c1 = route[c1]
    c2 = route[c2]
    hot1 = _outstanding(pi, c1) + 1 > cap
    hot2 = _outstanding(pi, c2) + 1 > cap
    if hot1 and hot2:
        return _least_queued(pi, ci, route)
    if hot1:
        r = c2
    elif hot2:
        r = c1
    else:
        w1 = pi[c1, P_WAIT_TOK]
        w2 = pi[c2, P_WAIT_TOK]
        r = c1 if w1 < w2 or (w1 == w2 and _outstanding(pi, c1) <= _outstanding(pi, c2)) else c2
    if pi[r, P_WAIT_TOK] * cf[G_TOK_S] > cf[G_TTFT]:
        return _least_queued(pi, ci, route)
    return r


@nb.njit(cache=True)
def _route(pi, ci, cf, route, rkey, akey, inp, q, tab_ent, ent, ent_hash, tiers, ph, ph_off,  # type: ignore[no-untyped-def]  # pragma: no cover
           tr_ent, tr_hash, tr_tab, tr_free):
    """Pick a replica among the routable ones (``route[:ci[C_NROUTE]]``, replica slots)."""
    router = ci[C_ROUTER]
    nrep = ci[C_NROUTE]
    if router == ROUTER_SGLANG_CACHE_AWARE:
        r = route[0] if nrep == 1 else _route_sglang(pi, ci, cf, route, akey, tr_ent, tr_hash, tr_tab, ph,
                                                     ph_off, q)
        _tree_insert(pi, ci, tr_ent, tr_hash, tr_tab, tr_free, ph, ph_off, q, r)
        return r
    if nrep == 1:
        return route[0]
    if router == ROUTER_DUALMAP:
        return _route_dualmap(pi, ci, cf, route, akey, q)
    if router == ROUTER_PRECISE_PREFIX:
        return _route_precise(pi, ci, route, akey, tab_ent, ent, ent_hash, tiers, ph, ph_off, q)
    if router == ROUTER_SESSION_AFFINITY:
        return _route_bounded(pi, ci, route, akey, q)
    if router == ROUTER_ROUND_ROBIN:
        r = ci[C_RR] % nrep
        ci[C_RR] += 1
        return route[r]
    if router == ROUTER_HASH:
        return route[np.int64(rkey[q] % np.uint64(nrep))]
    if router == ROUTER_LEAST_OUTSTANDING or router == ROUTER_LEAST_KV:  # noqa: PLR1714, SIM109
        best = route[0]
        bestv = np.inf
        for j in range(nrep):
            r = route[j]
            if router == ROUTER_LEAST_OUTSTANDING:
                v = float(pi[r, P_NRUN] + pi[r, P_NWAIT])
            else:
                v = float(_used_blocks(pi, ci, r)) + pi[r, P_WAIT_TOK] / ci[C_BS]
            if v < bestv:
                bestv = v
                best = r
        return best
    # power of two choices / prefix affinity: two hash candidates, the less loaded wins
    key = rkey[q] if router == ROUTER_POWER_OF_TWO else akey[q]
    h1 = splitmix64(key)
    h2 = splitmix64(h1)
    c1 = np.int64(h1 % np.uint64(nrep))
    c2 = np.int64(h2 % np.uint64(nrep - 1))
    if c2 >= c1:
        c2 += 1
    c1 = route[c1]
    c2 = route[c2]
    l1 = pi[c1, P_NRUN] + pi[c1, P_NWAIT]
    l2 = pi[c2, P_NRUN] + pi[c2, P_NWAIT]
    return c1 if l1 <= l2 else c2


@nb.njit(cache=True)
def _advance(kernel, kparams, pkernel, pparams, a_tab, b_tab, pi, pf, ci, rq, rf, ent, ent_hash,  # type: ignore[no-untyped-def]  # pragma: no cover
             tab_ent, ent_free, ph, ph_off, arr, inp, out, lst, hist,
             scratch, tiers, ts, dt, mh, tb, ib, r, t):
    """Run replica ``r`` through its step boundaries strictly before ``t`` (``inf``: until idle)."""
    while pi[r, P_MODE] != MODE_IDLE and pf[r, Q_BUSY_UNTIL] < t:
        ts = _commit(pi, pf, ci, rq, rf, ent, ent_hash, tab_ent, ent_free, tiers, ph, ph_off, inp, out,
                     lst, hist, ts, dt, r, arr, mh, tb, ib)
        t_seen = pf[r, Q_T0] if ci[C_ASYNC] != 0 else np.inf
        if _schedule(a_tab, b_tab, pi, pf, ci, rq, rf, ent, ent_hash, tab_ent,
                     ent_free, ph, ph_off, arr, inp, out, lst, hist, scratch, tiers, r, pf[r, Q_BUSY_UNTIL],
                     t_seen):
            _set_step_time(kernel, kparams, pi, pf, ci, r)
        if ci[C_POWER] != 0:
            _set_power(pkernel, pparams, pi, pf, r)
    return ts


@nb.njit(cache=True)
def run_arrivals(kernel, kparams, pkernel, pparams, a_tab, b_tab, pi, pf, ci, cf, rq, rf, ent, ent_hash,  # type: ignore[no-untyped-def]  # pragma: no cover
                 tab_ent, ent_free, ph, ph_off, arr, inp, out, rkey, akey, route, lst, hist,
                 scratch, tiers, ts,
                 dt, mh, tb, ib, tr_ent, tr_hash, tr_tab, tr_free, i0, i1, t_stop, advance_to, drain):
    """Route and simulate arrivals ``i0 <= i < i1`` that come before ``t_stop``.

    Then, when ``advance_to`` is finite, every replica is run through its step boundaries before
    ``advance_to`` (the state a control tick then sees); with ``drain``, every replica is run to idle
    instead. Kernel parameters and decode tables have one row per clock level (``P_LVL``).

    Returns:
        ``(ts, i)``: the (possibly grown) time-series array and the first arrival not taken.
    """
    nrep = ci[C_NREP]
    cap_tokens = ci[C_BLOCKS] * ci[C_BS]
    power = ci[C_POWER] != 0
    q = i0
    while q < i1:
        t = arr[q]
        if t >= t_stop:
            break
        for r in range(nrep):
            if pi[r, P_MODE] != MODE_IDLE and pf[r, Q_BUSY_UNTIL] < t:  # (the common case skips the call)
                ts = _advance(kernel, kparams, pkernel, pparams, a_tab, b_tab, pi, pf, ci, rq, rf, ent,
                              ent_hash, tab_ent, ent_free, ph, ph_off, arr, inp, out, lst, hist,
                              scratch, tiers, ts,
                              dt, mh, tb, ib, r, t)
        if ci[C_ROUTER] == ROUTER_PRECISE_PREFIX and ci[C_PREFIX] != 0:
            for r in range(nrep):
                if _split_evicting_run(pi, pf, ci, hist, r, t):
                    ts = _advance(kernel, kparams, pkernel, pparams, a_tab, b_tab, pi, pf, ci, rq, rf, ent,
                                  ent_hash, tab_ent, ent_free, ph, ph_off, arr, inp, out, lst, hist,
                                  scratch, tiers,
                                  ts, dt, mh, tb, ib, r, t)
        r = _route(pi, ci, cf, route, rkey, akey, inp, q, tab_ent, ent, ent_hash, tiers, ph, ph_off, tr_ent,
                   tr_hash, tr_tab, tr_free)
        rq[q, R_REP] = r
        mh[M_ARRIVED] += 1
        if inp[q] + out[q] > cap_tokens:
            rq[q, R_PHASE] = PH_REJECTED
            q += 1
            continue
        rq[q, R_PHASE] = PH_WAIT
        rq[q, R_TARGET] = inp[q]
        was_empty = pi[r, P_NWAIT] == 0
        _push_back(pi, rq, r, q)
        pi[r, P_WAIT_TOK] += inp[q]
        mode = pi[r, P_MODE]
        if mode == MODE_IDLE:
            if _schedule(a_tab, b_tab, pi, pf, ci, rq, rf, ent, ent_hash, tab_ent,
                         ent_free, ph, ph_off, arr, inp, out, lst, hist,
                         scratch, tiers, r, max(t, pf[r, Q_NOW]),
                         np.inf):
                _set_step_time(kernel, kparams, pi, pf, ci, r)
            if power:
                _set_power(pkernel, pparams, pi, pf, r)
        elif mode == MODE_RUN and was_empty:
            _truncate_run(pi, pf, r, t)
        q += 1
    if drain or advance_to < np.inf:
        t_end = np.inf if drain else advance_to
        for r in range(nrep):
            ts = _advance(kernel, kparams, pkernel, pparams, a_tab, b_tab, pi, pf, ci, rq, rf, ent,
                          ent_hash, tab_ent, ent_free, ph, ph_off, arr, inp, out, lst, hist,
                          scratch, tiers, ts,
                          dt, mh, tb, ib, r, t_end)
    return ts, q


@nb.njit(cache=True)
def flush_replica(pi, ent, ent_hash, tab_ent, ent_free, ci, r):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Empty replica ``r``'s prefix cache (a stopped replica's slot is reused by a new, cold one).

    Only unreferenced entries exist on an idle replica, so the LRU list holds them all.
    """
    hb = ci[C_HB]
    while pi[r, P_LRU_HEAD] >= 0:
        e = pi[r, P_LRU_HEAD]
        _lru_remove(pi, ent, r, e)
        _entry_free(tab_ent, ent, ent_hash, ent_free, e)
        pi[r, P_EVICT] -= hb
        pi[r, P_FREE] += hb


@nb.njit(cache=True)
def fail_replica(lst, pi, pf, ci, rq, hist, ent, ent_hash, tab_ent, ent_free, tiers, ph, ph_off, inp, r, t,  # type: ignore[no-untyped-def]  # pragma: no cover
                 lost):
    """Replica ``r`` fails at ``t`` (fail-stop): the step in flight is lost, every request it holds
    (running or queued) becomes ``PH_LOST`` and is written to ``lost`` (the count is returned), its KV,
    prefix cache and own KV tiers are gone, and it is left idle and empty (a replacement may take the slot
    after its cold start). Its shared-pool blocks stay: the pool outlives a node."""
    n = 0
    for i in range(pi[r, P_RUNLEN]):
        if not _live(lst, rq, r, i):
            continue
        q = lst[r, L_RUN, i]
        if rq[q, R_PHASE] == PH_DECODE:
            _leave_decode(pi, ci, rq, hist, inp, r, q)
        _release(pi, ci, rq, ent, ent_hash, tab_ent, ph, ph_off, r, q)
        rq[q, R_PHASE] = PH_LOST
        lost[n] = q
        n += 1
    while pi[r, P_NWAIT] > 0:
        q = _pop_front(pi, rq, r)
        rq[q, R_PHASE] = PH_LOST
        lost[n] = q
        n += 1
    flush_replica(pi, ent, ent_hash, tab_ent, ent_free, ci, r)
    if ci[C_TIERS] != 0:
        flush_tiers(ci, tiers, r)
    pi[r, P_MODE] = MODE_IDLE
    pi[r, P_NRUN] = 0
    pi[r, P_D] = 0
    pi[r, P_SUMBASE] = 0
    pi[r, P_FREE] = ci[C_BLOCKS]
    pi[r, P_EVICT] = 0
    pi[r, P_WAIT_TOK] = 0
    pi[r, P_RUN_K] = 0
    pi[r, P_RUNLEN] = 0
    pi[r, P_NPRE] = 0
    pi[r, P_HLEN] = 0
    pi[r, P_SWAP_USED] = 0
    hist[r, :] = 0
    pf[r, Q_BUSY_UNTIL] = np.inf
    pf[r, Q_NOW] = t
    pf[r, Q_LOAD] = 0.0
    pf[r, Q_SWAP] = 0.0
    return n


def truncate_run(pi: np.ndarray, pf: np.ndarray, r: int, t: float) -> None:
    """End replica ``r``'s decode run in flight at its first step boundary at or after ``t`` (from
    Python: a clock change must not wait for a long run to end)."""
    if pi[r, P_MODE] == MODE_RUN:
        _truncate_run(pi, pf, r, t)
