"""Training stages. A stage owns its students (trained), its teachers (if any) and its losses; the
trainer only runs the optimisation loop around `Stage.loss`.

Burn-in stages (DIOD / DIOD-3D): the student learns from the motion masks alone.
    2d_burn_in  the 2D student on RGB clips, reconstruction of the RGB input
    3d_burn_in  the 3D student on the LiDAR front view; scene completion: it sees a sparser cloud
                (point drop) and reconstructs the original projection on the pixels that have a return
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from .losses import LossConfig, motion_losses, recon_loss
from .model import DIOD, ModelConfig

MODALITY_CHANNELS = {"rgb": 3, "lidar": 4}


def student_config(model: ModelConfig, modality: str) -> ModelConfig:
    c = MODALITY_CHANNELS[modality]
    return replace(model, in_channels=c, out_channels=c)


class Stage:
    """Base: `students` are optimised, `teachers` are not (EMA copies, distillation stages)."""
    name = ""
    modalities: tuple = ()

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
        terms = motion_losses(out["masks"], batch["motion"], batch["motion_valid"], cfg=self.loss_cfg)
        valid = batch.get("lidar_valid") if key == "lidar" else None
        terms["recon"] = recon_loss(out["recon"], batch[f"{key}_target"], valid)
        total = terms["total"] + self.loss_cfg.w_recon * terms["recon"]
        logs = {k: float(v.detach()) for k, v in terms.items() if k != "total"} | {"total": float(total.detach())}
        return total, logs, {key: out["masks"].detach()}


STAGES = {
    "2d_burn_in": lambda m, l: BurnIn(m, l, "rgb"),
    "3d_burn_in": lambda m, l: BurnIn(m, l, "lidar"),
}


def build_stage(name: str, model_cfg: ModelConfig, loss_cfg: LossConfig) -> Stage:
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; stages: {sorted(STAGES)}")
    return STAGES[name](model_cfg, loss_cfg)
