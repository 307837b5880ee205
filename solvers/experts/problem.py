"""The placement request and reply: frozen dataclasses, status as data.

A :class:`PlacementProblem` says what to balance (expert loads per layer), on what (the
:class:`~solvers.experts.placement.Cluster`), under which locality rule, and optionally from which current
placement (incremental mode). :func:`solvers.experts.solve` answers with a :class:`PlacementSolution` that
carries the plan, the balance it reaches, the experts it moves, the solver status and the wall time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from solvers.experts.placement import Cluster, Placement
from solvers.status import SolveStatus
from traces.errors import InputError

FloatArray = NDArray[np.float64]


class Locality(StrEnum):
    """Where an expert's replicas may live.

    ``GLOBAL``: any GPU (EPLB's global policy, used for decode). ``NODE``: every replica of an expert on
    the node its group is assigned to, an equal number of groups per node (EPLB's hierarchical policy,
    used for prefill, so a token's experts sit on as few nodes as group-limited routing allows); its
    balance can never beat ``busiest node / mean node``, which the group loads alone fix. ``HOME``: every
    expert keeps at least one replica on its group's node, redundant replicas may go to other nodes; the
    share of tokens that then cross nodes is reported (``LayerReport.remote_share``).
    """

    GLOBAL = "global"
    NODE = "node"
    HOME = "home"


class Balance(StrEnum):
    """What "as balanced as a fresh plan" means for an incremental re-plan.

    ``AGGREGATE`` (default): the sum over layers of the busiest GPU's load may not exceed the reference
    plan's, i.e. ``sum_l max_l / sum_l mean_l`` (the step-time imbalance: every MoE layer waits for its
    own busiest GPU, so a step's MoE time follows the sum). A layer may then stay a little less balanced
    than the reference (keeping its expert groups where they are) while another is balanced better.
    ``LAYER``: every layer separately at least as balanced as the reference's same layer (stricter; it
    forces more copies, most of all node-local, where a group that changes node copies all its replicas).
    """

    AGGREGATE = "aggregate"
    LAYER = "layer"


@dataclass(frozen=True, eq=False)
class PlacementProblem:
    """What to place.

    Attributes:
        loads: ``[layers, experts]`` expected tokens per expert (a window average of engine statistics).
        cluster: GPUs, GPUs per node and physical slots per layer.
        num_groups: expert groups (group-limited routing); used by ``Locality.NODE``.
        locality: replica locality rule.
        current: the placement running now; when given, the solver minimises experts moved.
        max_imbalance: incremental mode only: the balance (max/mean GPU load) to reach, for the
            aggregate over layers or for each layer (``balance``). ``None`` means "as good as a fresh
            EPLB plan of the new loads" under the same statement.
        balance: incremental mode only: aggregate (step-time) balance or per-layer balance.
    """

    loads: FloatArray
    cluster: Cluster
    num_groups: int = 1
    locality: Locality = Locality.GLOBAL
    current: Placement | None = None
    max_imbalance: float | None = None
    balance: Balance = Balance.AGGREGATE

    def __post_init__(self) -> None:
        layers, experts = self.loads.shape
        c = self.cluster
        if c.num_slots < experts:
            raise InputError(
                f"{c.num_slots} slots for {experts} experts",
                field="redundant",
                expected="at least one slot per logical expert (redundant >= 0)",
            )
        if c.num_slots > experts * c.num_gpus:
            raise InputError(
                f"{c.num_slots} slots for {experts} experts on {c.num_gpus} GPUs",
                field="redundant",
                expected="at most one replica of each expert per GPU (slots <= experts x GPUs)",
            )
        if experts % self.num_groups:
            raise InputError(
                f"{experts} experts do not split into {self.num_groups} groups",
                field="groups",
                expected="a divisor of the expert count",
            )
        if self.locality in (Locality.NODE, Locality.HOME):
            if self.num_groups % c.num_nodes:
                raise InputError(
                    f"{self.num_groups} groups cannot be spread evenly over {c.num_nodes} nodes",
                    field="node-local",
                    expected="a node count that divides the group count",
                )
            if min(c.slots_per_node) < experts // c.num_nodes:
                raise InputError(
                    "a node has fewer slots than experts to host",
                    field="redundant",
                    expected=f">= {experts // c.num_nodes} slots per node",
                )
        if self.current is not None and (
            self.current.cluster != c
            or self.current.num_layers != layers
            or self.current.num_experts != experts
        ):
            raise InputError(
                "current placement does not match loads and cluster",
                field="incremental-from",
                expected=f"{layers} layers x {experts} experts on {c}",
            )
        if not isinstance(self.balance, Balance):
            raise InputError(f"balance {self.balance!r}", field="balance", expected="aggregate | layer")
        if self.max_imbalance is not None and self.max_imbalance < 1.0:
            raise InputError(f"max_imbalance {self.max_imbalance}", field="max-imbalance", expected=">= 1.0")


@dataclass(frozen=True)
class SolveParams:
    """Solver knobs; all are always set on CP-SAT (house rule).

    Attributes:
        max_time_in_seconds: budget for the whole solve (all layers together), spent as CP-SAT
            deterministic time (so the plan does not depend on machine load; wall time may differ).
        num_workers: CP-SAT search workers per layer model.
        random_seed: CP-SAT seed (and tie-breaking), so runs repeat.
        processes: layers solved in parallel processes (1 = in this process).
        gap_tolerance: skip CP-SAT on a layer whose heuristic plan is within this relative gap of the
            lower bound (the bound is already met for practical purposes).
        use_cpsat: False runs only the heuristic (greedy start + local search).
        window_gpus: GPUs CP-SAT re-packs at once (the busiest and the lightest half each); the rest keep
            their replicas. Whole-layer models of 64 GPUs x 256 experts do not leave presolve in time.
    """

    max_time_in_seconds: float = 7.0
    num_workers: int = 1
    random_seed: int = 0
    processes: int = 2
    gap_tolerance: float = 0.002
    use_cpsat: bool = True
    window_gpus: int = 16

    def __post_init__(self) -> None:
        if (
            self.max_time_in_seconds <= 0
            or self.num_workers < 1
            or self.processes < 1
            or self.window_gpus < 2
        ):
            raise InputError(
                "solver parameters out of range",
                field="time-limit",
                expected="time > 0, workers >= 1, processes >= 1, window_gpus >= 2",
            )


@dataclass(frozen=True)
class LayerReport:
    """How one layer was solved.

    ``lower_bound`` is a lower bound on max/mean that no plan under the locality rule can beat
    (:func:`~solvers.experts.groups.lower_bound`). ``min_moves`` (node-local re-plans only) is a lower
    bound on the copies any plan reaching the layer's balance target must make
    (:func:`~solvers.experts.groups.forced_moves`).
    """

    status: SolveStatus
    imbalance: float
    lower_bound: float
    moves: int | None
    method: str
    wall_s: float
    remote_share: float = 0.0
    min_moves: int | None = None


@dataclass(frozen=True, eq=False)
class PlacementSolution:
    """The reply.

    Attributes:
        placement: the plan (``.to_eplb()`` gives engine tensors).
        status: worst status over layers (OPTIMAL only when every layer was proven optimal).
        objective: mean over layers of max/mean GPU load, the quantity minimised (incremental mode: total
            experts moved).
        bound: lower bound on the objective: ``imbalance_bound`` (incremental: None).
        imbalance: mean over layers of max/mean GPU load.
        worst_imbalance: the worst layer's max/mean.
        moves: total expert copies moved from ``problem.current`` (None without a current placement).
        remote_share: mean over layers of the share of tokens dispatched off their group's home node
            (0 for global placements, where no home is defined, and for ``Locality.NODE``).
        wall_s: solve wall time in seconds.
        layers: per-layer reports.
        imbalance_bound: mean over layers of a lower bound on max/mean that no plan under the locality
            rule beats (for ``Locality.NODE``, any group->node assignment; see
            :func:`~solvers.experts.groups.node_local_bound`). Set in incremental mode too.
        moves_bound: node-local re-plans: the copies no plan holding the same balance statement can
            avoid (groups that must change node): per-layer targets under ``Balance.LAYER``, the
            aggregate budget under ``Balance.AGGREGATE``; None otherwise.
        aggregate_imbalance: ``sum_l max_l / sum_l mean_l``; feed this to the performance model's
            ``expert_imbalance`` (each MoE layer waits for its own busiest GPU, so a step's MoE time
            follows the sum of the per-layer maxima). Equals ``imbalance`` when all layers carry the
            same tokens.
        balance: incremental re-plans: the balance statement held (None for fresh plans).
        balance_target: incremental re-plans under ``Balance.AGGREGATE``: the aggregate imbalance the
            plan had to reach (the reference plan's, or ``max_imbalance``); None otherwise.
    """

    placement: Placement
    status: SolveStatus
    objective: float
    bound: float | None
    imbalance: float
    worst_imbalance: float
    moves: int | None
    wall_s: float
    layers: tuple[LayerReport, ...]
    remote_share: float = 0.0
    imbalance_bound: float = 1.0
    moves_bound: int | None = None
    aggregate_imbalance: float = 1.0
    balance: Balance | None = None
    balance_target: float | None = None
