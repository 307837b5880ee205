"""``fleetwise calibrate --prometheus-url``: per-cluster corrections fitted on a fleet's own metrics,
back-tested on a later window (:mod:`planner.live.telemetry_fit`). Imported only when ``calibrate`` is given
``--prometheus-url``, so its imports cost nothing else."""

from __future__ import annotations

import json
import time
from pathlib import Path

from planner.cli.console import Col, fitted_table, table_console
from planner.live.telemetry_fit import ERROR_KEYS, calibrate_from_prometheus, error_rows
from planner.live.time_range import parse_range


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
    from planner.perf.precision import resolve_precision
    from planner.sim.writer import refuse_existing_file
    from traces.atomic import write_text_atomic

    refuse_existing_file(out)
    cat = load_catalog()
    spec = cat.model(model)
    prec = resolve_precision(precision, spec)
    now = time.time()
    result = calibrate_from_prometheus(
        url,
        parse_range(fit_range, now),
        model=spec,
        gpu=cat.gpu(gpu),
        backtest_range=parse_range(backtest_range, now) if backtest_range else None,
        tp=tp,
        replicas=replicas,
        weight_dtype=prec.weights,
        kv_dtype=prec.kv,
        precision=prec.label,
        selector=selector,
        step_s=step_s,
        mem_fraction=mem_fraction,
    )
    doc = result.to_json()
    if out is not None:
        write_text_atomic(out, json.dumps(doc, indent=2) + "\n")
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    console = table_console()
    fit, test = result.fit, result.test
    c = fit.correction
    console.print(
        f"Fitted on {result.source}, {fit.calm_share:.0%} of the window calm ({fit.replays} replays): "
        f"bandwidth x{c.bandwidth:.3f}, compute x{c.compute:.3f}, +{c.step_add_s * 1e3:.2f} ms per step "
        f"over the {result.setup.engine} profile of {gpu}.",
        highlight=False,
    )
    rows = error_rows(fit, test)
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
