"""``fleetwise traces inspect|convert|synth``: look at a trace, convert it to Parquet, or generate one.

The verbs only parse flags and format results: loading is :mod:`traces.load`, statistics
:mod:`traces.stats`, conversion :mod:`traces.convert`, generation :mod:`traces.synth`. Bad input of any
kind is an :class:`~traces.errors.InputError`, which ``fleetwise`` prints as one line with exit code 2.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import polars as pl
import typer
from rich.console import Console
from rich.table import Table

from planner.cli.verbs import summary
from traces.convert import convert_to_parquet
from traces.default import INPUT_SHAPE, OUTPUT_SHAPE, default_spec, trace_path
from traces.errors import InputError
from traces.load import scan_trace_with_meta
from traces.schema import TraceMeta
from traces.stats import TraceStats, describe
from traces.synth import synthesize
from traces.synth_config import QuantileConfig, load_spec, parse_config
from traces.write import write_parquet

OVERVIEW_EXAMPLE = """
Examples:

  fleetwise traces inspect AzureLLMInferenceTrace_conv.csv --plot conv.png
  fleetwise traces convert AzureLLMInferenceTrace_conv.csv --out conv.parquet
  fleetwise traces synth --out poisson.parquet --rate 5 --duration 3600
"""

INSPECT_EXAMPLE = """
Examples:

  fleetwise traces inspect AzureLLMInferenceTrace_conv.csv
  fleetwise traces inspect trace.jsonl --window 10 --plot trace.png
  fleetwise traces inspect my.csv --map arrival_s=ts --map input_tokens=in --map output_tokens=out --json
"""

CONVERT_EXAMPLE = """
Examples:

  fleetwise traces convert AzureLLMInferenceTrace_conv.csv --out conv.parquet
  fleetwise traces convert my.csv --out x.parquet --map arrival_s=t --map input_tokens=i --map output_tokens=o
"""

SYNTH_EXAMPLE = """
Examples:

  fleetwise traces synth --out poisson.parquet --rate 5 --duration 3600
  fleetwise traces synth --out bursty.parquet --rate 10 --duration 600 --arrival gamma --cv 3 --seed 7
  fleetwise traces synth --out m.parquet --duration 600 --arrival mmpp --mmpp-rates 2,20 --mmpp-sojourn 60,10
  fleetwise traces synth --out tenants.parquet --rate 5 --duration 600 --tenants 8 --block-size 16
  fleetwise traces synth --out chat.parquet --rate 2 --duration 3600 --sessions --mean-turns 4 --think-s 60

  fleetwise traces synth --out agents.parquet --rate 0.5 --duration 600 --agentic --mean-turns 6 --think-s 2
  fleetwise traces synth --out day.parquet --spec day.yaml

Without length flags, lengths follow the bundled default trace (Azure LLM conversation 2023 shape).
With --sessions, --rate is sessions per second (their first turns); each turn's prompt is the conversation
so far, the input lengths are the new user messages, and prefix_hashes follow the shared context.
A spec file is the YAML form of traces.synth_config.SynthConfig, e.g.:

  duration_s: 3600
  arrival: {kind: gamma, rate: 5.5, cv: 1.5}
  diurnal: {amplitude: 0.3, period_s: 3600, phase_s: -900}
  lengths:
    input: {dist: lognormal, mean: 1155, median: 1020, max: 16384}
    output: {dist: quantile, mean: 211, median: 129, p99: 601, min: 4, max: 1024}
  tenants: {count: 8, block_size: 16}
