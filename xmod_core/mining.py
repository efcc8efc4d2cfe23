"""Mined labels of still objects that look like the moving ones (UNION-style, Lentsch et al.,
NeurIPS 2024), to complete the motion masks, which mark only what moves (parked cars are never
labelled there).

1. **Candidates** per frame: the LiDAR points in the camera's view, ground removed and clustered
   (`baselines.clusters_and_candidates`: RANSAC ground, Euclidean clustering of 0.4 m voxels, the
   object-size filters). Each candidate's image mask is the convex hull of its points' pixels,
   farther candidates painted first (`baselines.paint_hulls`), at camera resolution.
2. **Descriptor** per candidate, geometry only (`FEATURES`): the oriented extent in the ground
   plane (longer and shorter side, principal axes of the points' x-y covariance), the height of
   its top and bottom above a plane fitted (least squares) to the frame's ground points, the
   linearity, planarity and scattering of its 3D covariance eigenvalues, log of its point count
   and log of a range-normalised density (points x range^2 / (longer side x height): the share of
   the visible face the scan covers, independent of the range). Optional: mean reflectance
   (`reflectance`, off by default: it is the simulator's class constant, not a real-world cue).
   All by bincounts and sorted segment reductions over the points, no loop over points or
   candidates.
3. **Movers**: candidates whose visible hull has an IoU above `iou` with one motion-mask instance
   (the masks of `python -m xmod_core.motion`, read at camera resolution). Frames without a motion
   mask (ego-motion unknown) give candidates but no mover statistics, and nobody is a mover there.
   A candidate standing on the ground has its hull extended down to it (`ground_contact`): ground
   removal cuts the lowest 0.2 m (wheels, feet), which the image and the motion masks show.
4. **Movable classifier**: descriptors standardised over the pooled candidates (all given drives,
   or each drive alone with `scope: drive`), then an ensemble of k-means runs (each k of `k`,
   `runs` seeds each; k-means++ seeding, Lloyd iterations; numpy, vectorised). In every run a
   cluster is movable when at least `share` of its members with a known motion status are movers
   (UNION's 5 % rule) and it holds at least `min_movers` movers. A candidate's *vote* is the share
   of the runs that put it in a movable cluster. `--k 20 --runs 1 --vote 1 --min-movers 1` is
   UNION's single k-means; the ensemble is steadier (one k-means draw moves a whole cluster of
   parked cars in or out) and gave a better precision / recall trade-off on the validation drives
   (docs/mining.md).
5. **Mined labels**: candidates voted movable (`vote` or more) that are no mover and lie mostly
   outside the motion masks (at most `max_motion_overlap` of their visible hull), as their visible
   hulls (nearer candidates occlude farther ones). Confidence: the vote.

Output, per drive (nothing else in the drive is touched)::

    DRIVE/image_02/mined_masks/NNNNNNNNNN.png   uint16 (H, W) at camera resolution, 0 = background,
                                                1..m the frame's mined instances; one PNG per frame
    DRIVE/image_02/mined_masks/mined.json       {"format": 1, "params": asdict(MiningConfig),
        "features": [...], "frames": {frame id: {"1": {"confidence": vote in (0, 1], "share": mean
        mover share of its clusters, "points": in-view LiDAR points, "range": m}, ...}},
        "motion_unknown": [frame ids without motion mask], "runs": [{"k", "seed", "members": [k],
        "movers": [k], "movable": [k] 0/1}], "stats": {"frames", "candidates", "movers", "mined"}}

With `scope: dataset` the runs are those of the pooled drives (the same in every drive's json).
A training loader merging them with the motion masks should let the motion mask win where both
are set (a mined hull may touch a motion instance by up to `max_motion_overlap` of its area).

CLI: ``python -m xmod_core.mining DRIVES... [--overlays DIR] [--iou 0.3] [--share 0.05]
[--k 10,15,20,30,40] [--runs 3] [--vote 0.7] [--scope dataset|drive] ...``; overlays show the motion masks in red and the mined labels in green.
See docs/mining.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .baselines import ClusterConfig, clusters_and_candidates, ground_feet_pixels, paint_hulls
from .frontview import project_scan
from .kitti import CameraCalib, KittiFormatError, KittiRawDrive
from .masks import MOTION_DIR, read_motion, unknown_frames

MINED_DIR = "image_02/mined_masks"
MINED_JSON = "mined.json"
FORMAT_VERSION = 1
FEATURES = ("length", "width", "top", "bottom", "linearity", "planarity", "scattering", "log_points",
            "log_density", "reflectance")
GEOMETRY = FEATURES[:-1]
DEFAULT_FEATURES = ("length", "width", "top", "bottom", "log_density")   # chosen on validation seed 77 (docs/mining.md)


@dataclass
class MiningConfig:
    iou: float = 0.3                 # hull IoU with one motion instance above which a candidate is a mover
    share: float = 0.05              # a k-means cluster is movable from this share of movers among its members (UNION)
    min_movers: int = 3              # ...and with at least this many movers (one false motion mask is not enough)
    k: tuple = (10, 15, 20, 30, 40)  # k-means cluster counts of the ensemble (one value: plain UNION)
    runs: int = 3                    # seeded k-means runs per k
    vote: float = 0.7                # mined: movable in at least this share of the runs
    restarts: int = 1                # k-means++ restarts within a run, the lowest inertia kept
    iters: int = 50                  # Lloyd iterations at most
    seed: int = 0
    scope: str = "dataset"           # dataset: one classifier over all given drives; drive: one per drive
    max_motion_overlap: float = 0.2  # a still candidate with more of its hull inside motion masks is not mined
    ground_contact: float = 0.5      # m; candidates whose bottom is this close to the ground get hulls down to it (0: off)
    features: tuple = DEFAULT_FEATURES  # descriptor columns used (names of FEATURES)
    motion_dir: str = MOTION_DIR     # relative to the drive folder
    out_dir: str = MINED_DIR         # relative to the drive folder
    clusters: ClusterConfig = field(default_factory=ClusterConfig)

    def __post_init__(self):
        if isinstance(self.clusters, dict):
            self.clusters = ClusterConfig(**self.clusters)
        self.features = tuple(self.features)
        self.k = tuple(int(k) for k in ((self.k,) if np.isscalar(self.k) else self.k))
        bad = [f for f in self.features if f not in FEATURES]
        if bad or not self.features:
            raise ValueError(f"mining features must be among {FEATURES}, got {list(self.features)}")
        if not 0.0 <= self.iou < 1.0:
            raise ValueError(f"mining iou must be within [0, 1), got {self.iou}")
        if not 0.0 < self.share <= 1.0:
            raise ValueError(f"mining share must be within (0, 1], got {self.share}")
        if not self.k or min(self.k) < 1 or self.runs < 1 or self.restarts < 1 or self.iters < 1:
            raise ValueError(f"mining k (each), runs, restarts and iters must be >= 1, got {list(self.k)}, {self.runs}, "
                             f"{self.restarts}, {self.iters}")
        if not 0.0 < self.vote <= 1.0:
            raise ValueError(f"mining vote must be within (0, 1], got {self.vote}")
        if self.scope not in ("dataset", "drive"):
            raise ValueError(f"mining scope must be dataset or drive, got {self.scope!r}")
        if not 0.0 <= self.max_motion_overlap <= 1.0:
            raise ValueError(f"mining max_motion_overlap must be within [0, 1], got {self.max_motion_overlap}")


# --------------------------------------------------------------------------- candidates and descriptors
def fit_ground_plane(points: np.ndarray, ground: np.ndarray, sensor_height: float = 1.73) -> np.ndarray:
    """(4,) plane (a, b, c, d) with a unit normal pointing up, a x + b y + c z + d = 0: least squares
    z = e x + f y + g over the ground points (N,) bool of points (N, >=3); with fewer than 3 ground
    points the level plane `sensor_height` below the sensor."""
    g = np.asarray(points, np.float64)[ground, :3]
    if len(g) < 3:
        return np.array([0.0, 0.0, 1.0, sensor_height])
    A = np.stack([g[:, 0], g[:, 1], np.ones(len(g))], 1)                        # (G, 3)
    e, f, c0 = np.linalg.lstsq(A, g[:, 2], rcond=None)[0]
    n = np.array([-e, -f, 1.0, -c0])
    return n / np.linalg.norm(n[:3])


def _segments(lab: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Order sorting points by label and each label 1..n's first position in that order (every
    label present)."""
    order = np.argsort(lab, kind="stable")
    cnt = np.bincount(lab, minlength=n + 1)
    return order, (np.cumsum(cnt) - cnt)[1:]


