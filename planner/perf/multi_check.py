"""The multi-GPU parts of the model against the multi-GPU measurements (``fleetwise profile --multi``).

Three checks, all from shipped data:

* collectives: the fitted two-protocol alpha-beta model per operation and GPU count, plus a held-out
  check (refit on the smaller groups, predict the largest);
* tensor-parallel steps: whole Llama-3.1-8B/70B steps at TP 2 and 4 predicted by
  :func:`planner.perf.build_replica_perf` with the GPU's calibration. Nothing in those predictions is
  fitted on these steps: the single-GPU operators come from the single-GPU profile and the all-reduce
  from the collectives, so every row is held out;
* expert parallelism: the two all-to-alls of a DeepSeek-V3-shaped MoE layer (dispatch and combine)
  predicted from the all-to-all fit, against the measured dispatch + combine time. The measured
  dispatch also holds the router, top-k, sort and the split-size exchange (a host sync), which the
  model books elsewhere, so this row shows how much of the layer's communication time the
  collective model explains rather than a pass/fail number.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from planner.catalog.schema import Catalog, GPUSpec
from planner.perf import comm
from planner.perf.api import Parallelism
from planner.perf.calibration import Calibration
from planner.perf.model import build_replica_perf

TP_TARGET_PCT = 10.0
COMM_TARGET_PCT = 10.0


def load_tp_steps(folder: Path) -> pl.DataFrame | None:
    """``tp_steps.parquet`` of a validation folder, or None."""
    path = folder / "tp_steps.parquet"
    return pl.read_parquet(path) if path.is_file() else None


def tp_step_predictions(steps: pl.DataFrame, cat: Catalog, gpu: GPUSpec, cal: Calibration) -> pl.DataFrame:
    """Each measured TP step with the model's prediction and the signed error (%)."""
    parts = []
    for (model, tp), g in steps.group_by(["model", "tp"], maintain_order=True):
        perf = build_replica_perf(cat.model(str(model)), gpu, Parallelism(tp=int(tp)),  # type: ignore[call-overload]
                                  calibration=cal, min_kv_tokens=0)
        pred = perf.step_time_s(g["prefill_tokens"].cast(pl.Float64).to_numpy(),
                                g["prefill_pairs"].cast(pl.Float64).to_numpy(),
                                g["decode_seqs"].cast(pl.Float64).to_numpy(),
                                g["decode_kv"].cast(pl.Float64).to_numpy())
        parts.append(g.with_columns(pl.Series("pred_s", np.asarray(pred, dtype=np.float64))))
    out = pl.concat(parts)
    return out.with_columns(((pl.col("pred_s") / pl.col("time_s") - 1.0) * 100.0).alias("err_pct"))


def tp_step_summary(pred: pl.DataFrame, *, mode: str = "graph") -> pl.DataFrame:
    """Median / max absolute error per model and TP degree, for one timing mode.

    ``graph`` (the default) is the GPU time without host launch gaps: what the model predicts and
    what engines that replay CUDA graphs see; eager prefill rows show the launch-bound small steps.
    """
    sel = pred.filter(pl.col("mode") == mode)
    return (sel.group_by(["model", "tp"], maintain_order=True)
            .agg(pl.len().alias("n"), pl.col("err_pct").abs().median().alias("median_ape"),
                 pl.col("err_pct").abs().max().alias("max_ape"), pl.col("err_pct").median().alias("bias_pct"))
            .sort(["model", "tp"]))


def comm_table(coll: pl.DataFrame, cal: Calibration, link_gbps: float) -> pl.DataFrame:
    """Per (op, GPUs): error of the calibration's collective model (train), plus the held-out refit."""
    fits = {op: cal.comm(op) for op in comm.OPS}
    train = comm.error_table(coll, fits, link_gbps).with_columns(pl.lit("fit on all").alias("split"))
    top = int(coll["gpus"].max())  # type: ignore[arg-type]
    small = coll.filter(pl.col("gpus") < top)
    held = []
    if small.height:
        refit = {op: comm.fit(small, link_gbps, op) for op in comm.OPS
                 if small.filter(pl.col("op") == op).height}
        held_rows = comm.error_table(coll.filter(pl.col("gpus") == top), refit, link_gbps)
        held.append(held_rows.with_columns(pl.lit(f"fit on <{top} GPUs").alias("split")))
    return pl.concat([train, *held])


def ep_table(ep: pl.DataFrame, cat: Catalog, cal: Calibration, gpu: GPUSpec) -> pl.DataFrame:
    """Measured dispatch + combine per MoE layer vs two all-to-alls of the model (bf16 activations)."""
    fit = cal.comm("all_to_all")
    hidden = np.array([cat.model(m).hidden_size for m in ep["model"].to_list()], dtype=np.float64)
    bytes_per_rank = (ep["tokens_per_gpu"] * ep["top_k"]).cast(pl.Float64).to_numpy() * hidden * 2.0
    pred = 2.0 * comm.predict("all_to_all", ep["ep"].cast(pl.Float64).to_numpy(), bytes_per_rank, fit,
                              gpu.link_gbps)
    meas = (ep["dispatch_s"] + ep["combine_s"]).to_numpy()
    return ep.select("ep", "tokens_per_gpu", "expert_kernel").with_columns(
        pl.Series("measured_a2a_ms", meas * 1e3), pl.Series("model_a2a_ms", pred * 1e3),
        pl.Series("explained_pct", pred / meas * 100.0), (ep["total_s"] * 1e3).alias("layer_ms"))
