"""Teacher-student distillation pieces (DIOD self-distillation and xMOD cross-modal distillation).

- `make_teacher` / `ema_update`: an EMA copy of a student (keep rate 0.996), always in eval mode;
  parameters are averaged, buffers (BatchNorm running statistics, and its integer batch counter)
  are copied, never averaged as integers.
- `pseudo_labels`: a teacher's slot masks -> instance ids. Each pixel whose most attended slot is
  an object slot takes the argmax over the object slots (every slot can be an object, slot 0
  included); each slot's region is split into connected components; components that are
  confident (mean teacher foreground above `min_confidence`) and large enough are kept, the rest
  is background. Connected components of all slots' masks at once (`instances.connected_components`:
  scipy's labelling on the CPU, iterated 3x3 maxima of pixel indices on a GPU), no per-slot or
  per-frame Python.
- `motion_confidence`: motion-mask objects scored by the teacher (mean foreground over the
  object), to filter them and weight them (1 + confidence), as in DIOD.
- `merge_targets`: motion objects plus teacher objects that do not overlap them, with weights;
  with `geometry_gate`, only the teacher objects whose LiDAR returns look like a movable object
  (`geometry.geometry_gate`: off the ground plane, object-sized) are added.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .geometry import GateConfig, LidarView, geometry_gate
from .instances import connected_components


@dataclass
class DistillConfig:
    ema_keep: float = 0.996            # teacher = keep * teacher + (1 - keep) * student, every step
    min_confidence: float = 0.9        # teacher components kept above this mean foreground
    min_size: int = 8                  # pixels of the 1/4 grid (on a finer mask grid: the same area); smaller: noise
    motion_min_confidence: float = 0.5 # motion-mask objects the teacher does not see at all are dropped
    overlap_iou: float = 0.3           # a teacher object overlapping a motion object by this much is the same object
    cross_modal: bool = True           # 2d_3d_ts: the 2D teacher teaches the 3D student and vice versa
    geometry_gate: bool = False        # teacher objects must look movable in the LiDAR (ground, size; the
                                       # stage then loads the LiDAR for a 2D student too)
    gate: GateConfig = field(default_factory=GateConfig)


def make_teacher(student: nn.Module) -> nn.Module:
    teacher = copy.deepcopy(student).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, keep: float) -> None:
    for pt, ps in zip(teacher.parameters(), student.parameters()):
        pt.mul_(keep).add_(ps.detach(), alpha=1 - keep)
    for bt, bs in zip(teacher.buffers(), student.buffers()):
        bt.copy_(bs)                                     # running stats and counters: copied


def compact_per_frame(ids: torch.Tensor) -> torch.Tensor:
    """(F, h, w) arbitrary non-negative ids -> 0..G per frame (0 stays background)."""
    Fn = ids.shape[0]
    L = int(ids.max()) + 1 if ids.numel() else 1
    keys = torch.arange(Fn, device=ids.device).view(-1, 1, 1) * L + ids
    u, inv = torch.unique(keys, return_inverse=True)
    base = torch.arange(Fn, device=ids.device) * L
    start = torch.searchsorted(u, base)                                                # first key of each frame
    has_bg = u[start] == base                                                          # the frame has background
    frame = torch.arange(Fn, device=ids.device).view(-1, 1, 1).expand_as(ids)
    return inv - start[frame] + (~has_bg[frame]).long()


def pseudo_labels(masks: torch.Tensor, cfg: DistillConfig, cells: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """masks (..., K, h, w) of a teacher -> ids (..., h, w) (1..G per frame, 0 background) and the
    confidence of each kept object as a per-pixel map (..., h, w) (0 on background). `cells`: mask
    pixels per cell of the 1/4 grid (4 for masks at 1/2 of the input), which `min_size` counts."""
    lead, (K, h, w) = masks.shape[:-3], masks.shape[-3:]
    m = masks.reshape(-1, K, h, w)
    Fn = m.shape[0]
    fg = 1 - m[:, -1]                                                                  # (F, h, w)
    slot = m[:, :-1].argmax(1)                                                         # (F, h, w) object slot
    is_obj = m.argmax(1) != K - 1                                                      # the object slot beats the background
    onehot = (F.one_hot(slot, K - 1).permute(0, 3, 1, 2).bool() & is_obj[:, None])      # (F, K-1, h, w)
    comp = connected_components(onehot.flatten(0, 1)).view(Fn, K - 1, h, w).amax(1)    # (F, h, w) component id
    ids = compact_per_frame(comp)                                                      # 0..G per frame
    G = int(ids.max()) + 1
    flat = ids.flatten(1)                                                              # (F, N)
    size = torch.zeros(Fn, G, device=m.device).scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float32))
    conf = torch.zeros(Fn, G, device=m.device).scatter_add_(1, flat, fg.flatten(1).float()) / size.clamp(min=1)
    keep = (size >= cfg.min_size * cells) & (conf > cfg.min_confidence)
    keep[:, 0] = False
    kept = keep.gather(1, flat)
    ids = compact_per_frame(torch.where(kept, flat, 0).view(Fn, h, w))
    conf_map = torch.where(kept, conf.gather(1, flat), 0).view(Fn, h, w)
    return ids.reshape(*lead, h, w), conf_map.reshape(*lead, h, w)


def motion_confidence(motion: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean teacher foreground over each motion instance: motion (F, h, w) ids 0..G, masks
    (F, K, h, w) -> (F, G + 1) (column 0 unused)."""
    Fn = motion.shape[0]
    G = int(motion.max()) + 1
    flat = motion.flatten(1).long()
    fg = (1 - masks[:, -1]).flatten(1).float()
    size = torch.zeros(Fn, G, device=masks.device).scatter_add_(1, flat, torch.ones_like(fg))
    return torch.zeros(Fn, G, device=masks.device).scatter_add_(1, flat, fg) / size.clamp(min=1)


