"""Load fault traces: a fleet's incident history (or a synthetic one) to replay.

Long format, one incident per row (CSV or Parquet):

* ``time_s``: when it starts, seconds from the request trace's start (>= 0);
* ``scope``: ``replica``, ``node`` or ``rack`` (what failed: one replica, every replica with a GPU on the
  node, every replica on the rack's nodes);
* ``id``: the replica, node or rack number (>= 0), in the replay's layout (replica ``r`` holds GPUs
  ``r*g .. r*g+g-1``, a node holds ``gpus_per_node`` GPUs, a rack ``servers_per_rack`` nodes);
* ``kind``: ``fail`` (fail-stop: the replica's requests are lost and retried elsewhere; it is back after
  ``duration_s``, the repair or replacement time, plus its cold start) or ``slow`` (a straggler: its steps
  take ``slowdown`` times longer for ``duration_s``);
* ``duration_s`` (> 0) and ``slowdown`` (>= 1; read for ``slow`` rows only, may be empty for ``fail``).

The loader is strict, as every trace loader here: a problem is one :class:`~traces.errors.InputError`
naming the file, the 1-based data row and the column. Rows come back sorted by ``time_s`` (stable).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from traces.errors import InputError

FAULT_SCOPES: tuple[str, ...] = ("replica", "node", "rack")
FAULT_KINDS: tuple[str, ...] = ("fail", "slow")
COLUMNS: tuple[str, ...] = ("time_s", "scope", "id", "kind", "duration_s", "slowdown")


@dataclass(frozen=True)
class FaultEvent:
    """One incident (see the module docstring for the fields)."""

    time_s: float
    scope: str
    id: int
    kind: str
    duration_s: float
    slowdown: float = 1.0


def load_fault_trace(path: str | Path) -> tuple[FaultEvent, ...]:
    """Read and validate a fault trace (``.csv`` or ``.parquet``).

    Raises:
        InputError: a missing file or column, or a row whose value is not what the column expects.

    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "f.csv")
    >>> _ = open(f, "w").write("time_s,scope,id,kind,duration_s,slowdown\\n60,replica,1,slow,600,2\\n")
    >>> load_fault_trace(f)[0]
    FaultEvent(time_s=60.0, scope='replica', id=1, kind='slow', duration_s=600.0, slowdown=2.0)
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("no such file", path=str(p), expected="a fault trace CSV or Parquet file")
    try:
        df = pl.read_parquet(p) if p.suffix.lower() == ".parquet" else pl.read_csv(
            p, infer_schema_length=0)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read it ({str(exc).splitlines()[0][:120]})", path=str(p),
                         expected="a CSV or Parquet fault trace") from None
    for name in COLUMNS[:5]:
        if name not in df.columns:
            raise InputError(f"missing column {name!r}", path=str(p), field=name,
                             expected="columns " + ", ".join(COLUMNS))
    rows = df.select([c for c in COLUMNS if c in df.columns]).to_dicts()
    events = [_event(row, i + 1, str(p)) for i, row in enumerate(rows)]
    return tuple(sorted(events, key=lambda e: e.time_s))


def _number(row: dict[str, object], name: str, i: int, path: str, expected: str) -> float:
    raw = row.get(name)
    try:
        v = float(str(raw).strip()) if raw is not None and str(raw).strip() != "" else math.nan
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise InputError(f"{raw!r} is not a number", path=path, row=i, field=name, expected=expected)
    return v


def _event(row: dict[str, object], i: int, path: str) -> FaultEvent:
    t = _number(row, "time_s", i, path, "seconds >= 0")
    if t < 0:
        raise InputError(f"negative time {t:g}", path=path, row=i, field="time_s", expected="seconds >= 0")
    scope = str(row.get("scope") or "").strip().lower()
    if scope not in FAULT_SCOPES:
        raise InputError(f"unknown scope {row.get('scope')!r}", path=path, row=i, field="scope",
                         expected=" / ".join(FAULT_SCOPES))
    ident = _number(row, "id", i, path, "an integer >= 0")
    if ident < 0 or ident != int(ident):
        raise InputError(f"bad id {row.get('id')!r}", path=path, row=i, field="id",
                         expected="an integer >= 0")
    kind = str(row.get("kind") or "").strip().lower()
    if kind not in FAULT_KINDS:
        raise InputError(f"unknown kind {row.get('kind')!r}", path=path, row=i, field="kind",
                         expected=" / ".join(FAULT_KINDS))
    dur = _number(row, "duration_s", i, path, "seconds > 0")
    if dur <= 0:
        raise InputError(f"duration {dur:g} is not positive", path=path, row=i, field="duration_s",
                         expected="seconds > 0")
    slow = 1.0
    if kind == "slow":
        slow = _number(row, "slowdown", i, path, "a factor >= 1 (2: steps take twice as long)")
        if slow < 1:
            raise InputError(f"slowdown {slow:g} below 1", path=path, row=i, field="slowdown",
                             expected="a factor >= 1 (2: steps take twice as long)")
    return FaultEvent(time_s=t, scope=scope, id=int(ident), kind=kind, duration_s=dur, slowdown=slow)


def write_fault_trace(events: tuple[FaultEvent, ...], path: str | Path) -> None:
    """Write ``events`` as CSV (or Parquet by suffix) in the loader's format."""
    df = pl.DataFrame([e.__dict__ for e in events], schema={
        "time_s": pl.Float64, "scope": pl.String, "id": pl.Int64, "kind": pl.String, "duration_s": pl.Float64,
        "slowdown": pl.Float64})
    p = Path(path)
    if p.suffix.lower() == ".parquet":
        df.write_parquet(p)
    else:
        df.write_csv(p)
