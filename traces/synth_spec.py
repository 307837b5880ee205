"""The frozen description of a synthetic trace: arrival processes, rate modulations, length models,
tenants with shared system prompts, multi-turn conversation sessions, and the :class:`SynthSpec` that
holds them.

:func:`traces.synth.synthesize` draws a trace from a spec; :mod:`traces.synth_config` is the pydantic
form of the same spec for YAML files and the CLI.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from traces.errors import InputError
from traces.schema import RequestTrace

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


# --------------------------------------------------------------------------------------------------------
# Arrival processes
# --------------------------------------------------------------------------------------------------------


class ArrivalKind(StrEnum):
    """Names of the arrival processes, as used in YAML and on the command line."""

    POISSON = "poisson"
    GAMMA = "gamma"
    WEIBULL = "weibull"
    MMPP = "mmpp"


@dataclass(frozen=True)
class PoissonArrivals:
    """Poisson arrivals at ``rate`` requests per second (CV of gaps = 1)."""

    rate: float

    @property
    def mean_rate(self) -> float:
        return self.rate


@dataclass(frozen=True)
class GammaArrivals:
    """Gamma renewal arrivals: mean ``rate`` req/s, inter-arrival CV ``cv`` (> 1 is burstier than Poisson)."""

    rate: float
    cv: float

    @property
    def mean_rate(self) -> float:
        return self.rate


@dataclass(frozen=True)
class WeibullArrivals:
    """Weibull renewal arrivals: mean ``rate`` req/s, inter-arrival CV ``cv`` (shape solved from the CV)."""

    rate: float
    cv: float

    @property
    def mean_rate(self) -> float:
        return self.rate


@dataclass(frozen=True)
class MMPPArrivals:
    """Two-state Markov-modulated Poisson arrivals, the textbook model of on/off bursts.

    Attributes:
        rates: Poisson rate (req/s) in state 0 and in state 1.
        mean_sojourn_s: mean time (s) spent in state 0 and in state 1 before switching.
    """

    rates: tuple[float, float]
    mean_sojourn_s: tuple[float, float]

    @property
    def mean_rate(self) -> float:
        """Long-run rate: each state's rate weighted by its share of time."""
        (r0, r1), (s0, s1) = self.rates, self.mean_sojourn_s
        return (r0 * s0 + r1 * s1) / (s0 + s1)


Arrivals = PoissonArrivals | GammaArrivals | WeibullArrivals | MMPPArrivals


@dataclass(frozen=True)
class SinusoidModulation:
    """Rate multiplier ``1 + amplitude * sin(2 pi (t + phase_s) / period_s)`` (mean 1 over a period).

    With ``phase_s = -period_s / 4`` the rate starts at its minimum and peaks half a period later.
    """

    amplitude: float
    period_s: float = 86_400.0
    phase_s: float = 0.0


@dataclass(frozen=True)
class ProfileModulation:
    """Piecewise-constant rate multiplier from ``levels`` spread evenly over ``period_s``.

    ``levels`` are relative (24 hourly values for a daily profile, say) and are normalized to mean 1.
    ``offset_s`` is where in the profile the trace starts (e.g. ``9 * 3600`` to start at 09:00).
    """

    levels: tuple[float, ...]
    period_s: float = 86_400.0
    offset_s: float = 0.0


Modulation = SinusoidModulation | ProfileModulation


