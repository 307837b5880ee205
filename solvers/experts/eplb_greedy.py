"""DeepSeek's EPLB greedy, reimplemented in numpy from its published description (the baseline).

The algorithm (deepseek-ai/EPLB, described in area C1 of the design notes), per layer:

1. **Groups -> nodes** (hierarchical policy only): pack expert groups onto nodes with
   :func:`balanced_packing` on group loads, an equal number of groups per node.
2. **Replicate** (:func:`replicate`): each redundant slot goes to the expert with the largest load per
   replica, ``argmax w_e / c_e``, within each node.
3. **Replicas -> GPUs** (:func:`balanced_packing` on replica loads ``w_e / c_e``): longest-first, each
   replica to the lightest GPU that still has a free slot.

The global policy is the same routine with one group and one node. EPLB's own API picks hierarchical when
the group count is a multiple of the node count. Nothing stops two replicas of one expert from landing on
one GPU; that is a known defect (EPLB #22, vLLM #18343) we keep here on purpose, because this module is
the baseline our solver is measured against.

Generalisation (not in EPLB): GPUs may hold unequal slot counts (see
:class:`~solvers.experts.placement.Cluster`); packing then fills each GPU up to its own capacity. With
equal capacities this is EPLB's behaviour exactly, including its tie-breaking (first lightest pack; first
largest per-replica load).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from solvers.experts.placement import Cluster, EplbPlan, Placement, make_placement
from traces.errors import InputError

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


def balanced_packing(weight: FloatArray, capacities: Sequence[int]) -> tuple[IntArray, IntArray]:
    """Pack items into packs of fixed cardinality, heaviest first into the lightest open pack.

    Args:
        weight: ``[n]`` item weights.
        capacities: items each pack must receive (they sum to ``n``).

    Returns:
        ``(pack, rank)``: the pack of every item and its position inside the pack.

    >>> balanced_packing(np.array([5.0, 1.0, 4.0, 2.0]), [2, 2])
    (array([0, 0, 1, 1]), array([0, 1, 0, 1]))
    """
    n = weight.shape[0]
    caps = np.asarray(capacities, dtype=np.int64)
    if int(caps.sum()) != n:
        raise ValueError(f"{n} items for capacities summing to {int(caps.sum())}")
    if caps.size == n and bool((caps == 1).all()):
        # EPLB's shortcut: one item per pack keeps the original order.
        return np.arange(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    pack = np.full(n, -1, dtype=np.int64)
    rank = np.full(n, -1, dtype=np.int64)
    loads = np.zeros(caps.size)
    counts = np.zeros(caps.size, dtype=np.int64)
    for i in np.argsort(-weight, kind="stable"):
        open_loads = np.where(counts < caps, loads, np.inf)
        p = int(np.argmin(open_loads))
        pack[i], rank[i] = p, counts[p]
        loads[p] += weight[i]
        counts[p] += 1
    return pack, rank


def replicate(weight: FloatArray, num_slots: int) -> tuple[IntArray, IntArray, IntArray]:
    """Give each extra slot to the expert with the heaviest load per replica.

    This greedy minimises ``max_e w_e / c_e`` over counts summing to ``num_slots`` (exchange argument:
    any solution can be turned into the greedy one without raising that maximum).

    Returns:
        ``(slot2expert [num_slots], rank [num_slots], count [n])``; the first ``n`` slots are the experts
        themselves in order.

    >>> replicate(np.array([6.0, 1.0, 3.0]), 5)[0].tolist()
    [0, 1, 2, 0, 0]
    """
    n = weight.shape[0]
    if num_slots < n:
        raise ValueError(f"{num_slots} slots for {n} experts")
    slot2expert = np.concatenate([np.arange(n), np.zeros(num_slots - n, dtype=np.int64)]).astype(np.int64)
    rank = np.zeros(num_slots, dtype=np.int64)
    count = np.ones(n, dtype=np.int64)
    for i in range(n, num_slots):
        e = int(np.argmax(weight / count))
        slot2expert[i], rank[i] = e, count[e]
        count[e] += 1
    return slot2expert, rank, count


def _layer(w: FloatArray, cluster: Cluster, num_groups: int, num_nodes: int) -> IntArray:
    """One layer of the hierarchical policy; ``num_nodes == num_groups == 1`` is the global policy."""
    n = w.shape[0]
    group_size = n // num_groups
    groups_per_node = num_groups // num_nodes
    gpus_per_node = cluster.num_gpus // num_nodes
    caps = np.asarray(cluster.slots_per_gpu).reshape(num_nodes, gpus_per_node)
    # Step 1: groups to nodes, then renumber experts so each node's experts are contiguous
    # ("meta-logical" order: node, rank of the group in the node, expert within the group).
    gpack, grank = balanced_packing(
        w.reshape(num_groups, group_size).sum(axis=1), [groups_per_node] * num_nodes
    )
    log2mlog = ((gpack * groups_per_node + grank)[:, None] * group_size + np.arange(group_size)).ravel()
    mlog2log = np.empty(n, dtype=np.int64)
    mlog2log[log2mlog] = np.arange(n)
    per_node = n // num_nodes
    w_mlog = w[mlog2log].reshape(num_nodes, per_node)
    out: list[IntArray] = []
    for node in range(num_nodes):
        node_caps = caps[node]
        # Step 2: replicate within the node.
        slot2mlog, _, count = replicate(w_mlog[node], int(node_caps.sum()))
        # Step 3: replicas to the node's GPUs by per-replica load.
        pack, rank = balanced_packing((w_mlog[node] / count)[slot2mlog], node_caps.tolist())
        offsets = np.concatenate([[0], np.cumsum(node_caps)])
        placed = np.empty(slot2mlog.size, dtype=np.int64)
        placed[offsets[pack] + rank] = slot2mlog
        out.append(mlog2log[placed + node * per_node])
    return np.concatenate(out)


def eplb_placement(
    loads: FloatArray, cluster: Cluster, *, num_groups: int = 1, hierarchical: bool | None = None
) -> Placement:
    """EPLB's plan for every layer as a :class:`Placement`.

    Args:
        loads: ``[layers, experts]`` expert loads.
        cluster: GPUs, nodes and slots.
        num_groups: expert groups (DeepSeek-V3: 8).
        hierarchical: force the policy; ``None`` picks as EPLB does (hierarchical when groups are a
            multiple of nodes).

    Raises:
        InputError: the hierarchical policy was asked for but groups do not split evenly over nodes.
    """
    _, n = loads.shape
    if hierarchical is None:
        hierarchical = num_groups % cluster.num_nodes == 0
    if hierarchical:
        if num_groups % cluster.num_nodes or n % num_groups:
            raise InputError(
                f"{num_groups} groups do not split over {cluster.num_nodes} nodes",
                field="node-local",
                expected="a group count that is a multiple of the node count",
            )
        groups, nodes = num_groups, cluster.num_nodes
        if min(cluster.slots_per_node) < n // nodes:
            raise InputError(
                "a node has fewer slots than the experts of its groups",
                field="slots",
                expected=f">= {n // nodes} slots per node",
            )
    else:
        groups, nodes = 1, 1
    phy2log = np.stack([_layer(loads[i], cluster, groups, nodes) for i in range(loads.shape[0])])
    return make_placement(phy2log, cluster, num_experts=n)


def rebalance_experts(
    weight: FloatArray, num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int
) -> tuple[IntArray, IntArray, IntArray]:
    """Drop-in for EPLB's ``rebalance_experts`` with numpy arrays: ``(phy2log, log2phy, logcnt)``.

    >>> w = np.array([[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86]], dtype=float)
    >>> rebalance_experts(w, 16, 4, 2, 8)[0].tolist()
    [[5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1]]
    """
    cluster = Cluster(num_gpus=num_gpus, gpus_per_node=num_gpus // num_nodes, num_slots=num_replicas)
    plan: EplbPlan = eplb_placement(
        np.asarray(weight, dtype=np.float64), cluster, num_groups=num_groups
    ).to_eplb()
    return plan.phy2log, plan.log2phy, plan.logcnt
