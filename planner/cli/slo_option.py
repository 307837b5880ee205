"""The SLO options of the verbs that plan (plan, report): the targets' statistic and per-class targets
(read by :func:`planner.plan.slo_classes.slo_at` and :func:`planner.plan.slo_classes.classes_of`)."""

from __future__ import annotations

from typing import Annotated

import typer

StatisticOpt = Annotated[str, typer.Option(
    "--slo-statistic",
    help="what the targets hold at, in scoring and in the replay check: mean (as AIConfigurator and "
         "Dynamo state SLOs) or a percentile p50 to p99.9; or one per target, e.g. ttft=p99,tpot=mean "
         "(a bare value sets the rest)")]
"""Use as ``slo_statistic: StatisticOpt = "p99"``."""

E2EOpt = Annotated[float | None, typer.Option(
    "--slo-e2e-ms",
    help="end-to-end target (arrival to last token), ms, at the statistic's e2e= value (default: the "
         "bare one); unset: no end-to-end promise")]
"""Use as ``slo_e2e_ms: E2EOpt = None``."""

SLOClassOpt = Annotated[list[str] | None, typer.Option(
    "--slo-class",
    help="targets of one slo_class of the trace, NAME:TTFT_MS:TPOT_MS[:E2E_MS] (repeatable), e.g. "
         "batch:20000:250; "
         "other requests keep --slo-ttft-ms/--slo-tpot-ms. The plan weighs one shared fleet held to the "
         "strictest targets against a pool per class")]
"""Use as ``slo_class: SLOClassOpt = None`` (``PlanRequest.classes``)."""