"""

FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="trace format (azure, burstgpt, mooncake, servegen, generic_csv, "
        "generic_parquet, canonical); detected when left out",
    ),
]
MapOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        help="column mapping col=source for the generic formats, also time_unit=s|ms|us|ns"
        "|datetime and time_format=...; ServeGen options start_s=, duration_s=, seed= (repeatable)",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]


def parse_mapping(items: list[str] | None) -> dict[str, str] | None:
    """``["a=b", ...]`` from ``--map`` flags as a dict.

    Raises:
        InputError: an item without ``=`` or with an empty side, or a key given twice.

    >>> parse_mapping(["arrival_s=ts", "time_unit=ms"])
    {'arrival_s': 'ts', 'time_unit': 'ms'}
    """
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise InputError(f"bad mapping {item!r}", field="--map", expected="col=source, e.g. arrival_s=ts")
        if key in out:
            raise InputError(f"mapping for {key!r} given twice", field="--map", expected="each key once")
        out[key] = value
    return out


def _console() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=160)


@contextmanager
def _status(message: str) -> Iterator[None]:
    """A spinner on stderr while something slow runs (silent when stderr is not a terminal)."""
    console = Console(stderr=True)
    if console.is_terminal:
        with console.status(message):
            yield
    else:
        yield


def _fmt(x: float | None, digits: int = 2) -> str:
    if x is None or math.isnan(x):
        return "-"
    return f"{x:,.{digits}f}"


def stats_table(meta: TraceMeta, stats: TraceStats) -> Table:
    """The rich table that ``inspect`` prints (one row per statistic)."""
    t = Table(title=Path(meta.source).name, show_header=True)
    t.add_column("statistic", no_wrap=True)
    t.add_column("value", justify="right", no_wrap=True)
    rows: list[tuple[str, str]] = [
        ("format", meta.format),
        ("requests", f"{stats.requests:,}"),
        ("duration (last - first arrival)", f"{_fmt(stats.duration_s, 1)} s"),
        ("mean rate", f"{_fmt(stats.mean_rate_rps)} req/s"),
        (f"peak/mean ({stats.window_s:g}-s windows)", _fmt(stats.peak_to_mean)),
        ("inter-arrival CV", _fmt(stats.interarrival_cv)),
    ]
    for name, ls in (("input", stats.input_tokens), ("output", stats.output_tokens)):
        rows.append((f"{name} tokens mean / median", f"{_fmt(ls.mean, 1)} / {_fmt(ls.median, 0)}"))
        rows.append((f"{name} tokens p90 / p99 / max", f"{_fmt(ls.p90, 0)} / {_fmt(ls.p99, 0)} / {ls.max:,}"))
    if stats.reasoning_tokens is not None:
        rs = stats.reasoning_tokens
        share = "" if stats.reasoning_share is None else f" ({stats.reasoning_share:.1%} of output)"
        rows.append(("reasoning tokens mean / median / p99", f"{_fmt(rs.mean, 1)} / {_fmt(rs.median, 0)} / "
                     f"{_fmt(rs.p99, 0)}{share}"))
    peak = stats.series.select("prefill_tokens_per_s", "decode_tokens_per_s").max().row(0)
    rows.append(("peak prefill demand", f"{_fmt(float(peak[0]), 0)} tokens/s"))
    rows.append(("peak decode demand", f"{_fmt(float(peak[1]), 0)} tokens/s"))
    if stats.prefix_hit_ratio is not None:
        hits = f"{stats.prefix_hit_ratio:.3f} of {stats.prefix_blocks:,} blocks"
        rows.append(("ideal prefix-cache hit ratio", hits))
    if meta.block_size is not None:
        rows.append(("block size", f"{meta.block_size} tokens"))
    if stats.tenants is not None:
        rows.append(("tenants", f"{stats.tenants:,}"))
    if stats.models is not None:
        rows.append(("models", f"{stats.models:,}"))
    ss = stats.sessions
    if ss is not None:
        tps = ss.turns_per_session
        rows.append(("sessions (requests in them)", f"{ss.sessions:,} ({ss.session_requests:,})"))
        rows.append(("turns per session mean / median / p99 / max",
                     f"{_fmt(tps.mean, 2)} / {_fmt(tps.median, 0)} / {_fmt(tps.p99, 0)} / "
                     f"{_fmt(tps.max, 0)}"))
        if ss.think_s is not None:
            th = ss.think_s
            rows.append(("think time mean / median / p99",
                         f"{_fmt(th.mean, 2)} / {_fmt(th.median, 2)} / {_fmt(th.p99, 2)} s"))
    if meta.dropped_rows:
        rows.append(("dropped rows", f"{meta.dropped_rows:,}"))
    for name, value in rows:
        t.add_row(name, value)
    return t


def write_plot(stats: TraceStats, lengths: pl.DataFrame, title: str, out: Path) -> Path:
    """Arrival rate per window and the two length histograms, as a PNG (matplotlib, no GUI backend).

    ``lengths`` holds the ``input_tokens`` and ``output_tokens`` columns (only they are collected).

    Raises:
        InputError: the image cannot be written.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.6), layout="constrained")
    ax_rate, ax_in, ax_out = fig.subplots(1, 3)
    series = stats.series
    ax_rate.step(series["start_s"].to_numpy() / 60.0, series["rate_rps"].to_numpy(), where="post")
    ax_rate.axhline(stats.mean_rate_rps, color="grey", linestyle="--", linewidth=1, label="mean")
    ax_rate.set_xlabel("time (min)")
    ax_rate.set_ylabel(f"req/s ({stats.window_s:g}-s windows)")
    ax_rate.set_title(f"arrival rate, peak/mean {_fmt(stats.peak_to_mean)}")
    ax_rate.legend(loc="upper right")
    panels = ((ax_in, "input_tokens", stats.input_tokens), (ax_out, "output_tokens", stats.output_tokens))
    for ax, col, ls in panels:
        values = lengths[col].to_numpy()
        positive = values[values > 0]
        if positive.size:
            bins = np.geomspace(max(1, int(positive.min())), max(2, int(positive.max())), 60)
            ax.hist(positive, bins=bins)
            ax.set_xscale("log")
        ax.axvline(ls.median, color="black", linewidth=1, label=f"median {ls.median:,.0f}")
        ax.axvline(ls.p99, color="red", linewidth=1, label=f"p99 {ls.p99:,.0f}")
        ax.set_xlabel(col.replace("_", " "))
        ax.set_ylabel("requests")
        ax.legend(loc="upper right")
    fig.suptitle(title)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot write plot: {exc}", path=str(out), expected="a writable .png path") from exc
    return out


