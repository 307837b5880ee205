"""Large-file benchmark: stream-convert an Azure-2024-format CSV to Parquet vs an eager ``pl.read_csv``.

:func:`run_benchmark` writes an N-row file in the Azure 2024 format (default 20M rows, about the size of
a week of the code trace; tz-aware timestamps with mixed precision, generated in chunks so generation
memory is bounded too), then runs, each in its own fresh Python process so that each peak RSS is that
path's own:

* **streaming**: :func:`traces.convert.convert_to_parquet` (validation pass + ``sink_parquet``);
* **eager**: ``pl.read_csv`` of the whole file, the same normalization in memory, ``write_parquet``.

It reports both peak RSS values (``ru_maxrss``; the interpreter and polars alone, measured in the same
process before the work, are reported as ``baseline_rss_mb``), rows/s, and the ratios, from one run.
Run it as ``fleetwise bench traces [--rows N] [--json]``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from planner.bench.defaults import DEFAULT_ROWS
from traces.errors import InputError

CHUNK_ROWS = 1_000_000
WEEK_S = 7 * 86400.0
_START = datetime(2024, 5, 10, tzinfo=UTC)
_FORMAT = "%Y-%m-%d %H:%M:%S%.f+00:00"


@dataclass(frozen=True)
class PhaseResult:
    """One measured path.

    Attributes:
        name: ``streaming`` or ``eager``.
        rows: rows written to Parquet.
        seconds: wall time of the work (imports excluded).
        peak_rss_mb: peak resident memory of the process, MiB.
        baseline_rss_mb: resident memory after imports, before the work, MiB.
    """

    name: str
    rows: int
    seconds: float
    peak_rss_mb: float
    baseline_rss_mb: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class BenchResult:
    """Both paths over the same file, with the ratios the report prints."""

    rows: int
    csv_mb: float
    generate_seconds: float
    streaming: PhaseResult
    eager: PhaseResult

    @property
    def rss_ratio(self) -> float:
        """Eager peak RSS over streaming peak RSS (how much memory streaming saves)."""
        return self.eager.peak_rss_mb / self.streaming.peak_rss_mb

    @property
    def speed_ratio(self) -> float:
        """Streaming rows/s over eager rows/s (> 1: streaming is also faster)."""
        return self.streaming.rows_per_s / self.eager.rows_per_s

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = asdict(self)
        for key in ("streaming", "eager"):
            phase: PhaseResult = getattr(self, key)
            out[key] = {**asdict(phase), "rows_per_s": phase.rows_per_s}
        out["rss_ratio_eager_over_streaming"] = self.rss_ratio
        out["speed_ratio_streaming_over_eager"] = self.speed_ratio
        return out


def generate_azure2024_csv(path: Path, rows: int, *, seed: int = 0, chunk_rows: int = CHUNK_ROWS) -> int:
    """Write ``rows`` requests in the Azure 2024 format, ``chunk_rows`` at a time; returns bytes written.

    Arrivals are a Poisson process spread over one week (like the real week-long files). Timestamps are
    written as Azure does, fraction omitted when zero, so both ``...:00+00:00`` and
    ``...:00.009930+00:00`` occur: times within the first 0.1 s of a second are floored to the whole
    second (a monotone map, so the file stays sorted), about 10 % of rows. Token counts are lognormal.
    """
    if rows < 1:
        raise InputError("row count must be positive", field="rows", expected="an integer >= 1")
    rng = np.random.default_rng(seed)
    mean_gap_us = WEEK_S * 1e6 / rows
    t_us = 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.write(b"TIMESTAMP,ContextTokens,GeneratedTokens\n")
        for start in range(0, rows, chunk_rows):
            n = min(chunk_rows, rows - start)
            times = t_us + np.cumsum(rng.exponential(mean_gap_us, n))
            t_us = float(times[-1])
            us = np.floor(times).astype(np.int64)
            frac = us % 1_000_000
            us = np.where(frac < 100_000, us - frac, us)
            chunk = pl.DataFrame(
                {
                    "us": us,
                    "ContextTokens": np.clip(rng.lognormal(7.0, 1.0, n), 1, 32000).astype(np.int32),
                    "GeneratedTokens": np.clip(rng.lognormal(4.0, 1.2, n), 1, 4000).astype(np.int32),
                }
            ).select(
                (pl.lit(_START) + pl.duration(microseconds=pl.col("us")))
                .dt.strftime(_FORMAT)
                .alias("TIMESTAMP"),
                "ContextTokens",
                "GeneratedTokens",
            )
            chunk.write_csv(fh, include_header=False)
    return path.stat().st_size


def run_benchmark(
    rows: int = DEFAULT_ROWS,
    *,
    workdir: Path | None = None,
    seed: int = 0,
    keep: bool = False,
    on_phase: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> BenchResult:
    """Generate the file, run both paths in child processes, and compare them (module docstring).

    Args:
        rows: rows of the generated file.
        workdir: where the CSV and Parquet files go (default: a temporary folder, removed after).
        seed: generator seed.
        keep: keep the files in ``workdir``.
        on_phase: called with a short label as each phase starts (progress display).
        clock: seconds counter for the generation time.

    Raises:
        InputError: a non-positive row count.
        RuntimeError: a child process failed (its stderr is in the message).
    """
    note = on_phase or (lambda _label: None)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        base = Path(workdir) if (workdir is not None and keep) else Path(tmp)
        csv_path = base / f"azure2024_{rows}.csv"
        note(f"generating {rows:,} rows")
        t0 = clock()
        size = generate_azure2024_csv(csv_path, rows, seed=seed)
        gen_s = clock() - t0
        note("streaming convert (scan_csv + sink_parquet)")
        streaming = _run_child("streaming", csv_path, base / "streaming.parquet")
        note("eager load (read_csv + write_parquet)")
        eager = _run_child("eager", csv_path, base / "eager.parquet")
    return BenchResult(
        rows=rows, csv_mb=size / 2**20, generate_seconds=gen_s, streaming=streaming, eager=eager
    )


def _run_child(mode: str, csv_path: Path, out: Path) -> PhaseResult:
    cmd = [sys.executable, "-m", "planner.bench.large_trace", mode, str(csv_path), str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"benchmark child {mode} failed ({done.returncode}): {done.stderr.strip()[-2000:]}"
        )
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return PhaseResult(name=mode, **data)


def _rss_mb() -> float:
    """Current resident memory of this process, MiB (Linux /proc; 0 where unavailable)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * resource.getpagesize() / 2**20


def _eager_convert(csv_path: Path, out: Path) -> int:
    """The in-memory way: read the whole CSV, normalize as the loader does, write Parquet."""
    df = pl.read_csv(csv_path)
    t = df["TIMESTAMP"].str.to_datetime("%Y-%m-%d %H:%M:%S%.f%:z", time_unit="ns").dt.timestamp("ns")
    canon = pl.DataFrame(
        {
            "arrival_s": (t - t.min()).cast(pl.Float64) / 1e9,
            "input_tokens": df["ContextTokens"].cast(pl.Int32),
            "output_tokens": df["GeneratedTokens"].cast(pl.Int32),
        }
    ).filter(pl.col("output_tokens") > 0)
    canon.write_parquet(out)
    return canon.height


def _child(argv: list[str]) -> int:
    mode, csv_path, out = argv[0], Path(argv[1]), Path(argv[2])
    baseline = _rss_mb()
    start = time.perf_counter()
    if mode == "streaming":
        from traces.convert import convert_to_parquet

        rows = convert_to_parquet(csv_path, out, format="azure").rows
    else:
        rows = _eager_convert(csv_path, out)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_rss_mb": peak, "baseline_rss_mb": baseline}))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