# --------------------------------------------------------------------------------------------------------
# Lengths
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LognormalLengths:
    """Token lengths ``round(exp(N(mu, sigma)))`` clipped to ``[min_tokens, max_tokens]``."""

    mu: float
    sigma: float
    max_tokens: int
    min_tokens: int = 1

    @classmethod
    def from_mean_median(
        cls, mean: float, median: float, *, max_tokens: int, min_tokens: int = 1
    ) -> LognormalLengths:
        """The lognormal with this mean and median: ``mu = ln(median)``, ``sigma = sqrt(2 ln(mean/median))``.

        Args:
            mean: mean length in tokens (must be >= median: a lognormal is right-skewed).
            median: median length in tokens.
            max_tokens: upper clip.
            min_tokens: lower clip.

        Raises:
            InputError: mean < median or non-positive values.

        >>> d = LognormalLengths.from_mean_median(200.0, 100.0, max_tokens=4096)
        >>> round(d.sigma, 4)
        1.1774
        """
        if not (median > 0 and mean >= median):
            raise InputError(
                f"cannot fit a lognormal to mean {mean} and median {median}",
                field="mean",
                expected="mean >= median > 0",
            )
        return cls(
            mu=math.log(median),
            sigma=math.sqrt(2.0 * math.log(mean / median)),
            max_tokens=max_tokens,
            min_tokens=min_tokens,
        )


@dataclass(frozen=True)
class QuantileLengths:
    """Lengths from a quantile function that is linear in log-length between knots ``(q, tokens)``.

    Why: real length distributions are rarely lognormal (Azure conv 2023 output: median 129, p99 601 but
    mean 211); with knots one can match several published statistics at once. Knots must start at
    ``q = 0`` and end at ``q = 1`` with increasing ``q`` and non-decreasing, positive token values.
    """

    knots: tuple[tuple[float, float], ...]

    @property
    def mean(self) -> float:
        """Exact mean of the continuous distribution (before rounding to integers)."""
        return _loglinear_mean(self.knots)

    @classmethod
    def fit(
        cls, *, mean: float, median: float, p99: float, min_tokens: float, max_tokens: float
    ) -> QuantileLengths:
        """Knots through ``(0, min)``, ``(0.5, median)``, ``(0.75, v)``, ``(0.99, p99)``, ``(1, max)``.

        ``v`` is solved by bisection so that the mean matches (the mean rises monotonically with ``v``).

        Args:
            mean: target mean in tokens.
            median: target median.
            p99: target 99th percentile.
            min_tokens: value at quantile 0 (shortest request).
            max_tokens: value at quantile 1 (longest request).

        Raises:
            InputError: the statistics are out of order or no ``v`` in ``[median, p99]`` reaches the mean.

        >>> d = QuantileLengths.fit(mean=211, median=129, p99=601, min_tokens=4, max_tokens=1024)
        >>> round(d.mean, 3)
        211.0
        """
        if not (0 < min_tokens <= median <= p99 <= max_tokens):
            raise InputError(
                f"length statistics out of order: min {min_tokens}, median {median}, p99 {p99}, "
                f"max {max_tokens}",
                field="median",
                expected="0 < min <= median <= p99 <= max",
            )

        def knots_for(v: float) -> tuple[tuple[float, float], ...]:
            return ((0.0, min_tokens), (0.5, median), (0.75, v), (0.99, p99), (1.0, max_tokens))

        lo, hi = float(median), float(p99)
        if not (_loglinear_mean(knots_for(lo)) <= mean <= _loglinear_mean(knots_for(hi))):
            raise InputError(
                f"no quantile knots reach mean {mean} with median {median}, p99 {p99}, "
                f"range [{min_tokens}, {max_tokens}]",
                field="mean",
                expected=(
                    f"a mean between {_loglinear_mean(knots_for(lo)):.1f} and "
                    f"{_loglinear_mean(knots_for(hi)):.1f}"
                ),
            )
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            if _loglinear_mean(knots_for(mid)) < mean:
                lo = mid
            else:
                hi = mid
        return cls(knots=knots_for(0.5 * (lo + hi)))


def _loglinear_mean(knots: tuple[tuple[float, float], ...]) -> float:
    """Mean of a quantile function that is linear in log-value between knots (closed form per segment)."""
    total = 0.0
    for (q0, a), (q1, b) in itertools.pairwise(knots):
        width = q1 - q0
        total += width * a if math.isclose(a, b) else width * (b - a) / math.log(b / a)
    return total


LengthDist = LognormalLengths | QuantileLengths


