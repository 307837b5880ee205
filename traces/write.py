"""Writing a trace as canonical Parquet (the format :func:`traces.load.load_trace` reads back)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from traces.atomic import write_atomic
from traces.errors import InputError
from traces.readers.canonical import META_KEY, meta_to_json
from traces.schema import RequestTrace

# --------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------


def write_parquet(trace: RequestTrace, path: str | Path, *, compression_level: int = 3) -> Path:
    """Write ``trace`` as canonical Parquet, byte-for-byte reproducible for given library versions.

    The :class:`TraceMeta` travels in the file's key-value metadata as :mod:`traces.readers.canonical`
    stores it, so ``load_trace`` (format ``canonical``) restores ``block_size`` and provenance. Encoding
    options and the zstd level are pinned, so equal traces give equal bytes.

    Args:
        trace: the trace to write.
        path: output file (parent folders are created).
        compression_level: zstd level (3 is fast; the bundled default trace uses 9).

    Returns:
        The path written.

    Raises:
        InputError: the file cannot be written.
    """
    out = Path(path)
    table = trace.to_arrow()
    table = table.replace_schema_metadata({META_KEY.encode(): meta_to_json(trace.meta).encode()})
    try:  # beside the final name, then renamed: a killed writer leaves no partial file at ``path``
        write_atomic(out, lambda tmp: pq.write_table(
            table,
            tmp,
            compression="zstd",
            compression_level=compression_level,
            use_dictionary=["tenant", "model"],
            write_statistics=True,
            row_group_size=1 << 20,
        ))
    except OSError as exc:
        raise InputError(f"cannot write Parquet: {exc.strerror or exc}", path=str(out)) from exc
    return out
