"""Long computations of the dashboard in a child process: progress while they run, and a real cancel.

Why a process: a Streamlit script is interrupted (Stop, a changed input, a Cancel button) only when it
next calls an element, and a thread cannot be killed. A replay, a plan or a power study spends minutes in
one library call, so between-step checks would leave it running on after the user gave up. Here the
library call runs in a child process; the page's script polls it and shows its progress, and when the
script is interrupted (any exception out of ``on_progress``, Streamlit's ``StopException`` and
``RerunException`` included) the child is terminated at once, so no CPU is spent on an answer nobody
reads.

The child is started by the ``forkserver`` method with the heavy modules preloaded (see
:data:`PRELOAD`): a job starts in tens of milliseconds instead of re-importing polars, numba and
OR-Tools, and the child never inherits the Streamlit server's threads (a plain ``fork`` could deadlock
on a lock one of them held).

The job function is any importable module-level function ``fn(*args, report=...)`` whose arguments and
result can be pickled; ``report(fraction, text)`` sends progress (``fraction`` None when unknown).
Nothing here imports Streamlit, so the module is tested on its own.

>>> run_job(_double, (21,))
42
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Protocol, TypeVar

from traces.errors import InputError

R = TypeVar("R")

PRELOAD: tuple[str, ...] = (
    "dashboards.scenario",
    "planner.sim",
    "planner.plan",
    "planner.autoscale.compare",
    "planner.power_study.study",
)
"""Modules the fork server imports once, so that every job starts with them loaded."""

_LOCK = threading.Lock()


class Report(Protocol):
    """How a job tells its progress: a fraction in 0..1 (None: unknown) and a line of text."""

    def __call__(self, fraction: float | None, text: str) -> None: ...


@dataclass(frozen=True)
class JobProgress:
    """The latest progress a job reported.

    Attributes:
        fraction: share done in 0..1, or None when the job cannot tell.
        text: what it is doing, in the user's words.
    """

    fraction: float | None
    text: str


class JobFailedError(RuntimeError):
    """The job raised something other than :class:`~traces.errors.InputError` (a bug, not bad input).

    Attributes:
        kind: the exception's type name.
        detail: the child's traceback, for a collapsed "details" view.
    """

    def __init__(self, kind: str, message: str, detail: str) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {message}")


def _context() -> Any:
    """The forkserver context with :data:`PRELOAD` (set once per process, before the server starts)."""
    ctx = mp.get_context("forkserver")
    with _LOCK:
        ctx.set_forkserver_preload(list(PRELOAD))
    return ctx


def _child(conn: Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """Run ``fn`` and send ``("progress", fraction, text)`` messages, then ``("ok", result)`` or an error."""

    def report(fraction: float | None, text: str) -> None:
        conn.send(("progress", fraction, text))

    try:
        result = fn(*args, report=report)
    except InputError as exc:
        conn.send(("input", str(exc)))
    except Exception as exc:  # any failure goes back to the page as data
        conn.send(("failed", type(exc).__name__, str(exc), traceback.format_exc()))
    else:
        conn.send(("ok", result))
    finally:
        conn.close()


def run_job(
    fn: Callable[..., R],
    args: tuple[Any, ...],
    *,
    on_progress: Callable[[JobProgress], None] | None = None,
    poll_s: float = 0.25,
) -> R:
    """Run ``fn(*args, report=...)`` in a child process and return its result.

    ``on_progress`` is called with the latest progress about every ``poll_s`` seconds while the job
    runs (also when nothing new arrived, so that a Streamlit page gets its chance to be interrupted);
    whatever it raises ends the job: the child is terminated, then the exception propagates.

    Args:
        fn: an importable module-level function taking ``report`` as a keyword.
        args: its positional arguments (pickled to the child).
        on_progress: progress callback; raise from it to cancel.
        poll_s: how often the callback runs.

    Returns:
        What ``fn`` returned.

    Raises:
        InputError: the job rejected its input (the library's message, unchanged).
        JobFailedError: the job raised anything else, or the child died without an answer.
    """
    ctx = _context()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, args), daemon=True, name=f"fleetwise-{fn.__name__}")
    proc.start()
    send.close()
    latest = JobProgress(None, "starting")
    try:
        while True:
            if recv.poll(poll_s):
                try:
                    msg = recv.recv()
                except EOFError:
                    proc.join(timeout=5)
                    raise JobFailedError(
                        "ChildDied", f"the worker exited with code {proc.exitcode} before answering", ""
                    ) from None
                tag = msg[0]
                if tag == "progress":
                    latest = JobProgress(msg[1], msg[2])
                    if recv.poll(0):  # more queued: skip to the newest before redrawing
                        continue
                elif tag == "ok":
                    result: R = msg[1]
                    return result
                elif tag == "input":
                    raise InputError(msg[1])
                else:
                    raise JobFailedError(msg[1], msg[2], msg[3])
            if on_progress is not None:
                on_progress(latest)
    finally:
        recv.close()
        _end(proc)


def _end(proc: Any) -> None:
    """Stop the child if it still runs (terminate, then kill), and reap it."""
    if proc.is_alive():
        proc.terminate()
        proc.join(timeout=3)
        if proc.is_alive():
            proc.kill()
    proc.join(timeout=3)


def _double(x: int, *, report: Report) -> int:
    """A tiny job (doctest and tests): twice ``x``; a negative ``x`` is bad input."""
    report(0.5, "halfway")
    if x < 0:
        raise InputError(f"x is {x}", field="x", expected="a number >= 0")
    return 2 * x


def _sleep(seconds: float, *, report: Report) -> float:
    """A job that takes ``seconds`` and tells its progress (tests of cancellation)."""
    import time

    step = 0.05
    waited = 0.0
    while waited < seconds:
        time.sleep(step)
        waited += step
        report(waited / seconds, f"slept {waited:.2f} s")
    return waited
