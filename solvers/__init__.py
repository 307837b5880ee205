"""OR-Tools optimizers: each is a pure ``solve(problem) -> solution`` over frozen dataclasses."""
