"""Helpers the pages share: the current trace (or the reason there is none) and result rendering."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from dashboards import cache, jobs
from dashboards.scenario import TraceSource
from dashboards.ui import Inputs
from planner.perf.precision import LABELS
from traces.schema import RequestTrace

T = TypeVar("T", bound=Hashable)
R = TypeVar("R")


def current_trace(inputs: Inputs) -> tuple[TraceSource, RequestTrace] | None:
    """The chosen trace at the chosen load, or None after showing why there is none.

    The trace layer's :class:`~traces.errors.InputError` (bad upload, missing file, bad row) is shown as
    one red line; the page then stops drawing.
    """
    if inputs.source is None:
        if inputs.source_error.startswith(("Enter", "Upload a trace")):
            st.info(inputs.source_error, icon=":material/info:")
        else:
            st.error(inputs.source_error, icon=":material/error:")
        return None
    with st.spinner(f"Loading {inputs.source.label}..."):
        tr = cache.trace(inputs.source, inputs.load_factor, inputs.seed)
    return inputs.source, tr


def show_table(df: pl.DataFrame, *, height: int | None = None) -> None:
    """A polars frame as a read-only table without the index column."""
    if height is None:
        st.dataframe(df, hide_index=True, width="stretch")
    else:
        st.dataframe(df, hide_index=True, width="stretch", height=height)


def show_facts(df: pl.DataFrame) -> None:
    """A small table shown in full (no scrolling, long values wrap): summaries and statistics."""
    st.table(df, hide_index=True, border="horizontal")


def show_figure(fig: go.Figure, *, key: str) -> None:
    """A plotly figure at the page's width."""
    st.plotly_chart(fig, width="stretch", key=key, config={"displaylogo": False})


def remember_run(key: str, request: T, clicked: bool) -> T | None:
    """The request to show: the one made at the last click of this page's Run button.

    Why: a button is true for one script run only; the pages keep the request (hashable inputs) that was
    run, and re-read its result from the cache on later runs, so results stay on screen while the user
    looks at them, and say so when the inputs have changed since.
    """
    if clicked:
        st.session_state[key] = request
        st.session_state.pop(_running_key(key), None)  # a new run, not the interrupted one
    last: T | None = st.session_state.get(key)
    if last is not None and last != request:
        st.caption(":material/history: Showing the last run; inputs have changed since. Press Run to update.")
    return last


def _running_key(request_key: str) -> str:
    return f"{request_key}__running"


def computed(request_key: str, fn: Callable[..., R], args: tuple[Any, ...], *, label: str) -> R | None:
    """The result of ``fn(*args)``: from the store, or computed now in a child process with progress.

    While the job runs the page shows a progress bar (or, when the job cannot tell its share, what it
    is doing and for how long) and a **Cancel** button. Cancel, Streamlit's Stop, or a change of any input
    interrupts the script at its next progress update; :func:`dashboards.jobs.run_job` then terminates the
    child at once. The next script run finds the interrupted job's mark in the session, forgets the
    request kept under ``request_key`` (see :func:`remember_run`) and says so, instead of starting the
    job again.

    Args:
        request_key: the session key of the page's remembered request.
        fn: a job function of :mod:`dashboards.scenario` (``fn(*args, report=...)``).
        args: its hashable inputs (also the store's key).
        label: what the job does, for the progress line.

    Returns:
        The result, or None when the job was cancelled or failed (the page has said why).

    Raises:
        InputError: the library rejected the input (:func:`dashboards.ui.main` shows it as one line).
    """
    key = (fn.__module__, fn.__qualname__, args)
    store = cache.results()
    hit = store.get(key)
    if hit is not None:
        return hit  # type: ignore[return-value]  # stored under this job's own key
    if st.session_state.pop(_running_key(request_key), None) is not None:
        st.session_state.pop(request_key, None)
        st.warning(
            "Cancelled: the run was stopped before it finished. Press Run to start it again.",
            icon=":material/cancel:",
        )
        return None
    slot = st.empty()  # clearing the slot removes the whole progress box
    box = slot.container(border=True)
    line = box.empty()
    bar = box.empty()
    box.button(
        "Cancel",
        key=f"{request_key}__cancel_{zlib.crc32(repr(args).encode())}",  # one per job of a page run
        icon=":material/cancel:",
        help="Stops the computation now (Streamlit's Stop and any input change do too).",
    )
    start = time.monotonic()

    def show(p: jobs.JobProgress) -> None:
        elapsed = f"{time.monotonic() - start:,.0f} s"
        line.markdown(f"**{label}**: {p.text} ({elapsed})")
        if p.fraction is not None:
            bar.progress(min(max(p.fraction, 0.0), 1.0))

    st.session_state[_running_key(request_key)] = key
    try:
        result = jobs.run_job(fn, args, on_progress=show)
    except jobs.JobFailedError as exc:
        st.session_state.pop(_running_key(request_key), None)
        slot.empty()
        st.error(
            f"{label} failed: {exc}. This is a bug in fleetwise; the details below help report it.",
            icon=":material/bug_report:",
        )
        with st.expander("Details"):
            st.code(exc.detail or str(exc), language="text")
        return None
    except Exception:
        st.session_state.pop(_running_key(request_key), None)
        slot.empty()
        raise
    st.session_state.pop(_running_key(request_key), None)
    slot.empty()
    store.put(key, result)
    return result


def engine_choice(key: str, gpu: str) -> str:
    """The engine-profile radio every page that replays shows, with the line saying where its numbers
    come from (the same line the CLI prints)."""
    from dashboards.scenario import engine_line
    from planner.perf.engine_profile import DEFAULT_ENGINE, ENGINES

    names = sorted(ENGINES)
    engine = str(st.radio(
        "Engine model", names, index=names.index(DEFAULT_ENGINE), horizontal=True, key=key,
        help="bare: the profiler's layer stack; vllm: fitted on vLLM 0.26 under Azure load "
        "(fleetwise bench replay --validate --engine vllm shows its held-out errors)"))
    st.caption(engine_line(engine, gpu))
    return engine


PRECISIONS = ("native", *LABELS)
"""One replica's weights and KV dtypes as the replaying pages offer them (:mod:`planner.perf.precision`)."""


def precision_choice(key: str, default: str = "native") -> str:
    """The precision selector of a page that replays one configuration (default: the last plan's)."""
    return str(st.selectbox(
        "Precision", PRECISIONS, index=PRECISIONS.index(default) if default in PRECISIONS else 0, key=key,
        help="native: the model's published weights with a bf16 KV cache; fp8 halves the bytes and "
        "changes the model's outputs (check quality on your evaluations)"))
