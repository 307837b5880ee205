"""Start-up as users feel it: whole-process wall time of ``fleetwise`` command lines, each run the way the
console script runs it (a command line that names a verb imports only that verb's module) and, side by
side in the same run, with every verb's module imported first (how every command started before).

Why whole processes: what a user waits for is interpreter start, imports, numba's cached loop loading and
the first output; timing inside one process would hide all but the last. Runs alternate between the two
ways and the median of ``repeats`` is kept, since this machine is shared and noisy.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

LAZY = "import sys; from planner.cli.main import main; sys.exit(main(sys.argv[1:]))"
EAGER = ("import sys, importlib; from planner.cli.main import VERB_MODULES, main; "
         "[importlib.import_module(m) for m in VERB_MODULES]; sys.exit(main(sys.argv[1:]))")

REPLAY_100 = ("replay", "--replicas", "1", "--duration-s", "18")
"""About 100 requests of the bundled hour (5.5 req/s) through one replica."""


@dataclass(frozen=True)
class StartupRow:
    """One command line: median wall seconds as run, and with every verb imported first."""

    command: str
    seconds: float
    eager_seconds: float
    returncode: int

    @property
    def ratio(self) -> float:
        """How many times faster than with every verb imported."""
        return self.eager_seconds / self.seconds if self.seconds > 0 else float("nan")


def _wall(code: str, args: Sequence[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, check=False)
    return time.perf_counter() - t0, out.returncode


def measure(commands: Sequence[Sequence[str]], *, repeats: int = 3) -> list[StartupRow]:
    """Median wall time of each command line both ways, the two runs alternating."""
    rows = []
    for args in commands:
        lazy: list[float] = []
        eager: list[float] = []
        code = 0
        for _ in range(max(1, repeats)):
            t, code = _wall(LAZY, args)
            lazy.append(t)
            eager.append(_wall(EAGER, args)[0])
        rows.append(StartupRow(command="fleetwise " + " ".join(args), seconds=statistics.median(lazy),
                               eager_seconds=statistics.median(eager), returncode=code))
    return rows
