"""``fleetwise experts``: MoE expert placement, ours (CP-SAT + local search) beside DeepSeek's EPLB greedy.

The verb only gathers inputs and prints; every number comes from :mod:`solvers.experts`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from planner.cli.engine_option import DEFAULT_ENGINE, EngineOpt
from planner.cli.scenario_config import ConfigOpt
from planner.cli.verbs import summary
from solvers.experts.eplb_greedy import eplb_placement
from solvers.experts.loads import MoEShape, Skew, moe_shape_of, read_loads, synthetic_loads
from solvers.experts.placement import Cluster, Placement, load_plan, save_plan
from solvers.experts.problem import (
    Balance,
    Locality,
    PlacementProblem,
    PlacementSolution,
    SolveParams,
)
from traces.errors import InputError

if TYPE_CHECKING:  # the solver (OR-Tools) and the perf model are imported when a plan is made, not for --help
    from solvers.experts.effect import EffectRow

_TARGET = 1.05
"""The issue's node-local balance target; the verb says on how many layers no plan can reach it."""

EXAMPLE = """
Example: fleetwise experts --model DeepSeek-V3 --gpus 64 --redundant 32 --sigma 1.0 --replan-drift 0.2

Node-local (EPLB's hierarchical policy) incremental re-plan, with the lower bound on max/mean:
fleetwise experts --gpus 32 --node-local --sigma 0.5 --replan-drift 0.2

Re-plans hold EPLB's step-time balance (sum over layers of the busiest GPU) by default; --balance layer
holds every layer to EPLB's same layer instead (more copies).

The effect table runs the perf model for --model on --gpu at tp = ep = --gpus (the only layout whose
expert-parallel group is the placement's GPUs) with each plan's step imbalance: decode TPOT, a prefill
chunk's time and decode tokens/s at --tpot-slo-ms. Feed the JSON's rows[-1].aggregate into
fleetwise replay/plan --expert-imbalance.
"""


@dataclass(frozen=True)
class _Row:
    name: str
    aggregate: float
    imbalance: float
    worst: float
    duplicates: int
    moves: int | None
    remote_share: float
    wall_s: float
    status: str


def register(app: typer.Typer) -> None:
    """Add ``fleetwise experts``."""
    app.command(name="experts", help=summary("experts") + EXAMPLE)(
        experts
    )


