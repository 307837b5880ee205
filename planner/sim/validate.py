"""The simulator against a real serving engine: replay the measured arrivals, compare latencies.

The validation run (``planner/perf/data/validation/<GPU>/``: ``engine_requests.parquet`` with per-request
TTFT/TPOT/e2e at several load levels, ``engine_meta.json`` with the engine's configuration) served a
random-weight model of a catalog architecture on one GPU. Here each load level's arrivals and lengths are
replayed through one simulated replica configured like that engine (token budget, block size, KV blocks,
max running sequences, no prefix cache). The engine-overhead term of the step model (``engine_step_s +
engine_per_seq_s * batch``, :mod:`planner.perf.engine_check`) is calibrated on some load levels (even
positions of the sorted levels, as ``engine_check`` splits them), by replaying them, and checked on the
others: predicted p50 TTFT and TPOT within 10 % and p99 within 20 % of the measured ones.

Why calibrate through the replay and not per request: queueing (TTFT) and batch composition (TPOT) come
from the simulator's scheduler, so the fitted term must be the one that makes the *replay* right.

>>> from planner.sim.validate import THRESHOLDS
>>> THRESHOLDS["ttft_p50"], THRESHOLDS["tpot_p99"]
(0.1, 0.2)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl
from numpy.typing import NDArray
from scipy.optimize import minimize, nnls

from planner.catalog.schema import GPUSpec, ModelSpec
from planner.perf.calibration import Calibration, resolve_calibration
from planner.perf.engine_check import REQUEST_COLUMNS, engine_model, load_requests
from planner.perf.model import RooflinePerf, build_replica_perf
from planner.sim.config import EngineConfig, SimConfig
from planner.sim.kernels import engine_step_time
from planner.sim.replay import replay
from traces.errors import InputError
from traces.schema import RequestTrace, TraceMeta

Arr = NDArray[np.float64]

THRESHOLDS: dict[str, float] = {"ttft_p50": 0.10, "tpot_p50": 0.10, "ttft_p99": 0.20, "tpot_p99": 0.20}
"""Largest relative error allowed on the check levels (the issue's acceptance numbers)."""
METRICS = ("ttft_p50", "tpot_p50", "ttft_p99", "tpot_p99")


@dataclass(frozen=True)
class LevelCheck:
    """Measured and predicted latency percentiles of one load level (seconds) and their errors.

    Attributes:
        level: load as a fraction of the engine's measured capacity (0: a burst at t = 0).
        split: ``fit`` (used to calibrate) or ``check`` (held out).
        requests: requests compared (finished, at least two output tokens).
        measured, predicted: ``ttft_p50``, ``tpot_p50``, ``ttft_p99``, ``tpot_p99``.
        errors: ``predicted / measured - 1`` per metric.
    """

    level: float
    split: str
    requests: int
    measured: dict[str, float]
    predicted: dict[str, float]
    errors: dict[str, float]

    @property
    def within(self) -> bool:
        """All four metrics within :data:`THRESHOLDS`."""
        return all(abs(self.errors[m]) <= THRESHOLDS[m] for m in METRICS)


@dataclass(frozen=True)
class ValidationReport:
    """The calibrated engine term and every level's comparison.

    Attributes:
        engine: the validated engine's name.
        terms: the calibrated engine overhead: seconds per step, per sequence, per prefill token, per
            decode KV token and per prefill-token x KV-token (see :class:`EnginePerf`).
        levels: one :class:`LevelCheck` per load level.
    """

    engine: str
    terms: tuple[float, float, float, float, float]
    levels: tuple[LevelCheck, ...]

    @property
    def passed(self) -> bool:
        """Every held-out level within the thresholds."""
        return all(lv.within for lv in self.levels if lv.split == "check")

    def as_dict(self) -> dict[str, object]:
        """Plain data for ``--json``."""
        return {"engine": self.engine, "engine_step_s": self.terms[0], "engine_per_seq_s": self.terms[1],
                "engine_per_prefill_token_s": self.terms[2], "engine_per_kv_token_s": self.terms[3],
                "engine_per_prefill_token_kv_token_s": self.terms[4],
                "passed": self.passed,
                "thresholds": THRESHOLDS,
                "levels": [{"level": lv.level, "split": lv.split, "requests": lv.requests,
                            "measured": lv.measured, "predicted": lv.predicted, "errors": lv.errors,
                            "within": lv.within} for lv in self.levels]}


def engine_config_from_meta(meta: dict[str, object], *, path: str) -> tuple[EngineConfig, int]:
    """The simulated engine's scheduler options and KV capacity (tokens) from ``engine_meta.json``.

    Raises:
        InputError: the meta lacks the engine configuration.
    """
    cfg = meta.get("engine_config")
    if not isinstance(cfg, dict):
        raise InputError("no engine_config in the validation meta", path=path, field="engine_config",
                         expected="the engine's block_size, max_batch_tokens, num_blocks")
    try:
        bs = int(cfg["block_size"])
        mbt = int(cfg["max_batch_tokens"])
        blocks = int(cfg["num_blocks"])
        seqs = int(cfg.get("max_requests_per_batch", 256))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"engine_config incomplete ({exc})", path=path, field="engine_config",
                         expected="integers block_size, max_batch_tokens, num_blocks") from None
    eng = EngineConfig(max_batched_tokens=mbt, max_num_seqs=min(seqs, mbt), block_size=bs,
                       enable_prefix_caching=False)
    return eng, blocks * bs


