"""Load any supported request trace into the canonical schema: the one entry point for every reader.

``load_trace`` returns an in-memory :class:`~traces.schema.RequestTrace`; ``scan_trace`` returns the same
table as a lazy frame for files too big to hold (a 27M-row Azure week). Both run the reader, then
:mod:`traces.validate` (every bad row is an :class:`~traces.errors.InputError` naming file, row, column and
what was expected; failed requests and unsorted arrivals are documented repairs in ``TraceMeta``).

=====================  =====================================================================
format                 input
=====================  =====================================================================
``azure``              Azure LLM inference CSV, 2023/2024/2025 variants (:mod:`.readers.azure`)
``burstgpt``           BurstGPT CSV, incl. BurstGPT_3 sessions (:mod:`.readers.burstgpt`)
``mooncake``           Mooncake JSONL with prefix-block hashes (:mod:`.readers.mooncake`)
``servegen``           ServeGen client folder or one client CSV, sampled (:mod:`.readers.servegen`)
``generic_csv``        any CSV with a column mapping (:mod:`.readers.generic`)
``generic_parquet``    any Parquet with a column mapping (:mod:`.readers.generic`)
``canonical``          fleetwise's own Parquet/CSV, e.g. what ``convert`` wrote (:mod:`.readers.canonical`)
=====================  =====================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import polars as pl

from traces.detect import detect_format
from traces.errors import InputError
from traces.readers.azure import scan_azure
from traces.readers.base import RawScan
from traces.readers.burstgpt import scan_burstgpt
from traces.readers.canonical import scan_canonical
from traces.readers.generic import MAPPING_KEYS, scan_generic
from traces.readers.mooncake import scan_mooncake
from traces.readers.servegen import scan_servegen
from traces.schema import RequestTrace, TraceMeta
from traces.validate import check_raw, check_sessions, collect_checked, normalize

FORMATS: tuple[str, ...] = (
    "azure",
    "burstgpt",
    "mooncake",
    "servegen",
    "generic_csv",
    "generic_parquet",
    "canonical",
)
_GENERIC_COLUMN_KEYS = frozenset(MAPPING_KEYS)


def read_raw(
    path: str | Path,
    *,
    format: str | None = None,
    mapping: Mapping[str, str] | None = None,
    block_size: int | None = None,
    seed: int = 0,
) -> RawScan:
    """Run the reader for ``format`` (detected when ``None``) without validating.

    Raises:
        InputError: unknown format, a mapping given to a format that takes none, or the reader's errors.
    """
    p = Path(path)
    fmt = format if format is not None else _guess(p, mapping)
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}", field="format", expected="one of " + ", ".join(FORMATS))
    if not p.exists():
        raise InputError("no such file or folder", path=str(p), expected="a trace file or folder")
    if mapping and fmt not in ("generic_csv", "generic_parquet", "servegen"):
        raise InputError(
            f"format {fmt} takes no column mapping",
            field="mapping",
            expected="--format generic_csv or generic_parquet to map columns",
        )
    raw = _dispatch(p, fmt, mapping, block_size, seed)
    if block_size is not None and fmt != "mooncake":
        if "prefix_hashes" not in raw.lf.collect_schema().names():
            raise InputError(
                "block size given but the trace has no prefix hashes",
                path=str(p),
                field="block_size",
                expected="no block size, or a trace with prefix_hashes",
            )
        raw = replace(raw, meta=replace(raw.meta, block_size=block_size))
    return raw


def load_trace(
    path: str | Path,
    *,
    format: str | None = None,
    mapping: Mapping[str, str] | None = None,
    block_size: int | None = None,
    seed: int = 0,
) -> RequestTrace:
    """Load a request trace into memory, validated, in the canonical schema.

    Args:
        path: a trace file, or a ServeGen client folder.
        format: one of :data:`FORMATS`; ``None`` detects it (:func:`traces.detect.detect_format`), or picks
            ``generic_csv``/``generic_parquet`` by extension when ``mapping`` names columns.
        mapping: for the generic readers, canonical column -> source column plus ``time_unit``
            (``s``, ``ms``, ``us``, ``ns``, ``datetime``) and ``time_format``; for ``servegen``,
            ``start_s``/``duration_s``/``seed``.
        block_size: tokens per prefix-hash block (Mooncake default 512; only for traces with hashes).
        seed: seed for formats that sample (``servegen``).

    Returns:
        The trace, sorted by arrival, first arrival at 0, with what the loader did in ``meta``.

    Raises:
        InputError: any input it cannot use, located by file, row and column.

    >>> from pathlib import Path
    >>> t = load_trace(Path(__file__).parents[1] / "tests/data/traces/burstgpt_sample.csv")
    >>> t.num_requests, t.meta.dropped_rows
    (4, 1)
    """
    raw = read_raw(path, format=format, mapping=mapping, block_size=block_size, seed=seed)
    raw = replace(raw, lf=collect_checked(raw.lf, raw).lazy())
    check = check_raw(raw)
    lf, meta = normalize(raw, check)
    df = collect_checked(lf, raw)
    check_sessions(df, source=raw.path)
    return RequestTrace(df=df, meta=meta)


def scan_trace_with_meta(
    path: str | Path,
    *,
    format: str | None = None,
    mapping: Mapping[str, str] | None = None,
    block_size: int | None = None,
    seed: int = 0,
) -> tuple[pl.LazyFrame, TraceMeta]:
    """:func:`scan_trace` plus the trace's metadata (the validation pass already ran)."""
    raw = read_raw(path, format=format, mapping=mapping, block_size=block_size, seed=seed)
    check = check_raw(raw, streaming=True)
    lf, meta = normalize(raw, check)
    check_sessions(lf, source=raw.path)  # reads two columns, and only when the trace has turns
    return lf, meta


def scan_trace(
    path: str | Path, *, format: str | None = None, mapping: Mapping[str, str] | None = None
) -> pl.LazyFrame:
    """A lazy canonical frame for a big trace (nothing is held in memory until it is collected/sunk).

    The file is read once here, on polars' streaming engine, to validate every row and find the first
    arrival (so that a bad file fails now, with its row, rather than in the middle of a later query).
    Formats that sample (ServeGen) are generated in memory first.

    Raises:
        InputError: as :func:`load_trace`.
    """
    lf, _ = scan_trace_with_meta(path, format=format, mapping=mapping)
    return lf


def _guess(path: Path, mapping: Mapping[str, str] | None) -> str:
    if mapping and any(k in _GENERIC_COLUMN_KEYS for k in mapping):
        return "generic_parquet" if path.suffix.lower() == ".parquet" else "generic_csv"
    return detect_format(path)


def _dispatch(
    path: Path, fmt: str, mapping: Mapping[str, str] | None, block_size: int | None, seed: int
) -> RawScan:
    if fmt == "servegen":
        return scan_servegen(path, mapping=mapping, seed=seed)
    if path.is_dir():
        raise InputError(f"a folder, but format {fmt} reads a file", path=str(path), expected="a file")
    if fmt == "azure":
        return scan_azure(path)
    if fmt == "burstgpt":
        return scan_burstgpt(path)
    if fmt == "mooncake":
        return scan_mooncake(path, block_size=block_size)
    if fmt == "canonical":
        return scan_canonical(path, parquet=path.suffix.lower() == ".parquet")
    return scan_generic(path, mapping=mapping, parquet=fmt == "generic_parquet")
