"""Run a function over the layers of one solve: in this process, or in a fork pool kept for every
phase of the solve (workers inherit the compiled kernels)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")


class Serial:
    """Run a function over items in this process."""

    workers = 1

    def __call__(self, fn: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
        return [fn(i) for i in items]


@dataclass(frozen=True)
class Pooled:
    """Run a function over items in a process pool kept for every phase of one solve."""

    pool: ProcessPoolExecutor
    workers: int

    def __call__(self, fn: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
        return list(self.pool.map(fn, items))


@contextmanager
def mapper(processes: int) -> Iterator[Serial | Pooled]:
    """In-process for one process; else a fork pool (workers inherit the compiled kernels)."""
    if processes == 1:
        yield Serial()
        return
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as pool:
        yield Pooled(pool, processes)