def experts(
    scenario: ConfigOpt = None,
    model: Annotated[str, typer.Option(help="Catalog MoE model (shape: MoE layers, experts, groups).")] = (
        "DeepSeek-V3"
    ),
    layers: Annotated[int | None, typer.Option(help="MoE layers (overrides the model).")] = None,
    num_experts: Annotated[int | None, typer.Option("--experts", help="Routed experts per layer.")] = None,
    groups: Annotated[int | None, typer.Option(help="Expert groups (overrides the model).")] = None,
    gpus: Annotated[int, typer.Option(help="GPUs in the expert-parallel group.")] = 32,
    gpus_per_node: Annotated[int, typer.Option(help="GPUs per node.")] = 8,
    redundant: Annotated[
        int, typer.Option(help="Redundant expert slots per layer (on top of one each).")
    ] = 32,
    sigma: Annotated[float, typer.Option(help="Lognormal skew of synthetic loads.")] = 0.5,
    skew: Annotated[Skew, typer.Option(help="Synthetic load shape.")] = Skew.LOGNORMAL,
    seed: Annotated[int, typer.Option(help="Seed of synthetic loads and of the solver.")] = 0,
    loads: Annotated[
        Path | None, typer.Option(help="Expert loads, layers x experts (.csv/.parquet/.npy).")
    ] = None,
    node_local: Annotated[
        bool,
        typer.Option("--node-local", help="Every replica on its group's node (EPLB's hierarchical policy)."),
    ] = False,
    locality: Annotated[
        Locality | None,
        typer.Option(
            help="global | node | home (home: one replica of each expert on its group's node, others free)."
        ),
    ] = None,
    incremental_from: Annotated[
        Path | None,
        typer.Option(help="Current plan (.npz/.json from --out): re-plan moving as few experts as possible."),
    ] = None,
    replan_drift: Annotated[
        float | None,
        typer.Option(help="Incremental demo: plan synthetic loads, drift them by this log-sigma, re-plan."),
    ] = None,
    max_imbalance: Annotated[
        float | None,
        typer.Option(help="Incremental: balance to reach (default: a fresh EPLB plan's), see --balance."),
    ] = None,
    balance: Annotated[
        Balance,
        typer.Option(
            help="Incremental: 'aggregate' holds sum over layers of the busiest GPU (step time) to the "
            "reference; 'layer' holds every layer to it (more copies)."
        ),
    ] = Balance.AGGREGATE,
    time_limit: Annotated[float, typer.Option(help="Solver wall-time budget, seconds (all layers).")] = 7.0,
    processes: Annotated[int, typer.Option(help="Layers solved in parallel processes.")] = 2,
    out: Annotated[Path | None, typer.Option(help="Write our plan (EPLB tensors) to .npz or .json.")] = None,
    gpu: Annotated[str, typer.Option(help="Catalog GPU of the effect table (perf model).")] = "H200-SXM",
    weight_dtype: Annotated[
        str, typer.Option(help="Weight dtype of the effect table: bf16 or fp8 (DeepSeek-V3 ships fp8).")
    ] = "fp8",
    tpot_slo_ms: Annotated[
        float, typer.Option(help="TPOT target of the effect table's decode capacity, ms.")
    ] = 50.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    engine: EngineOpt = DEFAULT_ENGINE,
) -> None:
    """Balance expert load over GPUs and print balance, moves and solve time beside EPLB's greedy."""
    from solvers.experts.solve import solve

    loc = locality if locality is not None else (Locality.NODE if node_local else Locality.GLOBAL)
    shape = _shape(model, layers, num_experts, groups)
    if loads is not None:
        weights = read_loads(loads)
        if weights.shape[1] % shape.groups:
            shape = MoEShape(layers=weights.shape[0], experts=weights.shape[1], groups=1)
        else:
            shape = MoEShape(layers=weights.shape[0], experts=weights.shape[1], groups=shape.groups)
        windows = [weights]
    else:
        n_win = 2 if replan_drift is not None else 1
        draw = synthetic_loads(
            shape, sigma=sigma, skew=skew, windows=n_win, drift_sigma=replan_drift or 0.0, seed=seed
        )
        windows = [draw[i] for i in range(n_win)]
    cluster = Cluster(num_gpus=gpus, gpus_per_node=gpus_per_node, num_slots=shape.experts + redundant)
    params = SolveParams(max_time_in_seconds=time_limit, processes=processes, random_seed=seed)
    current: Placement | None = None
    if incremental_from is not None:
        current = load_plan(incremental_from, num_experts=shape.experts)
    elif replan_drift is not None:
        current = solve(
            PlacementProblem(loads=windows[0], cluster=cluster, num_groups=shape.groups, locality=loc),
            params=params,
        ).placement
    w = windows[-1]
    problem = PlacementProblem(
        loads=w,
        cluster=cluster,
        num_groups=shape.groups,
        locality=loc,
        current=current,
        max_imbalance=max_imbalance,
        balance=balance,
    )
    greedy, greedy_s = _timed_eplb(w, cluster, shape.groups, loc)
    ours = solve(problem, params=params)
    rows = [_greedy_row(greedy, w, greedy_s, current), _ours_row(ours)]
    if out is not None:
        save_plan(ours.placement, out)
    worse = int((ours.placement.layer_imbalance(w) > greedy.layer_imbalance(w) + 1e-9).sum())
    effect, skipped = _effect(model, gpu, gpus, rows, weight_dtype=weight_dtype, tpot_slo_ms=tpot_slo_ms,
                              engine=engine)
    _print(rows, shape, cluster, loc, ours, worse, as_json=as_json, effect=(effect, skipped))


