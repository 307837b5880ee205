"""``fleetwise calibrate --prometheus-url``: per-cluster corrections fitted on a fleet's own metrics,
back-tested on a later window (:mod:`planner.live.telemetry_fit`)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from planner.cli.console import Col, fitted_table, table_console
from planner.live.time_range import parse_range

ERROR_KEYS = ("ttft_mean", "ttft_p50", "ttft_p90", "itl_mean", "itl_p50", "itl_p90")


def run(
    *,
    url: str,
    fit_range: str,
    backtest_range: str | None,
    model: str,
    gpu: str,
    tp: int,
    replicas: int | None,
    precision: str,
    selector: str,
    step_s: float,
    mem_fraction: float | None,
    out: Path | None,
    as_json: bool,
) -> None:
    """Fit on ``fit_range``, back-test on ``backtest_range``, print (and write ``out``)."""
    from planner.catalog import load_catalog
    from planner.live.history import read_history
    from planner.live.promql import PromClient
    from planner.live.telemetry_fit import FleetSetup, back_test, fit_correction
    from planner.perf.precision import resolve_precision
    from planner.sim.writer import refuse_existing_file
    from traces.atomic import write_text_atomic

    refuse_existing_file(out)
    cat = load_catalog()
    spec = cat.model(model)
    prec = resolve_precision(precision, spec)
    client = PromClient(url, timeout_s=30.0)
    now = time.time()
    start, end = parse_range(fit_range, now)
    fit_hist = read_history(client, selector, start, end, step_s)
    server = dict(fit_hist.server)
    mem = mem_fraction if mem_fraction is not None else float(server.get("gpu_memory_utilization", 0.9))
    setup = FleetSetup(
        model=spec,
        gpu=cat.gpu(gpu),
        tp=tp,
        replicas=replicas if replicas is not None else max(int(fit_hist.replicas.max()), 1),
        weight_dtype=prec.weights,
        kv_dtype=prec.kv,
        mem_fraction=mem,
    )
    fit = fit_correction(fit_hist, setup)
    test = None
    if backtest_range:
        b0, b1 = parse_range(backtest_range, now)
        test = back_test(read_history(client, selector, b0, b1, step_s), setup, fit.correction)
    doc: dict[str, object] = {
        "source": fit_hist.source,
        "fit_range": [start, end],
        "model": model,
        "gpu": gpu,
        "tp": tp,
        "replicas": setup.replicas,
        "precision": prec.label,
        "correction": asdict(fit.correction),
        "fit": {
            "calm_share": fit.calm_share,
            "before": fit.before,
            "after": fit.after,
            "replays": fit.replays,
        },
        "backtest": None if test is None else {"range": backtest_range, **asdict(test)},
        "what": (
            "corrections to the engine profile that make the replay of the trace rebuilt from the "
            "fleet's metrics match its TTFT and inter-token-latency means in calm intervals (none "
            "waiting); errors are predicted / observed - 1"
        ),
    }
    if out is not None:
        write_text_atomic(out, json.dumps(doc, indent=2) + "\n")
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    console = table_console()
    c = fit.correction
    console.print(
        f"Fitted on {fit_hist.source}, {fit.calm_share:.0%} of the window calm ({fit.replays} replays): "
        f"bandwidth x{c.bandwidth:.3f}, compute x{c.compute:.3f}, +{c.step_add_s * 1e3:.2f} ms per step "
        f"over the {setup.engine} profile of {gpu}.",
        highlight=False,
    )
    rows = [("fit", "no", fit.before), ("fit", "yes", fit.after)]
    if test is not None:
        rows += [
            ("back-test", "no", test.uncalibrated),
            ("back-test", "yes", test.calibrated),
            ("back-test, all", "no", test.uncalibrated_all),
            ("back-test, all", "yes", test.calibrated_all),
        ]
    cols = [
        Col("window", left=True, keep=9),
        Col("calibrated", left=True, keep=9),
        *(Col(k, keep=8 if k.endswith("p50") else 5 if k.endswith("mean") else 1) for k in ERROR_KEYS),
    ]
    cells = [[w, cal, *(f"{errs[k]:+.1%}" for k in ERROR_KEYS)] for w, cal, errs in rows]
    console.print(
        fitted_table(
            console,
            "signed error, predicted / observed - 1 (calm intervals; 'all': queueing included)",
            cols,
            cells,
        )
    )
    if out is not None:
        console.print(f"wrote {out}", highlight=False)
