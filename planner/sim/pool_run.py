"""The state of one pool while :func:`planner.sim.cluster.replay_cluster` runs: its engine, its
replica slots and their life cycle, its policy's state."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from planner.sim.pools import F64, I64, Pool
from planner.sim.state import ShardEngine

OFF, STARTING, SERVING, DRAINING = 0, 1, 2, 3
"""Replica slot states."""


@dataclass
class Instance:
    """One replica's life: requested (GPUs held), ready (routable), drain start, stopped."""

    inst: int
    pool: int
    slot: int
    t_request: float
    t_ready: float
    t_drain: float = math.inf
    t_stop: float = math.inf


@dataclass
class PoolRun:
    index: int
    pool: Pool
    eng: ShardEngine
    rows: I64  # engine row -> trace request id
    slots: int
    state: NDArray[np.int8]
    slot_inst: list[Instance | None]
    history: list[list[Instance]]  # per slot, instances in time order
    gpus: int
    server0: int
    n_servers: int
    rng: np.random.Generator
    policy_state: Any = None
    pending_ready: list[Instance] = field(default_factory=list)
    pend: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # prefill: rows not handed
    q_seen: int = 0
    decode_of: int = -1  # prefill pool -> index of its decode pool
    full_out: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # prefill: asked outputs
    scale_ups: int = 0
    scale_downs: int = 0
    deferred: int = 0
    lock_since: F64 = field(default_factory=lambda: np.zeros(0))
    locks: list[list[tuple[float, float]]] = field(default_factory=list)
    slot_mhz: list[float | None] = field(default_factory=list)

    def serving(self) -> list[int]:
        return [int(s) for s in np.flatnonzero(self.state == SERVING)]
