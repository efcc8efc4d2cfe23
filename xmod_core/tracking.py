"""Stable instance ids over a sequence: each frame's instances are matched to the previous
frame's tracked instances by mask IoU (one bincount for all pairs, Hungarian on the small
matrix); matched instances keep their track id, the others get fresh ids.

The students restart their temporal state every few frames (see `PredictorConfig.state_horizon`),
and after a restart slot k no longer means the same object, so slot indices alone cannot be
published as ids; the tracker makes ids independent of slots, of the fusion and of restarts.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from .fusion import iou_pairs

MAX_ID = 65535          # labels are published as mono16


class IdTracker:
    def __init__(self, min_iou: float = 0.3):
        if not 0.0 < min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
        self.min_iou = min_iou
        self.reset()

    def reset(self) -> None:
        self.prev: np.ndarray | None = None     # (H, W) previous frame's track ids
        self.prev_ids = np.zeros(0, np.int64)   # track ids present there
        self.next_id = 1

    def _fresh(self, n: int, taken: np.ndarray) -> np.ndarray:
        """n new ids, counting up and wrapping below MAX_ID, never one of `taken`."""
        out = []
        while len(out) < n:
            i = self.next_id
            self.next_id = 1 if i >= MAX_ID else i + 1
            if i not in taken:
                out.append(i)
        return np.asarray(out, np.int64)

    def __call__(self, ids: np.ndarray, scores: dict) -> tuple[np.ndarray, dict]:
        """ids (H, W) instance ids of this frame (0 = background, any positive values); scores
        {id: score}. Returns (H, W) int64 track ids and {track id: score}."""
        ids = np.asarray(ids).astype(np.int64)
        cur = np.unique(ids)
        cur = cur[cur > 0]                                                     # (n,)
        lut = np.zeros(int(ids.max(initial=0)) + 1, np.int64)
        lut[cur] = np.arange(1, len(cur) + 1)
        compact = lut[ids]                                                     # (H, W) 0..n
        track = np.zeros(len(cur), np.int64)
        if self.prev is not None and len(cur) and len(self.prev_ids):
            plut = np.zeros(int(self.prev_ids.max()) + 1, np.int64)
            plut[self.prev_ids] = np.arange(1, len(self.prev_ids) + 1)
            iou = iou_pairs(compact, len(cur), plut[self.prev], len(self.prev_ids))   # (n, m)
            r, c = linear_sum_assignment(-iou)
            ok = iou[r, c] >= self.min_iou
            track[r[ok]] = self.prev_ids[c[ok]]
        new = track == 0
        track[new] = self._fresh(int(new.sum()), track[~new])
        out = np.concatenate([[0], track])[compact]
        self.prev, self.prev_ids = out, track
        return out, {int(t): float(scores.get(int(i), 0.0)) for i, t in zip(cur, track)}
