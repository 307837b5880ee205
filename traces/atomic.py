"""Write a file so that its final name holds either the old content or the whole new one, never a part.

The writer writes beside the final name and the file is renamed into place (``os.replace`` is atomic on
one filesystem), so a run killed mid-write leaves no truncated table or JSON where a complete one was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from traces.errors import InputError


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


MANIFEST = "manifest.json"
"""The file that ties one run's files together (names, sizes, SHA-256)."""


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_folder_atomic(folder: str | Path, files: Mapping[str, Callable[[Path], object]], *,
                        tool: str = "fleetwise") -> list[Path]:
    """Write one run's files so that ``folder`` always holds a complete run: the old one or the new one.

    Every file is written into a private sibling folder with a :data:`MANIFEST` naming each file's size
    and SHA-256; the finished folder then replaces ``folder`` by rename (the previous run, if any, is
    moved aside first and deleted after). A run killed at any point leaves ``folder`` untouched or
    complete, plus at most a hidden ``.<name>.partial-*`` folder to delete.

    Args:
        folder: the run's folder (a folder or nothing may exist there).
        files: file name -> ``write(path)``.
        tool: recorded in the manifest.

    Returns:
        The files' final paths (manifest last).

    Raises:
        InputError: ``folder`` exists and is not a folder.
    """
    final = Path(folder)
    if final.exists() and not final.is_dir():
        raise InputError("the output names an existing file", path=str(final),
                         expected="a folder (new or existing)")
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        entries = {}
        for name, write in files.items():
            write(work / name)
            entries[name] = {"bytes": (work / name).stat().st_size, "sha256": _digest(work / name)}
        manifest = {"run_id": uuid.uuid4().hex, "tool": tool, "files": entries,
                    "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        old: Path | None = None
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.replace(final, old)
        os.replace(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return [final / n for n in files] + [final / MANIFEST]


def check_folder(folder: str | Path, *, needed: tuple[str, ...] = ()) -> None:
    """Refuse a run folder whose files do not match its manifest (a mix of two runs, a truncated table).

    Folders without a manifest (written before manifests existed) are accepted as they are.

    Raises:
        InputError: a file the manifest names is missing or differs in size or SHA-256, a ``needed``
            file is not in the manifest, or the manifest is unreadable.
    """
    root = Path(folder)
    path = root / MANIFEST
    if not path.is_file():
        return
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        entries = dict(manifest["files"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"unreadable manifest ({exc})", path=str(path),
                         expected="the manifest of one run") from None
    for name in needed:
        if name not in entries:
            raise InputError(f"{name} is not part of this run", path=str(root), field=name,
                             expected="a folder written by one fleetwise run") from None
    for name, meta in entries.items():
        f = root / name
        if not f.is_file() or f.stat().st_size != meta.get("bytes") or _digest(f) != meta.get("sha256"):
            raise InputError(f"{name} does not match the run's manifest", path=str(root), field=name,
                             expected="the files of one complete run (re-run it)")