def candidate_descriptors(points: np.ndarray, labels: np.ndarray, plane: np.ndarray,
                          reflectance: np.ndarray | None = None) -> np.ndarray:
    """(n, len(FEATURES)) descriptor of each candidate 1..n = labels.max() (every id present) from
    its points (M, 3) in the LiDAR frame, labels (M,) (0 = not a candidate, ignored), the ground
    plane (4,) of `fit_ground_plane` and optionally the points' reflectance (M,) (else 0)."""
    keep = labels > 0
    p = np.asarray(points, np.float64)[keep, :3]                                 # (K, 3)
    lab = np.asarray(labels, np.int64)[keep]
    n = int(lab.max(initial=0))
    out = np.zeros((n, len(FEATURES)))
    if n == 0:
        return out
    cnt = np.bincount(lab, minlength=n + 1)[1:].astype(np.float64)               # (n,)
    mean = np.stack([np.bincount(lab, p[:, k], n + 1)[1:] for k in range(3)], 1) / cnt[:, None]   # (n, 3)
    c = p - mean[lab - 1]                                                        # (K, 3) centred
    cov = np.empty((n, 3, 3))
    for i in range(3):
        for j in range(i, 3):
            cov[:, i, j] = cov[:, j, i] = np.bincount(lab, c[:, i] * c[:, j], n + 1)[1:] / cnt
    ev = np.clip(np.linalg.eigvalsh(cov)[:, ::-1], 0, None)                      # (n, 3) l1 >= l2 >= l3
    l1 = np.maximum(ev[:, 0], 1e-12)
    # oriented extent on the ground: the principal axes of the x-y covariance
    theta = 0.5 * np.arctan2(2 * cov[:, 0, 1], cov[:, 0, 0] - cov[:, 1, 1])       # (n,)
    ct, st = np.cos(theta)[lab - 1], np.sin(theta)[lab - 1]
    uv = np.stack([c[:, 0] * ct + c[:, 1] * st, -c[:, 0] * st + c[:, 1] * ct,
                   p @ plane[:3] + plane[3]], 1)                                 # (K, 3) axis 1, axis 2, height
    order, starts = _segments(lab, n)
    hi = np.maximum.reduceat(uv[order], starts, axis=0)                           # (n, 3)
    lo = np.minimum.reduceat(uv[order], starts, axis=0)
    ext = hi[:, :2] - lo[:, :2]
    length, width = ext.max(1), ext.min(1)
    top, bottom = hi[:, 2], lo[:, 2]
    rng = np.linalg.norm(mean, axis=1)
    face = np.maximum(length * np.maximum(top - bottom, 0.05), 0.05)
    out[:, 0], out[:, 1], out[:, 2], out[:, 3] = length, width, top, bottom
    out[:, 4] = (ev[:, 0] - ev[:, 1]) / l1
    out[:, 5] = (ev[:, 1] - ev[:, 2]) / l1
    out[:, 6] = ev[:, 2] / l1
    out[:, 7] = np.log(cnt)
    out[:, 8] = np.log(cnt * np.maximum(rng, 1.0) ** 2 / face)
    if reflectance is not None:
        out[:, 9] = np.bincount(lab, np.asarray(reflectance, np.float64)[keep], n + 1)[1:] / cnt
    return out


