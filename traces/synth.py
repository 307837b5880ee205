"""Synthetic request traces: seeded arrival processes, length models, tenants and prefix hashes.

Why synthesize at all: real traces are few and fixed, while a capacity planner has to answer "what if the
load doubles, turns burstier, or follows a daily cycle". Every knob here is a parameter that published trace
studies report (mean rate, CV of inter-arrival times, length mean/median/p99, peak-to-mean), so a synthetic
trace can be shaped on published statistics without shipping anyone's data.

The core is :func:`synthesize` over the frozen :class:`~traces.synth_spec.SynthSpec`;
:class:`~traces.synth_config.SynthConfig` is the pydantic model for YAML files and the CLI.

Arrival processes (all in seconds, first arrival re-based at 0):

- Poisson with rate ``r``: exponential gaps with mean ``1/r`` (CV 1).
- Gamma renewal with rate ``r`` and CV ``c``: shape ``k = 1/c**2``, scale ``1/(r k)``.
- Weibull renewal with rate ``r`` and CV ``c``: the shape ``k`` solves
  ``Gamma(1+2/k)/Gamma(1+1/k)**2 - 1 = c**2`` (bisection; the left side falls monotonically in ``k``),
  scale ``1/(r Gamma(1+1/k))``.
- MMPP: a 2-state Markov-modulated Poisson process; state ``i`` emits at ``rates[i]`` and lasts an
  exponential time with mean ``mean_sojourn_s[i]``; the first state is drawn from the stationary law.

Diurnal (or any periodic) modulation uses time rescaling: the base process runs in "operational time"
``tau`` and each arrival is mapped to ``t = Lambda^-1(tau)`` with ``Lambda(t) = integral_0^t m(u) du`` and a
modulation ``m`` of mean 1 per period. Unlike thinning, this keeps the renewal structure (and thus the CV)
of the base process in operational time while the rate follows ``rate * m(t)``.

Prefix hashes (optional): each tenant owns a few "system prompts" of a drawn length; a request of that
tenant starts with one of them, so its leading full blocks share ids with every other request that used the
same system prompt; the remaining blocks get fresh ids. Ids are small sequential integers (identity only, as
in the Mooncake trace), one per ``block_size`` tokens, ``ceil(input_tokens / block_size)`` per request.

Sessions (optional, instead of tenants): the arrival process gives each conversation's first turn; a
session has a geometric number of turns whose arrivals follow at exponential think gaps, and turns past
the duration are dropped. Each turn draws a new user message and an answer from the length model, and its
prompt is the whole conversation so far::

    input_tokens[t] = system_tokens + sum_{j < t} (message[j] + output[j]) + message[t]

so turn ``t + 1``'s prompt extends turn ``t``'s. Block ids follow the content: the first
``system_tokens // block_size`` blocks are the system prompt's ids ``0..S-1`` in every session; a later
full block gets the id of its (session, block position), so a turn repeats every full-block id of the
turn before; a trailing partial block gets a fresh id (an engine caches full blocks only).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from traces.errors import InputError
from traces.schema import REQUEST_POLARS_SCHEMA, RequestTrace, TraceMeta, canonical_columns
from traces.synth_spec import (
    AgentSpec,
    Arrivals,
    EmpiricalLengths,
    FloatArray,
    GammaArrivals,
    IndependentLengths,
    IntArray,
    LengthDist,
    Lengths,
    LognormalLengths,
    MMPPArrivals,
    Modulation,
    PoissonArrivals,
    ProfileModulation,
    SessionSpec,
    SinusoidModulation,
    SynthSpec,
    TenantSpec,
    WeibullArrivals,
)


def synthesize(spec: SynthSpec) -> RequestTrace:
    """Generate a request trace in the canonical schema from ``spec``.

    Args:
        spec: the trace to generate.

    Returns:
        A :class:`RequestTrace` sorted by ``arrival_s`` (first at 0), ``TraceMeta.format == "synthetic"``.

    Raises:
        InputError: a parameter is out of range (named in the message).

    >>> spec = SynthSpec(arrivals=GammaArrivals(rate=10.0, cv=2.0),
    ...                  lengths=IndependentLengths(LognormalLengths(6.0, 0.5, 4096),
    ...                                             LognormalLengths(4.0, 0.8, 1024)),
    ...                  duration_s=60.0, seed=1)
    >>> t = synthesize(spec)
    >>> t.df.columns
    ['arrival_s', 'input_tokens', 'output_tokens']
    >>> 400 < t.num_requests < 800
    True
    """
    _validate(spec)
    # Child streams by index: a later child (classes 4th, sessions 5th) leaves the earlier ones as they
    # always were, so traces without the newer features stay byte-identical.
    rng_arrivals, rng_lengths, rng_tenants, rng_classes, rng_sessions, rng_agents = (
        np.random.default_rng(spec.seed).spawn(6)
    )
    arrivals = _arrivals(rng_arrivals, spec.arrivals, spec.modulation, spec.duration_s)
    turns: _Turns | None = None
    if spec.sessions is not None:
        turns = _sessions(rng_sessions, rng_lengths, spec.sessions, spec.lengths, arrivals, spec.duration_s)
    elif spec.agents is not None:
        turns = _agents(rng_agents, rng_lengths, spec.agents, spec.lengths, arrivals, spec.duration_s)
    if turns is None:
        inp, out = _lengths(rng_lengths, spec.lengths, arrivals.size)
    else:
        arrivals, inp, out = turns.arrival_s, turns.input_tokens, turns.output_tokens
    n = arrivals.size
    columns: dict[str, Any] = {
        "arrival_s": pl.Series("arrival_s", arrivals, dtype=pl.Float64),
        "input_tokens": pl.Series("input_tokens", inp, dtype=pl.Int32),
        "output_tokens": pl.Series("output_tokens", out, dtype=pl.Int32),
    }
    if spec.model is not None:
        columns["model"] = pl.Series("model", [spec.model] * n, dtype=pl.String)
    block_size: int | None = None
    if spec.tenants is not None:
        tenant_names, hashes = _tenants(rng_tenants, spec.tenants, inp)
        columns["tenant"] = tenant_names
        if hashes is not None:
            columns["prefix_hashes"] = hashes
            block_size = spec.tenants.block_size
    if turns is not None:
        columns["session_id"] = turns.session_ids()
        columns["prefix_hashes"] = turns.prefix_hashes
        block_size = turns.block_size
        if turns.turn is not None and turns.think_s is not None:
            columns["turn"] = pl.Series("turn", turns.turn, dtype=pl.Int32)
            columns["think_s"] = pl.Series("think_s", turns.think_s, dtype=pl.Float64).fill_nan(None)
    if spec.slo_classes:
        names = [name for name, _share in spec.slo_classes]
        odds = np.array([share for _name, share in spec.slo_classes], dtype=np.float64)
        if turns is None:
            pick = rng_classes.choice(len(names), size=n, p=odds / odds.sum())
        else:  # one class per conversation, shared by all its turns
            pick = rng_classes.choice(len(names), size=turns.num_sessions, p=odds / odds.sum())[turns.session]
        columns["slo_class"] = pl.Series("slo_class", np.array(names, dtype=object)[pick], dtype=pl.String)
    df = pl.DataFrame(columns)
    df = df.select(canonical_columns(df)).cast({c: REQUEST_POLARS_SCHEMA[c] for c in df.columns})
    meta = TraceMeta(
        source=spec.name,
        format="synthetic",
        block_size=block_size,
        extra=(("seed", str(spec.seed)), ("arrivals", type(spec.arrivals).__name__)),
    )
    return RequestTrace(df=df, meta=meta)


_INT32_MAX = 2**31 - 1
_MAX_BLOCKS = 2_000_000_000
"""The most prefix-hash ids a session trace may hold (16 GB of uint64): a clear error instead of an OOM."""


def _validate(spec: SynthSpec) -> None:
    """Reject out-of-range parameters with the parameter's name (the pydantic edge checks most too)."""

    def need(ok: bool, field: str, expected: str, value: object) -> None:
        if not ok:
            raise InputError(f"bad value {value!r}", field=field, expected=expected)

    duration = spec.duration_s
    need(math.isfinite(duration) and duration > 0, "duration_s", "a number > 0", duration)
    if spec.slo_classes:
        names = [name for name, _share in spec.slo_classes]
        shares = [share for _name, share in spec.slo_classes]
        need(all(names) and len(set(names)) == len(names), "slo_classes", "distinct non-empty names", names)
        need(all(math.isfinite(x) and x >= 0 for x in shares) and sum(shares) > 0, "slo_classes",
             "shares >= 0, one > 0", shares)
    a = spec.arrivals
    if isinstance(a, MMPPArrivals):
        need(
            all(r >= 0 for r in a.rates) and max(a.rates) > 0,
            "arrival.mmpp.rates",
            "rates >= 0, one > 0",
            a.rates,
        )
        need(
            all(s > 0 for s in a.mean_sojourn_s),
            "arrival.mmpp.mean_sojourn_s",
            "numbers > 0",
            a.mean_sojourn_s,
        )
        switches = 2.0 * duration / sum(a.mean_sojourn_s) if all(s > 0 for s in a.mean_sojourn_s) else 0.0
        need(
            switches <= 5e7,
            "arrival.mmpp.mean_sojourn_s",
            "at most 5e7 state changes over the duration",
            a.mean_sojourn_s,
        )
    else:
        need(math.isfinite(a.rate) and a.rate > 0, "arrival.rate", "a number > 0", a.rate)
    if isinstance(a, GammaArrivals | WeibullArrivals):
        need(math.isfinite(a.cv) and a.cv > 0, "arrival.cv", "a number > 0", a.cv)
    if isinstance(a, WeibullArrivals):
        need(a.cv <= 50.0, "arrival.cv", "a Weibull CV <= 50", a.cv)
    ag = spec.agents
    if ag is not None:
        need(spec.sessions is None and spec.tenants is None, "agents",
             "agents alone (not with sessions or tenants)", "agents with sessions or tenants")
        need(math.isfinite(ag.mean_turns) and ag.mean_turns >= 1, "agents.mean_turns", "a number >= 1",
             ag.mean_turns)
        need(math.isfinite(ag.tool_median_s) and ag.tool_median_s > 0, "agents.tool_median_s",
             "a number > 0", ag.tool_median_s)
        need(math.isfinite(ag.tool_sigma) and ag.tool_sigma >= 0, "agents.tool_sigma", "a number >= 0",
             ag.tool_sigma)
        need(ag.nominal_ttft_s >= 0 and ag.nominal_tpot_s >= 0, "agents.nominal_tpot_s",
             "nominal TTFT and TPOT >= 0", (ag.nominal_ttft_s, ag.nominal_tpot_s))
        need(ag.block_size >= 1, "agents.block_size", "an integer >= 1", ag.block_size)
        need(0 <= ag.system_tokens < ag.max_context_tokens <= _INT32_MAX, "agents.max_context_tokens",
             f"an integer > system_tokens ({ag.system_tokens}) and <= {_INT32_MAX}", ag.max_context_tokens)
        expected_n = a.mean_rate * duration * ag.mean_turns
        need(expected_n <= 200_000_000, "duration_s", "rate * duration * mean_turns <= 2e8 requests",
             expected_n)
    sess = spec.sessions
    if sess is None and ag is None:
        expected_n = a.mean_rate * duration
        need(expected_n <= 200_000_000, "duration_s", "rate * duration <= 2e8 requests", expected_n)
    elif sess is not None:
        need(spec.tenants is None, "sessions", "tenants or sessions, not both", "tenants and sessions")
        need(
            math.isfinite(sess.mean_turns) and sess.mean_turns >= 1,
            "sessions.mean_turns",
            "a number >= 1",
            sess.mean_turns,
        )
        need(
            math.isfinite(sess.mean_think_s) and sess.mean_think_s > 0,
            "sessions.mean_think_s",
            "a number > 0",
            sess.mean_think_s,
        )
        need(sess.system_tokens >= 0, "sessions.system_tokens", "an integer >= 0", sess.system_tokens)
        need(sess.block_size >= 1, "sessions.block_size", "an integer >= 1", sess.block_size)
        need(
            sess.system_tokens < sess.max_context_tokens <= _INT32_MAX,
            "sessions.max_context_tokens",
            f"an integer > system_tokens ({sess.system_tokens}) and <= {_INT32_MAX}",
            sess.max_context_tokens,
        )
        expected_n = a.mean_rate * duration * sess.mean_turns
        need(
            expected_n <= 200_000_000,
            "duration_s",
            "rate * duration * mean_turns <= 2e8 requests",
            expected_n,
        )
    m = spec.modulation
    if isinstance(m, SinusoidModulation):
        need(0 <= m.amplitude < 1, "diurnal.amplitude", "0 <= amplitude < 1", m.amplitude)
        need(m.period_s > 0, "diurnal.period_s", "a number > 0", m.period_s)
    elif isinstance(m, ProfileModulation):
        need(
            len(m.levels) > 0 and all(x > 0 and math.isfinite(x) for x in m.levels),
            "diurnal.profile",
            "a non-empty list of numbers > 0",
            m.levels,
        )
        need(m.period_s > 0, "diurnal.period_s", "a number > 0", m.period_s)
    if isinstance(spec.lengths, IndependentLengths):
        for name, d in (("input", spec.lengths.input), ("output", spec.lengths.output)):
            _validate_dist(d, f"lengths.{name}", need)
    else:
        need(
            len(spec.lengths.input_tokens) == len(spec.lengths.output_tokens) > 0,
            "lengths.resample",
            "equal, non-empty input and output lists",
            len(spec.lengths.input_tokens),
        )
    t = spec.tenants
    if t is not None:
        need(t.count >= 1, "tenants.count", "an integer >= 1", t.count)
        need(t.zipf_s >= 0, "tenants.zipf_s", "a number >= 0", t.zipf_s)
        need(t.prompts_per_tenant >= 1, "tenants.prompts_per_tenant", "an integer >= 1", t.prompts_per_tenant)
        need(
            0 <= t.prompt_tokens[0] <= t.prompt_tokens[1],
            "tenants.prompt_tokens",
            "0 <= min <= max",
            t.prompt_tokens,
        )
        need(t.block_size is None or t.block_size >= 1, "tenants.block_size", "an integer >= 1", t.block_size)


