"""Where every physical expert slot lives, and the EPLB tensor format engines consume.

A cluster runs ``num_slots`` physical experts per MoE layer on ``num_gpus`` GPUs. GPU ``g`` owns a
contiguous run of slots, ``[offset_g, offset_g + S_g)``, exactly as in DeepSeek's EPLB where ``S_g`` is
``num_slots / num_gpus``. We also allow ``num_slots`` not divisible by ``num_gpus`` (a user request, see
vLLM #18343): the first ``num_slots % num_gpus`` GPUs then hold one slot more. Engines that require equal
slots simply use divisible sizes.

EPLB's format (``rebalance_experts`` returns it, vLLM and SGLang accept it):

``phy2log [layers, num_slots]``              the logical expert in each physical slot
``log2phy [layers, experts, num_slots - experts + 1]``  the slots of each logical expert, padded with -1
``logcnt  [layers, experts]``                replica count of each logical expert

Dispatch is assumed to split an expert's tokens evenly over its replicas (EPLB's assumption), so a slot of
expert ``e`` carries ``w_e / logcnt_e`` and a GPU's load is the sum over its slots.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from traces.atomic import write_atomic, write_text_atomic
from traces.errors import InputError

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class Cluster:
    """The expert-parallel group: GPUs, how they split into nodes, and physical slots per layer.

    Attributes:
        num_gpus: GPUs in the expert-parallel group (EP degree).
        gpus_per_node: GPUs sharing one node (NVLink domain).
        num_slots: physical experts per layer (logical experts + redundant ones).

    >>> c = Cluster(num_gpus=4, gpus_per_node=2, num_slots=10)
    >>> c.slots_per_gpu, c.num_nodes, c.node_of_gpu.tolist()
    ((3, 2, 3, 2), 2, [0, 0, 1, 1])
    """

    num_gpus: int
    gpus_per_node: int
    num_slots: int

    def __post_init__(self) -> None:
        if self.num_gpus < 1 or self.gpus_per_node < 1 or self.num_slots < 1:
            raise InputError(
                "GPUs, GPUs per node and slots must be >= 1", field="gpus", expected="positive integers"
            )
        if self.num_gpus % self.gpus_per_node:
            raise InputError(
                f"{self.num_gpus} GPUs do not fill whole nodes of {self.gpus_per_node}",
                field="gpus-per-node",
                expected="a divisor of --gpus",
            )
        if self.num_slots < self.num_gpus:
            raise InputError(
                f"{self.num_slots} slots for {self.num_gpus} GPUs",
                field="slots",
                expected="at least one expert slot per GPU",
            )

    @property
    def num_nodes(self) -> int:
        return self.num_gpus // self.gpus_per_node

    @property
    def slots_per_gpu(self) -> tuple[int, ...]:
        """Slots of every GPU: the remainder slots are spread over nodes first, so nodes stay equal."""
        base, extra = divmod(self.num_slots, self.num_gpus)
        per_node, node_extra = divmod(extra, self.num_nodes)
        out = []
        for g in range(self.num_gpus):
            node, local = divmod(g, self.gpus_per_node)
            extra_here = per_node + (1 if node < node_extra else 0)
            out.append(base + (1 if local < extra_here else 0))
        return tuple(out)

    @property
    def slot_offsets(self) -> IntArray:
        """``offsets[g]`` is GPU g's first slot; ``offsets[num_gpus] == num_slots``."""
        return np.concatenate([[0], np.cumsum(self.slots_per_gpu)]).astype(np.int64)

    @property
    def gpu_of_slot(self) -> IntArray:
        return np.repeat(np.arange(self.num_gpus, dtype=np.int64), self.slots_per_gpu)

    @property
    def node_of_gpu(self) -> IntArray:
        return np.arange(self.num_gpus, dtype=np.int64) // self.gpus_per_node

    @property
    def slots_per_node(self) -> tuple[int, ...]:
        s = np.asarray(self.slots_per_gpu).reshape(self.num_nodes, self.gpus_per_node).sum(axis=1)
        return tuple(int(v) for v in s)


