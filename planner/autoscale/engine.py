"""Numba engine of the closed-loop replay: replicas that come and go, vLLM-class continuous batching.

Why a separate engine: :mod:`planner.sim` replays a fixed replica count (its ``SimConfig`` has no
autoscaling yet); this loop lets a policy change the count every control tick, with cold starts, draining
and a gateway queue while no replica is ready. It is deliberately smaller than the replay engine:

* one step per event (no closed-form decode runs): the step time comes from the perf model's kernel
  (:meth:`planner.perf.api.ReplicaPerf.kernel`),
  ``step(prefill tokens, prefill pairs, decode seqs, decode kv)``;
* a step's batch: every decoding sequence takes one token, then prefilling sequences take chunks FCFS
  within ``max_batched_tokens`` (chunked prefill); waiting requests are admitted FCFS at a step's start
  while ``max_num_seqs`` and the KV cache allow, each reserving ``input + output`` tokens of KV (no
  preemption; a request larger than the whole cache is rejected, as vLLM refuses it);
* the first token comes at the end of the step that completes the prompt; one token per later step;
* routing: least outstanding (running + waiting) among ready replicas; with none ready, the gateway
  queues the request until one is.

The kernels are compiled per process (``cache=False``): they take the perf model's step function as a
first-class function argument, and numba's on-disk cache keys such signatures by the function object
itself, so every process added a cache entry and saving one failed intermittently
("underlying object has vanished") once the object it pickled had been collected.

Replica slots are rows of ``pi``/``pf``; the Python side (:mod:`planner.autoscale.loop`) starts, readies
and drains them between calls.
"""

from __future__ import annotations

import numba as nb
import numpy as np

# request int fields
RQ_PHASE = 0  # 0 not arrived, 1 at the gateway, 2 waiting at a replica, 3 running, 4 done, 5 rejected
RQ_REP = 1
RQ_DONE = 2  # prompt tokens prefilled
RQ_GEN = 3  # tokens generated
RQ_NEXT = 4  # waiting-queue link
RQ_CHUNK = 5  # this step: -1 decode token, > 0 prefill chunk, 0 nothing
N_RQ = 6
# request float fields
RF_FIRST = 0
RF_FINISH = 1
N_RF = 2
# replica int fields
PI_STATE = 0  # 0 free, 1 starting, 2 ready, 3 draining
PI_NRUN = 1
PI_HEAD = 2
PI_TAIL = 3
PI_NWAIT = 4
PI_KV = 5  # KV tokens reserved
PI_BUSY = 6
N_PI = 7
# replica float fields
PF_START = 0
PF_END = 1
PF_STOP = 2  # when a draining replica emptied
PF_BUSYTOT = 3
N_PF = 4
# cluster ints
C_MBT = 0
C_MAXSEQ = 1
C_KVCAP = 2
C_RHEAD = 3
C_RTAIL = 4
C_GEN = 5
C_TTFT_N = 6
C_ITL_N = 7
C_DONE = 8
C_ARRIVED = 9
C_PROMPT = 10
N_CI = 11
# cluster floats
CF_TTFT_SUM = 0
CF_ITL_SUM = 1
N_CF = 2

STATE_FREE = 0
STATE_STARTING = 1
STATE_READY = 2
STATE_DRAINING = 3


@nb.njit(cache=False)  # no on-disk cache (module docstring)
def _bucket(bounds: np.ndarray, x: float) -> int:
    for i in range(bounds.size):
        if x <= bounds[i]:
            return i
    return bounds.size


