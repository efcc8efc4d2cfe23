"""Losses of the DIOD students, computed for a whole batch of clips at once.

Given slot masks `masks` (B, T, K, h, w) (K slots with the background last) and target instance
ids `targets` (B, T, h, w) (0 = background, 1..G per frame), with F = B*T frames and N = h*w:

- **Hungarian matching** of the K-1 object slots to the G instances of each frame on the
  binary cross-entropy cost. All cost matrices come from one batched matrix product on the
  model's device; only the small (K-1) x G assignment problems go to scipy.
- **Matched BCE**: -(w y log p + (1 - y) log(1 - p)) averaged over the pixels of each matched
  (slot, instance) pair and over the pairs of a frame. The object weight w (burn-in: 2 - the
  object's share of the image, so small objects count more; distillation: 1 + the teacher's
  confidence) scales only the object-pixel term, as in DIOD: it pushes a slot to cover its whole
  object without rewarding it for the background (`object_weight: all` scales the whole BCE, the
  earlier departure, kept for the ablation). `mined_weight` (beyond the paper; 1 = off) multiplies
  the weight of a pair whose target is a mined still object (`mined_from`: a frame's first mined
  id; the miner's labels carry their own weight, as issue #17 asks of them).
- **Dice** (`w_dice`, beyond the paper; 0 = off, the paper's loss): 1 - dice(slot, instance) of
  each matched pair, averaged over the pairs of a frame, and `w_dice` x the same dice in the
  matching cost, as DETR / Mask2Former match and train masks. The BCE is a mean over all N pixels,
  so a slot that ignores an object of A pixels costs it about A/N x 14; the dice term costs every
  ignored object the same, whatever its size. Unweighted by the object weights.
- **Foreground NLL**: -log(foreground) on the union of the instances, averaged over all pixels
  of the frame as in the paper (`fg_average: objects` averages over the object pixels instead).
- **Regulariser**: the mean foreground, so that what the targets do not claim stays background.
- **Reconstruction**: MSE of the decoder output (RGB for 2D; for 3D all four front-view
  channels, only on pixels that have a LiDAR return in the original, denser projection: scene
  completion), a mean over frames: its weights (`w_recon_rgb`, `w_recon_lidar`) are relative to a
  per-frame mean while the motion terms below are summed over a clip's frames.

The motion terms are per-frame values; `clip_reduction: sum` (the paper) sums them over the T
frames of a clip and averages over clips, `mean` averages over all frames. Either way a
data-parallel split of the batch into whole clips gives the same loss as the whole batch.
Frames whose motion mask is unknown (`frame_valid` False) are left out of the motion terms.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

EPS = 1e-6


@dataclass
class LossConfig:
    w_bce: float = 1.0
    w_fg: float = 1.0
    w_reg: float = 0.3
    w_recon_rgb: float = 1.0            # RGB reconstruction (2D student)
    w_recon_lidar: float = 100.0        # scene completion (3D student; paper: 100 burn-in, 50 teacher-student)
    burn_in_weighting: bool = True      # weight 2 - share of the image per object (DIOD burn-in)
    object_weight: str = "positive"     # "positive": the weight scales the object-pixel term (DIOD); "all": the whole BCE
    fg_average: str = "pixels"          # foreground NLL averaged over all pixels (paper) or over the "objects"' pixels
    clip_reduction: str = "sum"         # motion terms summed over a clip's frames (paper) or "mean" over frames
    w_dice: float = 0.0                 # per-pair dice term, in the loss and the matching cost (0: the paper's loss)
    mined_weight: float = 1.0           # object weight x this for mined still objects (1: as motion instances);
                                        # burn-in stages with data.mined_dir only (TrainConfig checks)

    def __post_init__(self):
        for key, allowed in (("object_weight", ("positive", "all")), ("fg_average", ("pixels", "objects")),
                             ("clip_reduction", ("sum", "mean"))):
            if getattr(self, key) not in allowed:
                raise ValueError(f"loss.{key} must be one of {allowed}, got {getattr(self, key)!r}")
        if self.w_dice < 0:
            raise ValueError(f"loss.w_dice must be >= 0, got {self.w_dice}")
        if not (self.mined_weight > 0 and math.isfinite(self.mined_weight)):
            raise ValueError(f"loss.mined_weight must be a finite number > 0, got {self.mined_weight}")

    def w_recon(self, modality: str) -> float:
        return {"rgb": self.w_recon_rgb, "lidar": self.w_recon_lidar}[modality]


def one_hot_targets(targets: torch.Tensor, max_objects: int | None = None) -> torch.Tensor:
    """(F, N) ids 0..G -> (F, G, N) float one-hot of the objects (background dropped)."""
    G = int(targets.max()) if max_objects is None else max_objects
    ids = torch.arange(1, G + 1, device=targets.device)
    return (targets[:, None, :] == ids[None, :, None]).float()


def bce_cost(probs: torch.Tensor, onehot: torch.Tensor, log1mp: torch.Tensor | None = None) -> torch.Tensor:
    """Mean per-pixel BCE between every slot and every target: (F, K, N), (F, G, N) -> (F, K, G).

    BCE(k, g) = -(sum_n y_gn [log p_kn - log(1 - p_kn)] + sum_n log(1 - p_kn)) / N, and the first
    sum only needs log p on the union of the targets: one log over all pixels, one on the union."""
    p = probs.clamp(EPS, 1 - EPS)
    if log1mp is None:
        log1mp = torch.log1p(-p)
    N = p.shape[-1]
    union = torch.nonzero(onehot.amax((0, 1)) > 0).squeeze(1)                  # pixels in any target
    logit_u = torch.log(p[..., union]) - log1mp[..., union]                    # (F, K, U)
    cross = torch.bmm(logit_u, onehot[..., union].transpose(1, 2))             # (F, K, G)
    return -(cross + log1mp.sum(-1, keepdim=True)) / N


def dice_cost(probs: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """1 - dice between every slot and every target: (F, K, N), (F, G, N) -> (F, K, G) (smoothed by 1)."""
    inter = torch.bmm(probs, onehot.transpose(1, 2))                           # (F, K, G)
    return 1 - (2 * inter + 1) / (probs.sum(-1)[:, :, None] + onehot.sum(-1)[:, None, :] + 1)


def hungarian(cost: torch.Tensor, present: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Assignments per frame: cost (F, K, G), present (F, G) bool (target g exists in frame f) ->
    (frame, slot, target) index arrays of all matches."""
    c = cost.detach().float().cpu().numpy()
    pres = present.cpu().numpy()
    fs, ks, gs = [], [], []
    for f in np.flatnonzero(pres.any(1)):                                      # small problems only
        cols = np.flatnonzero(pres[f])
        k, g = linear_sum_assignment(c[f][:, cols])
        fs.append(np.full(len(k), f))
        ks.append(k)
        gs.append(cols[g])
    if not fs:
        return (np.zeros(0, int),) * 3
    return np.concatenate(fs), np.concatenate(ks), np.concatenate(gs)


