"""Many layouts at once: the solvers' entry to the per-node model.

A solver holds a long candidate table, one row per (GPU type, TP, PP, EP, dtypes, clock); it wants, for
each row, whether the layout fits and, at a few reference batch compositions, its step time, throughput
and power. :func:`evaluate_layouts` answers with one polars frame in *long* form: one row per
(candidate, composition), the candidate's columns first, so the solver can filter, pivot or join it.

Infeasible candidates are not errors here: they come back with ``feasible = False`` and the reason
(the same text :func:`planner.perf.build_replica_perf` would raise), because a search space is expected
to contain layouts that do not fit.

Cost: building a layout folds it into a parameter vector (tens of microseconds), then every composition
is one call of the numba kernel; a few thousand layouts take a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import polars as pl
from numpy.typing import NDArray

from planner.catalog.schema import Catalog, ModelSpec
from planner.perf import kernel as kn
from planner.perf.api import Parallelism
from planner.perf.calibration import Calibration, resolve_calibration
from planner.perf.model import build_replica_perf
from traces.errors import InputError

CANDIDATE_COLUMNS: dict[str, pl.DataType] = {
    "gpu": pl.String(), "tp": pl.Int64(), "pp": pl.Int64(), "ep": pl.Int64(),
}
"""Required columns of a candidate table; optional: ``weight_dtype``, ``kv_dtype`` (str, default bf16),
``sm_clock_mhz`` (float, null = the GPU's maximum), ``dp_attention`` (bool, default False)."""


def enumerate_layouts(model: ModelSpec, gpus: Iterable[str], *, max_gpus: int = 8,
                      dtypes: Sequence[str] = ("bf16",)) -> pl.DataFrame:
    """Every power-of-two TP x PP (x EP for MoE) layout up to ``max_gpus`` GPUs per replica; for MoE
    models also DP attention over each single-stage layout whose experts span all its GPUs (ep == tp).

    >>> from planner.catalog import load_catalog
    >>> cat = load_catalog()
    >>> enumerate_layouts(cat.model("Llama-3.1-8B"), ["H100-SXM"], max_gpus=4).height
    6
    """
    rows: list[dict[str, object]] = []
    pows = [1 << i for i in range(max_gpus.bit_length()) if (1 << i) <= max_gpus]
    for g in gpus:
        for tp in pows:
            for pp in pows:
                if tp * pp > max_gpus:
                    continue
                eps = [e for e in pows if e <= tp] if model.moe is not None else [1]
                for ep in eps:
                    dpa = (False, True) if model.moe is not None and ep == tp >= 2 and pp == 1 else (False,)
                    for dp_attention in dpa:
                        for dt in dtypes:
                            rows.append({"gpu": g, "tp": tp, "pp": pp, "ep": ep, "weight_dtype": dt,
                                         "dp_attention": dp_attention})
    return pl.DataFrame(rows, schema={**CANDIDATE_COLUMNS, "weight_dtype": pl.String(),
                                      "dp_attention": pl.Boolean()})


def evaluate_layouts(
    model: ModelSpec,
    candidates: pl.DataFrame,
    compositions: NDArray[np.float64],
    *,
    catalog: Catalog,
    calibrations: dict[str, Calibration] | None = None,
    mem_fraction: float = 0.9,
    expert_imbalance: float = 1.0,
) -> pl.DataFrame:
    """Evaluate every candidate layout at every reference batch composition.

    Args:
        model: the model being served.
        candidates: table with columns ``gpu, tp, pp, ep`` and optionally ``weight_dtype``, ``kv_dtype``,
            ``sm_clock_mhz``.
        compositions: array of shape ``(k, 4)``: ``prefill_tokens, prefill_pairs, decode_seqs,
            decode_kv`` per reference step.
        catalog: where GPU names are looked up.
        calibrations: per GPU name, overriding the shipped calibration.
        mem_fraction: HBM share the engine may use.
        expert_imbalance: MoE max/mean expert load.

    Returns:
        Long frame: candidate columns, ``composition`` (row of ``compositions``), ``feasible``,
        ``reason`` (null when feasible), ``gpus``, ``weights_gb`` and ``kv_capacity_tokens`` per GPU,
        ``step_s``, ``tokens_per_s`` (prefill + decode tokens per second per replica), ``power_w``
        (per GPU). Infeasible rows have nulls in the numeric results.

    Raises:
        InputError: missing columns, or ``compositions`` not of shape ``(k, 4)``.

    >>> from planner.catalog import load_catalog
    >>> cat = load_catalog()
    >>> m = cat.model("Llama-3.1-8B")
    >>> out = evaluate_layouts(m, enumerate_layouts(m, ["H100-SXM"]), np.array([[0, 0, 64, 65536.0]]),
    ...                        catalog=cat)
    >>> out.filter(pl.col("tp") == 1, pl.col("pp") == 1)["feasible"].to_list()
    [True]
    """
    missing = [c for c in CANDIDATE_COLUMNS if c not in candidates.columns]
    if missing:
        raise InputError(f"candidate table lacks column {missing[0]!r}", field=missing[0],
                         expected="columns gpu, tp, pp, ep")
    comp = np.asarray(compositions, dtype=np.float64)
    if comp.ndim != 2 or comp.shape[1] != 4:
        raise InputError(f"compositions have shape {comp.shape}", field="compositions",
                         expected="(k, 4): prefill_tokens, prefill_pairs, decode_seqs, decode_kv")
    cals = dict(calibrations or {})
    cols = candidates.to_dict(as_series=False)
    n = candidates.height
    k = comp.shape[0]
    feasible = np.zeros(n, dtype=bool)
    reason: list[str | None] = [None] * n
    gpus_n = np.zeros(n, dtype=np.int64)
    weights_gb = np.full(n, np.nan)
    kv_cap = np.zeros(n, dtype=np.int64)
    step = np.full((n, k), np.nan)
    power = np.full((n, k), np.nan)
    out = np.zeros(kn.OUT_SIZE)
    for i in range(n):
        gname = str(cols["gpu"][i])
        par = Parallelism(tp=int(cols["tp"][i]), pp=int(cols["pp"][i]), ep=int(cols["ep"][i]),
                          dp_attention=bool(cols["dp_attention"][i]) if "dp_attention" in cols else False)
        gpus_n[i] = par.gpus
        try:
            gpu = catalog.gpu(gname)
            if gpu.name not in cals:
                cals[gpu.name] = resolve_calibration(gpu)
            clock = cols["sm_clock_mhz"][i] if "sm_clock_mhz" in cols else None
            perf = build_replica_perf(
                model, gpu, par,
                weight_dtype=str(cols["weight_dtype"][i]) if "weight_dtype" in cols else "bf16",
                kv_dtype=str(cols["kv_dtype"][i]) if "kv_dtype" in cols else "bf16",
                sm_clock_mhz=None if clock is None else float(clock), calibration=cals[gpu.name],
                mem_fraction=mem_fraction, expert_imbalance=expert_imbalance)
        except InputError as exc:
            reason[i] = exc.message
            continue
        feasible[i] = True
        weights_gb[i] = perf.memory.weights / 1e9
        kv_cap[i] = perf.kv_capacity_tokens
        for j in range(k):
            t = kn.step_eval(perf.params, comp[j, 0], comp[j, 1], comp[j, 2], comp[j, 3], out)
            step[i, j] = t
            power[i, j] = kn.power_of(perf.params, t, out)
    idx = np.repeat(np.arange(n), k)
    tokens = np.tile(comp[:, 0] + comp[:, 2], n)
    st = step.ravel()
    res = candidates[idx.tolist()].with_columns(
        pl.Series("composition", np.tile(np.arange(k), n)),
        pl.Series("feasible", feasible[idx]),
        pl.Series("reason", [reason[i] for i in idx], dtype=pl.String()),
        pl.Series("gpus", gpus_n[idx]),
        pl.Series("weights_gb", weights_gb[idx]).fill_nan(None),
        pl.Series("kv_capacity_tokens", kv_cap[idx]),
        pl.Series("step_s", st).fill_nan(None),
        pl.Series("tokens_per_s", tokens / st).fill_nan(None),
        pl.Series("power_w", power.ravel()).fill_nan(None),
    )
    return res
