"""Unsure 3D instances that a LiDAR cluster confirms (beyond the paper).

A slot instance's score is the mean attention of its slot over its pixels; the 3D student's own
threshold (0.6) drops half of the objects of 1k-3k camera pixels it has a slot for, and the still
objects more than the moving ones (docs/evaluation.md, "Still objects, by size"). Where the LiDAR
scan, clustered by the classical baseline (RANSAC ground removal, Euclidean clustering, the
object-size filters: `baselines.cluster_scan`), holds one object-sized cluster whose points are
mostly the instance's, the instance is kept down to a lower score:

    kept  <=>  score >= own threshold,  or  score >= min_score and best point IoU with a cluster >= iou

Point sets: the in-view points (only they are clustered, as hybrid instances do: a sixth of a KITTI
scan) that clustering considers (finite, in range, not ground), each with its instance (the
instance id of its cell on the processing grid) and its cluster; the evaluator's
`metrics.iou_matrix` (one joint histogram of the pairs) gives every IoU at once.
"""
from __future__ import annotations

import numpy as np

from .baselines import ClusterConfig, cluster_scan
from .metrics import iou_matrix


def cluster_iou(point_instance: np.ndarray, point_cluster: np.ndarray, n_instances: int) -> np.ndarray:
    """(n_instances + 1,) each instance id's best point IoU with one cluster (index 0, background: 0)
    from point_instance (M,) ids in 0..n_instances and point_cluster (M,) cluster ids (0 = none) of
    the same M points."""
    a = np.asarray(point_instance, np.int64)
    c = np.asarray(point_cluster, np.int64)
    if a.shape != c.shape or a.ndim != 1:
        raise ValueError(f"point_instance and point_cluster must be (M,) arrays of one length, got {a.shape} and {c.shape}")
    if len(a) and (a.min() < 0 or a.max() > n_instances or c.min() < 0):
        raise ValueError(f"instance ids must lie in 0..{n_instances} and cluster ids be >= 0")
    best = np.zeros(n_instances + 1)
    ids, _, iou, _ = iou_matrix(a, c)                                         # instances x clusters, 0 left out
    if iou.size:
        best[ids] = iou.max(1)
    return best


def confirmed(grid_ids: np.ndarray, scores: np.ndarray, point_pixel: np.ndarray, points: np.ndarray,
              own: float, min_score: float, iou: float, cfg: ClusterConfig = ClusterConfig()) -> np.ndarray:
    """(S,) bool: the instances to keep. grid_ids (h, w) instance ids 0..S on the processing grid
    (slot k -> k + 1, 0 = background); scores (S,) their scores, one per instance id; point_pixel (N,) each point's
    flat cell on that grid (-1: out of view); points (N, >=3). An instance is kept when it scores at
    least `own`, or at least `min_score` with a best point IoU of `iou` with one clustering cluster."""
    s = np.asarray(scores, np.float64)
    grid = np.asarray(grid_ids)
    if grid.size and (grid.min() < 0 or grid.max() > len(s)):
        raise ValueError(f"grid instance ids must lie in 0..{len(s)} (one score each), got {grid.min()}..{grid.max()}")
    keep = s >= own
    unsure = ~keep & (s >= min_score)
    if not unsure.any():
        return keep
    pixel = np.asarray(point_pixel)
    view = pixel >= 0                                                          # only the camera's view is clustered
    clusters, candidates, _ = cluster_scan(np.asarray(points)[view], cfg)      # (V,) ids, (V,) bool
    inst = grid.reshape(-1)[pixel[view][candidates]].astype(np.int64)
    best = cluster_iou(inst, clusters[candidates], len(s))
    return keep | (unsure & (best[1:] >= iou))
