"""Speculative decoding in expectation: the setting, its published defaults and the option string.

A speculative step proposes ``k`` draft tokens per sequence, the target model verifies the ``k + 1``
query tokens in one forward pass, and the longest accepted prefix plus one target token is emitted.
With an i.i.d. per-token acceptance rate ``a`` the expected tokens per step are (Leviathan et al. 2023,
"Fast Inference from Transformers via Speculative Decoding", arXiv:2211.17192, eq. 1)::

    E = (1 - a^(k+1)) / (1 - a)

The step model (:mod:`planner.perf.kernel`) charges the verify step (GEMM rows and attention FLOPs
times ``k + 1`` over the same KV bytes) plus the draft (``draft_layers`` transformer layers per proposed
token; none for n-gram lookup) and hands the event loop a *token-equivalent* step, the decode part divided
by ``E``: the loop stays one token per sequence per step, and TPOT comes out as verify-step / ``E``.

>>> spec = parse_spec_decode("mtp")
>>> spec.k, spec.acceptance, round(spec.expected_tokens, 3)
(1, 0.85, 1.85)
>>> round(parse_spec_decode("eagle:k=3:accept=0.7").expected_tokens, 4)
2.533
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from traces.errors import InputError


class SpecMethod(StrEnum):
    """Where the draft tokens come from."""

    MTP = "mtp"
    """The model's own multi-token-prediction module (DeepSeek-V3: one extra transformer block)."""
    EAGLE = "eagle"
    """An EAGLE-style draft head: one decoder layer over the target's features."""
    NGRAM = "ngram"
    """Prompt lookup: n-gram matches in the context, no GPU work to draft."""


@dataclass(frozen=True)
class SpecDefaults:
    """Published defaults of one method.

    Attributes:
        k: draft tokens proposed per step.
        acceptance: per-token acceptance rate (i.i.d. approximation).
        draft_layers: transformer layers the draft runs per proposed token (0: CPU-side lookup).
        estimate: True where the rate is reasoned from the sources rather than read off them.
        sources: where the numbers come from.
    """

    k: int
    acceptance: float
    draft_layers: float
    estimate: bool
    sources: tuple[str, ...]


DEFAULTS: dict[SpecMethod, SpecDefaults] = {
    SpecMethod.MTP: SpecDefaults(
        k=1, acceptance=0.85, draft_layers=1.0, estimate=False,
        sources=("DeepSeek-V3 Technical Report (arXiv:2412.19437) sec. 5.4.3: 'the acceptance rate of the "
                 "second token prediction ranges between 85% and 90%', 1.8x TPS; 0.85 is the low end",)),
    SpecMethod.EAGLE: SpecDefaults(
        k=3, acceptance=0.75, draft_layers=1.0, estimate=True,
        sources=("EAGLE (Li et al., arXiv:2401.15077): draft acceptance accuracy about 0.8 for a "
                 "one-layer feature-level head; EAGLE-3 (arXiv:2503.01840) reports longer acceptance "
                 "lengths with tree drafts",
                 "estimate: 0.75 per token for a chain of k=3 (E = 2.73) at serving temperatures, below "
                 "the papers' greedy tree figures")),
    SpecMethod.NGRAM: SpecDefaults(
        k=3, acceptance=0.5, draft_layers=0.0, estimate=True,
        sources=("vLLM issue #19254 (Qwen3-32B, n-gram, k=3): draft acceptance 39-61 %, mean acceptance "
                 "length 2.16-2.83, per-position 0.54/0.36/0.26 to 0.73/...",
                 "vLLM issue #16258 (code, n-gram, k=5): draft acceptance 0.70",
                 "estimate: 0.5 per token (E = 1.88 at k=3); prompt lookup pays off on input-grounded "
                 "output (summaries, code edits) and little on open chat")),
}


@dataclass(frozen=True)
class SpecDecode:
    """One speculative-decoding setting.

    Attributes:
        method: where the draft comes from.
        k: draft tokens proposed per step (>= 1).
        acceptance: per-token acceptance rate, 0 <= a < 1.
        draft_layers: transformer layers the draft runs per proposed token.
    """

    method: SpecMethod
    k: int
    acceptance: float
    draft_layers: float

    def __post_init__(self) -> None:
        if not 1 <= self.k <= 16:
            raise InputError(f"spec decode k={self.k} out of range", field="--spec-decode",
                             expected="k from 1 to 16")
        if not (math.isfinite(self.acceptance) and 0.0 <= self.acceptance < 1.0):
            raise InputError(f"spec decode acceptance {self.acceptance} out of range", field="--spec-decode",
                             expected="accept in [0, 1)")

    @property
    def expected_tokens(self) -> float:
        """``E = (1 - a^(k+1)) / (1 - a)``: tokens emitted per verify step per sequence."""
        return expected_tokens(self.k, self.acceptance)

    @property
    def sources(self) -> tuple[str, ...]:
        return DEFAULTS[self.method].sources

    def describe(self) -> str:
        """One line: the setting, its E and where the default rate comes from."""
        d = DEFAULTS[self.method]
        origin = "default" + (" (estimate)" if d.estimate else "") if (
            self.acceptance == d.acceptance) else "given"
        return (f"speculative decoding {self.method.value}: k={self.k}, acceptance {self.acceptance:g} "
                f"({origin}) -> E = {self.expected_tokens:.3f} tokens per step; source: {d.sources[0]}")

    def to_json(self) -> dict[str, object]:
        return {"method": self.method.value, "k": self.k, "acceptance": self.acceptance,
                "expected_tokens_per_step": self.expected_tokens, "draft_layers": self.draft_layers,
                "sources": list(self.sources)}


def expected_tokens(k: int, a: float) -> float:
    """Expected tokens per step for ``k`` proposals at i.i.d. acceptance ``a``.

    >>> expected_tokens(1, 0.85)
    1.85
    >>> expected_tokens(4, 0.0), expected_tokens(3, 0.5)
    (1.0, 1.875)
    """
    return float(sum(a**i for i in range(k + 1)))


SPEC_HELP = ("speculative decoding in the step model: mtp, eagle or ngram, optionally :k=N (draft tokens "
             "per step) and :accept=A (per-token acceptance, 0..1), e.g. mtp:k=1:accept=0.85; defaults "
             "from published measurements")


def parse_spec_decode(text: str) -> SpecDecode:
    """``method[:k=N][:accept=A]`` as ``--spec-decode`` takes it.

    >>> parse_spec_decode("ngram:k=5").acceptance
    0.5
    >>> parse_spec_decode("medusa")
    Traceback (most recent call last):
    ...
    traces.errors.InputError: field --spec-decode: unknown speculative-decoding method 'medusa' ...
    """
    parts = [p.strip() for p in text.strip().split(":")]
    try:
        method = SpecMethod(parts[0].lower())
    except ValueError:
        raise InputError(f"unknown speculative-decoding method {parts[0]!r}", field="--spec-decode",
                         expected="mtp, eagle or ngram[:k=N][:accept=A]") from None
    d = DEFAULTS[method]
    k, acc = d.k, d.acceptance
    for p in parts[1:]:
        key, eq, val = p.partition("=")
        try:
            if not eq:
                raise ValueError
            if key == "k":
                k = int(val)
            elif key in ("accept", "a"):
                acc = float(val)
            else:
                raise ValueError
        except ValueError:
            raise InputError(f"bad speculative-decoding part {p!r} in {text!r}", field="--spec-decode",
                             expected="k=N or accept=A, e.g. mtp:k=1:accept=0.85") from None
    return SpecDecode(method=method, k=k, acceptance=acc, draft_layers=d.draft_layers)
