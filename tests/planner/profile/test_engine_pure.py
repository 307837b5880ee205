"""The engine validation's pure parts: the trace it replays and the metrics it computes."""

from __future__ import annotations

import math

import numpy as np

from planner.profile.engine import LengthModel, burst_capacity, draw_requests, request_metrics


def test_trace_is_shaped_like_azure_conversation() -> None:
    reqs = draw_requests(np.random.default_rng(1), n=4000, rate_rps=2.0, lengths=LengthModel())
    ins = np.array([r.input_tokens for r in reqs])
    outs = np.array([r.output_tokens for r in reqs])
    assert 900 < np.median(ins) < 1100
    assert 115 < np.median(outs) < 145
    assert ins.max() <= 4096 and outs.max() <= 256 and outs.min() >= 4
    gaps = np.diff([r.arrival_s for r in reqs])
    assert abs(gaps.mean() - 0.5) < 0.03  # Poisson at 2 req/s
    assert len({r.request_id for r in reqs}) == len(reqs)


def test_request_metrics() -> None:
    ttft, tpot, e2e = request_metrics(1.0, [1.2, 1.3, 1.5])
    assert (ttft, tpot, e2e) == (0.2, 0.15, 0.5)
    assert math.isnan(request_metrics(1.0, [1.2])[1])
    assert all(math.isnan(x) for x in request_metrics(1.0, []))


def test_burst_capacity_ignores_the_lonely_tail() -> None:
    # ten requests produce 10 tokens/s together for 1 s; one straggler then runs alone until 10 s
    tokens = [{"t_s": 0.01 * i} for i in range(1, 101)] + [{"t_s": 1.0 + 0.5 * i} for i in range(1, 19)]
    rows = [{"arrival_s": 0.0, "e2e_s": 1.0}] * 9 + [{"arrival_s": 0.0, "e2e_s": 10.0}]
    assert burst_capacity(tokens, rows) == 100.0
