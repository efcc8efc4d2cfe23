"""Camera geometry and ego-motion for the motion-cue stage (pure numpy / OpenCV).

Frames: ``rect`` is the rectified cam0 frame of :mod:`xmod_core.kitti`; camera 2 is
``P = K [I | t2]`` with ``t2 = K^-1 P[:, 3]``, so camera-2 coordinates are ``rect + t2``.
Ego-motion is a (4,4) ``T`` mapping rect coordinates at frame t to rect coordinates at the
other frame of the pair (``X_t1 = T @ X_t``): the motion of the *static world* seen from the
camera.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..flow import sample
from ..kitti import CameraCalib
from .config import EgoConfig

__all__ = ["EgoMotion", "MotionInputError", "processing_calib", "camera_offset", "rect_to_cam", "cam_to_rect", "camera_wedge",
           "relative_motion_from_poses", "GroundPlane", "fit_ground", "LidarView", "lidar_view",
           "estimate_pnp", "estimate_essential"]


class MotionInputError(ValueError):
    """Bad input to the motion stage; the message names the problem."""


@dataclass
class EgoMotion:
    """Ego-motion of one frame pair.

    status: "oxts" (from poses), "pnp" (LiDAR depth + flow), "essential" (flow only, no scale),
            "rotation" (flow only, no translation detected) or "failed".
    T:      (4,4) rect(t) -> rect(other frame), None when failed.  Its translation is in metres
            unless ``metric`` is False (then a unit direction, or zero).
    """

    status: str
    T: np.ndarray | None = None
    metric: bool = True
    inliers: int = 0
    candidates: int = 0
    reason: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status != "failed" and self.T is not None

    def inverse(self) -> "EgoMotion":
        """Motion of the reversed pair."""
        if not self.ok:
            return EgoMotion(self.status, None, self.metric, self.inliers, self.candidates, self.reason)
        Ti = np.linalg.inv(self.T)
        if not self.metric:  # keep a unit direction
            n = np.linalg.norm(Ti[:3, 3])
            if n > 0:
                Ti[:3, 3] /= n
        return EgoMotion(self.status, Ti, self.metric, self.inliers, self.candidates, self.reason,
                         dict(self.extra))

    def summary(self) -> dict:
        d = {"status": self.status, "inliers": int(self.inliers), "candidates": int(self.candidates)}
        if self.ok:
            d["translation"] = [round(float(v), 4) for v in self.T[:3, 3]]
            d["rotation_deg"] = round(rotation_angle_deg(self.T[:3, :3]), 4)
            d["metric"] = bool(self.metric)
        if self.reason:
            d["reason"] = self.reason
        return d


def rotation_angle_deg(R: np.ndarray) -> float:
    return math.degrees(math.acos(float(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0))))


# --------------------------------------------------------------------------- calibration
def processing_calib(calib: CameraCalib, height: int, width: int) -> CameraCalib:
    """The camera at height x width with the pixel-centre convention of cv2.resize: a full-res
    coordinate u maps to (u + 0.5) * s - 0.5 (``CameraCalib.scaled`` omits the half-pixel shift,
    a quarter pixel at half resolution)."""
    if (height, width) == (calib.height, calib.width):
        return calib
    sx, sy = width / calib.width, height / calib.height
    A = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])
    return CameraCalib(A @ calib.P_rect, calib.R_rect, calib.T_velo_to_cam, width, height, calib.camera)


def camera_offset(calib: CameraCalib) -> np.ndarray:
    """t2 = K^-1 P[:, 3]: camera-X coordinates are rect + t2."""
    return np.linalg.solve(calib.P_rect[:, :3], calib.P_rect[:, 3])


def rect_to_cam(T_rect: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """A motion in rect coordinates expressed in camera coordinates (rect + t2)."""
    S = np.eye(4)
    S[:3, 3] = t2
    return S @ T_rect @ np.linalg.inv(S)


def cam_to_rect(T_cam: np.ndarray, t2: np.ndarray) -> np.ndarray:
    S = np.eye(4)
    S[:3, 3] = t2
    return np.linalg.inv(S) @ T_cam @ S


def relative_motion_from_poses(pose_a: np.ndarray, pose_b: np.ndarray, calib: CameraCalib,
                               T_imu_to_velo: np.ndarray) -> np.ndarray:
    """(4,4) rect(a) -> rect(b) from IMU poses (world <- imu, e.g. ``KittiRawDrive.poses``)."""
    pose_a, pose_b = np.asarray(pose_a, float), np.asarray(pose_b, float)
    for name, p in (("pose_a", pose_a), ("pose_b", pose_b), ("T_imu_to_velo", T_imu_to_velo)):
        if np.shape(p) != (4, 4) or not np.all(np.isfinite(p)):
            raise MotionInputError(f"{name}: expected a finite (4,4) transform")
    # world <- rect = world <- imu <- velo <- rect
    T_imu_rect = np.linalg.inv(T_imu_to_velo) @ np.linalg.inv(calib.T_velo_to_rect)
    W_a, W_b = pose_a @ T_imu_rect, pose_b @ T_imu_rect
    return np.linalg.inv(W_b) @ W_a


# --------------------------------------------------------------------------- ground plane
@dataclass
class GroundPlane:
    """Plane n . X + d = 0 in velo coordinates, n a unit normal pointing up (height > 0 above)."""
    normal: np.ndarray
    d: float
    inliers: int

    def height(self, xyz: np.ndarray) -> np.ndarray:
        return xyz @ self.normal + self.d


def fit_ground(xyz_velo: np.ndarray, cfg: EgoConfig, rng: np.random.Generator) -> GroundPlane | None:
    """RANSAC plane through the LiDAR points that can be road: more than
    ``ground_below_sensor_m`` below the sensor, within ``ground_range_m`` ahead/aside, normal
    within ``ground_max_tilt_deg`` of vertical; refined by least squares on its inliers.
    None when fewer than 50 candidates or no plane has 30 inliers.  Non-finite points are
    never candidates."""
    p = xyz_velo
    r = cfg.ground_range_m
    with np.errstate(invalid="ignore"):
        keep = (p[:, 2] < -cfg.ground_below_sensor_m) & (np.abs(p[:, 0]) < r) & (np.abs(p[:, 1]) < r)
    cand = p[keep, :3].astype(np.float64)
    if len(cand) < 50:
        return None
    if len(cand) > 6000:  # the plane is over-determined long before this
        cand = cand[rng.choice(len(cand), 6000, replace=False)]
    sub = cand[rng.choice(len(cand), min(len(cand), 1500), replace=False)]
    k = cfg.ground_ransac_iters
    tri = sub[rng.integers(0, len(sub), (k, 3))]                       # (k,3,3)
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])          # (k,3)
    norm = np.linalg.norm(n, axis=1)
    ok = norm > 1e-6
    n = n / np.where(ok, norm, 1.0)[:, None]
    n *= np.sign(n[:, 2:3] + 1e-12)
    ok &= n[:, 2] > math.cos(math.radians(cfg.ground_max_tilt_deg))
    if not ok.any():
        return None
    n, tri = n[ok], tri[ok]
    d = -np.einsum("ij,ij->i", n, tri[:, 0])
    counts = (np.abs(sub @ n.T + d) < cfg.ground_tol_m).sum(0)
    best = int(np.argmax(counts))
    if counts[best] < 30:
        return None
    nb, db = n[best], d[best]
    for _ in range(2):  # least-squares refinement on the inliers (smallest principal axis)
        inl = cand[np.abs(cand @ nb + db) < cfg.ground_tol_m]
        c = inl.mean(0)
        q = inl - c
        _, vecs = np.linalg.eigh(q.T @ q)
        nb = vecs[:, 0] * np.sign(vecs[2, 0] + 1e-12)
        db = -float(nb @ c)
    if nb[2] < math.cos(math.radians(cfg.ground_max_tilt_deg)):
        return None
    return GroundPlane(nb, db, int(len(inl)))


# --------------------------------------------------------------------------- LiDAR in the image
@dataclass
class LidarView:
    """One scan seen by the camera at the processing resolution (only the nearest point per pixel).

    uv (M,2) float64 sub-pixel positions, xyz_cam (M,3) camera coordinates (rect + t2),
    depth (M,) z, ground (M,) bool / above (M,) bool (object candidates: higher than
    ``object_height_m`` above the ground plane), pix (M,) linear pixel index.
    Maps (h,w): depth (0 = no point), ground / above flags; over a ``window`` around each pixel:
    rho_min / rho_max (min / max LiDAR inverse depth, 0 where the window holds no point; the
    max over the larger ``near_window``, when given) and
    ground_only (the window holds ground points and none above the ground).
    """
    uv: np.ndarray
    xyz_cam: np.ndarray
    depth: np.ndarray
    ground: np.ndarray
    above: np.ndarray
    pix: np.ndarray
    depth_map: np.ndarray
    ground_map: np.ndarray
    above_map: np.ndarray
    plane: GroundPlane | None
    rho_min: np.ndarray
    rho_max: np.ndarray
    ground_only: np.ndarray

    @property
    def n(self) -> int:
        return len(self.depth)


MIN_DEPTH_M = 1.5  # LiDAR points nearer than this to the camera plane are ignored


def camera_wedge(pts: np.ndarray, pcalib: CameraCalib, margin_m: float = 2.0) -> np.ndarray:
    """Indices of the points inside a horizontal wedge around the camera's field of view (velo
    x forward, |y| below x times the half-FOV tangent, plus ``margin_m``): a cheap first cut,
    so the later stages touch a quarter of a 360-degree scan.  Non-finite points fail it."""
    K = pcalib.P_rect[:, :3]
    k = 1.1 * max(K[0, 2] + 0.5, pcalib.width - 0.5 - K[0, 2]) / K[0, 0] + 0.05
    x, y = pts[:, 0], pts[:, 1]
    with np.errstate(invalid="ignore", over="ignore"):
        return np.flatnonzero((x > 0.5 * MIN_DEPTH_M) & (np.abs(y) < x * k + margin_m))


def _zbuffer(pts: np.ndarray, pcalib: CameraCalib) -> tuple[np.ndarray, np.ndarray]:
    """Nearest point per pixel: (pix linear pixel indices, idx row indices of ``pts``), (M,).
    Pixel (r, c) holds projections within half a pixel of (c, r) (centres at integers).
    Non-finite points never pass the comparisons and are dropped."""
    h, w = pcalib.height, pcalib.width
    A = (pcalib.P_rect @ pcalib.T_velo_to_rect).astype(pts.dtype)       # (3,4) velo -> pixels
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        x, y, zz = pts[:, 0], pts[:, 1], pts[:, 2]
        # element-wise on purpose: BLAS on (F,3) x (3,3) is slow and spawns threads
        z = A[2, 0] * x + A[2, 1] * y + A[2, 2] * zz + A[2, 3]
        u = (A[0, 0] * x + A[0, 1] * y + A[0, 2] * zz + A[0, 3]) / z + 0.5
        v = (A[1, 0] * x + A[1, 1] * y + A[1, 2] * zz + A[1, 3]) / z + 0.5
        ok = np.flatnonzero((z > MIN_DEPTH_M) & (u >= 0) & (u < w) & (v >= 0) & (v < h))
    z, u, v = z[ok], u[ok], v[ok]
    lin = v.astype(np.int64) * w + u.astype(np.int64)
    # one sort on (pixel, depth in mm): the first point of every pixel run is the nearest
    key = (lin << 21) | np.minimum(z * 1000.0, 2**21 - 1).astype(np.int64)
    order = np.argsort(key)
    lin_s = lin[order]
    first = np.r_[True, lin_s[1:] != lin_s[:-1]]
    return lin_s[first], ok[order[first]]


def lidar_view(scan: np.ndarray, pcalib: CameraCalib, cfg: EgoConfig, rng: np.random.Generator,
               window: tuple[int, int] = (5, 7), near_window: tuple[int, int] | None = None,
               open_far: bool = False) -> LidarView:
    """Project ``scan`` (N,3|4 velo, non-finite points ignored) into the processing-resolution
    camera ``pcalib`` and classify the visible points as ground / above ground."""
    pts = np.asarray(scan)
    if pts.ndim != 2 or pts.shape[1] not in (3, 4):
        raise MotionInputError(f"scan: expected shape (N,3) or (N,4), got {pts.shape}")
    if pts.dtype not in (np.float32, np.float64):
        pts = pts.astype(np.float64)
    h, w = pcalib.height, pcalib.width
    pts = pts[camera_wedge(pts, pcalib)]
    pix, idx = _zbuffer(pts, pcalib)
    xyz_velo = pts[idx, :3].astype(np.float64)
    X = pcalib.velo_to_rect(xyz_velo)
    t2 = camera_offset(pcalib)
    Xc = X + t2
    uvw = Xc @ pcalib.P_rect[:, :3].T
    uv = uvw[:, :2] / uvw[:, 2:3]
    plane = fit_ground(pts, cfg, rng)
    if plane is not None:
        hgt = plane.height(xyz_velo)
        ground = np.abs(hgt) < cfg.ground_tol_m
        above = hgt > cfg.object_height_m
    else:  # no plane: nothing is known to be ground, everything may be an object
        ground = np.zeros(len(idx), bool)
        above = np.ones(len(idx), bool)
    depth_map = np.zeros(h * w, np.float32)
    depth_map[pix] = Xc[:, 2]
    gmap = np.zeros(h * w, bool)
    gmap[pix] = ground
    amap = np.zeros(h * w, bool)
    amap[pix] = above
    depth_map, gmap, amap = depth_map.reshape(h, w), gmap.reshape(h, w), amap.reshape(h, w)
    kernel = np.ones((window[1], window[0]), np.uint8)
    has = depth_map > 0
    rho = np.zeros((h, w), np.float32)
    np.divide(1.0, depth_map, out=rho, where=has)
    rho_max = cv2.dilate(rho, kernel)
    rho_min = cv2.erode(np.where(has, rho, np.float32(1e6)), kernel)
    rho_min[rho_max <= 0] = 0
    if open_far:
        # next to a LiDAR hole (sky, no return, above the scan) the far end is unknown: what a
        # pixel near an object's silhouette shows may be far behind it
        holes = (rho_max <= 0).view(np.uint8)
        rho_min[cv2.dilate(holes, kernel) > 0] = 0
    if near_window is not None and tuple(near_window) != tuple(window):
        # the near end over a larger window: flow bleeds from occluders onto what is behind them
        rho_max = np.maximum(rho_max, cv2.dilate(rho, np.ones((near_window[1], near_window[0]), np.uint8)))
    g_near = cv2.dilate(gmap.view(np.uint8), kernel) > 0
    a_near = cv2.dilate(amap.view(np.uint8), kernel) > 0
    ground_only = g_near & ~a_near if plane is not None else np.zeros((h, w), bool)
    return LidarView(uv, Xc, Xc[:, 2].copy(), ground, above, pix, depth_map, gmap, amap, plane,
                     rho_min, rho_max, ground_only)


# --------------------------------------------------------------------------- estimation
def _bucket(uv: np.ndarray, size: tuple[int, int], grid: tuple[int, int], per_cell: int,
            rng: np.random.Generator) -> np.ndarray:
    """Indices of at most ``per_cell`` random points per cell of a grid (gx, gy) over the image."""
    h, w = size
    gx, gy = grid
    cx = np.clip((uv[:, 0] / w * gx).astype(int), 0, gx - 1)
    cy = np.clip((uv[:, 1] / h * gy).astype(int), 0, gy - 1)
    cell = cy * gx + cx
    order = rng.permutation(len(uv))
    order = order[np.argsort(cell[order], kind="stable")]
    cs = cell[order]
    start = np.r_[0, np.flatnonzero(np.diff(cs)) + 1]
    rank = np.arange(len(cs)) - np.repeat(start, np.diff(np.r_[start, len(cs)]))
    return order[rank < per_cell]


def _pose_ok(T_cam: np.ndarray, cfg: EgoConfig) -> str:
    if not np.all(np.isfinite(T_cam)):
        return "non-finite pose"
    if np.linalg.norm(T_cam[:3, 3]) > cfg.max_translation_m:
        return f"translation {np.linalg.norm(T_cam[:3, 3]):.2f} m > {cfg.max_translation_m} m"
    ang = rotation_angle_deg(T_cam[:3, :3])
    if ang > cfg.max_rotation_deg:
        return f"rotation {ang:.1f} deg > {cfg.max_rotation_deg} deg"
    return ""


def _to_T(rvec, tvec) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = cv2.Rodrigues(np.asarray(rvec, np.float64))[0]
    T[:3, 3] = np.asarray(tvec, np.float64).ravel()
    return T


def _ransac_small_motion(obj: np.ndarray, img: np.ndarray, K: np.ndarray, thr: float, iters: int,
                         rng: np.random.Generator):
    """RANSAC for the camera motion (R, t) with X' = R X + t projecting X (M,3) onto img (M,2).

    Hypotheses come from minimal sets of 3 points solved *linearly* for a small rotation
    (R ~ I + [w]x, exact enough between video frames: < 1e-3 relative error at 2 deg) and any
    translation: each point gives the two equations x_n X'_z = X'_x, y_n X'_z = X'_y.  All
    hypotheses are solved and scored at once (batched numpy).  Returns (rvec, tvec, inliers)
    of the best hypothesis, for a non-linear refinement by the caller."""
    m = len(obj)
    if m < 3:
        return None, None, 0
    Kinv = np.linalg.inv(K)
    xn = img @ Kinv[:2, :2].T + Kinv[:2, 2]                           # (M,2) normalised
    X, Y, Z = obj[:, 0], obj[:, 1], obj[:, 2]
    xs, ys = xn[:, 0], xn[:, 1]
    o, z = np.ones(m), np.zeros(m)
    rows_a = np.stack([-xs * Y, Z + xs * X, -Y, o, z, -xs], 1)         # (M,6)
    rows_b = np.stack([-Z - ys * Y, ys * X, X, z, o, -ys], 1)
    rhs_a, rhs_b = -(X - xs * Z), -(Y - ys * Z)
    tri = rng.integers(0, m, (iters, 3))                              # (I,3), distinct rows only
    tri = tri[(tri[:, 0] != tri[:, 1]) & (tri[:, 0] != tri[:, 2]) & (tri[:, 1] != tri[:, 2])]
    A = np.concatenate([rows_a[tri], rows_b[tri]], 1)                 # (I,6,6)
    b = np.concatenate([rhs_a[tri], rhs_b[tri]], 1)                   # (I,6)
    ok = np.abs(np.linalg.det(A)) > 1e-12
    if not ok.any():
        return None, None, 0
    sol = np.linalg.solve(A[ok], b[ok][..., None])[..., 0]            # (I',6)
    w, t = sol[:, :3], sol[:, 3:]
    Xp = obj[None] + np.cross(w[:, None, :], obj[None]) + t[:, None, :]   # (I',M,3)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (K[0, 0] * Xp[..., 0] + K[0, 2] * Xp[..., 2]) / Xp[..., 2]
        v = (K[1, 1] * Xp[..., 1] + K[1, 2] * Xp[..., 2]) / Xp[..., 2]
        err2 = (u - img[None, :, 0]) ** 2 + (v - img[None, :, 1]) ** 2
    counts = (err2 < thr * thr).sum(1)
    best = int(np.argmax(counts))
    return w[best].reshape(3, 1).copy(), t[best].reshape(3, 1).copy(), int(counts[best])


def _refine_irls(obj: np.ndarray, img: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray,
                 scale_px: float, iters: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Iteratively reweighted Gauss-Newton on the reprojection error with a Cauchy loss of scale
    ``scale_px``.  Each step linearises a small update (w, dt) of the current pose
    (X' = R X + t; X'' = X' + w x X' + dt), rows scaled by f / Z' so residuals are in pixels."""
    for _ in range(iters):
        Xp = obj @ R.T + t
        Z = Xp[:, 2]
        ok = Z > 0.1
        if ok.sum() < 6:
            break
        X, Y, Z = Xp[ok, 0], Xp[ok, 1], Xp[ok, 2]
        u = K[0, 0] * X / Z + K[0, 2]
        v = K[1, 1] * Y / Z + K[1, 2]
        ru, rv = u - img[ok, 0], v - img[ok, 1]
        w = 1.0 / (1.0 + (ru * ru + rv * rv) / (scale_px * scale_px))     # Cauchy weights
        xs, ys = X / Z, Y / Z
        zr = np.zeros_like(Z)
        # d(u)/d(w, dt), d(v)/d(w, dt) of the projection (pixels per radian / metre)
        Ju = K[0, 0] * np.stack([-xs * ys, 1 + xs * xs, -ys, 1 / Z, zr, -xs / Z], 1)
        Jv = K[1, 1] * np.stack([-(1 + ys * ys), xs * ys, xs, zr, 1 / Z, -ys / Z], 1)
        J = np.concatenate([Ju, Jv])
        r = np.concatenate([ru, rv])
        ww = np.concatenate([w, w])
        A = J.T @ (J * ww[:, None])
        b = J.T @ (ww * r)
        try:
            delta = -np.linalg.solve(A + 1e-9 * np.eye(6), b)
        except np.linalg.LinAlgError:
            break
        dR = cv2.Rodrigues(delta[:3].reshape(3, 1))[0]
        R, t = dR @ R, dR @ t + delta[3:]
        if np.abs(delta).max() < 1e-7:
            break
    return R, t


