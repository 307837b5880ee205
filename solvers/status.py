"""Solver status as data, shared by every OR-Tools model in :mod:`solvers`.

A plan carries how it was obtained (house style: status is data, nothing is printed): CP-SAT's own
outcome under OR-Tools' names, or ``GREEDY`` when the greedy baseline answered alone (no solution from
CP-SAT in time, or the model was not run).
"""

from __future__ import annotations

from enum import StrEnum


class SolveStatus(StrEnum):
    """CP-SAT's statuses (OR-Tools names); ``GREEDY`` when only the baseline answered."""

    OPTIMAL = "OPTIMAL"
    FEASIBLE = "FEASIBLE"
    INFEASIBLE = "INFEASIBLE"
    UNKNOWN = "UNKNOWN"
    MODEL_INVALID = "MODEL_INVALID"
    GREEDY = "GREEDY"


def from_cpsat(code: object) -> SolveStatus:
    """Map a ``CpSolver.solve`` return code onto :class:`SolveStatus` (unknown codes: ``UNKNOWN``).

    >>> from ortools.sat.python import cp_model
    >>> from_cpsat(cp_model.OPTIMAL)
    <SolveStatus.OPTIMAL: 'OPTIMAL'>
    """
    from ortools.sat.python import cp_model  # imported here: OR-Tools costs every command's start-up

    known = {cp_model.OPTIMAL: SolveStatus.OPTIMAL, cp_model.FEASIBLE: SolveStatus.FEASIBLE,
             cp_model.INFEASIBLE: SolveStatus.INFEASIBLE, cp_model.UNKNOWN: SolveStatus.UNKNOWN,
             cp_model.MODEL_INVALID: SolveStatus.MODEL_INVALID}
    status: SolveStatus = known.get(code, SolveStatus.UNKNOWN)  # type: ignore[call-overload]
    return status