def _validate_dist(d: LengthDist, field: str, need: Callable[[bool, str, str, object], None]) -> None:
    if isinstance(d, LognormalLengths):
        need(d.sigma >= 0 and math.isfinite(d.mu), f"{field}.sigma", "sigma >= 0 and a finite mu", d.sigma)
        need(
            1 <= d.min_tokens <= d.max_tokens, f"{field}.max", "1 <= min <= max", (d.min_tokens, d.max_tokens)
        )
    else:
        qs = [q for q, _ in d.knots]
        vs = [v for _, v in d.knots]
        ok = (
            len(d.knots) >= 2
            and qs[0] == 0.0
            and qs[-1] == 1.0
            and all(b > a for a, b in itertools.pairwise(qs))
            and all(v > 0 for v in vs)
            and all(b >= a for a, b in itertools.pairwise(vs))
        )
        need(ok, f"{field}.knots", "knots from q=0 to q=1, q increasing, tokens > 0 non-decreasing", d.knots)


# --------------------------------------------------------------------------------------------------------
# Arrival generation
# --------------------------------------------------------------------------------------------------------


def weibull_shape_for_cv(cv: float) -> float:
    """The Weibull shape ``k`` whose inter-arrival CV is ``cv`` (bisection on ``log k``).

    >>> round(weibull_shape_for_cv(1.0), 6)  # the exponential distribution
    1.0
    """
    if not (0 < cv <= 50):
        raise InputError(f"bad Weibull CV {cv}", field="arrival.cv", expected="0 < cv <= 50")

    def cv_of(k: float) -> float:
        return math.sqrt(math.expm1(math.lgamma(1 + 2 / k) - 2 * math.lgamma(1 + 1 / k)))

    lo, hi = math.log(0.05), math.log(1000.0)  # CV(0.05) ~ 1.4e7, CV(1000) ~ 1.3e-3
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if cv_of(math.exp(mid)) > cv:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def _renewal(draw: Callable[[int], FloatArray], rate: float, horizon: float) -> FloatArray:
    """Event times ``0, g1, g1+g2, ...`` below ``horizon`` for i.i.d. gaps of mean ``1/rate``."""
    chunks: list[FloatArray] = [np.zeros(1)]
    t = 0.0
    while True:
        k = int((horizon - t) * rate * 1.05) + 64
        times = t + np.cumsum(draw(k))
        chunks.append(times[times < horizon])
        if times[-1] >= horizon:
            break
        t = float(times[-1])
    return np.concatenate(chunks)