def motion_losses(masks: torch.Tensor, targets: torch.Tensor, frame_valid: torch.Tensor | None = None,
                  object_weights: torch.Tensor | None = None, cfg: LossConfig = LossConfig(),
                  mined_from: torch.Tensor | None = None) -> dict:
    """masks (B, T, K, h, w) or (F, K, h, w) (clips of one frame); targets ids (same leading dims,
    h, w), 0 = background, instances numbered 1..G per frame; frame_valid (leading dims) bool;
    object_weights (leading dims, G_max) optional (replaces the burn-in weighting); mined_from
    (leading dims) optional: ids from it on are mined objects, weighted by `cfg.mined_weight`.
    Returns the weighted terms and 'total'."""
    K, h, w = masks.shape[-3:]
    T = masks.shape[1] if masks.dim() == 5 else 1
    masks = masks.reshape(-1, K, h * w)                                        # (F, K, N)
    targets = targets.reshape(-1, h * w).to(masks.device)                      # (F, N)
    Fn = masks.shape[0]
    valid = torch.ones(Fn, dtype=torch.bool, device=masks.device) if frame_valid is None \
        else frame_valid.reshape(-1).to(masks.device)
    targets = torch.where(valid[:, None], targets, torch.zeros_like(targets))
    fg = 1 - masks[:, -1]                                                      # (F, N)

    def reduce(per_frame: torch.Tensor) -> torch.Tensor:                      # (F,) -> scalar
        clips = per_frame.view(-1, T)                                          # (B, T)
        return clips.sum(1).mean() if cfg.clip_reduction == "sum" else clips.mean()
    onehot = one_hot_targets(targets)                                          # (F, G, N)
    G = onehot.shape[1]
    out = {}
    if G:
        present = onehot.amax(-1) > 0                                          # (F, G) ids need not be consecutive
        probs = masks[:, :-1]                                                  # object slots (F, K-1, N)
        with torch.no_grad():
            cost = cfg.w_bce * bce_cost(probs.detach().float(), onehot)
            if cfg.w_dice:
                cost = cost + cfg.w_dice * dice_cost(probs.detach().float(), onehot)
        f, k, g = (torch.as_tensor(a, device=masks.device) for a in hungarian(cost, present))
        pred, tgt = probs[f, k], onehot[f, g]                                  # (M, N) matched pairs only
        if object_weights is not None:
            weight = object_weights.reshape(Fn, -1).to(masks.device)[f, g]
        elif cfg.burn_in_weighting:
            weight = 2 - tgt.mean(-1)
        else:
            weight = torch.ones_like(tgt[:, 0])
        if mined_from is not None and cfg.mined_weight != 1.0:                # ids are 1-based: pair g is id g + 1
            mined = g + 1 >= mined_from.reshape(-1).to(masks.device)[f]
            weight = torch.where(mined, weight * cfg.mined_weight, weight)
        p = pred.float().clamp(EPS, 1 - EPS)                                   # (explicit: safe under autocast)
        pos, neg = tgt * torch.log(p), (1 - tgt) * torch.log1p(-p)            # (M, N)
        if cfg.object_weight == "positive":
            bce = -(weight[:, None] * pos + neg).mean(-1)                      # (M,)
        else:
            bce = -weight * (pos + neg).mean(-1)
        n_match = torch.zeros(Fn, device=masks.device).index_add_(0, f, torch.ones_like(bce)).clamp(min=1)
        pair_mean = lambda v: reduce(torch.zeros(Fn, device=masks.device).index_add_(0, f, v) / n_match)   # (M,) -> scalar
        out["bce"] = pair_mean(bce)
        if cfg.w_dice:
            out["dice"] = pair_mean(1 - (2 * (p * tgt).sum(-1) + 1) / (p.sum(-1) + tgt.sum(-1) + 1))
        union = (onehot.amax(1) > 0).float()                                   # (F, N)
        denom = union.sum(-1).clamp(min=1) if cfg.fg_average == "objects" else union.shape[-1]
        out["fg_nll"] = reduce(-(torch.log(fg.clamp(min=EPS)) * union).sum(-1) / denom)
    else:
        out["bce"] = out["fg_nll"] = masks.sum() * 0
        if cfg.w_dice:
            out["dice"] = masks.sum() * 0
    out["reg"] = reduce(fg.mean(-1) * valid)
    out["total"] = cfg.w_bce * out["bce"] + cfg.w_fg * out["fg_nll"] + cfg.w_reg * out["reg"] \
        + (cfg.w_dice * out["dice"] if cfg.w_dice else 0)
    return out


