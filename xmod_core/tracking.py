"""Stable instance ids over a sequence: each frame's instances are matched to the previous
frame's tracked instances by mask IoU (one bincount for all pairs, Hungarian on the small
matrix); matched instances keep their track id, the others get fresh ids.

The students restart their temporal state every few frames (see `PredictorConfig.state_horizon`),
and after a restart slot k no longer means the same object, so slot indices alone cannot be
published as ids; the tracker makes ids independent of slots, of the fusion and of restarts.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .fusion import intersections, iou_from_counts

MAX_ID = 65535          # labels are published as mono16


class IdTracker:
    def __init__(self, min_iou: float = 0.3):
        if not 0.0 < min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
        self.min_iou = min_iou
        self.reset()

    def reset(self) -> None:
        self.prev: torch.Tensor | None = None   # (H, W) previous frame's instances, 0..m (index into prev_ids + 1)
        self.prev_ids = np.zeros(0, np.int64)   # (m,) their track ids
        self.next_id = 1
        self.last = (np.zeros(0, np.int64), np.zeros(0, np.int64))   # last frame's input ids and their track ids

    def _fresh(self, n: int, taken: np.ndarray) -> np.ndarray:
        """n new ids, counting up and wrapping below MAX_ID, never one of `taken`."""
        out = []
        while len(out) < n:
            i = self.next_id
            self.next_id = 1 if i >= MAX_ID else i + 1
            if i not in taken:
                out.append(i)
        return np.asarray(out, np.int64)

    def __call__(self, ids, scores: dict):
        """ids (H, W) instance ids of this frame (0 = background, any non-negative values), a numpy
        array or a tensor (the work stays on its device); scores {id: score}. Returns (H, W) int64
        track ids (numpy in, numpy out) and {track id: score}."""
        as_np = isinstance(ids, np.ndarray)
        ids = torch.as_tensor(ids).long()
        if ids.numel() and int(ids.min()) < 0:
            raise ValueError(f"instance ids must be >= 0, got {int(ids.min())}")
        top = int(ids.max()) if ids.numel() else 0
        if top < 1 << 16:                                                      # the ids present: a bincount, no sort
            cur = torch.bincount(ids.reshape(-1), minlength=1)[1:].nonzero()[:, 0] + 1   # (n,)
            lut = torch.zeros(top + 1, dtype=torch.long, device=ids.device)
            lut[cur] = torch.arange(1, len(cur) + 1, device=ids.device)
            compact = lut[ids]                                                 # (H, W) 0..n
        else:                                                                  # large ids: a sort, no table of them
            cur, compact = torch.unique(ids, return_inverse=True)
            if cur[0] == 0:
                cur = cur[1:]
            else:
                compact = compact + 1
        cur = cur.cpu().numpy()
        track = np.zeros(len(cur), np.int64)
        if self.prev is not None and len(cur) and len(self.prev_ids) and self.prev.shape == compact.shape:
            iou = iou_from_counts(intersections(compact, len(cur), self.prev.to(compact.device), len(self.prev_ids)))
            iou = iou.cpu().numpy()                                            # (n, m)
            r, c = linear_sum_assignment(-iou)
            ok = iou[r, c] >= self.min_iou
            track[r[ok]] = self.prev_ids[c[ok]]
        new = track == 0
        track[new] = self._fresh(int(new.sum()), track[~new])
        out = torch.as_tensor(np.concatenate([[0], track]), device=ids.device)[compact]
        self.prev, self.prev_ids, self.last = compact, track, (cur, track)
        return (out.numpy() if as_np else out), {int(t): float(scores.get(int(i), 0.0)) for i, t in zip(cur, track)}

    def track_ids(self, ids: np.ndarray) -> np.ndarray:
        """The track ids the last call gave to input ids `ids` (any shape; 0 and ids absent from
        that call's map -> 0), e.g. for the points of the objects whose mask the last call tracked."""
        cur, track = self.last                                                 # cur: sorted, no 0
        ids = np.asarray(ids, np.int64)
        if not len(cur):
            return np.zeros_like(ids)
        pos = np.clip(np.searchsorted(cur, ids), 0, len(cur) - 1)
        return np.where(cur[pos] == ids, track[pos], 0)
