"""Helpers the pages share: the current trace (or the reason there is none) and result rendering."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TypeVar

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from dashboards import cache
from dashboards.scenario import TraceSource
from dashboards.ui import Inputs
from traces.schema import RequestTrace

T = TypeVar("T", bound=Hashable)


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
    last: T | None = st.session_state.get(key)
    if last is not None and last != request:
        st.caption(":material/history: Showing the last run; inputs have changed since. Press Run to update.")
    return last