def _level_traces(folder: Path) -> dict[float, pl.DataFrame]:
    path = folder / "engine_requests.parquet"
    df = pl.read_parquet(path)
    for c in REQUEST_COLUMNS:
        if c not in df.columns:
            raise InputError(f"missing column {c!r}", path=str(path), field=c,
                             expected="columns " + ", ".join(REQUEST_COLUMNS))
    # load level 0 is the profiler's capacity probe (every request submitted at t=0), not a load level:
    # a burst into an empty engine exercises its admission of a whole batch at once, which no steady
    # load does, so it is neither fitted nor checked
    df = df.filter(pl.col("load_level") > 0)
    return {float(k[0]): g.sort("arrival_s") for k, g in df.group_by("load_level")}  # type: ignore[arg-type]


def _pcts(ttft: np.ndarray, tpot: np.ndarray) -> dict[str, float]:
    return {"ttft_p50": float(np.percentile(ttft, 50)), "tpot_p50": float(np.percentile(tpot, 50)),
            "ttft_p99": float(np.percentile(ttft, 99)), "tpot_p99": float(np.percentile(tpot, 99))}


def _measured(g: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, float]]:
    ok = g.filter(pl.col("output_tokens") >= 2, pl.col("tpot_s").is_not_null(), pl.col("tpot_s") > 0,
                  pl.col("ttft_s").is_not_null(), pl.col("e2e_s").is_not_null())
    return ok, _pcts(ok["ttft_s"].cast(pl.Float64).to_numpy(), ok["tpot_s"].cast(pl.Float64).to_numpy())


def _predict(g: pl.DataFrame, ok_ids: pl.Series, perf: EnginePerf, eng: EngineConfig) -> dict[str, float]:
    arr = g["arrival_s"].cast(pl.Float64).to_numpy()
    df = pl.DataFrame({"arrival_s": arr - arr.min(), "input_tokens": g["input_tokens"].cast(pl.Int32),
                       "output_tokens": g["output_tokens"].cast(pl.Int32)})
    res = replay(RequestTrace(df, TraceMeta("validation", "engine_requests")), perf,
                 config=SimConfig(replicas=1, engine=eng))
    sel = g["request_id"].is_in(ok_ids.implode()).to_numpy()
    req = res.requests
    ttft = req["ttft_s"].fill_null(np.nan).to_numpy()[sel]
    tpot = req["tpot_s"].fill_null(np.nan).to_numpy()[sel]
    if np.isnan(ttft).any() or np.isnan(tpot).any():
        return dict.fromkeys(METRICS, math.inf)
    return _pcts(ttft, tpot)




