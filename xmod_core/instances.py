"""From slot masks to instances: argmax over slots, the background slot as 0, fragments below a
minimum size dropped, a confidence score per instance. Vectorised over the frame."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def slots_to_instances(masks: torch.Tensor, size: tuple[int, int] | None = None, min_pixels: int = 0
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """masks (..., K, h, w) slot attention (softmax over slots, background last) ->
    ids (..., H, W) int64 (slot k -> id k + 1, background 0; ids of dropped fragments -> 0) and
    scores (..., K - 1): each object slot's mean attention over its own pixels (0 if it has none).
    `size`: evaluate at (H, W) by bilinear upsampling of the attention first."""
    lead, (K, h, w) = masks.shape[:-3], masks.shape[-3:]
    m = masks.reshape(-1, K, h, w).float()
    if size is not None and tuple(size) != (h, w):
        m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
    best = m.argmax(1)                                                     # (F, H, W)
    ids = torch.where(best == K - 1, 0, best + 1)
    onehot = F.one_hot(best, K)[..., :-1].flatten(1, 2).float()            # (F, HW, K-1)
    area = onehot.sum(1)                                                   # (F, K-1)
    conf = (m[:, :-1].flatten(2).transpose(1, 2) * onehot).sum(1) / area.clamp(min=1)
    if min_pixels:
        small = area < min_pixels                                          # (F, K-1)
        drop = torch.cat([small, torch.zeros_like(small[:, :1])], 1)       # background never dropped
        ids = torch.where(drop.gather(1, best.flatten(1)).view_as(best), 0, ids)
        conf = torch.where(small, 0.0, conf)
    return ids.reshape(*lead, *ids.shape[-2:]), conf.reshape(*lead, K - 1)
