"""Expert-load inputs: a ``layers x experts`` matrix read from a file, or drawn synthetically.

Placement only needs, per MoE layer, how much work each routed expert gets (tokens routed to it over a
window). Engines export this as a matrix (vLLM's ``expert_load_window``, SGLang's expert distribution
dumps, TensorRT-LLM's statistics), so the loaders accept the three shapes such a matrix ships in: CSV
(one row per layer, one column per expert, an optional header), Parquet (same layout) and ``.npy``.

Synthetic loads follow the survey's measurement setup (area C2 of the design notes): independent
lognormal expert loads with skew ``sigma`` (or Zipf ranks), and multiplicative drift between time windows
so that incremental re-planning has something realistic to track.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from traces.errors import InputError

FloatArray = NDArray[np.float64]

_EXPECTED_VALUE = "a finite number >= 0"


class Skew(StrEnum):
    """Shape of synthetic expert popularity."""

    LOGNORMAL = "lognormal"
    ZIPF = "zipf"


@dataclass(frozen=True)
class MoEShape:
    """What placement needs to know about a model: MoE layers, routed experts per layer, expert groups.

    Attributes:
        layers: MoE layers (DeepSeek-V3: 61 blocks minus 3 dense = 58).
        experts: routed experts per layer (DeepSeek-V3: 256).
        groups: expert groups used by group-limited routing and hierarchical balancing (DeepSeek-V3: 8).

    >>> MoEShape(layers=58, experts=256, groups=8).experts_per_group
    32
    """

    layers: int
    experts: int
    groups: int = 1

    def __post_init__(self) -> None:
        if self.layers < 1 or self.experts < 1 or self.groups < 1:
            raise InputError(
                "MoE shape needs layers, experts and groups >= 1", field="shape", expected="positive integers"
            )
        if self.experts % self.groups:
            raise InputError(
                f"{self.experts} experts do not split into {self.groups} equal groups",
                field="groups",
                expected="a divisor of the expert count",
            )

    @property
    def experts_per_group(self) -> int:
        return self.experts // self.groups


def moe_shape_of(model: object) -> MoEShape:
    """The MoE shape of a catalog :class:`~planner.catalog.ModelSpec`.

    Args:
        model: a catalog model (duck-typed: ``name``, ``num_layers`` and ``moe``).

    Raises:
        InputError: the model is dense.
    """
    moe = getattr(model, "moe", None)
    name = getattr(model, "name", "?")
    if moe is None:
        raise InputError(
            f"model {name!r} is dense: it has no experts to place",
            field="model",
            expected="a mixture-of-experts model",
        )
    layers = int(getattr(model, "num_layers")) - int(moe.first_dense_layers)  # noqa: B009
    return MoEShape(layers=layers, experts=int(moe.num_experts), groups=int(moe.num_groups))


def synthetic_loads(
    shape: MoEShape,
    *,
    sigma: float = 0.5,
    skew: Skew = Skew.LOGNORMAL,
    zipf_s: float = 1.0,
    windows: int = 1,
    drift_sigma: float = 0.0,
    tokens_per_layer: float = 1e6,
    seed: int = 0,
) -> FloatArray:
    """Draw expert loads shaped ``[windows, layers, experts]``.

    Each layer gets its own independent popularity (real routers do not share hot experts across layers).
    Window ``t+1`` multiplies window ``t`` by ``exp(N(0, drift_sigma))`` per expert, a random walk in log
    space that keeps loads positive and lets popularity wander the way production statistics do between
    re-plans. Every layer is then scaled to ``tokens_per_layer`` total.

    Args:
        shape: layers and experts.
        sigma: lognormal skew (0.5 mild, 1.0 strong) when ``skew`` is lognormal.
        skew: lognormal or Zipf (expert ranks shuffled per layer, load ~ rank^-zipf_s).
        zipf_s: Zipf exponent.
        windows: number of time windows.
        drift_sigma: log-space step of the random walk between windows.
        tokens_per_layer: sum of every layer's loads (a scale, irrelevant to balance).
        seed: seed of the generator (injected, so runs repeat).

    Returns:
        float64 array ``[windows, layers, experts]``.

    >>> w = synthetic_loads(MoEShape(layers=2, experts=8), sigma=1.0, windows=3, drift_sigma=0.2, seed=1)
    >>> w.shape, bool(np.allclose(w.sum(axis=-1), 1e6))
    ((3, 2, 8), True)
    """
    if sigma < 0 or drift_sigma < 0 or windows < 1 or tokens_per_layer <= 0 or zipf_s < 0:
        raise InputError(
            "synthetic load parameters out of range",
            field="sigma/drift/windows",
            expected="sigma, drift_sigma, zipf_s >= 0, windows >= 1, tokens_per_layer > 0",
        )
    rng = np.random.default_rng(seed)
    if skew is Skew.LOGNORMAL:
        base: FloatArray = rng.lognormal(mean=0.0, sigma=sigma, size=(shape.layers, shape.experts))
    else:
        ranks = np.argsort(rng.random((shape.layers, shape.experts)), axis=1) + 1.0
        base = np.asarray(ranks ** (-zipf_s), dtype=np.float64)
    out = np.empty((windows, shape.layers, shape.experts))
    current = base
    for t in range(windows):
        if t:
            current = current * np.exp(rng.normal(0.0, drift_sigma, size=current.shape))
        out[t] = current / current.sum(axis=1, keepdims=True) * tokens_per_layer
    return out


def validate_loads(loads: FloatArray, *, path: str = "<loads>") -> FloatArray:
    """Check a ``layers x experts`` matrix and return it as a read-only float64 array.

    Raises:
        InputError: wrong rank, empty, non-finite or negative cells (naming the 1-based row and column),
            or a layer with zero total load.
    """
    arr = np.asarray(loads, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(
            f"expert loads have shape {arr.shape}",
            path=path,
            expected="a 2-D matrix: one row per MoE layer, one column per expert",
        )
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise InputError(
            f"bad load {arr[r, c]!r}", path=path, row=r + 1, field=f"expert {c}", expected=_EXPECTED_VALUE
        )
    empty = np.flatnonzero(arr.sum(axis=1) <= 0)
    if empty.size:
        raise InputError(
            "layer has no load at all",
            path=path,
            row=int(empty[0]) + 1,
            expected="at least one expert with load > 0",
        )
    arr = arr.copy()
    arr.setflags(write=False)
    return arr


def read_loads(path: str | Path) -> FloatArray:
    """Read a ``layers x experts`` load matrix from ``.csv``, ``.parquet`` or ``.npy``.

    CSV: one line per layer; a first line that is not numeric is taken as a header. Parquet: one row per
    layer, every column numeric (one per expert). ``.npy``: a 2-D numeric array.

    Raises:
        InputError: missing file, unknown suffix, ragged or non-numeric rows, negative or non-finite
            loads; the message names the file, the 1-based data row and the column.
    """
    p = Path(path)
    name = str(p)
    if not p.is_file():
        raise InputError("file not found", path=name, expected="an existing .csv, .parquet or .npy file")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(
                f"not a readable .npy array ({exc})", path=name, expected="a 2-D numeric .npy array"
            ) from None
        if not np.issubdtype(arr.dtype, np.number):
            raise InputError(f"array dtype {arr.dtype} is not numeric", path=name, expected="a numeric array")
        return validate_loads(arr, path=name)
    if suffix == ".csv":
        return validate_loads(_read_csv(p), path=name)
    if suffix in (".parquet", ".pq"):
        return validate_loads(_read_parquet(p), path=name)
    raise InputError(f"unknown load file type {suffix!r}", path=name, expected=".csv, .parquet or .npy")


def _read_csv(p: Path) -> FloatArray:
    name = str(p)
    with p.open(newline="") as fh:
        rows = [r for r in csv.reader(fh) if any(cell.strip() for cell in r)]
    if not rows:
        raise InputError("file is empty", path=name, expected="one line of loads per layer")
    header: list[str] | None = None
    if not all(_is_number(c) for c in rows[0]):
        header, rows = rows[0], rows[1:]
    if not rows:
        raise InputError("no data rows after the header", path=name, expected="one line of loads per layer")
    width = len(header) if header is not None else len(rows[0])
    data = np.empty((len(rows), width))
    for i, row in enumerate(rows):
        if len(row) != width:
            raise InputError(
                f"{len(row)} columns instead of {width}",
                path=name,
                row=i + 1,
                expected=f"{width} loads per row (one per expert)",
            )
        for j, cell in enumerate(row):
            value = _to_float(cell)
            if value is None or not math.isfinite(value) or value < 0:
                col = header[j] if header is not None else f"expert {j}"
                raise InputError(
                    f"bad load {cell.strip()!r}", path=name, row=i + 1, field=col, expected=_EXPECTED_VALUE
                )
            data[i, j] = value
    return data


def _read_parquet(p: Path) -> FloatArray:
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = str(p)
    try:
        table = pq.read_table(p)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(
            f"not a readable Parquet file ({exc})", path=name, expected="a Parquet table, one row per layer"
        ) from None
    for col_name, col in zip(table.column_names, table.columns, strict=True):
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            raise InputError(
                f"column type {col.type} is not numeric",
                path=name,
                field=col_name,
                expected="one numeric column per expert",
            )
        if col.null_count:
            row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0]) + 1
            raise InputError("missing load", path=name, row=row, field=col_name, expected=_EXPECTED_VALUE)
    if table.num_columns == 0 or table.num_rows == 0:
        raise InputError("table is empty", path=name, expected="one row per layer, one column per expert")
    data = np.column_stack([c.to_numpy(zero_copy_only=False).astype(np.float64) for c in table.columns])
    bad = ~np.isfinite(data) | (data < 0)
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise InputError(
            f"bad load {data[r, c]!r}",
            path=name,
            row=r + 1,
            field=table.column_names[c],
            expected=_EXPECTED_VALUE,
        )
    return data


def _is_number(cell: str) -> bool:
    return _to_float(cell) is not None


def _to_float(cell: str) -> float | None:
    try:
        return float(cell.strip())
    except ValueError:
        return None
