"""Metric geometry of the LiDAR front view, for judging a teacher's objects without labels.

A teacher-student stage feeds a teacher's confident slots back to its student as labels; objects
that are flat ground or building-sized get learnt, then found with more confidence, and the
teacher's foreground spreads (docs/training.md, "Geometry-gated teacher labels"). The gate here
keeps a teacher object only when the LiDAR returns under it look like a movable object, with the
size bounds of the Euclidean-clustering baseline (`baselines.ClusterConfig`):

- `ground_plane`: a RANSAC plane through the low returns of each frame, batched over frames
  (random triples of low returns, scored on a sample of them), in rectified camera coordinates
  (y down): the same test as the clustering baseline's `ground_mask`, on the front view.
- `object_geometry`: per object id, its returns, their share on the ground plane, and its height
  and horizontal extents between the 10th and 90th percentiles of its returns (`group_quantiles`,
  one sort for all objects): a mask's border cells that hit the background far behind do not
  stretch them, as they stretch min/max or a standard deviation.
- `geometry_gate`: (F,) frames of ids -> the ids of objects that pass.

All tensor operations over frames, pixels and objects; CPU or CUDA.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .frontview import X_RANGE, Y_RANGE, Z_RANGE

_LO = torch.tensor([X_RANGE[0], Y_RANGE[0], Z_RANGE[0]])
_SPAN = torch.tensor([X_RANGE[1] - X_RANGE[0], Y_RANGE[1] - Y_RANGE[0], Z_RANGE[1] - Z_RANGE[0]])


@dataclass
class GateConfig:
    camera_height: float = 1.65      # m above the road of the rectified camera (KITTI); seeds the plane search
    ground_iters: int = 64           # RANSAC planes per frame
    ground_sample: int = 1000        # low returns each plane is scored on
    ground_tol: float = 0.2          # m from the plane: ground (as the clustering baseline)
    min_points: int = 10             # an object needs this many returns to be judged (fewer: dropped)
    max_ground_share: float = 0.5    # more of its returns on the ground plane: road, not an object
    min_height: float = 0.4          # m, extents outside these bounds are not movable objects
    max_height: float = 4.5          #    (the clustering baseline's bounds, not tuned here)
    max_length: float = 12.0


def metric_xyz(features: torch.Tensor) -> torch.Tensor:
    """(..., 4, H, W) normalised front view -> (..., 3, H, W) metres (rectified camera x, y, z)."""
    shape = [1] * (features.dim() - 3) + [3, 1, 1]
    lo, span = _LO.to(features).view(shape), _SPAN.to(features).view(shape)
    return features[..., :3, :, :] * span + lo


def ground_plane(xyz: torch.Tensor, valid: torch.Tensor, cfg: GateConfig, generator=None) -> torch.Tensor:
    """xyz (F, 3, H, W) metres, valid (F, H, W) -> (F, H, W) bool: returns within ground_tol of
    each frame's best near-horizontal plane through its low returns (no plane: nothing)."""
    Fn = xyz.shape[0]
    pts = xyz.flatten(2).transpose(1, 2).float()                                     # (F, N, 3)
    low = valid.flatten(1) & (pts[..., 1] > cfg.camera_height - 0.6)                 # y down: near the road
    has = low.sum(1) >= 3
    w = torch.where(has[:, None], low.float(), torch.ones_like(low, dtype=torch.float32))
    tri = torch.multinomial(w, 3 * cfg.ground_iters, replacement=True, generator=generator)
    tri = pts.gather(1, tri[..., None].expand(-1, -1, 3)).view(Fn, cfg.ground_iters, 3, 3)  # (F, I, 3, 3)
    n = torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0])       # (F, I, 3)
    norm = n.norm(dim=-1, keepdim=True)
    n = n / norm.clamp(min=1e-9)
    n = n * torch.where(n[..., 1:2] < 0, -1.0, 1.0)                                  # normals down (+y)
    d = -(n * tri[:, :, 0]).sum(-1)                                                   # (F, I)
    ok = (norm[..., 0] > 1e-6) & (n[..., 1] > 0.9)                                   # near-horizontal planes
    sub = torch.multinomial(w, cfg.ground_sample, replacement=True, generator=generator)
    sub = pts.gather(1, sub[..., None].expand(-1, -1, 3))                            # (F, S, 3)
    inl = ((torch.einsum("fsc,fic->fis", sub, n) + d[..., None]).abs() < cfg.ground_tol).sum(-1)
    best = torch.where(ok, inl, -1).argmax(1)                                         # (F,) best near-horizontal plane
    nb = n.gather(1, best.view(-1, 1, 1).expand(-1, 1, 3))[:, 0]                      # (F, 3)
    db = d.gather(1, best[:, None])                                                   # (F, 1)
    dist = (torch.einsum("fnc,fc->fn", pts, nb) + db).abs()
    ground = valid.flatten(1) & (dist < cfg.ground_tol) & (has & ok.any(1))[:, None]
    return ground.view_as(valid)


