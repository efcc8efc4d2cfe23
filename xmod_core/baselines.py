"""Classical LiDAR object clustering, the baseline a robotics user would reach for in ROS today:
ground removal (RANSAC plane) plus Euclidean clustering (connected components of occupied
voxels, 26-connectivity, the voxel size as the distance threshold) with size filters that keep
object-sized clusters (cars, trucks, pedestrians, cyclists) and drop walls, buildings and
vegetation rows. Its clusters are projected into the image for the 2D metrics (convex hull of
each cluster's pixels, nearer clusters painted over farther ones)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from .frontview import project_scan
from .kitti import CameraCalib


@dataclass
class ClusterConfig:
    max_range: float = 60.0        # m; beyond, 64 beams are too sparse to cluster
    ground_iters: int = 64         # RANSAC planes tested (vectorised)
    ground_tol: float = 0.2        # m from the plane: ground
    sensor_height: float = 1.73    # m, to seed the plane search below the sensor
    voxel: float = 0.4             # m; Euclidean clustering distance threshold
    min_points: int = 10
    min_height: float = 0.4        # m; cluster extents outside these bounds are not objects
    max_height: float = 4.5
    max_length: float = 12.0       # m, the longer horizontal side (buses, trucks)
    max_width: float = 3.5         # m, the shorter horizontal side (walls and building faces are longer)
    seed: int = 0


def ground_mask(points: np.ndarray, cfg: ClusterConfig) -> np.ndarray:
    """(N,) bool: points within ground_tol of the best plane through low points (RANSAC)."""
    rng = np.random.default_rng(cfg.seed)
    low = np.flatnonzero(points[:, 2] < -cfg.sensor_height + 0.6)
    if len(low) < 3:
        return np.zeros(len(points), bool)
    tri = points[rng.choice(low, (cfg.ground_iters, 3)), :3]                  # (I, 3, 3)
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    n = n / np.maximum(norm, 1e-9)
    n *= np.sign(n[:, 2:3] + 1e-12)                                            # normals up
    d = -(n * tri[:, 0]).sum(1)
    ok = (norm[:, 0] > 1e-6) & (n[:, 2] > 0.9)                                 # near-horizontal planes only
    sub = points[low[:: max(1, len(low) // 4000)], :3]
    inl = (np.abs(sub @ n.T + d) < cfg.ground_tol).sum(0) * ok                 # (I,)
    best = int(inl.argmax())
    return np.abs(points[:, :3] @ n[best] + d[best]) < cfg.ground_tol


def euclidean_clusters(points: np.ndarray, cfg: ClusterConfig = ClusterConfig()) -> np.ndarray:
    """(N,) int cluster ids (0 = ground, far or filtered out) for a LiDAR scan (N, >=3)."""
    pts = np.asarray(points, np.float64)[:, :3]
    labels = np.zeros(len(pts), np.int64)
    finite = np.isfinite(pts).all(1)
    keep = finite & (np.linalg.norm(np.where(finite[:, None], pts, 0), axis=1) < cfg.max_range)
    keep[keep] &= ~ground_mask(pts[keep], cfg)
    idx = np.flatnonzero(keep)
    if len(idx) == 0:
        return labels
    vox = np.floor(pts[idx] / cfg.voxel).astype(np.int64)
    vox -= vox.min(0)
    shape = vox.max(0) + 1
    grid = np.zeros(shape, bool)
    grid[tuple(vox.T)] = True
    comp, n = ndimage.label(grid, structure=np.ones((3, 3, 3), bool))
    lab = comp[tuple(vox.T)]                                                   # (M,) 1..n
    # size filters per cluster, all at once
    cnt = np.bincount(lab, minlength=n + 1)
    lo = np.full((n + 1, 3), np.inf)
    hi = np.full((n + 1, 3), -np.inf)
    p = pts[idx]
    for k in range(3):
        np.minimum.at(lo[:, k], lab, p[:, k])
        np.maximum.at(hi[:, k], lab, p[:, k])
    ext = hi - lo
    longer, shorter = np.maximum(ext[:, 0], ext[:, 1]), np.minimum(ext[:, 0], ext[:, 1])
    good = (cnt >= cfg.min_points) & (ext[:, 2] >= cfg.min_height) & (ext[:, 2] <= cfg.max_height) & \
        (longer <= cfg.max_length) & (shorter <= cfg.max_width)
    good[0] = False
    new_id = np.zeros(n + 1, np.int64)
    new_id[good] = np.arange(1, good.sum() + 1)
    labels[idx] = new_id[lab]
    return labels


def clusters_to_image(points: np.ndarray, labels: np.ndarray, calib: CameraCalib, height: int, width: int) -> np.ndarray:
    """(height, width) instance image: each cluster's projected pixels filled as a convex hull,
    farther clusters first so nearer ones occlude them."""
    fv = project_scan(points, calib, height, width)
    pp = fv.point_pixel
    vis = (pp >= 0) & (labels > 0)
    out = np.zeros((height, width), np.uint16)
    if not vis.any():
        return out
    lab, pix = labels[vis], pp[vis]
    rng = np.linalg.norm(np.asarray(points)[vis, :3], axis=1)
    ids = np.unique(lab)
    med = np.array([np.median(rng[lab == i]) for i in ids])                   # one value per cluster
    rows, cols = pix // width, pix % width
    for i in ids[np.argsort(-med)]:                                            # far to near
        sel = lab == i
        hull = cv2.convexHull(np.stack([cols[sel], rows[sel]], 1).astype(np.int32))
        cv2.fillConvexPoly(out, hull, int(i))
    return out
