"""Placement solver: invariants, never worse than EPLB, locality rules, brute-force optimum, incremental."""

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
from solvers.experts.heuristic import capped_counts
from traces.errors import InputError

FAST = SolveParams(max_time_in_seconds=3.0, processes=1)


def _check_invariants(sol_placement: object, loads: np.ndarray, cluster: Cluster) -> None:
    from solvers.experts import Placement

    assert isinstance(sol_placement, Placement)
    plan = sol_placement.to_eplb()
    layers, experts = loads.shape
    assert plan.phy2log.shape == (layers, cluster.num_slots)  # slot counts respected
    assert sol_placement.duplicates() == 0  # never two replicas of one expert on one GPU
    assert (plan.logcnt >= 1).all()  # every logical expert has a replica
    assert (plan.logcnt.sum(axis=1) == cluster.num_slots).all()
    for layer in range(layers):
        for e in range(experts):
            slots = plan.log2phy[layer, e]
            real = slots[slots >= 0]
            assert real.size == plan.logcnt[layer, e]
            assert (plan.phy2log[layer, real] == e).all()
            assert (slots[real.size :] == -1).all()


@pytest.mark.parametrize(
    ("gpus", "redundant", "sigma"), [(8, 8, 0.5), (8, 8, 1.0), (16, 8, 1.0), (16, 16, 1.0)]
)
def test_never_worse_than_eplb_and_valid(gpus: int, redundant: int, sigma: float) -> None:
    shape = MoEShape(layers=4, experts=64, groups=8)
    w = synthetic_loads(shape, sigma=sigma, seed=gpus + redundant)[0]
    cluster = Cluster(num_gpus=gpus, gpus_per_node=8, num_slots=64 + redundant)
    sol = solve(PlacementProblem(loads=w, cluster=cluster, num_groups=8), params=FAST)
    _check_invariants(sol.placement, w, cluster)
    greedy = eplb_placement(w, cluster, num_groups=8, hierarchical=False).layer_imbalance(w)
    ours = sol.placement.layer_imbalance(w)
    assert (ours <= greedy + 1e-9).all()
    assert sol.imbalance == pytest.approx(ours.mean())
    assert sol.bound is not None and sol.bound <= sol.imbalance + 1e-9
    assert sol.status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)


def test_node_local_keeps_every_replica_on_its_group_node() -> None:
    shape = MoEShape(layers=3, experts=64, groups=4)
    w = synthetic_loads(shape, sigma=1.0, seed=5)[0]
    cluster = Cluster(num_gpus=16, gpus_per_node=4, num_slots=80)
    sol = solve(PlacementProblem(loads=w, cluster=cluster, num_groups=4, locality=Locality.NODE), params=FAST)
    _check_invariants(sol.placement, w, cluster)
    node_of_slot = cluster.gpu_of_slot // 4
    for layer in range(3):
        for group in range(4):
            in_group = sol.placement.phy2log[layer] // 16 == group
            assert len(set(node_of_slot[in_group].tolist())) == 1
    greedy = eplb_placement(w, cluster, num_groups=4, hierarchical=True).layer_imbalance(w)
    assert (sol.placement.layer_imbalance(w) <= greedy + 1e-9).all()
    assert sol.remote_share == 0.0


def test_home_locality_keeps_one_replica_home_and_reports_remote_tokens() -> None:
    shape = MoEShape(layers=2, experts=64, groups=4)
    w = synthetic_loads(shape, sigma=1.0, seed=6)[0]
    cluster = Cluster(num_gpus=16, gpus_per_node=4, num_slots=80)
    sol = solve(PlacementProblem(loads=w, cluster=cluster, num_groups=4, locality=Locality.HOME), params=FAST)
    _check_invariants(sol.placement, w, cluster)
    strict = solve(
        PlacementProblem(loads=w, cluster=cluster, num_groups=4, locality=Locality.NODE), params=FAST
    )
    node_of_slot = cluster.gpu_of_slot // 4
    for layer in range(2):
        phy = sol.placement.phy2log[layer]
        # Nodes that hold a replica of every expert of the group could be its home.
        homes = [
            set.intersection(*(set(node_of_slot[phy == e].tolist()) for e in range(g * 16, (g + 1) * 16)))
            for g in range(4)
        ]
        # One group per node: some assignment of distinct homes must exist.
        assert any(all(p[g] in homes[g] for g in range(4)) for p in itertools.permutations(range(4)))
    assert sol.imbalance <= strict.imbalance + 1e-9
    assert 0.0 < sol.remote_share < 1.0