def estimate_pnp(lv: LidarView, flow: np.ndarray, reliable: np.ndarray, pcalib: CameraCalib,
                 cfg: EgoConfig, rng: np.random.Generator, px_scale: float = 1.0) -> EgoMotion:
    """Ego-motion from LiDAR points at t and their flow-tracked positions at t+1.

    Static-world candidates only, with reliable flow: ground points (plane RANSAC) farther than
    ``ground_min_depth_m``, away from any above-ground point, whose flow is below
    ``ground_max_flow_px`` (the near road at speed moves by tens of pixels, where DIS errs most;
    at low speed it is the best reference for the translation), and points farther than
    ``far_depth_m`` away from depth edges.  Bucketed over a grid so that no single region (one
    big vehicle) dominates; RANSAC over linearised 3-point solutions
    (:func:`_ransac_small_motion`), then a robust (Cauchy) iteratively reweighted refinement on a
    denser bucketed sample (:func:`_refine_irls`).  Failed when there are too few candidates /
    inliers, a low inlier ratio or an implausible pose.  ``px_scale``: processing / input
    resolution (the ``*_px`` parameters are at input resolution).
    """
    ransac_px = cfg.ransac_px * px_scale
    h, w = flow.shape[:2]
    K = pcalib.P_rect[:, :3]
    if lv.n == 0:
        return EgoMotion("failed", reason="no LiDAR point in view")
    rel = reliable.ravel()[lv.pix]
    go = lv.ground_only.ravel()[lv.pix]
    smooth = lv.rho_max.ravel()[lv.pix] < 1.25 * lv.rho_min.ravel()[lv.pix]
    # ground away from any object, and distant points away from depth edges
    cand = rel & ((lv.ground & go & (lv.depth > cfg.ground_min_depth_m))
                  | ((lv.depth > cfg.far_depth_m) & smooth))
    idx = np.flatnonzero(cand)
    n_cand = len(idx)
    if n_cand < cfg.min_inliers:
        return EgoMotion("failed", candidates=n_cand,
                         reason=f"{n_cand} static-world candidates with reliable flow < {cfg.min_inliers}")
    uv = lv.uv[idx]
    f = sample(flow, uv[:, 0], uv[:, 1])
    good = np.all(np.isfinite(f), axis=1)
    # large displacements of the near road are where DIS errs most (1-2 px): not a reference
    good &= ~lv.ground[idx] | (np.hypot(f[:, 0], f[:, 1]) < cfg.ground_max_flow_px * px_scale)
    idx, uv, f = idx[good], uv[good], f[good]
    obj = lv.xyz_cam[idx]
    img = (uv + f).astype(np.float64)
    sel = _bucket(uv, (h, w), cfg.bucket_grid, cfg.bucket_max, rng)
    if len(sel) < cfg.min_inliers:
        return EgoMotion("failed", candidates=n_cand, reason=f"{len(sel)} bucketed candidates < {cfg.min_inliers}")
    rvec, tvec, n_best = _ransac_small_motion(obj[sel], img[sel], K, ransac_px, cfg.ransac_iters, rng)
    if rvec is None or n_best < 6:
        return EgoMotion("failed", candidates=n_cand, reason="PnP-RANSAC found no consensus")
    # robust refinement (Cauchy IRLS) on a denser bucketed sample of all candidates: no hard
    # inlier set, so a wrong-but-close RANSAC pose (e.g. "no translation" at low speed, where most
    # parallax is below the inlier threshold) is pulled to the motion the near points demand
    dense = _bucket(uv, (h, w), cfg.bucket_grid, 3 * cfg.bucket_max, rng)
    R = cv2.Rodrigues(rvec)[0]
    tv = tvec.ravel().copy()
    R, tv = _refine_irls(obj[dense], img[dense], K, R, tv, 0.5 * ransac_px)
    rvec, tvec = cv2.Rodrigues(R)[0], tv.reshape(3, 1)
    proj, _ = cv2.projectPoints(obj, rvec, tvec, K, None)
    inl_all = np.linalg.norm(proj.reshape(-1, 2) - img, axis=1) < ransac_px
    n_inl = int(inl_all.sum())
    # inlier ratio on the bucketed sample: insensitive to how many points one region holds
    proj, _ = cv2.projectPoints(obj[sel], rvec, tvec, K, None)
    ratio = float(np.mean(np.linalg.norm(proj.reshape(-1, 2) - img[sel], axis=1) < ransac_px))
    T_cam = _to_T(rvec, tvec)
    T = cam_to_rect(T_cam, camera_offset(pcalib))
    extra = {"inlier_ratio": round(ratio, 3)}
    if n_inl < cfg.min_inliers:
        return EgoMotion("failed", T=None, inliers=n_inl, candidates=n_cand, extra=extra,
                         reason=f"{n_inl} PnP inliers < {cfg.min_inliers}")
    if ratio < cfg.min_inlier_ratio:
        return EgoMotion("failed", T=None, inliers=n_inl, candidates=n_cand, extra=extra,
                         reason=f"PnP inlier ratio {ratio:.2f} < {cfg.min_inlier_ratio}")
    bad = _pose_ok(T_cam, cfg)
    if bad:
        return EgoMotion("failed", T=None, inliers=n_inl, candidates=n_cand, extra=extra, reason=bad)
    return EgoMotion("pnp", T, True, n_inl, n_cand, extra=extra)


