"""The fleetwise what-if dashboard (Streamlit): the sidebar, the page registry and :func:`main`.

The script Streamlit runs is :mod:`dashboards.app` (``fleetwise dashboard`` starts it); it only calls
:func:`main`, so that this module is imported once under its own name by the script and the pages alike.

Layout: the sidebar holds what every page shares (the page, the trace and its load factor, the model and
the SLOs); each page in :mod:`dashboards.views` renders one question. The page is also in the URL
(``?page=Plan``, optionally ``&load=2`` for the load factor) so a view can be linked to.

Errors: every bad input (a broken upload, a missing file, an unknown GPU, an infeasible layout) is an
:class:`~traces.errors.InputError` from the library, shown in the page as one red line, never a
traceback.

Long runs (plans, replays, Compare, Autoscaling, Power) run in a child process (:mod:`dashboards.jobs`)
and show their progress with a Cancel button; Cancel, Streamlit's Stop or any change of an input
terminates the child at once, in the middle of a library call (:func:`dashboards.views.common.computed`).
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import streamlit as st

from dashboards import scenario as sc
from planner.catalog import load_catalog
from traces.errors import InputError
from traces.load import FORMATS


class PageName(StrEnum):
    """Pages, in sidebar order."""

    TRACE = "Trace"
    PLAN = "Plan"
    REPLAY = "Replay"
    AUTOSCALING = "Autoscaling"
    POWER = "Power"
    EXPERTS = "Experts"
    COMPARE = "Compare"


@dataclass(frozen=True)
class Inputs:
    """What the sidebar gathered; ``source`` is None when the chosen trace could not be resolved.

    Attributes:
        source: the trace source (cache key), or None with ``source_error`` set.
        source_error: the :class:`InputError` text of a bad path or upload.
        load_factor: request-rate multiplier.
        seed: seed for load scaling and routing.
        model: catalog model.
        ttft_s, tpot_s: p99 SLO targets.
    """

    source: sc.TraceSource | None
    source_error: str
    load_factor: float
    seed: int
    model: str
    ttft_s: float
    tpot_s: float


@functools.cache
def upload_dir() -> Path:
    """Where this process saves uploads (by content hash) so the readers can scan them as files: a
    private folder (mode 0700, unpredictable name) made once per process, so no other user can plant a
    link where an upload will be written."""
    return Path(tempfile.mkdtemp(prefix="fleetwise-uploads-"))

SOURCE_CHOICES: tuple[str, ...] = (
    "Bundled default", "Bundled fleet day", "File path", "Upload", "Prometheus")


def _sidebar(pages: list[str]) -> tuple[PageName, Inputs]:
    wanted = st.query_params.get("page", PageName.TRACE.value)
    page = PageName(
        st.sidebar.radio("Page", pages, index=pages.index(wanted) if wanted in pages else 0, key="page")
    )
    st.query_params["page"] = page.value

    st.sidebar.subheader("Trace")
    choice = st.sidebar.radio(
        "Source",
        SOURCE_CHOICES,
        key="source",
        horizontal=True,
        help="The bundled synthetic hour, the generated fleet-scale day (70B-class load), a file on this "
        "machine, an upload, or a trace rebuilt from a vLLM fleet's Prometheus metrics.",
    )
    fmt_name = st.sidebar.selectbox(
        "Format", ("auto-detect", *FORMATS), key="format",
        disabled=choice in (*SOURCE_CHOICES[:2], SOURCE_CHOICES[4]),
    )
    fmt = None if fmt_name == "auto-detect" else fmt_name
    source: sc.TraceSource | None = None
    error = ""
    try:
        if choice == SOURCE_CHOICES[0]:
            source = sc.default_source()
        elif choice == SOURCE_CHOICES[1]:
            source = sc.default_source("fleet-day")
        elif choice == SOURCE_CHOICES[2]:
            path = st.sidebar.text_input(
                "Path",
                key="path",
                placeholder="/data/AzureLLMInferenceTrace_conv.csv",
                help="A trace file or a ServeGen client folder.",
            )
            if path.strip():
                source = sc.file_source(path.strip(), format=fmt, roots=sc.data_roots())
            else:
                error = "Enter the path of a trace file or ServeGen folder in the sidebar."
        elif choice == SOURCE_CHOICES[4]:
            allowed = sc.prometheus_urls()
            url = st.sidebar.selectbox(
                "Prometheus", allowed or ("none allowed",), key="prom_url", disabled=not allowed,
                help=f"The servers listed in {sc.PROMETHEUS_URLS_ENV} (comma-separated base URLs).",
            )
            rng = st.sidebar.text_input(
                "Range", value="now-1h,now", key="prom_range",
                help="START,END: Unix seconds, ISO 8601 with a zone, or now-6h.",
            )
            step = st.sidebar.number_input("Step, s", min_value=1.0, value=15.0, step=5.0, key="prom_step")
            sel = st.sidebar.text_input(
                "Selector", value="", key="prom_selector", placeholder='{model_name="llama"}',
                help="PromQL label matchers of the fleet's vLLM series (empty: every vLLM series).",
            )
            source = sc.prometheus_source(str(url), rng, step_s=float(step), selector=sel,
                                          allowed=allowed, now_s=time.time())
        else:
            up = st.sidebar.file_uploader(
                "Trace file",
                type=list(sc.UPLOAD_SUFFIXES),
                key="upload",
                max_upload_size=sc.MAX_UPLOAD_MB,
                help=f"At most {sc.MAX_UPLOAD_MB} MB; give a path for bigger traces.",
            )
            if up is not None:
                source = sc.save_upload(up.name, up.getvalue(), dest_dir=upload_dir(), format=fmt)
            else:
                error = "Upload a trace file in the sidebar."
    except InputError as exc:
        error = str(exc)
    load_factor = st.sidebar.number_input(
        "Load factor (x request rate)",
        min_value=0.05,
        max_value=20.0,
        value=_load_from_url(),
        step=0.5,
        key="load_factor",
        help="Scales the rate at the same duration (traces.transforms).",
    )
    seed = int(st.sidebar.number_input("Seed", min_value=0, value=0, step=1, key="seed"))

    st.sidebar.subheader("Model and SLO")
    models = list(_catalog_names()[1])
    model = st.sidebar.selectbox(
        "Model", models, index=models.index("Llama-3.1-8B") if "Llama-3.1-8B" in models else 0, key="model"
    )
    ttft_ms = st.sidebar.number_input(
        "TTFT p99 target, ms", min_value=1.0, value=2000.0, step=100.0, key="ttft"
    )
    tpot_ms = st.sidebar.number_input(
        "TPOT p99 target, ms", min_value=1.0, value=100.0, step=10.0, key="tpot"
    )
    return page, Inputs(
        source=source,
        source_error=error,
        load_factor=float(load_factor),
        seed=seed,
        model=str(model),
        ttft_s=float(ttft_ms) / 1e3,
        tpot_s=float(tpot_ms) / 1e3,
    )


def _load_from_url() -> float:
    """The load factor a link asked for (``?load=2``), 1 when absent or not a number in range."""
    raw = st.query_params.get("load", "1")
    try:
        value = float(raw)
    except ValueError:
        return 1.0
    return value if 0.05 <= value <= 20.0 else 1.0


@st.cache_resource(show_spinner=False)
def _catalog_names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """GPU and model names of the bundled catalog (read once per server)."""
    cat = load_catalog()
    return tuple(cat.gpus), tuple(cat.models)


def gpu_names() -> tuple[str, ...]:
    """Catalog GPU names, for the pages' selectors."""
    return _catalog_names()[0]


def select_gpu(container: Any, key: str, default: str = "H100-SXM") -> str:
    """A GPU selectbox in ``container`` (a column), ``default`` first chosen when the catalog has it."""
    names = list(gpu_names())
    index = names.index(default) if default in names else 0
    return str(container.selectbox("GPU", names, index=index, key=key))


def _views() -> dict[PageName, Callable[[Inputs], None]]:
    from dashboards.views import autoscale, compare, experts, plan, power, replay, trace

    return {
        PageName.TRACE: trace.render,
        PageName.PLAN: plan.render,
        PageName.REPLAY: replay.render,
        PageName.AUTOSCALING: autoscale.render,
        PageName.POWER: power.render,
        PageName.EXPERTS: experts.render,
        PageName.COMPARE: compare.render,
    }


def main() -> None:
    """Render the app (one script run)."""
    st.set_page_config(
        page_title="fleetwise what-if",
        layout="wide",
        page_icon=":material/dns:",
        initial_sidebar_state="expanded",
    )
    pages = [p.value for p in PageName]
    page, inputs = _sidebar(pages)
    st.title(f"fleetwise · {page.value}")
    try:
        _views()[page](inputs)
    except InputError as exc:
        st.error(str(exc), icon=":material/error:")