def _parse_pair(text: str | None, flag: str) -> list[float] | None:
    if text is None:
        return None
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 2:
        raise InputError(
            f"bad value {text!r}", field=flag, expected="two numbers separated by a comma, e.g. 2,20"
        )
    return values


def synth_config_from_flags(
    *,
    rate: float | None,
    duration: float | None,
    arrival: str,
    cv: float | None,
    seed: int,
    mmpp_rates: str | None,
    mmpp_sojourn: str | None,
    diurnal_amplitude: float | None,
    diurnal_period: float,
    diurnal_phase: float,
    input_mean: float | None,
    input_median: float | None,
    input_max: int,
    output_mean: float | None,
    output_median: float | None,
    output_max: int,
    resample: Path | None,
    tenants: int | None,
    block_size: int | None,
    model: str | None,
    sessions: bool = False,
    mean_turns: float | None = None,
    think_s: float | None = None,
    system_tokens: int | None = None,
    max_context: int | None = None,
    agentic: bool = False,
) -> dict[str, Any]:
    """The :class:`~traces.synth_config.SynthConfig` mapping that the ``synth`` flags describe.

    Lengths not given fall back to the default trace's shapes (:mod:`traces.default`). Any session flag
    (``--mean-turns``, ``--think-s``, ``--system-tokens``, ``--max-context``) turns sessions on, as
    ``--sessions`` does; ``--block-size`` then sets the sessions' block size. With ``--agentic`` the same
    flags shape agent sessions instead (``--think-s`` is then the median tool latency).
    """
    if duration is None:
        raise InputError("no duration", field="--duration", expected="--duration SECONDS (or --spec FILE)")
    arrival_cfg: dict[str, Any] = {"kind": arrival}
    if rate is not None:
        arrival_cfg["rate"] = rate
    if cv is not None:
        arrival_cfg["cv"] = cv
    rates, sojourns = _parse_pair(mmpp_rates, "--mmpp-rates"), _parse_pair(mmpp_sojourn, "--mmpp-sojourn")
    if rates is not None or sojourns is not None:
        arrival_cfg["mmpp"] = {"rates": rates, "mean_sojourn_s": sojourns}
    data: dict[str, Any] = {"duration_s": duration, "seed": seed, "arrival": arrival_cfg}
    if diurnal_amplitude is not None:
        data["diurnal"] = {
            "amplitude": diurnal_amplitude,
            "period_s": diurnal_period,
            "phase_s": diurnal_phase,
        }
    if resample is not None:
        if any(x is not None for x in (input_mean, input_median, output_mean, output_median)):
            raise InputError(
                "--resample replaces the length flags",
                field="--resample",
                expected="either --resample or --input-*/--output-* flags",
            )
        data["lengths"] = {"resample": {"path": str(resample)}}
    else:

        def side(
            mean: float | None, median: float | None, max_tokens: int, default: QuantileConfig
        ) -> dict[str, Any]:
            if mean is None and median is None:
                return dict(default.model_dump())
            return {"dist": "lognormal", "mean": mean, "median": median, "max": max_tokens}

        data["lengths"] = {
            "input": side(input_mean, input_median, input_max, INPUT_SHAPE),
            "output": side(output_mean, output_median, output_max, OUTPUT_SHAPE),
        }
    session_flags = {
        "mean_turns": mean_turns,
        "mean_think_s": think_s,
        "system_tokens": system_tokens,
        "max_context_tokens": max_context,
    }
    if agentic:
        if sessions or tenants is not None:
            raise InputError("--agentic cannot be combined with --sessions or --tenants", field="--agentic",
                             expected="--agentic alone, or with --mean-turns, --think-s, --system-tokens")
        agent_flags = {**session_flags, "tool_median_s": session_flags.pop("mean_think_s")}
        data["agents"] = {k: v for k, v in agent_flags.items() if v is not None}
        if block_size is not None:
            data["agents"]["block_size"] = block_size
    elif sessions or any(v is not None for v in session_flags.values()):
        if tenants is not None:
            raise InputError(
                "--tenants cannot be combined with sessions",
                field="--sessions",
                expected="either --tenants or --sessions (and its flags)",
            )
        data["sessions"] = {k: v for k, v in session_flags.items() if v is not None}
        if block_size is not None:
            data["sessions"]["block_size"] = block_size
    elif tenants is not None:
        data["tenants"] = {"count": tenants, "block_size": block_size}
    elif block_size is not None:
        data["tenants"] = {"count": 1, "block_size": block_size}
    if model is not None:
        data["model"] = model
    return data