def _shape(model: str, layers: int | None, experts: int | None, groups: int | None) -> MoEShape:
    if layers is not None and experts is not None:
        return MoEShape(layers=layers, experts=experts, groups=groups or 1)
    from planner.catalog import load_catalog

    base = moe_shape_of(load_catalog().model(model))
    return MoEShape(
        layers=layers or base.layers, experts=experts or base.experts, groups=groups or base.groups
    )


def _timed_eplb(w: np.ndarray, cluster: Cluster, groups: int, loc: Locality) -> tuple[Placement, float]:
    import time

    started = time.perf_counter()
    hierarchical = loc is not Locality.GLOBAL
    if hierarchical and (groups % cluster.num_nodes):
        raise InputError(
            f"{groups} groups cannot be spread over {cluster.num_nodes} nodes",
            field="node-local",
            expected="a node count that divides the group count",
        )
    plan = eplb_placement(w, cluster, num_groups=groups, hierarchical=hierarchical)
    return plan, time.perf_counter() - started


def _greedy_row(plan: Placement, w: np.ndarray, wall_s: float, current: Placement | None) -> _Row:
    imb = plan.layer_imbalance(w)
    moves = None if current is None else int(plan.moves_from(current).sum())
    return _Row(
        "EPLB greedy",
        plan.aggregate_imbalance(w),
        float(imb.mean()),
        float(imb.max()),
        plan.duplicates(),
        moves,
        0.0,
        wall_s,
        "heuristic",
    )


def _ours_row(sol: PlacementSolution) -> _Row:
    return _Row(
        "fleetwise",
        sol.aggregate_imbalance,
        sol.imbalance,
        sol.worst_imbalance,
        sol.placement.duplicates(),
        sol.moves,
        sol.remote_share,
        sol.wall_s,
        str(sol.status),
    )


