"""Training stages. A stage owns its students (trained), its teachers (if any) and its losses; the
trainer only runs the optimisation loop around `Stage.loss`.

Burn-in stages (DIOD / DIOD-3D): the student learns from the motion masks alone.
    2d_burn_in  the 2D student on RGB clips, reconstruction of the RGB input
    3d_burn_in  the 3D student on the LiDAR front view; scene completion: in some clips it sees a sparser cloud
                (point drop) and reconstructs the original projection on the pixels that have a return
Teacher-student stages: an EMA teacher per student turns its confident slots into pseudo-labels
that join the (teacher-filtered, teacher-weighted) motion masks.
    2d_ts       DIOD self-distillation of the 2D student
    3d_ts       DIOD-3D self-distillation
    2d_3d_ts    xMOD: the 2D teacher's pseudo-labels train the 3D student and the 3D teacher's the
                2D student (`distill.cross_modal`; false: each its own, the same-modal ablation).
Teachers see the same crop and flip as their students (so their labels line up on the shared,
pixel-aligned grid) without the colour jitter or point drop.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from .distill import DistillConfig, ema_update, make_teacher, merge_targets
from .geometry import LidarView
from .losses import LossConfig, motion_losses, recon_loss
from .model import DIOD, ModelConfig

MODALITY_CHANNELS = {"rgb": 3, "lidar": 4}


def student_config(model: ModelConfig, modality: str) -> ModelConfig:
    c = MODALITY_CHANNELS[modality]
    return replace(model, in_channels=c, out_channels=c)


class Stage:
    """Base: `students` are optimised, `teachers` are not (EMA copies, distillation stages)."""
    name = ""
    modalities: tuple = ()                 # the students' modalities

    @property
    def data_modalities(self) -> tuple:
        """What the stage's clips must carry: its students' inputs, and the LiDAR where a
        geometry gate judges a 2D teacher's objects."""
        return self.modalities

    def __init__(self, model_cfg: ModelConfig, loss_cfg: LossConfig):
        self.model_cfg, self.loss_cfg = model_cfg, loss_cfg
        self.students: dict[str, nn.Module] = {}
        self.teachers: dict[str, nn.Module] = {}

    def parameters(self):
        return [p for m in self.students.values() for p in m.parameters()]

    def to(self, device):
        for m in (*self.students.values(), *self.teachers.values()):
            m.to(device)
        return self

    def loss(self, batch: dict, nets: dict) -> tuple[torch.Tensor, dict, dict]:
        """nets: the students as called by the trainer (maybe DDP-wrapped). Returns the total loss,
        scalar logs and, for TensorBoard, predicted masks (B, T, K, h, w) per modality."""
        raise NotImplementedError

    def after_step(self, step: int) -> None:
        """Hook after each optimiser step (EMA teacher updates in distillation stages)."""

    def on_start(self) -> None:
        """Hook once the students hold their initial weights (fresh runs, not resumes)."""

    def state_dict(self) -> dict:
        return {"students": {k: m.state_dict() for k, m in self.students.items()},
                "teachers": {k: m.state_dict() for k, m in self.teachers.items()}}

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        for group, mods in (("students", self.students), ("teachers", self.teachers)):
            for k, m in mods.items():
                if k in state.get(group, {}):
                    m.load_state_dict(state[group][k], strict=strict)
                elif strict:
                    raise KeyError(f"checkpoint has no {group[:-1]} '{k}'")


class BurnIn(Stage):
    """DIOD burn-in of one student on motion masks (+ reconstruction / scene completion)."""

    def __init__(self, model_cfg: ModelConfig, loss_cfg: LossConfig, modality: str):
        super().__init__(model_cfg, loss_cfg)
        self.modality = modality
        self.modalities = (modality,)
        self.name = {"rgb": "2d_burn_in", "lidar": "3d_burn_in"}[modality]
        self.students = {modality: DIOD(student_config(model_cfg, modality))}

    def loss(self, batch, nets):
        key = self.modality
        out = nets[key](batch[key])                                            # masks (B, T, K, h, w)
        terms = motion_losses(out["masks"], batch["motion"], batch["motion_valid"], cfg=self.loss_cfg,
                              mined_from=batch.get("motion_mined_from"))
        valid = batch.get("lidar_valid") if key == "lidar" else None
        terms["recon"] = recon_loss(out["recon"], batch[f"{key}_target"], valid)
        total = terms["total"] + self.loss_cfg.w_recon(key) * terms["recon"]
        logs = {k: float(v.detach()) for k, v in terms.items() if k != "total"} | {"total": float(total.detach())}
        return total, logs, {key: out["masks"].detach()}


