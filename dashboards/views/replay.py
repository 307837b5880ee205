"""Replay page: put the trace through a fleet and see latency against the SLO, queues, KV, power, cost."""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from dashboards import figures, tables
from dashboards.scenario import ReplaySpec, kv_tier_job, replay_job, spares_job, spec_decode_line
from dashboards.ui import Inputs, gpu_names
from dashboards.views.common import (
    computed,
    current_trace,
    engine_choice,
    precision_choice,
    remember_run,
    show_facts,
    show_figure,
)
from planner.catalog import load_catalog
from planner.perf.spec_decode import DEFAULTS, SpecMethod
from planner.sim import RouterName

TP_CHOICES: tuple[int, ...] = (1, 2, 4, 8)


def fleet_inputs(inputs: Inputs, *, prefix: str) -> ReplaySpec:
    """GPU, TP, replicas and router selectors (defaults: the last plan for this model, if any).

    Shared by the Replay, Autoscaling and Power pages (each with its own widget keys).
    """
    names = list(gpu_names())
    planned = st.session_state.get("planned_fleet")
    gpu0, tp0, rep0, seqs, tokens, prec0 = "H100-SXM", 1, 2, 256, 8192, "native"
    if planned is not None and planned[0] == inputs.model:
        _, gpu0, tp0, rep0, seqs, tokens, prec0 = planned
    c1, c2, c3, c4 = st.columns(4)
    gpu = c1.selectbox("GPU", names, index=names.index(gpu0) if gpu0 in names else 0, key=f"{prefix}_gpu")
    tp = c2.selectbox(
        "TP", TP_CHOICES, index=TP_CHOICES.index(tp0) if tp0 in TP_CHOICES else 0, key=f"{prefix}_tp"
    )
    replicas = c3.number_input(
        "Replicas", min_value=1, max_value=4096, value=int(rep0), step=1, key=f"{prefix}_replicas"
    )
    routers = [r.value for r in RouterName]
    router = c4.selectbox(
        "Router", routers, index=routers.index(RouterName.LEAST_OUTSTANDING.value), key=f"{prefix}_router"
    )
    ep, dp_attention = 1, False
    if load_catalog().model(inputs.model).moe is not None:  # expert layouts only mean something for MoE
        e1, e2 = st.columns(2)
        eps = [e for e in TP_CHOICES if e <= int(tp)]
        ep = int(e1.selectbox("EP", eps, index=0, key=f"{prefix}_ep",
                              help="expert-parallel degree (1: every TP GPU holds a slice of each expert, "
                                   "as replay's default)"))
        dp_attention = bool(e2.toggle(
            "DP attention", value=False, key=f"{prefix}_dpa",
            help="attention data-parallel on the TP GPUs (needs EP = TP): each GPU holds its own sequences' "
                 "KV, no all-reduce; DeepSeek-V3's usual layout"))
    return ReplaySpec(
        model=inputs.model,
        gpu=str(gpu),
        tp=int(tp),
        ep=ep,
        dp_attention=dp_attention,
        replicas=int(replicas),
        router=str(router),
        ttft_s=inputs.ttft_s,
        tpot_s=inputs.tpot_s,
        seed=inputs.seed,
        max_num_seqs=seqs,
        max_batched_tokens=tokens,
        precision=precision_choice(f"{prefix}_precision", prec0),
    )


def kv_tier_inputs(prefix: str) -> tuple[tuple[str, ...], bool, float]:
    """KV tiers below HBM (the catalog's kv_tiers), whether their loads overlap compute, and swap space."""
    names = sorted(load_catalog().kv_tiers)
    c1, c2, c3 = st.columns([3, 1, 1])
    chosen = c1.multiselect("KV tiers below HBM", names, default=[], key=f"{prefix}_kv_tiers",
                            help="evicted prefix blocks go down to these and are loaded back on a hit "
                                 "(capacities, bandwidths and prices: fleetwise catalog)")
    overlap = c2.toggle("loads overlap compute", value=True, key=f"{prefix}_kv_overlap")
    swap = c3.number_input("swap space, GB/GPU", min_value=0.0, value=0.0, step=4.0, key=f"{prefix}_kv_swap",
                           help="preempt by swapping KV to host memory (needs a local tier such as dram); "
                                "0: by recompute, as vLLM V1 does")
    return tuple(str(c) for c in chosen), bool(overlap), float(swap)