@dataclass(frozen=True)
class EplbPlan:
    """A plan in DeepSeek EPLB's tensor format (numpy instead of torch; same shapes and meaning)."""

    phy2log: IntArray
    log2phy: IntArray
    logcnt: IntArray


@dataclass(frozen=True, eq=False)
class Placement:
    """Physical slot -> logical expert for every layer, on a given cluster (read-only arrays).

    Build with :func:`make_placement` (which validates and freezes the array).
    """

    phy2log: IntArray
    cluster: Cluster
    num_experts: int

    @property
    def num_layers(self) -> int:
        return int(self.phy2log.shape[0])

    def logcnt(self) -> IntArray:
        """Replica count of every logical expert, ``[layers, experts]``."""
        out = np.zeros((self.num_layers, self.num_experts), dtype=np.int64)
        rows = np.repeat(np.arange(self.num_layers), self.cluster.num_slots)
        np.add.at(out, (rows, self.phy2log.ravel()), 1)
        return out

    def phyrank(self) -> IntArray:
        """Rank of each slot among the replicas of its expert (in slot order), ``[layers, slots]``."""
        out = np.zeros_like(self.phy2log)
        for layer in range(self.num_layers):
            seen = np.zeros(self.num_experts, dtype=np.int64)
            for s, e in enumerate(self.phy2log[layer]):
                out[layer, s] = seen[e]
                seen[e] += 1
        return out

    def to_eplb(self) -> EplbPlan:
        """The same plan as EPLB's ``(phy2log, log2phy, logcnt)``; ``log2phy`` is padded with -1.

        >>> p = make_placement(np.array([[0, 2, 1, 0]]), Cluster(2, 2, 4), num_experts=3)
        >>> e = p.to_eplb()
        >>> e.log2phy.tolist(), e.logcnt.tolist()
        ([[[0, 3], [2, -1], [1, -1]]], [[2, 1, 1]])
        """
        width = max(self.cluster.num_slots - self.num_experts + 1, 1)
        log2phy = np.full((self.num_layers, self.num_experts, width), -1, dtype=np.int64)
        rank = self.phyrank()
        for layer in range(self.num_layers):
            log2phy[layer, self.phy2log[layer], rank[layer]] = np.arange(self.cluster.num_slots)
        return EplbPlan(phy2log=self.phy2log.copy(), log2phy=log2phy, logcnt=self.logcnt())

    def expert_gpu_matrix(self, layer: int) -> IntArray:
        """``[experts, gpus]`` replica counts of one layer (2+ means duplicates on one GPU)."""
        out = np.zeros((self.num_experts, self.cluster.num_gpus), dtype=np.int64)
        np.add.at(out, (self.phy2log[layer], self.cluster.gpu_of_slot), 1)
        return out

    def duplicates(self) -> int:
        """Slots wasted on a second replica of an expert already on the same GPU, over all layers."""
        return int(sum(np.maximum(self.expert_gpu_matrix(i) - 1, 0).sum() for i in range(self.num_layers)))

    def gpu_loads(self, loads: FloatArray) -> FloatArray:
        """``[layers, gpus]`` load of every GPU under even split of tokens over replicas."""
        _check_loads_shape(loads, self)
        cnt = self.logcnt()
        per_slot = np.take_along_axis(loads / np.maximum(cnt, 1), self.phy2log, axis=1)
        return np.add.reduceat(per_slot, self.cluster.slot_offsets[:-1], axis=1)

    def layer_imbalance(self, loads: FloatArray) -> FloatArray:
        """Max over mean GPU load of every layer (1.0 is perfect)."""
        g = self.gpu_loads(loads)
        return np.asarray(g.max(axis=1) / g.mean(axis=1), dtype=np.float64)

    def aggregate_imbalance(self, loads: FloatArray) -> float:
        """``sum_l max_l / sum_l mean_l``: the step-time imbalance (each MoE layer waits for its busiest GPU).

        This is the ``expert_imbalance`` the performance model wants: a step's MoE time follows the sum
        of the per-layer maxima. It equals the mean of :meth:`layer_imbalance` when every layer routes
        the same tokens.
        """
        g = self.gpu_loads(loads)
        return float(g.max(axis=1).sum() / g.mean(axis=1).sum())

    def moves_from(self, previous: Placement) -> IntArray:
        """Per layer, expert copies this plan needs that ``previous`` did not have on the same GPU.

        A copy of expert ``e`` that appears on GPU ``g`` means moving ``e``'s weights to ``g``; moving an
        expert between slots of one GPU is a local copy and is not counted.
        """
        if previous.cluster != self.cluster or previous.phy2log.shape != self.phy2log.shape:
            raise InputError(
                "current placement does not match the cluster or the layer count",
                field="incremental-from",
                expected=f"phy2log of shape {self.phy2log.shape} on {self.cluster}",
            )
        out = np.zeros(self.num_layers, dtype=np.int64)
        for layer in range(self.num_layers):
            new = self.expert_gpu_matrix(layer) > 0
            old = previous.expert_gpu_matrix(layer) > 0
            out[layer] = int((new & ~old).sum())
        return out