def _mmpp(rng: np.random.Generator, a: MMPPArrivals, horizon: float) -> FloatArray:
    """MMPP event times on ``[0, horizon)``: alternate exponential sojourns, Poisson counts inside each."""
    (s0, s1), rates = a.mean_sojourn_s, np.asarray(a.rates, dtype=np.float64)
    state = int(rng.random() < s1 / (s0 + s1))  # stationary start
    starts: list[FloatArray] = []
    states: list[IntArray] = []
    t = 0.0
    while t < horizon:
        k = 2 * int(horizon / (s0 + s1)) + 8
        seq = (state + np.arange(k)) % 2
        lengths = rng.exponential(np.where(seq == 0, s0, s1))
        ends = t + np.cumsum(lengths)
        seg_starts = np.concatenate([[t], ends[:-1]])
        keep = seg_starts < horizon
        starts.append(seg_starts[keep])
        states.append(seq[keep])
        t = float(ends[-1])
        state = int((seq[-1] + 1) % 2)
    seg_start = np.concatenate(starts)
    seg_state = np.concatenate(states)
    seg_end = np.minimum(np.append(seg_start[1:], horizon), horizon)
    counts = rng.poisson(rates[seg_state] * (seg_end - seg_start))
    base = np.repeat(seg_start, counts)
    width = np.repeat(seg_end - seg_start, counts)
    return np.sort(base + rng.random(base.size) * width)


