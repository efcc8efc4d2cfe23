"""The lead object: whatever stands or drives directly ahead in the ego lane, found by geometry.

A label-free reference for unlabelled real drives (`tools/car_ahead.py`, issue #13: "the car
directly ahead is an instance in at least 25 of 30 frames"): the LiDAR clusters of the baseline
(`baselines.clusters_and_candidates`: ground removed, Euclidean clustering with its size filters)
that have at least `min_points` non-ground returns in a corridor ahead of the sensor
(`x_min` <= x <= `x_max`, |y| <= `half_width`, returns between `min_z` and `max_z` in the LiDAR
frame, below a bridge or a sign gantry), and of those the nearest (smallest x of its corridor
returns). The corridor is straight along the LiDAR's x axis, so the lead is only right on a
straight road or a gentle curve (the kitti_raw drive), and a car ahead that touches another object
(closer than the clustering's voxel) is one cluster with it.

`found` scores a prediction against it the way F1@50 does: the best point IoU of one predicted
instance with the lead's points, matched at IoU >= 0.5.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .baselines import ClusterConfig, clusters_and_candidates


@dataclass
class LeadConfig:
    x_min: float = 2.5            # m ahead of the LiDAR (the ego's own bonnet is ~1 m ahead of it)
    x_max: float = 40.0
    half_width: float = 1.5       # m, half a lane (KITTI lanes ~3.5 m) less a margin
    min_z: float = -1.3           # m in the LiDAR frame (mounted 1.73 m up): from ~0.4 m above the road ...
    max_z: float = 1.0            # ... to ~2.7 m: no bridge deck, gantry or tree crown
    min_points: int = 20          # corridor returns a cluster needs to be the lead
    clusters: ClusterConfig = field(default_factory=ClusterConfig)

    def __post_init__(self):
        if not 0 <= self.x_min < self.x_max:
            raise ValueError(f"lead corridor needs 0 <= x_min < x_max, got {self.x_min}, {self.x_max}")
        if self.half_width <= 0 or self.min_z >= self.max_z:
            raise ValueError(f"lead corridor is empty: half_width {self.half_width}, z {self.min_z}..{self.max_z}")


def lead_object(points: np.ndarray, cfg: LeadConfig = LeadConfig()) -> np.ndarray | None:
    """(N,) bool mask of the lead object's points in a LiDAR scan (N, >=3), or None when no
    cluster has `min_points` returns in the corridor."""
    pts = np.asarray(points, np.float64)[:, :3]
    cl, _ = clusters_and_candidates(pts, cfg.clusters)                         # (N,) 0 = ground / filtered
    x, y, z = pts.T
    corridor = (cl > 0) & (x >= cfg.x_min) & (x <= cfg.x_max) & (np.abs(y) <= cfg.half_width) & \
        (z >= cfg.min_z) & (z <= cfg.max_z)
    n = int(cl.max(initial=0)) + 1
    count = np.bincount(cl[corridor], minlength=n)                             # (n,) corridor returns per cluster
    nearest = np.full(n, np.inf)
    np.minimum.at(nearest, cl[corridor], x[corridor])
    nearest[count < cfg.min_points] = np.inf
    nearest[0] = np.inf
    if not np.isfinite(nearest).any():
        return None
    return cl == int(np.argmin(nearest))


def best_iou(labels: np.ndarray, target: np.ndarray) -> tuple[float, int]:
    """Best point IoU of one predicted instance (`labels` (N,) ids, 0 = none) with the `target`
    (N,) bool points, and that instance's id (0 when no instance touches the target)."""
    labels, target = np.asarray(labels, np.int64), np.asarray(target, bool)
    if labels.shape != target.shape:
        raise ValueError(f"labels {labels.shape} and target {target.shape} must be one value per point")
    if labels.min(initial=0) < 0:
        raise ValueError("labels must be >= 0 (0: no instance)")
    n = int(labels.max(initial=0)) + 1
    inter = np.bincount(labels[target], minlength=n).astype(np.float64)
    size = np.bincount(labels, minlength=n)
    iou = inter / np.maximum(size + target.sum() - inter, 1)
    iou[0] = 0.0
    k = int(np.argmax(iou))
    return float(iou[k]), (k if iou[k] > 0 else 0)


def found(labels: np.ndarray, target: np.ndarray, iou: float = 0.5) -> bool:
    """Whether one predicted instance matches the target points at point IoU >= `iou` (F1@50's rule)."""
    return best_iou(labels, target)[0] >= iou
