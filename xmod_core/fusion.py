"""Late fusion of the 2D and 3D students' instances (xMOD): keep the objects on which both
modalities agree.

`late_fusion` (the paper's agreement):
A 2D instance survives when a 3D instance overlaps it with IoU above `iou_threshold` (paper:
0.1); the fused object is the union of the 2D mask and the 3D masks matched to it (each 3D
instance goes to the 2D instance it overlaps most), or with `mask="lidar"` only those 3D masks
(the Predictor's default: the shipped 2D student's masks are the looser ones) or with `"rgb"` only
the 2D mask. With `keep_single`, unmatched objects of
either modality whose score reaches `single_score` are kept as well. The IoU of every pair comes
from one bincount of id pairs (the product of the one-hot masks), not a loop over slot pairs.

`foreground_fusion` (agreement by attention): every 3D instance is an object of its own when the
2D student's foreground attention (1 - its background slot's) averages at least `threshold` over
the instance's pixels; the 2D student's instances play no part. It needs no 2D instance per
object, so an object the 2D student sees as foreground without giving it a slot of its own (small,
far, parked next to another) is kept, and one 2D slot over two cars no longer merges their 3D
instances into one object.

`either_fusion`: late fusion's agreed objects, plus the 3D instances no 2D instance agrees with
that the 2D student attends to as foreground (`foreground_fusion`'s test), each an object of its own.
`separate_fusion`: the same two tests, but every kept 3D instance is an object of its own (a 2D
instance over two 3D ones does not merge them).

Torch throughout, on the id maps' device: the Predictor fuses on the GPU where the students ran,
so only the small per-slot arrays cross to the host. numpy id maps in give numpy out.
"""
from __future__ import annotations

import numpy as np
import torch

ID_OFFSET_3D = 1000   # ids of 3D-only objects (keep_single), so they never collide with 2D ids
AGREEMENTS = ("iou", "foreground", "either", "separate")   # what makes both modalities agree on an object
                                                # (PredictorConfig.fusion_agreement)


def intersections(ids_a: torch.Tensor, n_a: int, ids_b: torch.Tensor, n_b: int) -> torch.Tensor:
    """(n_a + 1, n_b + 1) pixel counts of every id pair (row/column 0: background): onehot(a) @ onehot(b).T."""
    pair = ids_a.reshape(-1).long() * (n_b + 1) + ids_b.reshape(-1).long()
    return torch.bincount(pair, minlength=(n_a + 1) * (n_b + 1)).reshape(n_a + 1, n_b + 1)


def iou_from_counts(full: torch.Tensor) -> torch.Tensor:
    """(n_a + 1, n_b + 1) pair counts -> (n_a, n_b) IoU of the instances (float64)."""
    inter = full[1:, 1:].double()
    union = full[1:].sum(1, keepdim=True) + full[:, 1:].sum(0, keepdim=True) - inter
    return torch.where(union > 0, inter / union.clamp(min=1), 0.0)


def iou_pairs(ids_a, n_a: int, ids_b, n_b: int):
    """(n_a, n_b) IoU of instances 1..n_a of `ids_a` with instances 1..n_b of `ids_b`."""
    as_np = isinstance(ids_a, np.ndarray)
    a = torch.as_tensor(ids_a)
    iou = iou_from_counts(intersections(a, n_a, torch.as_tensor(ids_b, device=a.device), n_b))
    return iou.numpy() if as_np else iou


MASKS = ("union", "lidar", "rgb")


