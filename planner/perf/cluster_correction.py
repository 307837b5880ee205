"""What one cluster differs by from the engine profile, fitted on its own metrics
(``fleetwise calibrate --prometheus-url``, :mod:`planner.live.telemetry_fit`) and applied wherever the
per-node model is built (``fleetwise replay --correction cluster.json``).

Why three numbers: a user's GPUs run the measured kernels at their own clocks and power limits and behind
their own host and engine build. Effective HBM bandwidth moves decode steps, effective tensor throughput
moves prompt steps, and a per-step time covers the host and scheduler; the profile's curve shapes stay.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from planner.catalog.schema import GPUSpec
from planner.perf.calibration import Calibration
from traces.errors import InputError


@dataclass(frozen=True)
class Correction:
    """Multipliers on the GPU's bandwidth and compute and seconds added per step (1, 1, 0: none)."""

    bandwidth: float = 1.0
    compute: float = 1.0
    step_add_s: float = 0.0

    def apply(self, gpu: GPUSpec, cal: Calibration) -> tuple[GPUSpec, Calibration]:
        """The GPU and calibration of the corrected cluster."""
        g = replace(gpu, hbm_tbps=gpu.hbm_tbps * self.bandwidth, bf16_tflops=gpu.bf16_tflops * self.compute,
                    fp8_tflops=gpu.fp8_tflops * self.compute)
        return g, replace(cal, step_s=cal.step_s + self.step_add_s)


def read_correction(path: str | Path) -> Correction:
    """The ``correction`` of a ``calibrate --prometheus-url --out`` file.

    Raises:
        InputError: unreadable file, not JSON, or no valid correction in it.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=str(p)) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not JSON: {exc.msg}", path=str(p), field=f"line {exc.lineno}") from None
    c = doc.get("correction") if isinstance(doc, dict) else None
    try:
        out = Correction(float(c["bandwidth"]), float(c["compute"]), float(c["step_add_s"]))  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        raise InputError("no correction", path=str(p), field="correction",
                         expected="{bandwidth, compute, step_add_s} as fleetwise calibrate --prometheus-url "
                                  "writes them") from None
    if not (out.bandwidth > 0 and out.compute > 0 and 0 <= out.step_add_s < 1.0):
        raise InputError(f"correction {out}", path=str(p), field="correction",
                         expected="positive multipliers and 0 <= step_add_s < 1")
    return out
