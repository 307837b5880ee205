"""SLO classes: targets per ``slo_class`` of the trace (interactive chat and batch jobs rarely share one
promise), and the one place that decides which targets a request is held to.

A request whose class is listed is held to that class's targets; any other request (no ``slo_class``
column, a null, or a class not listed) to the plan's own targets. Every class holds its targets at the
plan's statistics (``--slo-statistic``, one for all targets or one per target), so classes compare like
with like.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import polars as pl
from numpy.typing import NDArray

from planner.sim.result import DEFAULT_CLASS
from solvers.capacity import SLO
from traces.errors import InputError
from traces.schema import RequestTrace

OTHER = "other"
"""Label of the requests no listed class claims, when classes are listed (held to the plan's targets)."""


@dataclass(frozen=True)
class SLOClass:
    """One class's targets.

    Attributes:
        name: the trace's ``slo_class`` value.
        slo: its targets (at the plan's statistic).
    """

    name: str
    slo: SLO


def parse_slo_class(text: str, statistic_of: SLO) -> SLOClass:
    """``NAME:TTFT_MS:TPOT_MS[:E2E_MS]`` as the CLI takes it, at the statistics of ``statistic_of`` (a
    class without an end-to-end field promises none, whatever the plan's own targets).

    Raises:
        InputError: not three or four fields, an empty name, or targets that are not positive numbers.

    >>> c = parse_slo_class("batch:20000:250", SLO.at(2.0, 0.1, "mean"))
    >>> c.name, c.slo.ttft_s, c.slo.tpot_s, c.slo.statistic
    ('batch', 20.0, 0.25, 'mean')
    >>> parse_slo_class("agent:1000:50:30000", SLO()).slo.e2e_s
    30.0
    """
    parts = text.split(":")
    expected = "NAME:TTFT_MS:TPOT_MS or NAME:TTFT_MS:TPOT_MS:E2E_MS, e.g. batch:20000:250"
    if len(parts) not in (3, 4) or not parts[0].strip():
        raise InputError(f"SLO class {text!r}", field="--slo-class", expected=expected)
    try:
        ms = [float(x) for x in parts[1:]]
    except ValueError:
        raise InputError(f"SLO class {text!r}", field="--slo-class", expected=expected) from None
    if not all(np.isfinite(x) and x > 0 for x in ms):
        raise InputError(f"SLO class {text!r}: targets must be positive", field="--slo-class",
                         expected=expected)
    slo = replace(statistic_of, ttft_s=ms[0] / 1000.0, tpot_s=ms[1] / 1000.0,
                  e2e_s=ms[2] / 1000.0 if len(ms) == 3 else None)
    return SLOClass(name=parts[0].strip(), slo=slo)


def slo_at(ttft_ms: float, tpot_ms: float, statistic: str, e2e_ms: float | None = None) -> SLO:
    """The SLO the options state (targets in ms at ``mean`` or a percentile such as ``p99``, or per
    target: ``ttft=p99,tpot=mean``; an end-to-end target when ``e2e_ms`` is given).

    Raises:
        InputError: a statistic that is neither the mean nor a percentile from 50 to 99.9, or an
            end-to-end target that is not positive.
    """
    try:
        return SLO.at(ttft_ms / 1000, tpot_ms / 1000, statistic,
                      e2e_s=None if e2e_ms is None else e2e_ms / 1000)
    except InputError as exc:
        field = "--slo-e2e-ms" if exc.field == "slo.e2e" else "--slo-statistic"
        raise InputError(exc.message, field=field, expected=exc.expected) from None


def classes_of(texts: Sequence[str] | None, slo: SLO) -> tuple[SLOClass, ...]:
    """``--slo-class`` values as class targets at the statistic of ``slo``."""
    return tuple(parse_slo_class(t, slo) for t in texts or ())


def labels(trace: RequestTrace, classes: Sequence[SLOClass]) -> NDArray[np.str_]:
    """Each request's class as the plan holds it: its listed class, else :data:`OTHER` (or
    ``default`` when no class is listed at all)."""
    n = trace.num_requests
    rest = OTHER if classes else DEFAULT_CLASS
    if "slo_class" not in trace.df.columns or not classes:
        return np.full(n, rest, dtype=object).astype(str)
    raw = trace.df["slo_class"].cast(pl.String).fill_null(rest).to_numpy().astype(str)
    listed = np.array([c.name for c in classes], dtype=str)
    return np.where(np.isin(raw, listed), raw, rest)


def targets(lab: NDArray[np.str_], slo: SLO, classes: Sequence[SLOClass]) -> tuple[
        NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Per request: its TTFT, TPOT and end-to-end targets (inf: no end-to-end promise)."""
    ttft = np.full(lab.size, slo.ttft_s, dtype=np.float64)
    tpot = np.full(lab.size, slo.tpot_s, dtype=np.float64)
    e2e = np.full(lab.size, slo.limit("e2e"), dtype=np.float64)
    for c in classes:
        sel = lab == c.name
        ttft[sel] = c.slo.ttft_s
        tpot[sel] = c.slo.tpot_s
        e2e[sel] = c.slo.limit("e2e")
    return ttft, tpot, e2e


def slo_of(name: str, slo: SLO, classes: Sequence[SLOClass]) -> SLO:
    """The targets a class's requests are held to."""
    return next((c.slo for c in classes if c.name == name), slo)


def strictest(slo: SLO, classes: Sequence[SLOClass]) -> SLO:
    """The tightest TTFT, TPOT and end-to-end targets of the plan's and its classes': what a pool that
    serves every class must meet, since its requests share batches and so share latencies.

    >>> s = strictest(SLO(ttft_s=2.0, tpot_s=0.1), [SLOClass("batch", SLO(ttft_s=20.0, tpot_s=0.05))])
    >>> s.ttft_s, s.tpot_s
    (2.0, 0.05)
    """
    e2e = [s.e2e_s for s in (slo, *(c.slo for c in classes)) if s.e2e_s is not None]
    return replace(slo, ttft_s=min([slo.ttft_s, *(c.slo.ttft_s for c in classes)]),
                   tpot_s=min([slo.tpot_s, *(c.slo.tpot_s for c in classes)]),
                   e2e_s=min(e2e) if e2e else None)


def check_classes(trace: RequestTrace, classes: Sequence[SLOClass]) -> None:
    """Refuse classes the trace cannot route: no ``slo_class`` column, a class named twice, or a class
    none of its requests carries.

    Raises:
        InputError: naming the trace and what it holds.
    """
    if not classes:
        return
    names = [c.name for c in classes]
    if len(set(names)) != len(names):
        raise InputError(f"SLO class named twice: {', '.join(names)}", field="--slo-class",
                         expected="each class once")
    if "slo_class" not in trace.df.columns:
        raise InputError("the trace has no slo_class column, so per-class targets cannot apply",
                         path=trace.meta.source, field="slo_class",
                         expected="a trace with an slo_class column (the fleet-day trace has one)")
    present = set(trace.df["slo_class"].drop_nulls().unique().to_list())
    for name in names:
        if name not in present:
            raise InputError(f"no request has slo_class {name!r}", path=trace.meta.source, field="slo_class",
                             expected="one of " + (", ".join(sorted(map(str, present))) or "(none)"))