def recon_loss(recon: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over frames of the per-frame MSE; with `valid` (same leading dims, H, W) only over the
    valid pixels of each frame (scene completion). recon (..., C, H/s, W/s), target (..., C, H, W):
    a reconstruction s times coarser is compared with the target averaged over s x s cells (over
    the pixels with a return, and a cell is valid when one of its pixels is)."""
    C, H, W = recon.shape[-3:]
    s = target.shape[-1] // W
    if s > 1:
        t = target.reshape(-1, C, *target.shape[-2:]).float()                 # (F, C, sH, sW)
        if valid is None:
            target = F.avg_pool2d(t, s)
        else:
            v = valid.reshape(-1, 1, *valid.shape[-2:]).float()                # (F, 1, sH, sW)
            cover = F.avg_pool2d(v, s)
            target, valid = F.avg_pool2d(t * v, s) / cover.clamp(min=1e-6), cover > 0
    err = ((recon.float().reshape(-1, C, H, W) - target.float().reshape(-1, C, H, W)) ** 2).flatten(2)   # (F, C, P)
    if valid is None:
        return err.mean()
    v = valid.reshape(-1, 1, H * W).to(err.dtype)                              # (F, 1, P)
    return ((err * v).sum((1, 2)) / (v.sum((1, 2)) * C).clamp(min=1)).mean()
