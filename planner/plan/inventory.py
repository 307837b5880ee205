"""GPU inventory as a user writes it (``GPU=COUNT``), for every surface that takes one."""

from __future__ import annotations

from traces.errors import InputError


def parse_inventory(items: list[str], known: set[str]) -> tuple[tuple[str, int], ...]:
    """``NAME=COUNT`` items to ``((name, count), ...)``.

    Raises:
        InputError: malformed item, unknown GPU or negative count.

    >>> parse_inventory(["H100-SXM=16"], {"H100-SXM"})
    (('H100-SXM', 16),)
    """
    out: list[tuple[str, int]] = []
    for item in items:
        name, sep, count = item.partition("=")
        if not sep or not count.strip().isdigit():
            raise InputError(f"bad inventory item {item!r}", field="--inventory",
                             expected="GPU=COUNT, e.g. H100-SXM=16")
        if name.strip() not in known:
            raise InputError(f"inventory names GPU {name.strip()!r}, which is not planned",
                             field="--inventory", expected=f"one of {', '.join(sorted(known))}")
        out.append((name.strip(), int(count)))
    return tuple(out)
