"""Compare page: two or more what-if scenarios (load x2, H100 vs H200...) replayed side by side."""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import streamlit as st

from dashboards import figures, tables
from dashboards.scenario import Scenario, ScenarioOutcome, scenario_job
from dashboards.ui import Inputs, gpu_names
from dashboards.views.common import computed, current_trace, remember_run, show_facts, show_figure
from planner.sim import RouterName, SimResult
from traces.errors import InputError

DEFAULT_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(name="H100 baseline", load_factor=1.0, gpu="H100-SXM"),
    Scenario(name="H100 load x2", load_factor=2.0, gpu="H100-SXM"),
    Scenario(name="H200 baseline", load_factor=1.0, gpu="H200-SXM"),
)
MAX_SCENARIOS = 6


def scenarios_from_rows(rows: list[dict[str, Any]], gpus: tuple[str, ...]) -> tuple[Scenario, ...]:
    """Validate the editor's rows into scenarios (the edge: bad cells become one clear error).

    Raises:
        InputError: a row with an empty name, an unknown GPU or a non-positive number.
    """
    out: list[Scenario] = []
    for i, row in enumerate(rows, 1):
        name = str(row.get("name") or "").strip()
        if not name:
            continue
        gpu = str(row.get("gpu") or "")
        if gpu not in gpus:
            raise InputError(
                f"unknown GPU {gpu!r}",
                path="scenarios",
                row=i,
                field="gpu",
                expected="one of " + ", ".join(gpus),
            )
        factor, tp, replicas = row.get("load_factor"), row.get("tp"), row.get("replicas")
        if factor is None or not math.isfinite(float(factor)) or float(factor) <= 0:
            raise InputError(
                f"bad load factor {factor!r}",
                path="scenarios",
                row=i,
                field="load_factor",
                expected="a number > 0",
            )
        if tp not in (1, 2, 4, 8):
            raise InputError(f"bad TP {tp!r}", path="scenarios", row=i, field="tp", expected="1, 2, 4 or 8")
        if replicas is None or int(replicas) < 0:
            raise InputError(
                f"bad replicas {replicas!r}",
                path="scenarios",
                row=i,
                field="replicas",
                expected="an integer >= 0 (0: the planner's count)",
            )
        out.append(
            Scenario(name=name, load_factor=float(factor), gpu=gpu, tp=int(tp), replicas=int(replicas))
        )
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise InputError(
            "two scenarios have the same name", path="scenarios", field="name", expected="distinct names"
        )
    return tuple(out)


def render(inputs: Inputs) -> None:
    """Size (optionally) and replay each scenario, then show them side by side."""
    got = current_trace(inputs)
    if got is None:
        return
    src, _ = got
    gpus = gpu_names()
    st.markdown(
        "One row per scenario. **Replicas 0** asks the planner for the layout and peak replicas on that GPU; "
        "the sidebar's load factor is ignored here (each row has its own)."
    )
    edited = st.data_editor(
        pl.DataFrame([s.__dict__ for s in DEFAULT_SCENARIOS]),
        key="cmp_editor",
        num_rows="dynamic",
        hide_index=True,
        width="stretch",
        column_config={
            "name": st.column_config.TextColumn("name", required=True),
            "load_factor": st.column_config.NumberColumn(
                "load factor", min_value=0.05, max_value=20.0, step=0.5, required=True
            ),
            "gpu": st.column_config.SelectboxColumn("GPU", options=list(gpus), required=True),
            "tp": st.column_config.SelectboxColumn("TP", options=[1, 2, 4, 8], required=True),
            "replicas": st.column_config.NumberColumn(
                "replicas (0 = plan)", min_value=0, step=1, required=True
            ),
        },
    )
    routers = [r.value for r in RouterName]
    router = st.selectbox(
        "Router (all scenarios)", routers, index=routers.index("least-outstanding"), key="cmp_router"
    )
    cases = scenarios_from_rows(pl.DataFrame(edited).to_dicts(), gpus)
    if len(cases) < 2:
        st.warning("Define at least two scenarios.")
        return
    if len(cases) > MAX_SCENARIOS:
        st.warning(f"At most {MAX_SCENARIOS} scenarios at once.")
        return
    clicked = st.button("Run comparison", type="primary", key="cmp_run", icon=":material/play_arrow:")
    last = remember_run(
        "cmp_request",
        (src, inputs.seed, cases, inputs.model, str(router), inputs.ttft_s, inputs.tpot_s),
        clicked,
    )
    if last is None:
        st.caption("Press **Run comparison** to replay every scenario.")
        return
    run_src, seed, run_cases, model, run_router, ttft_s, tpot_s = last
    outcomes: list[ScenarioOutcome] = []
    for i, case in enumerate(run_cases):
        got_one = computed(
            "cmp_request",
            scenario_job,
            (run_src, seed, case, model, run_router, ttft_s, tpot_s),
            label=f"Scenario {i + 1} of {len(run_cases)}",
        )
        if got_one is None:
            return
        outcomes.append(got_one)
    named: dict[str, SimResult] = {o.scenario.name: o.result for o in outcomes}
    sized = [
        f"{o.scenario.name}: planner chose {o.spec.replicas} x TP{o.spec.tp}" for o in outcomes if o.planned
    ]
    st.success("Compared " + ", ".join(named) + (". " + "; ".join(sized) + "." if sized else "."))
    show_facts(tables.compare_table(named))
    c1, c2 = st.columns(2)
    with c1:
        show_figure(figures.latency_cdf_figure(named, metric="ttft_s", slo_s=ttft_s), key="cmp_ttft")
    with c2:
        show_figure(figures.latency_cdf_figure(named, metric="tpot_s", slo_s=tpot_s), key="cmp_tpot")
    show_figure(figures.timeline_figure(named), key="cmp_timeline")
