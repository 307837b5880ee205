"""ServeGen per-client workload statistics (Alibaba Bailian, arXiv 2505.09999), turned into requests.

A client folder holds, per client ``chunk-N``:

* ``chunk-N-trace.csv``, no header, one row per 10-minute window:
  ``window_start_s,rate_rps,cv,pattern,shape,scale`` (``pattern`` is ``Gamma`` or ``Weibull``, empty when
  the rate is 0);
* ``chunk-N-dataset.json`` (missing for some clients upstream): per 6-hour window start, token-length
  PDFs written as text, ``{"input_tokens": "{len: prob, ...}", "output_tokens": "{...}"}`` (``"{}"`` when
  the window had no sample); the reasoning category (``data/reason/...``) adds ``"reason_ratio":
  "{ratio: prob, ...}"``, the share of a request's output spent reasoning (ratios in [0, 1]).

How requests are made, per client and window (all draws from ``numpy.random.default_rng([seed, N])``, so
a client's requests do not depend on which other clients are loaded):

* **count**: ``round(rate_rps * window_s)``; the published rate is a count over the window, so this
  reproduces the real number of requests exactly.
* **times**: ``count + 1`` gaps are drawn from the window's renewal distribution with its fitted
  ``shape`` (Gamma or Weibull) and scaled so they span the window exactly (a renewal process conditioned
  on its count). The fitted ``scale`` is not used: in sparse windows it describes gaps inside bursts and
  its mean can be orders of magnitude off the rate, which would flood or starve the window; the shape
  keeps the burstiness. Draws are made in log space so shapes near 0.01 neither overflow nor underflow.
* **lengths**: from the PDFs of the 6-hour dataset window that contains the window. When that entry is
  empty or missing, the nearest dataset window that has one is used (ties: the earlier), counted per
  client in ``TraceMeta.repairs``. A client with no dataset file (or only empty entries) borrows the
  PDFs of the client whose 14-day request volume is closest on a log scale (ties: lower chunk number),
  also noted in the repairs. PDFs that allow 0 output tokens make requests that the shared validation
  drops and counts like failed requests.
* **reasoning**: where the window has a ``reason_ratio`` PDF, a ratio is drawn per request (after its
  lengths, so folders without one draw exactly as before) and ``reasoning_tokens`` is
  ``round(ratio * output_tokens)``; requests of windows without one have no reasoning count (null).

``tenant`` is the client id (``chunk-N``). A folder path loads all clients merged; a ``chunk-N-trace.csv``
path loads that client. Fourteen days of all clients are about 1.4 billion requests, so only the span
``[start_s, start_s + duration_s)`` of the timeline is generated: by default the first hour
(:data:`DEFAULT_DURATION_S`; about 2.9M requests for the whole ``m-small`` folder). Through
:func:`traces.load.load_trace` set them as ``mapping={"start_s": "86400", "duration_s": "600"}``
(``--map duration_s=600`` on the command line); ``seed`` comes from ``load_trace``'s ``seed``.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from traces.errors import InputError
from traces.readers.base import ROW, TIME, RawScan, TimeSpec
from traces.schema import TraceMeta

DEFAULT_DURATION_S = 3600.0
DATASET_WINDOW_S = 21600
MAPPING_KEYS: tuple[str, ...] = ("start_s", "duration_s", "seed")
_TRACE_RE = re.compile(r"^chunk-(\d+)-trace\.csv$")
_PAIR_RE = re.compile(r"(-?\d+)\s*:\s*([-+0-9.eE]+|nan|inf)")
_RATIO_RE = re.compile(r"([-+0-9.eE]+|nan|inf)\s*:\s*([-+0-9.eE]+|nan|inf)")
_COLUMNS = ("window_start_s", "rate_rps", "cv", "pattern", "shape", "scale")
_PATTERNS = ("Gamma", "Weibull")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _draw_index(cdf: FloatArray, rng: np.random.Generator, n: int) -> IntArray:
    """``n`` draws from a discrete distribution given by its (unnormalised) cumulative weights."""
    idx = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    out: IntArray = np.minimum(idx, len(cdf) - 1).astype(np.int64)
    return out


@dataclass(frozen=True)
class Pdf:
    """A discrete token-length distribution as sorted lengths and their cumulative probabilities."""

    lengths: IntArray
    cdf: FloatArray

    def sample(self, rng: np.random.Generator, n: int) -> IntArray:
        out: IntArray = self.lengths[_draw_index(self.cdf, rng, n)]
        return out


@dataclass(frozen=True)
class RatioPdf:
    """A discrete distribution of ratios in [0, 1] (ServeGen's ``reason_ratio``)."""

    values: FloatArray
    cdf: FloatArray

    def sample(self, rng: np.random.Generator, n: int) -> FloatArray:
        out: FloatArray = self.values[_draw_index(self.cdf, rng, n)]
        return out


@dataclass(frozen=True)
class WindowPdfs:
    """One 6-hour dataset window's distributions (``reason`` only in the reasoning category)."""

    input: Pdf
    output: Pdf
    reason: RatioPdf | None = None


@dataclass(frozen=True)
class ClientWindows:
    """One client's 10-minute windows, validated."""

    client: int
    path: Path
    start_s: IntArray
    count: IntArray
    pattern: tuple[str, ...]
    shape: FloatArray
    window_s: int

    @property
    def volume(self) -> int:
        return int(self.count.sum())


def is_servegen_path(path: Path) -> bool:
    """Whether ``path`` is a ServeGen client folder or one client's trace CSV."""
    if path.is_dir():
        return any(_TRACE_RE.match(p.name) for p in path.iterdir())
    return _TRACE_RE.match(path.name) is not None


def scan_servegen(path: Path, *, mapping: Mapping[str, str] | None = None, seed: int = 0) -> RawScan:
    """Generate requests from a ServeGen folder or client CSV (see the module docstring).

    Args:
        path: the folder of ``chunk-N-*`` files, or one ``chunk-N-trace.csv``.
        mapping: optional ``start_s``, ``duration_s`` (seconds of the 14-day timeline) and ``seed``.
        seed: seed of the generator (overridden by ``mapping["seed"]``).

    Raises:
        InputError: unknown mapping key, bad numbers, a malformed trace row or dataset file.
    """
    opts = dict(mapping or {})
    for key in opts:
        if key not in MAPPING_KEYS:
            raise InputError(
                f"unknown option {key!r} for servegen",
                field=key,
                expected="one of " + ", ".join(MAPPING_KEYS),
            )
    start_s = _number(opts.get("start_s", "0"), "start_s", minimum=0.0)
    duration_s = _number(opts.get("duration_s", str(DEFAULT_DURATION_S)), "duration_s", minimum=1e-9)
    seed = int(_number(opts.get("seed", str(seed)), "seed", minimum=0.0))
    folder = path if path.is_dir() else path.parent
    all_traces = sorted(
        (int(m.group(1)), p) for p in folder.iterdir() if (m := _TRACE_RE.match(p.name)) is not None
    )
    if not all_traces:
        raise InputError("no chunk-N-trace.csv files", path=str(path), expected="a ServeGen client folder")
    wanted = {c for c, p in all_traces if path.is_dir() or p.name == path.name}
    clients = {c: read_client_windows(p, c) for c, p in all_traces}
    pdf_cache: dict[int, dict[int, WindowPdfs]] = {}
    repairs: list[str] = []
    frames: list[pl.DataFrame] = []
    end_s = start_s + duration_s
    for c in sorted(wanted):
        windows = clients[c]
        source = _pdf_client(c, folder, clients, pdf_cache)
        if source != c:
            repairs.append(
                f"chunk-{c}: no token-length data; used chunk-{source}, the client closest in request volume"
            )
        pdfs = pdf_cache[source]
        rng = np.random.default_rng([seed, c])
        times, ins, outs, reasoning, fallbacks = _generate(windows, pdfs, rng, start_s, end_s)
        if fallbacks:
            repairs.append(
                f"chunk-{c}: {fallbacks} windows had no token-length data for their 6-hour window; "
                "used the nearest 6-hour window that has it"
            )
        frame = pl.DataFrame(
            {TIME: times, "input_tokens": ins, "output_tokens": outs},
            schema={TIME: pl.Float64, "input_tokens": pl.Int64, "output_tokens": pl.Int64},
        ).with_columns(tenant=pl.lit(f"chunk-{c}"))
        if (reasoning >= 0).any():
            r = pl.Series("reasoning_tokens", reasoning, dtype=pl.Int64)
            frame = frame.with_columns(pl.when(r >= 0).then(r).otherwise(None).alias("reasoning_tokens"))
        frames.append(frame)
    df = pl.concat(frames, how="diagonal").sort(TIME, maintain_order=True).with_row_index(ROW, offset=1)
    if df.height == 0:
        raise InputError(
            f"no requests between {start_s:g} s and {end_s:g} s (all rates are 0 there)",
            path=str(path),
            field="start_s",
            expected="a start_s/duration_s span where the clients send requests",
        )
    meta = TraceMeta(
        source=str(path),
        format="servegen",
        repairs=tuple(repairs),
        extra=(
            ("clients", ",".join(f"chunk-{c}" for c in sorted(wanted))),
            ("seed", str(seed)),
            ("start_s", repr(start_s)),
            ("duration_s", repr(duration_s)),
            ("window_s", str(next(iter(clients.values())).window_s)),
        ),
    )
    spec = TimeSpec("s", expected="seconds")
    return RawScan(lf=df.lazy(), meta=meta, time=spec, path=str(path))


def read_client_windows(path: Path, client: int) -> ClientWindows:
    """Read and check one ``chunk-N-trace.csv`` (no header; see the module docstring)."""
    try:
        raw = pl.read_csv(path, has_header=False, new_columns=list(_COLUMNS), infer_schema=False)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"cannot read: {str(exc).splitlines()[0]}", path=str(path)) from exc
    if raw.width != len(_COLUMNS):
        raise InputError(f"{raw.width} columns", path=str(path), expected=",".join(_COLUMNS))
    if raw.height == 0:
        raise InputError("empty file", path=str(path), expected="one row per 10-minute window")
    num = raw.select(
        [
            pl.col(c).str.strip_chars().cast(pl.Float64, strict=False)
            for c in ("window_start_s", "rate_rps", "shape")
        ]
    )
    pattern = raw["pattern"].fill_null("").str.strip_chars()
    rate = num["rate_rps"].to_numpy()
    shape = num["shape"].to_numpy()
    starts = num["window_start_s"].to_numpy()
    for i in range(raw.height):
        row = i + 1
        if not math.isfinite(starts[i]) or starts[i] < 0 or (i and starts[i] <= starts[i - 1]):
            raise InputError(
                "bad window start",
                path=str(path),
                row=row,
                field="window_start_s",
                expected="increasing seconds >= 0",
            )
        if not math.isfinite(rate[i]) or rate[i] < 0:
            raise InputError("bad rate", path=str(path), row=row, field="rate_rps", expected="a number >= 0")
        if rate[i] > 0:
            if pattern[i] not in _PATTERNS:
                raise InputError(
                    f"unknown pattern {pattern[i]!r}",
                    path=str(path),
                    row=row,
                    field="pattern",
                    expected="Gamma or Weibull",
                )
            if not math.isfinite(shape[i]) or shape[i] <= 0:
                raise InputError("bad shape", path=str(path), row=row, field="shape", expected="a number > 0")
    window_s = int(np.median(np.diff(starts))) if raw.height > 1 else 600
    return ClientWindows(
        client=client,
        path=path,
        start_s=starts.astype(np.int64),
        count=np.rint(rate * window_s).astype(np.int64),
        pattern=tuple(pattern.to_list()),
        shape=shape,
        window_s=window_s,
    )


