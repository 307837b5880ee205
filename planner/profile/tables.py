"""The exact schemas of the shipped profile and validation tables, and their writer.

These schemas are the contract with the perf-model fitter (``planner/perf``): one table per file, one
row per measurement, columns and types fixed here. :func:`build_table` refuses a row with a missing or
unexpected column, so a profiler change cannot silently ship a different format.

Layout (``<GPU key>`` is the catalog key, e.g. ``H100-SXM``)::

    planner/perf/data/profiles/<GPU key>/   meta.json gemm attention memcpy elementwise steps power
                                            collectives (.parquet) collectives_meta.json
    planner/perf/data/validation/<GPU key>/ engine_requests engine_tokens engine_power tp_steps ep_moe
                                            (.parquet)
                                            engine_meta.json
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMAS: dict[str, pa.Schema] = {
    "gemm": pa.schema(
        [
            ("m", pa.int64()),
            ("n", pa.int64()),
            ("k", pa.int64()),
            ("dtype", pa.string()),
            ("time_s", pa.float64()),
            ("tflops", pa.float64()),
            ("sm_clock_mhz", pa.float64()),
        ]
    ),
    "attention": pa.schema(
        [
            ("phase", pa.string()),
            ("batch", pa.int64()),
            ("q_len", pa.int64()),
            ("kv_len", pa.int64()),
            ("num_heads", pa.int64()),
            ("num_kv_heads", pa.int64()),
            ("head_dim", pa.int64()),
            ("dtype", pa.string()),
            ("time_s", pa.float64()),
        ]
    ),
    "memcpy": pa.schema([("bytes", pa.int64()), ("time_s", pa.float64()), ("gbps", pa.float64())]),
    "elementwise": pa.schema(
        [("op", pa.string()), ("tokens", pa.int64()), ("hidden", pa.int64()), ("time_s", pa.float64())]
    ),
    "steps": pa.schema(
        [
            ("kind", pa.string()),
            ("prefill_tokens", pa.int64()),
            ("prefill_pairs", pa.float64()),
            ("decode_seqs", pa.int64()),
            ("decode_kv", pa.int64()),
            ("time_s", pa.float64()),
            ("power_w", pa.float64()),
            ("sm_clock_mhz", pa.float64()),
        ]
    ),
    "power": pa.schema(
        [
            ("phase", pa.string()),
            ("power_w_mean", pa.float64()),
            ("power_w_p50", pa.float64()),
            ("power_w_p95", pa.float64()),
            ("sm_clock_mhz_mean", pa.float64()),
            ("mem_clock_mhz_mean", pa.float64()),
            ("duration_s", pa.float64()),
            ("tflops", pa.float64()),
            ("tflops_frac", pa.float64()),
            ("bw_tbps", pa.float64()),
            ("bw_frac", pa.float64()),
            ("decode_batch", pa.int64()),
            ("prefill_tokens", pa.int64()),
        ]
    ),
    "engine_requests": pa.schema(
        [
            ("load_level", pa.float64()),
            ("rate_rps", pa.float64()),
            ("request_id", pa.int64()),
            ("arrival_s", pa.float64()),
            ("input_tokens", pa.int64()),
            ("output_tokens", pa.int64()),
            ("ttft_s", pa.float64()),
            ("tpot_s", pa.float64()),
            ("e2e_s", pa.float64()),
        ]
    ),
    "engine_tokens": pa.schema(
        [
            ("load_level", pa.float64()),
            ("request_id", pa.int64()),
            ("token_index", pa.int64()),
            ("t_s", pa.float64()),
        ]
    ),
    "engine_power": pa.schema(
        [
            ("load_level", pa.float64()),
            ("t_s", pa.float64()),
            ("power_w", pa.float64()),
            ("sm_clock_mhz", pa.float64()),
        ]
    ),
    "collectives": pa.schema(
        [
            ("op", pa.string()),
            ("gpus", pa.int64()),
            ("bytes", pa.int64()),
            ("mode", pa.string()),
            ("time_s", pa.float64()),
            ("algbw_gbps", pa.float64()),
            ("busbw_gbps", pa.float64()),
        ]
    ),
    "tp_steps": pa.schema(
        [
            ("model", pa.string()),
            ("layers", pa.int64()),
            ("tp", pa.int64()),
            ("kind", pa.string()),
            ("prefill_tokens", pa.int64()),
            ("prefill_pairs", pa.float64()),
            ("decode_seqs", pa.int64()),
            ("decode_kv", pa.int64()),
            ("time_s", pa.float64()),
            ("mode", pa.string()),
        ]
    ),
    "ep_moe": pa.schema(
        [
            ("model", pa.string()),
            ("ep", pa.int64()),
            ("tokens_per_gpu", pa.int64()),
            ("top_k", pa.int64()),
            ("local_experts", pa.int64()),
            ("layers", pa.int64()),
            ("dispatch_s", pa.float64()),
            ("experts_s", pa.float64()),
            ("combine_s", pa.float64()),
            ("total_s", pa.float64()),
            ("a2a_bytes_per_gpu", pa.int64()),
            ("expert_kernel", pa.string()),
        ]
    ),
}
"""Column names and Arrow types of every shipped table, keyed by file stem."""

PHASES: dict[str, frozenset[str]] = {
    "attention": frozenset({"prefill", "decode"}),
    "steps": frozenset({"prefill", "decode", "mixed"}),
    "power": frozenset({"idle", "prefill", "decode", "gemm", "memcpy"}),
    "gemm": frozenset({"bf16", "fp8"}),
    "elementwise": frozenset({"rmsnorm", "silu_mul", "rope", "add"}),
    "collectives": frozenset({"all_reduce", "all_gather", "all_to_all"}),
    "tp_steps": frozenset({"prefill", "decode", "mixed"}),
}
"""Allowed values of each table's categorical column (``phase``, ``kind``, ``dtype`` or ``op``)."""