def scan_descriptors(points: np.ndarray, labels: np.ndarray, cand: np.ndarray,
                     cfg: ClusterConfig) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors (n, len(FEATURES)) of the clusters 1..n of `labels` (V,) over points (V, 3|4)
    (the 4th column: reflectance) and the least-squares ground plane (4,) they are measured from,
    fitted to the finite in-range points that are no candidate (`cand` (V,) bool, as returned by
    `baselines.clusters_and_candidates`). Mining and hybrid instances describe clusters this way."""
    pts = np.asarray(points, np.float64)
    r2 = (pts[:, :3] ** 2).sum(1)
    ground = np.isfinite(r2) & (r2 < cfg.max_range ** 2) & ~cand
    plane = fit_ground_plane(pts, ground, cfg.sensor_height)
    return candidate_descriptors(pts[:, :3], labels, plane, pts[:, 3] if pts.shape[1] > 3 else None), plane


@dataclass
class FrameCandidates:
    hulls: np.ndarray        # (H, W) uint16: candidate i+1's visible hull (nearer hulls over farther ones), 0 = none
    descriptors: np.ndarray  # (n, len(FEATURES))
    points: np.ndarray       # (n,) int: in-view LiDAR points of each candidate
    ranges: np.ndarray       # (n,) m: distance of each candidate's centroid


def frame_candidates(scan: np.ndarray, calib: CameraCalib, cfg: MiningConfig | None = None) -> FrameCandidates:
    """Candidates of one scan (N, 3|4) in the camera's view at calibration resolution: the
    clusters of its in-view non-ground points, their hulls in the image and their descriptors.
    A candidate standing on the ground (bottom within `cfg.ground_contact` m of the plane) has
    its points dropped onto the plane added to its hull: ground removal cuts its lowest
    `ground_tol` m (wheels, feet), which the image shows."""
    cfg = cfg or MiningConfig()
    H, W = calib.height, calib.width
    pp = project_scan(scan, calib).point_pixel
    view = np.flatnonzero(pp >= 0)
    pts = np.asarray(scan, np.float64)[view]                                      # (V, 3|4)
    lab, cand = clusters_and_candidates(pts, cfg.clusters)                        # (V,) 0 = none; non-ground
    desc, plane = scan_descriptors(pts, lab, cand, cfg.clusters)
    r2 = (pts[:, :3] ** 2).sum(1)
    n = len(desc)
    cnt = np.bincount(lab, minlength=n + 1)[1:]
    mean = np.stack([np.bincount(lab, pts[:, k], n + 1)[1:] for k in range(3)], 1) / np.maximum(cnt, 1)[:, None]
    if n == 0:
        return FrameCandidates(np.zeros((H, W), np.uint16), desc, cnt, np.linalg.norm(mean, axis=1))
    fg = np.flatnonzero(lab > 0)
    rows, cols, lbl, rng = pp[view[fg]] // W, pp[view[fg]] % W, lab[fg], np.sqrt(r2[fg])   # (K,)
    if cfg.ground_contact > 0:
        low = fg[desc[lab[fg] - 1, FEATURES.index("bottom")] <= cfg.ground_contact]        # points of standing candidates
        frows, fcols, ok = ground_feet_pixels(pts[low], plane[:3], plane[3], calib)
        rows, cols = np.concatenate([rows, frows]), np.concatenate([cols, fcols])
        lbl, rng = np.concatenate([lbl, lab[low[ok]]]), np.concatenate([rng, np.sqrt(r2[low[ok]])])
    hulls = paint_hulls(rows, cols, lbl, rng, H, W)
    return FrameCandidates(hulls, desc, cnt, np.linalg.norm(mean, axis=1))


def motion_overlap(hulls: np.ndarray, motion: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Best IoU (n,) of each candidate's visible hull 1..n in `hulls` (H, W) with one instance of
    the motion mask (H, W) (0 = background), and the share (n,) of its hull inside any instance
    (0 for a candidate that has no visible pixel)."""
    m = np.asarray(motion, np.int64).reshape(-1)
    if m.max(initial=0) > 4096:                                                   # sparse ids: renumber 1..G-1
        ids, m = np.unique(m, return_inverse=True)
        m = m + int(ids[0] != 0)                                                  # 0 stays the background
    G = int(m.max(initial=0)) + 1
    h = np.asarray(hulls, np.int64).reshape(-1)
    joint = np.bincount(h * G + m, minlength=(n + 1) * G).reshape(n + 1, G)[1:].astype(np.float64)   # (n, G)
    area = joint.sum(1)
    marea = np.bincount(m, minlength=G)
    iou = joint / np.maximum(area[:, None] + marea[None, :] - joint, 1)
    iou[:, 0] = 0
    inside = (area - joint[:, 0]) / np.maximum(area, 1)
    return iou.max(1) if G > 1 else np.zeros(n), inside


