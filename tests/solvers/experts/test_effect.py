"""The perf model's view of a placement's imbalance: slower steps, less decode capacity."""

from __future__ import annotations

import itertools

import pytest

from planner.catalog import load_catalog
from solvers.experts.effect import ep_layout, placement_effect
from traces.errors import InputError


def test_more_imbalance_means_slower_steps_and_less_capacity() -> None:
    cat = load_catalog()
    rows = placement_effect(cat.model("Mixtral-8x7B"), cat.gpu("H200-SXM"), ep_layout(2),
                            {"uniform": 1.0, "mild": 1.2, "bad": 2.0})
    assert [r.name for r in rows] == ["uniform", "mild", "bad"]
    for lo, hi in itertools.pairwise(rows):
        assert all(b > a for a, b in zip(lo.tpot_s, hi.tpot_s, strict=True))
        assert hi.prefill_chunk_s > lo.prefill_chunk_s
        assert hi.decode_tokens_per_s < lo.decode_tokens_per_s
    assert rows[0].decode_batch > 0
    # at the reported batch the step is within the default 50 ms target
    assert rows[0].decode_tokens_per_s > 0


def test_deepseek_v3_on_the_placement_gpus() -> None:
    cat = load_catalog()
    rows = placement_effect(cat.model("DeepSeek-V3"), cat.gpu("H200-SXM"), ep_layout(32),
                            {"uniform": 1.0, "greedy": 1.05}, weight_dtype="fp8")
    assert rows[1].tpot_s[-1] > rows[0].tpot_s[-1]
    assert ep_layout(32).ep == ep_layout(32).gpus == 32


@pytest.mark.parametrize(("model", "imbalances"), [("Llama-3.1-8B", {"u": 1.0}),
                                                   ("Mixtral-8x7B", {"u": 0.9}),
                                                   ("Mixtral-8x7B", {"u": float("nan")})])
def test_bad_input_raises_input_error(model: str, imbalances: dict[str, float]) -> None:
    cat = load_catalog()
    with pytest.raises(InputError):
        placement_effect(cat.model(model), cat.gpu("H200-SXM"), ep_layout(2), imbalances)


def test_layout_the_perf_model_rejects_is_an_input_error() -> None:
    cat = load_catalog()
    with pytest.raises(InputError, match="ep=3"):
        placement_effect(cat.model("Mixtral-8x7B"), cat.gpu("H200-SXM"), ep_layout(3), {"u": 1.0})