def fault_inputs(prefix: str) -> tuple[str | None, float, str]:
    """Synthetic faults in the loop (fail-stop at Llama 3's published rate, stragglers at a rate the user
    sets) and the straggler detector."""
    c1, c2, c3 = st.columns([1, 1, 2])
    on = c1.toggle("faults in the loop", value=False, key=f"{prefix}_faults",
                   help="fail-stop faults at Llama 3's interruption rate per GPU-hour (2.0e-5), seeded")
    slow = c2.number_input("stragglers / replica-hour", min_value=0.0, value=0.0, step=0.1,
                           key=f"{prefix}_slow_rate", help="episodes of 2x slower steps, 30 minutes each")
    detect = c3.radio("straggler detector", ["none", "flag", "drain"], horizontal=True,
                      key=f"{prefix}_detect", help="flag: measure detection; drain: drain and replace")
    return ("synthetic" if on else None), float(slow), (str(detect) if on else "none")


def spec_decode_inputs(prefix: str) -> str | None:
    """Speculative decoding: a method and its k and acceptance (defaults: the published ones), as the
    ``--spec-decode`` string :class:`ReplaySpec` takes."""
    c1, c2, c3 = st.columns([2, 1, 1])
    methods = ["off", *(m.value for m in SpecMethod)]
    method = c1.selectbox("speculative decoding", methods, index=0, key=f"{prefix}_spec",
                          help="MTP heads (DeepSeek-V3), an EAGLE draft head or n-gram prompt lookup, "
                               "modelled in expectation: a step verifies k+1 tokens, emits E on average")
    if method == "off":
        return None
    d = DEFAULTS[SpecMethod(method)]
    k = c2.number_input("draft tokens k", min_value=1, max_value=16, value=d.k, step=1,
                        key=f"{prefix}_spec_k")
    a = c3.number_input("acceptance", min_value=0.0, max_value=0.99, value=d.acceptance, step=0.05,
                        key=f"{prefix}_spec_a", help="per-token acceptance rate (i.i.d.); default: "
                                                     + d.sources[0])
    return f"{method}:k={int(k)}:accept={float(a):g}"