@dataclass(frozen=True)
class IndependentLengths:
    """Input and output lengths drawn independently from their own distributions."""

    input: LengthDist
    output: LengthDist


@dataclass(frozen=True)
class EmpiricalLengths:
    """(input, output) pairs resampled jointly, with replacement, from a given trace.

    Joint resampling keeps the correlation between prompt and answer lengths that the source has.
    """

    input_tokens: tuple[int, ...]
    output_tokens: tuple[int, ...]

    @classmethod
    def from_trace(cls, trace: RequestTrace) -> EmpiricalLengths:
        """The length pairs of ``trace``.

        Raises:
            InputError: the trace has no requests.
        """
        if trace.num_requests == 0:
            raise InputError("cannot resample lengths from an empty trace", path=trace.meta.source)
        return cls(
            input_tokens=tuple(int(x) for x in trace.df["input_tokens"].to_list()),
            output_tokens=tuple(int(x) for x in trace.df["output_tokens"].to_list()),
        )


Lengths = IndependentLengths | EmpiricalLengths


# --------------------------------------------------------------------------------------------------------
# Tenants and prefixes
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TenantSpec:
    """Tenants with Zipf-distributed shares, each owning shared system prompts.

    Attributes:
        count: number of tenants (named ``tenant-00``, ``tenant-01``...).
        zipf_s: share of tenant ``i`` is proportional to ``1 / (i + 1) ** zipf_s`` (0 = equal shares).
        prompts_per_tenant: distinct system prompts per tenant, picked uniformly per request.
        prompt_tokens: (min, max) length of a system prompt, drawn uniformly per prompt.
        block_size: tokens per prefix-hash block; ``None`` writes the tenant column but no ``prefix_hashes``.
    """

    count: int
    zipf_s: float = 1.0
    prompts_per_tenant: int = 2
    prompt_tokens: tuple[int, int] = (200, 1000)
    block_size: int | None = 16


@dataclass(frozen=True)
class SessionSpec:
    """Multi-turn conversations: each turn's prompt is the whole conversation so far.

    Why: chat traffic reuses most of its context. Turn ``t + 1`` sends turn ``t``'s prompt again, plus
    turn ``t``'s answer, plus a new user message, and every conversation opens with the same system
    prompt; a prefix cache serves most of such a prompt from blocks it already holds. Independent
    requests (or tenants' system prompts alone) miss that reuse and overstate prefill work.

    With sessions, the spec's arrival process (and modulation) gives the arrivals of the sessions'
    *first* turns; later turns follow each session's own think gaps. Each turn draws an (input, output)
    pair from the spec's length model and reads the input as the turn's *new user message*, so a length
    model fitted to whole prompts makes contexts grow faster than real chats do. The defaults are
    assumptions, not published numbers.

    Attributes:
        mean_turns: mean turns per session; the count is geometric on ``1, 2, ...`` (1 = single turns).
        mean_think_s: mean gap, in seconds, from one turn's *arrival* to the next turn's arrival
            (exponential). It covers the answer's generation as well as the user reading and typing; the
            generator knows no service times, so a short gap can send a turn before the previous answer
            would have finished on a loaded fleet.
        system_tokens: length of the system prompt that opens every session, shared by all of them
            (0 = none).
        block_size: tokens per ``prefix_hashes`` block (16 is vLLM's default KV block).
        max_context_tokens: the longest prompt a session may send. A session ends before the first turn
            whose prompt would be longer; the first turn is always kept (it is the arrival the process
            drew), its new message shortened if needed to fit. Answers are not counted against it.
    """

    mean_turns: float = 4.0
    mean_think_s: float = 60.0
    system_tokens: int = 1000
    block_size: int = 16
    max_context_tokens: int = 32_768