def make_placement(
    phy2log: NDArray[np.integer], cluster: Cluster, *, num_experts: int, source: str = "<placement>"
) -> Placement:
    """Validate ``phy2log`` (every slot holds a valid expert, every expert has a replica) and freeze it.

    Raises:
        InputError: wrong shape, expert ids out of range, or an expert with no replica.
    """
    arr = np.asarray(phy2log)
    if arr.ndim != 2 or arr.shape[1] != cluster.num_slots:
        raise InputError(
            f"phy2log has shape {arr.shape}",
            path=source,
            field="phy2log",
            expected=f"[layers, {cluster.num_slots}]",
        )
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"phy2log dtype {arr.dtype}", path=source, field="phy2log", expected="integers")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= num_experts)
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise InputError(
            f"slot {c} holds expert {arr[r, c]}",
            path=source,
            row=r + 1,
            field="phy2log",
            expected=f"an expert id in [0, {num_experts})",
        )
    for layer in range(arr.shape[0]):
        missing = np.setdiff1d(np.arange(num_experts), arr[layer])
        if missing.size:
            raise InputError(
                f"expert {int(missing[0])} has no replica",
                path=source,
                row=layer + 1,
                field="phy2log",
                expected="every logical expert in at least one slot",
            )
    arr.setflags(write=False)
    return Placement(phy2log=arr, cluster=cluster, num_experts=num_experts)


def placement_from_matrices(
    x: list[BoolArray], cluster: Cluster, previous: Placement | None = None
) -> Placement:
    """Build a placement from per-layer ``[experts, gpus]`` membership matrices.

    Within a GPU, an expert that stays keeps its old slot when ``previous`` is given (so engines copy
    nothing for it); new experts fill the freed slots in expert order.
    """
    num_experts = int(x[0].shape[0])
    offsets = cluster.slot_offsets
    out = np.empty((len(x), cluster.num_slots), dtype=np.int64)
    for layer, mat in enumerate(x):
        for g in range(cluster.num_gpus):
            lo, hi = int(offsets[g]), int(offsets[g + 1])
            want = [int(e) for e in np.flatnonzero(mat[:, g])]
            if len(want) != hi - lo:
                raise ValueError(f"layer {layer} GPU {g}: {len(want)} experts for {hi - lo} slots")
            slots: list[int | None] = [None] * (hi - lo)
            if previous is not None:
                old = [int(e) for e in previous.phy2log[layer, lo:hi]]
                keep = set(want)
                for i, e in enumerate(old):
                    if e in keep:
                        slots[i] = e
                        keep.discard(e)
                rest = sorted(keep)
            else:
                rest = want
            it = iter(rest)
            out[layer, lo:hi] = [s if s is not None else next(it) for s in slots]
    return make_placement(out, cluster, num_experts=num_experts)


