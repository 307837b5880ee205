"""One module per dashboard page; each has ``render(inputs)`` and calls the library through
:mod:`dashboards.cache` only."""
