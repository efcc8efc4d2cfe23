"""Typed parameters of the motion-cue stage; the reasons for every value are in
``config/motion.yaml``.  Pixel quantities (keys ending in ``_px`` and the ``*_window`` sizes) are
at the *input* resolution; the segmenter scales them to the processing resolution (``scale``),
so changing ``scale`` needs no other change.

Range checks live in ``__post_init__`` (``ValueError``); :func:`xmod_core.config.from_dict`
reports them as :class:`~xmod_core.config.ConfigError` naming the section."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..config import ConfigError, from_dict, load_config, parse_overrides, to_dict

__all__ = ["MotionConfig", "FlowConfig", "EgoConfig", "ReliabilityConfig", "ResidualConfig",
           "MaskConfig", "load_motion_config"]


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


@dataclass
class FlowConfig:
    method: str = "dis"
    preset: str = "medium"
    finest_scale: int | None = None
    variational_refinement_iterations: int | None = None

    def kwargs(self) -> dict:
        kw = {"preset": self.preset} if self.method == "dis" else {}
        for k in ("finest_scale", "variational_refinement_iterations"):
            if getattr(self, k) is not None:
                kw[k] = getattr(self, k)
        return kw


@dataclass
class EgoConfig:
    source: Literal["auto", "oxts", "data"] = "auto"
    ground_below_sensor_m: float = 1.0
    ground_range_m: float = 40.0
    ground_ransac_iters: int = 64
    ground_tol_m: float = 0.15
    ground_max_tilt_deg: float = 15.0
    object_height_m: float = 0.3
    ground_min_depth_m: float = 4.0
    ground_max_flow_px: float = 40.0
    far_depth_m: float = 30.0
    bucket_grid: tuple[int, int] = (12, 4)
    bucket_max: int = 25
    ransac_px: float = 2.0
    ransac_iters: int = 200
    min_inliers: int = 40
    min_inlier_ratio: float = 0.35
    max_translation_m: float = 4.0
    max_rotation_deg: float = 10.0
    rotation_inlier_share: float = 0.95
    max_points_no_lidar: int = 1500

    def __post_init__(self):
        _check(self.ground_tol_m > 0 and self.object_height_m > self.ground_tol_m,
               "ego.object_height_m must exceed ego.ground_tol_m > 0")
        _check(self.bucket_grid[0] >= 1 and self.bucket_grid[1] >= 1 and self.bucket_max >= 1,
               "ego.bucket_grid and ego.bucket_max must be >= 1")
        _check(self.ransac_px > 0 and self.ransac_iters >= 1, "ego.ransac_px > 0, ego.ransac_iters >= 1")
        _check(self.min_inliers >= 6, "ego.min_inliers must be >= 6 (PnP needs 6 points to refine)")
        _check(0 <= self.min_inlier_ratio <= 1, "ego.min_inlier_ratio must be within [0, 1]")


@dataclass
class ReliabilityConfig:
    fb_abs_px: float = 1.5
    fb_rel: float = 0.05
    border_px: int = 6
    texture_min_eig: float = 1e-4
    texture_block: int = 5

    def __post_init__(self):
        _check(self.fb_abs_px > 0 and self.fb_rel >= 0, "reliability.fb_abs_px > 0 and fb_rel >= 0")
        _check(self.border_px >= 0, "reliability.border_px must be >= 0")
        _check(self.texture_block in (3, 5, 7), "reliability.texture_block must be 3, 5 or 7")


@dataclass
class ResidualConfig:
    sigma_px: float = 1.0
    rel: float = 0.06
    depth_window: tuple[int, int] = (10, 14)
    near_window: tuple[int, int] = (18, 26)
    depth_rel: float = 0.05
    point_depth_rel: float = 0.02
    point_interior_rel: float = 0.05
    open_far_near_holes: bool = True
    min_depth_m: float = 2.0
    threshold: float = 1.5
    seed_threshold: float = 2.0

    def __post_init__(self):
        _check(self.sigma_px > 0 and self.rel >= 0, "residual.sigma_px > 0 and residual.rel >= 0")
        for name in ("depth_window", "near_window"):
            _check(all(k >= 1 for k in getattr(self, name)), f"residual.{name} entries must be >= 1")
        _check(self.min_depth_m > 0, "residual.min_depth_m must be > 0")
        _check(min(self.depth_rel, self.point_depth_rel, self.point_interior_rel) >= 0,
               "residual.depth_rel, residual.point_depth_rel and residual.point_interior_rel must be >= 0")
        _check(0 < self.threshold <= self.seed_threshold,
               "residual: need 0 < threshold <= seed_threshold")


@dataclass
class MaskConfig:
    temporal: bool = True
    single_evidence_factor: float = 0.5
    single_pair_factor: float = 0.7
    open_px: int = 6
    close_px: int = 10
    min_area_px: int = 300
    min_seed_px: int = 1
    min_seed_share: float = 0.0
    min_object_points: int = 4
    min_object_share: float = 0.3
    fill_holes: bool = True
    lidar_refine: bool = True
    grow_threshold: float = 0.75
    cluster_cell_m: float = 0.5
    cluster_margin_m: float = 0.5
    cluster_min_share: float = 0.1
    object_min_score: float = 1.25
    object_bulk_share: float = 0.35
    point_objects: bool = True
    point_object_score: float = 0.8
    point_object_min_points: int = 20
    point_object_level_ratio: float = 3.0
    point_object_max_extent_m: float = 12.0
    point_object_max_height_m: float = 4.5
    point_object_covered: float = 0.1
    split_min_px: float = 2.0
    split_ratio: float = 2.0
    split_min_share: float = 0.15

    def __post_init__(self):
        _check(self.open_px >= 0 and self.close_px >= 0, "mask.open_px and mask.close_px must be >= 0")
        _check(self.min_area_px >= 1, "mask.min_area_px must be >= 1")
        _check(0 < self.object_bulk_share <= 1, "mask.object_bulk_share must be within (0, 1]")
        _check(0 <= self.min_object_share <= 1, "mask.min_object_share must be within [0, 1]")
        _check(self.point_object_min_points >= 1, "mask.point_object_min_points must be >= 1")
        _check(0 < self.point_object_covered <= 1, "mask.point_object_covered must be within (0, 1]")
        _check(self.point_object_level_ratio >= 0, "mask.point_object_level_ratio must be >= 0")
        _check(0 < self.split_min_share < 0.5, "mask.split_min_share must be within (0, 0.5)")


@dataclass
class MotionConfig:
    scale: float = 0.75
    frame_step: int = 1
    flow: FlowConfig = field(default_factory=FlowConfig)
    ego: EgoConfig = field(default_factory=EgoConfig)
    reliability: ReliabilityConfig = field(default_factory=ReliabilityConfig)
    residual: ResidualConfig = field(default_factory=ResidualConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)

    def __post_init__(self):
        _check(0.1 <= self.scale <= 1.0, f"scale must be within [0.1, 1], got {self.scale}")
        _check(1 <= self.frame_step <= 5, f"frame_step must be within [1, 5], got {self.frame_step}")

    def to_dict(self) -> dict:
        return to_dict(self)


def load_motion_config(path: str | Path | None = None,
                       overrides: Sequence[str] | Mapping | None = None) -> MotionConfig:
    """:class:`MotionConfig` from a YAML file (None: the built-in defaults) and ``key=value``
    overrides (or a nested mapping); :class:`~xmod_core.config.ConfigError` names any bad key."""
    if path is not None:
        return load_config(MotionConfig, path, overrides or ())
    over = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(list(overrides or ()))
    try:
        # the defaults with the overrides deep-merged in: from_dict takes the dataclass default
        # for every key (at any depth) that the overrides leave out
        return from_dict(MotionConfig, over)
    except ConfigError as exc:
        raise ConfigError(f"defaults with overrides {list(overrides or ())!r}: {exc}") from exc
