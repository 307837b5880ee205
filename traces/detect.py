"""Guess a trace's format from its folder layout, file name, header or first line.

Rules, in order:

1. a folder with ``chunk-N-trace.csv`` files, or such a file -> ``servegen``;
2. ``.parquet`` -> ``canonical`` when it has ``arrival_s``, ``input_tokens`` and ``output_tokens``;
3. ``.jsonl``/``.json``/``.ndjson`` whose first line is an object with ``timestamp``, ``input_length`` and
   ``output_length`` -> ``mooncake``;
4. CSV header with ``TIMESTAMP,ContextTokens,GeneratedTokens`` -> ``azure``; with ``Timestamp``,
   ``Request tokens`` and ``Response tokens`` -> ``burstgpt``; with the canonical names -> ``canonical``.

Anything else is an :class:`~traces.errors.InputError` that names the file, shows what was seen and says
how to read it anyway (``generic_csv``/``generic_parquet`` with a column mapping).
"""

from __future__ import annotations

import json
from pathlib import Path

from traces.errors import InputError
from traces.readers import azure
from traces.readers.base import read_csv_header, read_head_text
from traces.readers.generic import scan_parquet_source
from traces.readers.servegen import is_servegen_path
from traces.schema import REQUIRED_REQUEST_COLUMNS

JSON_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".ndjson")
MOONCAKE_KEYS: tuple[str, ...] = ("timestamp", "input_length", "output_length")
_HINT = "a known format, or --format generic_csv|generic_parquet with --map arrival_s=<column> ..."


def detect_format(path: str | Path) -> str:
    """The format name of the trace at ``path`` (one of :data:`traces.load.FORMATS`).

    Raises:
        InputError: the path does not exist or matches no known format (the message says what was seen).

    >>> detect_format("/no/such/file.csv")
    Traceback (most recent call last):
    ...
    traces.errors.InputError: /no/such/file.csv: no such file or folder (expected a trace file or folder)
    """
    p = Path(path)
    if not p.exists():
        raise InputError("no such file or folder", path=str(p), expected="a trace file or folder")
    if is_servegen_path(p):
        return "servegen"
    if p.is_dir():
        raise InputError(
            "folder has no chunk-N-trace.csv files", path=str(p), expected="a ServeGen client folder"
        )
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        _, names = scan_parquet_source(p)
        if all(c in names for c in REQUIRED_REQUEST_COLUMNS):
            return "canonical"
        raise InputError(f"unknown Parquet columns {names}", path=str(p), expected=_HINT)
    if suffix in JSON_SUFFIXES:
        first = read_head_text(p).lstrip().splitlines()[0]
        try:
            obj = json.loads(first)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"first line is not JSON: {exc.msg}", path=str(p), row=1, expected=_HINT
            ) from exc
        if isinstance(obj, dict) and all(k in obj for k in MOONCAKE_KEYS):
            return "mooncake"
        raise InputError("unknown JSON lines format", path=str(p), row=1, expected=_HINT)
    header = read_csv_header(p)
    if all(c in header for c in azure.COLUMNS):
        return "azure"
    if all(c in header for c in ("Timestamp", "Request tokens", "Response tokens")):
        return "burstgpt"
    if all(c in header for c in REQUIRED_REQUEST_COLUMNS):
        return "canonical"
    shown = ",".join(header)[:200]
    raise InputError(f"unknown CSV header {shown!r}", path=str(p), expected=_HINT)
