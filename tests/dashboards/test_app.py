"""Every dashboard page through Streamlit's AppTest: widgets, real runs on the bundled trace, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from dashboards.ui import PageName

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"


def goto(at: AppTest, page: str) -> AppTest:
    """Switch the sidebar's page radio and rerun."""
    at.sidebar.radio(key="page").set_value(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


PAGE_WIDGETS: dict[str, tuple[str, ...]] = {
    "Plan": ("plan_run",),
    "Replay": ("replay_run",),
    "Autoscaling": ("auto_run",),
    "Power": ("power_run",),
    "Experts": ("exp_run",),
    "Compare": ("cmp_run",),
}


def test_sidebar_lists_every_page(app: AppTest) -> None:
    assert app.sidebar.radio(key="page").options == [p.value for p in PageName]
    assert app.sidebar.radio(key="source").value == "Bundled default"
    assert app.sidebar.selectbox(key="model").value == "Llama-3.1-8B"


def test_trace_page_describes_the_bundled_trace(app: AppTest) -> None:
    assert app.title[0].value == "fleetwise · Trace"
    headline = app.success[0].value
    assert "19,902 requests" in headline and "60.0 min" in headline
    assert len(app.get("plotly_chart")) == 3
    stats = app.table[0].value
    assert "mean rate" in set(stats["statistic"])


@pytest.mark.parametrize("page", list(PAGE_WIDGETS))
def test_each_page_shows_its_inputs_without_running(app: AppTest, page: str) -> None:
    goto(app, page)
    assert app.title[0].value == f"fleetwise · {page}"
    for key in PAGE_WIDGETS[page]:
        assert app.button(key=key).label.startswith(("Run", "Place"))
    assert not app.error
    # nothing heavy runs before the button is pressed
    assert not app.get("plotly_chart") or page == "Autoscaling"


@pytest.mark.slow
def test_plan_runs_on_the_bundled_trace(app: AppTest) -> None:
    goto(app, "Plan")
    app.multiselect(key="plan_gpus").set_value(["H100-SXM", "H200-SXM"]).run()
    app.button(key="plan_run").click().run()
    assert not app.exception
    assert not app.error, app.error[0].value
    headline = app.success[0].value
    assert headline.startswith("Plan: ") and "for Llama-3.1-8B" in headline and "$" in headline
    breakdown = app.table[0].value
    assert set(breakdown["configuration"].str.split(" ").str[0]) <= {"H100-SXM", "H200-SXM"}
    assert (breakdown["cost $"].str.replace(",", "").astype(float) > 0).all()
    frames = [d.value for d in app.dataframe]
    candidates = next(f for f in frames if "in plan" in f.columns)
    assert (candidates["in plan"] == "plan").sum() == len(breakdown)
    # the presented plan's own replay, window by window, as plan --json states it
    windows = next(f for f in frames if "attainment" in f.columns)
    assert len(windows) == 12 and (windows["GPUs"] >= 1).all()
    # the result stays on screen on the next rerun (read back from the cache)
    app.run()
    assert app.success[0].value == headline


def test_plan_with_the_vllm_engine_names_it(app: AppTest) -> None:
    goto(app, "Plan")
    app.multiselect(key="plan_gpus").set_value(["H100-SXM"])
    app.radio(key="plan_engine").set_value("vllm").run()
    app.button(key="plan_run").click().run()
    assert not app.exception
    assert not app.error, app.error[0].value
    assert any("vllm 0.26.0 profile" in m.value for m in app.markdown)


def test_impossible_slo_shows_the_planners_reason(app: AppTest) -> None:
    goto(app, "Plan")
    app.sidebar.number_input(key="tpot").set_value(1.0).run()
    app.multiselect(key="plan_gpus").set_value(["L40S"]).run()
    app.button(key="plan_run").click().run()
    assert not app.exception
    assert app.error[0].value.startswith("No plan for Llama-3.1-8B: ")


def test_bad_inventory_is_a_clear_error(app: AppTest) -> None:
    goto(app, "Plan")
    app.text_input(key="plan_inventory").set_value("H100-SXM=lots").run()
    assert not app.exception
    assert (
        app.error[0].value
        == "field --inventory: bad inventory item 'H100-SXM=lots' (expected GPU=COUNT, e.g. H100-SXM=16)"
    )


def test_replay_runs_and_draws_cdfs_and_timelines(app: AppTest) -> None:
    goto(app, "Replay")
    app.number_input(key="replay_replicas").set_value(2)
    app.button(key="replay_run").click().run()
    assert not app.exception
    headline = (app.success or app.warning)[0].value
    assert headline.startswith("Replay: 19,902 of 19,902 requests served on 2 replicas")
    assert len(app.get("plotly_chart")) == 4  # TTFT CDF, TPOT CDF, timelines, prompt-token sources
    classes = app.table[1].value
    assert list(classes["class"]) == ["default"]


def test_replay_with_speculative_decoding_says_its_e(app: AppTest) -> None:
    goto(app, "Replay")
    app.number_input(key="replay_replicas").set_value(2)
    app.selectbox(key="replay_spec").set_value("eagle").run()
    app.number_input(key="replay_spec_a").set_value(0.7)
    app.button(key="replay_run").click().run()
    assert not app.exception
    line = next(c.value for c in app.caption if c.value.startswith("speculative decoding eagle"))
    assert "acceptance 0.7 (given) -> E = 2.533" in line


def test_replay_of_a_moe_model_takes_ep_and_dp_attention(app: AppTest) -> None:
    goto(app, "Replay")
    app.selectbox(key="model").set_value("DeepSeek-V3").run()
    app.selectbox(key="replay_gpu").set_value("H200-SXM").run()
    app.selectbox(key="replay_tp").set_value(8).run()
    app.selectbox(key="replay_ep").set_value(8).run()
    app.toggle(key="replay_dpa").set_value(True).run()
    app.button(key="replay_run").click().run()
    assert not app.exception and not app.error
    headline = (app.success or app.warning)[0].value
    assert headline.startswith("Replay: 19,902 of 19,902 requests served")


def test_replay_with_a_dram_tier_shows_what_the_tier_served(app: AppTest) -> None:
    goto(app, "Replay")
    app.number_input(key="replay_replicas").set_value(1)
    app.multiselect(key="replay_kv_tiers").set_value(["dram"])
    app.button(key="replay_run").click().run()
    assert not app.exception
    rows = dict(zip(app.table[0].value["metric"], app.table[0].value["value"], strict=True))
    assert "GB written" in rows["KV tier dram"]  # the summary row the CLI prints too
    assert len(app.get("plotly_chart")) == 4
    app.button(key="kv_tier_run").click().run(timeout=600)  # does a tier pay? (each case sized by replay)
    assert not app.exception
    verdict = (app.success or app.warning)[-1].value
    assert verdict.startswith(("cheapest: ", "no case met"))
    study = app.table[-1].value
    assert list(study["tiers"]) == ["HBM only", "+dram", "+dram+ssd", "+dram+ssd+remote"]
    assert len(app.get("plotly_chart")) == 5


def test_replay_with_the_vllm_engine_profile_says_so_and_changes_latency(app: AppTest) -> None:
    goto(app, "Replay")
    app.number_input(key="replay_replicas").set_value(2)
    # vLLM's profile is the default: the caption says so
    assert any("vllm 0.26.0 profile" in c.value for c in app.caption)
    app.button(key="replay_run").click().run()
    vllm = app.table[0].value
    app.radio(key="replay_engine").set_value("bare").run()
    assert any("bare step model" in c.value for c in app.caption)
    app.button(key="replay_run").click().run()
    assert not app.exception
    bare = app.table[0].value
    assert not bare.equals(vllm)  # TTFT/TPOT rows differ: hand-over latency, ~0 ms/step engine time


def test_plan_feeds_the_replay_defaults(app: AppTest) -> None:
    goto(app, "Plan")
    app.multiselect(key="plan_gpus").set_value(["H200-SXM"]).run()
    app.button(key="plan_run").click().run()
    assert not app.error, app.error[0].value
    goto(app, "Replay")
    assert app.selectbox(key="replay_gpu").value == "H200-SXM"


@pytest.mark.slow
def test_autoscaling_compares_policies_in_the_loop(app: AppTest) -> None:
    app.sidebar.number_input(key="load_factor").set_value(3.0).run()
    goto(app, "Autoscaling")
    app.multiselect(key="auto_policies").set_value(["hpa", "mpc"]).run()
    app.button(key="auto_run").click().run()
    assert not app.exception
    assert not app.error, app.error[0].value
    headline = app.success[0].value
    assert headline.startswith("3 policies replayed on Llama-3.1-8B TP1 H100-SXM; one replica holds ")
    table = app.table[0].value
    assert list(table["policy"])[1:] == ["hpa", "mpc"] and table["policy"][0].startswith("static-peak(")
    gpu_h = dict(zip(table["policy"], table["GPU-hours"].astype(float), strict=True))
    # at 3x the bundled hour's rate the peak-sized static fleet holds more GPUs than either policy
    assert gpu_h["hpa"] < gpu_h[table["policy"][0]] and gpu_h["mpc"] < gpu_h[table["policy"][0]]
    assert all(float(a.rstrip("%")) > 90 for a in table["SLO attainment"])
    assert len(app.get("plotly_chart")) == 3  # bars, timelines, cold starts (in the expander)


def test_autoscaling_refuses_inverted_bounds(app: AppTest) -> None:
    goto(app, "Autoscaling")
    app.number_input(key="auto_min").set_value(8).run()
    app.number_input(key="auto_max").set_value(2).run()
    assert not app.exception
    assert app.error[0].value == "Max replicas must be at least min replicas."
    assert "auto_run" not in [b.key for b in app.button]


@pytest.mark.slow
def test_power_study_draws_the_pareto_curve_and_a_capping_timeline(app: AppTest) -> None:
    goto(app, "Power")
    app.number_input(key="power_nameplate").set_value(2)
    app.number_input(key="power_pool").set_value(4)
    app.number_input(key="power_rps").set_value(3.0)
    app.button(key="power_run").click().run()
    assert not app.exception
    assert not app.error, app.error[0].value
    msg = (app.success or app.warning)[0].value
    assert msg.startswith("Row budget ") and "at nameplate" in msg
    provisioning = app.table[0].value
    assert int(provisioning["servers"][0]) == 2  # nameplate, as asked
    plan_servers = int(provisioning["servers"][2])
    assert plan_servers >= 2  # capping never holds fewer servers than nameplate
    pareto = app.table[1].value
    assert [int(x) for x in pareto["servers"]] == list(range(2, 2 + len(pareto)))
    assert len(app.get("plotly_chart")) == 2  # Pareto curve, capping timeline
    sizes = app.selectbox(key="power_size")
    assert sizes.value == plan_servers and len(sizes.options) >= len(pareto)


def test_experts_page_balances_better_than_static(app: AppTest) -> None:
    goto(app, "Experts")
    app.number_input(key="exp_layers").set_value(2)
    app.number_input(key="exp_gpus").set_value(8)
    app.number_input(key="exp_limit").set_value(0.5)
    app.button(key="exp_run").click().run()
    assert not app.exception
    table = app.table[0].value
    static, ours = table["max/mean (avg)"][0], table["max/mean (avg)"][2]
    assert ours < static
    assert len(app.get("plotly_chart")) >= 2


def test_compare_runs_three_scenarios(app: AppTest) -> None:
    goto(app, "Compare")
    app.button(key="cmp_run").click().run()
    assert not app.exception
    assert app.success[0].value.startswith("Compared H100 baseline, H100 load x2, H200 baseline")
    table = app.table[0].value
    assert list(table.columns) == ["metric", "H100 baseline", "H100 load x2", "H200 baseline"]
    gpus = dict(zip(table["metric"], table["H100 load x2"], strict=True))["GPUs"]
    base = dict(zip(table["metric"], table["H100 baseline"], strict=True))["GPUs"]
    assert int(gpus) >= int(base)  # twice the load never needs fewer GPUs
    assert "planner chose" in app.success[0].value


def test_bad_upload_shows_the_trace_layers_error(app: AppTest) -> None:
    app.sidebar.radio(key="source").set_value("Upload").run()
    assert "Upload a trace file" in app.info[0].value
    bad = b"arrival_s,input_tokens,output_tokens\n0.0,10,5\n1.0,-3,5\n"
    app.sidebar.file_uploader(key="upload").upload("bad.csv", bad, "text/csv")
    app.run()
    assert not app.exception
    msg = app.error[0].value
    assert "bad.csv" in msg and "row 2" in msg and "input_tokens" in msg


def test_unreadable_upload_type_is_refused(app: AppTest) -> None:
    app.sidebar.radio(key="source").set_value("Upload").run()
    app.sidebar.file_uploader(key="upload").upload("notes.csv", b"hello,world\n1,2\n", "text/csv")
    app.run()
    assert not app.exception
    assert "notes.csv" in app.error[0].value


def test_missing_path_is_a_clear_error(app: AppTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETWISE_DATA_ROOTS", str(tmp_path))
    app.sidebar.radio(key="source").set_value("File path").run()
    app.sidebar.text_input(key="path").set_value(str(tmp_path / "nope.csv")).run()
    assert not app.exception
    assert (
        app.error[0].value
        == f"{tmp_path / 'nope.csv'}: no such file or folder (expected a trace file or folder)"
    )


def test_a_file_outside_the_data_folders_is_never_read_or_shown(app: AppTest, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 19: the path field showed the first line of any readable file (/etc/passwd). Now a path
    outside the data folders (symlinks resolved) is refused before it is opened, naming only the path."""
    secret = tmp_path / "secret" / "passwd"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    roots = tmp_path / "data"
    roots.mkdir()
    (roots / "trace.csv").symlink_to(secret)  # a link inside the data folder pointing out of it
    monkeypatch.setenv("FLEETWISE_DATA_ROOTS", str(roots))
    app.sidebar.radio(key="source").set_value("File path").run()
    for path in (secret, roots / "trace.csv", Path("/etc/passwd"), Path("/proc/self/environ")):
        app.sidebar.text_input(key="path").set_value(str(path)).run()
        assert not app.exception
        shown = " ".join(e.value for e in app.error) + " ".join(m.value for m in app.markdown)
        assert "outside the dashboard's data folders" in shown
        assert "root:x" not in shown and "PATH=" not in shown


def test_an_upload_is_never_written_through_a_planted_link(tmp_path: Path) -> None:
    from dashboards.scenario import save_upload

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    good = b"arrival_s,input_tokens,output_tokens\n0.0,10,5\n"
    import hashlib

    folder = tmp_path / "uploads" / hashlib.sha256(good).hexdigest()[:16]
    folder.mkdir(parents=True)
    (folder / "t.csv").symlink_to(victim)
    src = save_upload("t.csv", good, dest_dir=tmp_path / "uploads")
    assert victim.read_text() == "keep me"
    assert Path(src.path).read_bytes() == good and not Path(src.path).is_symlink()


def test_good_upload_is_described(app: AppTest) -> None:
    app.sidebar.radio(key="source").set_value("Upload").run()
    good = "arrival_s,input_tokens,output_tokens\n" + "".join(
        f"{i * 0.5},{100 + i},{10 + i}\n" for i in range(40)
    )
    app.sidebar.file_uploader(key="upload").upload("mine.csv", good.encode(), "text/csv")
    app.run()
    assert not app.exception
    assert app.success[0].value.startswith("upload mine.csv: 40 requests")


def test_shared_azure_trace_by_path_plans(shared_traces: Path) -> None:
    at = AppTest.from_file(str(APP), default_timeout=300)
    at.run()
    at.sidebar.radio(key="source").set_value("File path").run()
    path = shared_traces / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
    at.sidebar.text_input(key="path").set_value(str(path)).run()
    assert not at.exception
    assert at.success[0].value.startswith("AzureLLMInferenceTrace_conv.csv: 19,366 requests")
    goto(at, "Plan")
    at.multiselect(key="plan_gpus").set_value(["H100-SXM"]).run()
    at.button(key="plan_run").click().run()
    assert not at.exception
    assert at.success[0].value.startswith("Plan: ")


SHARED: tuple[Any, ...] = (
    # trace, its request count, TTFT p99 target in ms (Mooncake's prompts average 15k tokens), and whether
    # the slow pages (Autoscaling, Power) run too: once is enough to show they take a real trace, and the
    # suite must stay under 20 minutes on CI's two cores
    pytest.param(
        "azure_llm_2023/AzureLLMInferenceTrace_conv.csv", "19,366 requests", 2000.0, True, id="azure-conv"
    ),
    pytest.param("azure_llm_2023/AzureLLMInferenceTrace_code.csv", "8,819 requests", 2000.0, False,
                 id="azure-code"),
    pytest.param("mooncake/synthetic_trace.jsonl", "3,993 requests", 10000.0, False, id="mooncake"),
)


@pytest.mark.slow
@pytest.mark.parametrize(("rel", "count", "ttft_ms", "all_pages"), SHARED)
def test_shared_trace_on_every_trace_driven_page(
    shared_traces: Path, rel: str, count: str, ttft_ms: float, all_pages: bool
) -> None:
    """Trace and Replay on each real trace, picked by path, and Autoscaling and Power on the first
    (Plan: the Azure test above)."""
    at = AppTest.from_file(str(APP), default_timeout=400)
    at.run()
    at.sidebar.radio(key="source").set_value("File path").run()
    at.sidebar.text_input(key="path").set_value(str(shared_traces / rel)).run()
    at.sidebar.number_input(key="ttft").set_value(ttft_ms).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.success[0].value.startswith(f"{Path(rel).name}: {count}")
    goto(at, "Replay")
    at.number_input(key="replay_replicas").set_value(4)
    at.button(key="replay_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert (at.success or at.warning)[0].value.startswith(f"Replay: {count.split(maxsplit=1)[0]} of ")
    if not all_pages:
        return
    goto(at, "Autoscaling")
    at.multiselect(key="auto_policies").set_value(["hpa"]).run()
    at.button(key="auto_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert list(at.table[0].value["policy"])[1:] == ["hpa"]
    goto(at, "Power")
    at.number_input(key="power_nameplate").set_value(1)
    at.number_input(key="power_pool").set_value(2)
    at.number_input(key="power_rps").set_value(1.0)
    at.button(key="power_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert (at.success or at.warning)[0].value.startswith("Row budget ")
    assert len(at.get("plotly_chart")) == 2


def test_replay_with_faults_in_the_loop_reports_them(app: AppTest) -> None:
    goto(app, "Replay")
    app.number_input(key="replay_replicas").set_value(4)
    app.toggle(key="replay_faults").set_value(True)
    app.number_input(key="replay_slow_rate").set_value(2.0)
    app.radio(key="replay_detect").set_value("drain")
    app.button(key="replay_run").click().run()
    assert not app.exception
    rows = dict(zip(app.table[0].value["metric"], app.table[0].value["value"], strict=True))
    assert "straggler episodes" in rows["faults in the loop"]
    assert "drained and replaced" in rows["straggler detector"]


def test_replay_page_sizes_the_spares_for_faults(app: AppTest) -> None:
    goto(app, "Replay")
    app.number_input(key="replay_replicas").set_value(1)
    app.button(key="replay_run").click().run()
    app.number_input(key="spares_target").set_value(0.99)
    app.number_input(key="spares_scale").set_value(50000.0)
    app.button(key="spares_run").click().run(timeout=600)
    assert not app.exception
    assert app.success[-1].value.startswith("1 spare replica (2 GPUs in all)")
    assert list(app.table[-1].value["spares"]) == ["0", "1", "2", "3"]