@nb.njit(cache=False)  # no on-disk cache (module docstring)
def _start_step(kernel, kp, r, t, inp, out, rq, pi, pf, run, ci) -> None:  # type: ignore[no-untyped-def]
    maxseq = ci[C_MAXSEQ]
    kvcap = ci[C_KVCAP]
    while pi[r, PI_NWAIT] > 0 and pi[r, PI_NRUN] < maxseq:
        q = pi[r, PI_HEAD]
        need = inp[q] + out[q]
        if need <= kvcap and pi[r, PI_KV] + need > kvcap:
            break
        pi[r, PI_HEAD] = rq[q, RQ_NEXT]
        pi[r, PI_NWAIT] -= 1
        if pi[r, PI_NWAIT] == 0:
            pi[r, PI_TAIL] = -1
        if need > kvcap:
            rq[q, RQ_PHASE] = 5
            continue
        run[r, pi[r, PI_NRUN]] = q
        pi[r, PI_NRUN] += 1
        pi[r, PI_KV] += need
        rq[q, RQ_PHASE] = 3
    nrun = pi[r, PI_NRUN]
    budget = ci[C_MBT]
    d = 0
    dkv = 0.0
    for j in range(nrun):
        q = run[r, j]
        if rq[q, RQ_DONE] >= inp[q]:
            d += 1
            dkv += inp[q] + rq[q, RQ_GEN]
            rq[q, RQ_CHUNK] = -1
    budget -= d
    p = 0
    pairs = 0.0
    for j in range(nrun):
        q = run[r, j]
        if rq[q, RQ_DONE] < inp[q]:
            c = min(inp[q] - rq[q, RQ_DONE], budget)
            if c > 0:
                pairs += c * (rq[q, RQ_DONE] + (c + 1) / 2.0)
                p += c
                budget -= c
                rq[q, RQ_CHUNK] = c
            else:
                rq[q, RQ_CHUNK] = 0
    if d == 0 and p == 0:
        pi[r, PI_BUSY] = 0
        if pi[r, PI_STATE] == STATE_DRAINING and pi[r, PI_NWAIT] == 0 and nrun == 0:
            pi[r, PI_STATE] = STATE_FREE
            pf[r, PF_STOP] = t
        return
    st = kernel(kp, float(p), pairs, float(d), dkv)
    pf[r, PF_START] = t
    pf[r, PF_END] = t + st
    pi[r, PI_BUSY] = 1


@nb.njit(cache=False)  # no on-disk cache (module docstring)
def _end_step(r, arr, inp, out, rq, rf, pi, pf, run, ci, cf, tb, th, ib, ih) -> float:  # type: ignore[no-untyped-def]
    te = pf[r, PF_END]
    st = te - pf[r, PF_START]
    pf[r, PF_BUSYTOT] += st
    pi[r, PI_BUSY] = 0
    nrun = pi[r, PI_NRUN]
    w = 0
    ndec = 0
    for j in range(nrun):
        q = run[r, j]
        c = rq[q, RQ_CHUNK]
        fin = False
        if c == -1:
            ndec += 1
            rq[q, RQ_GEN] += 1
            ci[C_GEN] += 1
            if rq[q, RQ_GEN] >= out[q]:
                fin = True
        elif c > 0:
            rq[q, RQ_DONE] += c
            if rq[q, RQ_DONE] >= inp[q]:
                rq[q, RQ_GEN] = 1
                ci[C_GEN] += 1
                rf[q, RF_FIRST] = te
                ttft = te - arr[q]
                ci[C_TTFT_N] += 1
                cf[CF_TTFT_SUM] += ttft
                th[_bucket(tb, ttft)] += 1
                if out[q] <= 1:
                    fin = True
        rq[q, RQ_CHUNK] = 0
        if fin:
            rf[q, RF_FINISH] = te
            rq[q, RQ_PHASE] = 4
            pi[r, PI_KV] -= inp[q] + out[q]
            ci[C_DONE] += 1
        else:
            run[r, w] = q
            w += 1
    pi[r, PI_NRUN] = w
    if ndec > 0:
        ci[C_ITL_N] += ndec
        cf[CF_ITL_SUM] += ndec * st
        ih[_bucket(ib, st)] += ndec
    return float(te)


@nb.njit(cache=False)  # no on-disk cache (module docstring)
def _advance(kernel, kp, r, t, arr, inp, out, rq, rf, pi, pf, run, ci, cf, tb, th, ib, ih) -> None:  # type: ignore[no-untyped-def]
    while pi[r, PI_BUSY] == 1 and pf[r, PF_END] <= t:
        te = _end_step(r, arr, inp, out, rq, rf, pi, pf, run, ci, cf, tb, th, ib, ih)
        _start_step(kernel, kp, r, te, inp, out, rq, pi, pf, run, ci)


