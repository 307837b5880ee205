"""``--engine``: the one option every replaying or scoring verb shares, so its help and default agree."""

from __future__ import annotations

from typing import Annotated

import typer

from planner.perf.engine_profile import DEFAULT_ENGINE, ENGINES

__all__ = ["DEFAULT_ENGINE", "EngineOpt"]

EngineOpt = Annotated[str, typer.Option(
    "--engine",
    help=f"engine profile the step model uses: {DEFAULT_ENGINE} (default; fitted on vLLM 0.26 runs on the "
         "H100, checked on held-out loads, models and precisions: fleetwise bench replay --validate "
         "--engine vllm) "
         f"or bare (the profiler's own layer stack, no serving engine); one of {', '.join(ENGINES)}")]
"""Use as ``engine: EngineOpt = DEFAULT_ENGINE``."""