def _base_arrivals(rng: np.random.Generator, a: Arrivals, horizon: float) -> FloatArray:
    if isinstance(a, PoissonArrivals):
        return _renewal(lambda k: rng.exponential(1.0 / a.rate, k), a.rate, horizon)
    if isinstance(a, GammaArrivals):
        shape = 1.0 / (a.cv * a.cv)
        scale = 1.0 / (a.rate * shape)
        return _renewal(lambda k: rng.gamma(shape, scale, k), a.rate, horizon)
    if isinstance(a, WeibullArrivals):
        k_shape = weibull_shape_for_cv(a.cv)
        scale = 1.0 / (a.rate * math.gamma(1.0 + 1.0 / k_shape))
        return _renewal(lambda k: scale * rng.weibull(k_shape, k), a.rate, horizon)
    return _mmpp(rng, a, horizon)


def _cumulative_intensity(m: Modulation, duration: float) -> tuple[FloatArray, FloatArray]:
    """``(t, Lambda(t))`` on a grid of ``[0, duration]``, fine enough to interpolate the inverse linearly."""
    if isinstance(m, SinusoidModulation):
        steps = min(2_000_000, max(2, math.ceil(duration / (m.period_s / 4000.0))))
        t = np.linspace(0.0, duration, steps + 1)
        w = 2.0 * math.pi / m.period_s
        lam = t + m.amplitude / w * (np.cos(w * m.phase_s) - np.cos(w * (t + m.phase_s)))
        return t, lam
    levels = np.asarray(m.levels, dtype=np.float64)
    levels = levels / levels.mean()
    seg = m.period_s / levels.size
    # Breakpoints where the level changes, in trace time, plus both ends: Lambda is exactly linear between.
    first = math.floor(m.offset_s / seg)
    last = math.ceil((m.offset_s + duration) / seg)
    edges = np.arange(first, last + 1, dtype=np.float64) * seg - m.offset_s
    t = np.unique(np.clip(np.concatenate([[0.0], edges, [duration]]), 0.0, duration))
    idx = np.floor((t[:-1] + m.offset_s) / seg + 1e-9).astype(np.int64) % levels.size
    lam = np.concatenate([[0.0], np.cumsum(levels[idx] * np.diff(t))])
    return t, lam