def save_plan(placement: Placement, path: str | Path) -> None:
    """Write a plan as ``.npz`` (arrays) or ``.json`` (lists), both with EPLB's three tensors (beside the
    final name, then renamed: a killed run leaves no half-written plan for EPLB to load)."""
    p = Path(path)
    e = placement.to_eplb()
    meta = {
        "num_gpus": placement.cluster.num_gpus,
        "gpus_per_node": placement.cluster.gpus_per_node,
        "num_slots": placement.cluster.num_slots,
        "num_experts": placement.num_experts,
    }
    if p.suffix.lower() == ".npz":
        arrays: dict[str, IntArray] = {"phy2log": e.phy2log, "log2phy": e.log2phy, "logcnt": e.logcnt}
        arrays.update({k: np.asarray(v, dtype=np.int64) for k, v in meta.items()})
        def write_npz(tmp: Path) -> None:
            with tmp.open("wb") as fh:  # a file object: numpy would append .npz to a temporary name
                np.savez_compressed(fh, allow_pickle=False, **arrays)

        write_atomic(p, write_npz)
    elif p.suffix.lower() == ".json":
        doc = {
            **meta,
            "phy2log": e.phy2log.tolist(),
            "log2phy": e.log2phy.tolist(),
            "logcnt": e.logcnt.tolist(),
        }
        write_text_atomic(p, json.dumps(doc))
    else:
        raise InputError(f"unknown plan file type {p.suffix!r}", path=str(p), expected=".npz or .json")


def load_plan(path: str | Path, *, num_experts: int | None = None) -> Placement:
    """Read a plan written by :func:`save_plan` (or any file with the same keys).

    Raises:
        InputError: missing file or key, wrong types, or a ``phy2log`` that is not a valid plan.
    """
    p = Path(path)
    name = str(p)
    if not p.is_file():
        raise InputError("file not found", path=name, expected="a plan .npz or .json")
    keys = ("num_gpus", "gpus_per_node", "num_slots", "phy2log")
    if p.suffix.lower() == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                doc: dict[str, object] = {k: z[k] for k in z.files}
        except (ValueError, OSError) as exc:
            raise InputError(f"not a readable .npz ({exc})", path=name, expected="a plan .npz") from None
    elif p.suffix.lower() == ".json":
        try:
            loaded = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(
                f"invalid JSON ({exc.msg})", path=name, row=exc.lineno, expected="a plan .json"
            ) from None
        if not isinstance(loaded, dict):
            raise InputError("top level is not an object", path=name, expected="a JSON object")
        doc = loaded
    else:
        raise InputError(f"unknown plan file type {p.suffix!r}", path=name, expected=".npz or .json")
    for k in keys:
        if k not in doc:
            raise InputError(
                "missing key", path=name, field=k, expected="a plan written by fleetwise experts"
            )
    try:
        ints = {k: int(np.asarray(doc[k]).item()) for k in keys[:3]}
        phy2log = np.asarray(doc["phy2log"])
    except (TypeError, ValueError):
        raise InputError(
            "bad value", path=name, field="num_gpus/gpus_per_node/num_slots", expected="integers"
        ) from None
    cluster = Cluster(**ints)
    n_exp = num_experts
    if n_exp is None:
        n_exp = int(np.asarray(doc["num_experts"]).item()) if "num_experts" in doc else int(phy2log.max()) + 1
    return make_placement(phy2log, cluster, num_experts=n_exp, source=name)


def _check_loads_shape(loads: FloatArray, placement: Placement) -> None:
    if loads.shape != (placement.num_layers, placement.num_experts):
        raise InputError(
            f"loads of shape {loads.shape} for a plan of {placement.num_layers} layers x "
            f"{placement.num_experts} experts",
            field="loads",
            expected="the same layers and experts as the plan",
        )
