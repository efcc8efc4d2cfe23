"""Late fusion of the 2D and 3D students' instances (xMOD): keep the objects on which both
modalities agree.

A 2D instance survives when a 3D instance overlaps it with IoU above `iou_threshold` (paper:
0.1); the fused object is the union of the 2D mask and the 3D masks matched to it (each 3D
instance goes to the 2D instance it overlaps most). With `keep_single`, unmatched objects of
either modality whose score reaches `single_score` are kept as well. The IoU of every pair comes
from one matrix product of one-hot masks, not a loop over slot pairs.
"""
from __future__ import annotations

import numpy as np

ID_OFFSET_3D = 1000   # ids of 3D-only objects (keep_single), so they never collide with 2D ids


def intersections(ids_a: np.ndarray, n_a: int, ids_b: np.ndarray, n_b: int) -> np.ndarray:
    """(n_a + 1, n_b + 1) pixel counts of every id pair (row/column 0: background): onehot(a) @ onehot(b).T."""
    pair = ids_a.reshape(-1).astype(np.int64) * (n_b + 1) + ids_b.reshape(-1)
    return np.bincount(pair, minlength=(n_a + 1) * (n_b + 1)).reshape(n_a + 1, n_b + 1)


def iou_pairs(ids_a: np.ndarray, n_a: int, ids_b: np.ndarray, n_b: int) -> np.ndarray:
    """(n_a, n_b) IoU of instances 1..n_a of `ids_a` with instances 1..n_b of `ids_b`."""
    full = intersections(ids_a, n_a, ids_b, n_b)
    inter = full[1:, 1:].astype(np.float64)                                    # (n_a, n_b)
    union = full[1:].sum(1)[:, None] + full[:, 1:].sum(0)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def late_fusion(ids_2d: np.ndarray, scores_2d: np.ndarray, ids_3d: np.ndarray, scores_3d: np.ndarray,
                iou_threshold: float = 0.1, keep_single: bool = False, single_score: float = 0.9
                ) -> tuple[np.ndarray, dict]:
    """ids_2d, ids_3d: (H, W) instance ids on the same grid (0 = background, k = slot k-1);
    scores_*: (K-1,) per slot. Returns the fused ids (2D ids kept; 3D-only objects get
    ID_OFFSET_3D + their id) and {id: score}."""
    n2, n3 = len(scores_2d), len(scores_3d)
    iou = iou_pairs(ids_2d, n2, ids_3d, n3)                                    # (n2, n3)
    best2 = iou.argmax(0) if n2 else np.zeros(n3, int)                         # each 3D instance's 2D partner
    link = np.zeros((n2, n3), bool)
    if n2 and n3:
        link[best2, np.arange(n3)] = iou[best2, np.arange(n3)] > iou_threshold
    keep2 = link.any(1)                                                        # (n2,) agreed objects
    present2 = np.bincount(ids_2d.reshape(-1), minlength=n2 + 1)[1:n2 + 1] > 0
    present3 = np.bincount(ids_3d.reshape(-1), minlength=n3 + 1)[1:n3 + 1] > 0
    if keep_single:
        keep2 |= present2 & (scores_2d >= single_score)
    keep2 &= present2
    # 3D masks of kept partners join their 2D object; 2D pixels win where both claim a pixel
    partner = np.where(link.any(0) & keep2[best2], best2 + 1, 0)               # (n3,) fused id per 3D instance
    lut3 = np.concatenate([[0], partner])
    if keep_single:
        single3 = (partner == 0) & present3 & (scores_3d >= single_score)
        lut3 = np.concatenate([[0], np.where(single3, ID_OFFSET_3D + np.arange(1, n3 + 1), partner)])
    fused = np.where(np.isin(ids_2d, np.flatnonzero(keep2) + 1), ids_2d, 0)
    fused = np.where(fused == 0, lut3[ids_3d], fused)
    partner_score = np.where(link, scores_3d[None, :], 0.0).max(1) if n3 else np.zeros(n2)   # (n2,)
    scores = {int(k) + 1: float((scores_2d[k] + partner_score[k]) / 2 if link[k].any() else scores_2d[k])
              for k in np.flatnonzero(keep2)}
    if keep_single:
        scores |= {ID_OFFSET_3D + int(j) + 1: float(scores_3d[j]) for j in np.flatnonzero(single3)}
    return fused.astype(ids_2d.dtype), scores
