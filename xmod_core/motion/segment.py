"""Per-frame motion evidence and instance masks (see the package docstring for the method)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import ndimage

from ..flow import forward_backward_error, make_flow, to_gray
from ..kitti import CameraCalib
from .config import MotionConfig
from .ego import (EgoMotion, LidarView, MotionInputError, camera_offset, estimate_essential,
                  estimate_pnp, lidar_view, processing_calib, rect_to_cam)

__all__ = ["Evidence", "PairResult", "MotionSegmenter", "MotionInputError"]


@dataclass
class Evidence:
    """Motion evidence for the pixels of one frame from one flow direction (processing res).

    score (h,w) float32: distance of the measured flow to the static-world flow, in units of its
    tolerance (> 1: not explained by ego-motion); NaN where the flow is not valid.
    valid (h,w) bool: flow passed the forward-backward check and is inside the border.
    reliable (h,w) bool: valid and textured (allowed to seed a mask or to veto one).
    point_score (M,) float32: the same score for each visible LiDAR point at its own depth
    (None without LiDAR or metric ego-motion); NaN where the point's flow is not valid.
    """
    score: np.ndarray
    valid: np.ndarray
    reliable: np.ndarray
    flow: np.ndarray
    ego: EgoMotion
    textured: np.ndarray | None = None
    point_score: np.ndarray | None = None


@dataclass
class PairResult:
    """Result of :meth:`MotionSegmenter.segment_pair` (or one frame of a drive).

    instances: uint16 (H,W) at the input resolution, 0 = background, 1..n objects; None when
               the ego-motion estimate failed (the frame is *unknown*, not empty).
    residual:  float32 (h,w) combined motion score at the processing resolution (NaN: no valid flow).
    reliable:  bool (h,w) pixels whose flow can be trusted (evidence either way).
    ego:       :class:`EgoMotion` of the pair (status "failed" -> unknown).
    """
    instances: np.ndarray | None
    residual: np.ndarray
    reliable: np.ndarray
    ego: EgoMotion
    n_instances: int = 0
    info: dict = field(default_factory=dict)

    @property
    def unknown(self) -> bool:
        return self.instances is None


def _check_image(img, name: str) -> np.ndarray:
    if img is None:
        raise MotionInputError(f"{name}: missing image (no neighbour frame?)")
    a = np.asarray(img)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise MotionInputError(f"{name}: expected a uint8 (H,W) or (H,W,3) image, got dtype {a.dtype} "
                               f"shape {a.shape}")
    if min(a.shape[:2]) < 16:
        raise MotionInputError(f"{name}: image {a.shape[1]}x{a.shape[0]} is too small")
    return a


def _odd(x: float) -> int:
    """Nearest odd integer >= 1 (window sizes)."""
    return max(1, 2 * int(round((x - 1) / 2)) + 1)


def _rigid_deviation(u, v, fx, fy, lo, hi, Hm: np.ndarray, b: tuple):
    """Distance of the measured position (u + fx, v + fy) to the segment of static-world positions
    p'(rho) = pi(Hm p + rho b), rho in [lo, hi] (inverse depth), and the length of the rigid flow
    at the closest point of the segment.  Element-wise on float32 arrays of any (equal) shape:
    pixels (h,w) or points (M,); ``lo`` / ``hi`` may be modified (clamped) in place."""
    b0, b1, b2 = (np.float32(x) for x in b)
    # element-wise (3x3 BLAS on (3, n) float32 is slower and spawns threads)
    a0 = np.float32(Hm[0, 0]) * u + np.float32(Hm[0, 1]) * v + np.float32(Hm[0, 2])
    a1 = np.float32(Hm[1, 0]) * u + np.float32(Hm[1, 1]) * v + np.float32(Hm[1, 2])
    a2 = np.float32(Hm[2, 0]) * u + np.float32(Hm[2, 1]) * v + np.float32(Hm[2, 2])
    if b2 < 0:  # forward motion: keep the point at least half its depth away at b
        np.minimum(hi, a2 * (np.float32(0.5) / -b2), out=hi)
        np.minimum(lo, hi, out=lo)
    den = a2 + lo * b2
    e0x = (a0 + lo * b0) / den
    e0y = (a1 + lo * b1) / den
    den = a2 + hi * b2
    dx = (a0 + hi * b0) / den - e0x
    dy = (a1 + hi * b1) / den - e0y
    qx = u + fx - e0x          # q - e0
    qy = v + fy - e0y
    t = (qx * dx + qy * dy) / (dx * dx + dy * dy + np.float32(1e-9))
    np.clip(t, 0.0, 1.0, out=t)
    # q - closest = (q - e0) - t d ; rigid flow = e0 + t d - p
    dist = np.hypot(qx - t * dx, qy - t * dy)
    rigid = np.hypot(e0x + t * dx - u, e0y + t * dy - v)
    return dist, rigid


def _grown_box(x: int, y: int, bw: int, bh: int, h: int, w: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the box (x, y, bw, bh) grown by half its larger side (>= 8 px) on every
    side, clipped to the (h, w) image: room for a region to grow to its whole object."""
    mg = max(8, int(0.5 * max(bw, bh)))
    return max(0, y - mg), min(h, y + bh + mg), max(0, x - mg), min(w, x + bw + mg)


