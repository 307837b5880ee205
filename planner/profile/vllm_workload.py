"""Open-loop workloads for the vLLM validation, cut from a real request trace.

The GPU host has no copy of the shared traces, so the requests travel as a small JSON file: windows of
consecutive requests of a trace (their real inter-arrival times, rescaled to a mean of one request per
second, and their real prompt and output lengths). The driver (:mod:`planner.profile.vllm_run`) stretches
each window's timestamps to the rate of its load level, so burstiness within a window is the trace's own.

Only the standard library here: this module is imported on the GPU host too.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class Window:
    """Consecutive trace requests: unit-rate arrival offsets (s, first at 0) and lengths."""

    name: str
    arrival_s: tuple[float, ...]
    input_tokens: tuple[int, ...]
    output_tokens: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.arrival_s)


def _parse_ts(text: str) -> float:
    head, _, frac = text.strip().partition(".")
    base = datetime.strptime(head, "%Y-%m-%d %H:%M:%S").timestamp()
    return base + (float("0." + frac) if frac else 0.0)


def read_azure(path: str | Path) -> tuple[list[float], list[int], list[int]]:
    """Timestamps (s), prompt and output tokens of an Azure LLM inference 2023 CSV."""
    ts: list[float] = []
    ins: list[int] = []
    outs: list[int] = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            ts.append(_parse_ts(row["TIMESTAMP"]))
            ins.append(int(row["ContextTokens"]))
            outs.append(int(row["GeneratedTokens"]))
    return ts, ins, outs


def cut_windows(
    ts: list[float],
    ins: list[int],
    outs: list[int],
    *,
    names: list[str],
    size: int,
    start: int = 0,
    max_input: int = 14000,
) -> list[Window]:
    """``len(names)`` back-to-back windows of ``size`` requests from ``start``.

    Arrival offsets are rescaled so each window's mean rate is 1 request/s; prompts are capped at
    ``max_input`` tokens and outputs kept at least 1 token.

    >>> w = cut_windows([0.0, 1.0, 3.0, 4.0, 8.0, 9.0], [5, 6, 7, 8, 9, 10], [1, 0, 3, 4, 5, 6],
    ...                 names=["a", "b"], size=3)
    >>> w[0].arrival_s, w[0].output_tokens, w[1].arrival_s
    ((0.0, 0.666667, 2.0), (1, 1, 3), (0.0, 1.6, 2.0))
    """
    windows = []
    for k, name in enumerate(names):
        lo = start + k * size
        t = ts[lo : lo + size]
        if len(t) < size:
            raise ValueError(f"trace has {len(ts)} requests, window {name} needs {lo + size}")
        span = t[-1] - t[0]
        scale = (size - 1) / span if span > 0 else 1.0
        windows.append(
            Window(
                name,
                tuple(round((x - t[0]) * scale, 6) for x in t),
                tuple(min(max(1, v), max_input) for v in ins[lo : lo + size]),
                tuple(max(1, v) for v in outs[lo : lo + size]),
            )
        )
    return windows


def save(windows: list[Window], path: str | Path, *, source: str) -> None:
    """Write the windows (and where they came from) as JSON."""
    doc = {"source": source, "windows": [asdict(w) for w in windows]}
    Path(path).write_text(json.dumps(doc, separators=(",", ":")) + "\n")


def load(path: str | Path) -> dict[str, Window]:
    """The windows of a workload file, by name."""
    doc = json.loads(Path(path).read_text())
    return {
        w["name"]: Window(
            w["name"], tuple(w["arrival_s"]), tuple(w["input_tokens"]), tuple(w["output_tokens"])
        )
        for w in doc["windows"]
    }