# --------------------------------------------------------------------------- classifier
def standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (F,) and scale (F,) of the columns of x (N, F): the standard deviation, 1 for a constant column."""
    x = np.asarray(x, np.float64)
    sd = x.std(0)
    return x.mean(0), np.where(sd > 1e-12, sd, 1.0)


def standardise(x: np.ndarray) -> np.ndarray:
    """(N, F) columns to zero mean and unit standard deviation (constant columns to 0)."""
    mean, scale = standardisation(x)
    return (np.asarray(x, np.float64) - mean) / scale


def _sq_dist(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(N, K) squared Euclidean distances of rows of x (N, F) to rows of c (K, F)."""
    return np.maximum((x ** 2).sum(1)[:, None] - 2 * x @ c.T + (c ** 2).sum(1)[None, :], 0)


def kmeans(x: np.ndarray, k: int, seed=0, restarts: int = 1, iters: int = 50) -> tuple[np.ndarray, np.ndarray, float]:
    """k-means of x (N, F): k-means++ seeding and Lloyd iterations, `restarts` runs from
    np.random.default_rng(seed) (an int or a sequence of ints); an emptied cluster restarts at the
    points fitting their centres worst.
    Returns the centres (k', F), each point's cluster (N,) and the inertia of the best run;
    k' = min(k, N)."""
    x = np.asarray(x, np.float64)
    N = len(x)
    k = min(k, N)
    if k == 0:
        return np.zeros((0, x.shape[1])), np.zeros(0, np.int64), 0.0
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(restarts):
        c = np.empty((k, x.shape[1]))
        c[0] = x[rng.integers(N)]
        d = _sq_dist(x, c[:1])[:, 0]                                              # (N,) to the nearest centre
        for j in range(1, k):                                                     # k-means++: O(k) draws
            tot = d.sum()
            c[j] = x[rng.choice(N, p=d / tot)] if tot > 0 else x[rng.integers(N)]
            d = np.minimum(d, _sq_dist(x, c[j:j + 1])[:, 0])
        assign = np.full(N, -1)
        for _ in range(iters):
            dist = _sq_dist(x, c)                                                 # (N, k)
            new = dist.argmin(1)
            if np.array_equal(new, assign):
                break
            assign = new
            cnt = np.bincount(assign, minlength=k)
            sums = np.stack([np.bincount(assign, x[:, j], k) for j in range(x.shape[1])], 1)   # (k, F)
            empty = cnt == 0
            c = np.where(empty[:, None], c, sums / np.maximum(cnt, 1)[:, None])
            if empty.any():                                                       # re-seed at the worst-fit points
                far = np.argsort(-dist[np.arange(N), assign])[: int(empty.sum())]
                c[empty] = x[far]
        inertia = float(_sq_dist(x, c)[np.arange(N), assign].sum())
        if best is None or inertia < best[2]:
            best = (c.copy(), assign.copy(), inertia)
    return best


