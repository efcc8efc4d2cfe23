"""Reference implementation of the DIOD motion losses, written the straightforward way: a loop
over frames, objects and slots. Kept as the ground truth that `xmod_core.losses` is checked and
benchmarked against (bench/bench_losses.py, test/test_losses.py); never used for training."""
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

EPS = 1e-6


def reference_motion_losses(masks, targets, frame_valid, w_bce=1.0, w_fg=1.0, w_reg=0.3):
    """masks (F, K, h, w), targets (F, h, w) ids, frame_valid (F,) -> dict of floats (clips of one
    frame: every term is the mean over frames)."""
    Fn, K = masks.shape[:2]
    bce_frames, nll_frames, reg_frames = [], [], []
    for f in range(Fn):
        fg = 1 - masks[f, -1]
        reg_frames.append(float(fg.mean()) if frame_valid[f] else 0.0)
        ids = [int(i) for i in torch.unique(targets[f]) if i != 0] if frame_valid[f] else []
        if not ids:
            bce_frames.append(0.0)
            nll_frames.append(0.0)
            continue
        cost = np.zeros((K - 1, len(ids)))
        for k in range(K - 1):
            p = masks[f, k].clamp(EPS, 1 - EPS)
            for j, g in enumerate(ids):
                y = (targets[f] == g).float()
                cost[k, j] = float(-(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean())
        rows, cols = linear_sum_assignment(cost)
        total = 0.0
        for k, j in zip(rows, cols):
            y = (targets[f] == ids[j]).float()
            p = masks[f, k].clamp(EPS, 1 - EPS)
            w = 2 - float(y.mean())                          # weights the object pixels only
            total += float(-(w * y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean())
        bce_frames.append(total / len(rows))
        union = targets[f] > 0
        nll_frames.append(float(-torch.log(fg[union].clamp(min=EPS)).sum()) / union.numel())   # over all pixels
    bce, nll, reg = np.mean(bce_frames), np.mean(nll_frames), np.mean(reg_frames)
    return {"bce": bce, "fg_nll": nll, "reg": reg, "total": w_bce * bce + w_fg * nll + w_reg * reg}