def read_dataset(path: Path) -> dict[int, WindowPdfs]:
    """Non-empty input and output length PDFs (and the reason-ratio PDF where present) per 6-hour window
    start of a ``chunk-N-dataset.json``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            f"cannot read dataset JSON: {exc}", path=str(path), expected="a JSON object"
        ) from exc
    if not isinstance(data, dict):
        raise InputError("not a JSON object", path=str(path), expected="{window_start: {input_tokens: ...}}")
    out: dict[int, WindowPdfs] = {}
    for key, entry in data.items():
        try:
            start = int(key)
        except ValueError as exc:
            raise InputError(
                f"bad window key {key!r}", path=str(path), field=key, expected="seconds"
            ) from exc
        if not isinstance(entry, dict):
            raise InputError(
                "window entry is not an object",
                path=str(path),
                field=key,
                expected="{input_tokens: ..., output_tokens: ...}",
            )
        pdfs = [
            _parse_pdf(entry.get(name), path, f"{key}.{name}") for name in ("input_tokens", "output_tokens")
        ]
        if pdfs[0] is not None and pdfs[1] is not None:
            out[start] = WindowPdfs(pdfs[0], pdfs[1], _parse_ratio_pdf(entry.get("reason_ratio"), path,
                                                                       f"{key}.reason_ratio"))
    return out


def _parse_ratio_pdf(text: object, path: Path, where: str) -> RatioPdf | None:
    """A ``"{ratio: prob, ...}"`` PDF over [0, 1] (None when absent or empty)."""
    if text is None or (isinstance(text, str) and not text.strip("{} \n")):
        return None
    if not isinstance(text, str):
        raise InputError("PDF is not a string", path=str(path), field=where, expected='"{ratio: prob, ...}"')
    try:
        pairs = [(float(a), float(b)) for a, b in _RATIO_RE.findall(text)]
    except ValueError:
        pairs = []
    values = np.array([a for a, _ in pairs], dtype=np.float64)
    probs = np.array([b for _, b in pairs], dtype=np.float64)
    if (not pairs or not np.isfinite(values).all() or (values < 0).any() or (values > 1).any()
            or not np.isfinite(probs).all() or (probs < 0).any() or probs.sum() <= 0):
        raise InputError("bad reason-ratio PDF", path=str(path), field=where,
                         expected="ratios in [0, 1] with probabilities >= 0 summing to > 0")
    order = np.argsort(values, kind="stable")
    return RatioPdf(values=values[order], cdf=np.cumsum(probs[order]))


def _parse_pdf(text: object, path: Path, where: str) -> Pdf | None:
    if text is None or (isinstance(text, str) and not text.strip("{} \n")):
        return None
    if not isinstance(text, str):
        raise InputError("PDF is not a string", path=str(path), field=where, expected='"{len: prob, ...}"')
    pairs = _PAIR_RE.findall(text)
    lengths = np.array([int(a) for a, _ in pairs], dtype=np.int64)
    probs = np.array([float(b) for _, b in pairs], dtype=np.float64)
    if (
        not len(pairs)
        or (lengths < 0).any()
        or not np.isfinite(probs).all()
        or (probs < 0).any()
        or probs.sum() <= 0
    ):
        raise InputError(
            "bad length PDF",
            path=str(path),
            field=where,
            expected="lengths >= 0 with probabilities >= 0 summing to > 0",
        )
    order = np.argsort(lengths, kind="stable")
    return Pdf(lengths=lengths[order], cdf=np.cumsum(probs[order]))


def _pdf_client(
    client: int,
    folder: Path,
    clients: Mapping[int, ClientWindows],
    cache: dict[int, dict[int, WindowPdfs]],
) -> int:
    """The client whose PDFs ``client`` uses: itself, or the one closest in volume that has data."""

    def load(c: int) -> dict[int, WindowPdfs]:
        if c not in cache:
            ds = folder / f"chunk-{c}-dataset.json"
            cache[c] = read_dataset(ds) if ds.is_file() else {}
        return cache[c]

    if load(client):
        return client
    target = math.log1p(clients[client].volume)
    for c in sorted(clients, key=lambda k: (abs(math.log1p(clients[k].volume) - target), k)):
        if c != client and load(c):
            return c
    raise InputError(
        "no client in the folder has token-length data",
        path=str(folder),
        expected="at least one non-empty chunk-N-dataset.json",
    )


def _generate(
    w: ClientWindows,
    pdfs: Mapping[int, WindowPdfs],
    rng: np.random.Generator,
    start_s: float,
    end_s: float,
) -> tuple[FloatArray, IntArray, IntArray, IntArray, int]:
    """Arrivals, input and output lengths, reasoning tokens (-1: no reason PDF) and the fallback count."""
    keys = np.array(sorted(pdfs), dtype=np.int64)
    times: list[FloatArray] = []
    ins: list[IntArray] = []
    outs: list[IntArray] = []
    reasons: list[IntArray] = []
    fallbacks = 0
    for i in range(len(w.start_s)):
        n = int(w.count[i])
        lo = float(w.start_s[i])
        if n == 0 or lo >= end_s or lo + w.window_s <= start_s:  # nothing in [start_s, end_s)
            continue
        log_gaps = _log_gaps(rng, w.pattern[i], float(w.shape[i]), n + 1)
        top = log_gaps.max()
        gaps = np.exp(log_gaps - top) if np.isfinite(top) else np.ones(n + 1)
        cum = np.cumsum(gaps)
        hi = lo + w.window_s
        # A dominant early gap pushes later arrivals to the window's end; keep them inside it.
        t = np.minimum(lo + w.window_s * (cum[:n] / cum[-1]), np.nextafter(hi, lo))
        key, fell_back = _dataset_key(keys, int(w.start_s[i]))
        fallbacks += fell_back
        window = pdfs[key]
        keep = (t >= start_s) & (t < end_s)
        times.append(t[keep])
        ins.append(window.input.sample(rng, n)[keep])
        out = window.output.sample(rng, n)
        outs.append(out[keep])
        if window.reason is None:
            reasons.append(np.full(int(keep.sum()), -1, dtype=np.int64))
        else:
            reasons.append(np.rint(window.reason.sample(rng, n) * out).astype(np.int64)[keep])
    empty_f = np.empty(0, dtype=np.float64)
    empty_i = np.empty(0, dtype=np.int64)
    return (
        np.concatenate(times) if times else empty_f,
        np.concatenate(ins) if ins else empty_i,
        np.concatenate(outs) if outs else empty_i,
        np.concatenate(reasons) if reasons else empty_i,
        fallbacks,
    )


def _log_gaps(rng: np.random.Generator, pattern: str, shape: float, n: int) -> FloatArray:
    """Logs of ``n`` unit-scale renewal gaps with the given shape, exact for tiny shapes."""
    if pattern == "Weibull":
        # X = E**(1/k) with E ~ Exp(1).
        return np.log(rng.standard_exponential(n)) / shape
    # Gamma(a) = Gamma(a + 1) * U**(1/a), which stays representable for a << 1.
    return np.log(rng.standard_gamma(shape + 1.0, n)) + np.log(rng.random(n)) / shape


def _dataset_key(keys: IntArray, window_start: int) -> tuple[int, int]:
    """The 6-hour dataset window of ``window_start``, or the nearest one with data (and 1 if fell back)."""
    own = window_start - window_start % DATASET_WINDOW_S
    pos = int(np.searchsorted(keys, own))
    if pos < len(keys) and keys[pos] == own:
        return own, 0
    candidates = [int(keys[j]) for j in (pos - 1, pos) if 0 <= j < len(keys)]
    best = min(candidates, key=lambda k: (abs(k - own), k))
    return best, 1


def _number(text: str, name: str, *, minimum: float) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise InputError(f"not a number: {text!r}", field=name, expected=f"a number >= {minimum:g}") from exc
    if not math.isfinite(value) or value < minimum:
        raise InputError(f"out of range: {text!r}", field=name, expected=f"a number >= {minimum:g}")
    return value


def collection_holes(clients: Mapping[int, ClientWindows]) -> tuple[tuple[int, int], ...]:
    """Runs of windows in which *every* client reports no request, with traffic before and after them:
    ``(first window start, end)`` in seconds, end exclusive.

    Why: in ``m-small`` the whole region goes from about 800-2,000 req/s to nothing for 10 to 70 minutes
    and back to the same rate, twelve times in 14 days (370 minutes), always on window boundaries. Those
    are gaps in the published statistics, not outages: a replay that takes them literally lets every
    autoscaler drain to its minimum and then hits it with the full load at once, and charges the minutes
    after each gap to the autoscaler.

    >>> w = lambda c, counts: ClientWindows(c, Path("x"), np.arange(len(counts), dtype=np.int64) * 600,
    ...     np.asarray(counts, dtype=np.int64), ("Gamma",) * len(counts), np.ones(len(counts)), 600)
    >>> collection_holes({0: w(0, [0, 5, 0, 0, 4, 0]), 1: w(1, [0, 3, 0, 0, 0, 0])})
    ((1200, 2400),)
    """
    total: dict[int, int] = {}
    for w in clients.values():
        for s, n in zip(w.start_s.tolist(), w.count.tolist(), strict=True):
            total[s] = total.get(s, 0) + n
    starts = sorted(total)
    busy = [i for i, s in enumerate(starts) if total[s] > 0]
    holes: list[tuple[int, int]] = []
    for a, b in itertools.pairwise(busy):
        if b > a + 1:
            holes.append((starts[a + 1], starts[b]))
    return tuple(holes)


def fill_holes(clients: Mapping[int, ClientWindows],
               holes: tuple[tuple[int, int], ...]) -> dict[int, ClientWindows]:
    """Each client's windows with every hole of :func:`collection_holes` filled from its neighbours.

    A window inside a hole gets the client's count interpolated linearly between the window just before
    the hole and the one just after it, and the renewal shape of the nearer of the two that has traffic
    (a client silent on both sides stays silent). What the published data would have said is unknown;
    this assumes only that the load moved smoothly across the gap, as it does around it.

    >>> w = ClientWindows(0, Path("x"), np.arange(5, dtype=np.int64) * 600, np.array([0, 6, 0, 0, 12]),
    ...     ("", "Gamma", "", "", "Weibull"), np.array([np.nan, 0.5, np.nan, np.nan, 2.0]), 600)
    >>> f = fill_holes({0: w}, collection_holes({0: w}))[0]
    >>> f.count.tolist(), f.pattern, f.shape.tolist()[2:4]
    ([0, 6, 8, 10, 12], ('', 'Gamma', 'Gamma', 'Weibull', 'Weibull'), [0.5, 2.0])
    """
    out: dict[int, ClientWindows] = {}
    for c, w in clients.items():
        count = w.count.copy()
        pattern = list(w.pattern)
        shape = w.shape.copy()
        for lo, hi in holes:
            i0 = int(np.searchsorted(w.start_s, lo))
            i1 = int(np.searchsorted(w.start_s, hi))  # first window after the hole
            if i0 == 0 or i1 >= w.start_s.size or i1 <= i0:
                continue
            before, after = i0 - 1, i1
            span = float(w.start_s[after] - w.start_s[before])
            for i in range(i0, i1):
                x = float(w.start_s[i] - w.start_s[before]) / span
                count[i] = round((1.0 - x) * float(w.count[before]) + x * float(w.count[after]))
                near = [j for j in ((before, after) if x <= 0.5 else (after, before)) if w.count[j] > 0]
                if count[i] > 0 and near:
                    pattern[i], shape[i] = w.pattern[near[0]], w.shape[near[0]]
                else:
                    count[i] = 0
        out[c] = ClientWindows(w.client, w.path, w.start_s, count, tuple(pattern), shape, w.window_s)
    return out
