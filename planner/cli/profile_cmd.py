"""``fleetwise profile``: measure this machine's GPU and write the profile the perf model is fitted on.

The profiler itself lives in :mod:`planner.profile` and needs torch with a CUDA GPU (and, for power,
NVML through ``nvidia-ml-py``): the ``profile`` extra. Everywhere else this verb explains that and exits
with code 2 instead of failing on an import. On a GPU host without the planner's own dependencies,
``python -m planner.profile`` takes the same options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from planner.cli.verbs import summary
from planner.profile.runner import (
    DEFAULT_OUT,
    SECTIONS,
    ProfileOptions,
    parse_only,
    run_profile,
    unavailable_reason,
)
from traces.errors import InputError

EXAMPLE = """
Examples:

  fleetwise profile                                   # everything but the engine run, ~7 min on an H100
  fleetwise profile --quick --out /tmp/prof           # reduced grid, about a minute
  fleetwise profile --only gemm,attention --resume    # finish a run cut short
  fleetwise profile --only engine --validate-engine   # end-to-end check against transformers' engine
  fleetwise profile --engine vllm --out cal/          # vLLM under trace load here -> engine profile
  fleetwise profile --engine vllm --from-run RUN --out cal/   # fit a run measured elsewhere

Writes <out>/profiles/<GPU key>/{meta.json, gemm, attention, memcpy, elementwise, steps, power .parquet}
and, with --validate-engine, <out>/validation/<GPU key>/{engine_requests, engine_tokens, engine_power
.parquet, engine_meta.json}. The GPU's clocks and power limit are never changed.
"""

INSTALL_HINT = (
    "the profiler needs torch and an NVIDIA GPU with its driver (NVML): "
    "install them with `pip install 'fleetwise[profile]'` on a GPU host, "
    "or run `python -m planner.profile` there"
)


def register(app: typer.Typer) -> None:
    """Add ``fleetwise profile``."""

    @app.command("profile", help=summary("profile") + EXAMPLE)
    def profile(
        out: Annotated[
            Path, typer.Option("--out", help="data folder to write profiles/ and validation/ in")
        ] = (DEFAULT_OUT),
        quick: Annotated[bool, typer.Option("--quick", help="reduced grid for a smoke run")] = False,
        only: Annotated[
            str | None, typer.Option("--only", help=f"comma-separated sections: {', '.join(SECTIONS)}")
        ] = None,
        validate_engine: Annotated[
            bool, typer.Option("--validate-engine", help="also replay traces through transformers' engine")
        ] = False,
        budget_s: Annotated[
            float, typer.Option("--budget-s", min=1.0, help="seconds for the micro sections together")
        ] = 420.0,
        resume: Annotated[
            bool, typer.Option("--resume", help="keep GEMM/attention rows already in --out, measure the rest")
        ] = False,
        collectives: Annotated[
            bool, typer.Option("--collectives", help="multi-GPU host: NCCL collectives, TP steps and an EP "
                               "MoE layer over every GPU, one process each (planner/profile/collectives.py)")
        ] = False,
        engine: Annotated[
            str | None, typer.Option("--engine", help="vllm: measure vLLM under trace load here and fit an "
                                     "engine profile (writes <out>/engines/vllm/<GPU>.json)")
        ] = None,
        model: Annotated[
            str, typer.Option("--model", help="with --engine: architecture served with random weights "
                              "(llama-3.1-8b, qwen3-32b, qwen3-30b-a3b)")
        ] = "llama-3.1-8b",
        from_run: Annotated[
            Path | None, typer.Option("--from-run", help="with --engine: fit on a run measured before "
                                      "(python -m planner.profile.vllm_run --out DIR) instead of measuring")
        ] = None,
    ) -> None:
        if engine is not None:
            _engine(engine, out, model, from_run)
            return
        if collectives:
            _collectives(out, quick, budget_s)
            return
        try:
            sections = parse_only(only)
        except ValueError as exc:
            raise InputError(
                f"unknown section in {only!r}",
                field="--only",
                expected=f"comma-separated names among {', '.join(SECTIONS)}",
            ) from exc
        reason = unavailable_reason()
        if reason is not None:
            Console(stderr=True).print(
                f"[bold red]error:[/] {escape(reason)}; {escape(INSTALL_HINT)}", highlight=False
            )
            raise typer.Exit(code=2)
        options = ProfileOptions(
            out=out,
            quick=quick,
            only=sections,
            validate_engine=validate_engine,
            budget_s=budget_s,
            resume=resume,
        )
        for path in run_profile(options):
            typer.echo(f"wrote {path}")


def _engine(engine: str, out: Path, model: str, from_run: Path | None) -> None:
    """``--engine vllm``: measure (or take ``--from-run``), fit and write an engine profile."""
    from planner.cli.profile_engine import ingest, measure

    if engine != "vllm":
        raise InputError(f"unknown engine {engine!r}", field="--engine", expected="vllm")
    run = from_run if from_run is not None else measure(out, model)
    for path in ingest(run, out, Console(stderr=True)):
        typer.echo(f"wrote {path}")


def _collectives(out: Path, quick: bool, budget_s: float) -> None:
    """``--collectives``: the multi-GPU sections (needs torch and at least two GPUs)."""
    reason = unavailable_reason()
    if reason is not None:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(reason)}; {escape(INSTALL_HINT)}",
                                   highlight=False)
        raise typer.Exit(code=2)
    from planner.profile.collectives import MultiOptions, run_multi

    try:
        paths = run_multi(MultiOptions(out=out, budget_s=budget_s, quick=quick))
    except RuntimeError as exc:  # fewer than two GPUs
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(code=2) from None
    for path in paths:
        typer.echo(f"wrote {path}")
