"""Unique points: greedy clustering within a tolerance (a k-d tree, O(N log N)), and
FixedPointFinder's distance-outlier rule."""

from __future__ import annotations

import numpy as np


def _greedy_leaders(pts: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy clustering of ``pts`` (already in priority order) with a k-d tree: returns the
    leader positions and, for every point, the position of its leader."""
    from scipy.spatial import cKDTree

    owner = np.full(pts.shape[0], -1, np.int64)
    leaders: list[int] = []
    if pts.shape[0] == 0:
        return np.zeros(0, np.int64), owner
    tree = cKDTree(pts)
    for j in range(pts.shape[0]):
        if owner[j] >= 0:
            continue
        leaders.append(j)
        near = np.asarray(tree.query_ball_point(pts[j], tol), dtype=np.int64)
        near = near[owner[near] < 0]
        owner[near] = j
    return np.asarray(leaders, np.int64), owner


def _cluster(
    x: np.ndarray, q: np.ndarray, converged: np.ndarray, counts: np.ndarray, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Indices kept by :meth:`FixedPoints.unique` and the summed ``counts`` of their clusters."""
    from scipy.spatial import cKDTree

    x = np.asarray(x)
    q = np.asarray(q)
    counts = np.asarray(counts, np.int64)
    ok = np.isfinite(q) & np.all(np.isfinite(x), axis=1)
    keep: list[np.ndarray] = []
    sums: list[np.ndarray] = []
    fixed = np.flatnonzero(ok & converged)
    fixed = fixed[np.argsort(q[fixed], kind="stable")]
    lead, owner = _greedy_leaders(x[fixed], tol)
    fixed_sum = np.zeros(lead.size, np.int64)
    if fixed.size:
        slot = np.searchsorted(lead, owner)  # owners are leaders; leaders are ascending
        np.add.at(fixed_sum, slot, counts[fixed])
    slow = np.flatnonzero(ok & ~converged)
    slow = slow[np.argsort(q[slow], kind="stable")]
    if slow.size and lead.size:
        dist, nearest = cKDTree(x[fixed[lead]]).query(x[slow], distance_upper_bound=tol)
        onto = np.isfinite(dist) & (dist <= tol)
        np.add.at(fixed_sum, nearest[onto], counts[slow[onto]])
        slow = slow[~onto]
    keep.append(fixed[lead])
    sums.append(fixed_sum)
    lead_s, owner_s = _greedy_leaders(x[slow], tol)
    slow_sum = np.zeros(lead_s.size, np.int64)
    if slow.size:
        np.add.at(slow_sum, np.searchsorted(lead_s, owner_s), counts[slow])
    keep.append(slow[lead_s])
    sums.append(slow_sum)
    return np.concatenate(keep).astype(np.int64), np.concatenate(sums)


def _outlier_mask(x: np.ndarray, x_init: np.ndarray, scale: float) -> np.ndarray:
    """FixedPointFinder's rule: keep ``‖x − c‖ <= scale · mean_i ‖x_init_i − c‖``, ``c`` the
    centroid of the (finite) starts."""
    starts = x_init[np.all(np.isfinite(x_init), axis=1)]
    if starts.shape[0] == 0:
        return np.zeros(x.shape[0], bool)
    centroid = starts.mean(axis=0)
    mean_dist = np.linalg.norm(starts - centroid, axis=1).mean()
    dist = np.linalg.norm(x - centroid, axis=1)
    if mean_dist <= 1e-12 * (1.0 + np.linalg.norm(centroid)):  # all starts (nearly) equal
        return np.isfinite(dist)
    return dist <= scale * mean_dist


