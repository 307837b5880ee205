"""Time ranges as users type them: Unix seconds, ISO 8601 with a zone, or ``now-6h`` (Prometheus' own
relative style), for the commands and pages that read a fleet's history."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from traces.errors import InputError

_RELATIVE = re.compile(r"^now(?:-(\d+(?:\.\d+)?)([smhd]))?$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_instant(text: str, now_s: float, *, field: str = "--range") -> float:
    """Unix seconds from ``1796650000``, an ISO 8601 time (``2026-12-01T08:00Z``; UTC when it names no
    zone) or ``now[-N{s,m,h,d}]``; ``field`` names the flag in errors.

    >>> parse_instant("now-2h", 10_000.0), parse_instant("1.5", 0.0), parse_instant("1970-01-01T00:01Z", 0.0)
    (2800.0, 1.5, 60.0)
    """
    t = text.strip()
    m = _RELATIVE.match(t)
    if m:
        return now_s - (float(m.group(1)) * _UNIT_S[m.group(2)] if m.group(1) else 0.0)
    try:
        return float(t)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(t)
    except ValueError:
        raise InputError(f"cannot read time {text!r}", field=field,
                         expected="Unix seconds, ISO 8601 (2026-12-01T08:00Z) or now-6h") from None
    return (stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)).timestamp()


def parse_range(text: str, now_s: float) -> tuple[float, float]:
    """``START,END`` as Unix seconds (END after START)."""
    parts = text.split(",")
    if len(parts) != 2:
        raise InputError(f"range {text!r} is not START,END", field="--range", expected="START,END")
    start, end = (parse_instant(p, now_s) for p in parts)
    if not end > start:
        raise InputError(f"range {text!r} ends before it starts", field="--range", expected="END after START")
    return start, end
