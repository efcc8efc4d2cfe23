"""Instance segmentation metrics, for 2D label images (pixels) and 3D point labels alike: any
array of integer instance ids (0 = background) works, flattened.

- ARI from the contingency table (bincount of id pairs): `ari`, `fg_ari` (over ground-truth
  foreground only), `all_ari` (every element, background as a cluster). As in the paper, a frame
  with fewer than two ground-truth objects has no FG-ARI (None) and is skipped.
- F1@50 pooled over a test set (`F1Accumulator`): predictions sorted by score, each matched
  greedily to the unmatched ground-truth instance of highest IoU, a true positive when IoU > 0.5.
  Ground-truth objects can be flagged `ignore` (too small to count: not a miss, and a prediction
  matched to one is not a false positive) and `moving` (recall is also reported separately for
  moving and still objects).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _relabel(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u, inv = np.unique(ids, return_inverse=True)
    return u, inv.reshape(-1)


def contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n_a, n_b) counts of every pair of (consecutive) labels of two labelings."""
    _, ia = _relabel(np.asarray(a).reshape(-1))
    _, ib = _relabel(np.asarray(b).reshape(-1))
    nb = int(ib.max()) + 1 if ib.size else 1
    na = int(ia.max()) + 1 if ia.size else 1
    return np.bincount(ia * nb + ib, minlength=na * nb).reshape(na, nb)


def _comb2(x):
    x = np.asarray(x, np.float64)
    return x * (x - 1) / 2


def ari(true: np.ndarray, pred: np.ndarray) -> float:
    """Adjusted Rand index of two labelings of the same elements (1 for identical partitions)."""
    true, pred = np.asarray(true).reshape(-1), np.asarray(pred).reshape(-1)
    n = true.size
    if n < 2:
        return 1.0
    c = contingency(true, pred)
    index = _comb2(c).sum()
    a, b = _comb2(c.sum(1)).sum(), _comb2(c.sum(0)).sum()
    expected = a * b / _comb2(n)
    top = (a + b) / 2
    if top == expected:                      # both partitions trivial (one cluster or all singletons)
        return 1.0
    return float((index - expected) / (top - expected))


def fg_ari(gt: np.ndarray, pred: np.ndarray, min_objects: int = 2) -> float | None:
    """ARI over the ground-truth foreground; None when the frame has fewer than `min_objects`."""
    gt, pred = np.asarray(gt).reshape(-1), np.asarray(pred).reshape(-1)
    fg = gt > 0
    if len(np.unique(gt[fg])) < min_objects:
        return None
    return ari(gt[fg], pred[fg])


def all_ari(gt: np.ndarray, pred: np.ndarray, min_objects: int = 2) -> float | None:
    """ARI over every element, the background being one more cluster."""
    gt = np.asarray(gt).reshape(-1)
    if len(np.unique(gt[gt > 0])) < min_objects:
        return None
    return ari(gt, np.asarray(pred).reshape(-1))


