"""Classical LiDAR object clustering, the baseline a robotics user would reach for in ROS today:
ground removal (RANSAC plane) plus Euclidean clustering (connected components of occupied
voxels, 26-connectivity, the voxel size as the distance threshold) with size filters that keep
object-sized clusters (cars, trucks, pedestrians, cyclists) and drop walls, buildings and
vegetation rows. Its clusters are projected into the image for the 2D metrics (convex hull of
each cluster's pixels, nearer clusters painted over farther ones)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .frontview import project_scan
from .kitti import CameraCalib


EXTENTS = ("axes", "oriented")          # how a cluster's sides are measured for the size filters


@dataclass
class ClusterConfig:
    max_range: float = 60.0        # m; beyond, 64 beams are too sparse to cluster
    ground_iters: int = 64         # RANSAC planes tested (vectorised)
    ground_sample: int = 1000      # low points each plane is scored on
    ground_tol: float = 0.2        # m from the plane: ground
    sensor_height: float = 1.73    # m, to seed the plane search below the sensor
    voxel: float = 0.4             # m; Euclidean clustering distance threshold
    min_points: int = 10
    min_height: float = 0.4        # m; cluster extents outside these bounds are not objects
    max_height: float = 4.5
    max_length: float = 12.0       # m, the longer horizontal side (buses, trucks)
    max_width: float = 3.5         # m, the shorter horizontal side (walls and building faces are longer)
    split_voxel: float = 0.0       # m; > 0: a cluster too large for the filters is clustered again at this distance
                                   # (a car touching a hedge or a wall, parked cars in a row); 0: dropped
    extent: str = "axes"           # sides measured along the sensor's x and y axes (axes), or along the cluster's
                                   # own principal axes on the ground (oriented: a car seen at 45 degrees stays 4.5 x 1.8 m)
    seed: int = 0

    def __post_init__(self):
        if self.split_voxel < 0:
            raise ValueError(f"cluster split_voxel must be >= 0 m, got {self.split_voxel}")
        if self.extent not in EXTENTS:
            raise ValueError(f"cluster extent must be axes or oriented, got {self.extent!r}")


def ground_plane(points: np.ndarray, cfg: ClusterConfig) -> tuple[np.ndarray, float] | None:
    """The best plane through low points (RANSAC, vectorised): normal (3,) and offset d (n . p + d = 0
    on the plane), or None when there are too few low points. The normal is a unit vector pointing
    up with z > 0.9 unless no sampled plane was near-horizontal (a wall, collinear samples): callers
    that need a ground check `n[2]`."""
    rng = np.random.default_rng(cfg.seed)
    low = np.flatnonzero(points[:, 2] < -cfg.sensor_height + 0.6)
    if len(low) < 3:
        return None
    tri = points[rng.choice(low, (cfg.ground_iters, 3)), :3]                  # (I, 3, 3)
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    n = n / np.maximum(norm, 1e-9)
    n *= np.sign(n[:, 2:3] + 1e-12)                                            # normals up
    d = -(n * tri[:, 0]).sum(1)
    ok = (norm[:, 0] > 1e-6) & (n[:, 2] > 0.9)                                 # near-horizontal planes only
    sub = points[low[:: max(1, len(low) // cfg.ground_sample)], :3]
    # distances as sums of products, not BLAS matmuls: small products, and no thread start-up
    dist = sub[:, None, 0] * n[:, 0] + sub[:, None, 1] * n[:, 1] + sub[:, None, 2] * n[:, 2] + d           # (P, I)
    inl = (np.abs(dist) < cfg.ground_tol).sum(0) * ok                                                    # (I,)
    best = int(inl.argmax())
    return n[best], d[best]


def is_ground(plane: tuple[np.ndarray, float] | None) -> bool:
    """`ground_plane`'s answer is a ground: a plane, near-horizontal (normal z > 0.9, the planes its
    RANSAC accepts), not None or the wall it falls back to."""
    return plane is not None and bool(plane[0][2] > 0.9)


def plane_distance(points: np.ndarray, plane: tuple[np.ndarray, float]) -> np.ndarray:
    """(N,) signed height of points (N, >=3) above the plane (n, d)."""
    (n, d), p = plane, points[:, :3]
    return p[:, 0] * n[0] + p[:, 1] * n[1] + p[:, 2] * n[2] + d


def ground_mask(points: np.ndarray, cfg: ClusterConfig) -> np.ndarray:
    """(N,) bool: points within ground_tol of the best plane through low points (RANSAC)."""
    plane = ground_plane(points, cfg)
    if plane is None:
        return np.zeros(len(points), bool)
    return np.abs(plane_distance(points, plane)) < cfg.ground_tol


_HALF_NEIGHBOURS = {d: np.array([o for o in itertools.product((-1, 0, 1), repeat=d) if o > (0,) * d], np.int64)
                    for d in (2, 3)}                                           # one of each pair of opposite offsets


def voxel_components(cells: np.ndarray, group: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Connected components of occupied cells (M, D) integer coordinates, D = 2 or 3, full
    connectivity (8 / 26 neighbours); with `group` (M,), cells of different groups never connect.
    Returns each row's component (M,) 0..n-1 and n. Works on the occupied cells only (sorted keys,
    one lookup per neighbour offset, graph components), never on a dense grid."""
    if not len(cells):
        return np.zeros(0, np.int64), 0
    c = cells - cells.min(0) + 1                                               # >= 1: neighbours stay >= 0
    span = c.max(0) + 2
    key = np.zeros(len(c), np.int64) if group is None else np.asarray(group, np.int64).copy()
    for k in range(c.shape[1]):
        key = key * span[k] + c[:, k]
    occupied, inv = np.unique(key, return_inverse=True)                        # (C,) sorted
    stride = np.cumprod(np.concatenate([span[1:], [1]])[::-1])[::-1]           # key step of +1 along each axis
    src, dst = [], []
    for off in _HALF_NEIGHBOURS[c.shape[1]] @ stride:
        pos = np.clip(np.searchsorted(occupied, occupied + off), 0, len(occupied) - 1)
        hit = occupied[pos] == occupied + off
        src.append(np.flatnonzero(hit))
        dst.append(pos[hit])
    src, dst = np.concatenate(src), np.concatenate(dst)
    n, comp = connected_components(coo_matrix((np.ones(len(src)), (src, dst)), shape=(len(occupied),) * 2), directed=False)
    return comp[inv].astype(np.int64), int(n)


