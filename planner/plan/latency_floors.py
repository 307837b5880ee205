"""Why no plan exists, in numbers: the latency no candidate can beat even on an idle replica.

When scoring leaves nothing feasible, "no candidate meets the SLO" is true but useless; what a platform
engineer needs is which promise is physically out of reach and what would bring it back. A target is out
of reach when, on the fastest candidate for each request, more requests than the statistic allows miss it
with the replica to themselves: a prompt's prefill on an idle replica (its own chunks at the candidate's
token budget) for TTFT, one decode step at batch 1 for TPOT, and both for end to end. Queueing only adds to
these floors, so a target under them fails at any fleet size. The floors use the same performance model as
scoring (:func:`planner.perf.model.build_replica_perf` with the engine's calibration).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.typing import NDArray

from planner.catalog import GPUSpec, ModelSpec
from planner.perf.api import Parallelism
from planner.perf.engine_profile import engine_perf_inputs
from planner.perf.model import RooflinePerf, build_replica_perf
from solvers.capacity.problem import SLO, TargetKind
from traces.schema import RequestTrace

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Floor:
    """One target no candidate can meet.

    Attributes:
        kind: ttft, tpot or e2e.
        target_s: the target.
        statistic: what it holds at (``p99``, ``mean``...).
        floor_s: the floors' value at that statistic (the least target any fleet could meet).
        share_over: share of requests whose floor exceeds the target.
        worst: the request that shows it (``85,012-token prompt``) and its floor in words.
        best: the candidate with the lowest floor for that request.
    """

    kind: TargetKind
    target_s: float
    statistic: str
    floor_s: float
    share_over: float
    worst: str
    best: str

    def words(self) -> str:
        """The cause and the options, as the plan's notes print them."""
        name = {"ttft": "TTFT", "tpot": "TPOT", "e2e": "end-to-end"}[self.kind]
        options = {
            "ttft": "a TTFT target of at least {f}, an SLO class with a longer TTFT for the long prompts "
                    "(--slo-class), or larger tensor-parallel layouts and faster GPUs (--gpus)",
            "tpot": "a TPOT target of at least {f}, or faster GPUs, wider tensor parallelism or fp8 weights "
                    "(--precision all)",
            "e2e": "an end-to-end target of at least {f}, an SLO class for the long answers, or faster GPUs",
        }[self.kind].format(f=f"{self.floor_s:.3g} s at {self.statistic}")
        return (f"{name} {self.statistic} <= {self.target_s:.3g} s is out of reach on every candidate: "
                f"{self.share_over:.1%} of the requests miss it on an idle replica (e.g. {self.worst} on "
                f"{self.best}); options: {options}")


