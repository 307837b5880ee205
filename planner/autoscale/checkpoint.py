"""Finished policies of one autoscaling comparison, kept beside its output folder so that an interrupted
run resumes where it stopped instead of replaying every policy again (14 days of ServeGen take minutes
per policy).

A checkpoint belongs to one comparison: its ``key`` (a digest of everything that decides the results:
trace, model, layout, engine, bounds, cold start, policies' tuning) is stored with it, and a checkpoint
with another key is discarded, never mixed in. Each policy is saved as its timeline (Parquet) then its
summary (JSON, written last: a policy counts as finished only once its summary is there).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import polars as pl

from planner.autoscale.closed_loop import LoopResult, LoopSummary
from traces.atomic import write_atomic, write_text_atomic

KEY_FILE = "key"


def comparison_key(*parts: object) -> str:
    """A digest of the parts' ``repr`` (frozen dataclasses and plain values repr deterministically)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


class PolicyCheckpoint:
    """The checkpoint folder of one comparison.

    Args:
        folder: where the finished policies are kept.
        key: the comparison's :func:`comparison_key`.
    """

    def __init__(self, folder: Path, key: str) -> None:
        self.folder = folder
        self.key = key

    @classmethod
    def beside(cls, out: Path, key: str) -> PolicyCheckpoint:
        """The checkpoint of a comparison written to ``out``: the hidden folder ``.<out>.checkpoint``."""
        return cls(out.parent / f".{out.name}.checkpoint", key)

    def load(self) -> dict[str, LoopResult]:
        """The policies already finished (none when there is no checkpoint or it is another run's)."""
        try:
            same = (self.folder / KEY_FILE).read_text(encoding="utf-8").strip() == self.key
        except OSError:
            same = False
        if not same:
            self.clear()
            return {}
        out: dict[str, LoopResult] = {}
        for path in sorted(self.folder.glob("*.summary.json")):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                tl_path = path.with_name(path.name.replace(".summary.json", ".timeline.parquet"))
                timeline = pl.read_parquet(tl_path)
                out[doc["policy"]] = LoopResult(requests=pl.DataFrame(), timeline=timeline,
                                                summary=LoopSummary(**doc))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a half-saved policy: it runs again
        return out

    def save(self, name: str, result: LoopResult) -> None:
        """Keep one finished policy (its requests are not kept: long runs drop them anyway)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.folder / KEY_FILE, self.key + "\n")
        stem = hashlib.sha256(name.encode()).hexdigest()[:16]
        write_atomic(self.folder / f"{stem}.timeline.parquet", result.timeline.write_parquet)
        write_text_atomic(self.folder / f"{stem}.summary.json", json.dumps(result.summary.as_dict()) + "\n")

    def clear(self) -> None:
        """Remove the checkpoint (the comparison's output is complete, or the checkpoint is stale)."""
        shutil.rmtree(self.folder, ignore_errors=True)
