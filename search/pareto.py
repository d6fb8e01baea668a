"""Pareto front of evaluated candidates: maximize accuracy, minimize a cost (latency or FLOPs).

Pure numpy. A point is on the front when no other point is at least as accurate and at most as costly
while being better in one of the two. Ties are handled stably: of several identical (accuracy, cost)
points only the first (lowest index, i.e. the first evaluated) is kept, so a front never lists the same
trade-off twice and is the same on every run.
"""

from __future__ import annotations

import numpy as np


def pareto_front(accuracy: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Indices of the front, ordered by increasing cost (and so increasing accuracy)."""
    acc = np.asarray(accuracy, dtype=float)
    cost = np.asarray(cost, dtype=float)
    if acc.shape != cost.shape or acc.ndim != 1:
        raise ValueError(f"accuracy and cost must be 1-D of the same length, got {acc.shape} and {cost.shape}")
    if len(acc) == 0:
        return np.zeros(0, dtype=np.int64)
    # Cheapest first; at equal cost the most accurate first; at full ties the lowest index first.
    order = np.lexsort((np.arange(len(acc)), -acc, cost))
    front = []
    best = -np.inf
    for i in order:
        if acc[i] > best:  # strictly better than everything cheaper or equally cheap seen so far
            front.append(i)
            best = acc[i]
    return np.array(front, dtype=np.int64)