@dataclass(frozen=True)
class ProcPx:
    """Pixel parameters at the processing resolution (config values are at input resolution)."""
    fb_abs: float
    border: int
    sigma: float
    depth_window: tuple
    near_window: tuple
    open: int
    close: int
    split_min: float

    @classmethod
    def from_config(cls, cfg: MotionConfig) -> "ProcPx":
        s = cfg.scale
        r, m = cfg.residual, cfg.mask
        return cls(cfg.reliability.fb_abs_px * s, int(round(cfg.reliability.border_px * s)), r.sigma_px * s,
                   tuple(_odd(k * s) for k in r.depth_window), tuple(_odd(k * s) for k in r.near_window),
                   _odd(m.open_px * s) if m.open_px > 0 else 0, _odd(m.close_px * s) if m.close_px > 0 else 0,
                   m.split_min_px * s)


class MotionSegmenter:
    """Motion instance masks from consecutive frames; see :mod:`xmod_core.motion`.

    Library use::

        seg = MotionSegmenter(load_motion_config("config/motion.yaml"))
        res = seg.segment_pair(img_t, img_t1, scan_t, calib, T_t_to_t1)   # scan / pose may be None
        res.instances, res.residual, res.reliable, res.ego.status
    """

    def __init__(self, cfg: MotionConfig | None = None, flow=None):
        self.cfg = cfg or MotionConfig()
        try:
            self.flow = flow or make_flow(self.cfg.flow.method, **self.cfg.flow.kwargs())
        except (ValueError, TypeError) as exc:
            raise MotionInputError(f"flow: {exc}") from exc
        self._grid_cache: dict = {}
        self.px = ProcPx.from_config(self.cfg)

    # ------------------------------------------------------------------ sizes and inputs
    def processing_size(self, height: int, width: int) -> tuple[int, int]:
        s = self.cfg.scale
        return max(16, int(round(height * s))), max(16, int(round(width * s)))

    def prepare_image(self, img, name: str = "image") -> np.ndarray:
        """uint8 grey image at the processing resolution."""
        a = _check_image(img, name)
        g = to_gray(a, name)
        h, w = self.processing_size(*g.shape)
        if (h, w) != g.shape:
            g = cv2.resize(g, (w, h), interpolation=cv2.INTER_AREA)
        return g

    def processing_calib(self, calib: CameraCalib, height: int, width: int) -> CameraCalib:
        if not isinstance(calib, CameraCalib):
            raise MotionInputError(f"calib: expected a CameraCalib, got {type(calib).__name__}")
        if (calib.height, calib.width) != (height, width):
            raise MotionInputError(f"calib is for {calib.width}x{calib.height} images but the image is "
                                   f"{width}x{height}")
        return processing_calib(calib, *self.processing_size(height, width))

    def lidar(self, scan, pcalib: CameraCalib, rng=None) -> LidarView | None:
        if scan is None:
            return None
        rng = rng or np.random.default_rng(0)
        return lidar_view(scan, pcalib, self.cfg.ego, rng, self.px.depth_window, self.px.near_window,
                          self.cfg.residual.open_far_near_holes)

    # ------------------------------------------------------------------ flow and reliability
    def flows(self, ga: np.ndarray, gb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.flow(ga, gb), self.flow(gb, ga)

    def texture(self, g: np.ndarray) -> np.ndarray:
        c = self.cfg.reliability
        eig = cv2.cornerMinEigenVal(g.astype(np.float32) / 255.0, c.texture_block, ksize=3)
        # gradients per pixel grow as the image shrinks: the threshold is given at input resolution
        return eig > c.texture_min_eig / self.cfg.scale ** 2

    def validity(self, fw: np.ndarray, bw: np.ndarray) -> np.ndarray:
        """Forward-backward consistent flow, not within ``border_px`` of the image edge."""
        c = self.cfg.reliability
        err = forward_backward_error(fw, bw)
        mag = cv2.magnitude(fw[..., 0], fw[..., 1])
        valid = err < self.px.fb_abs + c.fb_rel * mag
        b = self.px.border
        if b > 0:
            valid[:b], valid[-b:], valid[:, :b], valid[:, -b:] = False, False, False, False
        return valid

    # ------------------------------------------------------------------ ego-motion
    def ego_motion(self, pose, lv: LidarView | None, flow: np.ndarray, reliable: np.ndarray,
                   pcalib: CameraCalib, rng) -> EgoMotion:
        src = self.cfg.ego.source
        if pose is not None and src in ("auto", "oxts"):
            T = np.asarray(pose, dtype=np.float64)
            if T.shape != (4, 4):
                raise MotionInputError(f"pose_t_to_t1: expected a (4,4) transform, got shape {T.shape}")
            if not np.all(np.isfinite(T)):
                return EgoMotion("failed", reason="pose_t_to_t1 is not finite")
            return EgoMotion("oxts", T, True)
        if src == "oxts":
            return EgoMotion("failed", reason="ego.source=oxts but no pose for this pair")
        if lv is not None:
            return estimate_pnp(lv, flow, reliable, pcalib, self.cfg.ego, rng, self.cfg.scale)
        return estimate_essential(flow, reliable, pcalib, self.cfg.ego, rng, self.cfg.scale)

    # ------------------------------------------------------------------ residual
    def _pixel_grid(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """(u, v) float32 (h,w) pixel coordinates (cached)."""
        key = (h, w)
        if key not in self._grid_cache:
            vv, uu = np.mgrid[0:h, 0:w].astype(np.float32)
            self._grid_cache[key] = (uu, vv)
        return self._grid_cache[key]

    def depth_interval(self, lv: LidarView | None, h: int, w: int, metric: bool) -> tuple[np.ndarray, np.ndarray]:
        """Inverse-depth interval [rho_lo, rho_hi] per pixel (h,w): min / max of the LiDAR inverse
        depths in a ``depth_window`` around the pixel, widened by ``depth_rel``; where the window
        holds no point (or without LiDAR) [0, 1 / min_depth_m]: only the epipolar constraint."""
        c = self.cfg.residual
        rho_cap = 1.0 / c.min_depth_m if metric else 2.0
        if lv is None or lv.n == 0 or not metric:
            return np.zeros((h, w), np.float32), np.full((h, w), rho_cap, np.float32)
        known = lv.rho_max > 0
        lo = lv.rho_min * np.float32(1 - c.depth_rel)                      # 0 where unknown
        hi = np.where(known, lv.rho_max * np.float32(1 + c.depth_rel), np.float32(rho_cap))
        return lo, hi

    def evidence(self, g_a: np.ndarray, fw: np.ndarray, bw: np.ndarray, ego: EgoMotion,
                 lv: LidarView | None, pcalib: CameraCalib, valid: np.ndarray | None = None,
                 textured: np.ndarray | None = None) -> Evidence:
        """Score how far the measured flow fw (a -> b) is from the static world's flow under
        ``ego``: distance of p + fw(p) to the segment of possible rigid positions
        p'(rho) = pi(K R K^-1 p + rho K t), rho in the pixel's inverse-depth interval."""
        h, w = fw.shape[:2]
        if valid is None:
            valid = self.validity(fw, bw)
        if textured is None:
            textured = self.texture(g_a)
        reliable = valid & textured
        score = np.full((h, w), np.nan, np.float32)
        point_score = None
        if ego.ok:
            c = self.cfg.residual
            T = rect_to_cam(ego.T, camera_offset(pcalib)) if ego.metric else ego.T
            K = pcalib.P_rect[:, :3]
            Hm = K @ T[:3, :3] @ np.linalg.inv(K)
            b0, b1, b2 = (float(x) for x in K @ T[:3, 3])
            u, v = self._pixel_grid(h, w)
            lo, hi = self.depth_interval(lv, h, w, ego.metric)
            dist, rigid = _rigid_deviation(u, v, fw[..., 0], fw[..., 1], lo, hi, Hm, (b0, b1, b2))
            score = dist / (np.float32(self.px.sigma) + np.float32(c.rel) * rigid)
            score[~valid] = np.nan
            if lv is not None and lv.n > 0 and ego.metric:
                point_score = self._point_scores(fw, valid, lv, Hm, (b0, b1, b2))
        return Evidence(score, valid, reliable, fw, ego, textured, point_score)

    def _point_scores(self, fw: np.ndarray, valid: np.ndarray, lv: LidarView, Hm: np.ndarray,
                      b: tuple) -> np.ndarray:
        """(M,) score of every visible LiDAR point, as :meth:`evidence` scores pixels but with the
        point's *own* depth (+- ``point_depth_rel``) instead of the depth interval of a window:
        motion along the viewing ray (a lorry ahead driving on, an oncoming car) shifts the flow
        along the epipolar line by less than a window's depth spread allows, but by more than a
        single LiDAR range does.  NaN where the point's pixel has no valid flow or the point lies
        on a silhouette (its window holds depths beyond ``point_interior_rel`` of its own)."""
        c = self.cfg.residual
        w = fw.shape[1]
        pu, pv = lv.pix % w, lv.pix // w
        u = lv.uv[:, 0].astype(np.float32)
        v = lv.uv[:, 1].astype(np.float32)
        rho = (1.0 / lv.depth).astype(np.float32)
        lo = rho / np.float32(1 + c.point_depth_rel)
        hi = rho / np.float32(max(1 - c.point_depth_rel, 1e-3))
        f = fw[pv, pu]
        dist, rigid = _rigid_deviation(u, v, f[:, 0], f[:, 1], lo, hi, Hm, b)
        score = dist / (np.float32(self.px.sigma) + np.float32(c.rel) * rigid)
        # only points inside a surface count: near a silhouette DIS drags the flow of what lies
        # behind (or in front) onto the point's pixel, which no static depth explains
        tol = np.float32(1 + c.point_interior_rel)
        interior = (lv.rho_max[pv, pu] <= rho * tol) & (lv.rho_min[pv, pu] * tol >= rho)
        score[~(valid[pv, pu] & interior)] = np.nan
        return score

    # ------------------------------------------------------------------ masks
    def combine(self, evs: list[Evidence]) -> tuple[np.ndarray, np.ndarray]:
        """Temporal agreement: where several evidences are valid the *smallest* score counts
        (a pixel must look moving in both directions).  Where only one of several is valid
        (occlusion, border) its score is scaled by ``single_evidence_factor``; a frame judged on
        one pair only (:meth:`segment_pair`, first / last frame of a drive, a missing neighbour)
        has its score scaled by ``single_pair_factor`` (no temporal agreement to lean on).
        Returns (score with NaN where none is valid, reliable-any)."""
        evs = self._temporal(evs)
        score = self._combine_scores([e.score for e in evs])
        reliable = np.logical_or.reduce([e.reliable for e in evs])
        return score, reliable

    def combine_points(self, evs: list[Evidence]) -> np.ndarray | None:
        """The evidences' per-point scores combined as :meth:`combine` combines pixels
        ((M,) float32, NaN where no evidence is valid); None without point scores."""
        evs = self._temporal(evs)
        if not evs or any(e.point_score is None for e in evs):
            return None
        return self._combine_scores([e.point_score for e in evs])

    def _temporal(self, evs: list[Evidence]) -> list[Evidence]:
        evs = [e for e in evs if e.ego.ok]
        return evs if self.cfg.mask.temporal else evs[:1]

    def _combine_scores(self, scores: list[np.ndarray]) -> np.ndarray:
        c = self.cfg.mask
        if len(scores) == 1:
            return scores[0] * np.float32(c.single_pair_factor)
        stack = np.stack(scores)
        n_valid = np.isfinite(stack).sum(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN columns stay NaN
            score = np.nanmin(stack, axis=0)
        score[n_valid == 1] *= np.float32(c.single_evidence_factor)
        return score

    def masks(self, score: np.ndarray, reliable: np.ndarray, lv: LidarView | None, flow: np.ndarray,
              out_size: tuple[int, int], point_score: np.ndarray | None = None,
              estimated: bool = False) -> tuple[np.ndarray, dict]:
        """Threshold, clean and split the combined score into instances, then add the movers
        that only their LiDAR points reveal (:meth:`_point_objects`, needs ``point_score``, the
        combined per-point scores; ``estimated``: the ego-motion was estimated from the data, not
        given by oxts poses); uint16 (H,W) at out_size."""
        c, r = self.cfg.mask, self.cfg.residual
        h, w = score.shape
        s = np.nan_to_num(score, nan=0.0)
        cand = s > r.threshold
        info = {}
        ground_only = lv.ground_only if (lv is not None and lv.n > 0) else None
        if ground_only is not None:
            cand &= ~ground_only
        m = cand.astype(np.uint8)
        if self.px.open > 1:
            m = cv2.morphologyEx(m, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (self.px.open,) * 2))
        if self.px.close > 1:
            m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (self.px.close,) * 2))
            if ground_only is not None:
                m[ground_only] = 0
        n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        keep = np.zeros(n, bool)
        area_min = c.min_area_px * (h * w) / float(out_size[0] * out_size[1])
        if n > 1:
            seeds = np.bincount(lab[(s > r.seed_threshold) & reliable & (m > 0)], minlength=n)
            keep = ((stats[:, cv2.CC_STAT_AREA] >= area_min)
                    & (seeds >= np.maximum(c.min_seed_px, c.min_seed_share * stats[:, cv2.CC_STAT_AREA])))
            keep[0] = False
            info["rejected_small_or_unseeded"] = int(n - 1 - keep[1:].sum())
            if lv is not None and lv.n > 0:
                l_pts = lab.ravel()[lv.pix]
                above = np.bincount(l_pts[lv.above], minlength=n)
                ground = np.bincount(l_pts[lv.ground], minlength=n)
                share = above / np.maximum(above + ground, 1)
                obj = (above >= c.min_object_points) & (share >= c.min_object_share)
                info["rejected_no_object_points"] = int((keep & ~obj).sum())
                keep &= obj
        out = np.zeros((h, w), np.int32)
        next_id = 1
        have_lidar = lv is not None and lv.n > 0
        use_lidar = have_lidar and c.lidar_refine and n > 1
        use_points = have_lidar and c.point_objects and point_score is not None
        if use_lidar or use_points:
            kw, kh = self.px.depth_window
            kernel = np.ones((kh, kw), np.uint8)
            l_pts = lab.ravel()[lv.pix]
            valid = np.isfinite(score)
            grow_ok = (~valid | (s > c.grow_threshold))
            if ground_only is not None:
                grow_ok &= ~ground_only
            above_idx = np.flatnonzero(lv.above)
            has_pt = cv2.dilate((lv.depth_map > 0).astype(np.uint8), kernel) > 0
            scene_obj = self._scene_objects(lv, above_idx)
        for k in np.flatnonzero(keep):
            x, y, bw_, bh_ = stats[k, :4]
            if use_lidar:
                y0, y1, x0, x1 = _grown_box(x, y, bw_, bh_, h, w)
                lab_c = lab[y0:y1, x0:x1]
                sub = lab_c == k
                others = keep[lab_c] & ~sub          # other motion regions are not grown into
                pts = above_idx[l_pts[above_idx] == k]
                parts = self._lidar_parts(sub, pts, lv, (y0, y1, x0, x1), s, score,
                                          grow_ok[y0:y1, x0:x1] & ~others, has_pt, kernel, scene_obj)
            else:
                x0, y0, x1, y1 = x, y, x + bw_, y + bh_
                parts = [lab[y0:y1, x0:x1] == k]
            region = out[y0:y1, x0:x1]
            for part in parts:
                if c.fill_holes:
                    part = ndimage.binary_fill_holes(part)
                for piece in self._split(part, flow[y0:y1, x0:x1]):
                    piece = piece & (region == 0)
                    if piece.sum() < area_min:
                        continue
                    region[piece] = next_id
                    next_id += 1
        if use_points:
            n_before = next_id
            next_id = self._point_objects(out, next_id, point_score, lv, above_idx, scene_obj, s, score,
                                          grow_ok, has_pt, kernel, area_min, estimated)
            info["point_objects"] = next_id - n_before
        info["instances"] = next_id - 1
        H, W = out_size
        if (H, W) != (h, w):
            out = cv2.resize(out.astype(np.uint16), (W, H), interpolation=cv2.INTER_NEAREST)
        return out.astype(np.uint16), info

    def _scene_objects(self, lv: LidarView, above_idx: np.ndarray) -> np.ndarray:
        """(M,) object label of every visible LiDAR point (-1: not above the ground): the
        above-ground points clustered over the whole frame in bird's-eye view (occupancy cells
        of ``cluster_cell_m``, 8-connected) -- the objects of the scene, whole."""
        lab = np.full(lv.n, -1, np.int64)
        if len(above_idx) == 0:
            return lab
        P = lv.xyz_cam[above_idx]
        cell = self.cfg.mask.cluster_cell_m
        ix = np.floor(P[:, 0] / cell).astype(np.int64)
        iz = np.floor(P[:, 2] / cell).astype(np.int64)
        ix -= ix.min()
        iz -= iz.min()
        if (ix.max() + 1) * (iz.max() + 1) > 16_000_000:   # absurd extent: points are outliers
            keep = (np.abs(P[:, 0]) < 200) & (P[:, 2] < 400)
            ix, iz = ix * keep, iz * keep
        grid = np.zeros((ix.max() + 1, iz.max() + 1), bool)
        grid[ix, iz] = True
        glab, _ = ndimage.label(grid, structure=np.ones((3, 3), bool))
        lab[above_idx] = glab[ix, iz]
        return lab

    def _lidar_parts(self, sub: np.ndarray, pts: np.ndarray, lv: LidarView, box, s: np.ndarray,
                     score: np.ndarray, grow_ok: np.ndarray, has_pt: np.ndarray,
                     kernel: np.ndarray, scene_obj: np.ndarray, force: bool = False) -> list[np.ndarray]:
        """Objects of one motion component from its LiDAR points (crop ``box`` = y0, y1, x0, x1).

        The above-ground points ``pts`` of the component are clustered in the bird's-eye view
        (occupancy cells of ``cluster_cell_m``, 8-connected): two vehicles in a queue become two
        clusters.  A cluster whose points do not look moving (median score <= threshold) is
        dropped (static structure caught in the component by flow bleeding), and so is one whose
        whole scene object (:meth:`_scene_objects`, also outside the region) has a median score
        <= ``object_min_score`` (a moving object moves as a whole).  Each cluster keeps
        the component pixels near its points (depth trimming: pixels whose LiDAR neighbourhood is
        background are cut), then grows over neighbouring pixels near its points (same BEV box)
        that are moving-ish (score > grow_threshold) or have no valid flow (textureless paint,
        large displacements): the whole object, not only its textured part.  Component pixels
        without any LiDAR nearby (above the scan) go to the nearest cluster.  ``force``: the
        points are already known to move (:meth:`_point_objects`): no score tests."""
        c, r = self.cfg.mask, self.cfg.residual
        y0, y1, x0, x1 = box
        if len(pts) < c.min_object_points:
            return [sub]
        P = lv.xyz_cam[pts]
        cell = c.cluster_cell_m
        ix = np.floor(P[:, 0] / cell).astype(np.int64)
        iz = np.floor(P[:, 2] / cell).astype(np.int64)
        ix -= ix.min()
        iz -= iz.min()
        if (ix.max() + 1) * (iz.max() + 1) > 4_000_000:  # absurd extent: leave the component as is
            return [sub]
        grid = np.zeros((ix.max() + 1, iz.max() + 1), bool)
        grid[ix, iz] = True
        glab, ng = ndimage.label(grid, structure=np.ones((3, 3), bool))
        plab = glab[ix, iz] - 1
        counts = np.bincount(plab, minlength=ng)
        ps = s.ravel()[lv.pix[pts]]
        hw = (y1 - y0, x1 - x0)
        W = s.shape[1]
        pu, pv = lv.pix[pts] % W - x0, lv.pix[pts] // W - y0
        ax = lv.xyz_cam[:, 0]
        az = lv.xyz_cam[:, 2]
        # above-ground points inside the crop (candidates for each cluster's neighbourhood)
        crop_pts = np.flatnonzero(lv.above & (lv.pix // W >= y0) & (lv.pix // W < y1)
                                  & (lv.pix % W >= x0) & (lv.pix % W < x1))
        cu, cv_ = lv.pix[crop_pts] % W - x0, lv.pix[crop_pts] // W - y0
        g_ok = grow_ok                                   # already cropped
        parts, cores = [], []
        for j in np.argsort(-counts):
            if counts[j] < max(c.min_object_points, c.cluster_min_share * len(pts)):
                continue
            mj = plab == j
            if not force and np.median(ps[mj]) <= r.threshold:
                continue
            pj = P[mj]
            m = c.cluster_margin_m
            zlo, zhi = pj[:, 2].min() * (1 - r.depth_rel) - m, pj[:, 2].max() * (1 + r.depth_rel) + m
            xlo, xhi = pj[:, 0].min() - m, pj[:, 0].max() + m
            inside = ((az[crop_pts] >= zlo) & (az[crop_pts] <= zhi)
                      & (ax[crop_pts] >= xlo) & (ax[crop_pts] <= xhi))
            # a moving object moves as a whole: all points of the scene object the cluster belongs
            # to (also outside the region) must agree -- a strip on the edge of a static lorry,
            # a reflection in a parked car's window are not motion
            whole = np.bincount(scene_obj[pts[mj]]).argmax()      # the scene object it is part of
            obj_pts = np.flatnonzero(scene_obj == whole)
            # ... unless the cluster is the bulk of that scene object (>= object_bulk_share of its
            # points): then the scene object is this mover merged in BEV with a neighbour (cars
            # side by side in adjacent lanes), not a static object with a moving-looking fragment
            if not force and (scene_obj[pts[mj]] == whole).sum() < c.object_bulk_share * len(obj_pts):
                obj_scores = score.ravel()[lv.pix[obj_pts]]
                obj_scores = obj_scores[np.isfinite(obj_scores)]
                if len(obj_scores) and np.median(obj_scores) <= c.object_min_score:
                    continue
            near = np.zeros(hw, np.uint8)
            near[cv_[inside], cu[inside]] = 1
            near = cv2.dilate(near, kernel) > 0
            core = np.zeros(hw, np.uint8)
            core[pv[mj], pu[mj]] = 1
            core = (cv2.dilate(core, kernel) > 0) & sub
            if not core.any():
                continue
            reach = core | (near & g_ok)
            nl, rl = cv2.connectedComponents(reach.astype(np.uint8), connectivity=8)
            touch = np.unique(rl[core])
            part = np.isin(rl, touch[touch > 0])
            parts.append(part)
            cores.append(core)
        if not parts:
            return []
        # component pixels with no LiDAR point nearby (above the scan): nearest cluster
        lost = sub & ~has_pt[y0:y1, x0:x1] & ~np.logical_or.reduce(parts)
        if lost.any():
            lbl = np.zeros(hw, np.int32)
            for i, part in enumerate(parts):
                lbl[part & (lbl == 0)] = i + 1
            _, (iy, ixx) = ndimage.distance_transform_edt(lbl == 0, return_indices=True)
            near_lbl = lbl[iy, ixx]
            for i in range(len(parts)):
                parts[i] = parts[i] | (lost & (near_lbl == i + 1))
        return parts

    def _point_objects(self, out: np.ndarray, next_id: int, point_score: np.ndarray, lv: LidarView,
                       above_idx: np.ndarray, scene_obj: np.ndarray, s: np.ndarray, score: np.ndarray,
                       grow_ok: np.ndarray, has_pt: np.ndarray, kernel: np.ndarray, area_min: float,
                       estimated: bool = False) -> int:
        """Movers that only their LiDAR points reveal, added to ``out`` (ids from ``next_id``;
        returns the next free id).

        A scene object (:meth:`_scene_objects`: above-ground points clustered in bird's-eye view
        over the frame) becomes an instance when the median of its points' own-depth scores
        (``point_score``, :meth:`_point_scores`) exceeds ``point_object_score``, over at least
        ``point_object_min_points`` points with valid flow, it has a movable object's size
        (``point_object_max_extent_m`` long / wide, ``point_object_max_height_m`` tall: not a
        building or a row of trees), and under ``point_object_covered`` of its points already lie
        in an instance.  With an *estimated* ego-motion (``estimated``: PnP, not oxts poses) the
        median must also exceed ``point_object_level_ratio`` x the lower quartile of all scored
        points of the frame: a translation a few per cent off lifts every static point's score.
        These are mostly vehicles moving along the viewing ray (ahead of us, oncoming): their
        flow deviates from the static world's by less than the per-pixel test, with its window of
        depths, can see, but consistently over hundreds of points.  The mask
        is grown from the points as a motion region's LiDAR cluster is (:meth:`_lidar_parts`)."""
        c = self.cfg.mask
        h, w = out.shape
        if len(above_idx) == 0:
            return next_id
        L = scene_obj[above_idx]                                    # (A,) >= 1
        nobj = int(L.max()) + 1
        ps = point_score[above_idx]
        fin = np.isfinite(ps)
        Lf, pf = L[fin], ps[fin]
        cnt = np.bincount(Lf, minlength=nobj)
        # per-object median of the valid scores: sort by (object, score), take the middle element
        order = np.lexsort((pf, Lf))
        start = np.concatenate([[0], np.cumsum(cnt)[:-1]])
        med = np.full(nobj, -np.inf, np.float32)
        has = cnt > 0
        med[has] = pf[order][start[has] + (cnt[has] - 1) // 2]
        P = lv.xyz_cam[above_idx]                                   # (A, 3) camera x right, y down, z ahead
        lo = np.full((nobj, 3), np.inf)
        hi = np.full((nobj, 3), -np.inf)
        np.minimum.at(lo, L, P)
        np.maximum.at(hi, L, P)
        ext = hi - lo                                               # (nobj, 3)
        thr = c.point_object_score
        if estimated:
            # the static world's level: the lower quartile of all scored points of the frame (a
            # lorry alongside may cover half the view, it cannot cover three quarters); an
            # estimated ego-motion a few per cent off lifts it, and every static object with it
            all_fin = np.isfinite(point_score)
            if all_fin.any():
                thr = max(thr, c.point_object_level_ratio * float(np.percentile(point_score[all_fin], 25)))
        n_all = np.bincount(L, minlength=nobj)
        covered = np.bincount(L, weights=out.ravel()[lv.pix[above_idx]] > 0, minlength=nobj)
        cand = (has & (cnt >= c.point_object_min_points) & (med > thr)
                & (np.maximum(ext[:, 0], ext[:, 2]) <= c.point_object_max_extent_m)
                & (ext[:, 1] <= c.point_object_max_height_m)
                & (covered < c.point_object_covered * np.maximum(n_all, 1)))
        for k in np.flatnonzero(cand):                             # a few objects per frame
            pts = above_idx[L == k]
            pix = lv.pix[pts]
            pu, pv = pix % w, pix // w
            y0, y1, x0, x1 = _grown_box(pu.min(), pv.min(), pu.max() - pu.min() + 1, pv.max() - pv.min() + 1, h, w)
            region = out[y0:y1, x0:x1]
            foot = np.zeros(region.shape, np.uint8)
            foot[pv - y0, pu - x0] = 1
            sub = (cv2.dilate(foot, kernel) > 0) & (region == 0)
            parts = self._lidar_parts(sub, pts, lv, (y0, y1, x0, x1), s, score,
                                      grow_ok[y0:y1, x0:x1] & (region == 0), has_pt, kernel, scene_obj,
                                      force=True)
            for part in parts:
                if c.fill_holes:
                    part = ndimage.binary_fill_holes(part)
                piece = part & (region == 0)
                if piece.sum() < area_min:
                    continue
                region[piece] = next_id
                next_id += 1
        return next_id

    def _split(self, region: np.ndarray, flow: np.ndarray) -> list[np.ndarray]:
        """Split a region whose flow is clearly two motions: 2-means on the flow vectors, one
        affine flow model per cluster vs one for all; split when the single model leaves a
        median error above ``split_min_px`` and ``split_ratio`` times that of the worse of the
        two models, and both parts hold ``split_min_share`` of the region.  (An approaching or
        turning rigid object has a smoothly varying, near-affine flow: it is not split.)"""
        c = self.cfg.mask
        area_min = 2 * c.min_area_px * self.cfg.scale ** 2
        vv, uu = np.nonzero(region)
        if len(uu) < area_min:
            return [region]
        f_all = flow[vv, uu].astype(np.float32)
        if not np.all(np.isfinite(f_all)):
            return [region]
        # the decision is taken on at most 600 pixels (evenly strided): cheap and plenty
        stride = max(1, len(uu) // 600)
        f = f_all[::stride]
        A = np.stack([uu[::stride], vv[::stride], np.ones_like(uu[::stride])], 1).astype(np.float64)

        def rms(sel):  # robust: median residual of an affine flow fit (boundary blur is the tail)
            coef, *_ = np.linalg.lstsq(A[sel], f[sel], rcond=None)
            return float(np.median(np.linalg.norm(A[sel] @ coef - f[sel], axis=1)))

        one = rms(slice(None))
        if one < self.px.split_min:  # one affine motion explains the region
            return [region]
        crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.05)
        cv2.setRNGSeed(1)
        _, lbl, centres = cv2.kmeans(f, 2, None, crit, 2, cv2.KMEANS_PP_CENTERS)
        lbl = lbl.ravel()
        share = min(lbl.mean(), 1 - lbl.mean())
        if share < c.split_min_share or min((lbl == 0).sum(), (lbl == 1).sum()) < 3:
            return [region]
        two = max(rms(lbl == 0), rms(lbl == 1))
        if one < c.split_ratio * two:
            return [region]
        d0 = np.sum((f_all - centres[0]) ** 2, 1)
        d1 = np.sum((f_all - centres[1]) ** 2, 1)
        lbl = (d1 < d0).astype(np.int8)
        parts = []
        lab_img = np.full(region.shape, -1, np.int8)
        lab_img[vv, uu] = lbl
        lab_img = cv2.medianBlur((lab_img + 1).astype(np.uint8), 5).astype(np.int8) - 1
        for k in (0, 1):
            mk = ((lab_img == k) & region).astype(np.uint8)
            n, lab = cv2.connectedComponents(mk, connectivity=8)
            for j in range(1, n):
                comp = lab == j
                if comp.sum() >= c.split_min_share * len(uu):
                    parts.append(comp)
        return parts if len(parts) >= 2 else [region]

    # ------------------------------------------------------------------ public one-pair API
    def segment_pair(self, img_t, img_t1, scan_t, calib: CameraCalib, pose_t_to_t1=None,
                     seed: int = 0) -> PairResult:
        """Motion instances of frame t from the pair (t, t+1).

        img_t, img_t1: uint8 RGB (H,W,3) or grey (H,W), same size as ``calib``.
        scan_t: (N,3|4) velodyne points of frame t, or None (no LiDAR: epipolar test only,
                no objectness test).  Non-finite points are ignored.
        pose_t_to_t1: (4,4) rect(t) -> rect(t+1) camera motion (e.g. from oxts, see
                :func:`relative_motion_from_poses`), or None to estimate it from the data.
        """
        a = _check_image(img_t, "img_t")
        b = _check_image(img_t1, "img_t1")
        if a.shape[:2] != b.shape[:2]:
            raise MotionInputError(f"img_t is {a.shape[1]}x{a.shape[0]} but img_t1 is {b.shape[1]}x{b.shape[0]}: "
                                   "frames of a pair must have the same size")
        H, W = a.shape[:2]
        pcalib = self.processing_calib(calib, H, W)
        ga, gb = self.prepare_image(a, "img_t"), self.prepare_image(b, "img_t1")
        rng = np.random.default_rng(seed)
        lv = self.lidar(scan_t, pcalib, rng)
        fw, bw = self.flows(ga, gb)
        valid = self.validity(fw, bw)
        tex = self.texture(ga)
        ego = self.ego_motion(pose_t_to_t1, lv, fw, valid & tex, pcalib, rng)
        ev = self.evidence(ga, fw, bw, ego, lv, pcalib, valid, tex)
        return self.finish([ev], lv, (H, W))

    def finish(self, evs: list[Evidence], lv: LidarView | None, out_size) -> PairResult:
        """Instances of one frame from its evidences (1 or 2 flow directions)."""
        ok = [e for e in evs if e.ego.ok]
        ego = ok[0].ego if ok else (evs[0].ego if evs else EgoMotion("failed", reason="no neighbour frame"))
        if not ok:
            h, w = evs[0].score.shape if evs else (1, 1)
            rel = np.zeros((h, w), bool)
            return PairResult(None, np.full((h, w), np.nan, np.float32), rel, ego,
                              info={"reason": ego.reason or "ego-motion failed"})
        score, reliable = self.combine(ok)
        inst, info = self.masks(score, reliable, lv, ok[0].flow, out_size, self.combine_points(ok),
                                estimated=any(e.ego.status != "oxts" for e in ok))
        info["evidences"] = len(ok)
        return PairResult(inst, score, reliable, ego, info["instances"], info)