def latency_floors(trace: RequestTrace, model: ModelSpec, gpus: Sequence[GPUSpec], scored: pl.DataFrame,
                   slo: SLO, *, engine: str, expert_imbalance: float = 1.0) -> tuple[Floor, ...]:
    """The targets of ``slo`` that no candidate in ``scored`` can meet, fastest candidate per request.

    >>> from planner.catalog import load_catalog
    >>> from traces.default import default_trace
    >>> from solvers.capacity import ScoringOptions, score_gpu, length_mix
    >>> cat = load_catalog()
    >>> m, g = cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM")
    >>> tr = default_trace()
    >>> slo = SLO(ttft_s=0.001, tpot_s=0.1)
    >>> sc = score_gpu(m, g, length_mix(tr), ScoringOptions(slo=slo, max_gpus=2))
    >>> [f.kind for f in latency_floors(tr, m, [g], sc, slo, engine="bare")]
    ['ttft']
    """
    if not scored.height:
        return ()
    by_name = {g.name: g for g in gpus}
    layouts = scored.select("gpu", "tp", "pp", "ep", "dp_attention", "weight_dtype", "kv_dtype",
                            "max_batched_tokens", "role").unique().sort(pl.all())
    inp = trace.df["input_tokens"].cast(pl.Float64).to_numpy()
    out1 = np.maximum(trace.df["output_tokens"].cast(pl.Float64).to_numpy() - 1.0, 0.0)
    n = inp.size
    if n == 0:
        return ()
    prefill = np.full(n, np.inf)
    prefill_by = np.full(n, "", dtype=object)
    itl = np.inf
    itl_by = ""
    e2e = np.full(n, np.inf)
    e2e_by = np.full(n, "", dtype=object)
    cache: dict[tuple[object, ...], RooflinePerf] = {}
    for gpu, tp, pp, ep, dpa, wd, kd, tok, role in layouts.iter_rows():
        if gpu not in by_name:
            continue
        key = (gpu, tp, pp, ep, dpa, wd, kd, tok)
        if key not in cache:
            _prof, cal, spec = engine_perf_inputs(engine, by_name[gpu])
            cache[key] = build_replica_perf(model, spec, Parallelism(tp=tp, pp=pp, ep=ep, dp_attention=dpa),
                                            calibration=cal, max_batch_tokens=tok,
                                            expert_imbalance=expert_imbalance, weight_dtype=wd, kv_dtype=kd)
        perf = cache[key]
        label = (f"{gpu} tp{tp}" + (f" pp{pp}" if pp > 1 else "") + (" dp-attention" if dpa else "")
                 + (f" {wd}" if wd != "bf16" else ""))
        pre = lone_prefill_s(perf, inp, float(tok)) if role != "decode" else np.zeros(n)
        step = float(np.asarray(perf.step_time_s(0.0, 0.0, 1.0, float(np.mean(inp + out1 / 2.0)))))
        if role != "decode":
            better = pre < prefill
            prefill = np.where(better, pre, prefill)
            prefill_by[better] = label
        if role != "prefill" and step < itl:
            itl, itl_by = step, label
        if role == "aggregated":
            whole = pre + out1 * step
            better = whole < e2e
            e2e = np.where(better, whole, e2e)
            e2e_by[better] = label
    # a split fleet: the fastest prefill and the fastest decode apart
    e2e = np.minimum(e2e, prefill + out1 * itl)
    out: list[Floor] = []
    if np.isfinite(prefill).any():
        f = _floor("ttft", prefill, slo, lambda i: (f"a {int(inp[i]):,}-token prompt's prefill takes "
                                                    f"{prefill[i]:.3g} s", str(prefill_by[i])))
        if f is not None:
            out.append(f)
    if np.isfinite(itl):
        f = _floor("tpot", np.full(n, itl), slo, lambda _i: (f"one decode step at batch 1 takes {itl:.3g} s",
                                                             itl_by))
        if f is not None:
            out.append(f)
    if slo.e2e_s is not None and np.isfinite(e2e).any():
        f = _floor("e2e", e2e, slo, lambda i: (f"a {int(inp[i]):,}-token prompt with {int(out1[i]) + 1:,} "
                                               f"output tokens takes {e2e[i]:.3g} s",
                                               str(e2e_by[i]) or f"{prefill_by[i]} + {itl_by}"))
        if f is not None:
            out.append(f)
    return tuple(out)


def lone_prefill_s(perf: RooflinePerf, tokens: FloatArray, budget: float) -> FloatArray:
    """A prompt's prefill alone on an idle replica: one step when it fits the token budget, else full
    budget-sized chunks (each attending to the context before it) and the remainder."""
    t = np.asarray(tokens, dtype=np.float64)
    full = np.floor(t / budget)
    rest = t - full * budget
    # chunk j of the full ones attends to j * budget earlier tokens: pairs = budget * (j budget) + b(b+1)/2
    chunk_pairs_mean = budget * budget * np.maximum(full - 1.0, 0.0) / 2.0 + budget * (budget + 1.0) / 2.0
    t_full = np.asarray(perf.step_time_s(budget, chunk_pairs_mean, 0.0, 0.0), dtype=np.float64)
    t_rest = np.asarray(perf.step_time_s(rest, rest * full * budget + rest * (rest + 1.0) / 2.0, 0.0, 0.0),
                        dtype=np.float64)
    return np.asarray(full * t_full + np.where(rest > 0, t_rest, 0.0), dtype=np.float64)


def _floor(kind: TargetKind, floors: FloatArray, slo: SLO,
           example: Callable[[int], tuple[str, str]]) -> Floor | None:
    """The floor of ``kind`` if it breaks the target at its statistic (None when some fleet could meet
    it); ``example(i)`` words request ``i`` and its best candidate."""
    target = slo.limit(kind)
    over = floors > target
    share = float(over.mean())
    if slo.is_mean(kind):
        value = float(np.mean(floors))
        missed = value > target
    else:
        q = slo.quantile(kind)
        value = float(np.quantile(floors, q))
        missed = share > 1.0 - q + 1e-12
    if not missed:
        return None
    what, best = example(int(np.argmax(floors)))
    return Floor(kind=kind, target_s=target, statistic=slo.stat(kind), floor_s=value, share_over=share,
                 worst=what, best=best)