@dataclass(frozen=True)
class EnginePerf:
    """A :class:`~planner.perf.api.ReplicaPerf`: the step model plus a serving engine's overhead.

    Why more than ``engine_step_s + engine_per_seq_s * batch``: an engine without CUDA graphs and with
    padded attention (the validated one) also pays per prefill token and per cached token it reads;
    the two extra terms let the replay learn that from the fit levels.

    Attributes:
        base: the bare step model (its KV capacity replaced by the engine's).
        terms: seconds per step, per sequence, per prefill token, per decode KV token.
        kv_tokens: the engine's KV capacity.
    """

    base: RooflinePerf
    terms: tuple[float, float, float, float, float]
    kv_tokens: int

    @property
    def kv_capacity_tokens(self) -> int:
        return self.kv_tokens

    @property
    def kv_bytes_per_token(self) -> float:
        return self.base.kv_bytes_per_token

    @property
    def gpus(self) -> int:
        return self.base.gpus

    def _extra(self, pt: Arr, ds: Arr, kv: Arr) -> Arr:
        e = self.terms
        seqs = ds + (pt > 0)
        out: Arr = np.where(seqs > 0, e[0] + e[1] * seqs + e[2] * pt + e[3] * kv + e[4] * pt * kv, 0.0)
        return out

    def step_time_s(self, prefill_tokens: Arr | float, prefill_pairs: Arr | float, decode_seqs: Arr | float,
                    decode_kv: Arr | float) -> Arr:
        pt, ds, kv = (np.asarray(x, dtype=np.float64) for x in (prefill_tokens, decode_seqs, decode_kv))
        out: Arr = self.base.step_time_s(prefill_tokens, prefill_pairs, decode_seqs, decode_kv) + self._extra(
            pt, ds, kv)
        return out

    def step_power_w(self, prefill_tokens: Arr | float, prefill_pairs: Arr | float, decode_seqs: Arr | float,
                     decode_kv: Arr | float) -> Arr:
        return self.base.step_power_w(prefill_tokens, prefill_pairs, decode_seqs, decode_kv)

    def decode_affine(self, decode_seqs: int) -> tuple[float, float]:
        a, b = self.base.decode_affine(decode_seqs)
        e = self.terms
        return a + e[0] + e[1] * decode_seqs, b + e[3]

    def kernel(self) -> tuple[object, Arr]:
        return engine_step_time, np.concatenate([np.asarray(self.terms, dtype=np.float64), self.base.params])

    def at_clock(self, sm_clock_mhz: float) -> EnginePerf:
        return replace(self, base=self.base.at_clock(sm_clock_mhz))


def _decode_terms(root: Path, fit_levels: set[float], base: RooflinePerf) -> tuple[float, float, float]:
    """Engine time per step, per sequence and per KV token from the fit levels' token timestamps.

    Every gap between two consecutive tokens of a request is one engine step; the batch then is every
    request between its first and last token, its KV their prompts plus the tokens they have so far.
    Gaps in which another request got its first token carried a prefill and are left out. The engine's
    time is the gap minus the bare step model's decode step, fitted by non-negative least squares.
    """
    path = root / "engine_tokens.parquet"
    if not path.is_file():
        raise InputError("per-token timestamps not found", path=str(path))
    tok = pl.read_parquet(path)
    req = pl.read_parquet(root / "engine_requests.parquet").select("load_level", "request_id", "input_tokens")
    rows_b: list[np.ndarray] = []
    rows_kv: list[np.ndarray] = []
    rows_y: list[np.ndarray] = []
    for lv in sorted(fit_levels):
        t = tok.filter(pl.col("load_level") == lv).join(req, on=["load_level", "request_id"]).sort(
            "request_id", "token_index")
        if t.height == 0:
            continue
        t = t.with_columns(prev=pl.col("t_s").shift(1).over("request_id"))
        spans = t.group_by("request_id").agg(pl.col("t_s").min().alias("a"), pl.col("t_s").max().alias("b"),
                                             pl.col("input_tokens").first().alias("inp"))
        a, b, inp = (spans[c].to_numpy().astype(np.float64) for c in ("a", "b", "inp"))
        g = t.filter(pl.col("prev").is_not_null())
        now = g["t_s"].to_numpy()
        prev = g["prev"].to_numpy()
        live = (a[None, :] <= prev[:, None]) & (b[None, :] >= now[:, None])
        joined = ((a[None, :] > prev[:, None]) & (a[None, :] <= now[:, None])).any(axis=1)
        # tokens a live request has by `now`: its share of (b - a) elapsed, times its token count
        n_tok = t.group_by("request_id").agg(pl.len().alias("n"))["n"].to_numpy().astype(np.float64)
        frac = np.clip((now[:, None] - a[None, :]) / np.maximum(b - a, 1e-9)[None, :], 0.0, 1.0)
        kv = (live * (inp[None, :] + frac * n_tok[None, :])).sum(axis=1)
        bsz = live.sum(axis=1).astype(np.float64)
        ok = ~joined & (bsz > 0)
        gap = now - prev
        rows_b.append(bsz[ok])
        rows_kv.append(kv[ok])
        rows_y.append(gap[ok] - base.step_time_s(0.0, 0.0, bsz[ok], kv[ok]))
    if not rows_y:
        return 0.0, 0.0, 0.0
    bsz, kv, y = np.concatenate(rows_b), np.concatenate(rows_kv), np.concatenate(rows_y)
    A = np.column_stack([np.ones_like(bsz), bsz, kv])
    sol, _ = nnls(A, y)
    return float(sol[0]), float(sol[1]), float(sol[2])