def _arrivals(rng: np.random.Generator, a: Arrivals, m: Modulation | None, duration: float) -> FloatArray:
    if m is None:
        times = _base_arrivals(rng, a, duration)
    else:
        grid_t, grid_lam = _cumulative_intensity(m, duration)
        tau = _base_arrivals(rng, a, float(grid_lam[-1]))
        times = np.interp(tau, grid_lam, grid_t)
    times = times[times < duration]
    if times.size:
        times = times - times[0]
    return times


# --------------------------------------------------------------------------------------------------------
# Lengths, tenants, prefixes
# --------------------------------------------------------------------------------------------------------


def _draw_dist(rng: np.random.Generator, d: LengthDist, n: int) -> IntArray:
    if isinstance(d, LognormalLengths):
        x = rng.lognormal(d.mu, d.sigma, n)
        lo, hi = d.min_tokens, d.max_tokens
    else:
        qs = np.array([q for q, _ in d.knots])
        logv = np.log(np.array([v for _, v in d.knots]))
        x = np.exp(np.interp(rng.random(n), qs, logv))
        lo, hi = 1, 2**31 - 1
    return np.clip(np.rint(x), lo, hi).astype(np.int64)


def _lengths(rng: np.random.Generator, lengths: Lengths, n: int) -> tuple[IntArray, IntArray]:
    if isinstance(lengths, EmpiricalLengths):
        idx = rng.integers(0, len(lengths.input_tokens), n)
        inp = np.asarray(lengths.input_tokens, dtype=np.int64)[idx]
        out = np.asarray(lengths.output_tokens, dtype=np.int64)[idx]
        return inp, out
    rng_in, rng_out = rng.spawn(2)
    return _draw_dist(rng_in, lengths.input, n), _draw_dist(rng_out, lengths.output, n)


