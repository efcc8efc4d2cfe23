"""Metric geometry of the LiDAR front view, for judging a teacher's objects without labels.

A teacher-student stage feeds a teacher's confident slots back to its student as labels; objects
that are flat ground or building-sized get learnt, then found with more confidence, and the
teacher's foreground spreads (docs/training.md, "Geometry-gated teacher labels"). The gate here
keeps a teacher object only when the LiDAR returns under it look like a movable object, with the
size bounds of the Euclidean-clustering baseline (`baselines.ClusterConfig`):

- `ground_plane`: a RANSAC plane through the low returns of each frame, batched over frames
  (random triples of low returns, scored on a sample of them), in rectified camera coordinates
  (y down): the test of the clustering baseline's `ground_mask` (numpy, one raw scan), as tensor
  operations on a batch of front views.
- `LidarView`: a batch's metric returns and their ground flags, made once per training step and
  shared by every student's targets.
- `object_geometry`: per object id, its returns, their share on the ground plane, and its height
  and horizontal extents between the 10th and 90th percentiles of its returns (`group_quantiles`,
  one sort for all objects): a mask's border cells that hit the background far behind do not
  stretch them, as they stretch min/max or a standard deviation.
- `geometry_gate`: (F, h, w) frames of ids and their `LidarView` -> the ids of objects that pass.

All tensor operations over frames, pixels and objects; CPU or CUDA.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .baselines import ClusterConfig
from .frontview import X_RANGE, Y_RANGE, Z_RANGE

_LO = torch.tensor([X_RANGE[0], Y_RANGE[0], Z_RANGE[0]])
_SPAN = torch.tensor([X_RANGE[1] - X_RANGE[0], Y_RANGE[1] - Y_RANGE[0], Z_RANGE[1] - Z_RANGE[0]])


_BASE = ClusterConfig()


@dataclass
class GateConfig:
    camera_height: float = 1.65      # m above the road of the rectified camera (KITTI); seeds the plane search
    ground_iters: int = _BASE.ground_iters        # RANSAC planes per frame
    ground_sample: int = _BASE.ground_sample      # low returns each plane is scored on
    ground_tol: float = _BASE.ground_tol          # m from the plane: ground
    min_points: int = _BASE.min_points            # an object needs this many returns to be judged (fewer: dropped)
    max_ground_share: float = 0.5                 # more of its returns on the ground plane: road, not an object
    min_height: float = _BASE.min_height          # m, extents outside these bounds are not movable objects
    max_height: float = _BASE.max_height          #    (the clustering baseline's, not tuned here)
    max_length: float = _BASE.max_length


@dataclass
class LidarView:
    """A batch of front views in metres: xyz (F, 3, H, W), valid returns and ground (F, H, W)."""
    xyz: torch.Tensor
    valid: torch.Tensor
    ground: torch.Tensor

    @classmethod
    def of(cls, lidar: torch.Tensor, valid: torch.Tensor, cfg: GateConfig, generator=None) -> "LidarView":
        """lidar (..., 4, H, W) normalised front views, valid (..., H, W) -> their view, frames flattened."""
        lidar, valid = lidar.reshape(-1, *lidar.shape[-3:]), valid.reshape(-1, *valid.shape[-2:])
        xyz = metric_xyz(lidar)
        return cls(xyz, valid, ground_plane(xyz, valid, cfg, generator))


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


def object_geometry(ids: torch.Tensor, view: LidarView, G: int | None = None, spread: float = 0.1) -> dict:
    """ids (F, H, W) 0..G-1 (0 background) on the view's grid -> per object (F, G): points,
    ground_share, height (of y) and length (the longer of x and z): the ranges between the
    `spread` and 1 - `spread` quantiles of its returns, which stray returns behind or in front of
    the object (a mask's border cells) do not stretch. G: default max id + 1."""
    Fn = ids.shape[0]
    G = G or (int(ids.max()) + 1 if ids.numel() else 1)
    v = view.valid.flatten(1)
    idx = torch.where(v, ids.flatten(1), 0)                                           # returns only; others -> bg
    zeros = torch.zeros(Fn, G, device=ids.device)
    cnt = zeros.scatter_add(1, idx, v.float())
    gnd = zeros.scatter_add(1, idx, (view.ground.flatten(1) & v).float())
    q = torch.tensor([spread, 1 - spread], device=ids.device)
    p = view.xyz.flatten(2).transpose(0, 1).reshape(3 * Fn, -1)                      # (3F, N): axes as frames
    r = group_quantiles(p, idx.repeat(3, 1), v.repeat(3, 1), G, q).view(3, Fn, G, 2)  # one sort for x, y, z
    ext = r[..., 1] - r[..., 0]                                                       # (3, F, G)
    return {"points": cnt, "ground_share": gnd / cnt.clamp(min=1), "height": ext[1],
            "length": torch.maximum(ext[0], ext[2])}


def geometry_gate(ids: torch.Tensor, view: LidarView, cfg: GateConfig) -> torch.Tensor:
    """ids (F, h, w) 0..G objects on the 1/s grid of the view's frames -> (F, G + 1) bool: the
    objects that look movable (column 0, the background, False)."""
    up = F.interpolate(ids[:, None].float(), size=view.valid.shape[-2:], mode="nearest")[:, 0].long()  # (F, H, W)
    geo = object_geometry(up, view, G=int(ids.max()) + 1 if ids.numel() else 1)
    keep = ((geo["points"] >= cfg.min_points) & (geo["ground_share"] <= cfg.max_ground_share)
            & (geo["height"] >= cfg.min_height) & (geo["height"] <= cfg.max_height)
            & (geo["length"] <= cfg.max_length))
    keep[:, 0] = False
    return keep
