"""Node-local lower bound, checked against the exhaustive optimum; group re-assignment and forced moves."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from solvers.experts import (
    Balance,
    Cluster,
    Locality,
    MoEShape,
    PlacementProblem,
    SolveParams,
    SolveStatus,
    eplb_placement,
    solve,
    synthetic_loads,
)
from solvers.experts.cpsat import solve_layer
from solvers.experts.groups import forced_moves, lower_bound, node_local_bound, regroup


def _count_vectors(n: int, slots: int, cap: int) -> list[np.ndarray]:
    return [
        np.array(c, dtype=np.int64) for c in itertools.product(range(1, cap + 1), repeat=n) if sum(c) == slots
    ]


def _exhaustive_node_local_optimum(w: np.ndarray, cluster: Cluster, groups: int) -> float:
    """max/mean of the best strict node-local plan: every group->node assignment x every replica count
    vector per node x CP-SAT's proven-optimal packing of the node's GPUs."""
    n = w.shape[0]
    size = n // groups
    gpn = cluster.gpus_per_node
    caps = np.asarray(cluster.slots_per_gpu).reshape(cluster.num_nodes, gpn)
    per_node = groups // cluster.num_nodes
    best_node: dict[tuple[tuple[int, ...], int], float] = {}

    def node_best(subset: tuple[int, ...], k: int) -> float:
        key = (subset, k)
        if key not in best_node:
            experts = np.concatenate([np.arange(g * size, (g + 1) * size) for g in subset])
            best = np.inf
            for counts in _count_vectors(experts.size, int(caps[k].sum()), gpn):
                res = solve_layer(
                    w[experts],
                    counts,
                    caps[k],
                    np.ones((experts.size, gpn), dtype=bool),
                    hint=None,
                    time_limit_s=10.0,
                    num_workers=1,
                    random_seed=0,
                )
                assert res.status is SolveStatus.OPTIMAL and res.x is not None
                best = min(best, float(((w[experts] / counts) @ res.x).max()))
            best_node[key] = best
        return best_node[key]

    best = np.inf
    # Every assignment of groups to nodes with `per_node` groups on each.
    for labels in itertools.product(range(cluster.num_nodes), repeat=groups):
        parts = [tuple(g for g in range(groups) if labels[g] == k) for k in range(cluster.num_nodes)]
        if all(len(p) == per_node for p in parts):
            best = min(best, max(node_best(p, k) for k, p in enumerate(parts)))
    return best / (float(w.sum()) / cluster.num_gpus)


@pytest.mark.parametrize(
    ("seed", "slots"),
    [(0, 12), (1, 12), (2, 12), (3, 11), (4, 11), (5, 10)],
)
def test_node_local_bound_is_below_the_exhaustive_optimum_and_close_to_it(seed: int, slots: int) -> None:
    # 4 groups of 2 experts on 2 nodes of 2 GPUs; 11 slots leave the nodes with 6 and 5 slots.
    rng = np.random.default_rng(seed)
    w = rng.lognormal(0.0, 1.0, size=(1, 8))
    cluster = Cluster(num_gpus=4, gpus_per_node=2, num_slots=slots)
    bound = float(node_local_bound(w, cluster, 4)[0])
    exact = _exhaustive_node_local_optimum(w[0], cluster, 4)
    assert 1.0 <= bound <= exact * (1 + 1e-6)
    assert exact <= bound * 1.15  # the bound is informative, not just valid


def test_bound_is_exact_when_the_busiest_group_decides() -> None:
    # One group per node: the hot group's node carries its tokens whatever the plan; its two experts
    # split evenly over the node's two GPUs.
    w = np.array([[6.0, 6.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    cluster = Cluster(num_gpus=8, gpus_per_node=2, num_slots=8)
    bound = float(node_local_bound(w, cluster, 4)[0])
    assert bound == pytest.approx(_exhaustive_node_local_optimum(w[0], cluster, 4))
    assert bound == pytest.approx(6.0 / (18.0 / 8))


def test_solver_never_beats_the_bound_and_global_bound_is_weaker() -> None:
    shape = MoEShape(layers=3, experts=64, groups=8)
    w = synthetic_loads(shape, sigma=1.0, seed=9)[0]
    cluster = Cluster(num_gpus=32, gpus_per_node=8, num_slots=72)
    sol = solve(
        PlacementProblem(loads=w, cluster=cluster, num_groups=8, locality=Locality.NODE),
        params=SolveParams(max_time_in_seconds=3.0, processes=1),
    )
    node = node_local_bound(w, cluster, 8)
    assert (sol.placement.layer_imbalance(w) >= node - 1e-9).all()
    assert sol.imbalance_bound == pytest.approx(node.mean())
    glob = lower_bound(w, cluster, num_groups=8, locality=Locality.GLOBAL)
    assert (glob <= node + 1e-12).all() and (node > glob).any()


def test_regroup_keeps_groups_when_the_target_allows_and_moves_the_cheapest_otherwise() -> None:
    w = np.array([4.0, 4.0, 1.0, 1.0, 3.0, 3.0, 1.0, 1.0])  # groups carry 8, 2, 6, 2 tokens
    c = Cluster(num_gpus=2, gpus_per_node=1, num_slots=8)
    old = np.array([0, 1, 0, 1])  # nodes carry 14 and 4
    cost = np.array([2.0, 5.0, 2.0, 2.0])
    kept = regroup(w, c, 4, old, cost, max_gpu_load=14.0)
    assert kept is not None and kept.tolist() == old.tolist()
    assert forced_moves(w, c, 4, old, cost, max_gpu_load=14.0) == 0.0
    # Target 10: groups 2 and 3 trade nodes (cost 4) rather than 1 and 2 (cost 7).
    moved = regroup(w, c, 4, old, cost, max_gpu_load=10.0)
    assert moved is not None and moved.tolist() == [0, 1, 1, 0]
    assert forced_moves(w, c, 4, old, cost, max_gpu_load=10.0) == 4.0
    # No split gets a node under 10 tokens.
    assert regroup(w, c, 4, old, cost, max_gpu_load=9.0) is None


def test_node_local_replan_moves_five_times_fewer_experts_at_per_layer_equal_balance() -> None:
    shape = MoEShape(layers=8, experts=128, groups=8)
    windows = synthetic_loads(shape, sigma=1.0, windows=2, drift_sigma=0.2, seed=3)
    cluster = Cluster(num_gpus=32, gpus_per_node=8, num_slots=144)
    params = SolveParams(max_time_in_seconds=4.0, processes=1)
    base = PlacementProblem(loads=windows[0], cluster=cluster, num_groups=8, locality=Locality.NODE)
    current = solve(base, params=params).placement
    fresh = eplb_placement(windows[1], cluster, num_groups=8, hierarchical=True)
    sol = solve(
        PlacementProblem(
            loads=windows[1],
            cluster=cluster,
            num_groups=8,
            locality=Locality.NODE,
            current=current,
            balance=Balance.LAYER,
        ),
        params=params,
    )
    assert sol.balance is Balance.LAYER and sol.balance_target is None
    assert not any(r.method.startswith("aggregate") for r in sol.layers)
    assert sol.placement.duplicates() == 0
    node_of_slot = cluster.gpu_of_slot // 8
    for layer in range(shape.layers):  # still strictly node-local
        groups_nodes = {
            (int(e) // 16, int(node_of_slot[s])) for s, e in enumerate(sol.placement.phy2log[layer])
        }
        assert len(groups_nodes) == 8
    ours = sol.placement.layer_imbalance(windows[1])
    assert (ours <= fresh.layer_imbalance(windows[1]) + 1e-6).all()
    assert sol.moves is not None and sol.moves_bound is not None
    assert sol.moves_bound <= sol.moves
    assert 5 * sol.moves <= int(fresh.moves_from(current).sum())
