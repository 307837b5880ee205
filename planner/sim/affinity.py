"""The key a prefix-affinity router hashes a request by: the shortest prefix of its prompt that is not a
hot spot.

Why not the first block: real traffic shares its first block widely (a common system prompt). Keyed on
it, every request hashes to the same two candidate replicas and the fleet collapses onto them (the issue
that motivated this: 37,405 preemptions with 2 of 16 replicas busy on a Mooncake-style trace). Keyed on
the first block that fewer than ``2/R`` of the requests so far have shared (R replicas: more than that
would be more than its two candidates can carry), requests that share a long prefix still meet on the
same replicas, and a prefix everyone shares spreads out. The count is causal (only requests that arrived
before), as a router that learns popularity online would see it; a request whose every block is hot is
keyed by its last block.

>>> import numpy as np
>>> shared = np.array([7, 1, 7, 2, 7, 3, 7, 1], dtype=np.uint64)  # four 2-block prompts, one first block
>>> keys = affinity_blocks(shared, np.array([0, 2, 4, 6, 8]), replicas=4)
>>> keys.tolist()  # the first is alone so far; then block 7 is hot and the second block decides
[7, 2, 3, 1]
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

U64 = NDArray[np.uint64]
I64 = NDArray[np.int64]


def hot_blocks(hashes: U64, offsets: I64, *, replicas: int) -> I64:
    """Per request (``hashes[offsets[i]:offsets[i + 1]]`` its blocks, in arrival order): how many of its
    leading blocks are hot spots (shared by more than ``2/R`` of the requests before it); a request whose
    every block is hot counts all but its last.

    >>> hot_blocks(np.array([7, 1, 7, 2, 7, 3], dtype=np.uint64), np.array([0, 2, 4, 6]), replicas=4).tolist()
    [0, 1, 1]
    """
    n = offsets.size - 1
    out = np.zeros(n, dtype=np.int64)
    seen: dict[int, int] = {}
    share = 2.0 / max(replicas, 1)
    for i in range(n):
        lo, hi = int(offsets[i]), int(offsets[i + 1])
        if hi <= lo:
            continue
        blocks = hashes[lo:hi].tolist()
        limit = share * i
        k = len(blocks) - 1
        for j, h in enumerate(blocks):
            if seen.get(h, 0) <= limit:
                k = j
                break
        out[i] = k
        for h in blocks:
            seen[h] = seen.get(h, 0) + 1
    return out


def affinity_blocks(hashes: U64, offsets: I64, *, replicas: int) -> U64:
    """Per request: the block hash to key it by, its first block that is not a hot spot (see the module
    docstring); 0 for a request without blocks."""
    hot = hot_blocks(hashes, offsets, replicas=replicas)
    has = offsets[1:] > offsets[:-1]
    out = np.zeros(offsets.size - 1, dtype=np.uint64)
    out[has] = hashes[offsets[:-1][has] + hot[has]]
    return out