def render(inputs: Inputs) -> None:
    """Replay with :func:`planner.sim.replay` and draw its CDFs and timelines."""
    got = current_trace(inputs)
    if got is None:
        return
    src, tr = got
    spec = fleet_inputs(inputs, prefix="replay")
    tiers, overlap, swap = kv_tier_inputs("replay")
    faults, slow_rate, detect = fault_inputs("replay")
    closed = "think_s" in tr.df.columns and st.toggle(
        "closed-loop sessions", value=False, key="replay_closed_loop",
        help="send each later turn of a session when its previous turn has finished plus its think time "
             "(first turns keep their arrival); off: every request at its trace arrival")
    spec = replace(spec, engine=engine_choice("replay_engine", spec.gpu), kv_tiers=tiers, kv_overlap=overlap,
                   kv_swap_gb=swap, faults=faults, slow_per_replica_hour=slow_rate, detect=detect,
                   closed_loop=bool(closed), spec_decode=spec_decode_inputs("replay"))
    clicked = st.button("Run replay", type="primary", key="replay_run", icon=":material/play_arrow:")
    last = remember_run("replay_request", (src, inputs.load_factor, inputs.seed, spec), clicked)
    if last is None:
        st.caption(f"Press **Run replay** to simulate {tr.num_requests:,} requests through this fleet.")
        return
    result = computed("replay_request", replay_job, last, label=f"Replaying {tr.num_requests:,} requests")
    if result is None:
        return
    run_spec = last[3]
    s = result.summary
    ok = all(c.p99_met for c in s.classes)
    (st.success if ok else st.warning)(tables.replay_headline(result))
    spec_line = spec_decode_line(run_spec)
    if spec_line is not None:
        st.caption(spec_line)
    left, right = st.columns(2)
    with left:
        show_facts(tables.replay_table(result))
    with right:
        show_facts(tables.class_table(result))
    named = {f"{run_spec.gpu} TP{run_spec.tp} x{run_spec.replicas}": result}
    c1, c2 = st.columns(2)
    with c1:
        show_figure(
            figures.latency_cdf_figure(named, metric="ttft_s", slo_s=run_spec.ttft_s), key="replay_ttft"
        )
    with c2:
        show_figure(
            figures.latency_cdf_figure(named, metric="tpot_s", slo_s=run_spec.tpot_s), key="replay_tpot"
        )
    show_figure(figures.timeline_figure(named), key="replay_timeline")
    if result.summary.cached_prefix_tokens:
        show_figure(figures.prompt_sources_figure(result), key="replay_prompt_sources")
        kv_tier_study(src, inputs, run_spec)
    if run_spec.closed_loop:  # the spares study replays faults, which the closed loop does not take yet
        st.caption("The spares study runs on open-loop replays: turn the closed loop off to size spares.")
    else:
        spares_study(src, inputs, run_spec)


def spares_study(src: object, inputs: Inputs, spec: ReplaySpec) -> None:
    """How many spare replicas this fleet needs under fail-stop faults (as ``plan --availability``)."""
    st.subheader("How many spares for its faults?")
    c1, c2, c3 = st.columns([1, 1, 2])
    target = c1.number_input("availability", min_value=0.5, max_value=1.0, value=0.999, step=0.001,
                             format="%.3f", key="spares_target",
                             help="share of 5-minute windows in which 99 % of requests meet the SLO")
    scale = c2.number_input("fault rate x published", min_value=0.0, value=1.0, step=10.0, key="spares_scale",
                            help="fail-stop faults per GPU-hour as a multiple of Llama 3's 2.0e-5")
    clicked = c3.button("Size the spares", key="spares_run", icon=":material/health_and_safety:")
    last = remember_run("spares_request", (src, inputs.load_factor, inputs.seed, spec, float(target),
                                           float(scale)), clicked)
    if last is None:
        return
    study = computed("spares_request", spares_job, last, label="Replaying each spare count under faults")
    if study is None:
        return
    (st.success if study.chosen >= 0 else st.warning)(study.verdict())
    show_facts(tables.spares_table(study))
    show_figure(figures.spares_figure(study), key="spares_availability")


def kv_tier_study(src: object, inputs: Inputs, spec: ReplaySpec) -> None:
    """Does a KV tier pay for itself on this layout? Each set of tiers sized by replay to the SLO."""
    st.subheader("Does a KV tier pay for itself?")
    clicked = st.button("Size each set of KV tiers", key="kv_tier_run", icon=":material/memory:",
                        help="HBM only, +dram, +ssd, +remote: the fewest replicas whose replay meets 99 % "
                             "of requests within the SLO, and what GPUs and tiers then cost per hour")
    last = remember_run("kv_tier_request", (src, inputs.load_factor, inputs.seed, spec), clicked)
    if last is None:
        return
    study = computed("kv_tier_request", kv_tier_job, last, label="Sizing each set of KV tiers by replay")
    if study is None:
        return
    (st.success if any(r.met for r in study.rows) else st.warning)(study.verdict())
    show_facts(tables.kv_tier_table(study))
    show_figure(figures.kv_tier_figure(study), key="kv_tier_costs")