def test_uneven_slots_per_gpu() -> None:
    # 36 slots on 8 GPUs: 4 GPUs hold 5 slots, 4 hold 4 (EPLB itself needs a multiple of the GPU count).
    w = synthetic_loads(MoEShape(layers=2, experts=32), sigma=1.0, seed=2)[0]
    cluster = Cluster(num_gpus=8, gpus_per_node=4, num_slots=36)
    sol = solve(PlacementProblem(loads=w, cluster=cluster), params=FAST)
    _check_invariants(sol.placement, w, cluster)
    assert sorted(cluster.slots_per_gpu) == [4, 4, 4, 4, 5, 5, 5, 5]


def _brute_force_packing(q: np.ndarray, counts: np.ndarray, caps: list[int]) -> float:
    """Smallest busiest-GPU load over every duplicate-free packing with these counts."""
    best = np.inf
    columns = [list(itertools.combinations(range(len(q)), s)) for s in caps]
    for combo in itertools.product(*columns):
        have = np.zeros(len(q), dtype=int)
        for col in combo:
            have[list(col)] += 1
        if (have == counts).all():
            best = min(best, max(float(q[list(col)].sum()) for col in combo))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_cpsat_matches_brute_force_on_small_layers(seed: int) -> None:
    rng = np.random.default_rng(seed)
    w = rng.lognormal(0.0, 1.0, size=6)
    caps = np.array([3, 3, 3])
    counts = capped_counts(w, 9, 3)
    res = solve_layer(
        w,
        counts,
        caps,
        np.ones((6, 3), dtype=bool),
        hint=None,
        time_limit_s=5.0,
        num_workers=1,
        random_seed=0,
    )
    assert res.status is SolveStatus.OPTIMAL and res.x is not None
    assert (res.x.sum(axis=1) == counts).all() and (res.x.sum(axis=0) == caps).all()
    exact = _brute_force_packing(w / counts, counts, caps.tolist())
    assert float(((w / counts) @ res.x).max()) == pytest.approx(exact, rel=1e-5)


def test_small_layer_solution_is_no_worse_than_brute_force_over_greedy_counts() -> None:
    rng = np.random.default_rng(11)
    w = rng.lognormal(0.0, 1.0, size=(3, 5))
    cluster = Cluster(num_gpus=3, gpus_per_node=3, num_slots=9)
    sol = solve(
        PlacementProblem(loads=w, cluster=cluster), params=SolveParams(processes=1, gap_tolerance=0.0)
    )
    for layer in range(3):
        counts = capped_counts(w[layer], 9, 3)
        exact = _brute_force_packing(w[layer] / counts, counts, [3, 3, 3])
        busiest = float(sol.placement.gpu_loads(w)[layer].max())
        assert busiest <= exact * (1 + 1e-6)


def test_incremental_moves_five_times_fewer_experts_at_equal_balance() -> None:
    shape = MoEShape(layers=6, experts=128, groups=8)
    windows = synthetic_loads(shape, sigma=1.0, windows=2, drift_sigma=0.2, seed=4)
    cluster = Cluster(num_gpus=16, gpus_per_node=8, num_slots=144)
    params = SolveParams(max_time_in_seconds=4.0, processes=1)
    current = solve(PlacementProblem(loads=windows[0], cluster=cluster), params=params).placement
    fresh = eplb_placement(windows[1], cluster, hierarchical=False)
    sol = solve(
        PlacementProblem(loads=windows[1], cluster=cluster, current=current, balance=Balance.LAYER),
        params=params,
    )
    assert sol.balance is Balance.LAYER
    _check_invariants(sol.placement, windows[1], cluster)
    assert sol.moves is not None and sol.moves == int(sol.placement.moves_from(current).sum())
    assert (sol.placement.layer_imbalance(windows[1]) <= fresh.layer_imbalance(windows[1]) + 1e-6).all()
    assert 5 * sol.moves <= int(fresh.moves_from(current).sum())


@pytest.mark.parametrize("balance", list(Balance))
def test_incremental_with_unchanged_loads_moves_nothing(balance: Balance) -> None:
    w = synthetic_loads(MoEShape(layers=2, experts=32), sigma=0.5, seed=1)[0]
    cluster = Cluster(num_gpus=8, gpus_per_node=8, num_slots=40)
    current = solve(PlacementProblem(loads=w, cluster=cluster), params=FAST).placement
    again = solve(
        PlacementProblem(loads=w, cluster=cluster, current=current, max_imbalance=1.5, balance=balance),
        params=FAST,
    )
    assert again.moves == 0
    assert (again.placement.phy2log == current.phy2log).all()


def test_bad_problems_raise_input_error() -> None:
    w = np.ones((1, 8))
    with pytest.raises(InputError, match="slots"):
        PlacementProblem(loads=w, cluster=Cluster(4, 4, 6))
    with pytest.raises(InputError, match="groups"):
        PlacementProblem(loads=w, cluster=Cluster(4, 2, 8), num_groups=3)
    with pytest.raises(InputError, match="nodes"):
        Cluster(num_gpus=6, gpus_per_node=4, num_slots=8)
