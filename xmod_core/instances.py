"""From slot masks to instances: argmax over slots, the background slot as 0, small instances
dropped, a confidence score per instance. Vectorised over the frame: one max over the slots and
two segment sums (scatter_add), no (pixels x slots) one-hot at the output size.

A slot's pixels need not be connected: a slot can hold one object and a few stray cells far from
it, or two objects. `fragments="largest"` keeps only each slot's largest 8-connected component
(found on the slot grid, as the teacher's pseudo-labels are) and gives the rest to the background,
so that an instance is one connected region on the slot grid (at a finer output size, up to its
one-cell border) as the training targets are; `"keep"` keeps every pixel a slot wins (the
paper's argmax)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

FRAGMENTS = ("keep", "largest")


def max3x3(x: torch.Tensor) -> torch.Tensor:
    """3x3 maximum (stride 1, zero padding) of (..., h, w) non-negative values, as two 1D maxima of
    shifted views: about ten times faster than max_pool2d on small CPU tensors."""
    p = F.pad(x, (1, 1, 1, 1))
    r = torch.maximum(torch.maximum(p[..., :-2], p[..., 1:-1]), p[..., 2:])               # along w
    return torch.maximum(torch.maximum(r[..., :-2, :], r[..., 1:-1, :]), r[..., 2:, :])   # along h


def connected_components(mask: torch.Tensor, method: str = "auto", rounds: int | None = None) -> torch.Tensor:
    """(N, h, w) bool -> (N, h, w) int64: 8-connected components of each mask, each labelled by its
    largest linear pixel index + 1 (so the labels do not depend on the method), 0 outside.

    `method`: "label" (scipy.ndimage.label on the host, one call for all N masks; the default on
    the CPU) or "pool" (the default on a GPU: labels spread by iterated 3x3 maxima of the pixel
    indices). `rounds`: None spreads until the labels settle (checked every 4 rounds, at most
    h * w); a number runs exactly that many rounds with no check, so nothing waits for the device
    and the rounds can be captured in a CUDA graph (a component whose geodesic diameter exceeds
    them may stay split)."""
    if method == "auto":
        method = "pool" if mask.is_cuda else "label"
    if method not in ("label", "pool"):
        raise ValueError(f"method must be auto, label or pool, got {method!r}")
    N, h, w = mask.shape
    dev = mask.device
    if mask.numel() == 0:
        return torch.zeros(mask.shape, dtype=torch.long, device=dev)
    idx = torch.arange(1, h * w + 1, device=dev)                                           # linear pixel index + 1
    if method == "label":
        if mask.is_cuda and torch.cuda.is_current_stream_capturing():
            raise RuntimeError("connected_components: method 'label' runs on the host and cannot be captured in a "
                               "CUDA graph; use method 'pool'")
        structure = np.zeros((3, 3, 3), bool)
        structure[1] = True                                                                 # 8-connected, never across masks
        lab, n = ndimage.label(mask.cpu().numpy(), structure)                              # (N, h, w) 1..n, 0 outside
        lab = torch.from_numpy(lab.astype(np.int64)).view(N, h * w).to(dev)
        top = torch.zeros(n + 1, dtype=torch.long, device=dev).scatter_reduce_(
            0, lab.flatten(), idx.expand(N, -1).flatten(), "amax")                          # each label's largest pixel
        return torch.where(lab > 0, top[lab], 0).view(N, h, w)
    m, zero = mask[:, None], torch.zeros((), device=dev)
    lab = torch.where(m, idx.view(1, 1, h, w).float(), zero)                               # (N, 1, h, w)
    for i in range(rounds if rounds is not None else h * w):
        new = torch.where(m, max3x3(lab), zero)
        if rounds is None and i % 4 == 3 and torch.equal(new, lab):
            break
        lab = new
    return lab[:, 0].long()


def largest_components(onehot: torch.Tensor, method: str = "auto") -> torch.Tensor:
    """(N, h, w) bool -> (N, h, w) bool: the largest 8-connected component of each mask (ties: the
    component whose last pixel comes first in raster order, whichever the method). On a GPU
    ("pool") the components spread for a fixed h + w rounds (see `connected_components`), so the
    step stays free of host synchronisation; on the CPU ("label") they are exact."""
    N, h, w = onehot.shape
    if method == "auto":
        method = "pool" if onehot.is_cuda else "label"
    lab = connected_components(onehot, method, rounds=h + w if method == "pool" and onehot.is_cuda else None)
    lab = lab.view(N, h * w)
    size = torch.zeros(N, h * w + 1, device=onehot.device).scatter_add_(1, lab, torch.ones_like(lab, dtype=torch.float32))
    size[:, 0] = 0
    return (lab == size.argmax(1, keepdim=True)).view(N, h, w) & onehot


def slots_to_instances(masks: torch.Tensor, size: tuple[int, int] | None = None, min_pixels: int = 0,
                       min_score: float = 0.0, fragments: str = "keep") -> tuple[torch.Tensor, torch.Tensor]:
    """masks (..., K, h, w) slot attention (softmax over slots, background last) ->
    ids (..., H, W) int64 (slot k -> id k + 1, background 0; ids of dropped instances -> 0) and
    scores (..., K - 1): each object slot's mean attention over the pixels it keeps (0 if it has
    none or was dropped). Dropped: with `fragments="largest"`, every part of a slot but its largest
    connected component on the slot grid; then instances under `min_pixels` pixels and instances
    scoring under `min_score` (a slot that wins its pixels with little of their attention is unsure
    of them).
    `size`: evaluate at (H, W) by bilinear upsampling of the attention first."""
    if fragments not in FRAGMENTS:
        raise ValueError(f"fragments must be one of {FRAGMENTS}, got {fragments!r}")
    lead, (K, h, w) = masks.shape[:-3], masks.shape[-3:]
    m = masks.reshape(-1, K, h, w).float()
    low = m
    if size is not None and tuple(size) != (h, w):
        m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
    top, best = m.max(1)                                                   # (F, H, W): a pixel's slot and its attention
    if fragments == "largest":
        onehot = F.one_hot(low.argmax(1), K)[..., :-1].permute(0, 3, 1, 2).bool()          # (F, K-1, h, w) on the slot grid
        keep = largest_components(onehot.flatten(0, 1)).view(-1, K - 1, h, w).float()
        keep = max3x3(keep).flatten(1)                                     # one cell of slack for the finer argmax's border
        H, W = best.shape[-2:]                                             # each pixel looks up its slot in its nearest cell
        cell = ((torch.arange(H, device=m.device) * h // H)[:, None] * w + torch.arange(W, device=m.device) * w // W)
        kept = keep.gather(1, (best.clamp(max=K - 2) * (h * w) + cell).flatten(1)).view_as(best) > 0
        best = torch.where(kept | (best == K - 1), best, K - 1)            # fragments -> background
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
