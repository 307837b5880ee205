"""Write a file so that its final name holds either the old content or the whole new one, never a part.

The writer writes beside the final name and the file is renamed into place (``os.replace`` is atomic on
one filesystem), so a run killed mid-write leaves no truncated table or JSON where a complete one was.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary name in ``path``'s folder (created), then rename it to ``path``."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp")
    write(tmp)
    os.replace(tmp, final)
    return final


def write_text_atomic(path: str | Path, text: str) -> Path:
    """:func:`write_atomic` of ``text`` (UTF-8)."""
    return write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))