@nb.njit(cache=False)  # no on-disk cache (module docstring)
def _enqueue(kernel, kp, r, q, t, inp, out, rq, pi, pf, run, ci) -> None:  # type: ignore[no-untyped-def]
    rq[q, RQ_PHASE] = 2
    rq[q, RQ_REP] = r
    rq[q, RQ_NEXT] = -1
    if pi[r, PI_TAIL] >= 0:
        rq[pi[r, PI_TAIL], RQ_NEXT] = q
    else:
        pi[r, PI_HEAD] = q
    pi[r, PI_TAIL] = q
    pi[r, PI_NWAIT] += 1
    if pi[r, PI_BUSY] == 0:
        _start_step(kernel, kp, r, t, inp, out, rq, pi, pf, run, ci)


@nb.njit(cache=False)  # no on-disk cache (module docstring)
def _pick(pi) -> int:  # type: ignore[no-untyped-def]
    best = -1
    load = 1 << 62
    for r in range(pi.shape[0]):
        if pi[r, PI_STATE] == STATE_READY:
            o = pi[r, PI_NRUN] + pi[r, PI_NWAIT]
            if o < load:
                load = o
                best = r
    return best


@nb.njit(cache=False)  # no on-disk cache (module docstring)
def dispatch_gateway(kernel, kp, t, inp, out, rq, pi, pf, run, ci, gate) -> None:  # type: ignore[no-untyped-def]
    """Hand requests held at the gateway to ready replicas (after some became ready)."""
    while ci[C_RHEAD] < ci[C_RTAIL]:
        r = _pick(pi)
        if r < 0:
            return
        q = gate[ci[C_RHEAD]]
        ci[C_RHEAD] += 1
        _enqueue(kernel, kp, r, q, t, inp, out, rq, pi, pf, run, ci)


@nb.njit(cache=False)  # no on-disk cache (module docstring)
def run_until(kernel, kp, t_end, i0, arr, inp, out, rq, rf, pi, pf, run, ci, cf,  # type: ignore[no-untyped-def]
              tb, th, ib, ih, gate) -> int:
    """Route the arrivals before ``t_end`` (from index ``i0``) and advance every replica to ``t_end``.

    Returns the index of the first arrival not yet routed.
    """
    n = arr.size
    i = i0
    nrep = pi.shape[0]
    while i < n and arr[i] < t_end:
        t = arr[i]
        for r in range(nrep):
            if pi[r, PI_BUSY] == 1:
                _advance(kernel, kp, r, t, arr, inp, out, rq, rf, pi, pf, run, ci, cf, tb, th, ib, ih)
        ci[C_ARRIVED] += 1
        ci[C_PROMPT] += inp[i]
        r = _pick(pi)
        if r < 0:
            rq[i, RQ_PHASE] = 1
            gate[ci[C_RTAIL]] = i
            ci[C_RTAIL] += 1
        else:
            _enqueue(kernel, kp, r, i, t, inp, out, rq, pi, pf, run, ci)
        i += 1
    for r in range(nrep):
        if pi[r, PI_BUSY] == 1:
            _advance(kernel, kp, r, t_end, arr, inp, out, rq, rf, pi, pf, run, ci, cf, tb, th, ib, ih)
    return int(i)


@nb.njit(cache=False)  # no on-disk cache (module docstring)
def try_idle_stop(t, pi, pf) -> None:  # type: ignore[no-untyped-def]
    """Draining replicas with nothing left stop now."""
    for r in range(pi.shape[0]):
        if (pi[r, PI_STATE] == STATE_DRAINING and pi[r, PI_BUSY] == 0 and pi[r, PI_NRUN] == 0
                and pi[r, PI_NWAIT] == 0):
            pi[r, PI_STATE] = STATE_FREE
            pf[r, PF_STOP] = t


def new_arrays(n: int, slots: int, max_num_seqs: int) -> dict[str, np.ndarray]:
    """Zeroed state arrays for ``n`` requests and ``slots`` replica slots."""
    rq = np.zeros((n, N_RQ), dtype=np.int64)
    rq[:, RQ_REP] = -1
    rq[:, RQ_NEXT] = -1
    pi = np.zeros((slots, N_PI), dtype=np.int64)
    pi[:, PI_HEAD] = -1
    pi[:, PI_TAIL] = -1
    return {
        "rq": rq,
        "rf": np.full((n, N_RF), np.nan),
        "pi": pi,
        "pf": np.zeros((slots, N_PF)),
        "run": np.zeros((slots, max_num_seqs), dtype=np.int64),
        "ci": np.zeros(N_CI, dtype=np.int64),
        "cf": np.zeros(N_CF),
        "gate": np.zeros(max(n, 1), dtype=np.int64),
    }
