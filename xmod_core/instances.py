"""From slot masks to instances: argmax over slots, the background slot as 0, fragments below a
minimum size dropped, a confidence score per instance. Vectorised over the frame: one max over
the slots and two segment sums (scatter_add), no (pixels x slots) one-hot."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def slots_to_instances(masks: torch.Tensor, size: tuple[int, int] | None = None, min_pixels: int = 0,
                       min_score: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """masks (..., K, h, w) slot attention (softmax over slots, background last) ->
    ids (..., H, W) int64 (slot k -> id k + 1, background 0; ids of dropped instances -> 0) and
    scores (..., K - 1): each object slot's mean attention over its own pixels (0 if it has none or
    was dropped). Dropped: fragments under `min_pixels` pixels and instances scoring under
    `min_score` (a slot that wins its pixels with little of their attention is unsure of them).
    `size`: evaluate at (H, W) by bilinear upsampling of the attention first."""
    lead, (K, h, w) = masks.shape[:-3], masks.shape[-3:]
    m = masks.reshape(-1, K, h, w).float()
    if size is not None and tuple(size) != (h, w):
        m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
    top, best = m.max(1)                                                   # (F, H, W): a pixel's slot and its attention
    ids = torch.where(best == K - 1, 0, best + 1)
    flat = best.flatten(1)                                                 # (F, HW)
    area = torch.zeros(m.shape[0], K, device=m.device).scatter_add_(1, flat, torch.ones_like(top).flatten(1))
    conf = torch.zeros_like(area).scatter_add_(1, flat, top.flatten(1))[:, :-1] / area[:, :-1].clamp(min=1)
    if min_pixels or min_score:
        drop = area < min_pixels                                           # (F, K)
        drop[:, :-1] |= conf < min_score
        drop[:, -1] = False                                                # background never dropped
        ids = torch.where(drop.gather(1, flat).view_as(best), 0, ids)
        conf = torch.where(drop[:, :-1], 0.0, conf)
    return ids.reshape(*lead, *ids.shape[-2:]), conf.reshape(*lead, K - 1)
