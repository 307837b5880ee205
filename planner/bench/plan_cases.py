"""``fleetwise bench plan``: the planner on the problems users bring, with a peer's published figure where
one exists.

Each case is a trace, a model, GPU types and an SLO at a stated statistic. The bench runs the same
:func:`planner.plan.sizing.plan_fleet` the CLI runs (scoring, CP-SAT, the replay loop) and reports what
an operator would judge a plan by: GPUs at peak, output tokens/s per GPU, how many plan-replay rounds it
took, whether the presented plan passed its own replay and at what attainment. Cases whose trace lives in
the shared data folder are skipped, with the reason, when it is absent.

The peer figures are constants with their source: AIConfigurator 0.12 (TensorRT-LLM data) on Qwen3-32B,
H200, 4,000 input / 500 output tokens, 36 req/s, TTFT 300 ms, mean TPOT 20 ms: disaggregated TP4, 717
output tokens/s per GPU; at mean TPOT 10 ms: 573 (fleetwise issue 20, measured with
``aiconfigurator cli default``). They come from another engine's data, so a ratio against them says how
far apart the two tools' plans are, not which engine is faster; the vLLM calibration decides what is real.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from solvers.capacity.problem import SLO, SolveParams

if TYPE_CHECKING:  # the planner is imported when a case is planned, not for ``fleetwise bench --help``
    from planner.plan.sizing import PlanReport
    from traces.schema import RequestTrace


@dataclass(frozen=True)
class PeerFigure:
    """A peer planner's published figure for the same problem."""

    tokens_per_gpu_s: float
    source: str


AIC = "AIConfigurator 0.12 (TensorRT-LLM data), disaggregated TP4, as measured for fleetwise issue 20"


@dataclass(frozen=True)
class PlanCase:
    """One planning problem.

    Attributes:
        name: short name (``--cases``).
        what: one line on why the case is here.
        trace: ``default``, ``peer`` (the peer problem's synthetic trace) or a path under the data root.
        model: catalog model.
        gpus: catalog GPU types the plan may use.
        slo: targets at their statistic.
        precision: ``native``, ``all`` or labels.
        duration_s: plan the first this many seconds of the trace (None: all of it).
        peer: a peer's figure for the same problem, if published.
    """

    name: str
    what: str
    trace: str
    model: str
    gpus: tuple[str, ...]
    slo: SLO
    precision: str = "native"
    duration_s: float | None = None
    peer: PeerFigure | None = None


HOPPER = ("H100-SXM", "H200-SXM")
"""The GPUs with measured profiles."""

CASES: tuple[PlanCase, ...] = (
    PlanCase("default", "the bundled trace: one synthetic hour of Azure-conversation-shaped traffic",
             "default", "Llama-3.1-8B", ("H100-SXM", "H200-SXM", "A100-80GB-SXM"), SLO()),
    PlanCase("azure-conv", "Azure LLM 2023 conversation hour on a 70B model",
             "azure_llm_2023/AzureLLMInferenceTrace_conv.csv", "Llama-3.1-70B", HOPPER, SLO()),
    PlanCase("azure-code", "Azure LLM 2023 code hour (long prompts, 10-second bursts) on a 70B model",
             "azure_llm_2023/AzureLLMInferenceTrace_code.csv", "Llama-3.1-70B", HOPPER, SLO()),
    PlanCase("mooncake", "Mooncake's long-context conversation trace on a 70B model (TTFT 10 s: 12k-token "
             "prompts)", "mooncake/synthetic_trace.jsonl", "Llama-3.1-70B", HOPPER,
             SLO(ttft_s=10.0, tpot_s=0.1)),
    PlanCase("servegen-dsv3", "ServeGen language m-small, first 10 minutes, DeepSeek-V3 in its native fp8",
             "servegen/language/m-small", "DeepSeek-V3", ("H200-SXM", "B200"), SLO(), duration_s=600.0),
    PlanCase("peer-tpot20", "the peer problem at mean TPOT 20 ms, every precision",
             "peer", "Qwen3-32B", ("H200-SXM",), SLO(ttft_s=0.3, tpot_s=0.02, mean=True), precision="all",
             peer=PeerFigure(717.0, AIC)),
    PlanCase("peer-tpot10", "the peer problem at mean TPOT 10 ms, every precision",
             "peer", "Qwen3-32B", ("H200-SXM",), SLO(ttft_s=0.3, tpot_s=0.01, mean=True), precision="all",
             peer=PeerFigure(573.0, AIC)),
)
"""The cases, cheapest first."""


