"""Engine profiles: what a serving engine adds to the bare step model, as data.

The step model (:mod:`planner.perf.model`) times the GPU kernels of one engine step. A serving engine
adds its own time around them: scheduling, sampling, Python, and the hand-over of tokens to the client.
How much depends on the engine. vLLM's V1 engine replays whole decode steps from CUDA graphs and
schedules one step ahead (async scheduling), so on an H100 its decode steps take what the kernels take
(measured: ``data/validation/H100-SXM/vllm-0.26.0``), but every token reaches the client a step or so
after the step that made it. A bare torch layer stack (the profiler's ``steps.parquet``) pays about
2 ms of launch and Python time per step and hands tokens over at once.

A profile holds these, all fitted from the engine's own measurements
(:func:`planner.sim.engine_validate.fit_engine_profile`):

- ``step_s``: engine time per step (replaces the calibration's ``step_s``),
- ``per_seq_s``: engine time per running sequence per step (replaces ``per_seq_s``),
- ``output_delay_s`` and ``output_delay_steps``: hand-over latency added to every token the client
  sees, fixed plus a number of the replica's current step times
  (:attr:`planner.sim.config.EngineConfig.output_delay_s`),
- ``attention``: the prefill and decode attention curves of the engine's kernels (replaces the
  calibration's, which were fitted on the profiler's own kernel),
- ``gemm_bf16``: the GEMM curve at the clock the engine's GEMMs run at (the calibration's was fitted on
  power-throttled profiler loops),
- ``throttle_exp``: with that full-clock curve, how steps slow at the board's power limit,
- ``power``: power coefficients refitted on the engine's NVML energy, and ``idle_w``,
- ``async_scheduling``: whether the engine plans a step ahead (the replay's scheduler then does too).

Shipped profiles: ``data/engines/<engine>/<GPU key>.json``. ``bare`` is not a file: it is the
calibration as fitted on the profiler's layer stack, with no hand-over latency. A GPU without a profile
of the asked engine gets the profile of the nearest measured GPU (H100 for every Hopper part), and its
``source`` says so.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from planner.catalog.schema import GPUSpec
from planner.perf.calibration import AttentionCurve, Calibration, GemmCurve, PowerCoeffs, resolve_calibration
from planner.perf.cluster_correction import Correction
from traces.atomic import write_text_atomic
from traces.errors import InputError

ENGINES = ("vllm", "bare")
"""Engine profiles the planner knows; ``vllm`` is the default."""

DEFAULT_ENGINE = "vllm"

FALLBACK_GPU = "H100-SXM"
"""The GPU whose profile stands in for a GPU without its own."""


@dataclass(frozen=True)
class EngineProfile:
    """What one engine adds to the bare step model on one GPU (see module doc).

    Attributes:
        engine: engine name (``vllm``, ``bare``).
        version: engine version measured (empty for ``bare``).
        gpu: catalog GPU key the profile was fitted on.
        step_s: engine seconds per step; None keeps the calibration's.
        per_seq_s: engine seconds per running sequence per step; None keeps the calibration's.
        output_delay_s: seconds between a step's end and its tokens reaching the client.
        source: where the numbers come from (measurement, fit levels, data folder).
        fit: fit statistics (residuals, samples) for the record.
        attention: attention curves of the engine's own kernels (FA3 for vLLM on Hopper), fitted by
            :func:`planner.perf.engine_kernels.fit_engine_attention`; None keeps the calibration's.
        output_delay_steps: more hand-over latency in steps of the replica's current step time.
        idle_w: watts of an idle GPU that holds a live engine (measured between loads); it replaces the
            catalog's idle figure (a bare, unloaded board) for the profile's own GPU.
        gemm_bf16: the bf16 GEMM curve at the clock the engine runs its GEMMs at (full clock, not the
            profiler's power-throttled one: :func:`planner.perf.engine_kernels.fit_gemm_at_max_clock`).
        gemm_fp8: the fp8 GEMM curve at full clock, as ``gemm_bf16``, its fixed cost per GEMM raised by
            the engine's activation quantization (a kernel per fp8 linear layer, fitted on the engine's
            fp8 decode steps); None keeps the calibration's.
        kv_fp8_attn_slowdown: :attr:`planner.perf.calibration.Calibration.kv_fp8_attn_slowdown` fitted
            on the engine's fp8-KV decode steps (1.0: not measured).
        moe_compute_slowdown, moe_launch_s: the grouped expert GEMMs' terms
            (:attr:`planner.perf.calibration.Calibration.moe_compute_slowdown`, ``moe_launch_s``) fitted
            on the engine's MoE steps (1.0 and 0.0: not measured).
        throttle_exp: with a full-clock GEMM curve, how the step model throttles at the power limit
            (:attr:`planner.perf.calibration.Calibration.throttle_exp`), fitted on the engine's steps.
        power: power coefficients refitted on the engine's steps and NVML energy
            (:func:`planner.sim.engine_validate.fit_engine_power`); None keeps the calibration's.
        arch: architecture of the GPU it was measured on (catalog ``arch``): its kernel curves
            (attention, GEMM at full clock, throttling) carry only to GPUs of the same architecture.
        async_scheduling: the engine plans a step ahead (:attr:`planner.sim.config.EngineConfig.
            async_scheduling`), as the measured run's resolved configuration says.
    """

    engine: str
    version: str
    gpu: str
    step_s: float | None
    per_seq_s: float | None
    output_delay_s: float
    source: str
    fit: dict[str, Any]
    attention: AttentionCurve | None = None
    gemm_bf16: GemmCurve | None = None
    output_delay_steps: float = 0.0
    idle_w: float | None = None
    throttle_exp: float = 0.0
    power: PowerCoeffs | None = None
    async_scheduling: bool = False
    arch: str = ""
    gemm_fp8: GemmCurve | None = None
    kv_fp8_attn_slowdown: float = 1.0
    moe_compute_slowdown: float = 1.0
    moe_launch_s: float = 0.0

    def apply(self, cal: Calibration) -> Calibration:
        """``cal`` with this engine's per-step terms (the GPU-kernel curves untouched)."""
        out = cal
        if self.step_s is not None:
            out = replace(out, step_s=self.step_s)
        if self.per_seq_s is not None:
            out = replace(out, per_seq_s=self.per_seq_s)
        if self.attention is not None:
            out = replace(out, attention=self.attention)
        if self.gemm_bf16 is not None:
            out = replace(out, gemm_bf16=self.gemm_bf16, throttle_exp=self.throttle_exp)
        if self.gemm_fp8 is not None:
            out = replace(out, gemm_fp8=self.gemm_fp8)
        if self.kv_fp8_attn_slowdown != 1.0:
            out = replace(out, kv_fp8_attn_slowdown=self.kv_fp8_attn_slowdown)
        if self.moe_compute_slowdown != 1.0 or self.moe_launch_s != 0.0:
            out = replace(out, moe_compute_slowdown=self.moe_compute_slowdown, moe_launch_s=self.moe_launch_s)
        if self.power is not None and self.gpu == cal.gpu:
            out = replace(out, power=self.power)
        return out

    def gpu_spec(self, gpu: GPUSpec) -> GPUSpec:
        """``gpu`` with this engine's measured idle power, where it was measured on that GPU."""
        if self.idle_w is not None and self.gpu == gpu.name:
            return replace(gpu, idle_w=self.idle_w)
        return gpu

    def for_gpu(self, gpu: GPUSpec) -> EngineProfile:
        """This profile as it applies to ``gpu``: whole on the GPU it was measured on or one of the same
        architecture; on another architecture only its engine terms (step time, hand-over, scheduling),
        since its kernels' curves describe other silicon (FA3 and these GEMM fractions are Hopper's)."""
        if gpu.name == self.gpu or (self.arch and self.arch == gpu.arch):
            return self
        engine_only = replace(self, attention=None, gemm_bf16=None, gemm_fp8=None, throttle_exp=0.0,
                              kv_fp8_attn_slowdown=1.0, moe_compute_slowdown=1.0, moe_launch_s=0.0)
        if engine_only == self:
            return self
        return replace(engine_only,
                       source=f"{self.source}; kernel curves not carried ({self.arch or 'unknown'} -> "
                              f"{gpu.arch or 'unknown'} architecture)")

    def describe(self) -> str:
        """One line for reports: which engine model the numbers rest on, and where it comes from."""
        if self.engine == "bare":
            return ("engine: bare step model (profiler's layer stack, ~2 ms/step; not fitted to a serving "
                    "engine)")
        return (f"engine: {self.engine} {self.version} profile ({self.source}; held-out errors: "
                f"fleetwise bench replay --validate --engine {self.engine})")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


