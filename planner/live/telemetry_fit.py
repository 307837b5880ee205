"""Per-cluster corrections to the engine profile, fitted on a fleet's own Prometheus history.

Why: every peer planner's users ask to "calibrate on my cluster"; the shipped engine profile was measured
on one H100 and one H200, while a user's GPUs run at their own clocks, power limits, drivers and engine
builds. Their vLLM metrics already say how fast those GPUs serve: the TTFT and inter-token-latency
histograms. The fit replays the trace rebuilt from the same window (:mod:`planner.live.reconstruct`)
through the per-node model with three corrections and picks the ones whose predicted histograms match
the observed ones:

* ``bandwidth``: effective HBM bandwidth over the profile's (decode steps are bandwidth-bound),
* ``compute``: effective tensor throughput over the profile's (prompt steps are compute-bound),
* ``step_add_s``: engine time per step beyond the profile's (host, scheduler, a slower CPU).

Only calm intervals count (no request waiting at either end, :func:`calm_intervals`): there the
latencies say how fast the GPUs serve. Where requests queue, TTFT is mostly queueing, and queueing
depends on how arrivals cluster inside a scrape interval, which the metrics do not keep (the rebuilt
trace spreads them evenly); fitting speed on it would fold that loss into the speed corrections.
Predicted latencies are put in the fleet's own buckets and read back with Prometheus'
``histogram_quantile`` interpolation, so bucket resolution costs both sides the same. The back-test
replays a later window the fit did not see and reports the error with and without the corrections.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from planner.catalog.schema import GPUSpec, ModelSpec
from planner.live.history import Histogram, TelemetryHistory
from planner.live.reconstruct import reconstruct
from planner.perf.api import Parallelism
from planner.perf.cluster_correction import Correction
from planner.perf.engine_profile import engine_perf_inputs
from planner.perf.model import build_replica_perf
from planner.sim.config import EngineConfig, SimConfig
from planner.sim.replay import replay
from traces.errors import InputError
from traces.schema import RequestTrace

QUANTILES = (0.5, 0.9)
"""The TTFT and inter-token-latency quantiles the fit matches and the back-test reports."""


def histogram_quantile(q: float, bounds: Sequence[float], counts: NDArray[np.float64]) -> float:
    """Prometheus' ``histogram_quantile``: linear within the bucket that holds rank ``q``; NaN if empty.

    >>> histogram_quantile(0.5, (1.0, 2.0), np.array([0.0, 4.0, 0.0]))
    1.5
    """
    total = float(counts.sum())
    if total <= 0:
        return math.nan
    cum = np.cumsum(counts)
    rank = q * total
    b = int(np.searchsorted(cum, rank))
    if b >= len(bounds):
        return float(bounds[-1]) if bounds else math.nan
    lo = 0.0 if b == 0 else float(bounds[b - 1])
    below = 0.0 if b == 0 else float(cum[b - 1])
    inside = float(counts[b])
    return lo + (float(bounds[b]) - lo) * ((rank - below) / inside if inside > 0 else 1.0)


@dataclass(frozen=True)
class Latencies:
    """TTFT and inter-token latency: means (exact: a histogram's sum over its count) and quantiles at
    :data:`QUANTILES` (interpolated within the buckets), seconds."""

    ttft_mean: float
    itl_mean: float
    ttft: tuple[float, ...]
    itl: tuple[float, ...]

    def errors(self, observed: Latencies) -> dict[str, float]:
        """Signed relative errors (this / observed - 1), keyed ``ttft_mean``, ``ttft_p50`` etc."""

        def rel(a: float, b: float) -> float:
            return a / b - 1.0 if b > 0 else math.nan

        out = {
            "ttft_mean": rel(self.ttft_mean, observed.ttft_mean),
            "itl_mean": rel(self.itl_mean, observed.itl_mean),
        }
        for name, mine, theirs in (("ttft", self.ttft, observed.ttft), ("itl", self.itl, observed.itl)):
            for q, a, b in zip(QUANTILES, mine, theirs, strict=True):
                out[f"{name}_p{round(q * 100)}"] = rel(a, b)
        return out


CALM_WAITING = 0.0
"""An interval is calm when at most this many requests wait at each of its ends (summed over replicas)."""


def calm_intervals(history: TelemetryHistory) -> NDArray[np.bool_]:
    """Intervals with no request waiting at either end (NaN: not reported, so not calm)."""
    w = history.waiting
    ok: NDArray[np.bool_] = (w[:-1] <= CALM_WAITING) & (w[1:] <= CALM_WAITING) & (history.replicas[:-1] > 0)
    return ok


def observed_latencies(history: TelemetryHistory, mask: NDArray[np.bool_] | None = None) -> Latencies:
    """The fleet's own TTFT and ITL means and quantiles over the intervals in ``mask`` (default all)."""
    sel = np.ones(history.ttft.totals.size, dtype=bool) if mask is None else mask

    def qs(h: Histogram) -> tuple[float, ...]:
        return tuple(histogram_quantile(q, h.bounds, h.counts[sel].sum(axis=0)) for q in QUANTILES)

    return Latencies(history.ttft.mean(sel), history.itl.mean(sel), qs(history.ttft), qs(history.itl))


def _binned(
    values: NDArray[np.float64], weights: NDArray[np.float64], bounds: Sequence[float]
) -> NDArray[np.float64]:
    idx = np.searchsorted(np.asarray(bounds), values, side="left")  # le semantics: v <= bound
    out: NDArray[np.float64] = np.bincount(idx, weights=weights, minlength=len(bounds) + 1).astype(np.float64)
    return out


VLLM_DEFAULTS = EngineConfig(max_batched_tokens=8192, max_num_seqs=1024)
"""vLLM 0.26's scheduler defaults under its OpenAI server (the recorded runs' resolved configuration)."""


@dataclass(frozen=True)
class FleetSetup:
    """What the fleet runs (the metrics do not say all of it: model, GPU and layout come from the user).

    Attributes:
        model, gpu: catalog entries.
        tp: tensor parallelism per replica.
        replicas: replicas serving (default: the most reporting at once).
        engine: engine profile name.
        engine_config: the scheduler's options (vLLM's defaults unless the user's differ).
        mem_fraction: ``gpu_memory_utilization`` (the fleet's ``cache_config_info`` says it when exported).
        weight_dtype, kv_dtype: precision.
    """

    model: ModelSpec
    gpu: GPUSpec
    tp: int = 1
    replicas: int = 1
    engine: str = "vllm"
    engine_config: EngineConfig = field(default_factory=lambda: VLLM_DEFAULTS)
    mem_fraction: float = 0.9
    weight_dtype: str = "bf16"
    kv_dtype: str = "bf16"


def predict(
    trace: RequestTrace,
    setup: FleetSetup,
    corr: Correction,
    history: TelemetryHistory,
    mask: NDArray[np.bool_] | None = None,
) -> Latencies:
    """Replay ``trace`` (rebuilt from ``history``) on the corrected fleet; latencies of the requests whose
    first token came in an interval of ``mask`` (default all), quantiles read from the fleet's buckets."""
    prof, c, g = engine_perf_inputs(setup.engine, setup.gpu, correction=corr)
    perf = build_replica_perf(
        setup.model,
        g,
        Parallelism(tp=setup.tp),
        weight_dtype=setup.weight_dtype,
        kv_dtype=setup.kv_dtype,
        calibration=c,
        mem_fraction=setup.mem_fraction,
        max_batch_tokens=setup.engine_config.max_batched_tokens,
    )
    eng = setup.engine_config.with_profile(prof)
    res = replay(trace, perf, config=SimConfig(replicas=setup.replicas, engine=eng), gpu=g)
    req = res.requests
    ttft = req["ttft_s"].fill_null(np.nan).to_numpy()
    tpot = req["tpot_s"].fill_null(np.nan).to_numpy()
    out = req["output_tokens"].to_numpy().astype(np.float64)
    keep = np.ones(ttft.size, dtype=bool)
    w = np.where(np.isfinite(tpot) & (out > 1), out - 1.0, 0.0)  # inter-token latencies per request
    if mask is not None:
        # TTFT is observed at the first token; each later token's latency as it comes out, so a request's
        # tokens count in the calm intervals in proportion to the part of its decode spent in them
        start = float(dict(trace.meta.extra)["start_timestamp"]) - history.grid_s[0]
        first = req["arrival_s"].to_numpy() + start + np.nan_to_num(ttft)
        fin = req["finish_s"].fill_null(np.nan).to_numpy() + start
        k = np.floor(first / history.step_s).astype(np.int64)
        keep = (k >= 0) & (k < mask.size) & mask[np.clip(k, 0, mask.size - 1)]
        calm_time = np.concatenate([[0.0], np.cumsum(mask * history.step_s)])
        edges = history.step_s * np.arange(mask.size + 1)
        span = np.maximum(np.nan_to_num(fin) - first, 1e-9)
        w = w * (np.interp(np.nan_to_num(fin), edges, calm_time) - np.interp(first, edges, calm_time)) / span
    ok = np.isfinite(ttft) & keep
    okt = w > 0
    if not ok.any() or not okt.any():
        return Latencies(math.nan, math.nan, (math.nan,) * len(QUANTILES), (math.nan,) * len(QUANTILES))
    tb = _binned(ttft[ok], np.ones(int(ok.sum())), history.ttft.bounds)
    ib = _binned(tpot[okt], w[okt], history.itl.bounds)
    return Latencies(
        float(ttft[ok].mean()),
        float((tpot[okt] * w[okt]).sum() / w[okt].sum()),
        tuple(histogram_quantile(q, history.ttft.bounds, tb) for q in QUANTILES),
        tuple(histogram_quantile(q, history.itl.bounds, ib) for q in QUANTILES),
    )


FIT_ON = ("ttft_mean", "itl_mean")
"""What the fit matches: the exact means. Quantiles read inside vLLM's wide buckets (TTFT (1, 2.5] s,
ITL (0.1, 0.15] s) and the rebuilt trace's drawn pairing of prompt and output lengths make quantile
errors too noisy to fit on; they are reported."""


def _loss(errors: dict[str, float]) -> float:
    return float(
        sum(math.log1p(errors[k]) ** 2 for k in FIT_ON if math.isfinite(errors[k]) and errors[k] > -1.0)
    )


@dataclass(frozen=True)
class FitResult:
    """The fitted correction, the fit window's (calm intervals') errors before and after it, the replays
    it took and the share of the window's intervals that were calm."""

    correction: Correction
    before: dict[str, float]
    after: dict[str, float]
    replays: int
    calm_share: float


def fit_correction(
    history: TelemetryHistory, setup: FleetSetup, *, seed: int = 0, rounds: int = 2
) -> FitResult:
    """Coordinate search (per correction, a log-spaced bracket refined) minimising the squared log
    errors of TTFT and ITL p50/p90 on ``history``'s window.

    Raises:
        InputError: the window has no TTFT or ITL observations.
    """
    calm = calm_intervals(history)
    obs = observed_latencies(history, calm)
    if not all(math.isfinite(x) and x > 0 for x in (obs.ttft_mean, obs.itl_mean)):
        raise InputError(
            "the fit window has no calm interval with TTFT and inter-token-latency observations",
            path=history.source,
            field="--range",
            expected="a window in which requests finished without queueing at times",
        )
    trace, _ = reconstruct(history, seed=seed)
    cache: dict[Correction, float] = {}

    def loss(c: Correction) -> float:
        if c not in cache:
            cache[c] = _loss(predict(trace, setup, c, history, calm).errors(obs))
        return cache[c]

    best = Correction()
    before = predict(trace, setup, best, history, calm).errors(obs)
    grids = {
        "bandwidth": np.geomspace(0.5, 2.0, 9),
        "compute": np.geomspace(0.5, 2.0, 9),
        "step_add_s": np.array([0.0, 0.5e-3, 1e-3, 2e-3, 4e-3, 8e-3]),
    }
    for r in range(rounds):
        for name, first in grids.items():
            # later rounds refine the ratios around the current value
            grid = (
                first
                if r == 0 or name == "step_add_s"
                else getattr(best, name) * np.geomspace(0.85, 1 / 0.85, 7)
            )
            cands = [replace(best, **{name: float(v)}) for v in grid]
            best = min([best, *cands], key=loss)
    after = predict(trace, setup, best, history, calm).errors(obs)
    return FitResult(best, before, after, replays=len(cache) + 2, calm_share=float(calm.mean()))


@dataclass(frozen=True)
class BackTest:
    """Errors on a window the fit did not see, without and with the correction: over its calm intervals
    (what the correction is about) and over all of it (queueing included)."""

    uncalibrated: dict[str, float]
    calibrated: dict[str, float]
    uncalibrated_all: dict[str, float]
    calibrated_all: dict[str, float]
    calm_share: float


def back_test(history: TelemetryHistory, setup: FleetSetup, corr: Correction, *, seed: int = 0) -> BackTest:
    """Replay ``history``'s rebuilt trace with and without ``corr``; errors against its own histograms."""
    calm = calm_intervals(history)
    obs, obs_all = observed_latencies(history, calm), observed_latencies(history)
    trace, _ = reconstruct(history, seed=seed)
    return BackTest(
        predict(trace, setup, Correction(), history, calm).errors(obs),
        predict(trace, setup, corr, history, calm).errors(obs),
        predict(trace, setup, Correction(), history).errors(obs_all),
        predict(trace, setup, corr, history).errors(obs_all),
        float(calm.mean()),
    )


ERROR_KEYS = ("ttft_mean", "ttft_p50", "ttft_p90", "itl_mean", "itl_p50", "itl_p90")
"""The errors a fit and its back-test report, in the order every surface shows them."""


def error_rows(fit: FitResult, test: BackTest | None) -> list[tuple[str, str, dict[str, float]]]:
    """``(window, calibrated, errors)`` rows of a fit and its back-test, for the CLI and the dashboard."""
    rows = [("fit", "no", fit.before), ("fit", "yes", fit.after)]
    if test is not None:
        rows += [
            ("back-test", "no", test.uncalibrated),
            ("back-test", "yes", test.calibrated),
            ("back-test, all", "no", test.uncalibrated_all),
            ("back-test, all", "yes", test.calibrated_all),
        ]
    return rows


@dataclass(frozen=True)
class TelemetryCalibration:
    """A fit on a fleet's history and its back-test, with what they rest on (the one result the CLI, its
    JSON file and the dashboard show)."""

    source: str
    fit_range: tuple[float, float]
    backtest_range: tuple[float, float] | None
    setup: FleetSetup
    precision: str
    fit: FitResult
    test: BackTest | None

    def to_json(self) -> dict[str, object]:
        """The document ``calibrate --prometheus-url --out`` writes (``replay --correction`` reads it)."""
        return {
            "source": self.source,
            "fit_range": list(self.fit_range),
            "model": self.setup.model.name,
            "gpu": self.setup.gpu.name,
            "tp": self.setup.tp,
            "replicas": self.setup.replicas,
            "precision": self.precision,
            "correction": dataclasses.asdict(self.fit.correction),
            "fit": {
                "calm_share": self.fit.calm_share,
                "before": self.fit.before,
                "after": self.fit.after,
                "replays": self.fit.replays,
            },
            "backtest": None
            if self.test is None
            else {"range": list(self.backtest_range or ()), **dataclasses.asdict(self.test)},
            "what": (
                "corrections to the engine profile that make the replay of the trace rebuilt from the "
                "fleet's metrics match its TTFT and inter-token-latency means in calm intervals (none "
                "waiting); errors are predicted / observed - 1"
            ),
        }


def calibrate_from_prometheus(
    url: str,
    fit_range: tuple[float, float],
    *,
    model: ModelSpec,
    gpu: GPUSpec,
    backtest_range: tuple[float, float] | None = None,
    tp: int = 1,
    replicas: int | None = None,
    weight_dtype: str = "bf16",
    kv_dtype: str = "bf16",
    precision: str = "bf16",
    selector: str = "",
    step_s: float = 15.0,
    mem_fraction: float | None = None,
) -> TelemetryCalibration:
    """Read the fit window, fit the corrections, back-test them on ``backtest_range``.

    ``replicas`` defaults to the most replicas reporting at once, ``mem_fraction`` to the fleet's
    ``cache_config_info`` ``gpu_memory_utilization`` (else 0.9).

    Raises:
        InputError: no vLLM series or no calm interval in the fit window, bad ranges.
        PromQueryError: Prometheus unreachable or a query refused.
    """
    from planner.live.history import read_history
    from planner.live.promql import PromClient

    client = PromClient(url, timeout_s=30.0)
    hist = read_history(client, selector, *fit_range, step_s)
    server = dict(hist.server)
    setup = FleetSetup(
        model=model,
        gpu=gpu,
        tp=tp,
        replicas=replicas if replicas is not None else max(int(hist.replicas.max()), 1),
        weight_dtype=weight_dtype,
        kv_dtype=kv_dtype,
        mem_fraction=mem_fraction
        if mem_fraction is not None
        else float(server.get("gpu_memory_utilization", 0.9)),
    )
    fit = fit_correction(hist, setup)
    test = None
    if backtest_range is not None:
        test = back_test(read_history(client, selector, *backtest_range, step_s), setup, fit.correction)
    return TelemetryCalibration(hist.source, fit_range, backtest_range, setup, precision, fit, test)
