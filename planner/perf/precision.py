"""Serving precision: the dtype of a replica's weights and of its KV cache, as one planning decision.

A model ships in a native precision (the catalog's ``native_dtype``: bf16 for most, fp8 for DeepSeek-V3
and R1). Serving it narrower (fp8 weights of a bf16 model, an fp8 KV cache) is quantization: it halves
the bytes and changes the model's outputs, so every plan that picks it says so
(:meth:`Precision.quality_note`). Serving it wider than native costs memory and gains nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.catalog.schema import GPUSpec, ModelSpec
from traces.errors import InputError

DTYPES = ("bf16", "fp8")
"""Weight and KV dtypes the step model knows (:data:`planner.perf.model.DTYPE_BYTES`)."""

LABELS = ("bf16", "fp8", "fp8+kv8", "bf16+kv8")
"""Every precision's label (:attr:`Precision.label`), as the options and selectors list them."""

_BITS = {"bf16": 16, "fp16": 16, "fp8": 8}


@dataclass(frozen=True, order=True)
class Precision:
    """Weights and KV-cache dtypes of a replica."""

    weights: str = "bf16"
    kv: str = "bf16"

    def __post_init__(self) -> None:
        for name, dt in (("weights", self.weights), ("kv", self.kv)):
            if dt not in DTYPES:
                raise InputError(f"unknown {name} dtype {dt!r}", field="--precision",
                                 expected=" or ".join(DTYPES))

    @property
    def label(self) -> str:
        """``bf16``, ``fp8`` (weights), ``fp8+kv8`` (weights and KV), ``bf16+kv8`` (KV only).

        >>> Precision("fp8", "fp8").label, Precision().label
        ('fp8+kv8', 'bf16')
        """
        return self.weights + ("+kv8" if self.kv == "fp8" else "")

    def quality_note(self, model: ModelSpec) -> str | None:
        """What this precision does to the model's outputs, or None when it serves the native weights
        and a full-precision cache."""
        notes = []
        if _BITS[self.weights] < _BITS[model.native_dtype]:
            notes.append(f"weights quantized {model.native_dtype} -> {self.weights}")
        elif _BITS[self.weights] > _BITS[model.native_dtype]:
            notes.append(f"weights upcast from {model.native_dtype} (more memory, no quality gain)")
        if self.kv == "fp8":
            notes.append("fp8 KV cache")
        if not notes:
            return None
        lossy = any("quantized" in n for n in notes) or self.kv == "fp8"
        return ", ".join(notes) + ("; outputs change: check quality on your evaluations" if lossy else "")

    def runs_on(self, gpu: GPUSpec) -> bool:
        """Whether ``gpu`` has the tensor cores this precision needs."""
        return gpu.has_fp8 or (self.weights != "fp8" and self.kv != "fp8")


BF16 = Precision()
"""bf16 weights and KV: what a config without a stated precision runs in."""


def native(model: ModelSpec) -> Precision:
    """The model's own weights with a bf16 KV cache."""
    return Precision(weights="fp8" if model.native_dtype == "fp8" else "bf16")


def parse_precision(text: str) -> Precision:
    """One label (``bf16``, ``fp8``, ``fp8+kv8``, ``bf16+kv8``).

    Raises:
        InputError: not a label.
    """
    t = text.strip().lower()
    weights, _, kv = t.partition("+")
    if kv not in ("", "kv8") or weights not in DTYPES:
        raise InputError(f"unknown precision {text!r}", field="--precision", expected=", ".join(LABELS))
    return Precision(weights=weights, kv="fp8" if kv == "kv8" else "bf16")


def parse_precisions(text: str, model: ModelSpec) -> tuple[Precision, ...]:
    """``native`` (the model's own), ``all`` (native and every narrower choice) or comma-separated labels.

    >>> from planner.catalog import load_catalog
    >>> [p.label for p in parse_precisions("all", load_catalog().model("Llama-3.1-8B"))]
    ['bf16', 'fp8', 'bf16+kv8', 'fp8+kv8']

    Raises:
        InputError: an unknown label.
    """
    t = text.strip().lower()
    if t == "native":
        return (native(model),)
    if t == "all":
        base = native(model)
        out = [base] + [p for p in (Precision("fp8", "bf16"), Precision(base.weights, "fp8"),
                                    Precision("fp8", "fp8")) if p != base]
        return tuple(dict.fromkeys(out))
    out = [parse_precision(x) for x in t.split(",") if x.strip()]
    if not out:
        raise InputError("no precision given", field="--precision", expected="native, all or labels")
    return tuple(dict.fromkeys(out))


def resolve_precision(text: str, model: ModelSpec) -> Precision:
    """One precision: ``native`` (the model's own) or a label (:func:`parse_precision`)."""
    return native(model) if text.strip().lower() == "native" else parse_precision(text)