def _print(
    rows: list[_Row],
    shape: MoEShape,
    cluster: Cluster,
    loc: Locality,
    ours: PlacementSolution,
    worse: int,
    *,
    as_json: bool,
    effect: tuple[_Effect | None, str | None],
) -> None:
    """Table or JSON; ``worse``: layers where our plan is less balanced than greedy's same layer;
    ``effect``: the perf model's view of each plan's imbalance, or why there is none."""
    console = Console()
    if as_json:
        doc = {
            "shape": {"layers": shape.layers, "experts": shape.experts, "groups": shape.groups},
            "cluster": {
                "gpus": cluster.num_gpus,
                "gpus_per_node": cluster.gpus_per_node,
                "slots": cluster.num_slots,
            },
            "locality": str(loc),
            "imbalance_bound": ours.imbalance_bound,
            "imbalance_bound_worst": max(r.lower_bound for r in ours.layers),
            "layers_bound_over_1_05": sum(r.lower_bound > 1.05 for r in ours.layers),
            "moves_bound": ours.moves_bound,
            "moves_ratio": _ratio(rows),
            "balance": None if ours.balance is None else str(ours.balance),
            "balance_target": ours.balance_target,
            "layers_less_balanced_than_greedy": worse,
            "rows": [r.__dict__ for r in rows],
            "effect": _effect_json(*effect),
        }
        console.print_json(json.dumps(doc))
        return
    table = Table(
        title=f"{shape.layers} layers x {shape.experts} experts on {cluster.num_gpus} GPUs "
        f"({cluster.num_slots} slots, {loc})"
    )
    home = loc is Locality.HOME  # the only rule that sends tokens off their group's node
    cols = [
        "plan",
        "step",
        "avg",
        "worst",
        "dups",
        "moved",
        *(["remote"] if home else []),
        "time s",
        "status",
    ]
    for col in cols:  # the plan's name wraps, never truncates (80-column terminals)
        table.add_column(col, justify="left" if col == "plan" else "right", overflow="fold",
                         min_width=9 if col == "plan" else None)
    for r in rows:
        cells = [
            r.name,
            f"{r.aggregate:.4f}",
            f"{r.imbalance:.4f}",
            f"{r.worst:.4f}",
            str(r.duplicates),
            "-" if r.moves is None else str(r.moves),
            *([f"{r.remote_share:.1%}"] if home else []),
            f"{r.wall_s:.2f}",
            r.status.lower(),
        ]
        table.add_row(*cells)
    console.print(table)
    console.print(
        "step: sum over layers of the busiest GPU over sum of mean GPU loads (the MoE step-time "
        "imbalance: each layer waits for its own busiest GPU); avg: busiest GPU over mean GPU load "
        "(max/mean), averaged over layers (worst: worst layer); dups: slots wasted on a second replica on "
        "one GPU; moved: expert copies moved from the current plan"
        + ("; remote: tokens sent off their group's node." if home else "."),
        soft_wrap=True,
    )
    target = ours.balance_target
    if (
        ours.balance is Balance.AGGREGATE
        and target is not None
        and ours.aggregate_imbalance > target * (1 + 1e-9)
    ):
        console.print(
            f"re-plan balance: aggregate (default): step <= {target:.4f} is out of reach under the {loc} "
            f"rule; every layer took its most balanced plan (step {ours.aggregate_imbalance:.4f}).",
            soft_wrap=True,
        )
    elif ours.balance is Balance.AGGREGATE:
        console.print(
            f"re-plan balance: aggregate (default): step <= {target:.4f}, EPLB greedy's "
            f"unless --max-imbalance; layers may trade balance, {worse} of {len(ours.layers)} are less "
            "balanced than greedy's same layer (--balance layer holds every layer, with more copies).",
            soft_wrap=True,
        )
    elif ours.balance is Balance.LAYER:
        console.print(
            "re-plan balance: per layer (--balance layer): every layer as balanced as EPLB greedy's "
            f"same layer unless --max-imbalance; {worse} of {len(ours.layers)} layers are less balanced "
            "than greedy's (out of reach even afresh).",
            soft_wrap=True,
        )
    bounds = [r.lower_bound for r in ours.layers]
    over = sum(b > _TARGET for b in bounds)
    console.print(
        f"lower bound on max/mean under the {loc} rule (no plan beats it): {ours.imbalance_bound:.4f} "
        f"avg over layers, worst layer {max(bounds):.4f}; achieved {ours.imbalance:.4f}. "
        f"max/mean <= {_TARGET} is impossible in {over} of {len(bounds)} layers"
        + (" and on average." if ours.imbalance_bound > _TARGET else "."),
        soft_wrap=True,
    )
    ratio = _ratio(rows)
    if ratio is not None:
        line = f"moves: EPLB greedy / fleetwise = {ratio:.1f}x"
        if ours.moves_bound is not None:
            best = (rows[0].moves or 0) / max(ours.moves_bound, 1)
            held = "the aggregate balance" if ours.balance is Balance.AGGREGATE else "each layer's balance"
            line += (
                f"; at least {ours.moves_bound} copies are forced (groups that must change node to "
                f"reach {held}), so no plan beats {best:.1f}x"
            )
        console.print(line + ".", soft_wrap=True)
    _print_effect(console, *effect)


def _ratio(rows: list[_Row]) -> float | None:
    greedy, ours = rows[0].moves, rows[-1].moves
    if greedy is None or ours is None:
        return None
    return greedy / max(ours, 1)


@dataclass(frozen=True)
class _Effect:
    model: str
    gpu: str
    layout: str
    weight_dtype: str
    tpot_slo_ms: float
    rows: tuple[EffectRow, ...]
    engine: str = DEFAULT_ENGINE


