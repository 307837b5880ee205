"""Property tests: malformed input of any shape gives a valid trace or a located InputError, nothing else."""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from traces.errors import InputError
from traces.load import load_trace
from traces.power import load_power_trace

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

tokens = st.one_of(
    st.integers(min_value=-5, max_value=5000).map(str),
    st.sampled_from(["", "NaN", "inf", "-inf", "1.5", "abc", "1e3", " 7 ", '"3"', "99999999999", "0"]),
)
stamps = st.one_of(
    st.builds(
        lambda s, us: f"2024-05-10 00:{s // 60:02d}:{s % 60:02d}" + (f".{us:06d}" if us else "") + "+00:00",
        st.integers(0, 3599),
        st.integers(0, 999_999),
    ),
    st.sampled_from(["", "2024-05-10", "garbage", "2024-13-40 99:99:99+00:00", "2024-05-10 00:00:00"]),
)
extra_cells = st.lists(st.sampled_from(["x", "", "1"]), max_size=2)


def _run(text: bytes, name: str = "t.csv", **kwargs: object) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(text)
        try:
            trace = load_trace(path, **kwargs)  # type: ignore[arg-type]
        except InputError as err:
            assert str(err)  # a one-line message, located where the format allows
            assert err.path is None or err.path == str(path) or err.field is not None
            return
        df = trace.df
        assert df.height >= 1
        assert df["arrival_s"][0] == 0.0 and df["arrival_s"].is_sorted()
        assert df.schema["input_tokens"] == pl.Int32 and df["output_tokens"].min() >= 1  # type: ignore[operator]
        dropped_noted = any("output_tokens == 0" in r for r in trace.meta.repairs)
        assert (trace.meta.dropped_rows > 0) == dropped_noted


@SETTINGS
@given(st.lists(st.tuples(stamps, tokens, tokens, extra_cells), min_size=0, max_size=12))
def test_azure_rows(rows: list[tuple[str, str, str, list[str]]]) -> None:
    lines = [",".join([t, i, o, *extra]) for t, i, o, extra in rows]
    _run(("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(lines) + "\n").encode())


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.one_of(st.floats(allow_nan=True).map(str), tokens),
            tokens,
            tokens,
            st.sampled_from(["GPT-4", ""]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_burstgpt_rows(rows: list[tuple[str, str, str, str]]) -> None:
    head = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
    lines = [f"{t},{m},{i},{o},0,API log" for t, i, o, m in rows]
    _run((head + "\n".join(lines) + "\n").encode())


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_a_header(blob: bytes) -> None:
    _run(b"TIMESTAMP,ContextTokens,GeneratedTokens\n" + blob)


@SETTINGS
@given(st.text(max_size=200))
def test_arbitrary_text_with_mapping(text: str) -> None:
    _run(
        ("ts,a,b\n" + text).encode("utf-8", "surrogatepass"),
        mapping={"arrival_s": "ts", "input_tokens": "a", "output_tokens": "b", "time_unit": "ms"},
    )


@SETTINGS
@given(st.text(max_size=200))
def test_arbitrary_jsonl(text: str) -> None:
    _run(text.encode("utf-8", "surrogatepass"), name="t.jsonl", format="mooncake")


@SETTINGS
@given(
    st.lists(st.tuples(tokens, st.sampled_from(["gpu", "rack", "GPU", "x", ""]), st.text(max_size=3), tokens))
)
def test_power_rows(rows: list[tuple[str, str, str, str]]) -> None:
    lines = [",".join(r).replace("\n", " ").replace("\r", " ") for r in rows]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.csv"
        path.write_text(
            "t_s,scope,id,power_w\n" + "\n".join(lines) + "\n", encoding="utf-8", errors="replace"
        )
        try:
            df = load_power_trace(path)
        except InputError:
            return
        assert df["power_w"].min() >= 0  # type: ignore[operator]
        assert df["t_s"].is_sorted()