def movable_clusters(assign: np.ndarray, mover: np.ndarray, known: np.ndarray, k: int, share: float,
                     min_movers: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """UNION's rule: cluster j is movable when movers / members >= share (members whose motion is
    known, `known` (N,) bool) and movers >= min_movers. Returns movable (k,) bool, the mover share
    (k,), members (k,) and movers (k,)."""
    members = np.bincount(assign[known], minlength=k)
    movers = np.bincount(assign[known & mover], minlength=k)
    sh = movers / np.maximum(members, 1)
    return (sh >= share) & (movers >= max(min_movers, 1)), sh, members, movers


# --------------------------------------------------------------------------- drives
@dataclass
class _Frame:
    fid: str
    hulls_png: bytes         # the candidates' hull image, PNG-encoded (a drive's worth stays small)
    desc: np.ndarray         # (n, F)
    points: np.ndarray       # (n,)
    ranges: np.ndarray       # (n,)
    iou: np.ndarray          # (n,) best hull IoU with one motion instance (0 where the motion is unknown)
    inside: np.ndarray       # (n,) share of the hull in motion masks
    known: bool              # the frame has a motion mask

    def mover(self, cfg: MiningConfig) -> np.ndarray:
        """(n,) bool: the candidates matching a motion instance."""
        return self.known & (self.iou > cfg.iou)


class MiningInputError(ValueError):
    """A drive cannot be mined; the message names the folder or file and the problem."""


def check_drive(drive_dir: Path, cfg: MiningConfig) -> KittiRawDrive:
    """The drive, or MiningInputError naming what is missing (the drive, its scans or images, its
    motion masks)."""
    drive_dir = Path(drive_dir)
    if not drive_dir.is_dir():
        raise MiningInputError(f"{drive_dir}: drive directory not found")
    try:
        drive = KittiRawDrive(drive_dir)
    except KittiFormatError as exc:
        raise MiningInputError(str(exc)) from exc
    if not drive.has_lidar:
        raise MiningInputError(f"{drive.velo_dir}: no velodyne scans (mining clusters LiDAR points)")
    if not drive.has_camera:
        raise MiningInputError(f"{drive.image_dir}: no camera images")
    mdir = drive_dir / cfg.motion_dir
    if not mdir.is_dir() or not any(mdir.glob("*.png")):
        raise MiningInputError(f"{mdir}: no motion masks (run `python -m xmod_core.motion {drive_dir}` first)")
    return drive


def drive_candidates(drive: KittiRawDrive, cfg: MiningConfig, progress: bool = False) -> list[_Frame]:
    """Candidates, descriptors and mover flags of every frame of a drive."""
    from tqdm import tqdm
    unknown = unknown_frames(drive.drive_dir, cfg.motion_dir)
    H, W = drive.calib.height, drive.calib.width
    out = []
    for t in tqdm(range(len(drive)), desc=drive.drive_dir.name, disable=not progress, unit="frame"):
        fid = drive.frame_ids[t]
        fc = frame_candidates(drive.scan(t), drive.calib, cfg)
        n = len(fc.descriptors)
        motion = None if fid in unknown else read_motion(drive.drive_dir, cfg.motion_dir, fid)
        if motion is not None and motion.shape != (H, W):
            raise MiningInputError(f"{drive.drive_dir / cfg.motion_dir / (fid + '.png')}: motion mask is "
                                   f"{motion.shape[1]}x{motion.shape[0]}, the camera {W}x{H}")
        best, inside = motion_overlap(fc.hulls, motion, n) if motion is not None else (np.zeros(n), np.zeros(n))
        png = cv2.imencode(".png", fc.hulls)[1]
        out.append(_Frame(fid, png.tobytes(), fc.descriptors, fc.points, fc.ranges, best, inside, motion is not None))
    return out


@dataclass
class Classified:
    vote: np.ndarray         # (N,) share of the k-means runs in which the candidate's cluster is movable
    share: np.ndarray        # (N,) mover share of the candidate's cluster, mean over the runs
    runs: list               # per run: {"k", "seed", "members" (k,), "movers" (k,), "movable" (k,)}
    seconds: float


def candidate_arrays(frames: list[_Frame], cfg: MiningConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Descriptors (N, F) of the candidates of `frames` (cfg.features), their mover flags (N,) and
    whether their motion is known (N,)."""
    cols = [FEATURES.index(f) for f in cfg.features]
    desc = np.concatenate([f.desc for f in frames] or [np.zeros((0, len(FEATURES)))])[:, cols]
    mover = np.concatenate([f.mover(cfg) for f in frames] or [np.zeros(0, bool)])
    known = np.concatenate([np.full(len(f.desc), f.known) for f in frames] or [np.zeros(0, bool)])
    return desc, mover, known


def candidate_table(frames: list[_Frame], cfg: MiningConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`candidate_arrays` with the descriptors standardised."""
    desc, mover, known = candidate_arrays(frames, cfg)
    return standardise(desc), mover, known


def cluster_runs(x: np.ndarray, cfg: MiningConfig) -> list[tuple[int, int, np.ndarray]]:
    """The ensemble's k-means runs on x (N, F): (k, seed, assignment (N,)) for each k of cfg.k and
    seed 0..runs-1 (generator seeded by [cfg.seed, k, seed])."""
    return [(k, s, kmeans(x, k, [cfg.seed, k, s], cfg.restarts, cfg.iters)[1]) for k in cfg.k for s in range(cfg.runs)]


def movable_votes(runs: list, mover: np.ndarray, known: np.ndarray, cfg: MiningConfig) -> Classified:
    """UNION's rule in every run, and per candidate the share of runs that call its cluster movable."""
    n = len(mover)
    vote, share, tables = np.zeros(n), np.zeros(n), []
    for k, s, a in runs:
        kk = int(a.max(initial=-1)) + 1
        movable, sh, members, movers = movable_clusters(a, mover, known, kk, cfg.share, cfg.min_movers)
        vote += movable[a]
        share += sh[a]
        tables.append({"k": k, "seed": s, "members": members, "movers": movers, "movable": movable})
    return Classified(vote / max(len(runs), 1), share / max(len(runs), 1), tables, 0.0)


def classify(frames: list[_Frame], cfg: MiningConfig) -> Classified:
    """The ensemble of k-means runs over the standardised descriptors of all candidates of
    `frames`, and each candidate's vote (share of runs whose cluster of it is movable)."""
    t0 = time.perf_counter()
    x, mover, known = candidate_table(frames, cfg)
    cls = movable_votes(cluster_runs(x, cfg), mover, known, cfg)
    cls.seconds = time.perf_counter() - t0
    return cls


def _colour_edges(img: np.ndarray, labels: np.ndarray, colour, alpha: float = 0.45) -> None:
    """Tint the pixels of labels > 0 in `colour` and draw their instances' outlines, in place."""
    m = labels > 0
    img[m] = ((1 - alpha) * img[m] + alpha * np.asarray(colour, np.float64)).astype(np.uint8)
    edge = m & (cv2.morphologyEx(labels.astype(np.uint16), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0)
    img[edge] = colour


def overlay(rgb: np.ndarray, motion: np.ndarray | None, mined: np.ndarray, text: str) -> np.ndarray:
    """(H, W, 3) RGB: motion masks in red, mined labels in green (outlined), `text` on top."""
    img = rgb.copy()
    if motion is not None:
        _colour_edges(img, motion, (255, 40, 40))
    _colour_edges(img, mined, (40, 255, 80))
    scale = max(0.4, img.shape[1] / 1600)
    cv2.putText(img, text, (6, int(22 * scale / 0.6)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 0),
                max(1, int(2 * scale)), cv2.LINE_AA)
    return img


def frame_labels(f: _Frame, vote: np.ndarray, cfg: MiningConfig) -> tuple[np.ndarray, np.ndarray]:
    """The mined instance image (H, W) uint16 of one frame (ids 1..m) and the candidate index (m,)
    of each id: its candidates voted movable (`vote` (n,) >= cfg.vote) that are no mover and lie
    mostly outside the motion masks, as their visible hulls; fully occluded ones drop out."""
    hulls = cv2.imdecode(np.frombuffer(f.hulls_png, np.uint8), cv2.IMREAD_UNCHANGED)           # (H, W) uint16
    n = len(f.desc)
    visible = np.bincount(hulls.reshape(-1), minlength=n + 1)[1:n + 1] > 0                     # (n,)
    idx = np.flatnonzero((vote >= cfg.vote - 1e-9) & ~f.mover(cfg) & (f.inside <= cfg.max_motion_overlap) & visible)
    lut = np.zeros(n + 1, np.uint16)
    lut[idx + 1] = np.arange(1, len(idx) + 1)
    return lut[hulls], idx


def write_drive(drive: KittiRawDrive, frames: list[_Frame], cls: Classified, offset: int, cfg: MiningConfig,
                overlays: Path | None = None) -> dict:
    """Write a drive's mined masks and mined.json; `offset`: index of its first candidate in `cls`.
    Returns the drive's counts."""
    out = drive.drive_dir / cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    if overlays is not None:
        overlays.mkdir(parents=True, exist_ok=True)
    meta_frames, n_mined, n_movers, n_cand = {}, 0, 0, 0
    for t, f in enumerate(frames):
        n = len(f.desc)
        vote, share = cls.vote[offset:offset + n], cls.share[offset:offset + n]
        offset += n
        labels, idx = frame_labels(f, vote, cfg)
        cv2.imwrite(str(out / f"{f.fid}.png"), labels)
        meta_frames[f.fid] = {str(i + 1): {"confidence": round(float(vote[c]), 4), "share": round(float(share[c]), 4),
                                           "points": int(f.points[c]), "range": round(float(f.ranges[c]), 2)}
                              for i, c in enumerate(idx)}
        movers = int(f.mover(cfg).sum())
        n_mined, n_movers, n_cand = n_mined + len(idx), n_movers + movers, n_cand + n
        if overlays is not None:
            motion = read_motion(drive.drive_dir, cfg.motion_dir, f.fid) if f.known else None
            text = f"{f.fid}: {movers} movers (red), {len(idx)} mined (green)" + ("" if f.known else ", motion unknown")
            cv2.imwrite(str(overlays / f"{f.fid}.png"), overlay(drive.image(t), motion, labels, text)[..., ::-1])
    stats = {"frames": len(frames), "candidates": n_cand, "movers": n_movers, "mined": n_mined}
    meta = {"format": FORMAT_VERSION, "params": dataclasses.asdict(cfg), "features": list(cfg.features),
            "frames": meta_frames, "motion_unknown": [f.fid for f in frames if not f.known],
            "runs": [{"k": r["k"], "seed": r["seed"], "members": r["members"].tolist(), "movers": r["movers"].tolist(),
                      "movable": r["movable"].astype(int).tolist()} for r in cls.runs],
            "stats": stats}
    tmp = out / (MINED_JSON + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, out / MINED_JSON)
    return stats


def mine(drive_dirs, cfg: MiningConfig = MiningConfig(), overlays: Path | None = None, progress: bool = False) -> dict:
    """Mine every drive (all checked before anything is written); returns per drive its counts and
    seconds (candidates, classifier share, writing)."""
    drives = [check_drive(Path(d), cfg) for d in drive_dirs]
    cands, secs = [], []
    for d in drives:
        t0 = time.perf_counter()
        cands.append(drive_candidates(d, cfg, progress))
        secs.append(time.perf_counter() - t0)
    groups = [list(range(len(drives)))] if cfg.scope == "dataset" else [[i] for i in range(len(drives))]
    result = {}
    for g in groups:
        cls = classify([f for i in g for f in cands[i]], cfg)
        offset = 0
        for i in g:
            t0 = time.perf_counter()
            ov = None if overlays is None else (overlays / drives[i].drive_dir.name if len(drives) > 1 else overlays)
            stats = write_drive(drives[i], cands[i], cls, offset, cfg, ov)
            offset += sum(len(f.desc) for f in cands[i])
            stats["seconds"] = round(secs[i] + cls.seconds / len(g) + time.perf_counter() - t0, 3)
            stats["movable_clusters"] = float(np.mean([r["movable"].sum() for r in cls.runs])) if cls.runs else 0.0
            result[str(drives[i].drive_dir)] = stats
    return result


def _parser() -> argparse.ArgumentParser:
    d = MiningConfig()
    p = argparse.ArgumentParser(prog="python -m xmod_core.mining", description=(
        "Mined labels of still objects that look like the moving ones: LiDAR clusters, k-means on their "
        "geometry, clusters holding enough motion-mask movers are movable; writes DRIVE/" + MINED_DIR + "."))
    p.add_argument("drives", nargs="+", type=Path, help="drive directories (DATE/DATE_drive_NNNN_sync) with motion masks")
    p.add_argument("--overlays", type=Path, default=None,
                   help="also write overlay PNGs (motion masks red, mined labels green) into this folder "
                        "(one subfolder per drive when several drives are given)")
    p.add_argument("--iou", type=float, default=d.iou, help=f"hull IoU with a motion instance for a mover (default {d.iou})")
    p.add_argument("--share", type=float, default=d.share, help=f"mover share of a movable k-means cluster (default {d.share})")
    p.add_argument("--min-movers", type=int, default=d.min_movers, help=f"movers a movable cluster needs at least (default {d.min_movers})")
    p.add_argument("--k", default=",".join(map(str, d.k)),
                   help=f"k-means cluster counts of the ensemble, comma-separated (default {','.join(map(str, d.k))}; "
                        "'--k 20 --runs 1 --vote 1' is UNION's single k-means)")
    p.add_argument("--runs", type=int, default=d.runs, help=f"seeded k-means runs per k (default {d.runs})")
    p.add_argument("--vote", type=float, default=d.vote, help=f"share of the runs that must call a candidate movable (default {d.vote})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"k-means seed (default {d.seed})")
    p.add_argument("--scope", choices=("dataset", "drive"), default=d.scope,
                   help="one classifier over all given drives (default) or one per drive")
    p.add_argument("--max-motion-overlap", type=float, default=d.max_motion_overlap,
                   help=f"share of a still candidate's hull inside motion masks above which it is not mined (default {d.max_motion_overlap})")
    p.add_argument("--ground-contact", type=float, default=d.ground_contact,
                   help=f"m: candidates whose bottom is this close to the ground get hulls down to it, 0: off (default {d.ground_contact})")
    p.add_argument("--features", default=",".join(d.features), help=f"descriptor columns, comma-separated, among {','.join(FEATURES)}")
    p.add_argument("--motion-dir", default=d.motion_dir, help=f"motion masks relative to the drive (default {d.motion_dir})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    try:
        ks = tuple(int(v) for v in a.k.split(",") if v.strip())
        cfg = MiningConfig(iou=a.iou, share=a.share, min_movers=a.min_movers, k=ks, runs=a.runs, vote=a.vote, seed=a.seed,
                           scope=a.scope, max_motion_overlap=a.max_motion_overlap, ground_contact=a.ground_contact,
                           features=tuple(s.strip() for s in a.features.split(",") if s.strip()), motion_dir=a.motion_dir)
    except ValueError as exc:                                                     # also a non-integer --k
        _parser().error(str(exc))
    try:
        res = mine(a.drives, cfg, a.overlays, progress=not a.quiet)
    except MiningInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for d, s in res.items():
        print(f"{d}: {s['frames']} frames, {s['candidates']} candidates, {s['movers']} movers, {s['mined']} mined "
              f"({s['movable_clusters']:.1f} movable clusters per run), {s['seconds']:.1f} s -> {Path(d) / cfg.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
