"""Pure transforms of request traces: slice, scale the rate, compress time, merge tenants, filter.

Each function takes a :class:`RequestTrace` and returns a new one (inputs are never modified) whose
``arrival_s`` is sorted and re-based so that the first request arrives at 0. Each appends a note of what
it did to ``TraceMeta.extra`` under the key ``transform``, so a derived trace says how it was derived.

Rate scaling and burstiness (how :func:`scale_rate` works, and what it keeps):

- ``factor > 1``: the result is the superposition of ``floor(factor)`` copies of the trace, plus one
  more copy thinned to the fractional part. Copy ``c > 0`` is shifted by an independent uniform offset
  in ``[0, max_shift_s)`` and wrapped around the end of the trace, so the duration is unchanged.
  Shifts much shorter than the trace keep the slow shape of the load (diurnal swings, the minute-scale
  peak-to-mean) while the copies' short bursts fall at different moments; like any superposition of
  independent streams, the inter-arrival CV moves toward 1 at the shortest time scales.
- ``factor < 1``: independent thinning, each request kept with probability ``factor``. The expected
  rate curve is scaled exactly, so its shape (peak-to-mean in expectation) is kept; the inter-arrival
  CV moves toward 1 (``CV'^2 = factor * CV^2 + 1 - factor`` for a renewal process).
- To keep the CV of gaps *exactly*, use :func:`compress_time` instead, which changes the duration.

Prefix hashes of the copies: a hash that appears in two or more requests of the original (a shared
system prompt, a conversation's history) stays as is, so cached content stays shared; a hash that only
one request has (its own unique text) is remapped per copy through a bijective 64-bit mix, so copies
of a request do not hit each other's cache. Session ids of copy ``c`` get the suffix ``#c``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from traces.errors import InputError
from traces.schema import REQUEST_POLARS_SCHEMA, RequestTrace, TraceMeta, canonical_columns

U64 = npt.NDArray[np.uint64]


def _positive(value: float, field: str) -> None:
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"bad value {value!r}", field=field, expected="a finite number > 0")


def _rebase(df: pl.DataFrame) -> pl.DataFrame:
    """Sort by arrival (stable) and shift so the first arrival is 0."""
    df = df.sort("arrival_s", maintain_order=True)
    if df.height == 0:
        return df
    first = float(df["arrival_s"][0])
    return df.with_columns(pl.col("arrival_s") - first)


def _derived(trace: RequestTrace, df: pl.DataFrame, note: str) -> RequestTrace:
    meta = trace.meta
    extra = (*meta.extra, ("transform", note))
    return RequestTrace(
        df=_rebase(df),
        meta=TraceMeta(
            source=meta.source,
            format=meta.format,
            block_size=meta.block_size,
            repairs=meta.repairs,
            dropped_rows=meta.dropped_rows,
            extra=extra,
        ),
    )


def slice_time(trace: RequestTrace, start_s: float, end_s: float | None = None) -> RequestTrace:
    """Requests with ``start_s <= arrival_s < end_s`` (``end_s=None``: to the end), re-based at 0.

    Args:
        trace: the trace.
        start_s: window start, seconds from the trace's first arrival.
        end_s: window end (exclusive).

    Raises:
        InputError: ``end_s <= start_s`` or a negative ``start_s``.

    >>> from traces.schema import TraceMeta
    >>> t = RequestTrace(pl.DataFrame({"arrival_s": [0.0, 1.0, 2.0, 3.0], "input_tokens": [1, 2, 3, 4],
    ...                                "output_tokens": [1, 1, 1, 1]}), TraceMeta("x", "csv"))
    >>> slice_time(t, 1.0, 3.0).df["arrival_s"].to_list()
    [0.0, 1.0]
    """
    if not (math.isfinite(start_s) and start_s >= 0):
        raise InputError(f"bad start {start_s!r}", field="start_s", expected="a number of seconds >= 0")
    if end_s is not None and not end_s > start_s:
        raise InputError(
            f"bad end {end_s!r}", field="end_s", expected=f"a number of seconds > start ({start_s})"
        )
    cond = pl.col("arrival_s") >= start_s
    if end_s is not None:
        cond = cond & (pl.col("arrival_s") < end_s)
    return _derived(trace, trace.df.filter(cond), f"slice_time(start_s={start_s}, end_s={end_s})")


def compress_time(trace: RequestTrace, factor: float) -> RequestTrace:
    """Divide every arrival time by ``factor``: rate x ``factor``, duration / ``factor``, same CV of gaps.

    >>> from traces.schema import TraceMeta
    >>> t = RequestTrace(pl.DataFrame({"arrival_s": [0.0, 2.0, 4.0], "input_tokens": [1, 2, 3],
    ...                                "output_tokens": [1, 1, 1]}), TraceMeta("x", "csv"))
    >>> compress_time(t, 2.0).df["arrival_s"].to_list()
    [0.0, 1.0, 2.0]
    """
    _positive(factor, "factor")
    df = trace.df.with_columns(pl.col("arrival_s") / factor)
    return _derived(trace, df, f"compress_time(factor={factor})")


def scale_rate(
    trace: RequestTrace, factor: float, *, seed: int = 0, max_shift_s: float = 60.0
) -> RequestTrace:
    """Scale the request rate by ``factor`` at the same duration (method in the module docstring).

    Args:
        trace: the trace.
        factor: rate multiplier (> 0).
        seed: seed for the thinning draws and the copies' shifts.
        max_shift_s: copies are shifted by up to this many seconds (wrapping around the end).

    Raises:
        InputError: ``factor`` or ``max_shift_s`` out of range.

    >>> from traces.schema import TraceMeta
    >>> t = RequestTrace(pl.DataFrame({"arrival_s": [0.0, 1.0, 2.0, 3.0], "input_tokens": [1, 2, 3, 4],
    ...                                "output_tokens": [1, 1, 1, 1]}), TraceMeta("x", "csv"))
    >>> scale_rate(t, 3.0).num_requests
    12
    """
    _positive(factor, "factor")
    if not (math.isfinite(max_shift_s) and max_shift_s >= 0):
        raise InputError(
            f"bad shift {max_shift_s!r}", field="max_shift_s", expected="a number of seconds >= 0"
        )
    rng = np.random.default_rng(seed)
    df = trace.df
    whole, frac = math.floor(factor), factor - math.floor(factor)
    copies = whole + (1 if frac > 1e-12 else 0)
    # Wrap-around period: the trace's span plus one mean gap, so the last and first requests don't collide.
    span = trace.duration_s + (trace.duration_s / max(df.height - 1, 1) if df.height > 1 else 1.0)
    shifts = rng.uniform(0.0, max_shift_s, copies) if max_shift_s > 0 else np.zeros(copies)
    shared = _shared_hashes(df) if "prefix_hashes" in df.columns else None
    parts: list[pl.DataFrame] = []
    for c in range(copies):
        part = df
        if c == whole:  # the fractional copy: thinning
            part = part.filter(pl.Series(rng.random(df.height) < frac))
        if c > 0:
            shift = float(shifts[c])
            part = part.with_columns(((pl.col("arrival_s") + shift) % span).alias("arrival_s"))
            if shared is not None:
                part = part.with_columns(_remap_hashes(part["prefix_hashes"], c, keep=shared))
            if "session_id" in part.columns:
                part = part.with_columns(pl.col("session_id") + f"#{c}")
        parts.append(part)
    out = pl.concat(parts, how="vertical") if parts else df.clear()
    note = f"scale_rate(factor={factor}, seed={seed}, max_shift_s={max_shift_s})"
    return _derived(trace, out, note)


def merge_tenants(
    traces: Sequence[RequestTrace], *, names: Sequence[str] | None = None, keep_hashes: bool = False
) -> RequestTrace:
    """Merge several traces into one, each becoming a tenant (all start at time 0).

    The ``tenant`` column becomes ``name`` (or ``name/old`` where the input already had a tenant).
    Columns missing from some inputs are null there. Unless ``keep_hashes``, prefix hashes of input
    ``k > 0`` are remapped so that different traces never share cache blocks by accident (their ids
    come from unrelated hashers); keep them only when the traces were hashed by the same tokenizer
    and block size and really share content.

    Args:
        traces: at least one trace.
        names: tenant name per trace (default: ``TraceMeta.source`` of each, deduplicated with ``#k``).
        keep_hashes: keep prefix-hash ids as they are.

    Raises:
        InputError: no traces, ``names`` of the wrong length or repeated, or traces with hashes of
            different block sizes.
    """
    if not traces:
        raise InputError("nothing to merge", field="traces", expected="at least one trace")
    if names is None:
        seen: dict[str, int] = {}
        chosen = []
        for t in traces:
            k = seen.get(t.meta.source, 0)
            seen[t.meta.source] = k + 1
            chosen.append(t.meta.source if k == 0 else f"{t.meta.source}#{k}")
        names = chosen
    if len(names) != len(traces) or len(set(names)) != len(names):
        raise InputError(
            f"{len(names)} names for {len(traces)} traces",
            field="names",
            expected="one distinct name per trace",
        )
    sizes = {t.meta.block_size for t in traces if "prefix_hashes" in t.df.columns}
    if len(sizes) > 1:
        raise InputError(
            f"prefix hashes with different block sizes {sorted(map(str, sizes))}",
            field="prefix_hashes",
            expected="one block size for all merged traces",
        )
    parts: list[pl.DataFrame] = []
    for k, (t, name) in enumerate(zip(traces, names, strict=True)):
        df = t.df
        tenant = pl.lit(name, dtype=pl.String)
        if "tenant" in df.columns:
            tenant = pl.when(pl.col("tenant").is_null()).then(tenant).otherwise(name + "/" + pl.col("tenant"))
        df = df.with_columns(tenant.alias("tenant"))
        if k > 0 and not keep_hashes and "prefix_hashes" in df.columns:
            df = df.with_columns(_remap_hashes(df["prefix_hashes"], k, keep=None))
        parts.append(df)
    merged = pl.concat(parts, how="diagonal")
    merged = merged.select(canonical_columns(merged)).cast(
        {c: REQUEST_POLARS_SCHEMA[c] for c in canonical_columns(merged)}
    )
    meta = TraceMeta(
        source="+".join(names),
        format="merged",
        block_size=next(iter(sizes)) if sizes else None,
        extra=tuple(
            (f"tenant:{n}", f"{t.meta.format}:{t.meta.source}") for n, t in zip(names, traces, strict=True)
        ),
    )
    base = RequestTrace(df=merged, meta=meta)
    return _derived(base, merged, f"merge_tenants(names={list(names)}, keep_hashes={keep_hashes})")


def filter_trace(
    trace: RequestTrace,
    *,
    models: Sequence[str] | None = None,
    tenants: Sequence[str] | None = None,
    min_input_tokens: int | None = None,
    max_input_tokens: int | None = None,
    min_output_tokens: int | None = None,
    max_output_tokens: int | None = None,
) -> RequestTrace:
    """Requests that match every given condition (bounds inclusive), re-based at 0.

    Raises:
        InputError: filtering by model or tenant on a trace without that column.

    >>> from traces.schema import TraceMeta
    >>> t = RequestTrace(pl.DataFrame({"arrival_s": [0.0, 1.0, 2.0], "input_tokens": [10, 200, 30],
    ...                                "output_tokens": [1, 1, 1]}), TraceMeta("x", "csv"))
    >>> filter_trace(t, max_input_tokens=100).df["input_tokens"].to_list()
    [10, 30]
    """
    cond = pl.lit(True)
    for col, wanted in (("model", models), ("tenant", tenants)):
        if wanted is None:
            continue
        if col not in trace.df.columns:
            raise InputError(
                f"cannot filter by {col}: the trace has no {col} column",
                path=trace.meta.source,
                field=col,
                expected=f"a trace with a {col} column",
            )
        cond = cond & pl.col(col).is_in(list(wanted))
    bounds = (
        ("input_tokens", min_input_tokens, max_input_tokens),
        ("output_tokens", min_output_tokens, max_output_tokens),
    )
    for col, lo, hi in bounds:
        if lo is not None:
            cond = cond & (pl.col(col) >= lo)
        if hi is not None:
            cond = cond & (pl.col(col) <= hi)
    note = (
        f"filter_trace(models={models}, tenants={tenants}, input=[{min_input_tokens}, {max_input_tokens}], "
        f"output=[{min_output_tokens}, {max_output_tokens}])"
    )
    return _derived(trace, trace.df.filter(cond), note)


# --------------------------------------------------------------------------------------------------------
# Prefix-hash helpers
# --------------------------------------------------------------------------------------------------------


def _mix64(x: U64) -> U64:
    """SplitMix64's finalizer: a bijection on 64-bit integers that scatters nearby ids."""
    with np.errstate(over="ignore"):
        z = x.copy()
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def _shared_hashes(df: pl.DataFrame) -> U64:
    """Hash ids that occur in two or more distinct requests (sorted, for ``np.isin``)."""
    pairs = (
        df.select(pl.col("prefix_hashes"))
        .with_row_index("row")
        .explode("prefix_hashes")
        .drop_nulls()
        .unique()
        .group_by("prefix_hashes")
        .agg(pl.len().alias("n"))
        .filter(pl.col("n") >= 2)
    )
    return np.sort(pairs["prefix_hashes"].to_numpy().astype(np.uint64))


def _remap_hashes(hashes: pl.Series, tag: int, *, keep: U64 | None) -> pl.Series:
    """Map every id ``h`` (except those in ``keep``) to ``mix64(h ^ mix64(tag))``: a bijection per tag."""
    arr = hashes.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    values = arr.values.to_numpy(zero_copy_only=False).astype(np.uint64)
    key = _mix64(np.array([tag], dtype=np.uint64))[0]
    mapped = _mix64(values ^ key)
    if keep is not None and keep.size:
        mapped = np.where(np.isin(values, keep), values, mapped)
    offsets = arr.offsets
    out = type(arr).from_arrays(offsets, pa.array(mapped, pa.uint64()), mask=arr.is_null())
    return pl.Series(hashes.name, out).cast(pl.List(pl.UInt64))