@dataclass(frozen=True)
class AgentSpec:
    """Agentic sessions: an agent calls the model, runs a tool, calls again with the tool's result.

    Why it differs from :class:`SessionSpec`: a chat user's next message is timed from the previous
    *arrival*; an agent's next call leaves when the previous *answer* is back plus the tool's latency,
    so each turn carries ``think_s`` (the tool latency before it) and ``turn``, and a closed-loop replay
    (``fleetwise replay --closed-loop``) sends it at the previous turn's finish plus ``think_s``. The
    trace's own ``arrival_s`` follows a nominal schedule: the previous arrival, plus the previous answer's
    service time on an unloaded replica (``nominal_ttft_s + (output - 1) * nominal_tpot_s``), plus
    ``think_s``: what an open-loop replay of the same turns sends.

    Each turn's prompt is the whole context so far (system prompt, every earlier turn's new tokens and
    answer) plus its own new tokens, drawn with its answer from the spec's length model: on the first turn
    the task, later the tool's result. Prefix hashes follow, as for :class:`SessionSpec`.

    The defaults are assumptions, not fitted to a public agent trace (none was at hand); each says why:

    Attributes:
        mean_turns: model calls per session, geometric on ``1, 2, ...``. Default 6: tool-using agents
            take several steps per task, fewer than coding agents' tens of steps (assumption).
        tool_median_s: median tool latency, seconds, lognormal. Default 2 s: a web search or a sandboxed
            command takes seconds (assumption).
        tool_sigma: lognormal sigma of the tool latency. Default 1.0: mean ``2 e^0.5 = 3.3 s``, p99
            ``2 e^2.33 = 20 s``, a heavy tail of slow tools (assumption).
        system_tokens: system prompt and tool schemas shared by every session. Default 2,000 (assumption:
            a few tool descriptions).
        block_size: tokens per ``prefix_hashes`` block (16: vLLM's default KV block).
        max_context_tokens: a session ends before a longer prompt. Default 131,072: a 128k-context model.
        nominal_ttft_s: time to first token the nominal schedule assumes. Default 0.5 s (assumption: a
            few thousand prompt tokens of prefill on an unloaded replica).
        nominal_tpot_s: seconds per output token after the first in the nominal schedule. Default 0.02
            (assumption: 50 tokens/s per sequence on an unloaded replica).
    """

    mean_turns: float = 6.0
    tool_median_s: float = 2.0
    tool_sigma: float = 1.0
    system_tokens: int = 2000
    block_size: int = 16
    max_context_tokens: int = 131_072
    nominal_ttft_s: float = 0.5
    nominal_tpot_s: float = 0.02


# --------------------------------------------------------------------------------------------------------
# The spec
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthSpec:
    """Everything that defines a synthetic trace; equal specs give identical traces.

    Attributes:
        arrivals: the base arrival process.
        lengths: how input/output token counts are drawn.
        duration_s: arrivals are generated on ``[0, duration_s)``.
        seed: seed of the ``numpy.random.Generator``; arrivals, lengths, tenants, SLO classes and sessions
            use independent child streams, so changing the length model does not move the arrivals.
        modulation: optional periodic rate multiplier (time rescaling).
        tenants: optional tenants and prefix hashes (not together with ``sessions``).
        model: optional value of the ``model`` column.
        name: ``TraceMeta.source`` of the result.
        slo_classes: optional ``(name, share)`` pairs: each request draws its ``slo_class`` with these
            odds (shares are normalised), from its own stream; with ``sessions`` each session draws one
            class for all of its turns (a conversation is interactive or batch as a whole).
        sessions: optional multi-turn conversations with prefix hashes; ``arrivals`` then gives the
            sessions' first turns. A spec may set ``tenants`` or ``sessions``, not both.
        agents: optional agentic sessions with tool latencies (``turn``, ``think_s`` columns);
            ``arrivals`` then gives the sessions' first calls. Not with ``tenants`` or ``sessions``.
    """

    arrivals: Arrivals
    lengths: Lengths
    duration_s: float
    seed: int = 0
    modulation: Modulation | None = None
    tenants: TenantSpec | None = None
    model: str | None = None
    name: str = "synthetic"
    slo_classes: tuple[tuple[str, float], ...] = ()
    sessions: SessionSpec | None = None
    agents: AgentSpec | None = None
