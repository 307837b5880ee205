"""The pydantic edge of the trace synthesizer: :class:`SynthConfig` is the YAML/CLI form of
:class:`~traces.synth_spec.SynthSpec` (unknown keys rejected, errors name the key path), converted with
:meth:`SynthConfig.to_spec`; :func:`load_spec` reads a spec file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from traces.errors import InputError
from traces.load import load_trace
from traces.synth_spec import (
    AgentSpec,
    ArrivalKind,
    Arrivals,
    EmpiricalLengths,
    GammaArrivals,
    IndependentLengths,
    LengthDist,
    Lengths,
    LognormalLengths,
    MMPPArrivals,
    Modulation,
    PoissonArrivals,
    ProfileModulation,
    QuantileLengths,
    SessionSpec,
    SinusoidModulation,
    SynthSpec,
    TenantSpec,
    WeibullArrivals,
)

# --------------------------------------------------------------------------------------------------------
# Pydantic edge: YAML files and the CLI
# --------------------------------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MMPPConfig(_Model):
    """Two-state MMPP: ``rates`` (req/s) and ``mean_sojourn_s`` (s) for state 0 and state 1."""

    rates: tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)]]
    mean_sojourn_s: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]]

    @model_validator(mode="after")
    def _one_positive(self) -> MMPPConfig:
        if max(self.rates) <= 0:
            raise ValueError("at least one MMPP rate must be > 0")
        return self


class ArrivalConfig(_Model):
    """Arrival process: ``kind`` with ``rate`` (and ``cv`` for gamma/weibull) or an ``mmpp`` block."""

    kind: ArrivalKind = ArrivalKind.POISSON
    rate: Annotated[float, Field(gt=0, description="mean requests per second")] | None = None
    cv: Annotated[float, Field(gt=0, le=50, description="CV of inter-arrival times")] | None = None
    mmpp: MMPPConfig | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ArrivalConfig:
        if self.kind is ArrivalKind.MMPP:
            if self.mmpp is None:
                raise ValueError("kind mmpp needs an mmpp block (rates, mean_sojourn_s)")
            if self.rate is not None or self.cv is not None:
                raise ValueError("kind mmpp takes its rates from the mmpp block; drop rate and cv")
            return self
        if self.mmpp is not None:
            raise ValueError(f"an mmpp block needs kind mmpp, not {self.kind.value}")
        if self.rate is None:
            raise ValueError(f"kind {self.kind.value} needs a rate")
        if self.kind is ArrivalKind.POISSON and self.cv not in (None, 1.0):
            raise ValueError("poisson arrivals have CV 1; use kind gamma or weibull for another cv")
        if self.kind in (ArrivalKind.GAMMA, ArrivalKind.WEIBULL) and self.cv is None:
            raise ValueError(f"kind {self.kind.value} needs a cv")
        return self

    def to_arrivals(self) -> Arrivals:
        if self.kind is ArrivalKind.MMPP:
            assert self.mmpp is not None
            return MMPPArrivals(rates=self.mmpp.rates, mean_sojourn_s=self.mmpp.mean_sojourn_s)
        assert self.rate is not None
        if self.kind is ArrivalKind.POISSON:
            return PoissonArrivals(rate=self.rate)
        assert self.cv is not None
        if self.kind is ArrivalKind.GAMMA:
            return GammaArrivals(rate=self.rate, cv=self.cv)
        return WeibullArrivals(rate=self.rate, cv=self.cv)


class DiurnalConfig(_Model):
    """Periodic modulation: a sinusoid (``amplitude``) or a relative ``profile`` (e.g. 24 hourly levels)."""

    amplitude: Annotated[float, Field(ge=0, lt=1)] | None = None
    profile: list[Annotated[float, Field(gt=0)]] | None = Field(default=None, min_length=1)
    period_s: Annotated[float, Field(gt=0)] = 86_400.0
    phase_s: float = 0.0

    @model_validator(mode="after")
    def _one_of(self) -> DiurnalConfig:
        if (self.amplitude is None) == (self.profile is None):
            raise ValueError("give exactly one of amplitude (sinusoid) or profile (levels)")
        return self

    def to_modulation(self) -> Modulation:
        if self.profile is not None:
            return ProfileModulation(
                levels=tuple(self.profile), period_s=self.period_s, offset_s=self.phase_s
            )
        assert self.amplitude is not None
        return SinusoidModulation(amplitude=self.amplitude, period_s=self.period_s, phase_s=self.phase_s)


class LognormalConfig(_Model):
    """Lognormal lengths from ``mean`` and ``median`` or from ``mu`` and ``sigma``, clipped to [min, max]."""

    dist: Literal["lognormal"] = "lognormal"
    mean: Annotated[float, Field(gt=0)] | None = None
    median: Annotated[float, Field(gt=0)] | None = None
    mu: float | None = None
    sigma: Annotated[float, Field(ge=0)] | None = None
    min: Annotated[int, Field(ge=1)] = 1
    max: Annotated[int, Field(ge=1)]

    @model_validator(mode="after")
    def _params(self) -> LognormalConfig:
        by_moments = self.mean is not None and self.median is not None
        by_params = self.mu is not None and self.sigma is not None
        if by_moments == by_params or (by_moments and (self.mu is not None or self.sigma is not None)):
            raise ValueError("give either mean and median, or mu and sigma")
        if by_moments and self.mean is not None and self.median is not None and self.mean < self.median:
            raise ValueError("a lognormal needs mean >= median")
        if self.max < self.min:
            raise ValueError("max must be >= min")
        return self

    def to_dist(self) -> LengthDist:
        if self.mean is not None and self.median is not None:
            return LognormalLengths.from_mean_median(
                self.mean, self.median, max_tokens=self.max, min_tokens=self.min
            )
        assert self.mu is not None and self.sigma is not None
        return LognormalLengths(mu=self.mu, sigma=self.sigma, max_tokens=self.max, min_tokens=self.min)


class QuantileConfig(_Model):
    """Quantile-fitted lengths matching ``mean``, ``median`` and ``p99`` within [min, max]."""

    dist: Literal["quantile"]
    mean: Annotated[float, Field(gt=0)]
    median: Annotated[float, Field(gt=0)]
    p99: Annotated[float, Field(gt=0)]
    min: Annotated[float, Field(gt=0)] = 1.0
    max: Annotated[float, Field(gt=0)]

    def to_dist(self) -> LengthDist:
        return QuantileLengths.fit(
            mean=self.mean, median=self.median, p99=self.p99, min_tokens=self.min, max_tokens=self.max
        )


DistConfig = Annotated[LognormalConfig | QuantileConfig, Field(discriminator="dist")]


class ResampleConfig(_Model):
    """Resample (input, output) pairs jointly from a trace file (any format ``load_trace`` reads)."""

    path: str
    format: str | None = None


class LengthsConfig(_Model):
    """Either ``input`` and ``output`` distributions, or ``resample`` from a trace."""

    input: DistConfig | None = None
    output: DistConfig | None = None
    resample: ResampleConfig | None = None

    @model_validator(mode="after")
    def _one_of(self) -> LengthsConfig:
        independent = self.input is not None and self.output is not None
        if independent == (self.resample is not None) or (
            self.resample is not None and (self.input is not None or self.output is not None)
        ):
            raise ValueError("give input and output distributions, or resample, not both")
        return self

    def to_lengths(self, base_dir: Path) -> Lengths:
        if self.resample is not None:
            path = Path(self.resample.path)
            if not path.is_absolute():
                path = base_dir / path
            return EmpiricalLengths.from_trace(load_trace(path, format=self.resample.format))
        assert self.input is not None and self.output is not None
        return IndependentLengths(input=self.input.to_dist(), output=self.output.to_dist())


class TenantConfig(_Model):
    """Tenants with shared system prompts; see :class:`TenantSpec`."""

    count: Annotated[int, Field(ge=1)]
    zipf_s: Annotated[float, Field(ge=0)] = 1.0
    prompts_per_tenant: Annotated[int, Field(ge=1)] = 2
    prompt_tokens: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]] = (200, 1000)
    block_size: Annotated[int, Field(ge=1)] | None = 16

    @model_validator(mode="after")
    def _range(self) -> TenantConfig:
        if self.prompt_tokens[1] < self.prompt_tokens[0]:
            raise ValueError("prompt_tokens is [min, max] with min <= max")
        return self

    def to_spec(self) -> TenantSpec:
        return TenantSpec(
            count=self.count,
            zipf_s=self.zipf_s,
            prompts_per_tenant=self.prompts_per_tenant,
            prompt_tokens=self.prompt_tokens,
            block_size=self.block_size,
        )


class SessionConfig(_Model):
    """Multi-turn conversation sessions; see :class:`SessionSpec` (the arrival rate is then sessions/s)."""

    mean_turns: Annotated[float, Field(ge=1, description="mean turns per session (geometric)")] = 4.0
    mean_think_s: Annotated[
        float, Field(gt=0, description="mean gap (s) from one turn's arrival to the next's (exponential)")
    ] = 60.0
    system_tokens: Annotated[int, Field(ge=0, description="system prompt shared by every session")] = 1000
    block_size: Annotated[int, Field(ge=1, description="tokens per prefix-hash block")] = 16
    max_context_tokens: Annotated[
        int, Field(ge=1, le=2**31 - 1, description="a session ends before a longer prompt")
    ] = 32_768

    @model_validator(mode="after")
    def _room(self) -> SessionConfig:
        if self.max_context_tokens <= self.system_tokens:
            raise ValueError("max_context_tokens must exceed system_tokens")
        return self

    def to_spec(self) -> SessionSpec:
        return SessionSpec(
            mean_turns=self.mean_turns,
            mean_think_s=self.mean_think_s,
            system_tokens=self.system_tokens,
            block_size=self.block_size,
            max_context_tokens=self.max_context_tokens,
        )


class AgentConfig(_Model):
    """Agentic sessions with tool latencies; see :class:`AgentSpec` (the arrival rate is sessions/s)."""

    mean_turns: Annotated[float, Field(ge=1, description="mean model calls per session (geometric)")] = 6.0
    tool_median_s: Annotated[float, Field(gt=0, description="median tool latency, s (lognormal)")] = 2.0
    tool_sigma: Annotated[float, Field(ge=0, description="lognormal sigma of the tool latency")] = 1.0
    system_tokens: Annotated[int, Field(ge=0, description="system prompt shared by every session")] = 2000
    block_size: Annotated[int, Field(ge=1, description="tokens per prefix-hash block")] = 16
    max_context_tokens: Annotated[
        int, Field(ge=1, le=2**31 - 1, description="a session ends before a longer prompt")
    ] = 131_072
    nominal_ttft_s: Annotated[float, Field(ge=0, description="TTFT of the nominal schedule, s")] = 0.5
    nominal_tpot_s: Annotated[float, Field(ge=0, description="TPOT of the nominal schedule, s")] = 0.02

    @model_validator(mode="after")
    def _room(self) -> AgentConfig:
        if self.max_context_tokens <= self.system_tokens:
            raise ValueError("max_context_tokens must exceed system_tokens")
        return self

    def to_spec(self) -> AgentSpec:
        return AgentSpec(**self.model_dump())


class SynthConfig(_Model):
    """A synthetic trace as written in YAML (or assembled from CLI flags); see :class:`SynthSpec`.

    Example YAML::

        duration_s: 3600
        seed: 7
        arrival: {kind: gamma, rate: 5.5, cv: 1.5}
        diurnal: {amplitude: 0.3, period_s: 3600, phase_s: -900}
        lengths:
          input: {dist: lognormal, mean: 1155, median: 1020, max: 16384}
          output: {dist: quantile, mean: 211, median: 129, p99: 601, min: 4, max: 1024}
        tenants: {count: 8, block_size: 16}

    ``sessions: {mean_turns: 4, mean_think_s: 60, system_tokens: 1000}`` instead of ``tenants`` makes
    multi-turn conversations; ``arrival`` then gives the sessions' first turns.
    ``agents: {mean_turns: 6, tool_median_s: 2}`` makes agentic sessions (``turn``, ``think_s``) instead.
    """

    duration_s: Annotated[float, Field(gt=0)]
    seed: Annotated[int, Field(ge=0)] = 0
    arrival: ArrivalConfig
    diurnal: DiurnalConfig | None = None
    lengths: LengthsConfig | None = None
    tenants: TenantConfig | None = None
    sessions: SessionConfig | None = None
    agents: AgentConfig | None = None
    model: str | None = None
    name: str = "synthetic"

    @field_validator("sessions")
    @classmethod
    def _tenants_or_sessions(
        cls, sessions: SessionConfig | None, info: ValidationInfo
    ) -> SessionConfig | None:
        # A field validator (not a model one) so that the error names the key: field sessions.
        if sessions is not None and info.data.get("tenants") is not None:
            raise ValueError("give tenants or sessions, not both")
        return sessions

    @field_validator("agents")
    @classmethod
    def _agents_alone(cls, agents: AgentConfig | None, info: ValidationInfo) -> AgentConfig | None:
        others = (info.data.get("tenants"), info.data.get("sessions"))
        if agents is not None and any(x is not None for x in others):
            raise ValueError("agents cannot be combined with tenants or sessions")
        return agents

    def to_spec(self, *, base_dir: Path | None = None, default_lengths: Lengths | None = None) -> SynthSpec:
        """The frozen spec; relative ``resample`` paths resolve against ``base_dir``.

        Raises:
            InputError: ``lengths`` is missing and no ``default_lengths`` is given.
        """
        if self.lengths is not None:
            lengths = self.lengths.to_lengths(base_dir or Path.cwd())
        elif default_lengths is not None:
            lengths = default_lengths
        else:
            raise InputError("no length model", field="lengths", expected="input/output or resample")
        return SynthSpec(
            arrivals=self.arrival.to_arrivals(),
            lengths=lengths,
            duration_s=self.duration_s,
            seed=self.seed,
            modulation=self.diurnal.to_modulation() if self.diurnal is not None else None,
            tenants=self.tenants.to_spec() if self.tenants is not None else None,
            model=self.model,
            name=self.name,
            sessions=self.sessions.to_spec() if self.sessions is not None else None,
            agents=self.agents.to_spec() if self.agents is not None else None,
        )


def validation_error(exc: ValidationError, *, path: str | None) -> InputError:
    """One :class:`InputError` naming the key path of a pydantic error, e.g. ``field arrival.cv``.

    The first error's key path becomes ``field``; further errors follow in the message as ``key: msg``.
    """
    located: list[tuple[str, str]] = []
    for err in exc.errors():
        # Discriminated unions add the tag ('lognormal'/'quantile') to the location: not a key of the file.
        loc = ".".join(str(x) for x in err["loc"] if x not in ("lognormal", "quantile"))
        located.append((loc, str(err["msg"]).removeprefix("Value error, ")))
    first_loc, first_msg = located[0] if located else ("", str(exc))
    rest = [f"{loc}: {msg}" if loc else msg for loc, msg in located[1:]]
    return InputError("; ".join([first_msg, *rest]), path=path, field=first_loc or None)


def parse_config(data: Mapping[str, Any], *, source: str | None = None) -> SynthConfig:
    """Validate a mapping (from YAML or flags) into a :class:`SynthConfig`, errors as :class:`InputError`.

    >>> parse_config({"duration_s": 10, "arrival": {"kind": "gamma", "rate": 1}}).arrival.kind
    Traceback (most recent call last):
    ...
    traces.errors.InputError: field arrival: kind gamma needs a cv
    """
    try:
        return SynthConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise validation_error(exc, path=source) from None


def load_spec(path: str | Path, *, default_lengths: Lengths | None = None) -> SynthSpec:
    """Read a YAML synth spec file into a :class:`SynthSpec`.

    Raises:
        InputError: missing file, bad YAML (with its line) or a bad key (with its dotted path).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read spec: {exc.strerror or exc}", path=str(p)) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        row = mark.line + 1 if mark is not None else None
        raise InputError(f"invalid YAML: {getattr(exc, 'problem', exc)}", path=str(p), row=row) from None
    if not isinstance(data, dict):
        raise InputError(
            "a synth spec is a YAML mapping", path=str(p), expected="keys duration_s, arrival, ..."
        )
    config = parse_config(data, source=str(p))
    return config.to_spec(base_dir=p.parent, default_lengths=default_lengths)
