"""``--precision`` of the verbs that replay one configuration (replay, autoscale-compare)."""

from __future__ import annotations

from typing import Annotated

import typer

PrecisionOpt = Annotated[str, typer.Option(
    "--precision",
    help="weights and KV dtypes: native (the model's published weights, bf16 KV; the default) or bf16, fp8, "
         "fp8+kv8, bf16+kv8 (fp8 halves the bytes and changes outputs)")]
"""Use as ``precision: PrecisionOpt = "native"``; resolve with
:func:`planner.perf.precision.resolve_precision`."""
