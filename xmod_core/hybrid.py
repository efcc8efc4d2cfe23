"""Geometry-aware instances (`PredictorConfig.instances = "hybrid"`, beyond the paper): LiDAR
geometry as a third view that needs no training.

Euclidean clustering (`baselines`) finds most objects in a scan but also every wall, pole and
bush; the students are precise where they fire but miss many objects. Hybrid instances keep the
clusters that the students call objects:

1. the in-view points are clustered (ground removal + Euclidean clustering with its size filters);
2. a cluster's objectness is its agreement with the students: by default its best IoU, over the
   non-ground LiDAR points in view, with one student instance (the paper's late fusion keeps a 2D
   and a 3D instance that agree at IoU > 0.1; here geometry is the other view, and the threshold,
   0.3, is the optimum of simulated validation drives as sparse in objects as real streets),
   or the share of its points in any instance (`agreement: share`); the mean over the modalities
   of the mode (lidar, rgb, or both when fused; `combine`: or their max or min). With
   `movable` = w > 0 the shape of the movers enters too: objectness = (1 - w) agreement + w vote,
   the vote of a `movable.MovableModel` (the share of mining's k-means runs whose nearest centre
   to the cluster's descriptor is a cluster of movers: learnt from the motion masks, no labels).
   Clusters from `objectness` on are kept; with `hold` > 0, so are clusters lying mostly (half of
   their points, in the image) on an object of the previous frame from `objectness - hold` on
   (hysteresis: an object does not blink out when the students' agreement dips for a frame);
3. inside a kept cluster, the student's instances decide how many objects it holds: points are
   grouped into fine components (points in touching bird's-eye cells of `fine_gap` m), each takes the
   majority instance of its points, and the components of one instance form one object. So a
   cluster that merged two objects the student tells apart is split where 3D connectivity allows,
   and the slots of one object that is connected in 3D (a car's front and back) are merged. Parts
   under `min_part_points` and components no instance covers join the cluster's main instance;
4. in the image each object is the hull of its points (far to near; with `ground_feet` also of
   the points dropped onto the ground plane); student instances that have (almost) no LiDAR points
   in view (above the scan, beyond its range) keep their own mask, and with `far` so do those whose
   points lie mostly beyond the clustering range (geometry has no cluster there to agree with).

Score of an object: the mean of its cluster's objectness and its instance's score. Vectorised over
points and clusters (bincounts, a sorted lookup of the neighbouring bird's-eye cells); the only loop
is over the objects when their hulls are painted (one OpenCV call each, `baselines.paint_hulls`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .baselines import (ClusterConfig, cluster_scan, ground_feet_pixels, is_ground, paint_hulls, plane_distance,
                        voxel_components)
from .kitti import CameraCalib
from .mining import scan_descriptors
from .movable import MovableModel


@dataclass
class HybridConfig:
    objectness: float = 0.3           # agreement of a cluster with the students for it to be kept (the optimum
                                      # of the object-sparse validation drives; docs/evaluation.md)
    agreement: str = "iou"            # iou: best point IoU of the cluster with one instance (its non-ground points);
                                      # share: of the cluster's points in any student instance
    combine: str = "mean"             # several students (fused): their agreements' mean, max (either student) or min (both)
    fine_gap: float = 0.15            # m, bird's-eye cell: parts of a cluster in cells that do not touch are apart
    min_part_points: int = 10         # a split part with fewer points stays with the cluster's main instance
    split_score: float = 0.5          # only instances scoring this much split or name a cluster's parts
    lidarless_points: int = 3         # student instances with fewer LiDAR points in view keep their own mask
    far: bool = False                 # student instances with most of their LiDAR points beyond the clustering range
                                      # (`clusters.max_range`, where no cluster exists to judge them) keep theirs too
    ground_feet: bool = False         # image hulls also hold each point dropped onto the ground plane (the part of
                                      # an object that ground removal takes and the beams miss); needs the camera
    hold: float = 0.0                 # hysteresis: a cluster lying mostly on an object of the previous frame (in the
                                      # image) is kept from an agreement of objectness - hold on (0: off); needs it
    movable: float = 0.0              # weight w of the shape of the movers: objectness = (1 - w) agreement + w vote,
                                      # vote of a `movable.MovableModel` (0: off, 1: the shape alone); needs the model
    clusters: ClusterConfig = field(default_factory=lambda: ClusterConfig(extent="oriented"))
                                      # a cluster's sides along its own axes: turned cars pass the size filters
                                      # (validation point F1@50 +0.02; docs/evaluation.md)

    def __post_init__(self):
        if not 0.0 <= self.objectness <= 1.0:
            raise ValueError(f"hybrid objectness must be within [0, 1], got {self.objectness}")
        if self.agreement not in ("share", "iou"):
            raise ValueError(f"hybrid agreement must be share or iou, got {self.agreement!r}")
        if self.combine not in ("mean", "max", "min"):
            raise ValueError(f"hybrid combine must be mean, max or min, got {self.combine!r}")
        if self.fine_gap <= 0:
            raise ValueError(f"hybrid fine_gap must be > 0 m, got {self.fine_gap}")
        if not 0.0 <= self.hold <= self.objectness:
            raise ValueError(f"hybrid hold must be within [0, objectness = {self.objectness}], got {self.hold}")
        if not 0.0 <= self.movable <= 1.0:
            raise ValueError(f"hybrid movable must be within [0, 1], got {self.movable}")


def _agreement(cl: np.ndarray, cnt: np.ndarray, slot: np.ndarray, cand: np.ndarray, kind: str) -> np.ndarray:
    """(n,) agreement of each cluster with one student's instances `slot` (V,) over the in-view
    points: the share of its points in any instance, or its best IoU with one instance's
    non-ground points. (Gating an instance's points by depth, as `clusters` does, lowered the
    recall on the validation drives: the students' masks spread over the background, whose range
    then wins the median; docs/evaluation.md.)"""
    n, S = len(cnt), int(slot.max(initial=0)) + 1
    if kind == "share":
        return np.bincount(cl, (slot > 0).astype(np.float64), n) / np.maximum(cnt, 1)
    inter = np.bincount(cl * S + slot, minlength=n * S).reshape(n, S).astype(np.float64)
    size = np.bincount(slot[cand], minlength=S)
    iou = inter / np.maximum(cnt[:, None] + size[None, :] - inter, 1)
    iou[:, 0] = 0
    return iou.max(1)


def hybrid_instances(points: np.ndarray, point_pixel: np.ndarray, cover: list, primary: np.ndarray,
                     scores: dict, cfg: HybridConfig = HybridConfig(),
                     calib: CameraCalib | None = None,
                     movable: MovableModel | None = None,
                     previous: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """points (N, >=3) LiDAR frame; point_pixel (N,) flat pixel of each point on the (H, W) grid
    (-1 outside the view); calib: the camera, at any resolution (scaled to the grid; needed by
    `ground_feet`); movable: the model whose vote on each cluster's shape enters the objectness
    with weight `cfg.movable` (needed when it is > 0); previous: the (H, W) hybrid instances of
    the sequence's previous frame (0 = none; None at a sequence's start), for `cfg.hold`; cover:
    the (H, W) instance maps of the modalities whose foreground gives the objectness; primary: the (H, W) instances that decide splits and keep their mask where
    LiDAR is missing (the fused map in fused mode), with their `scores` {id: score}.
    Returns the hybrid instances as an (H, W) grid and per point (N,) (ids 1..n, 0 = none) and
    {id: score}."""
    H, W = primary.shape
    if cfg.ground_feet and calib is None:
        raise ValueError("hybrid ground_feet needs the camera calibration")
    if cfg.movable > 0 and movable is None:
        raise ValueError("hybrid movable > 0 needs a movable model (xmod_core.movable)")
    points = np.asarray(points)
    primary = np.asarray(primary, np.int64)
    view = np.flatnonzero(point_pixel >= 0)
    pix = point_pixel[view]
    cl, cand, plane = cluster_scan(points[view], cfg.clusters)                     # (V,) 0 = none; non-ground
    n = int(cl.max(initial=0)) + 1
    cnt = np.bincount(cl, minlength=n).astype(np.float64)
    per_student = np.stack([_agreement(cl, cnt, np.asarray(c).reshape(-1)[pix], cand, cfg.agreement) for c in cover])
    objectness = {"mean": np.mean, "max": np.max, "min": np.min}[cfg.combine](per_student, 0)   # (n,)
    if cfg.movable > 0:                                                            # the shape of the movers
        vote = np.zeros(n)
        vote[1:] = movable.vote(scan_descriptors(points[view], cl, cand, cfg.clusters)[0])
        objectness = (1 - cfg.movable) * objectness + cfg.movable * vote
    keep = objectness >= cfg.objectness
    if cfg.hold > 0 and previous is not None:                                      # hysteresis: objects seen last frame
        on_prev = np.bincount(cl, (np.asarray(previous).reshape(-1)[pix] > 0).astype(np.float64), n) / np.maximum(cnt, 1)
        keep |= (on_prev >= 0.5) & (objectness >= cfg.objectness - cfg.hold)
    keep[0] = False
    k = np.flatnonzero(keep[cl])                                                   # kept points, index into view
    kcl, kslot = cl[k], primary.reshape(-1)[pix[k]]
    S = int(max(kslot.max(initial=0), primary.max(initial=0))) + 1
    slot_score = np.zeros(S)
    sid, sval = np.array(list(scores), np.int64), np.array(list(scores.values()), np.float64)
    ok = (sid > 0) & (sid < S)
    slot_score[sid[ok]] = sval[ok]
    kslot = np.where(slot_score[kslot] >= cfg.split_score, kslot, 0)               # unsure instances split nothing
    # fine components: touching bird's-eye cells (8-neighbours) of `fine_gap` m inside the same cluster
    # (only clusters holding two or more instances can split; the others are one component each)
    pairs = np.unique(kcl[kslot > 0] * S + kslot[kslot > 0])
    multi = (np.bincount(pairs // S, minlength=n) >= 2)[kcl]                         # (K,)
    fine, nfine = voxel_components(np.floor(points[view[k[multi]], :2] / cfg.fine_gap).astype(np.int64), kcl[multi])
    comp = nfine + kcl                                                                # (K,) one per cluster...
    comp[multi] = fine                                                                # ...unless it may split
    ncomp = nfine + n

    def majority(group, ngroup):                                                   # (ngroup,) most frequent slot > 0, else 0
        votes = np.bincount(group * S + kslot, minlength=ngroup * S).reshape(ngroup, S)
        votes[:, 0] = 0
        return np.where(votes.max(1) > 0, votes.argmax(1), 0)

    main = majority(kcl, n)                                                        # (n,) a cluster's main instance
    slot = majority(comp, ncomp)[comp]                                             # (K,) each point's part
    slot = np.where(slot > 0, slot, main[kcl])
    key = kcl * S + slot
    small = np.bincount(key, minlength=n * S)[key] < cfg.min_part_points
    key = np.where(small, kcl * S + main[kcl], key)
    keys, obj = np.unique(key, return_inverse=True)
    obj = obj + 1                                                                  # (K,) hybrid ids 1..m
    m = len(keys)
    kslot_of = keys % S
    score_of = np.where(kslot_of > 0, (objectness[keys // S] + slot_score[kslot_of]) / 2, objectness[keys // S])
    point_labels = np.zeros(len(points), np.int64)
    point_labels[view[k]] = obj
    grid = np.zeros((H, W), np.int64)
    if m:
        rng = np.linalg.norm(points[view[k], :3], axis=1)
        rows, cols, lab, rngs = pix[k] // W, pix[k] % W, obj, rng
        if cfg.ground_feet and is_ground(plane):                                        # a ground, not a wall
            fr, fc, ok = ground_feet_pixels(points[view[k]], *plane, calib.scaled(H, W))
            rows, cols = np.concatenate([rows, fr]), np.concatenate([cols, fc])
            lab, rngs = np.concatenate([lab, obj[ok]]), np.concatenate([rngs, rng[ok]])
        grid = paint_hulls(rows, cols, lab, rngs, H, W).astype(np.int64)
    # student instances without LiDAR keep their own mask where no hull is painted
    lidar_pts = np.bincount(primary.reshape(-1)[pix], minlength=S)[:S] if len(pix) else np.zeros(S, int)
    lidarless = np.zeros(S, bool)
    lidarless[1:] = lidar_pts[1:] < cfg.lidarless_points
    far = np.zeros(S, bool)
    if cfg.far and len(pix):                                                       # beyond clustering: the students decide
        beyond = np.linalg.norm(points[view, :3], axis=1) >= cfg.clusters.max_range     # (V,)
        far_pts = np.bincount(primary.reshape(-1)[pix], beyond.astype(np.float64), minlength=S)[:S]
        far[1:] = far_pts[1:] > lidar_pts[1:] / 2
    extra = (lidarless | far)[primary] & (grid == 0)
    present = np.unique(primary[extra])
    grid[extra] = m + np.searchsorted(present, primary[extra]) + 1
    if far.any():                                      # a far instance's non-ground points beyond the range are its own
        pslot = primary.reshape(-1)[pix]
        above = np.ones(len(pix), bool) if plane is None else \
            np.abs(plane_distance(points[view, :3].astype(np.float64), plane)) >= cfg.clusters.ground_tol
        own = far[pslot] & beyond & above & (point_labels[view] == 0) & np.isin(pslot, present)
        point_labels[view[own]] = m + np.searchsorted(present, pslot[own]) + 1
    out_scores = {i + 1: float(s) for i, s in enumerate(score_of)} | {m + j + 1: float(slot_score[p]) for j, p in enumerate(present)}
    return grid, point_labels, out_scores