def _tenants(
    rng: np.random.Generator, spec: TenantSpec, input_tokens: IntArray
) -> tuple[pl.Series, pl.Series | None]:
    """Tenant names and (when ``block_size`` is set) prefix-hash lists for each request."""
    n = input_tokens.size
    weights = 1.0 / np.arange(1, spec.count + 1, dtype=np.float64) ** spec.zipf_s
    tenant = rng.choice(spec.count, size=n, p=weights / weights.sum())
    prompt = rng.integers(0, spec.prompts_per_tenant, n)
    lo, hi = spec.prompt_tokens
    prompt_len = rng.integers(lo, hi + 1, (spec.count, spec.prompts_per_tenant))
    names = pl.Series("tenant", [f"tenant-{i:02d}" for i in range(spec.count)], dtype=pl.String)
    tenant_col = names.gather(tenant).alias("tenant")
    if spec.block_size is None:
        return tenant_col, None
    bs = spec.block_size
    # Ids 0..S-1 are the shared system-prompt blocks, one run per (tenant, prompt); fresh ids follow.
    shared_blocks = (prompt_len // bs).ravel()
    shared_base = np.concatenate([[0], np.cumsum(shared_blocks)[:-1]])
    num_shared = int(shared_blocks.sum())
    key = tenant * spec.prompts_per_tenant + prompt
    req_shared = np.minimum(prompt_len.ravel()[key], input_tokens) // bs
    req_blocks = -(-input_tokens // bs)
    offsets = np.concatenate([[0], np.cumsum(req_blocks)])
    total = int(offsets[-1])
    owner = np.repeat(np.arange(n), req_blocks)
    pos = np.arange(total) - offsets[:-1][owner]
    is_shared = pos < req_shared[owner]
    ids = np.empty(total, dtype=np.uint64)
    ids[is_shared] = (shared_base[key][owner] + pos)[is_shared].astype(np.uint64)
    ids[~is_shared] = (num_shared + np.arange(int((~is_shared).sum()))).astype(np.uint64)
    arr = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), pa.array(ids, pa.uint64()))
    hashes = pl.Series("prefix_hashes", arr)
    return tenant_col, hashes


# --------------------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Turns:
    """The kept turns of all sessions, sorted by arrival; ``session`` indexes sessions by first arrival."""

    arrival_s: FloatArray
    input_tokens: IntArray
    output_tokens: IntArray
    session: IntArray
    num_sessions: int
    prefix_hashes: pl.Series
    block_size: int
    turn: IntArray | None = None
    think_s: FloatArray | None = None

    def session_ids(self) -> pl.Series:
        """``s000000``, ``s000001``... in order of the sessions' first arrivals."""
        return (
            pl.DataFrame({"k": self.session})
            .select((pl.lit("s") + pl.col("k").cast(pl.String).str.zfill(6)).alias("session_id"))
            .to_series()
        )