def merge_targets(motion: torch.Tensor, motion_valid: torch.Tensor, teacher_masks: torch.Tensor,
                  cfg: DistillConfig, lidar: LidarView | None = None, cells: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets for a student in a distillation stage, on the masks' grid (`cells` of it per cell of
    the 1/4 grid, as in `pseudo_labels`):
    motion (B, T, h, w) ids, motion_valid (B, T), teacher_masks (B, T, K, h, w) ->
    ids (B, T, h, w) and object weights (B*T, G + 1) for `motion_losses` (column g = id g - 1 ...
    see below). Motion objects the teacher sees (confidence >= motion_min_confidence) keep their
    ids, weighted 1 + confidence; teacher objects that overlap no kept motion object by
    `overlap_iou` are added, weighted 1 + their confidence. Unknown motion frames use the teacher
    objects alone. With cfg.geometry_gate, `lidar` (the batch's B*T frames, `LidarView.of`) is
    required, and teacher objects that fail the gate are dropped."""
    B, T, K, h, w = teacher_masks.shape
    tm = teacher_masks.reshape(B * T, K, h, w)
    mot = torch.where(motion_valid.reshape(-1, 1, 1), motion.reshape(B * T, h, w), 0).long()
    mconf = motion_confidence(mot, tm)                                                 # (F, Gm + 1)
    keep_m = mconf >= cfg.motion_min_confidence
    keep_m[:, 0] = False
    mot = torch.where(keep_m.gather(1, mot.flatten(1)).view_as(mot), mot, 0)
    pl, pconf = pseudo_labels(tm, cfg, cells)                                                 # (F, h, w)
    if cfg.geometry_gate:
        if lidar is None:
            raise ValueError("distill.geometry_gate needs the LiDAR front view (lidar_target, lidar_valid) in the batch")
        keep = geometry_gate(pl, lidar, cfg.gate).gather(1, pl.flatten(1)).view_as(pl)
        pl, pconf = compact_per_frame(torch.where(keep, pl, 0)), torch.where(keep, pconf, 0)
    # IoU of every teacher object with the union of the kept motion objects it overlaps
    Gp = int(pl.max()) + 1
    flat_p = pl.flatten(1)
    area = torch.zeros(B * T, Gp, device=tm.device).scatter_add_(1, flat_p, torch.ones_like(flat_p, dtype=torch.float32))
    inter = torch.zeros_like(area).scatter_add_(1, flat_p, (mot.flatten(1) > 0).float())
    motion_area = (mot > 0).flatten(1).sum(1, keepdim=True).float()
    iou = inter / (area + motion_area - inter).clamp(min=1)
    new = (iou < cfg.overlap_iou) & (inter < 0.5 * area)                               # mostly outside the motion objects
    new[:, 0] = False
    add = new.gather(1, flat_p).view_as(pl) & (mot == 0)
    offset = int(mot.max()) + 1
    ids = compact_per_frame(torch.where(add, pl + offset, mot))
    # weights per compacted id: 1 + confidence (motion: teacher's view of it; teacher objects: their own)
    conf_pix = torch.where(mot > 0, mconf.gather(1, mot.flatten(1)).view_as(mot), torch.where(add, pconf, 0))
    G = int(ids.max()) + 1
    flat = ids.flatten(1)
    size = torch.zeros(B * T, G, device=tm.device).scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float32))
    wsum = torch.zeros(B * T, G, device=tm.device).scatter_add_(1, flat, conf_pix.flatten(1).float())
    weights = 1 + wsum / size.clamp(min=1)
    return ids.view(B, T, h, w), weights[:, 1:]                                        # weights[:, g-1] for id g
