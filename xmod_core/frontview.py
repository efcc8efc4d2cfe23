"""LiDAR front view: the 4-channel image-plane input of DIOD-3D. Pure numpy/cv2, no ROS.

Each velodyne point is moved into rectified cam0 coordinates (x right, y down, z forward;
see :mod:`xmod_core.kitti`) and projected into camera ``calib.camera``.  A pixel keeps the
nearest point (smallest Euclidean distance) that falls in it and stores four channels,
each min-max normalised to [0, 1] and clipped:

    ====  ===================================  ===============
    ch    quantity (rectified cam0, metres)    range -> [0, 1]
    ====  ===================================  ===============
    0     x (right)                            X_RANGE
    1     y (down)                             Y_RANGE
    2     z (forward), clipped at 70 m         Z_RANGE
    3     Euclidean distance sqrt(x²+y²+z²)    DEPTH_RANGE
    ====  ===================================  ===============

Points with z < MIN_FORWARD (2 m) are dropped; empty pixels are 0 in every channel.  A lower
output resolution is obtained by scaling the intrinsics (``calib.scaled``), never by
resizing a full-resolution map.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .kitti import CameraCalib

X_RANGE = (-52.0, 53.0)      # m, lateral
Y_RANGE = (-4.0, 15.0)       # m, vertical (down positive)
Z_RANGE = (1.0, 70.0)        # m, forward; farther values saturate at 1
DEPTH_RANGE = (2.0, 80.0)    # m, Euclidean distance
MIN_FORWARD = 2.0            # m, points with z_rect below this are dropped
CHANNELS = ("x", "y", "z", "depth")
_RANGES = np.array([X_RANGE, Y_RANGE, Z_RANGE, DEPTH_RANGE])  # (4,2)
_MARGIN_PX, _MARGIN_Z = 1.0, 0.05  # prefilter slack (px, m), far above float32 rounding


@dataclass
class FrontView:
    """Front-view tensor plus the point <-> pixel correspondences.

    features    float32 (4,H,W): normalised x, y, z, Euclidean depth; 0 where empty.
    valid       bool (H,W): pixel holds a point.
    pixel_point int64 (H,W): index of the winning (nearest) input point, -1 if empty.
    point_pixel int64 (N,): linear pixel index row*W + col of every input point (also the
                hidden ones), -1 if dropped / outside the view / non-finite.
    """

    features: np.ndarray
    valid: np.ndarray
    pixel_point: np.ndarray
    point_pixel: np.ndarray

    @property
    def height(self) -> int:
        return self.valid.shape[0]

    @property
    def width(self) -> int:
        return self.valid.shape[1]

    @classmethod
    def empty(cls, height: int, width: int, n_points: int = 0) -> "FrontView":
        return cls(np.zeros((4, height, width), np.float32), np.zeros((height, width), bool),
                   np.full((height, width), -1, np.int64), np.full(n_points, -1, np.int64))


def normalise(values: np.ndarray) -> np.ndarray:
    """(M,4) metric x, y, z, depth -> (M,4) float32 in [0,1] (min-max with the constants)."""
    lo, hi = _RANGES[:, 0], _RANGES[:, 1]
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def project_scan(points, calib: CameraCalib, height: int | None = None,
                 width: int | None = None) -> FrontView:
    """Build the :class:`FrontView` of (N,3|4) velo-frame points at height x width
    (default: the calibration's size) by projecting with ``calib.scaled(height, width)``.

    Pixel = (round(v), round(u)) (integer coordinates are pixel centres, as in KITTI and
    OpenCV; exactly floor(v + 0.5), floor(u + 0.5)), kept when inside the image; per pixel the point with the
    smallest Euclidean distance wins (ties: lowest point index).  NaN/inf points and points
    with z_rect < MIN_FORWARD get point_pixel = -1.  ValueError for a bad points shape.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] not in (3, 4):
        raise ValueError(f"points must have shape (N,3) or (N,4), got {pts.shape}")
    if pts.dtype not in (np.float32, np.float64):
        pts = pts.astype(np.float64)
    H = calib.height if height is None else int(height)
    W = calib.width if width is None else int(width)
    if H <= 0 or W <= 0:
        raise ValueError(f"front view size must be positive, got {H}x{W}")
    if (H, W) != (calib.height, calib.width):
        calib = calib.scaled(H, W)
    fv = FrontView.empty(H, W, len(pts))
    idx, X, u, v = _in_view(pts, calib, H, W)                        # K points kept
    if len(idx) == 0:
        return fv
    lin = np.floor(v).astype(np.int64) * W + np.floor(u).astype(np.int64)  # (K,)
    dist = np.sqrt(X[0] ** 2 + X[1] ** 2 + X[2] ** 2)                  # (K,) Euclidean
    fv.point_pixel[idx] = lin

    # 3) z-buffer on K-sized arrays: stable sort by pixel (equal pixels keep index order),
    #    minimum distance of each pixel run, first point of the run reaching it wins.
    order = np.argsort(lin, kind="stable")                            # (K,)
    lin_s, dist_s = lin[order], dist[order]
    start = _run_starts(lin_s)                                        # (K,) bool
    run = np.cumsum(start) - 1                                        # (K,) run id
    run_min = np.minimum.reduceat(dist_s, np.flatnonzero(start))      # (P,)
    cand = np.flatnonzero(dist_s == run_min[run])                     # (>=P,) sorted pos
    win = order[cand[_run_starts(run[cand])]]                         # (P,) into K
    pix = lin[win]                                                    # (P,) unique pixels

    feats = normalise(np.vstack([X[:, win], dist[win]]).T)            # (P,4)
    fv.features.reshape(4, -1)[:, pix] = feats.T
    fv.valid.reshape(-1)[pix] = True
    fv.pixel_point.reshape(-1)[pix] = idx[win]
    return fv


