"""3D object clusters from per-point instance labels: for every instance its points, centroid,
an oriented box (yaw from the principal axis of the points' footprint on the ground), point
count and score. Points that a mask claims but that lie far behind (or in front of) the object's
median range are background seen through the mask's edge and are removed first (`depth_gate`).
Vectorised over all points and instances at once (segment sums, no loop over objects' points).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Object3D:
    id: int
    centroid: np.ndarray          # (3,) mean of the points, LiDAR frame
    center: np.ndarray            # (3,) box centre
    size: np.ndarray              # (3,) length (along yaw), width, height
    yaw: float                    # radians, about z, in the LiDAR frame
    num_points: int
    score: float
    point_index: np.ndarray = field(repr=False)   # (M,) indices into the input cloud


def group_median(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """(n,) lower median of `values` (>= 0) per label 0..n-1 (NaN where a label has none): one argsort
    of label + value / (max + 1), which orders by label, then value."""
    order = np.argsort(labels + values / (values.max(initial=0.0) * 1.001 + 1e-9))
    counts = np.bincount(labels, minlength=n)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    mid = np.where(counts > 0, starts + (counts - 1) // 2, 0)
    return np.where(counts > 0, values[order][np.minimum(mid, len(values) - 1)] if len(values) else 0, np.nan)


def depth_gate_grid(grid: np.ndarray, depth: np.ndarray, valid: np.ndarray, gate: float) -> np.ndarray:
    """The point gate of `cluster_objects` on a grid of instance ids: grid (h, w) ids (0 =
    background), depth (h, w) metres of the LiDAR return in each cell, valid (h, w) bool (the cell
    holds a return) -> a copy with every cell whose return lies more than `gate` metres from its
    instance's median range (`group_median` over the instance's cells with returns) given to the
    background: a mask on a coarse grid spills over the road and the walls around a small object,
    and the scan says where the object ends. Cells without a return keep their id (far objects
    have gaps between the beams). `gate` 0: the grid unchanged."""
    grid = np.asarray(grid)
    if grid.shape != depth.shape or grid.shape != valid.shape:
        raise ValueError(f"grid {grid.shape}, depth {depth.shape} and valid {valid.shape} must match")
    sel = (grid > 0) & valid
    if gate <= 0 or not sel.any():
        return grid.copy()
    lab, r = grid[sel].astype(np.int64), depth[sel]
    far = np.abs(r - group_median(r, lab, int(lab.max()) + 1)[lab]) > gate
    out = grid.copy()
    out[sel] = np.where(far, 0, lab)
    return out


def cluster_objects(points: np.ndarray, labels: np.ndarray, scores: dict | None = None, min_points: int = 5,
                    depth_gate: float = 3.0) -> tuple[list[Object3D], np.ndarray]:
    """points (N, >=3) LiDAR frame, labels (N,) instance ids (0 = none). Returns the objects with at
    least `min_points` points (sorted by id) and the cleaned labels: points farther than
    `depth_gate` metres from their instance's median range and objects too small set to 0.
    Only the labelled points are touched after the first pass."""
    labels = np.asarray(labels)
    if labels.size and labels.min() < 0:
        raise ValueError(f"instance labels must be >= 0, got {labels.min()}")
    out = np.zeros(labels.shape, np.int64)
    fg = np.flatnonzero(labels)                                                   # (M,) labelled points
    ids = np.concatenate([[0], np.unique(labels[fg])]).astype(np.int64)          # sorted, 0 first
    lab = np.searchsorted(ids, labels[fg])                                        # (M,) compact 1..n-1
    p = np.asarray(points)[fg, :3].astype(np.float64)                             # (M, 3)
    n = len(ids)
    keep = np.ones(len(fg), bool)
    if depth_gate > 0 and len(fg):
        r = np.linalg.norm(p, axis=1)
        keep = np.abs(r - group_median(r, lab, n)[lab]) <= depth_gate            # background behind the mask's edge
    small = np.bincount(lab[keep], minlength=n) < min_points
    keep &= ~small[lab]
    fg, lab, p = fg[keep], lab[keep], p[keep]
    if fg.size == 0:
        return [], out
    out[fg] = ids[lab]
    cnt = np.bincount(lab, minlength=n).astype(np.float64)
    c = np.maximum(cnt, 1)
    mean = np.stack([np.bincount(lab, p[:, k], n) for k in range(3)], 1) / c[:, None]        # (n, 3)
    d = p[:, :2] - mean[lab, :2]
    sxx, syy, sxy = (np.bincount(lab, v, n) / c for v in (d[:, 0] ** 2, d[:, 1] ** 2, d[:, 0] * d[:, 1]))
    yaw = 0.5 * np.arctan2(2 * sxy, sxx - syy)                                                  # principal axis
    cy, sy = np.cos(yaw)[lab], np.sin(yaw)[lab]
    u, v = d[:, 0] * cy + d[:, 1] * sy, -d[:, 0] * sy + d[:, 1] * cy                           # box frame
    lo = np.full((n, 3), np.inf)
    hi = np.full((n, 3), -np.inf)
    for k, vals in enumerate((u, v, p[:, 2])):
        np.minimum.at(lo[:, k], lab, vals)
        np.maximum.at(hi[:, k], lab, vals)
    lo[cnt == 0], hi[cnt == 0] = 0.0, 0.0                                                      # absent ids
    size = hi - lo
    mid_u, mid_v = (lo[:, 0] + hi[:, 0]) / 2, (lo[:, 1] + hi[:, 1]) / 2
    cyaw, syaw = np.cos(yaw), np.sin(yaw)
    center = np.stack([mean[:, 0] + mid_u * cyaw - mid_v * syaw, mean[:, 1] + mid_u * syaw + mid_v * cyaw,
                       (lo[:, 2] + hi[:, 2]) / 2], 1)
    order = np.argsort(lab, kind="stable")
    groups = np.split(fg[order], np.cumsum(np.bincount(lab, minlength=n))[:-1])
    objs = [Object3D(int(ids[i]), mean[i], center[i], size[i], float(yaw[i]), int(cnt[i]),
                     float(scores.get(int(ids[i]), 0.0)) if scores else 0.0, groups[i])
            for i in np.flatnonzero(cnt > 0)]
    return objs, out