def peer_trace() -> RequestTrace:
    """The peer problem's traffic: Poisson 36 req/s for 10 minutes, lognormal lengths around 4,000 input
    and 500 output tokens (what ``fleetwise traces synth --rate 36 --duration 600 --input-mean 4000
    --input-median 3995 --output-mean 500 --output-median 499 --seed 1`` writes)."""
    from traces.synth import synthesize
    from traces.synth_config import SynthConfig

    cfg = SynthConfig.model_validate({
        "duration_s": 600.0, "seed": 1, "arrival": {"kind": "poisson", "rate": 36.0},
        "lengths": {"input": {"dist": "lognormal", "mean": 4000, "median": 3995, "max": 32_768},
                    "output": {"dist": "lognormal", "mean": 500, "median": 499, "max": 4096}},
        "name": "peer problem (synthetic)"})
    return synthesize(cfg.to_spec())


@dataclass(frozen=True)
class CaseResult:
    """What one case's plan came to (``skipped`` says why when it did not run)."""

    case: str
    model: str
    statistic: str
    requests: int = 0
    peak_gpus: int = 0
    tokens_per_gpu_s: float | None = None
    rounds: int = 0
    presented: str = ""
    verified: bool = False
    replayed_attainment: float = math.nan
    usd: float | None = None
    wall_s: float = 0.0
    peer_tokens_per_gpu_s: float | None = None
    peer_source: str = ""
    skipped: str = ""

    @property
    def vs_peer(self) -> float | None:
        """Our output tokens/s per GPU over the peer's (> 1: leaner)."""
        if self.tokens_per_gpu_s is None or not self.peer_tokens_per_gpu_s:
            return None
        return self.tokens_per_gpu_s / self.peer_tokens_per_gpu_s


def load_case_trace(case: PlanCase, data_root: Path) -> RequestTrace | str:
    """The case's trace, or why it cannot be had (a missing shared file)."""
    from traces.default import load_trace_arg

    if case.trace == "peer":
        return peer_trace()
    if case.trace == "default":
        return load_trace_arg("default")
    path = data_root / case.trace
    if not path.exists():
        return f"{path} not found (the shared data folder; --data-root)"
    return load_trace_arg(path, duration_s=case.duration_s)


def run_case(case: PlanCase, data_root: Path, *, time_limit_s: float = 10.0,
             clock: Callable[[], float] = time.perf_counter) -> CaseResult:
    """Plan one case as ``fleetwise plan`` would (seed 0) and summarise it."""
    from planner.catalog import load_catalog
    from planner.perf.precision import parse_precisions
    from planner.plan.sizing import PlanRequest, plan_fleet

    base = CaseResult(case=case.name, model=case.model, statistic=case.slo.statistic,
                      peer_tokens_per_gpu_s=case.peer.tokens_per_gpu_s if case.peer else None,
                      peer_source=case.peer.source if case.peer else "")
    t0 = clock()
    trace = load_case_trace(case, data_root)
    if isinstance(trace, str):
        return replace(base, skipped=trace)
    cat = load_catalog()
    model = cat.model(case.model)
    request = PlanRequest(model=model, gpus=tuple(cat.gpu(g) for g in case.gpus), slo=case.slo,
                          params=SolveParams(max_time_in_seconds=time_limit_s, random_seed=0), seed=0,
                          precisions=parse_precisions(case.precision, model))
    report = plan_fleet(trace, request)
    return summarise(base, report, trace.num_requests, clock() - t0)


def summarise(base: CaseResult, report: PlanReport, requests: int, wall_s: float) -> CaseResult:
    """The figures of one planned case."""
    lines = report.cost_breakdown()
    first = report.verification[0] if report.verification else None
    return replace(
        base, requests=requests, peak_gpus=sum(line.peak_replicas * line.gpus_per_replica for line in lines),
        tokens_per_gpu_s=report.output_tokens_per_gpu_s, rounds=report.rounds,
        presented=first.label if first else "", verified=report.verified,
        replayed_attainment=first.replayed_attainment if first else math.nan, usd=report.plan.objective_usd,
        wall_s=wall_s, skipped="" if report.plan.feasible else f"no plan: {report.plan.note}")
