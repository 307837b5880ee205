"""The engine-overhead fit recovers a known engine term from request windows, and checks held-out levels."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from planner.catalog.schema import Catalog
from planner.perf import build_replica_perf
from planner.perf.calibration import PRIOR
from planner.perf.engine_check import (
    _explain,
    engine_model,
    fit_engine,
    load_requests,
    with_engine_overhead,
)
from traces.errors import InputError


def _requests(perf: object, seed: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for level, rate in ((0.25, 2.0), (0.5, 4.0), (0.75, 6.0), (1.0, 8.0)):
        t = 0.0
        for i in range(60):
            t += rng.exponential(1 / rate)
            out = int(rng.integers(20, 200))
            ttft = 0.05 + rng.exponential(0.05)
            rows.append({"load_level": level, "rate_rps": rate, "request_id": f"{level}-{i}", "arrival_s": t,
                         "input_tokens": int(rng.integers(100, 2000)), "output_tokens": out,
                         "ttft_s": ttft, "e2e_s": ttft + out * 0.03 * (1 + level), "tpot_s": 1.0})
    return pl.DataFrame(rows)


def test_fit_engine_recovers_the_engine_term(catalog: Catalog, tmp_path: Path) -> None:
    perf = build_replica_perf(catalog.model("Llama-3.1-8B"), catalog.gpu("H100-SXM"),
                              calibration=replace(PRIOR, gpu="H100-SXM"))
    df = _requests(perf)
    pred, batch = _explain(df, perf)
    assert batch.min() >= 1
    df = df.with_columns(pl.Series("tpot_s", pred + 0.004 + 0.0002 * batch))
    df.write_parquet(tmp_path / "engine_requests.parquet")
    (tmp_path / "engine_meta.json").write_text(json.dumps({"model_shape": {"num_layers": 16}}))
    reqs, meta = load_requests(tmp_path)
    fit = fit_engine(reqs, perf, "test engine")
    assert fit.engine_step_s == pytest.approx(0.004, rel=1e-3)
    assert fit.engine_per_seq_s == pytest.approx(0.0002, rel=1e-3)
    assert [r[1] for r in fit.levels] == ["fit", "check", "fit", "check"]
    assert all(r[3] < 0.01 for r in fit.levels)
    assert engine_model(catalog.model("Llama-3.1-8B"), meta).num_layers == 16
    cal = with_engine_overhead(replace(PRIOR, engine_step_s=fit.engine_step_s))
    assert cal.step_s == pytest.approx(PRIOR.step_s + 0.004, rel=1e-3)


def test_load_requests_names_the_missing_column(tmp_path: Path) -> None:
    pl.DataFrame({"load_level": [1.0]}).write_parquet(tmp_path / "engine_requests.parquet")
    with pytest.raises(InputError, match="missing column 'arrival_s'"):
        load_requests(tmp_path)
    with pytest.raises(InputError, match="not found"):
        load_requests(tmp_path / "nope")