def _effect(
    model: str, gpu: str, gpus: int, rows: list[_Row], *, weight_dtype: str, tpot_slo_ms: float,
    engine: str = DEFAULT_ENGINE,
) -> tuple[_Effect | None, str | None]:
    """Each plan's step imbalance through the perf model, beside a perfectly balanced one.

    A layout the perf model rejects (an expert count ``--gpus`` does not divide, a model that does not
    fit) is not an error of the placement, so it comes back as the reason instead of raising.
    """
    from planner.catalog import load_catalog
    from planner.perf.engine_profile import engine_perf_inputs
    from solvers.experts.effect import ep_layout, placement_effect

    cat = load_catalog()
    spec = cat.model(model)
    prof, cal, gpu_spec = engine_perf_inputs(engine, cat.gpu(gpu))
    par = ep_layout(gpus)
    imbalances = {"uniform": 1.0, **{r.name: r.aggregate for r in rows}}
    try:
        table = placement_effect(
            spec, gpu_spec, par, imbalances, weight_dtype=weight_dtype, tpot_slo_s=tpot_slo_ms / 1000.0,
            calibration=cal,
        )
    except InputError as exc:
        return None, exc.message
    layout = f"tp={par.tp} pp={par.pp} ep={par.ep}"
    return _Effect(model, gpu, layout, weight_dtype, tpot_slo_ms, tuple(table), prof.engine), None


def _effect_json(effect: _Effect | None, skipped: str | None) -> dict[str, object]:
    if effect is None:
        return {"skipped": skipped}
    return {
        "model": effect.model,
        "gpu": effect.gpu,
        "layout": effect.layout,
        "engine": effect.engine,
        "weight_dtype": effect.weight_dtype,
        "tpot_slo_ms": effect.tpot_slo_ms,
        "rows": [
            {
                "plan": r.name,
                "imbalance": r.imbalance,
                "tpot_s": dict(zip([str(b) for b in r.batches], r.tpot_s, strict=True)),
                "prefill_chunk_s": r.prefill_chunk_s,
                "decode_tokens_per_s": r.decode_tokens_per_s,
                "decode_batch": r.decode_batch,
            }
            for r in effect.rows
        ],
    }


def _print_effect(console: Console, effect: _Effect | None, skipped: str | None) -> None:
    if effect is None:
        console.print(f"no latency effect table: {skipped}", soft_wrap=True)
        return
    from solvers.experts.effect import CHUNK_TOKENS, CONTEXT_TOKENS

    table = Table(
        title=f"effect on {effect.model} ({effect.weight_dtype}) on {effect.gpu}, {effect.layout}, "
              f"engine {effect.engine}, "
        "perf model at each plan's step imbalance"
    )
    first = effect.rows[0]
    cols = [
        "plan",
        "step",
        *(f"@{b}" for b in first.batches),
        "chunk",
        "tok/s",
        "vs uniform",
    ]
    for col in cols:  # the plan's name wraps, never truncates (80-column terminals)
        table.add_column(col, justify="left" if col == "plan" else "right", overflow="fold",
                         min_width=9 if col == "plan" else None)
    base = first.decode_tokens_per_s
    for r in effect.rows:
        loss = "-" if base <= 0 else f"{r.decode_tokens_per_s / base - 1:+.2%}"
        table.add_row(
            r.name,
            f"{r.imbalance:.4f}",
            *(f"{t * 1000:.2f}" for t in r.tpot_s),
            f"{r.prefill_chunk_s * 1000:.1f}",
            f"{r.decode_tokens_per_s:,.0f}",
            loss,
        )
    console.print(table)
    console.print(
        f"@B: decode step time (TPOT), ms, of B sequences at {CONTEXT_TOKENS} KV tokens each; chunk: one "
        f"{CHUNK_TOKENS}-token prefill chunk, ms (TTFT proxy); tok/s: decode tokens/s of one replica "
        f"with TPOT <= {effect.tpot_slo_ms:g} ms; vs uniform: that capacity against a perfect balance. "
        "Feed a plan's step imbalance to fleetwise replay/plan --expert-imbalance.",
        soft_wrap=True,
    )