TEACHER_INPUT = {"rgb": "rgb_clean", "lidar": "lidar_target"}


class TeacherStudent(Stage):
    """DIOD self-distillation (one modality) or xMOD cross-modal distillation (both)."""

    def __init__(self, model_cfg: ModelConfig, loss_cfg: LossConfig, distill_cfg: DistillConfig, name: str,
                 modalities: tuple):
        super().__init__(model_cfg, loss_cfg)
        self.name, self.modalities, self.dcfg = name, modalities, distill_cfg
        self.students = {m: DIOD(student_config(model_cfg, m)) for m in modalities}
        self.teachers = {m: make_teacher(s) for m, s in self.students.items()}

    def on_start(self):
        for m, s in self.students.items():          # teachers start as the (initialised) students
            self.teachers[m].load_state_dict(s.state_dict())

    @property
    def data_modalities(self) -> tuple:
        extra = ("lidar",) if self.dcfg.geometry_gate and "lidar" not in self.modalities else ()
        return self.modalities + extra

    def source(self, modality: str) -> str:
        """Whose teacher labels this student: the other modality's in cross-modal xMOD."""
        if len(self.modalities) == 2 and self.dcfg.cross_modal:
            return next(m for m in self.modalities if m != modality)
        return modality

    def loss(self, batch, nets):
        with torch.no_grad():
            t_masks = {m: t(batch[TEACHER_INPUT[m]])["masks"] for m, t in self.teachers.items()}
        view = None                                   # the LiDAR's geometry, once per step for every student
        if self.dcfg.geometry_gate and "lidar_target" in batch:
            view = LidarView.of(batch["lidar_target"], batch["lidar_valid"], self.dcfg.gate)
        total, logs, vis = 0.0, {}, {}
        cells = (self.model_cfg.output_stride // self.model_cfg.mask_stride) ** 2   # mask pixels per slot cell
        # (4 with fine masks; a student at output_stride 2 keeps min_size in its own grid's pixels, as trained)
        for m in self.modalities:
            ids, weights = merge_targets(batch["motion"], batch["motion_valid"], t_masks[self.source(m)], self.dcfg, view, cells)
            out = nets[m](batch[m])
            terms = motion_losses(out["masks"], ids, None, object_weights=weights, cfg=self.loss_cfg)
            valid = batch.get("lidar_valid") if m == "lidar" else None
            terms["recon"] = recon_loss(out["recon"], batch[f"{m}_target"], valid)
            total = total + terms["total"] + self.loss_cfg.w_recon(m) * terms["recon"]
            logs |= {f"{m}/{k}": float(v.detach()) for k, v in terms.items()}
            logs[f"{m}/targets"] = float((ids.flatten(2).amax(-1)).float().mean())
            vis[m] = out["masks"].detach()
        logs["total"] = float(total.detach())
        return total, logs, vis

    def after_step(self, step: int):
        for m in self.modalities:
            ema_update(self.teachers[m], self.students[m], self.dcfg.ema_keep)


STAGES = {
    "2d_burn_in": lambda m, l, d: BurnIn(m, l, "rgb"),
    "3d_burn_in": lambda m, l, d: BurnIn(m, l, "lidar"),
    "2d_ts": lambda m, l, d: TeacherStudent(m, l, d, "2d_ts", ("rgb",)),
    "3d_ts": lambda m, l, d: TeacherStudent(m, l, d, "3d_ts", ("lidar",)),
    "2d_3d_ts": lambda m, l, d: TeacherStudent(m, l, d, "2d_3d_ts", ("rgb", "lidar")),
}


def build_stage(name: str, model_cfg: ModelConfig, loss_cfg: LossConfig, distill_cfg: DistillConfig | None = None) -> Stage:
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; stages: {sorted(STAGES)}")
    return STAGES[name](model_cfg, loss_cfg, distill_cfg or DistillConfig())
