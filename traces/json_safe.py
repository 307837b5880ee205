"""JSON has no NaN or infinity: what the ``--json`` outputs and result files write instead."""

from __future__ import annotations

import math


def json_safe(v: object) -> object:
    """``v`` with every non-finite float, at any depth of dicts, lists and tuples, as None.

    >>> json_safe({"a": float("nan"), "b": [1.0, float("inf")], "c": (2, "x")})
    {'a': None, 'b': [1.0, None], 'c': [2, 'x']}
    """
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [json_safe(x) for x in v]
    return v
