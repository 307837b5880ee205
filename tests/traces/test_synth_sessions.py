"""Multi-turn sessions in the synthesizer: each turn's prompt extends the one before, block ids follow the
shared content (system prompt across sessions, the conversation within one), seeds reproduce, traces
without sessions are unchanged, and the reuse that real chat traces have is there."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from planner.cli.main import main
from traces.default import default_spec, default_trace
from traces.errors import InputError
from traces.load import load_trace
from traces.schema import RequestTrace
from traces.stats import describe
from traces.synth import synthesize
from traces.synth_config import parse_config
from traces.synth_spec import (
    GammaArrivals,
    IndependentLengths,
    LognormalLengths,
    PoissonArrivals,
    SessionSpec,
    SynthSpec,
    TenantSpec,
)
from traces.validate import validate_trace

# New user messages around 150 tokens, answers around 55: contexts grow by ~200 tokens a turn.
CHAT = IndependentLengths(
    LognormalLengths(mu=5.0, sigma=0.6, max_tokens=4096), LognormalLengths(mu=4.0, sigma=0.6, max_tokens=1024)
)
SESSIONS = SessionSpec(mean_turns=4.0, mean_think_s=20.0, system_tokens=1000, block_size=16)


def chat_spec(*, duration: float = 900.0, seed: int = 0, sessions: SessionSpec | None = SESSIONS,
              **kw: object) -> SynthSpec:
    return SynthSpec(arrivals=PoissonArrivals(rate=1.0), lengths=CHAT, duration_s=duration, seed=seed,
                     sessions=sessions, **kw)  # type: ignore[arg-type]


def by_session(t: RequestTrace) -> dict[str, list[dict[str, object]]]:
    """The rows of each session, in trace (arrival) order."""
    out: dict[str, list[dict[str, object]]] = defaultdict(list)
    for row in t.df.iter_rows(named=True):
        out[row["session_id"]].append(row)
    return out


def reuse_share(t: RequestTrace) -> float:
    """Share of prompt tokens in blocks whose id an earlier block of the trace already had."""
    bs = t.meta.block_size
    assert bs is not None
    seen: set[int] = set()
    hit = total = 0
    for inp, ids in zip(t.df["input_tokens"].to_list(), t.df["prefix_hashes"].to_list(), strict=True):
        for pos, h in enumerate(ids):
            tokens = min(bs, inp - pos * bs)
            total += tokens
            if h in seen:
                hit += tokens
            seen.add(h)
    return hit / total


def test_turns_extend_the_conversation_and_block_ids_follow_the_content() -> None:
    t = validate_trace(synthesize(chat_spec()))
    bs, system_blocks = 16, 1000 // 16
    assert t.meta.block_size == bs
    assert t.df["session_id"].dtype == pl.String and t.df["session_id"][0] == "s000000"
    sessions = by_session(t)
    assert len(sessions) == pytest.approx(900, rel=0.15)  # the Poisson process gives the first turns
    assert max(len(turns) for turns in sessions.values()) > 4  # some sessions do have many turns
    owner_of: dict[int, str] = {}
    partial_ids: list[int] = []
    for sid, turns in sessions.items():
        prev: dict[str, object] | None = None
        for turn in turns:
            inp, out, ids = turn["input_tokens"], turn["output_tokens"], turn["prefix_hashes"]
            assert isinstance(inp, int) and isinstance(out, int) and isinstance(ids, list)
            assert len(ids) == -(-inp // bs)
            assert ids[:system_blocks] == list(range(system_blocks))  # the shared system prompt
            full = ids[: inp // bs]
            for h in full[system_blocks:]:
                assert owner_of.setdefault(h, sid) == sid, "a full block shared by two sessions"
            if inp % bs:
                partial_ids.append(ids[-1])
            if prev is not None:
                p_inp, p_out, p_ids = prev["input_tokens"], prev["output_tokens"], prev["prefix_hashes"]
                assert isinstance(p_inp, int) and isinstance(p_out, int) and isinstance(p_ids, list)
                assert turn["arrival_s"] >= prev["arrival_s"]  # type: ignore[operator]
                assert inp - p_inp - p_out >= 1  # the new message
                assert ids[: p_inp // bs] == p_ids[: p_inp // bs]  # the previous prompt's full blocks
            prev = turn
    assert len(set(partial_ids)) == len(partial_ids)
    assert not set(partial_ids) & set(owner_of) and min(partial_ids) >= system_blocks


def test_first_turns_are_the_arrival_process_and_turns_follow_the_spec() -> None:
    spec = SynthSpec(arrivals=GammaArrivals(rate=2.0, cv=2.0), lengths=CHAT, duration_s=3000.0, seed=4,
                     sessions=SessionSpec(mean_turns=3.0, mean_think_s=5.0, max_context_tokens=1_000_000))
    t = synthesize(spec)
    firsts = t.df.group_by("session_id", maintain_order=True).first()
    plain = synthesize(replace(spec, sessions=None))
    # Sessions draw from their own stream: the first turns are exactly the arrivals without sessions.
    assert np.array_equal(firsts["arrival_s"].to_numpy(), plain.df["arrival_s"].to_numpy())
    turns = t.df.group_by("session_id").len()["len"].to_numpy()
    assert turns.min() >= 1 and turns.mean() == pytest.approx(3.0, rel=0.05)
    gaps = t.df.select(pl.col("arrival_s").diff().over("session_id")).drop_nulls()["arrival_s"].to_numpy()
    assert gaps.mean() == pytest.approx(5.0, rel=0.05)
    assert t.df["arrival_s"].to_numpy().max() < 3000.0  # late turns dropped


def test_context_limit_ends_sessions() -> None:
    limit = 1400
    t = synthesize(chat_spec(sessions=replace(SESSIONS, mean_turns=8.0, max_context_tokens=limit)))
    assert t.df["input_tokens"].to_numpy().max() <= limit
    long = synthesize(chat_spec(sessions=replace(SESSIONS, mean_turns=8.0)))
    assert t.num_requests < 0.6 * long.num_requests


def test_reuse_is_large_like_real_conversations() -> None:
    t = synthesize(chat_spec())
    share = reuse_share(t)
    assert share > 0.5
    # the block-count view that traces.stats reports agrees in direction
    ratio = describe(t).prefix_hit_ratio
    assert ratio is not None and ratio > 0.5
    no_system = synthesize(chat_spec(sessions=replace(SESSIONS, system_tokens=0, mean_turns=1.0)))
    assert reuse_share(no_system) == 0.0  # single turns without a system prompt share nothing


def test_slo_class_is_drawn_per_session() -> None:
    t = synthesize(chat_spec(slo_classes=(("interactive", 3.0), ("batch", 1.0))))
    per = t.df.group_by("session_id").agg(
        pl.col("slo_class").n_unique().alias("k"), pl.col("slo_class").first()
    )
    assert per["k"].max() == 1
    assert (per["slo_class"] == "interactive").mean() == pytest.approx(0.75, abs=0.06)


def test_seed_reproduces_and_traces_without_sessions_are_unchanged() -> None:
    a, b = synthesize(chat_spec(seed=3)), synthesize(chat_spec(seed=3))
    assert a.df.equals(b.df) and a.meta == b.meta
    assert not synthesize(chat_spec(seed=4)).df.equals(a.df)
    # The bundled default trace (tenants, hashes) still regenerates from its spec, with sessions=None.
    spec = default_spec()
    assert spec.sessions is None
    assert synthesize(spec).df.equals(default_trace().df)
    assert "session_id" not in synthesize(chat_spec(sessions=None)).df.columns


@pytest.mark.parametrize(
    ("sessions", "field"),
    [
        (replace(SESSIONS, mean_turns=0.5), "sessions.mean_turns"),
        (replace(SESSIONS, mean_turns=float("nan")), "sessions.mean_turns"),
        (replace(SESSIONS, mean_think_s=0.0), "sessions.mean_think_s"),
        (replace(SESSIONS, system_tokens=-1), "sessions.system_tokens"),
        (replace(SESSIONS, block_size=0), "sessions.block_size"),
        (replace(SESSIONS, max_context_tokens=1000), "sessions.max_context_tokens"),
        (replace(SESSIONS, max_context_tokens=2**31), "sessions.max_context_tokens"),
    ],
)
def test_bad_session_values_name_the_field(sessions: SessionSpec, field: str) -> None:
    with pytest.raises(InputError) as exc:
        synthesize(chat_spec(sessions=sessions))
    assert exc.value.field == field


def test_tenants_and_sessions_are_exclusive() -> None:
    with pytest.raises(InputError) as exc:
        synthesize(chat_spec(tenants=TenantSpec(count=2)))
    assert exc.value.field == "sessions"
    base = {"duration_s": 60, "arrival": {"rate": 1}}
    with pytest.raises(InputError) as exc:
        parse_config({**base, "tenants": {"count": 2}, "sessions": {}})
    assert exc.value.field == "sessions"
    with pytest.raises(InputError) as exc:
        parse_config({**base, "sessions": {"system_tokens": 500, "max_context_tokens": 500}})
    assert exc.value.field == "sessions"
    with pytest.raises(InputError) as exc:
        parse_config({**base, "sessions": {"mean_turns": 0}})
    assert exc.value.field == "sessions.mean_turns"


def test_config_builds_the_session_spec() -> None:
    config = parse_config({
        "duration_s": 60,
        "arrival": {"rate": 1},
        "sessions": {"mean_turns": 2.5, "mean_think_s": 30, "system_tokens": 0, "block_size": 32},
    })
    spec = config.to_spec(default_lengths=CHAT)
    assert spec.sessions == SessionSpec(mean_turns=2.5, mean_think_s=30.0, system_tokens=0, block_size=32)
    assert parse_config({"duration_s": 60, "arrival": {"rate": 1}, "sessions": {}}).to_spec(
        default_lengths=CHAT
    ).sessions == SessionSpec()


def test_cli_sessions_flags(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = tmp_path / "chat.parquet"
    code = main(["traces", "synth", "--out", str(out_file), "--rate", "0.5", "--duration", "600",
                 "--mean-turns", "3", "--think-s", "30", "--system-tokens", "512", "--block-size", "32",
                 "--seed", "2", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0 and json.loads(out)["stats"]["requests"] > 300
    t = load_trace(out_file)
    assert t.meta.block_size == 32 and t.df["session_id"].n_unique() == pytest.approx(300, rel=0.25)
    assert t.df["prefix_hashes"][0].to_list()[:16] == list(range(16))
    code = main(["traces", "synth", "--out", str(out_file), "--rate", "1", "--duration", "60", "--sessions",
                 "--tenants", "2"])
    _, err = capsys.readouterr()
    assert code == 2 and "--sessions" in err