def register(app: typer.Typer) -> None:
    """Add ``fleetwise traces inspect|convert|synth``."""
    traces_app = typer.Typer(
        help=summary("traces") + OVERVIEW_EXAMPLE,
        no_args_is_help=True,
    )
    from planner.cli import traces_prometheus

    traces_prometheus.register(traces_app)

    @traces_app.command(
        "inspect", help="Detect the format, load, validate and summarize a trace." + INSPECT_EXAMPLE
    )
    def inspect_cmd(
        file: Annotated[Path, typer.Argument(help="trace file (or ServeGen client folder), or 'default'")],
        format: FormatOpt = None,
        map_: MapOpt = None,
        window: Annotated[
            float, typer.Option("--window", help="window length (s) for peak/mean and the plot")
        ] = 60.0,
        plot: Annotated[
            Path | None, typer.Option("--plot", help="write a PNG: rate over time, length histograms")
        ] = None,
        as_json: JsonOpt = False,
    ) -> None:
        mapping = parse_mapping(map_)
        with _status(f"reading {file}"):
            # Lazy: a multi-million-row trace is validated and measured in streaming passes, never held.
            lf, meta = scan_trace_with_meta(trace_path(file), format=format, mapping=mapping)
            stats = describe(lf, window_s=window)
            if plot is not None:
                write_plot(stats, lf.select("input_tokens", "output_tokens").collect(), meta.source, plot)
        if as_json:
            doc = {
                "source": meta.source,
                "format": meta.format,
                "block_size": meta.block_size,
                "repairs": list(meta.repairs),
                "dropped_rows": meta.dropped_rows,
                "extra": dict(meta.extra),
                "stats": stats.to_dict(),
                "plot": None if plot is None else str(plot),
            }
            typer.echo(json.dumps(doc, indent=2))
            return
        console = _console()
        console.print(stats_table(meta, stats))
        for note in meta.repairs:
            console.print(f"[yellow]repair:[/] {note}", highlight=False)
        if plot is not None:
            console.print(f"plot written to {plot}", highlight=False)

    @traces_app.command(
        "convert", help="Convert any supported trace to canonical Parquet (streaming)." + CONVERT_EXAMPLE
    )
    def convert_cmd(
        file: Annotated[Path, typer.Argument(help="trace file (or ServeGen client folder)")],
        out: Annotated[Path, typer.Option("--out", help="Parquet file to write")],
        format: FormatOpt = None,
        map_: MapOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        mapping = parse_mapping(map_)
        with _status(f"converting {file}"):
            report = convert_to_parquet(file, out, format=format, mapping=mapping)
        rate = report.rows / report.seconds if report.seconds > 0 else None
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "rows": report.rows,
                        "seconds": report.seconds,
                        "rows_per_s": rate,
                        "out_path": report.out_path,
                        "format": report.format,
                        "repairs": list(report.meta.repairs),
                        "dropped_rows": report.meta.dropped_rows,
                    },
                    indent=2,
                )
            )
            return
        console = _console()
        console.print(
            f"wrote {report.out_path}: {report.rows:,} requests from {report.format} "
            f"in {report.seconds:.2f} s ({_fmt(rate, 0)} rows/s)",
            highlight=False,
        )
        for note in report.meta.repairs:
            console.print(f"[yellow]repair:[/] {note}", highlight=False)

    @traces_app.command("synth", help="Generate a synthetic trace from flags or a YAML spec." + SYNTH_EXAMPLE)
    def synth_cmd(
        out: Annotated[Path, typer.Option("--out", help="Parquet file to write")],
        spec: Annotated[
            Path | None, typer.Option("--spec", help="YAML spec (traces.synth_config.SynthConfig)")
        ] = None,
        rate: Annotated[float | None, typer.Option("--rate", help="mean requests per second")] = None,
        duration: Annotated[
            float | None, typer.Option("--duration", help="seconds of arrivals to generate")
        ] = None,
        arrival: Annotated[
            str, typer.Option("--arrival", help="poisson, gamma, weibull or mmpp")
        ] = "poisson",
        cv: Annotated[
            float | None, typer.Option("--cv", help="CV of inter-arrival times (gamma, weibull)")
        ] = None,
        mmpp_rates: Annotated[
            str | None, typer.Option("--mmpp-rates", help="MMPP rates r0,r1 (req/s)")
        ] = None,
        mmpp_sojourn: Annotated[
            str | None, typer.Option("--mmpp-sojourn", help="MMPP mean sojourns s0,s1 (s)")
        ] = None,
        diurnal_amplitude: Annotated[
            float | None, typer.Option("--diurnal-amplitude", help="sinusoidal rate swing, 0 <= a < 1")
        ] = None,
        diurnal_period: Annotated[
            float, typer.Option("--diurnal-period", help="modulation period (s)")
        ] = 86_400.0,
        diurnal_phase: Annotated[float, typer.Option("--diurnal-phase", help="modulation phase (s)")] = 0.0,
        input_mean: Annotated[float | None, typer.Option("--input-mean", help="lognormal input mean")] = None,
        input_median: Annotated[
            float | None, typer.Option("--input-median", help="lognormal input median")
        ] = None,
        input_max: Annotated[int, typer.Option("--input-max", help="clip input lengths here")] = 32_768,
        output_mean: Annotated[
            float | None, typer.Option("--output-mean", help="lognormal output mean")
        ] = None,
        output_median: Annotated[
            float | None, typer.Option("--output-median", help="lognormal output median")
        ] = None,
        output_max: Annotated[int, typer.Option("--output-max", help="clip output lengths here")] = 4096,
        resample: Annotated[
            Path | None, typer.Option("--resample", help="resample (input, output) pairs from this trace")
        ] = None,
        tenants: Annotated[int | None, typer.Option("--tenants", help="number of tenants")] = None,
        block_size: Annotated[
            int | None, typer.Option("--block-size", help="tokens per prefix-hash block (adds prefix_hashes)")
        ] = None,
        sessions: Annotated[
            bool,
            typer.Option("--sessions", help="multi-turn conversations; --rate is then sessions per second"),
        ] = False,
        mean_turns: Annotated[
            float | None, typer.Option("--mean-turns", help="sessions: mean turns per session (default 4)")
        ] = None,
        think_s: Annotated[
            float | None,
            typer.Option("--think-s", help="sessions: mean seconds from a turn's arrival to the next's (60)"),
        ] = None,
        system_tokens: Annotated[
            int | None,
            typer.Option("--system-tokens", help="sessions: system prompt shared by all sessions (1000)"),
        ] = None,
        max_context: Annotated[
            int | None,
            typer.Option("--max-context", help="sessions: a session ends before a longer prompt (32768)"),
        ] = None,
        agentic: Annotated[
            bool,
            typer.Option("--agentic", help="agent sessions with tool latencies (turn, think_s columns); "
                         "--rate is then sessions per second, --think-s the median tool latency (2)"),
        ] = False,
        model: Annotated[str | None, typer.Option("--model", help="value of the model column")] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="random seed (overrides the spec's)")] = None,
        as_json: JsonOpt = False,
    ) -> None:
        if spec is not None:
            shaping = {
                "--rate": rate,
                "--duration": duration,
                "--cv": cv,
                "--mmpp-rates": mmpp_rates,
                "--mmpp-sojourn": mmpp_sojourn,
                "--diurnal-amplitude": diurnal_amplitude,
                "--input-mean": input_mean,
                "--input-median": input_median,
                "--output-mean": output_mean,
                "--output-median": output_median,
                "--resample": resample,
                "--tenants": tenants,
                "--block-size": block_size,
                "--model": model,
                "--mean-turns": mean_turns,
                "--think-s": think_s,
                "--system-tokens": system_tokens,
                "--max-context": max_context,
            }
            given = [flag for flag, value in shaping.items() if value is not None]
            if arrival != "poisson":
                given.append("--arrival")
            if sessions:
                given.append("--sessions")
            if agentic:
                given.append("--agentic")
            if given:
                raise InputError(
                    f"{', '.join(given)} cannot be combined with --spec",
                    field="--spec",
                    expected="either a spec file or flags (--seed may override the spec)",
                )
            synth_spec = load_spec(spec, default_lengths=default_spec().lengths)
            if seed is not None:
                synth_spec = replace(synth_spec, seed=seed)
        else:
            data = synth_config_from_flags(
                rate=rate,
                duration=duration,
                arrival=arrival,
                cv=cv,
                seed=0 if seed is None else seed,
                mmpp_rates=mmpp_rates,
                mmpp_sojourn=mmpp_sojourn,
                diurnal_amplitude=diurnal_amplitude,
                diurnal_period=diurnal_period,
                diurnal_phase=diurnal_phase,
                input_mean=input_mean,
                input_median=input_median,
                input_max=input_max,
                output_mean=output_mean,
                output_median=output_median,
                output_max=output_max,
                resample=resample,
                tenants=tenants,
                block_size=block_size,
                model=model,
                sessions=sessions,
                mean_turns=mean_turns,
                think_s=think_s,
                system_tokens=system_tokens,
                max_context=max_context,
                agentic=agentic,
            )
            synth_spec = parse_config(data).to_spec()
        with _status("synthesizing"):
            trace = synthesize(synth_spec)
            if trace.num_requests == 0:
                raise InputError(
                    "the spec generated no requests",
                    field="duration_s",
                    expected="a longer duration or a higher rate",
                )
            write_parquet(trace, out)
            stats = describe(trace)
        if as_json:
            typer.echo(
                json.dumps(
                    {"out_path": str(out), "seed": synth_spec.seed, "stats": stats.to_dict()}, indent=2
                )
            )
            return
        console = _console()
        console.print(
            f"wrote {out}: {stats.requests:,} requests over {stats.duration_s:,.1f} s, "
            f"{_fmt(stats.mean_rate_rps)} req/s, peak/mean {_fmt(stats.peak_to_mean)}, "
            f"inter-arrival CV {_fmt(stats.interarrival_cv)}, input mean {stats.input_tokens.mean:,.0f}, "
            f"output mean {stats.output_tokens.mean:,.0f} (seed {synth_spec.seed})",
            highlight=False,
        )

    @traces_app.command("default", hidden=True, help="Maintainers: regenerate the bundled default trace "
                        "(--write) or check it (--check).")
    def default_cmd(
        write: Annotated[bool, typer.Option(
            "--write", help="regenerate traces/data/default_trace.parquet")] = False,
        check: Annotated[bool, typer.Option(
            "--check", help="exit 1 unless regenerating gives the same bytes")] = False,
    ) -> int:
        from traces.default import DEFAULT_TRACE_PATH, default_is_current, write_default

        if write == check:
            raise InputError("give exactly one of --write and --check", field="--write/--check",
                             expected="--write or --check")
        if write:
            out = write_default()
            _console().print(f"wrote {out} ({out.stat().st_size:,} bytes)", highlight=False)
            return 0
        if default_is_current():
            _console().print(f"{DEFAULT_TRACE_PATH} is up to date", highlight=False)
            return 0
        _console().print("default trace differs: run fleetwise traces default --write", highlight=False)
        return 1

    app.add_typer(traces_app, name="traces")