def iou_matrix(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every ground-truth instance with every predicted one (0 = background on both sides):
    (gt_ids (G,), pred_ids (P,), iou (G, P), gt_areas (G,))."""
    gt, pred = np.asarray(gt).reshape(-1), np.asarray(pred).reshape(-1)
    gids, gi = _relabel(gt)
    pids, pi = _relabel(pred)
    inter = np.bincount(gi * len(pids) + pi, minlength=len(gids) * len(pids)).reshape(len(gids), len(pids))
    ga, pa = inter.sum(1), inter.sum(0)
    keep_g, keep_p = gids != 0, pids != 0
    inter, ga, pa = inter[keep_g][:, keep_p], ga[keep_g], pa[keep_p]
    union = ga[:, None] + pa[None, :] - inter
    return gids[keep_g], pids[keep_p], inter / np.maximum(union, 1), ga


def greedy_match(iou: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """For predictions in decreasing score order, the unmatched ground truth of highest IoU:
    (P,) index of the matched ground truth, -1 when none is left or the best IoU is 0."""
    G, P = iou.shape
    match = np.full(P, -1)
    free = np.ones(G, bool)
    for p in np.argsort(-np.asarray(scores), kind="stable"):
        if not free.any():
            break
        cand = np.where(free, iou[:, p], -1.0)
        g = int(cand.argmax())
        if cand[g] > 0:
            match[p] = g
            free[g] = False
    return match


SIZE_BINS = (0, 1000, 3000, 10000)     # object size bins, pixels at camera resolution: [0, 1k), [1k, 3k), ...


def size_bin_names(edges=SIZE_BINS) -> list:
    """'<1k', '1k-3k', '3k-10k', '>=10k' for the default edges."""
    k = lambda v: f"{v // 1000}k" if v >= 1000 else str(v)
    return [f"<{k(edges[1])}" if i == 0 and lo == 0 else f">={k(lo)}" if i == len(edges) - 1 else f"{k(lo)}-{k(edges[i + 1])}"
            for i, lo in enumerate(edges)]


@dataclass
class F1Accumulator:
    """Pooled F1@IoU over many frames (or point clouds), with recall split by motion and by the
    ground-truth objects' size (`size_edges`, in whatever unit the sizes come in), and the still
    objects' recall by size (where both are given)."""
    iou_threshold: float = 0.5
    tp: int = 0
    fp: int = 0
    fn: int = 0
    moving_total: int = 0
    moving_found: int = 0
    still_total: int = 0
    still_found: int = 0
    size_edges: tuple = SIZE_BINS
    size_total: np.ndarray = field(default=None, repr=False)
    size_found: np.ndarray = field(default=None, repr=False)
    still_size_total: np.ndarray = field(default=None, repr=False)
    still_size_found: np.ndarray = field(default=None, repr=False)
    frames: list = field(default_factory=list, repr=False)      # [tp, fp, fn] of each counted frame, in order

    def __post_init__(self):
        self.size_total = np.zeros(len(self.size_edges), np.int64)
        self.size_found = np.zeros(len(self.size_edges), np.int64)
        self.still_size_total = np.zeros(len(self.size_edges), np.int64)
        self.still_size_found = np.zeros(len(self.size_edges), np.int64)

    def update(self, gt, pred, scores=None, ignore_ids=(), moving_ids=None, ignore_pred_ids=(), sizes=None) -> dict:
        """gt, pred: instance-id arrays of one frame; scores: {pred id: score} (default: area);
        ignore_ids: ground-truth ids that count neither way; moving_ids: ids of moving objects
        (the others are still) for the split recall; ignore_pred_ids: predicted ids that are no
        false positive when unmatched (e.g. lying in a region with unlabelled objects); sizes:
        {gt id: size} for the recall by size (objects missing from it are not binned).
        Returns {gt id: pred id} of this frame's true positives."""
        gids, pids, iou, _ = iou_matrix(gt, pred)
        if scores is None:
            s = np.bincount(np.asarray(pred).reshape(-1))[pids] if len(pids) else np.zeros(0)
        else:
            s = np.array([scores.get(int(p), 0.0) for p in pids])
        moving = None if moving_ids is None else np.isin(gids, np.asarray(list(moving_ids)))
        size = None if sizes is None else np.array([sizes.get(int(g), np.nan) for g in gids], np.float64)
        hit_pairs = self.count(iou, s, np.isin(gids, np.asarray(list(ignore_ids))),
                               np.isin(pids, np.asarray(list(ignore_pred_ids))), moving, size)
        return {int(gids[g]): int(pids[p]) for g, p in hit_pairs}

    def count(self, iou: np.ndarray, scores: np.ndarray, ignored: np.ndarray, ignored_pred: np.ndarray | None = None,
              moving: np.ndarray | None = None, size: np.ndarray | None = None) -> list:
        """Count one frame from its (G, P) IoU matrix (masks, boxes, anything): ignored (G,) and
        ignored_pred (P,) count neither way, moving (G,) splits the recall, size (G,) bins it
        (NaN: not binned). Returns the (g, p) hits."""
        match = greedy_match(iou, scores)
        before = (self.tp, self.fp, self.fn)
        ignored_pred = np.zeros(len(match), bool) if ignored_pred is None else ignored_pred
        hit = np.zeros(len(ignored), bool)
        pairs = []
        for p, g in enumerate(match):
            if g >= 0 and iou[g, p] > self.iou_threshold:
                if not ignored[g]:
                    self.tp += 1
                    hit[g] = True
                    pairs.append((g, p))
            elif not (g >= 0 and ignored[g]) and not ignored_pred[p]:
                self.fp += 1
        counted = ~ignored
        self.fn += int((counted & ~hit).sum())
        self.frames.append([self.tp - before[0], self.fp - before[1], self.fn - before[2]])
        if moving is not None:
            self.moving_total += int((counted & moving).sum())
            self.moving_found += int((counted & moving & hit).sum())
            self.still_total += int((counted & ~moving).sum())
            self.still_found += int((counted & ~moving & hit).sum())
        if size is not None:
            binned = counted & np.isfinite(size)
            b = np.digitize(size[binned], self.size_edges) - 1                   # (n,) bin of each counted object
            n = len(self.size_edges)
            b = np.clip(b, 0, n - 1)
            self.size_total += np.bincount(b, minlength=n)
            self.size_found += np.bincount(b, hit[binned].astype(np.int64), n).astype(np.int64)
            if moving is not None:
                still = ~moving[binned]
                self.still_size_total += np.bincount(b[still], minlength=n)
                self.still_size_found += np.bincount(b[still], hit[binned][still].astype(np.int64), n).astype(np.int64)
        return pairs

    def result(self) -> dict:
        p = self.tp / max(1, self.tp + self.fp)
        r = self.tp / max(1, self.tp + self.fn)
        return {"precision": p, "recall": r, "f1": 2 * p * r / max(1e-12, p + r), "tp": self.tp, "fp": self.fp,
                "fn": self.fn,
                "recall_moving": self.moving_found / self.moving_total if self.moving_total else None,
                "recall_still": self.still_found / self.still_total if self.still_total else None,
                "recall_by_size": {name: (float(f / t) if t else None, int(t)) for name, f, t in
                                   zip(size_bin_names(self.size_edges), self.size_found, self.size_total)},
                "recall_still_by_size": {name: (float(f / t) if t else None, int(t)) for name, f, t in
                                         zip(size_bin_names(self.size_edges), self.still_size_found,
                                             self.still_size_total)}}


def box_area(a: np.ndarray) -> np.ndarray:
    """(A,) areas of boxes given as (left, top, right, bottom)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    return (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])


def box_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, B) intersection areas of boxes given as (left, top, right, bottom)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    return w * h


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, B) IoU of boxes given as (left, top, right, bottom)."""
    inter = box_intersection(a, b)
    return inter / np.maximum(box_area(a)[:, None] + box_area(b)[None, :] - inter, 1e-9)


def instance_boxes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids (P,) int64 ascending and boxes (P, 4) (left, top, right + 1, bottom + 1: pixel edges)
    around each instance of an (H, W) id image (integers >= 0, 0 = background): which rows and
    columns each instance touches (one scatter of the compacted ids each), then the first and
    last of them; no loop over instances, no sort of the pixels while the ids stay below 4 H W
    (a sort of the ids beyond, so a huge id costs no memory)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must have shape (H, W), got {labels.shape}")
    H, W = labels.shape
    flat = labels.reshape(-1).astype(np.int64)
    if flat.size and flat.min() < 0:
        raise ValueError(f"instance ids must be >= 0, got {flat.min()}")
    top = int(flat.max()) if flat.size else 0
    if top <= 4 * flat.size:
        ids = np.flatnonzero(np.bincount(flat, minlength=1))
        ids = ids[ids > 0]
        lut = np.zeros(top + 1, np.int64)
        lut[ids] = np.arange(1, len(ids) + 1)                              # 0: background
        lab = lut[flat].reshape(H, W)                                      # (H, W) compact 0..P
    else:
        ids, inv = np.unique(flat, return_inverse=True)
        lab = (inv + (0 if ids[0] == 0 else 1)).reshape(H, W)
        ids = ids[ids > 0]
    box = np.zeros((len(ids), 4))
    if not len(ids):
        return ids, box
    in_row = np.zeros((len(ids) + 1, H), bool)
    in_col = np.zeros((len(ids) + 1, W), bool)
    in_row[lab, np.arange(H)[:, None]] = True
    in_col[lab, np.arange(W)[None, :]] = True
    in_row, in_col = in_row[1:], in_col[1:]
    box[:, 0] = in_col.argmax(1)
    box[:, 1] = in_row.argmax(1)
    box[:, 2] = W - in_col[:, ::-1].argmax(1)
    box[:, 3] = H - in_row[:, ::-1].argmax(1)
    return ids, box


class IdStability:
    """Id stability over a sequence: per ground-truth track, the predicted ids of the frames where it
    was found (a true positive). `switches`: changes of that id between consecutive finds, per track;
    `same_id`: share of a track's frames (found or not) holding its most frequent predicted id."""

    def __init__(self):
        self.found: dict[int, list] = {}     # track -> predicted id per found frame
        self.frames: dict[int, int] = {}     # track -> frames it was counted in

    def update(self, tracks, hits: dict) -> None:
        """tracks: the counted ground-truth track ids of a frame; hits {track: predicted id}."""
        for t in tracks:
            self.frames[int(t)] = self.frames.get(int(t), 0) + 1
            if int(t) in hits:
                self.found.setdefault(int(t), []).append(int(hits[int(t)]))

    def result(self) -> dict:
        if not self.frames:
            return {"id_switches_per_track": None, "same_id_share": None, "tracks": 0}
        sw = [int((np.diff(v) != 0).sum()) for v in self.found.values()]
        same = sum(np.bincount(np.unique(v, return_inverse=True)[1]).max() for v in self.found.values())
        return {"id_switches_per_track": float(np.sum(sw) / len(self.frames)),
                "same_id_share": float(same / sum(self.frames.values())), "tracks": len(self.frames)}