def _oriented_sides(xy: np.ndarray, lab: np.ndarray, cnt: np.ndarray) -> np.ndarray:
    """(n + 1, 2) extents of the clusters 0..n of `lab` (M,) over ground-plane points `xy` (M, 2)
    along each cluster's principal axes (of its x-y covariance); `cnt` (n + 1,) points per cluster."""
    m = len(cnt)
    w = np.maximum(cnt, 1).astype(np.float64)
    mean = np.stack([np.bincount(lab, xy[:, k], m) for k in range(2)], 1) / w[:, None]   # (n + 1, 2)
    c = xy - mean[lab]
    sxx, syy, sxy = (np.bincount(lab, a * b, m) / w for a, b in ((c[:, 0], c[:, 0]), (c[:, 1], c[:, 1]), (c[:, 0], c[:, 1])))
    theta = 0.5 * np.arctan2(2 * sxy, sxx - syy)                                 # (n + 1,) major axis
    ct, st = np.cos(theta)[lab], np.sin(theta)[lab]
    uv = np.stack([c[:, 0] * ct + c[:, 1] * st, -c[:, 0] * st + c[:, 1] * ct], 1)   # (M, 2) in the cluster's axes
    lo, hi = np.full((m, 2), np.inf), np.full((m, 2), -np.inf)
    for k in range(2):
        np.minimum.at(lo[:, k], lab, uv[:, k])
        np.maximum.at(hi[:, k], lab, uv[:, k])
    return np.where(np.isfinite(hi - lo), hi - lo, 0.0)


def _size_filters(p: np.ndarray, lab: np.ndarray, n: int, cfg: ClusterConfig) -> tuple[np.ndarray, np.ndarray]:
    """The clusters 0..n of `lab` (M,) over points p (M, 3) that pass the object-size filters (n + 1,)
    bool (0: never), and those that fail them only by being too large (too long, wide or tall)."""
    cnt = np.bincount(lab, minlength=n + 1)
    lo = np.full((n + 1, 3), np.inf)
    hi = np.full((n + 1, 3), -np.inf)
    for k in range(3):
        np.minimum.at(lo[:, k], lab, p[:, k])
        np.maximum.at(hi[:, k], lab, p[:, k])
    ext = hi - lo
    if cfg.extent == "oriented":
        ext[:, :2] = _oriented_sides(p[:, :2], lab, cnt)
    longer, shorter = np.maximum(ext[:, 0], ext[:, 1]), np.minimum(ext[:, 0], ext[:, 1])
    enough = (cnt >= cfg.min_points) & (ext[:, 2] >= cfg.min_height)
    small = (ext[:, 2] <= cfg.max_height) & (longer <= cfg.max_length) & (shorter <= cfg.max_width)
    good, big = enough & small, enough & ~small
    good[0] = big[0] = False
    return good, big


def euclidean_clusters(points: np.ndarray, cfg: ClusterConfig = ClusterConfig()) -> np.ndarray:
    """(N,) int cluster ids (0 = ground, far or filtered out) for a LiDAR scan (N, >=3)."""
    return clusters_and_candidates(points, cfg)[0]