def late_fusion(ids_2d, scores_2d, ids_3d, scores_3d, iou_threshold: float = 0.1, keep_single: bool = False,
                single_score: float = 0.9, mask: str = "union", keep_3d=None):
    """ids_2d, ids_3d: (H, W) instance ids on the same grid (0 = background, k = slot k-1), numpy
    arrays or tensors on one device; scores_*: (K-1,) per slot. Returns the fused ids (2D ids kept;
    3D-only objects get ID_OFFSET_3D + their id; numpy in, numpy out) and {id: score}.
    `mask`: an agreed object's pixels are the union of its 2D mask and its 3D partners' (2D pixels
    win where both claim one; the paper's), only its 3D partners' (`lidar`) or only its 2D mask (`rgb`).
    `keep_3d`: None, or (K-1,) scores of 3D instances to keep as 3D-only objects where no 2D instance
    agrees with them (NaN: not kept); their score in the result is that value (the `either`
    agreement passes the mean of the 3D score and the 2D foreground attention), unless `keep_single`
    keeps the instance too: then its 3D score, as for the other singles."""
    if mask not in MASKS:
        raise ValueError(f"late fusion mask must be one of {MASKS}, got {mask!r}")
    as_np = isinstance(ids_2d, np.ndarray)
    a = torch.as_tensor(ids_2d)
    b = torch.as_tensor(ids_3d, device=a.device)
    s2, s3 = np.asarray(torch.as_tensor(scores_2d).cpu(), np.float64), np.asarray(torch.as_tensor(scores_3d).cpu(), np.float64)
    n2, n3 = len(s2), len(s3)
    full = intersections(a, n2, b, n3)                                          # (n2 + 1, n3 + 1)
    iou = iou_from_counts(full).cpu().numpy()                                   # (n2, n3): small, to the host
    present = full.cpu().numpy()
    present2, present3 = present[1:].sum(1) > 0, present[:, 1:].sum(0) > 0     # (n2,), (n3,)
    best2 = iou.argmax(0) if n2 else np.zeros(n3, int)                          # each 3D instance's 2D partner
    link = np.zeros((n2, n3), bool)
    if n2 and n3:
        link[best2, np.arange(n3)] = iou[best2, np.arange(n3)] > iou_threshold
    keep2 = link.any(1)                                                         # (n2,) agreed objects
    if keep_single:
        keep2 |= present2 & (s2 >= single_score)
    keep2 &= present2
    # 3D masks of kept partners join their 2D object; 2D pixels win where both claim a pixel
    partner = np.where(link.any(0) & keep2[best2], best2 + 1, 0) if n2 else np.zeros(n3, int)   # (n3,) fused id
    lut3 = np.concatenate([[0], partner])
    single3 = np.zeros(n3, bool)
    if keep_single:
        single3 |= (partner == 0) & present3 & (s3 >= single_score)
    single_score3 = s3
    if keep_3d is not None:
        extra = np.asarray(keep_3d, np.float64)
        if extra.shape != (n3,):
            raise ValueError(f"keep_3d must hold one value per 3D slot ({n3}), got shape {extra.shape}")
        extra3 = (partner == 0) & present3 & np.isfinite(extra)
        single_score3 = np.where(extra3 & ~single3, extra, s3)
        single3 |= extra3
    if single3.any():
        lut3 = np.concatenate([[0], np.where(single3, ID_OFFSET_3D + np.arange(1, n3 + 1), partner)])
    lut2 = np.concatenate([[0], np.where(keep2, np.arange(1, n2 + 1), 0)])
    lut2, lut3 = (torch.as_tensor(x, dtype=torch.long, device=a.device) for x in (lut2, lut3))
    if mask == "lidar":                               # the agreed object is its 3D partners' pixels only
        lut2 = torch.where(torch.as_tensor(np.concatenate([[False], link.any(1)]), device=a.device), 0, lut2)
    elif mask == "rgb":                               # the agreed object is its 2D mask only
        lut3 = torch.where(lut3 < ID_OFFSET_3D, 0, lut3)
    first, second = (lut3[b.long()], lut2[a.long()]) if mask == "lidar" else (lut2[a.long()], lut3[b.long()])
    fused = torch.where(first == 0, second, first).to(a.dtype)       # where both claim a pixel, `first` wins
    partner_score = np.where(link, s3[None, :], 0.0).max(1) if n3 else np.zeros(n2)   # (n2,)
    scores = {int(k) + 1: float((s2[k] + partner_score[k]) / 2 if link[k].any() else s2[k])
              for k in np.flatnonzero(keep2)}
    scores |= {ID_OFFSET_3D + int(j) + 1: float(single_score3[j]) for j in np.flatnonzero(single3)}
    return (fused.numpy() if as_np else fused), scores


