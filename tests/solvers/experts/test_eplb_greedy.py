"""EPLB greedy reimplementation: the published README example, and the known duplicate defect."""

from __future__ import annotations

import numpy as np

from solvers.experts import Cluster, eplb_placement, rebalance_experts

# deepseek-ai/EPLB README: 2 layers x 12 experts, 16 physical experts, 4 groups, 2 nodes, 8 GPUs.
README_WEIGHT = np.array(
    [
        [90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
        [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27],
    ],
    dtype=float,
)
README_PHY2LOG = [
    [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
    [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1],
]


def test_reproduces_the_published_example() -> None:
    phy2log, log2phy, logcnt = rebalance_experts(README_WEIGHT, 16, 4, 2, 8)
    assert phy2log.tolist() == README_PHY2LOG
    assert logcnt.sum(axis=1).tolist() == [16, 16]
    for layer in range(2):
        for e in range(12):
            slots = [int(s) for s in log2phy[layer, e] if s >= 0]
            assert len(slots) == logcnt[layer, e]
            assert all(phy2log[layer, s] == e for s in slots)
            assert (log2phy[layer, e, logcnt[layer, e] :] == -1).all()


def test_hierarchical_keeps_groups_on_one_node() -> None:
    plan = eplb_placement(README_WEIGHT, Cluster(8, 4, 16), num_groups=4, hierarchical=True)
    node_of_slot = plan.cluster.gpu_of_slot // 4
    for layer in range(2):
        for group in range(4):
            nodes = {int(node_of_slot[s]) for s in range(16) if plan.phy2log[layer, s] // 3 == group}
            assert len(nodes) == 1


def test_greedy_can_put_two_replicas_on_one_gpu() -> None:
    # Longest-first packing puts both replicas of expert 1 on the last GPU (EPLB #22 / vLLM #18343),
    # although a duplicate-free plan exists. This is the baseline's defect our solver removes.
    w = np.array([[10.0, 9.0, 8.0, 1.0, 1.0, 1.0]])
    plan = eplb_placement(w, Cluster(4, 4, 8), hierarchical=False)
    assert plan.phy2log.tolist() == [[2, 5, 0, 3, 0, 4, 1, 1]]
    assert plan.duplicates() == 1