_CATEGORY_COLUMN = {
    "collectives": "op",
    "tp_steps": "kind",
    "attention": "phase",
    "steps": "kind",
    "power": "phase",
    "gemm": "dtype",
    "elementwise": "op",
}


def build_table(name: str, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """An Arrow table of ``rows`` in the schema :data:`SCHEMAS[name] <SCHEMAS>`.

    Args:
        name: table name (file stem), a key of :data:`SCHEMAS`.
        rows: one mapping per row with exactly the schema's columns; ``None`` is stored as null and
            float NaN as NaN.

    Raises:
        ValueError: unknown table, a row with missing or extra columns, or a categorical value outside
            :data:`PHASES`.

    >>> build_table("memcpy", [{"bytes": 8, "time_s": 1e-6, "gbps": 0.016}]).num_rows
    1
    """
    if name not in SCHEMAS:
        raise ValueError(f"unknown table {name!r} (expected one of {sorted(SCHEMAS)})")
    schema = SCHEMAS[name]
    columns = list(schema.names)
    expected = set(columns)
    allowed = PHASES.get(name)
    category = _CATEGORY_COLUMN.get(name)
    for i, row in enumerate(rows):
        keys = set(row)
        if keys != expected:
            missing = sorted(expected - keys)
            extra = sorted(keys - expected)
            raise ValueError(f"table {name}: row {i}: missing columns {missing}, unexpected columns {extra}")
        if allowed is not None and category is not None and row[category] not in allowed:
            raise ValueError(
                f"table {name}: row {i}: field {category}: {row[category]!r} "
                f"(expected one of {sorted(allowed)})"
            )
    data = {col: [row[col] for row in rows] for col in columns}
    return pa.Table.from_pydict(data, schema=schema)


def write_table(out_dir: Path, name: str, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``rows`` to ``out_dir/<name>.parquet`` (zstd) and return the path.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = write_table(Path(d), "memcpy", [{"bytes": 8, "time_s": 1e-6, "gbps": 0.016}])
    ...     pq.read_table(p).column("bytes").to_pylist()
    [8]
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.parquet"
    pq.write_table(build_table(name, rows), path, compression="zstd")
    return path


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: Path, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` as indented, key-sorted JSON (non-finite floats become null)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(payload), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


META_KEYS: tuple[str, ...] = (
    "gpu_name",
    "catalog_gpu",
    "driver",
    "cuda",
    "torch",
    "date",
    "sm_count",
    "l2_mb",
    "max_sm_clock_mhz",
    "max_mem_clock_mhz",
    "power_limit_w",
    "notes",
)
"""Keys every ``meta.json`` has (``hostname`` and per-section details are optional extras)."""


def catalog_gpu_key(nvml_name: str) -> str:
    """The catalog key for an NVML device name (the profile folder's name).

    >>> catalog_gpu_key("NVIDIA H100 80GB HBM3")
    'H100-SXM'
    >>> catalog_gpu_key("NVIDIA H200")
    'H200-SXM'
    >>> catalog_gpu_key("NVIDIA H100 PCIe")
    'H100-PCIe'
    >>> catalog_gpu_key("NVIDIA A100-SXM4-80GB")
    'A100-SXM'
    >>> catalog_gpu_key("Some GPU")
    'Some-GPU'
    """
    name = nvml_name.upper()
    for chip in ("GB200", "B200", "H200", "H100", "H20", "A100", "L40S", "MI300X"):
        if chip in name:
            form = "PCIe" if "PCIE" in name else ("NVL" if "NVL" in name else "SXM")
            return f"{chip}-{form}"
    return "-".join(nvml_name.replace("NVIDIA", "").split()) or "unknown-GPU"
