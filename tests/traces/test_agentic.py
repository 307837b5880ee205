"""Agentic sessions: the loader's checks of turn and think_s, the statistics, and the generator."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from traces.errors import InputError
from traces.load import load_trace
from traces.stats import describe
from traces.synth import synthesize
from traces.synth_config import parse_config
from traces.synth_spec import AgentSpec, IndependentLengths, LognormalLengths, PoissonArrivals, SynthSpec

GOOD = ("arrival_s,input_tokens,output_tokens,session_id,turn,think_s\n"
        "0,10,5,a,0,\n1,20,5,a,1,2.5\n2,20,5,b,0,\n3,30,5,a,2,1\n")


def _csv(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "t.csv"
    p.write_text(text)
    return p


def test_loader_reads_turn_and_think(tmp_path: Path) -> None:
    tr = load_trace(_csv(tmp_path, GOOD), format="canonical")
    assert tr.df.schema["turn"] == pl.Int32 and tr.df.schema["think_s"] == pl.Float64
    assert tr.df["think_s"].to_list() == [None, 2.5, None, 1.0]


@pytest.mark.parametrize(("old", "new", "row", "field", "what"), [
    ("1,20,5,a,1,2.5", "1,20,5,a,1,-1", 2, "think_s", "bad think time"),
    ("1,20,5,a,1,2.5", "1,20,5,a,1,x", 2, "think_s", "not a number"),
    ("1,20,5,a,1,2.5", "1,20,5,a,1.5,2.5", 2, "turn", "bad turn"),
    ("1,20,5,a,1,2.5", "1,20,5,a,-1,2.5", 2, "turn", "bad turn"),
    ("1,20,5,a,1,2.5", "1,20,5,,1,2.5", 2, "turn", "without a session_id"),
    ("3,30,5,a,2,1", "3,30,5,a,1,1", 4, "turn", "does not follow turn 1"),
])
def test_loader_names_the_bad_row(tmp_path: Path, old: str, new: str, row: int, field: str,
                                  what: str) -> None:
    with pytest.raises(InputError) as err:
        load_trace(_csv(tmp_path, GOOD.replace(old, new)), format="canonical")
    assert err.value.row == row and err.value.field == field and what in str(err.value)


def test_stats_show_sessions_and_think_times(tmp_path: Path) -> None:
    s = describe(load_trace(_csv(tmp_path, GOOD), format="canonical")).sessions
    assert s is not None and (s.sessions, s.session_requests) == (2, 4)
    assert s.turns_per_session.max == 3 and s.think_s is not None and s.think_s.mean == pytest.approx(1.75)


def _agents(seed: int = 0, **kw: float) -> SynthSpec:
    lengths = IndependentLengths(LognormalLengths.from_mean_median(800.0, 400.0, max_tokens=8000),
                                 LognormalLengths.from_mean_median(300.0, 150.0, max_tokens=8000))
    return SynthSpec(arrivals=PoissonArrivals(1.0), lengths=lengths, duration_s=3000.0, seed=seed,
                     agents=AgentSpec(**kw))  # type: ignore[arg-type]


def test_generator_statistics_follow_the_spec() -> None:
    tr = synthesize(_agents(mean_turns=6.0, tool_median_s=2.0, tool_sigma=1.0))
    df = tr.df
    turns = df.group_by("session_id").len()["len"].to_numpy()
    assert turns.mean() == pytest.approx(6.0, rel=0.1)  # geometric, cut a little by the duration
    think = df.filter(pl.col("turn") > 0)["think_s"].to_numpy()
    assert np.median(think) == pytest.approx(2.0, rel=0.08)
    assert np.std(np.log(think)) == pytest.approx(1.0, rel=0.08)
    assert df.filter(pl.col("turn") == 0)["think_s"].null_count() == df.filter(pl.col("turn") == 0).height
    # each later turn's prompt holds the previous prompt and answer: the context only grows
    chain = df.sort("session_id", "turn").with_columns(
        (pl.col("input_tokens").shift(1) + pl.col("output_tokens").shift(1)).over("session_id").alias("ctx"))
    later = chain.filter(pl.col("ctx").is_not_null())
    assert (later["input_tokens"] > later["ctx"]).all()
    # and so prefix reuse: an infinite cache hits most blocks
    hit = describe(tr).prefix_hit_ratio
    assert hit is not None and hit > 0.7


def test_generator_is_seeded_and_validates() -> None:
    a, b = synthesize(_agents(seed=3)), synthesize(_agents(seed=3))
    assert a.df.equals(b.df) and not a.df.equals(synthesize(_agents(seed=4)).df)
    with pytest.raises(InputError, match=r"agents\.tool_median_s"):
        synthesize(_agents(tool_median_s=0.0))
    with pytest.raises(InputError, match="field agents"):
        parse_config({"duration_s": 10, "arrival": {"rate": 1}, "sessions": {}, "agents": {}})


def test_nominal_schedule_spaces_turns_by_service_and_think() -> None:
    spec = _agents(nominal_ttft_s=0.5, nominal_tpot_s=0.02)
    df = synthesize(spec).df.sort("session_id", "turn").with_columns(
        pl.col("arrival_s").shift(1).over("session_id").alias("prev_arr"),
        pl.col("output_tokens").shift(1).over("session_id").alias("prev_out"))
    later = df.filter(pl.col("prev_arr").is_not_null())
    want = later["prev_arr"] + 0.5 + (later["prev_out"] - 1) * 0.02 + later["think_s"]
    assert np.allclose(later["arrival_s"].to_numpy(), want.to_numpy())
    assert not math.isnan(float(later["think_s"].min()))  # type: ignore[arg-type]