def validate_replay(folder: str | Path, *, model: ModelSpec, gpu: GPUSpec,
                    calibration: Calibration | None = None, max_iter: int = 300,
                    joint_iter: int = 300) -> ValidationReport:
    """Calibrate the engine term on the even load levels by replay, check the odd ones.

    Args:
        folder: the validation folder (``engine_requests.parquet``, ``engine_meta.json``).
        model: the catalog architecture the engine served (its layer count is taken from the meta).
        gpu: the GPU it ran on.
        calibration: the bare step-model calibration (default: the shipped one for ``gpu``).
        max_iter: Nelder-Mead iterations of the calibration.
        joint_iter: iterations of the final joint refinement of all five terms (0: none).

    Raises:
        InputError: missing files, columns or engine configuration.
    """
    root = Path(folder)
    _, meta = load_requests(root)
    eng, kv_tokens = engine_config_from_meta(meta, path=str(root / "engine_meta.json"))
    served = engine_model(model, meta)
    cal = calibration if calibration is not None else resolve_calibration(gpu)
    bare = replace(cal, engine_step_s=0.0, engine_per_seq_s=0.0)
    levels = _level_traces(root)
    order = sorted(levels)
    fit_levels = set(order[0::2])
    meas = {lv: _measured(levels[lv]) for lv in order}
    base = build_replica_perf(served, gpu, calibration=bare, max_batch_tokens=eng.max_batched_tokens,
                              min_kv_tokens=1)

    def terms_of(x: np.ndarray) -> tuple[float, float, float, float, float]:
        v = np.exp(x)
        return float(v[0]), float(v[1]), float(v[2]), float(v[3]), float(v[4])

    def loss(x: np.ndarray) -> float:
        perf = EnginePerf(base=base, terms=terms_of(x), kv_tokens=kv_tokens)
        err = 0.0
        for lv in fit_levels:
            ok, m = meas[lv]
            p = _predict(levels[lv], ok["request_id"], perf, eng)
            for k in METRICS:
                err += math.log(max(p[k], 1e-9) / m[k]) ** 2 if math.isfinite(p[k]) else 1e3
        return err

    e0, e1, e3 = _decode_terms(root, fit_levels, base)
    x0 = np.log([max(e0, 1e-6), max(e1, 1e-7), 1e-5, max(e3, 1e-12), 1e-12])

    def loss_prefill(z: np.ndarray) -> float:
        x = x0.copy()
        x[2], x[4] = z[0], z[1]
        return loss(x)

    # the decode terms come from the token gaps; the two prefill terms from replaying the fit levels
    grid = [(a, c) for a in np.log(np.geomspace(1e-6, 1e-3, 7)) for c in np.log(np.geomspace(1e-12, 1e-8, 5))]
    z0 = np.array(grid[int(np.argmin([loss_prefill(np.array(g)) for g in grid]))])
    best = minimize(loss_prefill, z0, method="Nelder-Mead",
                    options={"maxiter": max_iter, "xatol": 1e-3, "fatol": 1e-5})
    x0[2], x0[4] = float(best.x[0]), float(best.x[1])
    if joint_iter:
        # then all five together: the token-gap estimates of the decode terms ignore how the engine's
        # prefills delay decodes, which the replayed percentiles see
        joint = minimize(loss, x0, method="Nelder-Mead",
                         options={"maxiter": joint_iter, "xatol": 1e-3, "fatol": 1e-5})
        if joint.fun < loss(x0):
            x0 = np.asarray(joint.x, dtype=np.float64)
    terms = terms_of(x0)
    perf = EnginePerf(base=base, terms=terms, kv_tokens=kv_tokens)
    checks = []
    for lv in order:
        ok, m = meas[lv]
        p = _predict(levels[lv], ok["request_id"], perf, eng)
        checks.append(LevelCheck(level=lv, split="fit" if lv in fit_levels else "check", requests=ok.height,
                                 measured=m, predicted=p, errors={k: p[k] / m[k] - 1.0 for k in METRICS}))
    return ValidationReport(engine=str(meta.get("engine", "")), terms=terms, levels=tuple(checks))


def report_json(report: ValidationReport) -> str:
    """The report as JSON."""
    return json.dumps(report.as_dict(), indent=2)