def foreground_means(ids_3d: torch.Tensor, n3: int, foreground_2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(n3 + 1,) mean of the 2D foreground attention (h, w), bilinearly resized to the ids' (H, W),
    over each 3D instance's pixels (index 0: the background; 0 for an absent instance), and (n3 + 1,)
    the instances' pixel counts."""
    fg = torch.as_tensor(foreground_2d, device=ids_3d.device).float()
    if fg.ndim != 2:
        raise ValueError(f"foreground_2d must be (h, w), got {tuple(fg.shape)}")
    if fg.shape != ids_3d.shape:
        fg = torch.nn.functional.interpolate(fg[None, None], size=tuple(ids_3d.shape), mode="bilinear",
                                             align_corners=False)[0, 0]
    flat = ids_3d.reshape(-1).long()
    area = torch.bincount(flat, minlength=n3 + 1)
    return torch.bincount(flat, fg.reshape(-1).double(), minlength=n3 + 1) / area.clamp(min=1), area


def either_fusion(ids_2d, scores_2d, ids_3d, scores_3d, foreground_2d, threshold: float = 0.7,
                  iou_threshold: float = 0.1, mask: str = "lidar", keep_single: bool = False, single_score: float = 0.9):
    """Late fusion (`late_fusion`, 3D masks by default), plus each 3D instance that no 2D instance
    agrees with where the 2D student's foreground attention averages `threshold` over it (an object
    of its own, id ID_OFFSET_3D + its id, score the mean of its 3D score and that attention).
    `keep_single` / `single_score` as in `late_fusion`."""
    b = torch.as_tensor(ids_3d)
    s3 = np.asarray(torch.as_tensor(scores_3d).cpu(), np.float64)
    mean = foreground_means(b, len(s3), foreground_2d)[0].cpu().numpy()[1:]       # (n3,)
    keep = np.where(mean >= threshold, (s3 + mean) / 2, np.nan)
    return late_fusion(ids_2d, scores_2d, ids_3d, scores_3d, iou_threshold, keep_single, single_score, mask, keep_3d=keep)


def separate_fusion(ids_2d, scores_2d, ids_3d, scores_3d, foreground_2d, threshold: float = 0.7,
                    iou_threshold: float = 0.1):
    """Every 3D instance is an object of its own (its id, its mask) when a 2D instance agrees with
    it by late fusion's test (its best-overlapping 2D instance's IoU > `iou_threshold`) or when the
    2D foreground attention averages `threshold` over it (`foreground_fusion`); nothing is merged.
    Every kept instance, IoU-agreed ones too, is scored by the mean of its 3D score and its mean 2D
    foreground attention (not by the 2D instance's score, as `late_fusion` does)."""
    a = torch.as_tensor(ids_2d)
    b = torch.as_tensor(ids_3d, device=a.device)
    n2, n3 = len(scores_2d), len(scores_3d)
    iou = iou_from_counts(intersections(a, n2, b, n3)).cpu().numpy()            # (n2, n3)
    agreed = iou.max(0) > iou_threshold if n2 else np.zeros(n3, bool)            # (n3,)
    return foreground_fusion(ids_3d, scores_3d, foreground_2d, threshold, also=agreed)


def foreground_fusion(ids_3d, scores_3d, foreground_2d, threshold: float = 0.7, also=None):
    """ids_3d (H, W) 3D instance ids (0 = background, k = slot k-1), numpy or a tensor; scores_3d
    (K-1,); foreground_2d (h, w) the 2D student's foreground attention on its own slot grid
    (bilinearly resized to (H, W) here). Returns the kept 3D instances' ids (unchanged; numpy in,
    numpy out) and {id: score}, a kept instance's score being the mean of its 3D score and its mean
    2D foreground attention (as `late_fusion` averages both modalities' scores). `also`: None or
    (K-1,) bool, 3D instances kept whatever their attention (present ones only)."""
    as_np = isinstance(ids_3d, np.ndarray)
    b = torch.as_tensor(ids_3d)
    s3 = np.asarray(torch.as_tensor(scores_3d).cpu(), np.float64)
    n3 = len(s3)
    mean, area = foreground_means(b, n3, foreground_2d)                         # (n3 + 1,) each
    keep = mean >= threshold
    if also is not None:
        keep[1:] |= torch.as_tensor(np.asarray(also, bool), device=b.device)
    keep &= area > 0
    keep[0] = False
    lut = torch.where(keep, torch.arange(n3 + 1, device=b.device), 0)
    fused = lut[b.long()].to(b.dtype)
    mean, keep = mean.cpu().numpy(), keep.cpu().numpy()
    scores = {int(j): float((s3[j - 1] + mean[j]) / 2) for j in np.flatnonzero(keep)}
    return (fused.numpy() if as_np else fused), scores