def group_quantiles(values: torch.Tensor, groups: torch.Tensor, mask: torch.Tensor, G: int, q: torch.Tensor) -> torch.Tensor:
    """Quantiles q (Q,) in [0, 1] of `values` (F, N) per group (F, N) ids 0..G-1 over the `mask`ed
    entries -> (F, G, Q) (nearest rank; 0 for empty groups). One sort of all frames at once."""
    Fn, N = values.shape
    key = (torch.arange(Fn, device=values.device)[:, None] * G + groups).flatten()   # frame-major group key
    key = torch.where(mask.flatten(), key, Fn * G)                                    # masked out: after all
    v = values.flatten().float()
    order = torch.sort(v, stable=True).indices                                       # by value ...
    order = order[torch.sort(key[order], stable=True).indices]                       # ... within each group
    cnt = torch.bincount(key, minlength=Fn * G + 1)[:Fn * G]                          # (F*G,)
    start = torch.cumsum(cnt, 0) - cnt
    pos = start[:, None] + (q.to(v)[None] * (cnt[:, None] - 1).clamp(min=0)).round().long()  # (F*G, Q)
    out = v[order][pos.clamp(max=max(N * Fn - 1, 0))]
    return torch.where(cnt[:, None] > 0, out, 0).view(Fn, G, -1)


def object_geometry(ids: torch.Tensor, xyz: torch.Tensor, valid: torch.Tensor, ground: torch.Tensor,
                    spread: float = 0.1) -> dict:
    """ids (F, H, W) 0..G (0 background), xyz (F, 3, H, W), valid / ground (F, H, W) ->
    per object (F, G + 1): points, ground_share, height (of y) and length (the longer of x and
    z): the ranges between the `spread` and 1 - `spread` quantiles of its returns, which stray
    returns behind or in front of the object (a mask's border cells) do not stretch."""
    Fn = ids.shape[0]
    G = int(ids.max()) + 1 if ids.numel() else 1
    idx = torch.where(valid, ids, 0).flatten(1)                                      # returns only; others -> bg
    v = valid.flatten(1)
    zeros = torch.zeros(Fn, G, device=ids.device)
    cnt = zeros.scatter_add(1, idx, v.float())
    gnd = zeros.scatter_add(1, idx, (ground.flatten(1) & v).float())
    q = torch.tensor([spread, 1 - spread], device=ids.device)
    p = xyz.flatten(2)
    rng = torch.stack([(lambda r: r[..., 1] - r[..., 0])(group_quantiles(p[:, c], idx, v, G, q)) for c in range(3)], 1)
    return {"points": cnt, "ground_share": gnd / cnt.clamp(min=1), "height": rng[:, 1],
            "length": torch.maximum(rng[:, 0], rng[:, 2])}


def geometry_gate(ids: torch.Tensor, lidar: torch.Tensor, valid: torch.Tensor, cfg: GateConfig,
                  generator=None) -> torch.Tensor:
    """ids (F, h, w) objects on the 1/s grid, lidar (F, 4, H, W) normalised front view with its
    valid returns (F, H, W) -> (F, G + 1) bool: the objects that look movable (column 0 False)."""
    H, W = lidar.shape[-2:]
    up = F.interpolate(ids[:, None].float(), size=(H, W), mode="nearest")[:, 0].long()  # (F, H, W)
    xyz = metric_xyz(lidar)
    geo = object_geometry(up, xyz, valid, ground_plane(xyz, valid, cfg, generator))
    keep = ((geo["points"] >= cfg.min_points) & (geo["ground_share"] <= cfg.max_ground_share)
            & (geo["height"] >= cfg.min_height) & (geo["height"] <= cfg.max_height)
            & (geo["length"] <= cfg.max_length))
    G = int(ids.max()) + 1 if ids.numel() else 1
    keep = keep[:, :G] if keep.shape[1] >= G else F.pad(keep, (0, G - keep.shape[1]))
    keep[:, 0] = False
    return keep