BARE = EngineProfile(
    engine="bare",
    version="",
    gpu="",
    step_s=None,
    per_seq_s=None,
    output_delay_s=0.0,
    source="the calibration's own step overhead (bare torch layer stack), no hand-over latency",
    fit={},
)


def engine_perf_inputs(
    engine: str, gpu: GPUSpec, *, profile_file: str | Path | None = None,
    calibration_dir: str | Path | None = None, correction: Correction | None = None,
) -> tuple[EngineProfile, Calibration, GPUSpec]:
    """What a replay of ``engine`` on ``gpu`` needs: the profile, the calibration with it applied, and
    the GPU spec with its idle power (the one place the CLI, reports and dashboard get them from), with a
    cluster's ``correction`` (:mod:`planner.perf.cluster_correction`) applied when given.

    ``profile_file`` (a user's own profile) overrides everything; ``calibration_dir`` is the ``--out`` of
    ``fleetwise profile --engine vllm`` (its ``engines/<engine>/<GPU>.json`` is used when present).
    """
    own = profile_path(engine, gpu.name, Path(calibration_dir) / "engines") if calibration_dir else None
    if profile_file:
        prof = read_engine_profile(profile_file)
    elif own is not None and engine != "bare" and own.is_file():
        prof = read_engine_profile(own)
    else:
        prof = load_engine_profile(engine, gpu.name)
    prof = prof.for_gpu(gpu)
    cal, spec = prof.apply(resolve_calibration(gpu)), prof.gpu_spec(gpu)
    if correction is not None:
        spec, cal = correction.apply(spec, cal)
    return prof, cal, spec


