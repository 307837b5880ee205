"""The dashboard's job runner: results, progress, errors as data, and cancellation that kills the child."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from dashboards.jobs import JobFailedError, JobProgress, _double, _sleep, run_job
from traces.errors import InputError


def _children() -> list[str]:
    return [p.name for p in mp.active_children() if p.name.startswith("fleetwise-")]


def test_result_and_progress_come_back() -> None:
    seen: list[JobProgress] = []
    assert run_job(_sleep, (0.6,), on_progress=seen.append, poll_s=0.05) == pytest.approx(0.6, abs=0.06)
    fractions = [p.fraction for p in seen if p.fraction is not None]
    assert fractions and fractions == sorted(fractions) and 0 < fractions[-1] <= 1.0
    assert any(p.text.startswith("slept ") for p in seen)
    assert not _children()


def test_input_error_keeps_the_librarys_message() -> None:
    with pytest.raises(InputError) as err:
        run_job(_double, (-3,))
    assert str(err.value) == "field x: x is -3 (expected a number >= 0)"


def test_a_bug_in_the_job_is_reported_with_its_traceback() -> None:
    with pytest.raises(JobFailedError) as err:
        run_job(_double, (None,))
    assert err.value.kind == "TypeError"
    assert "Traceback" in err.value.detail and "_double" in err.value.detail


def test_raising_from_on_progress_terminates_the_child_at_once() -> None:
    class Stop(BaseException):  # like Streamlit's StopException, not an Exception
        pass

    calls = 0

    def stop_soon(_: JobProgress) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise Stop

    t0 = time.monotonic()
    with pytest.raises(Stop):
        run_job(_sleep, (60.0,), on_progress=stop_soon, poll_s=0.05)
    assert time.monotonic() - t0 < 10.0  # not the 60 s the job would take
    assert not _children()