def estimate_essential(flow: np.ndarray, reliable: np.ndarray, pcalib: CameraCalib, cfg: EgoConfig,
                       rng: np.random.Generator, px_scale: float = 1.0) -> EgoMotion:
    """Ego-motion without depth: essential matrix (RANSAC) on bucketed reliable flow; the
    translation is a unit direction (no scale).  Model selection against a pure rotation (a
    homography K R K^-1): when the homography explains at least ``rotation_inlier_share`` as
    many correspondences as the essential matrix, the translation is not observable (ego still,
    or turning on the spot) and the result is status "rotation" with t = 0."""
    h, w = flow.shape[:2]
    K = pcalib.P_rect[:, :3]
    ransac_px = cfg.ransac_px * px_scale
    vv, uu = np.nonzero(reliable)
    if len(uu) < cfg.min_inliers:
        return EgoMotion("failed", metric=False, candidates=len(uu),
                         reason=f"{len(uu)} pixels with reliable flow < {cfg.min_inliers}")
    uv = np.stack([uu, vv], 1).astype(np.float64)
    per_cell = max(cfg.bucket_max, cfg.max_points_no_lidar // (cfg.bucket_grid[0] * cfg.bucket_grid[1]))
    sel = _bucket(uv, (h, w), cfg.bucket_grid, per_cell, rng)
    p0 = uv[sel]
    p1 = p0 + flow[vv[sel], uu[sel]].astype(np.float64)
    cv2.setRNGSeed(int(rng.integers(0, 2**31 - 1)))
    try:
        Hm, _ = cv2.findHomography(p0, p1, cv2.RANSAC, ransac_px)
        E, mask = cv2.findEssentialMat(p0, p1, K, cv2.RANSAC, 0.999, ransac_px)
    except cv2.error as exc:
        return EgoMotion("failed", metric=False, candidates=len(uu), reason=f"two-view geometry failed ({exc.err})")
    n_h = 0
    if Hm is not None:
        proj = cv2.perspectiveTransform(p0[None], Hm)[0]
        n_h = int((np.linalg.norm(proj - p1, axis=1) < ransac_px).sum())
    n_e, R, t = 0, None, None
    if E is not None and E.shape == (3, 3):
        # RANSAC finds the consensus; least-median on its inliers is far more accurate (the
        # 5-point minimal sets leave several degrees of error in the translation direction)
        inl = mask.ravel() > 0
        if inl.sum() >= 8:
            E2, mask2 = cv2.findEssentialMat(p0[inl], p1[inl], K, cv2.LMEDS, 0.999)
            if E2 is not None and E2.shape == (3, 3):
                E = E2
        n_e, R, t, _ = cv2.recoverPose(E, p0, p1, K, mask=mask)
    if Hm is not None and n_h >= cfg.rotation_inlier_share * n_e and n_h >= cfg.min_inliers:
        u_, _, vt_ = np.linalg.svd(np.linalg.inv(K) @ Hm @ K)   # nearest rotation
        Rm = u_ @ vt_
        if np.linalg.det(Rm) < 0:
            Rm = -Rm
        T_cam = np.eye(4)
        T_cam[:3, :3] = Rm
        return EgoMotion("rotation", T_cam, False, n_h, len(uu))
    ratio = n_e / len(sel)
    if R is None or n_e < cfg.min_inliers or ratio < cfg.min_inlier_ratio:
        return EgoMotion("failed", metric=False, inliers=int(n_e), candidates=len(uu),
                         reason=f"essential matrix: {n_e} inliers ({ratio:.2f})")
    T_cam = np.eye(4)
    T_cam[:3, :3], T_cam[:3, 3] = R, t.ravel() / max(np.linalg.norm(t), 1e-12)
    # without metric depth the camera offset t2 cannot be applied consistently; it only
    # matters for the scale-free epipolar test at the millimetre level
    return EgoMotion("essential", T_cam, False, int(n_e), len(uu))
