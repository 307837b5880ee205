"""``--spec-decode`` of the verbs that build one replica (replay, perf), one definition for both."""

from __future__ import annotations

from typing import Annotated

import typer

from planner.perf.spec_decode import SPEC_HELP

SpecDecodeOpt = Annotated[str | None, typer.Option("--spec-decode", help=SPEC_HELP)]
"""Use as ``spec_decode: SpecDecodeOpt = None``; parse with
:func:`planner.perf.spec_decode.parse_spec_decode`."""
