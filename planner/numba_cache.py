"""Where numba keeps the compiled step kernel and simulator: a folder per version of their sources.

Numba's on-disk cache (``cache=True``) checks only the timestamp of the file that defines a function,
not of the njit functions it calls from other modules. After ``planner/perf/kernel.py`` changed its
parameter layout, the cached simulator code in ``planner/sim`` kept running the old kernel and read its
operator table one slot off, with no error (seen 2026-12-07 on an edited checkout; a pip upgrade over an
older install would do the same). Keying the cache folder on the sources of every module with cached njit
code makes any change to them start from a fresh cache.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

NUMBA_SOURCES = ("perf/kernel.py", "sim/kernels.py", "sim/engine.py", "sim/validate.py", "sim/testing.py")
"""Modules (under ``planner/``) whose njit functions are cached or call cached ones."""


def cache_dir(sources: list[Path], root: Path) -> Path:
    """``root/<hash of the sources' bytes>``: a new folder whenever any of them changes."""
    h = hashlib.sha256()
    for p in sources:
        h.update(p.name.encode())
        h.update(p.read_bytes() if p.is_file() else b"")
    return root / h.hexdigest()[:16]


def configure() -> None:
    """Point numba's cache at the folder of the current sources (under ``$NUMBA_CACHE_DIR`` if the user
    set one, else the user cache folder); leave numba's default if that folder cannot be made."""
    base = os.environ.get("FLEETWISE_NUMBA_CACHE_ROOT") or os.environ.get("NUMBA_CACHE_DIR")
    root = Path(base) if base else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / (
        "fleetwise-numba")
    pkg = Path(__file__).resolve().parent
    target = cache_dir([pkg / s for s in NUMBA_SOURCES], root)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    os.environ["FLEETWISE_NUMBA_CACHE_ROOT"] = str(root)
    os.environ["NUMBA_CACHE_DIR"] = str(target)
    import sys

    cfg = sys.modules.get("numba.core.config")
    if cfg is not None:  # numba already imported: its config read the variable then
        cfg.CACHE_DIR = str(target)  # type: ignore[attr-defined]
