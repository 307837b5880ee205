"""Calibration of the per-node model: efficiency curves, overheads and power coefficients as data.

A :class:`Calibration` holds every number the roofline model needs beyond the catalog's peaks. The
efficiency terms are *fractions of the catalog peak* (FLOP/s or bytes/s), so a calibration fitted on one
GPU transfers to another GPU by construction: the achieved FLOP/s is ``fraction * peak`` of *that* GPU.
Only watts need rescaling (see :func:`for_gpu`).

Where a calibration comes from, in order (:func:`resolve_calibration`):

1. the ``calibration`` argument given to :func:`planner.perf.build_replica_perf`;
2. ``planner/perf/data/calibration/<GPU key>.json`` shipped for that GPU (fitted by
   ``fleetwise calibrate`` from the measured profiles in ``data/profiles/<GPU key>/``);
3. the H100-SXM calibration rescaled to the GPU's catalog idle and TDP (``source`` says so);
4. :data:`PRIOR`, an explicitly *uncalibrated* starting point (also the fitter's initial guess).

Each curve and its parameters:

GEMM (per dtype)
    ``t = (tc**p + tm**p) ** (1/p)`` with
    ``tc = 2*M*N*K / (peak * ec_max * M/(M+m_half) * W/(W+w_half))`` (``W = N*K`` weight elements: small
    matrices and few rows cannot fill the SMs) and ``tm = bytes / (bw * em_max)``. ``p`` softens the
    roofline corner (large ``p`` is the classic ``max``).
Attention prefill
    ``(tc**p + tm**p + launch_s**p) ** (1/p)`` with ``tc = flops / (peak * ec)``, ``tm = bytes / (bw * em)``
    (bytes: queries and outputs of the new tokens, keys and values of the whole context)
    and the achieved compute fraction ``ec = prefill_ec * x/(x+x_half) * W/(W+w_half) * bal(W)``:
    ``x`` is the average context a query attends to (``pairs / tokens``: short rows leave the
    FlashAttention key loop short), ``W = heads * tokens / 128`` the number of 128-query tiles (CTAs) to
    spread over the SMs, and ``bal = x/c + (1 - x/c) * W/(W+bal_half)`` the causal load balance: with
    few tiles the tile that sees all ``c`` keys is the critical path (``x/c`` is the mean over the
    longest tile's work, 1/2 for a square causal block), with many tiles the SMs even it out.
Attention decode
    ``launch_s + (kv + seqs * l_half) * max(bytes_per_kv / (bw * em_u), flops_per_kv / (peak * ec))``:
    bound by reading the KV cache, affine in the KV tokens read. The work units are (sequence, KV
    head) pairs ``U = seqs * kv_heads``: ``em_u = (em**-q + (U*u)**-q) ** (-1/q)`` where ``u`` is what
    one unit's stream achieves (split-KV spreads one unit over several SMs, but not all of them);
    ``em`` is ``decode_em`` while ``U < split_units`` (split-KV regime, the SM count of the profiled
    GPU) and ``decode_em_nosplit`` from there on (one CTA streams a unit's whole cache: the kernel
    reaches a lower fraction of peak; the measured H100 drop is 0.91 -> 0.79). ``l_half`` tokens of
    per-unit work (tile fill, split combine) make short caches read at a lower rate. Absorbed MLA has
    one latent "head" shared by all query heads and is bound by ``flops_per_kv / (peak * ec)``.
Elementwise (norms, RoPE, SiLU*mul, residual adds, embedding gather)
    per kernel ``soft_sum(bytes/(bw * em), ew_launch_s, ew_overlap)``, ``em`` per operator kind
    (pointwise adds ``ew_em``, SiLU*mul ``ew_em_silu``, RoPE ``ew_em_rope``, RMSNorm ``ew_em_norm``
    times ``T/(T+ew_norm_rows_half)``: one row per CTA, so few rows leave the SMs idle).
Kernel overheads (``launch_s`` of each curve, ``ew_launch_s``)
    the profile replays small operators from CUDA graphs (meta.json, "why graphs"), so these are the
    per-kernel GPU-side fixed costs (launch, ramp-up, tail), not host dispatch; they apply inside a
    step too, where engines replay graphs. GEMMs and elementwise kernels combine theirs softly:
    ``t + launch**2 / (launch + overlap * t)`` (no powers: the step kernel is a hot loop).
Collectives
    alpha-beta: ``collective_base_s`` per collective, ``alpha_s`` per ring hop (``2 (tp-1)`` for an
    all-reduce, ``ep-1`` for an all-to-all) plus bytes over ``link_eff * link bandwidth``. A single-GPU
    profile cannot measure them: the prior's 6 us + 2 us/hop put an 8-GPU NVLink all-reduce of a small
    message near 34 us, the order of NCCL's small-message latency on NVSwitch systems (an assumption,
    stated as such in every calibration's ``source``).
Step overhead
    ``step_s + per_seq_s * sequences``: scheduling, sampling, Python; the engine term.
Power (per GPU, averaged over a step)
    ``idle_w + r**clock_exp * (busy_w * busy + compute_w * Uc) + mem_w * Um``, clipped at TDP, where
    ``busy`` is the fraction of the step the GPU runs kernels, ``Uc`` the achieved fraction of the (clocked)
    compute peak, ``Um`` the achieved fraction of peak memory bandwidth and ``r`` the SM clock over its
    maximum. Memory-system power does not scale with the SM clock.
Clock
    compute peaks scale with ``r``; bandwidth-bound work slows by ``1 + mem_clock_sensitivity*(1/r - 1)``.
    With ``throttle_exp`` set, a step that would draw more than the board limit runs at the clock that
    holds it (:func:`planner.perf.kernel.step_eval`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from planner.catalog.schema import GPUSpec
from traces.errors import InputError

REFERENCE_GPU = "H100-SXM"
"""The GPU whose measured profile the defaults for every other GPU are derived from."""

POLCA_POWER_CUT = 0.20
POLCA_PERF_LOSS = 0.06
"""POLCA (Patel et al., arXiv 2308.12908 / ASPLOS'24): locking the GPU frequency cuts peak power by about
20 % for a 5-7 % performance loss on inference (algorithms-and-numbers.md, area A1, tagged [S]). We anchor
the clock exponent of the compute power term on it: a compute-bound step at TDP loses 6 % speed (clock at
94 %) and draws 20 % less peak power. No clock sweep is measured (the profiler never changes clocks)."""

MEM_CLOCK_SENSITIVITY = 0.1
"""Memory-bound work slows by 10 % of what compute-bound work does when the SM clock drops. Anchored on
arXiv 2605.11999 (algorithms-and-numbers.md A1, [V]): decode latency is nearly flat in the SM clock."""


def polca_clock_exponent(tdp_w: float, idle_w: float) -> float:
    """Exponent ``g`` such that a compute-bound step at TDP meets the POLCA anchor.

    ``idle + (tdp - idle) * r**g = (1 - cut) * tdp`` at ``r = 1 - perf_loss``.

    >>> round(polca_clock_exponent(700.0, 70.0), 2)
    4.06
    """
    frac = 1.0 - POLCA_POWER_CUT * tdp_w / (tdp_w - idle_w)
    return math.log(max(frac, 1e-3)) / math.log(1.0 - POLCA_PERF_LOSS)


@dataclass(frozen=True)
class GemmCurve:
    """Achieved fraction of peak for a GEMM of ``M`` rows and an ``N x K`` weight (see module doc)."""

    ec_max: float
    m_half: float
    w_half: float
    em_max: float
    p: float
    launch_s: float
    overlap: float = 0.0
    """How the fixed cost combines with streaming time: ``t + launch**2 / (launch + overlap * t)``
    (0 adds them; larger values hide more of it behind long kernels). See
    :func:`planner.perf.kernel.soft_sum`."""


@dataclass(frozen=True)
class AttentionCurve:
    """Prefill and decode attention efficiencies (see module doc)."""

    prefill_ec: float
    prefill_x_half: float
    prefill_em: float
    prefill_launch_s: float
    decode_em: float
    decode_ec: float
    decode_launch_s: float
    prefill_w_half: float = 0.0
    """128-query tiles at which the SMs are half filled."""
    prefill_bal_half: float = 0.0
    """Tiles at which causal load imbalance is half evened out (0: always balanced)."""
    prefill_p: float = 16.0
    """Soft-max exponent between compute and memory time."""
    decode_em_nosplit: float = 0.0
    """Bandwidth fraction once units reach ``decode_split_units`` (0: same as ``decode_em``)."""
    decode_split_units: float = 1.0e9
    """Units (sequence x KV head) from which the kernel stops splitting the KV sequence."""
    decode_unit_frac: float = 1.0
    """Fraction of peak bandwidth one unit's stream reaches on its own."""
    decode_q: float = 8.0
    """Sharpness of the corner between per-unit and whole-GPU bandwidth."""
    decode_l_half: float = 0.0
    """Per-unit fixed work in KV tokens (tile fill, split-KV combine)."""


@dataclass(frozen=True)
class CommFit:
    """One collective's time model over NVLink, two NCCL protocols (NCCL runs the faster one).

    ``t = hops * alpha_s + min(base_s + x / (ll_eff * link), simple_base_s + x / (simple_eff * link))``
    with ``x`` the bytes each link carries. The low-latency protocol starts fast and moves data slowly,
    the simple one the other way round: one alpha-beta line misses the middle sizes by 20-40 %.

    Attributes:
        base_s: fixed cost of a low-latency-protocol call.
        alpha_s: cost per ring latency step.
        ll_eff: low-latency protocol's fraction of the link bandwidth.
        simple_base_s: fixed cost of a simple-protocol call.
        simple_eff: simple protocol's fraction of the link bandwidth.
    """

    base_s: float
    alpha_s: float
    ll_eff: float
    simple_base_s: float
    simple_eff: float


@dataclass(frozen=True)
class PowerCoeffs:
    """Per-GPU power model coefficients, watts (see module doc)."""

    idle_w: float
    busy_w: float
    compute_w: float
    mem_w: float
    clock_exp: float
    tdp_w: float
    """TDP of the GPU the coefficients were fitted on (to rescale them to another GPU)."""


@dataclass(frozen=True)
class Calibration:
    """Everything the model needs beyond the catalog peaks.

    Attributes:
        gemm_bf16: GEMM curve for bf16 weights.
        gemm_fp8: GEMM curve for fp8 weights (relative to the fp8 peak).
        attention: attention curves.
        ew_em: achieved fraction of peak bandwidth for pointwise operators (residual adds, gathers).
        ew_launch_s: fixed GPU cost of one elementwise kernel (graph-replayed).
        ew_overlap: how much of that cost long kernels hide (see :class:`GemmCurve`).
        kernel_s: extra time per kernel boundary inside a step beyond the operators' own fixed costs;
            on one model's steps it cannot be told apart from ``step_s`` (the kernel count is fixed),
            so the fit keeps it 0 and ``step_s`` carries it.
        step_s: fixed per-step overhead.
        per_seq_s: per-sequence per-step overhead (sampling, bookkeeping).
        alpha_s: collective latency per ring hop.
        collective_base_s: fixed latency of one collective (launch, synchronisation).
        link_eff: achieved fraction of the catalog link bandwidth.
        mem_clock_sensitivity: see :data:`MEM_CLOCK_SENSITIVITY`.
        power: power coefficients.
        gpu: the GPU these numbers are for.
        source: where they came from (fitted file, rescaled from another GPU, prior).
        engine_step_s: extra per-step time of the validated serving engine (not applied by default:
            :func:`planner.perf.engine_check.with_engine_overhead`).
        engine_per_seq_s: extra per-sequence per-step time of that engine.
        engine: which engine those two were fitted on.
        holdout_errors: error summary of the fit on held-out shapes (informational).
        ew_em_silu: bandwidth fraction of SiLU*mul passes.
        ew_em_rope: bandwidth fraction of RoPE passes.
        ew_em_norm: bandwidth fraction of RMSNorm with many rows.
        ew_norm_rows_half: rows at which RMSNorm reaches half of ``ew_em_norm``.
    """

    gemm_bf16: GemmCurve
    gemm_fp8: GemmCurve
    attention: AttentionCurve
    ew_em: float
    ew_launch_s: float
    ew_overlap: float
    kernel_s: float
    step_s: float
    per_seq_s: float
    alpha_s: float
    collective_base_s: float
    link_eff: float
    mem_clock_sensitivity: float
    power: PowerCoeffs
    gpu: str
    source: str
    engine_step_s: float = 0.0
    engine_per_seq_s: float = 0.0
    engine: str = ""
    holdout_errors: dict[str, float] = field(default_factory=dict, compare=False, hash=False)
    ew_em_silu: float = 0.0
    ew_em_rope: float = 0.0
    ew_em_norm: float = 0.0
    ew_norm_rows_half: float = 0.0
    allreduce: CommFit | None = None
    alltoall: CommFit | None = None
    allgather: CommFit | None = None
    throttle_exp: float = 0.0
    """Exponent of dynamic power in the SM clock when a step holds the board at its power limit; 0: no
    throttling in the step model (curves fitted on power-throttled loops already carry it). Set by an
    engine profile whose GEMM curve is the unthrottled chip's (:mod:`planner.perf.engine_profile`)."""
    kv_fp8_attn_slowdown: float = 1.0
    moe_compute_slowdown: float = 1.0
    """How far below the dense GEMM curve's compute rate grouped expert GEMMs run (1: as dense; 1.3: at
    1/1.3 of it); their memory-bound (small-batch) time is unchanged. Set by an engine profile."""
    moe_launch_s: float = 0.0
    """Fixed seconds per grouped expert GEMM launch beyond a dense GEMM's (the engine's routing kernels:
    top-k, token sort and permutation), two launches per MoE layer. Set by an engine profile."""
    """How much slower than the bf16 kernel decode attention streams an fp8 KV cache, per byte (1: as
    fast, so fp8 halves its time; 2: fp8 saves no time). Engines dequantize fp8 KV in the attention
    kernel; an engine profile sets it from the engine's own fp8 steps."""

    def comm(self, op: str) -> CommFit:
        """The fitted model of ``op`` (``all_reduce``, ``all_to_all``, ``all_gather``), else the prior's
        single alpha-beta line (``collective_base_s``, ``alpha_s``, ``link_eff``) as a CommFit."""
        fitted = {"all_reduce": self.allreduce, "all_to_all": self.alltoall, "all_gather": self.allgather}[op]
        if fitted is not None:
            return fitted
        return CommFit(self.collective_base_s, self.alpha_s, self.link_eff, self.collective_base_s,
                       self.link_eff)

    def ew_fraction(self, kind: str) -> float:
        """Bandwidth fraction of one elementwise kind (``add``, ``silu_mul``, ``rope``, ``rmsnorm``);
        kinds without their own fitted value fall back to ``ew_em``."""
        own = {"silu_mul": self.ew_em_silu, "rope": self.ew_em_rope,
               "rmsnorm": self.ew_em_norm}.get(kind, 0.0)
        return own if own > 0.0 else self.ew_em

    def to_json(self) -> str:
        """Serialise (stable key order) for shipping as data."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


_PRIOR_GEMM = GemmCurve(ec_max=0.75, m_half=48.0, w_half=2.0e6, em_max=0.85, p=4.0, launch_s=4e-6,
                        overlap=0.1)

PRIOR = Calibration(
    gemm_bf16=_PRIOR_GEMM,
    gemm_fp8=replace(_PRIOR_GEMM, ec_max=0.65),
    attention=AttentionCurve(
        prefill_ec=0.4, prefill_x_half=64.0, prefill_em=0.9, prefill_launch_s=1e-5,
        decode_em=0.7, decode_ec=0.4, decode_launch_s=1e-5, prefill_w_half=4.0, prefill_bal_half=500.0,
        prefill_p=1.5, decode_em_nosplit=0.7, decode_split_units=132.0, decode_unit_frac=0.1, decode_q=2.0,
        decode_l_half=30.0,
    ),
    ew_em=0.6,
    ew_launch_s=2e-6,
    ew_overlap=0.1,
    kernel_s=0.0,
    step_s=1e-3,
    per_seq_s=1e-5,
    alpha_s=2e-6,
    collective_base_s=6e-6,
    link_eff=0.8,
    mem_clock_sensitivity=MEM_CLOCK_SENSITIVITY,
    power=PowerCoeffs(idle_w=70.0, busy_w=100.0, compute_w=550.0, mem_w=250.0,
                      clock_exp=polca_clock_exponent(700.0, 70.0), tdp_w=700.0),
    gpu=REFERENCE_GPU,
    source="prior: uncalibrated starting values (fitter's initial guess), not measured",
    ew_em_silu=0.55,
    ew_em_rope=0.6,
    ew_em_norm=0.65,
    ew_norm_rows_half=300.0,
)
"""Uncalibrated starting point; used only when no calibration file ships at all."""


_COMM_FIELDS = ("allreduce", "alltoall", "allgather")


def _rest(d: dict[str, Any]) -> dict[str, Any]:
    """The flat fields, with the collectives' nested records turned into :class:`CommFit`."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k in _COMM_FIELDS:
            out[k] = CommFit(**v) if v is not None else None
        elif k not in {"gemm_bf16", "gemm_fp8", "attention", "power"}:
            out[k] = v
    return out


def _from_dict(d: dict[str, Any], path: str) -> Calibration:
    try:
        return Calibration(
            gemm_bf16=GemmCurve(**d["gemm_bf16"]),
            gemm_fp8=GemmCurve(**d["gemm_fp8"]),
            attention=AttentionCurve(**d["attention"]),
            power=PowerCoeffs(**d["power"]),
            **_rest(d),
        )
    except (KeyError, TypeError) as exc:
        raise InputError(f"malformed calibration ({exc})", path=path,
                         expected="a file written by fleetwise calibrate") from None


def calibration_dir() -> Path:
    """Folder of the shipped calibration files."""
    return Path(str(resources.files("planner.perf"))) / "data" / "calibration"


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration JSON file.

    Raises:
        InputError: missing, not JSON or missing fields.
    """
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("calibration file not found", path=str(p)) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not JSON ({exc.msg})", path=str(p), row=exc.lineno) from None
    if not isinstance(raw, dict):
        raise InputError("top level must be an object", path=str(p))
    return _from_dict(raw, str(p))


def for_gpu(cal: Calibration, gpu: GPUSpec) -> Calibration:
    """Carry a calibration over to another GPU.

    Efficiencies are fractions of the catalog peaks and transfer unchanged; the power coefficients are
    rescaled by the ratio of dynamic ranges ``(tdp - idle)``, idle watts come from the catalog, and the
    clock exponent is re-anchored on POLCA for the new TDP/idle.
    """
    if cal.gpu == gpu.name:
        return cal
    pw = cal.power
    scale = (gpu.tdp_w - gpu.idle_w) / (pw.tdp_w - pw.idle_w)
    power = PowerCoeffs(idle_w=gpu.idle_w, busy_w=pw.busy_w * scale, compute_w=pw.compute_w * scale,
                        mem_w=pw.mem_w * scale, clock_exp=polca_clock_exponent(gpu.tdp_w, gpu.idle_w),
                        tdp_w=gpu.tdp_w)
    return replace(cal, power=power, gpu=gpu.name,
                   source=f"derived from {cal.gpu} ({cal.source}); efficiencies as fractions of "
                          f"{gpu.name}'s catalog peaks, power rescaled by its idle/TDP")


def is_measured(gpu: GPUSpec, folder: Path | None = None) -> bool:
    """Whether ``gpu`` has a calibration fitted on its own profile (else its numbers are derived from the
    reference GPU's, rescaled by datasheet ratios: :func:`resolve_calibration`)."""
    return ((folder if folder is not None else calibration_dir()) / f"{gpu.name}.json").is_file()


def resolve_calibration(gpu: GPUSpec, folder: Path | None = None) -> Calibration:
    """The calibration for ``gpu``: its shipped file, else the reference GPU's rescaled, else the prior.

    Args:
        gpu: the target GPU.
        folder: where calibration files live (default: the shipped ones).
    """
    root = folder if folder is not None else calibration_dir()
    own = root / f"{gpu.name}.json"
    if own.is_file():
        return load_calibration(own)
    ref = root / f"{REFERENCE_GPU}.json"
    base = load_calibration(ref) if ref.is_file() else PRIOR
    return for_gpu(base, gpu)
