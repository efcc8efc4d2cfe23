"""Losses of the DIOD students, computed for a whole batch of frames at once.

Given slot masks `masks` (F, K, N) (F frames, K slots with the background last, N pixels of the
1/4 grid) and target instance ids `targets` (F, N) (0 = background, 1..G per frame):

- **Hungarian matching** of the K-1 object slots to the G instances of each frame on the
  binary cross-entropy cost. All cost matrices come from one batched matrix product on the
  model's device; only the small (K-1) x G assignment problems go to scipy.
- **Matched BCE**: binary cross-entropy between each matched slot mask and its instance mask,
  weighted per object (burn-in: 2 - the object's share of the image, so small objects count
  more; distillation: 1 + the teacher's confidence), gathered and computed in one operation.
- **Foreground NLL**: -log(foreground) on the union of the instances.
- **Regulariser**: the mean foreground, so that what the targets do not claim stays background.
- **Reconstruction**: MSE of the decoder output (RGB for 2D; for 3D all four front-view
  channels, only on pixels that have a LiDAR return in the original, denser projection: scene
  completion).

Frames whose motion mask is unknown (`frame_valid` False) are left out of the motion terms.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

EPS = 1e-6


@dataclass
class LossConfig:
    w_bce: float = 1.0
    w_fg: float = 1.0
    w_reg: float = 0.1
    w_recon: float = 1.0
    burn_in_weighting: bool = True      # weight 2 - share of the image per object (DIOD burn-in)


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
                  object_weights: torch.Tensor | None = None, cfg: LossConfig = LossConfig()) -> dict:
    """masks (F, K, h, w) or (B, T, K, h, w); targets ids (same leading dims, h, w), 0 = background,
    instances numbered 1..G per frame; frame_valid (F,) bool; object_weights (F, G_max) optional
    (replaces the burn-in weighting). Returns the weighted terms and 'total'."""
    K, h, w = masks.shape[-3:]
    masks = masks.reshape(-1, K, h * w)                                        # (F, K, N)
    targets = targets.reshape(-1, h * w).to(masks.device)                      # (F, N)
    Fn = masks.shape[0]
    valid = torch.ones(Fn, dtype=torch.bool, device=masks.device) if frame_valid is None \
        else frame_valid.reshape(-1).to(masks.device)
    targets = torch.where(valid[:, None], targets, torch.zeros_like(targets))
    fg = 1 - masks[:, -1]                                                      # (F, N)
    onehot = one_hot_targets(targets)                                          # (F, G, N)
    G = onehot.shape[1]
    out = {}
    if G:
        present = onehot.amax(-1) > 0                                          # (F, G) ids need not be consecutive
        probs = masks[:, :-1]                                                  # object slots (F, K-1, N)
        with torch.no_grad():
            cost = bce_cost(probs.detach().float(), onehot)
        f, k, g = (torch.as_tensor(a, device=masks.device) for a in hungarian(cost, present))
        pred, tgt = probs[f, k], onehot[f, g]                                  # (M, N) matched pairs only
        if object_weights is not None:
            weight = object_weights.reshape(Fn, -1).to(masks.device)[f, g]
        elif cfg.burn_in_weighting:
            weight = 2 - tgt.mean(-1)
        else:
            weight = torch.ones_like(tgt[:, 0])
        p = pred.float().clamp(EPS, 1 - EPS)                                   # (explicit: safe under autocast)
        bce = -(tgt * torch.log(p) + (1 - tgt) * torch.log1p(-p)).mean(-1)     # (M,)
        # every term is a mean over frames of a per-frame value, so that a data-parallel split of
        # the batch averages to the same loss as the whole batch
        per_frame = torch.zeros(Fn, device=masks.device).index_add_(0, f, weight * bce)
        n_match = torch.zeros(Fn, device=masks.device).index_add_(0, f, torch.ones_like(bce))
        out["bce"] = (per_frame / n_match.clamp(min=1)).mean()
        union = (onehot.amax(1) > 0).float()                                   # (F, N)
        nll = -(torch.log(fg.clamp(min=EPS)) * union).sum(-1) / union.sum(-1).clamp(min=1)
        out["fg_nll"] = nll.mean()
    else:
        out["bce"] = out["fg_nll"] = masks.sum() * 0
    out["reg"] = (fg.mean(-1) * valid).mean()
    out["total"] = cfg.w_bce * out["bce"] + cfg.w_fg * out["fg_nll"] + cfg.w_reg * out["reg"]
    return out


def recon_loss(recon: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over frames of the per-frame MSE; with `valid` (same leading dims, H, W) only over the
    valid pixels of each frame (scene completion). recon, target (..., C, H, W)."""
    C, H, W = recon.shape[-3:]
    err = ((recon.float() - target.float()) ** 2).reshape(-1, C, H * W)        # (F, C, P)
    if valid is None:
        return err.mean()
    v = valid.reshape(-1, 1, H * W).to(err.dtype)                              # (F, 1, P)
    return ((err * v).sum((1, 2)) / (v.sum((1, 2)) * C).clamp(min=1)).mean()
