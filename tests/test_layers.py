"""The import-layer contract (issue 18; ``../shared/design/ARCHITECTURE.md``), read from the source.

Every ``import`` in the shipped packages, module level or inside a function, is an edge between two
groups (``traces``, ``dashboards``, and each subpackage of ``planner`` and ``solvers``). The groups sit
in layers; an edge may only point to the same or a lower layer, and the group graph has no cycle. There
are no exceptions (the last ones, solvers importing the simulator, went in session 9).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("traces", "planner", "solvers", "dashboards")

LAYERS: dict[str, int] = {
    # 0: data and its schema
    "traces": 0,
    # 1: what everything else is described in: catalog, contracts, status, runtime helpers
    "planner.catalog": 1, "planner.contracts": 1, "planner.numba_cache": 1, "planner.ray_runtime": 1,
    "solvers.status": 1, "solvers.budget": 1, "planner.profile": 1,
    # 2: the per-node model
    "planner.perf": 2,
    # 3: simulator and power-capping policies (the simulator runs them in its loop)
    "planner.power": 3, "planner.sim": 3,
    # 4: solvers: OR-Tools models over frozen problems
    "solvers.capacity": 4, "solvers.experts": 4, "solvers.scaling": 4, "solvers.power": 4,
    # 5: the application layer: plan, autoscaling comparison, power study, live controller
    "planner.plan": 5, "planner.autoscale": 5, "planner.live": 5, "planner.power_study": 5,
    "planner.bench": 5, "planner.tier_study": 5, "planner.spares_study": 5,
    # 6: surfaces
    "planner.cli": 6, "dashboards": 6, "planner": 6,
}

SOLVER_MAY_IMPORT = {"traces", "planner.catalog", "planner.contracts", "planner.perf", "solvers.status",
                     "solvers.budget", "planner.numba_cache"}
"""Solvers are pure models: catalog and perf types at most, never a replay."""

def _group(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    if parts[0] in ("traces", "dashboards") or len(parts) == 1:
        return parts[0]
    return ".".join(parts[:2])


def _edges() -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    for pkg in PACKAGES:
        for f in sorted((REPO / pkg).rglob("*.py")):
            rel = f.relative_to(REPO).with_suffix("")
            parts = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
            src = _group(".".join(parts))
            for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                for n in names:
                    dst = _group(n)
                    if src and dst and dst != src:
                        out[(src, dst)].append(f"{rel}:{node.lineno}")
    return out


def test_every_group_has_a_layer() -> None:
    groups = {g for e in _edges() for g in e}
    assert groups <= set(LAYERS), sorted(groups - set(LAYERS))


def test_no_import_points_up_a_layer() -> None:
    bad = {e: where for e, where in _edges().items()
           if LAYERS[e[1]] > LAYERS[e[0]]}
    assert not bad, bad


def test_solvers_import_only_catalog_and_perf_types() -> None:
    bad = {e: where for e, where in _edges().items()
           if e[0].startswith("solvers.") and not e[1].startswith("solvers.")
           and e[1] not in SOLVER_MAY_IMPORT}
    assert not bad, bad


def test_the_group_graph_has_no_cycle() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in _edges():
        graph[a].add(b)
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        path.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(m):], m]))
            if m not in state:
                visit(m)
        path.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
