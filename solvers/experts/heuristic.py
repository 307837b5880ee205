"""Fast layer heuristics: replica counts, a no-duplicate longest-first packing, swap local search and
the incremental repair. They give CP-SAT its hint and are the fallback when CP-SAT has no answer.

One layer is described by:

``w [E]``        expert loads
``counts [E]``   replicas per expert (``sum == sum(caps)``)
``caps [G]``     slots per GPU
``allowed [E,G]`` where each expert may live (all True for the global policy; its node for node-local)
``x [E,G]``      the plan: True where GPU g holds a replica of expert e (so never two on one GPU)

Loads are even-split: a replica of ``e`` carries ``q_e = w_e / counts_e``; GPU load ``= q @ x``.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

_EPS = 1e-12


def capped_counts(w: FloatArray, num_slots: int, max_count: int) -> IntArray:
    """Replica counts minimising the heaviest replica ``max w_e / c_e``, with ``1 <= c_e <= max_count``.

    EPLB's ``argmax w/c`` greedy plus the cap that keeps a replica per GPU at most (no duplicates).

    >>> capped_counts(np.array([10.0, 1.0, 1.0]), 6, 2).tolist()
    [2, 2, 2]
    """
    n = w.shape[0]
    if not n <= num_slots <= n * max_count:
        raise ValueError(f"{num_slots} slots for {n} experts capped at {max_count} replicas")
    counts = np.ones(n, dtype=np.int64)
    for _ in range(num_slots - n):
        per = np.where(counts < max_count, w / counts, -np.inf)
        counts[int(np.argmax(per))] += 1
    return counts


def home_counts(
    w: FloatArray, expert_node: IntArray, num_slots: int, max_count: int, gpus_per_node: int
) -> IntArray:
    """Replica counts when every expert keeps one replica at home (``Locality.HOME``).

    A node must carry one replica of each of its experts, ``F_n = sum_{e at n} w_e / c_e``, whatever
    happens to the others. Each extra slot goes to the current bottleneck: the heaviest replica, or the
    heaviest expert of the node with the largest forced load per GPU.

    >>> home_counts(np.array([4.0, 4.0, 1.0, 1.0]), np.array([0, 0, 1, 1]), 6, 2, 1).tolist()
    [2, 2, 1, 1]
    """
    n = w.shape[0]
    counts = np.ones(n, dtype=np.int64)
    nodes = int(expert_node.max()) + 1
    for _ in range(num_slots - n):
        q = w / counts
        forced = np.bincount(expert_node, weights=q, minlength=nodes) / gpus_per_node
        room = counts < max_count
        hot = int(np.argmax(forced))
        if q[room].max() >= forced[hot] or not (room & (expert_node == hot)).any():
            e = int(np.argmax(np.where(room, q, -np.inf)))
        else:
            e = int(np.argmax(np.where(room & (expert_node == hot), q, -np.inf)))
        counts[e] += 1
    return counts


def lpt_pack(
    w: FloatArray,
    counts: IntArray,
    caps: IntArray,
    allowed: BoolArray,
    *,
    home: IntArray | None = None,
    node_of: IntArray | None = None,
) -> BoolArray:
    """Longest-first packing with no two replicas of an expert on one GPU.

    Replicas go heaviest first to the lightest allowed GPU that has a free slot and no replica of the
    same expert yet (an expert's first replica to its home node when ``home`` is given). If none is
    left (possible in the last few slots), a swap with an already placed replica frees a legal GPU.
    """
    n, g_count = allowed.shape
    q = w / counts
    x = np.zeros((n, g_count), dtype=bool)
    load = np.zeros(g_count)
    free = caps.astype(np.int64).copy()
    homed = home is not None and node_of is not None
    if homed:
        assert home is not None and node_of is not None
        nodes = int(node_of.max()) + 1
        # Slots each node must keep free for the first replicas of experts that call it home.
        need = np.bincount(home[home >= 0], minlength=nodes).astype(np.int64)
    order = np.argsort(-q, kind="stable")
    for e in order:
        for r in range(int(counts[e])):
            ok = (free > 0) & ~x[e] & allowed[e]
            if homed:
                assert home is not None and node_of is not None
                node_free = np.bincount(node_of, weights=free, minlength=nodes)
                first_home = r == 0 and home[e] >= 0
                if first_home:
                    ok &= node_of == home[e]
                else:
                    ok &= (node_free - need)[node_of] >= 1
            g = int(np.argmin(np.where(ok, load, np.inf))) if ok.any() else _make_room(x, e, free, allowed)
            if homed and r == 0 and home is not None and home[e] >= 0:
                need[home[e]] -= 1
            x[e, g] = True
            free[g] -= 1
            load[:] = q @ x  # recomputed: a swap in _make_room may have moved another replica
    return x


def _make_room(x: BoolArray, e: int, free: IntArray, allowed: BoolArray) -> int:
    """Find GPU k where ``e`` may go by moving some replica b from k to a GPU h with a free slot."""
    for h in np.flatnonzero(free > 0):
        for k in np.flatnonzero(~x[e] & allowed[e]):
            movable = x[:, k] & ~x[:, h] & allowed[:, h]
            if movable.any():
                b = int(np.flatnonzero(movable)[0])
                x[b, k], x[b, h] = False, True
                free[h] -= 1
                free[k] += 1
                return int(k)
    raise ValueError(f"no legal GPU for expert {e}: the locality rule leaves no room")


@njit(cache=True)
def _improve_kernel(
    x: BoolArray,
    q: FloatArray,
    load: FloatArray,
    allowed: BoolArray,
    target: float,
    x0: BoolArray,
    use_x0: bool,
    home: IntArray,
    node_of: IntArray,
    max_iters: int,
) -> int:  # pragma: no cover - compiled
    """Swap search on the busiest GPU (compiled; see :func:`improve`). Returns swaps made."""
    n, g_count = x.shape
    home_cnt = np.zeros(n, dtype=np.int64)
    for e in range(n):
        if home[e] >= 0:
            for k in range(g_count):
                if x[e, k] and node_of[k] == home[e]:
                    home_cnt[e] += 1
    swaps = 0
    for _ in range(max_iters):
        g = int(np.argmax(load))
        lg = load[g]
        # At the target, an incremental search goes on with swaps that copy nothing (balance for free).
        free_only = lg <= target
        if free_only and not use_x0:
            break
        tol = 1e-12 * max(lg, 1.0)
        best = np.inf
        ba, bb, bh = -1, -1, -1
        for a in range(n):
            if not x[a, g]:
                continue
            a_leaves_home = home[a] >= 0 and node_of[g] == home[a] and home_cnt[a] < 2
            for h in range(g_count):
                if h == g or x[a, h] or not allowed[a, h]:
                    continue
                if a_leaves_home and node_of[h] != home[a]:
                    continue  # a's last replica on its home node must stay on that node
                gap = lg - load[h]
                if gap <= 2 * tol:
                    continue
                for b in range(n):
                    if not x[b, h] or x[b, g] or not allowed[b, g]:
                        continue
                    d = q[a] - q[b]
                    if d <= tol or d >= gap - tol:
                        continue
                    if home[b] >= 0 and node_of[h] == home[b] and home_cnt[b] < 2 and node_of[g] != home[b]:
                        continue
                    score = max(lg - d, load[h] + d)
                    if use_x0:
                        cost = (not x0[a, h]) + (not x0[b, g]) - (not x0[a, g]) - (not x0[b, h])
                        if free_only and cost > 0:
                            continue
                        score += cost * 4.0 * lg
                    if score < best:
                        best, ba, bb, bh = score, a, b, h
        if ba < 0:
            break
        x[ba, g], x[ba, bh], x[bb, bh], x[bb, g] = False, True, False, True
        if home[ba] >= 0:
            home_cnt[ba] += int(node_of[bh] == home[ba]) - int(node_of[g] == home[ba])
        if home[bb] >= 0:
            home_cnt[bb] += int(node_of[g] == home[bb]) - int(node_of[bh] == home[bb])
        d = q[ba] - q[bb]
        load[g] -= d
        load[bh] += d
        swaps += 1
    return swaps


def improve(
    x: BoolArray,
    w: FloatArray,
    counts: IntArray,
    allowed: BoolArray,
    *,
    target: float = 0.0,
    x0: BoolArray | None = None,
    home: IntArray | None = None,
    node_of: IntArray | None = None,
    max_iters: int = 5000,
) -> BoolArray:
    """Swap local search on the busiest GPU until it cannot improve or reaches ``target`` load.

    Each step swaps a replica ``a`` of the busiest GPU ``g`` with a lighter replica ``b`` of another GPU
    ``h`` such that both end below ``load[g]``, choosing the swap that lands closest to the pair's mean
    (with ``x0``: the one that copies fewest new experts first; once ``target`` is reached, only swaps
    that copy nothing more, so balance below the target comes free). Slot counts never change.

    Args:
        x: starting plan (not modified).
        w, counts, allowed: the layer.
        target: stop once the busiest GPU carries at most this load.
        x0: the current placement in incremental mode.
        home, node_of: home node of each expert (-1: none) and node of each GPU; an expert keeps at least
            one replica on its home node.
        max_iters: safety cap on swaps.
    """
    out = np.ascontiguousarray(x.copy())
    q = np.ascontiguousarray(w / counts, dtype=np.float64)
    n, g_count = x.shape
    _improve_kernel(
        out,
        q,
        q @ out,
        np.ascontiguousarray(allowed),
        float(target),
        x0 if x0 is not None else np.zeros((1, 1), dtype=np.bool_),
        x0 is not None,
        home if home is not None else np.full(n, -1, dtype=np.int64),
        node_of if node_of is not None else np.zeros(g_count, dtype=np.int64),
        int(max_iters),
    )
    return out


def counts_near(
    w: FloatArray, base: IntArray, expert_node: IntArray, node_slots: IntArray, max_count: int
) -> IntArray:
    """Replica counts that fill every node's slots while staying as close to ``base`` as possible.

    Incremental re-plans start from the counts running now: an expert that keeps its count copies
    nothing. Per node, counts are clipped to ``[1, max_count]``, then the surplus is taken from the
    experts whose replicas grow least (``min w / (c - 1)``) and the shortfall given to the heaviest
    replicas (``argmax w / c``, EPLB's rule).

    >>> counts_near(np.array([5.0, 1.0, 1.0]), np.array([1, 3, 1]), np.zeros(3, dtype=np.int64),
    ...             np.array([6]), 3).tolist()
    [2, 3, 1]
    """
    counts = np.clip(base, 1, max_count).astype(np.int64)
    for node, slots in enumerate(node_slots):
        mine = np.flatnonzero(expert_node == node)
        if mine.size == 0:
            continue
        c, wn = counts[mine], w[mine]
        while c.sum() > slots:
            e = int(np.argmin(np.where(c > 1, wn / np.maximum(c - 1, 1), np.inf)))
            c[e] -= 1
        while c.sum() < min(int(slots), mine.size * max_count):
            e = int(np.argmax(np.where(c < max_count, wn / c, -np.inf)))
            c[e] += 1
        counts[mine] = c
    return counts


def repair(
    x: BoolArray,
    w: FloatArray,
    counts: IntArray,
    caps: IntArray,
    allowed: BoolArray,
    *,
    home: IntArray | None = None,
    node_of: IntArray | None = None,
) -> BoolArray:
    """Complete a partial plan to ``counts`` replicas per expert and full GPUs, keeping what it can.

    ``x`` may hold replicas where ``allowed`` now forbids them (dropped), more replicas than ``counts``
    (the extra ones leave their busiest GPUs), or fewer (an expert whose group changed node has none).
    Missing replicas, heaviest first, go to the lightest allowed GPU with a free slot that lacks them
    (an expert's first replica on its home node when ``home`` is given), moving a third replica out of
    the way when every such GPU already holds the expert.
    """
    x = x & allowed
    q = w / counts
    homed = home is not None and node_of is not None
    for e in np.flatnonzero(x.sum(axis=1) > counts):
        for _ in range(int(x[e].sum() - counts[e])):
            gpus = np.flatnonzero(x[e])
            if homed:
                assert home is not None and node_of is not None
                at_home = node_of[gpus] == home[e]
                if home[e] >= 0 and at_home.sum() == 1:
                    gpus = gpus[~at_home]  # keep the last replica on the home node
            load = q @ x
            x[e, int(gpus[np.argmax(load[gpus])])] = False
    free = caps.astype(np.int64) - x.sum(axis=0)
    load = q @ x
    missing = counts - x.sum(axis=1)
    for e in np.argsort(-q, kind="stable"):
        for _ in range(int(missing[e])):
            ok = (free > 0) & ~x[e] & allowed[e]
            if homed:
                assert home is not None and node_of is not None
                if home[e] >= 0 and not (x[e] & (node_of == home[e])).any():
                    ok &= node_of == home[e]
            if ok.any():
                g = int(np.argmin(np.where(ok, load, np.inf)))
            else:
                g = _make_room(x, int(e), free, allowed)
                load = q @ x
            x[e, g] = True
            free[g] -= 1
            load[g] += q[e]
    return x


def adapt_counts(
    x0: BoolArray,
    w: FloatArray,
    counts: IntArray,
    allowed: BoolArray,
    *,
    home: IntArray | None = None,
    node_of: IntArray | None = None,
) -> BoolArray:
    """Turn the current plan ``x0`` (full GPUs) into one with the new ``counts`` while copying few experts.

    Experts losing replicas drop them from their busiest GPUs; experts gaining replicas take the freed
    slots on the lightest GPU that lacks them (see :func:`repair`).
    """
    caps = x0.sum(axis=0).astype(np.int64)
    return repair(x0, w, counts, caps, allowed, home=home, node_of=node_of)