def _sessions(
    rng: np.random.Generator,
    rng_lengths: np.random.Generator,
    spec: SessionSpec,
    lengths: Lengths,
    first: FloatArray,
    duration: float,
) -> _Turns:
    """All turns of the sessions that open at ``first`` (sorted, first at 0), vectorized over turns.

    Every per-session quantity is a segmented cumulative sum over the flat array of turns (session by
    session, turn by turn): ``x - x[start of its session]``. Both cuts (duration, context) keep a prefix of
    each session, because arrivals and prompts only grow from turn to turn.
    """
    n_sessions = first.size
    start, owner, head, prompt, out = _skeleton(rng, rng_lengths, lengths, n_sessions=n_sessions,
                                                mean_turns=spec.mean_turns, system_tokens=spec.system_tokens,
                                                max_context_tokens=spec.max_context_tokens)
    gaps = rng.exponential(spec.mean_think_s, owner.size)
    gaps[start] = 0.0
    elapsed = np.cumsum(gaps)
    arrival = first[owner] + (elapsed - elapsed[head])

    keep = (arrival < duration) & (prompt <= spec.max_context_tokens)
    return _kept_turns(owner[keep], arrival[keep], prompt[keep], out[keep], n_sessions=n_sessions,
                       system_tokens=spec.system_tokens, block_size=spec.block_size)


def _skeleton(rng: np.random.Generator, rng_lengths: np.random.Generator, lengths: Lengths, *,
              n_sessions: int, mean_turns: float, system_tokens: int,
              max_context_tokens: int) -> tuple[IntArray, IntArray, IntArray, IntArray, IntArray]:
    """Turns of ``n_sessions`` sessions, flat (session by session, turn by turn): each session's first
    index, each turn's session and its session's first index, prompt and output lengths.

    The count of turns is geometric with mean ``mean_turns``; each turn draws ``(new tokens, output)``
    from ``lengths`` and its prompt is the whole context so far::

        prompt[t] = system_tokens + sum_{j < t} (new[j] + output[j]) + new[t]
    """
    turns = rng.geometric(1.0 / mean_turns, n_sessions).astype(np.int64)
    total = int(turns.sum())
    start = np.zeros(n_sessions, dtype=np.int64)
    np.cumsum(turns[:-1], out=start[1:])
    owner = np.repeat(np.arange(n_sessions, dtype=np.int64), turns)
    head = start[owner]  # flat index of each turn's first turn
    msg, out = _lengths(rng_lengths, lengths, total)
    msg = np.maximum(msg, 1)  # a turn says something, even when resampled lengths hold an empty prompt
    msg[start] = np.minimum(msg[start], max_context_tokens - system_tokens)
    step = msg + out
    before = np.cumsum(step) - step  # exclusive running sum over the flat array
    prompt = system_tokens + (before - before[head]) + msg
    return start, owner, head, prompt, out


def _agents(rng: np.random.Generator, rng_lengths: np.random.Generator, spec: AgentSpec, lengths: Lengths,
            first: FloatArray, duration: float) -> _Turns:
    """Agent sessions: turns as :func:`_skeleton` makes them, tool latencies lognormal, and trace
    arrivals on the nominal schedule ``arrival[t] = arrival[t-1] + service[t-1] + think_s[t]`` with
    ``service = nominal_ttft_s + (output - 1) * nominal_tpot_s`` (see :class:`AgentSpec`)."""
    n_sessions = first.size
    start, owner, head, prompt, out = _skeleton(rng, rng_lengths, lengths, n_sessions=n_sessions,
                                                mean_turns=spec.mean_turns, system_tokens=spec.system_tokens,
                                                max_context_tokens=spec.max_context_tokens)
    think = rng.lognormal(math.log(spec.tool_median_s), spec.tool_sigma, owner.size)
    think[start] = 0.0
    service = spec.nominal_ttft_s + (out - 1) * spec.nominal_tpot_s
    gaps = think + np.concatenate([[0.0], service[:-1]])
    gaps[start] = 0.0
    elapsed = np.cumsum(gaps)
    arrival = first[owner] + (elapsed - elapsed[head])
    turn = np.arange(owner.size, dtype=np.int64) - head
    keep = (arrival < duration) & (prompt <= spec.max_context_tokens)
    return _kept_turns(owner[keep], arrival[keep], prompt[keep], out[keep], n_sessions=n_sessions,
                       system_tokens=spec.system_tokens, block_size=spec.block_size, turn=turn[keep],
                       think_s=np.where(turn[keep] > 0, think[keep], np.nan))