def engines_dir() -> Path:
    return Path(__file__).resolve().parent / "data" / "engines"


def profile_path(engine: str, gpu_key: str, root: Path | None = None) -> Path:
    return (root or engines_dir()) / engine / f"{gpu_key}.json"


def load_engine_profile(engine: str, gpu_key: str, *, root: Path | None = None) -> EngineProfile:
    """The shipped profile of ``engine`` on ``gpu_key`` (or on :data:`FALLBACK_GPU`, said in ``source``).

    Raises:
        InputError: unknown engine, or no profile for it at all.
    """
    if engine == "bare":
        return BARE
    if engine not in ENGINES:
        raise InputError(
            f"unknown engine {engine!r}", field="engine", expected="one of " + ", ".join(ENGINES)
        )
    path = profile_path(engine, gpu_key, root)
    fallback = False
    if not path.is_file():
        path = profile_path(engine, FALLBACK_GPU, root)
        fallback = True
    if not path.is_file():
        raise InputError(
            f"no {engine} engine profile",
            path=str(path),
            expected="a profile fitted by `fleetwise profile --engine vllm`",
        )
    prof = read_engine_profile(path)
    if fallback:
        prof = replace(prof, source=f"{prof.source}; measured on {prof.gpu}, applied to {gpu_key} unmeasured")
    return prof


def read_engine_profile(path: str | Path) -> EngineProfile:
    """A profile from its JSON file.

    Raises:
        InputError: unreadable file or a missing/negative field.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"unreadable engine profile ({exc})", path=str(p)) from None
    try:
        prof = EngineProfile(
            engine=str(doc["engine"]),
            version=str(doc.get("version", "")),
            gpu=str(doc["gpu"]),
            step_s=None if doc.get("step_s") is None else float(doc["step_s"]),
            per_seq_s=None if doc.get("per_seq_s") is None else float(doc["per_seq_s"]),
            output_delay_s=float(doc["output_delay_s"]),
            source=str(doc.get("source", "")),
            fit=dict(doc.get("fit", {})),
            attention=None if doc.get("attention") is None else AttentionCurve(**doc["attention"]),
            gemm_bf16=None if doc.get("gemm_bf16") is None else GemmCurve(**doc["gemm_bf16"]),
            output_delay_steps=float(doc.get("output_delay_steps", 0.0)),
            idle_w=None if doc.get("idle_w") is None else float(doc["idle_w"]),
            throttle_exp=float(doc.get("throttle_exp", 0.0)),
            power=None if doc.get("power") is None else PowerCoeffs(**doc["power"]),
            async_scheduling=bool(doc.get("async_scheduling", False)),
            arch=str(doc.get("arch", "")),
            gemm_fp8=None if doc.get("gemm_fp8") is None else GemmCurve(**doc["gemm_fp8"]),
            kv_fp8_attn_slowdown=float(doc.get("kv_fp8_attn_slowdown", 1.0)),
            moe_compute_slowdown=float(doc.get("moe_compute_slowdown", 1.0)),
            moe_launch_s=float(doc.get("moe_launch_s", 0.0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"engine profile incomplete ({exc})",
            path=str(p),
            expected="engine, gpu, step_s, per_seq_s, output_delay_s",
        ) from None
    for name in ("step_s", "per_seq_s", "output_delay_s", "output_delay_steps", "idle_w", "throttle_exp"):
        v = getattr(prof, name)
        if v is not None and not v >= 0.0:
            raise InputError(f"{name} must be >= 0", path=str(p), field=name, expected="seconds >= 0")
    return prof


def write_engine_profile(prof: EngineProfile, path: str | Path) -> None:
    """Write ``prof`` as JSON, atomically."""
    write_text_atomic(path, json.dumps(prof.as_dict(), indent=1) + "\n")