def clusters_and_candidates(points: np.ndarray, cfg: ClusterConfig = ClusterConfig()) -> tuple[np.ndarray, np.ndarray]:
    """`euclidean_clusters` and the (N,) bool candidates it clustered: finite, in range, not ground."""
    return cluster_scan(points, cfg)[:2]


def cluster_scan(points: np.ndarray, cfg: ClusterConfig = ClusterConfig()) -> tuple[np.ndarray, np.ndarray, tuple | None]:
    """`clusters_and_candidates` and the ground plane (n, d) it removed (None: no ground found)."""
    pts = np.asarray(points, np.float64)[:, :3]
    labels = np.zeros(len(pts), np.int64)
    finite = np.isfinite(pts).all(1)
    keep = finite & ((np.where(finite[:, None], pts, 0) ** 2).sum(1) < cfg.max_range ** 2)
    plane = ground_plane(pts[keep], cfg)
    if plane is not None:
        keep[keep] &= np.abs(plane_distance(pts[keep], plane)) >= cfg.ground_tol
    idx = np.flatnonzero(keep)
    if len(idx) == 0:
        return labels, keep, plane
    p = pts[idx]
    comp, n = voxel_components(np.floor(p / cfg.voxel).astype(np.int64))
    lab = comp + 1                                                             # (M,) 1..n
    good, big = _size_filters(p, lab, n, cfg)
    new_id = np.zeros(n + 1, np.int64)
    new_id[good] = np.arange(1, good.sum() + 1)
    labels[idx] = new_id[lab]
    if cfg.split_voxel > 0 and big.any():                                      # too large: cluster again, finer
        sub = np.flatnonzero(big[lab])
        comp2, n2 = voxel_components(np.floor(p[sub] / cfg.split_voxel).astype(np.int64), lab[sub])
        good2, _ = _size_filters(p[sub], comp2 + 1, n2, cfg)
        new2 = np.zeros(n2 + 1, np.int64)
        new2[good2] = good.sum() + np.arange(1, good2.sum() + 1)
        labels[idx[sub]] = new2[comp2 + 1]
    return labels, keep, plane


def ground_feet_pixels(points: np.ndarray, normal: np.ndarray, offset: float,
                       calib: CameraCalib) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points (N, >=3) dropped onto the plane normal . p + offset = 0 (unit normal) and projected
    with `calib`: rows and columns (M,) of the M feet in front of the camera (pixel centres at
    integers, as `project_scan`), and the (N,) bool of those M. Feet outside the image keep their
    pixel (within 4x the image size), so a hull painted through them is clipped by the painter,
    not bent: what ground removal cut from an object (its lowest `ground_tol`) comes back in its hull."""
    p = np.asarray(points, np.float64)[:, :3]
    drop = p - (p @ normal + offset)[:, None] * normal                        # (N, 3) on the plane
    uv, z = calib.project(drop)
    ok = (z > 0.1) & np.isfinite(uv).all(1)
    bound = 4 * max(calib.height, calib.width)
    px = np.floor(np.clip(uv[ok], -bound, bound) + 0.5).astype(np.int64)      # (M, 2) u, v
    return px[:, 1], px[:, 0], ok


def paint_hulls(rows: np.ndarray, cols: np.ndarray, labels: np.ndarray, ranges: np.ndarray, height: int,
                width: int) -> np.ndarray:
    """(height, width) uint16 instance image: the convex hull of each label's pixels (rows, cols)
    filled with the label, farther labels (median range) first so nearer ones occlude them."""
    out = np.zeros((height, width), np.uint16)
    if not len(labels):
        return out
    ids, inv = np.unique(labels, return_inverse=True)
    order = np.lexsort((ranges, inv))                                          # by label, then range
    counts = np.bincount(inv, minlength=len(ids))
    med = ranges[order][np.cumsum(counts) - counts + (counts - 1) // 2]        # lower median per label
    groups = np.split(np.stack([cols, rows], 1)[order].astype(np.int32), np.cumsum(counts)[:-1])
    for i in np.argsort(-med, kind="stable"):                                  # far to near
        cv2.fillConvexPoly(out, cv2.convexHull(groups[i]), int(ids[i]))
    return out


def clusters_to_image(points: np.ndarray, labels: np.ndarray, calib: CameraCalib, height: int, width: int) -> np.ndarray:
    """(height, width) instance image: each cluster's projected pixels filled as a convex hull,
    farther clusters first so nearer ones occlude them."""
    pp = project_scan(points, calib, height, width).point_pixel
    vis = (pp >= 0) & (labels > 0)
    rng = np.linalg.norm(np.asarray(points)[vis, :3], axis=1)
    return paint_hulls(pp[vis] // width, pp[vis] % width, labels[vis], rng, height, width)