def _kept_turns(owner: IntArray, arrival: FloatArray, prompt: IntArray, out: IntArray, *, n_sessions: int,
                system_tokens: int, block_size: int, turn: IntArray | None = None,
                think_s: FloatArray | None = None) -> _Turns:
    """The kept turns (a prefix of every session, in session-then-turn order) sorted by arrival, with
    their prefix-hash ids (see the module docstring); ``turn`` and ``think_s`` follow the same order."""
    bs = block_size
    system_blocks = system_tokens // bs
    full = prompt // bs
    # Each session owns one run of ids for its full blocks past the system prompt, as long as its longest
    # kept prompt needs: a turn's block at position p has id base + p - system_blocks, whatever the turn.
    kept = np.bincount(owner, minlength=n_sessions)
    last = np.cumsum(kept) - 1  # flat index of each session's last kept turn (every session keeps one)
    own = full[last] - system_blocks
    base = np.full(n_sessions, system_blocks, dtype=np.int64)
    np.cumsum(own[:-1], out=base[1:])
    base[1:] += system_blocks
    next_fresh = system_blocks + int(own.sum())

    order = np.argsort(arrival, kind="stable")  # ties keep session, then turn order
    owner, arrival, prompt, out, full = owner[order], arrival[order], prompt[order], out[order], full[order]
    turn = None if turn is None else turn[order]
    think_s = None if think_s is None else think_s[order]
    partial = (prompt % bs != 0).astype(np.int64)
    fresh = next_fresh + np.cumsum(partial) - 1  # partial-block ids in order of arrival

    n = prompt.size
    blocks = full + partial
    if int(blocks.sum()) > _MAX_BLOCKS:
        raise InputError(
            f"the sessions need {int(blocks.sum()):,} prefix-hash blocks",
            field="sessions.block_size",
            expected=f"at most {_MAX_BLOCKS:,} blocks: a larger block size, a shorter or slower trace",
        )
    # Per turn three runs of consecutive ids: system blocks, the session's own blocks, the partial block.
    run_start = np.stack([np.zeros(n, dtype=np.int64), base[owner], fresh], axis=1).ravel()
    run_len = np.stack(
        [np.full(n, system_blocks, dtype=np.int64), full - system_blocks, partial], axis=1
    ).ravel()
    ids = _concat_ranges(run_start, run_len)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(blocks, out=offsets[1:])
    arr = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), pa.array(ids.view(np.uint64)))
    return _Turns(
        arrival_s=arrival,
        input_tokens=prompt,
        output_tokens=out,
        session=owner,
        num_sessions=n_sessions,
        prefix_hashes=pl.Series("prefix_hashes", arr),
        block_size=bs,
        turn=turn,
        think_s=think_s,
    )


def _concat_ranges(starts: IntArray, lengths: IntArray) -> IntArray:
    """``concatenate([arange(s, s + k) for s, k in zip(starts, lengths)])`` in one output-sized array.

    Why not ``repeat`` + ``arange``: those need several index arrays as long as the output, and the
    output (one id per block of every prompt) is by far the largest thing a session trace holds. Here the
    output is filled with steps of 1, each run's first slot with the jump from the previous run's last
    value, and summed in place.

    >>> _concat_ranges(np.array([5, 0, 9]), np.array([2, 0, 3])).tolist()
    [5, 6, 9, 10, 11]
    """
    nonempty = lengths > 0
    s, k = starts[nonempty], lengths[nonempty]
    out = np.ones(int(k.sum()), dtype=np.int64)
    if out.size == 0:
        return out
    first = np.zeros(s.size, dtype=np.int64)
    np.cumsum(k[:-1], out=first[1:])
    jump = s.copy()
    jump[1:] -= s[:-1] + k[:-1] - 1
    out[first] = jump
    np.cumsum(out, out=out)
    return out
