"""What a replica is asked to do, shared by the simulator and the solvers: its scheduler's limits and
the latency targets of an SLO class.

Why here, below both: the capacity solver and the power solver size fleets against the same scheduler
and SLO that the replay enforces, and a solver may not import the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from traces.errors import InputError


class SchedulerTraits(Protocol):
    """What an engine profile (:class:`planner.perf.engine_profile.EngineProfile`) tells the scheduler."""

    @property
    def output_delay_s(self) -> float: ...

    @property
    def output_delay_steps(self) -> float: ...

    @property
    def async_scheduling(self) -> bool: ...


@dataclass(frozen=True)
class EngineConfig:
    """One replica's scheduler, after vLLM's engine arguments of the same names.

    Attributes:
        max_batched_tokens: token budget of one step (``--max-num-batched-tokens``).
        max_num_seqs: running sequences at most (``--max-num-seqs``).
        block_size: tokens per KV block (``--block-size``).
        enable_prefix_caching: reuse cached prompt blocks named by the trace's ``prefix_hashes``.
        output_delay_s: seconds from the end of the step that made a token to the client seeing it. An
            engine that schedules one step ahead (vLLM's async scheduling) hands each step's tokens over
            while the next step runs, and its front end adds IPC; every token of a request, the first
            included, is seen that much later (TTFT and end-to-end grow by it, TPOT does not). Part of
            an engine profile (:mod:`planner.perf.engine_profile`); 0 for the bare model.
        output_delay_steps: more hand-over latency, in the replica's current mean step time (the part
            of the lag that is a step of the engine's pipeline grows with the step).
        async_scheduling: the engine plans each step while the previous one runs (vLLM's
            ``--async-scheduling``, on by default in 0.26), so a request that arrives during a step
            joins the step after the next, unless the engine is idle. Part of an engine profile.
    """

    max_batched_tokens: int = 8192
    max_num_seqs: int = 256
    block_size: int = 16
    enable_prefix_caching: bool = True
    output_delay_s: float = 0.0
    output_delay_steps: float = 0.0
    async_scheduling: bool = False

    def with_profile(self, profile: SchedulerTraits) -> EngineConfig:
        """This scheduler with ``profile``'s hand-over latency and scheduling (where a profile reaches
        the engine)."""
        return replace(self, output_delay_s=profile.output_delay_s,
                       output_delay_steps=profile.output_delay_steps,
                       async_scheduling=profile.async_scheduling)

    def __post_init__(self) -> None:
        for name in ("max_batched_tokens", "max_num_seqs", "block_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be positive", field=name, expected="an integer >= 1")
        if not 0.0 <= self.output_delay_s < 60.0:
            raise InputError(f"output_delay_s {self.output_delay_s} out of range", field="output_delay_s",
                             expected="seconds in [0, 60)")
        if not 0.0 <= self.output_delay_steps <= 16.0:
            raise InputError(f"output_delay_steps {self.output_delay_steps} out of range",
                             field="output_delay_steps", expected="steps in [0, 16]")
        if self.max_batched_tokens < self.max_num_seqs:
            # every running sequence must be able to decode in every step (vLLM enforces the same)
            raise InputError(
                f"max_batched_tokens {self.max_batched_tokens} < max_num_seqs {self.max_num_seqs}",
                field="max_batched_tokens",
                expected="max_batched_tokens >= max_num_seqs",
            )


@dataclass(frozen=True)
class SLOTarget:
    """Latency targets of one SLO class (seconds): a request meets its SLO when both hold."""

    ttft_s: float
    tpot_s: float
