"""The SLO options of the verbs that plan (plan, report): the targets' statistic and per-class targets
(read by :func:`planner.plan.slo_classes.slo_at` and :func:`planner.plan.slo_classes.classes_of`)."""

from __future__ import annotations

from typing import Annotated

import typer

StatisticOpt = Annotated[str, typer.Option(
    "--slo-statistic",
    help="what the targets hold at, in scoring and in the replay check: mean (as AIConfigurator and "
         "Dynamo state SLOs) or a percentile p50 to p99.9")]
"""Use as ``slo_statistic: StatisticOpt = "p99"``."""

SLOClassOpt = Annotated[list[str] | None, typer.Option(
    "--slo-class",
    help="targets of one slo_class of the trace, NAME:TTFT_MS:TPOT_MS (repeatable), e.g. batch:20000:250; "
         "other requests keep --slo-ttft-ms/--slo-tpot-ms. The plan weighs one shared fleet held to the "
         "strictest targets against a pool per class")]
"""Use as ``slo_class: SLOClassOpt = None`` (``PlanRequest.classes``)."""