def _in_view(pts: np.ndarray, calib: CameraCalib, H: int, W: int):
    """The points that land in the H x W image of `calib` (already at that size): their indices
    (K,), rect-camera coordinates (3, K) and pixel coordinates u, v (K,) shifted by half a pixel
    (pixel = floor(v), floor(u))."""
    T, P = calib.T_velo_to_rect, calib.P_rect                         # (4,4), (3,4)

    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        # 1) cheap prefilter in the input dtype (float32 for KITTI) with a margin of
        #    _MARGIN_PX pixels / _MARGIN_Z metres; rows of A give uw, vw, w, z_rect.
        A = np.vstack([P @ T, T[2]]).astype(pts.dtype)                # (4,4)
        uw, vw, w, z = _affine(A, pts.T)                              # 4 x (N,)
        idx = np.flatnonzero((z >= MIN_FORWARD - _MARGIN_Z) & (w > 0)
                             & (uw >= -_MARGIN_PX * w) & (uw < (W + _MARGIN_PX) * w)
                             & (vw >= -_MARGIN_PX * w) & (vw < (H + _MARGIN_PX) * w))
        # 2) exact float64 test on the M candidates (M << N); NaN/inf compare False
        X = _affine(T[:3], pts[idx, :3].T.astype(np.float64))         # (3,M) rect cam0
        uvw = _affine(P, X)                                           # (3,M) homogeneous px
        # KITTI/OpenCV convention: integer coordinates are pixel centres, so pixel (r, c)
        # covers [c - 0.5, c + 0.5) x [r - 0.5, r + 0.5); shift by half a pixel, then floor.
        u, v = uvw[0] / uvw[2] + 0.5, uvw[1] / uvw[2] + 0.5           # (M,) pixels
        inside = ((X[2] >= MIN_FORWARD) & (uvw[2] > 0)
                  & (u >= 0) & (u < W) & (v >= 0) & (v < H))
    idx, X, u, v = idx[inside], X[:, inside], u[inside], v[inside]    # K points kept
    return idx, X, u, v


def _affine(A: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """(r,4) affine rows applied to (3,K) coordinates -> (r,K).  Element-wise on purpose:
    BLAS calls on such thin matrices are slow and spawn threads."""
    return A[:, :1] * xyz[0] + A[:, 1:2] * xyz[1] + A[:, 2:3] * xyz[2] + A[:, 3:]


def _run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """(K,) sorted keys -> (K,) bool, True where a run of equal keys begins."""
    start = np.empty(len(sorted_keys), bool)
    start[:1] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=start[1:])
    return start


def point_pixels(points, calib: CameraCalib) -> np.ndarray:
    """(N,) int64: the linear pixel index row * W + col of every (N, 3|4) point in `calib`'s image
    (its own size), -1 for points out of view; the `point_pixel` of `project_scan` without the
    z-buffer and the feature images (half the cost at camera resolution)."""
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] not in (3, 4):
        raise ValueError(f"points must have shape (N,3) or (N,4), got {pts.shape}")
    if pts.dtype not in (np.float32, np.float64):
        pts = pts.astype(np.float64)
    out = np.full(len(pts), -1, np.int64)
    idx, _, u, v = _in_view(pts, calib, calib.height, calib.width)
    out[idx] = np.floor(v).astype(np.int64) * calib.width + np.floor(u).astype(np.int64)
    return out


def grid_labels_to_points(labels, point_pixel) -> np.ndarray:
    """Per-pixel labels (H,W) int -> per-point labels (N,): the label of each point's pixel
    (hidden points included), 0 for points with point_pixel == -1."""
    labels, point_pixel = np.asarray(labels), np.asarray(point_pixel)
    if labels.ndim != 2:
        raise ValueError(f"labels must have shape (H,W), got {labels.shape}")
    if point_pixel.ndim != 1:
        raise ValueError(f"point_pixel must have shape (N,), got {point_pixel.shape}")
    if point_pixel.size and point_pixel.max() >= labels.size:
        raise ValueError(f"point_pixel index {point_pixel.max()} outside labels {labels.shape}")
    out = np.zeros(point_pixel.shape, labels.dtype)
    hit = point_pixel >= 0
    out[hit] = labels.reshape(-1)[point_pixel[hit]]
    return out


def depth_colormap(fv: FrontView, colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """uint8 (H,W,3) RGB rendering of the depth channel (near = red for JET), black where
    empty."""
    d = np.round((1.0 - fv.features[3]) * 255.0).astype(np.uint8)      # (H,W) near -> 255
    rgb = cv2.cvtColor(cv2.applyColorMap(d, colormap), cv2.COLOR_BGR2RGB)
    rgb[~fv.valid] = 0
    return rgb
