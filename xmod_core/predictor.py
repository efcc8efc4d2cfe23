"""Inference API, used by the ROS node and the evaluator alike.

    pred = Predictor(PredictorConfig(mode="fused"), calib)
    res = pred(image=rgb, points=scan, stamp=t)      # one frame at a time

Modes: `rgb` (camera only), `lidar` (LiDAR only: needs only the calibration, no image), `fused`
(late fusion of both, see `fusion`). The students carry their temporal state (ConvGRU and slots)
from frame to frame for `state_horizon` frames, then restart it: they are trained on short clips,
and carried much longer their state drifts until the foreground spreads over the whole image
(bench_burn_in: F1@50 0.06 carried over 30 frames against 0.15 restarted every 3). Instance ids
come from an IoU tracker (`tracking`), so they stay stable over a sequence, across restarts; a gap
in the timestamps, a stamp going backwards or `reset()` starts a new sequence.

With `zoom_tiles` each student also sees windows of the horizon band at twice the resolution, in
the same batch, and their confident new instances join the frame's (`tiles`; far objects); the
tiles may go through students of their own (`zoom_ckpt_2d` / `zoom_ckpt_3d`, e.g. the shipped ones
with finer masks). With `mirror` each student also sees the frame mirrored left-right, and its
new instances join the same way (`tiles.merge_mirror`).

Per frame: `labels` (camera resolution, uint16, 0 = background), `point_labels` (every point of
the scan; points outside the camera view get 0) and 3D `objects` (see `clusters`).

On CUDA (optionally in bf16 autocast, `amp`) the students' work is queued before the CPU
projects the scan, so the 2D student and the projection overlap; `timings` (ms) then has the
queueing times `model_rgb` / `model_lidar` and `model_wait`, the wait for the device to finish.
On the CPU the model times are the whole work, and with both students the 2D one runs on a worker
thread beside the projection and the 3D student (`parallel_students`; `model_wait` is then the
wait for it). The fusion and the id tracking run on the device
too (`fusion`, `tracking`), so only the final id map and per-slot scores cross to the host.
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import torch

from .baselines import ClusterConfig, ground_plane, is_ground, plane_distance
from .clusters import Object3D, cluster_objects, depth_gate_grid
from .data import mirror_x
from .frontview import DEPTH_RANGE, grid_labels_to_points, point_pixels, project_scan
from .fusion import AGREEMENTS, MASKS, either_fusion, foreground_fusion, late_fusion, separate_fusion
from .graphs import StudentStep
from .image_boxes import frame_boxes, resolve_box_source
from .hybrid import HybridConfig, hybrid_instances
from .movable import MovableModel
from .parts import ROAD_MARGIN, part_window, trim_image, trim_points
from .rescue import confirmed
from .instances import FRAGMENTS, slots_to_instances
from .kitti import CameraCalib
from .model import load_student
from .tiles import ZOOM_LIDAR, band_tiles, merge_mirror, merge_tiles, tile_calib, tile_image, tile_points, zoom_view
from .tracking import IdTracker

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_2D = str(ASSETS / "student_rgb.pt")
DEFAULT_3D = str(ASSETS / "student_lidar.pt")       # since 2026-12-03 the 3D student at output stride 2 (grid2, below)
STRIDE4_3D = str(ASSETS / "student_lidar_stride4.pt")   # the default 3D student before: output stride 4 (24x80 slots)
FINE_3D = str(ASSETS / "student_lidar_fine.pt")     # the stride-4 3D student with masks at 1/2 of the input (docs/training.md)
FINE_2D = str(ASSETS / "student_rgb_fine.pt")       # the 2D student with masks at 1/2 of the input (docs/training.md)
GRID2_2D = str(ASSETS / "student_rgb_grid2.pt")     # the 2D student fine-tuned at output stride 2: a slot grid at 1/2 of
GRID2_3D = DEFAULT_3D                               # the input (48x160 at 96x320); the default 3D student is one (training.md)
SHIPPED = {"": {"rgb": DEFAULT_2D, "lidar": DEFAULT_3D}, "fine": {"rgb": FINE_2D, "lidar": FINE_3D},
           "grid2": {"rgb": GRID2_2D, "lidar": GRID2_3D},
           "stride4": {"rgb": DEFAULT_2D, "lidar": STRIDE4_3D}}   # names a checkpoint setting may give instead of a path
# the finer configuration (PredictorConfig fields; docs/inference.md): 3 tiles seen by the fine-mask students, and
# the mirrored frame. The defaults are the faster configuration.
FINER = {"zoom_tiles": 3, "mirror": True, "zoom_ckpt_2d": "fine", "zoom_ckpt_3d": "fine"}
MODES = ("rgb", "lidar", "fused")
INSTANCES = ("slots", "hybrid")


def student_path(name: Optional[str], modality: str) -> str:
    """The file of a student setting: empty or None the shipped default, a name of `SHIPPED` its shipped
    student of `modality`, anything else a path."""
    return SHIPPED.get(name or "", {}).get(modality, name)


DEFAULT_MIN_SCORE = 0.5                     # the instance threshold of a student whose file names none
DEFAULT_THREADS = torch.get_num_threads()   # PyTorch's CPU threads in this process before anyone set them

__all__ = ["Predictor", "PredictorConfig", "FrameResult", "Object3D", "DEFAULT_2D", "DEFAULT_3D", "FINE_2D", "FINE_3D",
           "GRID2_2D", "GRID2_3D", "STRIDE4_3D", "FINER", "MODES", "DEFAULT_MIN_SCORE", "student_path"]


@dataclass
class PredictorConfig:
    mode: str = "fused"                 # rgb | lidar | fused
    ckpt_2d: Optional[str] = None       # exported 2D student; None: the shipped demo model; "grid2": the shipped one
                                        # at output stride 2 (a slot grid at 1/2 of the input); "fine": with the
                                        # fine-mask head
    ckpt_3d: Optional[str] = None       # exported 3D student; None (the shipped one, at output stride 2 = "grid2"),
                                        # "stride4" (the stride-4 one, the default until 2026-12-03) or "fine"
    device: str = "auto"                # auto | cpu | cuda
    height: int = 96                    # processing resolution (multiples of 4)
    width: int = 320
    min_pixels: int = 20                # instances below this many pixels (processing grid) are dropped
    fragments: str = "largest"          # largest: a slot keeps only its largest connected component, as pseudo-labels
                                        # are connected (validation seed 77, shipped students: F1@50 2D 0.249 -> 0.254,
                                        # 3D 0.290 -> 0.302); keep: every pixel its slot wins (the paper's argmax)
    min_score: Optional[float] = None   # instances whose slot holds less of their pixels' attention are dropped;
                                        # None: each student's own threshold, named in its file where it was chosen
                                        # on validation for it (the grid2 3D student: 0.6), else 0.5 (chosen on
                                        # held-out drives, seed 300: 2D F1@50 0.188 -> 0.208); a value: both students
    fused_min_score_3d: Optional[float] = None  # fused slot instances: the 3D student's threshold in fused mode only
                                        # (late fusion still asks the 2D student's agreement); None: min_score's
    rescue_iou: float = 0.5             # lidar / fused slot instances: a 3D instance under its threshold but scoring
                                        # rescue_min_score is kept when one object-sized LiDAR cluster of the
                                        # clustering baseline overlaps its points at this point IoU (`rescue`; 0: off):
                                        # validation lidar 0.479 -> 0.507, fused 0.500 -> 0.534 (docs/inference.md)
    rescue_min_score: float = 0.3       # ... the least score of such an instance (chosen on validation with 0.45)
    fusion_agreement: str = "auto"      # late fusion: iou (a 2D instance overlaps a 3D one by fusion_iou; the paper's) |
                                        # either (iou's objects, plus each 3D instance no 2D one agrees with where the
                                        # 2D student's foreground attention averages fusion_foreground) | separate
                                        # (both tests, every kept 3D instance an object of its own) | foreground (only
                                        # the attention test, each 3D instance its own object) | auto: separate for
                                        # slot instances, iou for hybrid ones (validation: fused 0.424 (iou) -> 0.446
                                        # (either) -> 0.460; hybrid (fused) by either 0.627 -> 0.623; docs/evaluation.md)
    fusion_foreground: float = 0.7      # separate / either / foreground: the mean 2D foreground attention a 3D
                                        # instance needs (validation drives)
    fusion_iou: float = 0.1             # late fusion: 2D-3D IoU above which the modalities agree (paper: 0.1)
    keep_single: bool = False           # also keep confident single-modality objects (agreement iou / either)
    single_score: float = 0.9           # ... from this score on
    fusion_mask: str = "lidar"          # late fusion: an agreed object's pixels: its 3D partners' only (lidar; validation
                                        # 2D F1@50 0.386 against 0.333), the union of both masks (the paper's) or its
                                        # 2D mask only (rgb); docs/evaluation.md
    max_gap_s: float = 0.5              # a larger gap between stamps starts a new sequence
    min_points: int = 5                 # 3D clusters with fewer LiDAR points are dropped
    depth_gate_m: float = 3.0           # points this far from their object's median range are not its points
    grid_depth_gate_m: float = 0.0      # lidar / fused slot instances: a processing-grid cell whose LiDAR return lies
                                        # this far from its instance's median range goes to the background (0: off, the
                                        # default; 2 m: validation fused F1@50 0.460 -> 0.480, FG-ARI down 0.06-0.07:
                                        # docs/inference.md "The scan trims the masks")
    part_voxel_m: float = 0.5           # lidar / fused slot instances: each keeps its main 3D part, its points grouped
                                        # by voxels of this size, m (`parts`; 0: off): validation fused F1@50 0.460 ->
                                        # 0.479, FG-ARI unchanged (docs/inference.md "The scan trims each instance")
    part_road: bool = True              # ... and road returns in its mask outside its main part's range span (by
                                        # parts.ROAD_MARGIN) count against it (validation fused 0.479 -> 0.500)
    state_horizon: int = 3              # frames the students carry their state before it restarts (0: never)
    track_iou: float = 0.3              # IoU with the previous frame's object for an instance to keep its id
    amp: bool = False                   # bf16 autocast for the students on CUDA (ignored on the CPU); one frame at a
                                        # time the students are launch-bound, so it saves memory, not time
    cuda_graphs: bool = True            # replay the students' step as a CUDA graph (ignored on the CPU; see `graphs`)
    parallel_students: bool = True      # on the CPU with both students: the 2D student runs on a worker thread while
                                        # this one projects the scan and runs the 3D student (docs/benchmarks.md)
    instances: str = "slots"            # slots: the students' instances (the paper's); hybrid: LiDAR clusters the
                                        # students call objects, split and merged by their instances (see `hybrid`)
    hybrid_objectness: float = HybridConfig.objectness  # hybrid: agreement of a cluster with the students for it
                                        # to be kept (0.3, the optimum of object-sparse validation drives)
    hybrid_agreement: str = HybridConfig.agreement  # hybrid: iou (best point IoU with one instance) | share
    hybrid_ground_feet: bool = HybridConfig.ground_feet  # hybrid: an object's image hull reaches down to the ground
    hybrid_far: bool = HybridConfig.far  # hybrid: student instances mostly beyond the clustering range keep their mask
    hybrid_extent: str = HybridConfig().clusters.extent  # hybrid: a cluster's sides for the size filters, along its
                                        # own axes (oriented) or the sensor's (axes, the classical baseline's)
    hybrid_split_voxel: float = HybridConfig().clusters.split_voxel  # hybrid: a cluster too large for the size filters
                                        # is clustered again at this distance, m (0: dropped, as the classical baseline
                                        # does; 0.2 gained a little on validation and lost on the real object frames)
    hybrid_hold: float = HybridConfig.hold  # hybrid: a cluster on an object of the previous frame is kept from an
                                        # agreement of hybrid_objectness - hybrid_hold on (hysteresis; 0: off)
    hybrid_movable: float = HybridConfig.movable  # hybrid: weight of the movers' shape in a cluster's objectness
                                        # (`movable`; 0: off)
    movable_model: str = ""             # hybrid_movable > 0: the movable model file ("" = the shipped one)
    hybrid_min_score: float = 0.0       # hybrid: min_score of the students' instances (geometry checks them instead;
                                        # validation seed 77, lidar: point F1@50 0.283 at 0.5, 0.357 at 0)
    zoom_tiles: int = 0                 # tiles of the horizon band each student also sees at twice the resolution
                                        # (far objects cover 4x the cells; `tiles`); 0: off. Costs 1 + tiles times
                                        # the students' work
    zoom_lidar: str = "project"         # a tile's LiDAR front view: the scan projected by the tile's camera (project)
                                        # or the frame's front view magnified x2 (upsample: the density it trained on)
    zoom_claimed: float = 0.75          # a tile's instance joins if at most this share of its pixels is claimed,
    zoom_min_score: float = 0.7         # ... it scores at least this much (its slot's attention over its pixels)
    zoom_min_pixels: int = 60           # ... and covers at least this many pixels of the processing grid
    zoom_ckpt_2d: str = ""              # the tiles' own 2D student: "" the frame's, "fine" the shipped one with masks at
                                        # twice the slot grid's resolution (FINE_2D), or a path
    zoom_ckpt_3d: str = ""              # the tiles' own 3D student: "", "fine" (FINE_3D) or a path
    mirror: bool = False                # each student also sees the frame mirrored left-right (in the same batch);
                                        # its instances join where the frame has none, by the tiles' zoom_claimed and
                                        # zoom_min_score and the frame's min_pixels. Costs one more image per student
    box_source: str = "auto"            # an instance's 2D box (FrameResult.boxes, the node's detections): around its
                                        # pixels (mask), the image rectangle of its 3D box (3d; KITTI's boxes come from
                                        # 3D boxes) or the same down to the ground plane (3d_ground); `image_boxes`.
                                        # auto: 3d_ground for hybrid instances, mask for slots (chosen on validation
                                        # drives against boxes made as KITTI's are; docs/evaluation.md)
    hybrid_fragments: str = "keep"      # hybrid: fragments of the students' instances (validation seed 77, point F1@50
                                        # lidar / fused: keep 0.370 / 0.383, largest 0.357 / 0.378)


@dataclass
class FrameResult:
    labels: np.ndarray                          # (H, W) uint16 at camera resolution
    point_labels: Optional[np.ndarray]          # (N,) uint16, or None without points
    objects: list = field(default_factory=list)  # list[Object3D]
    scores: dict = field(default_factory=dict)  # {id: score}
    timings: dict = field(default_factory=dict)  # ms per stage
    new_sequence: bool = False
    grid: Optional[np.ndarray] = None           # (h, w) the labels on the processing grid (before the part trim,
                                                # which works on `labels` and the points: part_voxel_m)
    students: dict = field(default_factory=dict)  # {modality: (h, w) its student's instances on the grid, before
                                                # fusion and tracking (slot k -> k + 1)}
    box_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))   # (P,) ascending
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))          # (P, 4) left, top, right, bottom:
                                                # pixel edges at camera resolution (`PredictorConfig.box_source`)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


class Predictor:
    def __init__(self, cfg: PredictorConfig, calib: CameraCalib):
        if cfg.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {cfg.mode!r}")
        if cfg.height % 4 or cfg.width % 4:
            raise ValueError(f"processing size must be multiples of 4, got {cfg.height}x{cfg.width}")
        self.cfg, self.calib = cfg, calib
        self.device = pick_device(cfg.device)
        self.amp = cfg.amp and self.device.type == "cuda"
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True                   # one input size: pick the fastest kernels once
        self.models, metas = {}, {}
        if cfg.mode in ("rgb", "fused"):
            self.models["rgb"], metas["rgb"] = self._load(student_path(cfg.ckpt_2d, "rgb"), "rgb")
        if cfg.mode in ("lidar", "fused"):
            self.models["lidar"], metas["lidar"] = self._load(student_path(cfg.ckpt_3d, "lidar"), "lidar")
        if cfg.fusion_mask not in MASKS:
            raise ValueError(f"fusion_mask must be one of {MASKS}, got {cfg.fusion_mask!r}")
        if cfg.fusion_agreement not in ("auto", *AGREEMENTS):
            raise ValueError(f"fusion_agreement must be one of auto, {', '.join(AGREEMENTS)}, got {cfg.fusion_agreement!r}")
        # auto: slot instances fuse by `separate`, hybrid instances by iou (each chosen on validation drives)
        self.agreement = cfg.fusion_agreement if cfg.fusion_agreement != "auto" else \
            ("separate" if cfg.instances == "slots" else "iou")
        if cfg.mode == "fused" and self.agreement in ("separate", "foreground"):
            unused = [n for n, on in (("keep_single", cfg.keep_single),
                                      ("fusion_mask", cfg.fusion_mask != PredictorConfig.fusion_mask)) if on]
            if unused:
                raise ValueError(f"{' and '.join(unused)} {'apply' if len(unused) > 1 else 'applies'} to "
                                 f"fusion_agreement iou or either; fusion_agreement "
                                 f"{cfg.fusion_agreement!r} fuses by {self.agreement!r} here (each kept 3D instance "
                                 f"with its own mask): set fusion_agreement: iou (or either) to use them")
        if cfg.part_voxel_m < 0:
            raise ValueError(f"part_voxel_m must be >= 0 (0: off), got {cfg.part_voxel_m}")
        if cfg.grid_depth_gate_m < 0:
            raise ValueError(f"grid_depth_gate_m must be >= 0 (0: off), got {cfg.grid_depth_gate_m}")
        if not 0.0 <= cfg.fusion_foreground <= 1.0:
            raise ValueError(f"fusion_foreground must be within [0, 1], got {cfg.fusion_foreground}")
        if cfg.instances not in INSTANCES:
            raise ValueError(f"instances must be one of {INSTANCES}, got {cfg.instances!r}")
        self.box_source = resolve_box_source(cfg.box_source, cfg.instances)
        self.hybrid = HybridConfig(objectness=cfg.hybrid_objectness, agreement=cfg.hybrid_agreement,
                                   ground_feet=cfg.hybrid_ground_feet, far=cfg.hybrid_far, movable=cfg.hybrid_movable,
                                   hold=cfg.hybrid_hold,
                                   clusters=ClusterConfig(extent=cfg.hybrid_extent, split_voxel=cfg.hybrid_split_voxel))
        self.movable = MovableModel.load(cfg.movable_model or None) \
            if cfg.instances == "hybrid" and cfg.hybrid_movable > 0 else None
        # the extent and the second, finer clustering only decide which clusters pass the size filters, not
        # how a cluster is described (along its own axes either way): a model's votes apply under any of them
        c = self.hybrid.clusters
        if self.movable is not None and replace(self.movable.clusters, extent=c.extent, split_voxel=c.split_voxel) != c:
            raise ValueError(f"movable model {cfg.movable_model or 'shipped'} was fitted on clusters of {self.movable.clusters}, "
                             f"hybrid instances cluster with {self.hybrid.clusters}: its votes would not apply")
        if cfg.state_horizon < 0:
            raise ValueError(f"state_horizon must be >= 0, got {cfg.state_horizon}")
        for name in ("min_score", "fused_min_score_3d", "hybrid_min_score"):
            if getattr(cfg, name) is not None and not 0.0 <= getattr(cfg, name) < 1.0:
                raise ValueError(f"{name} must be within [0, 1) (or None for min_score / fused_min_score_3d), "
                                 f"got {getattr(cfg, name)}")
        if not 0.0 < cfg.track_iou <= 1.0:
            raise ValueError(f"track_iou must be within (0, 1], got {cfg.track_iou}")
        for name in ("fragments", "hybrid_fragments"):
            if getattr(cfg, name) not in FRAGMENTS:
                raise ValueError(f"{name} must be one of {FRAGMENTS}, got {getattr(cfg, name)!r}")
        slots = cfg.instances == "slots"
        # each student's instance threshold: the config's, else the one its file names, else the default
        self.min_scores = {m: (cfg.min_score if cfg.min_score is not None else metas[m].get("min_score", DEFAULT_MIN_SCORE))
                           if slots else cfg.hybrid_min_score for m in self.models}
        if slots and cfg.mode == "fused" and cfg.fused_min_score_3d is not None:
            self.min_scores["lidar"] = cfg.fused_min_score_3d                 # fusion's agreement still checks them
        if not 0.0 <= cfg.rescue_iou <= 1.0 or not 0.0 <= cfg.rescue_min_score < 1.0:
            raise ValueError(f"rescue_iou must be within [0, 1] (0: off) and rescue_min_score within [0, 1), got "
                             f"{cfg.rescue_iou} and {cfg.rescue_min_score}")
        self.rescue = cfg.rescue_iou > 0 and slots and cfg.mode in ("lidar", "fused")
        self.own_min_score_3d = self.min_scores.get("lidar")
        # the students' instances come out down to these scores: under its own threshold, the 3D student's
        # unsure instances down to rescue_min_score, for the clusters to judge (`rescue`)
        self.extract_scores = dict(self.min_scores)
        if self.rescue:
            self.extract_scores["lidar"] = min(self.own_min_score_3d, cfg.rescue_min_score)
        post = {m: partial(slots_to_instances, size=(cfg.height, cfg.width), min_pixels=cfg.min_pixels,
                           min_score=self.extract_scores[m], fragments=cfg.fragments if slots else cfg.hybrid_fragments)
                for m in self.models}
        self.steps = {m: StudentStep(model, post[m], self.amp, cfg.cuda_graphs) for m, model in self.models.items()}
        # the tiles' own students, where asked (same number of slots: the merge numbers instances by slot)
        zoom_paths = {"rgb": cfg.zoom_ckpt_2d, "lidar": cfg.zoom_ckpt_3d}
        self.zoom_steps = {}
        for m in self.models:
            if zoom_paths[m] and cfg.zoom_tiles:
                path = student_path(zoom_paths[m], m)
                zm, _ = self._load(path, m)                 # (the frame student's extraction threshold; zoom_min_score judges its instances)
                if zm.slots_init.shape[0] != self.models[m].slots_init.shape[0]:
                    raise ValueError(f"zoom_ckpt for {m}: {path} has {zm.slots_init.shape[0]} slots, the frame's "
                                     f"student {self.models[m].slots_init.shape[0]}; the tiles' student needs as many")
                self.zoom_steps[m] = StudentStep(zm, post[m], self.amp, cfg.cuda_graphs)
        # on CUDA the students' kernels are queued asynchronously anyway; on the CPU a second thread
        # runs the 2D student beside the 3D one (PyTorch releases the GIL inside its operators)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="xmod-rgb") \
            if cfg.parallel_students and self.device.type == "cpu" and len(self.models) == 2 else None
        if cfg.zoom_lidar not in ZOOM_LIDAR:
            raise ValueError(f"zoom_lidar must be one of {ZOOM_LIDAR}, got {cfg.zoom_lidar!r}")
        if not 0.0 <= cfg.zoom_claimed <= 1.0:
            raise ValueError(f"zoom_claimed must be within [0, 1], got {cfg.zoom_claimed}")
        if not 0.0 <= cfg.zoom_min_score < 1.0 or cfg.zoom_min_pixels < 0:
            raise ValueError(f"zoom_min_score must be within [0, 1) and zoom_min_pixels >= 0, got {cfg.zoom_min_score} "
                             f"and {cfg.zoom_min_pixels}")
        self._set_camera(calib)
        self.tracker = IdTracker(cfg.track_iou)
        self.reset()

    def _load(self, path: str, modality: str):
        """The `modality` student at `path` and its file's metadata (`load_student`)."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"{modality} checkpoint not found: {path} (a path, or a shipped student's name: "
                                    f"{', '.join(k for k in SHIPPED if k)})")
        model, meta = load_student(path, self.device)
        if meta.get("modality") != modality:
            raise ValueError(f"{path} holds a {meta.get('modality')} student, expected {modality}")
        return model, meta

    def cpu_threads(self, requested: int = 0) -> int:
        """The torch CPU threads to run this predictor with: `requested` when > 0; otherwise one
        when the students run on two threads (each takes a core: x1.62 against x1.24 with two
        threads each, docs/node.md), else PyTorch's default for the process (`DEFAULT_THREADS`)."""
        if requested < 0:
            raise ValueError(f"threads must be >= 0 (0: automatic), got {requested}")
        return requested or (1 if self.pool is not None else DEFAULT_THREADS)

    def _set_camera(self, calib: CameraCalib) -> None:
        self.calib, self.calib_small = calib, calib.scaled(self.cfg.height, self.cfg.width)
        self.tiles = band_tiles(self.calib_small, self.cfg.zoom_tiles)
        self.tile_calibs = [tile_calib(self.calib_small, t) for t in self.tiles]

    def set_calib(self, calib: CameraCalib) -> None:
        """Another camera (e.g. the next frame of a set of single frames): a new sequence."""
        self._set_camera(calib)
        self.reset()

    def reset(self) -> None:
        self.states = {k: None for k in self.models}
        self.state_age = 0
        self.last_stamp = None
        self.tracker.reset()
        self.previous_hybrid = None             # the last frame's hybrid instances (hybrid_hold's hysteresis)

    def _instances(self, modality: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queue one student step and its instance extraction on the device (no synchronisation);
        x (B, C, H, W) is the frame, its tiles and its mirror. Returns the instance ids and scores of
        each image of x and the frame's foreground attention (h, w) on the student's slot grid. With a
        tiles' own student the tiles go through it (own state) and the rest through the frame's; the
        maps come back in x's order.
        Runs on the worker thread too, where `__call__`'s no_grad does not reach: hence its own."""
        with torch.no_grad():
            if modality not in self.zoom_steps:
                ids, conf, fg, self.states[modality] = self.steps[modality](x, self.states[modality])
                return ids, conf, fg[0]
            T, z = len(self.tiles), modality + ":zoom"                    # the tiles' own student: x[1:1 + T]
            ids, conf, fg, self.states[modality] = self.steps[modality](torch.cat([x[:1], x[1 + T:]]), self.states[modality])
            zids, zconf, _, self.states[z] = self.zoom_steps[modality](x[1:1 + T], self.states.get(z))
        return torch.cat([ids[:1], zids.to(ids.dtype), ids[1:]]), torch.cat([conf[:1], zconf, conf[1:]]), fg[0]

    @torch.no_grad()
    def __call__(self, image: np.ndarray | None = None, points: np.ndarray | None = None,
                 stamp: float | None = None) -> FrameResult:
        cfg, t0 = self.cfg, time.perf_counter()
        H0, W0, H, W = self.calib.height, self.calib.width, cfg.height, cfg.width
        timings = {}
        if "rgb" in self.models:
            if image is None:
                raise ValueError(f"mode {cfg.mode!r} needs a camera image")
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
            if image.shape[:2] != (H0, W0):
                raise ValueError(f"image size {image.shape[1]}x{image.shape[0]} differs from the calibration's {W0}x{H0}")
        if ("lidar" in self.models or cfg.instances == "hybrid") and points is None:
            raise ValueError(f"mode {cfg.mode!r} with {cfg.instances} instances needs a LiDAR scan")
        if points is not None:
            points = np.asarray(points, np.float32)
            if points.ndim != 2 or points.shape[1] < 3:
                raise ValueError(f"points must be (N, >=3), got {points.shape}")
        new_seq = self.last_stamp is None or (stamp is not None and (stamp < self.last_stamp or
                                                                     stamp - self.last_stamp > cfg.max_gap_s))
        if new_seq and self.last_stamp is not None:
            self.reset()
        if cfg.state_horizon and self.state_age >= cfg.state_horizon:
            self.states = {k: None for k in self.models}                  # restart; ids go on via the tracker
            self.state_age = 0
        self.state_age += 1
        self.last_stamp = stamp if stamp is not None else (self.last_stamp or 0.0)

        # The students' work is queued on the device first and collected once: on CUDA the 2D
        # student runs while the CPU projects the scan (the kernels are asynchronous).
        pending, fv = {}, None
        if "rgb" in self.models:
            small = cv2.resize(image, (W, H), interpolation=cv2.INTER_AREA)
            x = np.stack([small] + [tile_image(image, tile, H, W) for tile in self.tiles] +
                         ([small[:, ::-1]] if cfg.mirror else []))                       # (1 + T [+ 1], H, W, 3)
            x = torch.from_numpy(x).to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
            if self.pool is not None:
                pending["rgb"] = self.pool.submit(self._instances, "rgb", x)
            else:
                pending["rgb"] = self._instances("rgb", x)
            timings["model_rgb"] = (time.perf_counter() - t0) * 1e3           # on CUDA or a worker thread: queued
        try:
            t = time.perf_counter()
            if points is not None:
                fv = project_scan(points, self.calib_small)           # (4, H, W) on the processing grid
            timings["prep"] = (time.perf_counter() - t) * 1e3
            if "lidar" in self.models:
                t = time.perf_counter()
                if cfg.zoom_lidar == "project":                            # the scan seen by each tile's camera
                    tiles = [project_scan(points[tile_points(fv.point_pixel, t, H, W)], c).features
                             for t, c in zip(self.tiles, self.tile_calibs)]
                else:                                                      # the frame's front view, magnified
                    tiles = [zoom_view(fv.features, t) for t in self.tiles]
                feats = np.stack([fv.features] + tiles + ([mirror_x(fv.features, fv.valid)] if cfg.mirror else []))
                pending["lidar"] = self._instances("lidar", torch.from_numpy(feats).to(self.device))
                timings["model_lidar"] = (time.perf_counter() - t) * 1e3
        except BaseException:                 # the 2D student's step must not outlive this frame (it writes the state)
            wait([v for v in pending.values() if isinstance(v, Future)])
            raise
        t = time.perf_counter()
        pending = {m: v.result() if isinstance(v, Future) else v for m, v in pending.items()}
        foreground = {m: fg for m, (_, _, fg) in pending.items()}           # the frame's, on each slot grid
        pending = {m: (ids, conf) for m, (ids, conf, _) in pending.items()}
        rescue_ms = 0.0
        if self.rescue and fv is not None:         # unsure 3D instances a cluster confirms, on the frame's own map
            t1 = time.perf_counter()               # (before the tiles and the mirrored frame join it: what is not
            ids, conf = pending["lidar"]           # confirmed claims no pixel there)
            keep = confirmed(ids[0].cpu().numpy(), conf[0].cpu().numpy(), fv.point_pixel, points,
                             self.own_min_score_3d, cfg.rescue_min_score, cfg.rescue_iou)
            lut = torch.as_tensor(np.where(np.concatenate([[False], keep]), np.arange(len(keep) + 1), 0),
                                  device=ids.device)
            pending["lidar"] = (torch.cat([lut[ids[:1].long()].to(ids.dtype), ids[1:]]), conf)
            rescue_ms = (time.perf_counter() - t1) * 1e3
            timings["rescue"] = rescue_ms
        mirrored = {}
        if cfg.mirror:                                                        # the mirrored frame's, flipped back
            mirrored = {m: (ids[-1].flip(-1), conf[-1]) for m, (ids, conf) in pending.items()}
            pending = {m: (ids[:-1], conf[:-1]) for m, (ids, conf) in pending.items()}
        if self.tiles:                                                        # the tiles' instances join the frame's
            pending = {m: merge_tiles(ids, conf, self.tiles, cfg.zoom_claimed, cfg.zoom_min_score,
                                         cfg.zoom_min_pixels) for m, (ids, conf) in pending.items()}
        else:
            pending = {m: (ids[0], conf[0]) for m, (ids, conf) in pending.items()}
        for m, (ids, conf) in mirrored.items():
            pending[m] = merge_mirror(*pending[m], ids, conf, cfg.zoom_claimed, cfg.zoom_min_score, cfg.min_pixels)
        inst = {m: (ids, conf.cpu().numpy()) for m, (ids, conf) in pending.items()}   # ids stay on the device
        timings["model_wait"] = (time.perf_counter() - t) * 1e3 - rescue_ms   # the device finishing its queue
        t = time.perf_counter()
        if cfg.mode == "fused" and self.agreement == "foreground":
            grid, scores = foreground_fusion(*inst["lidar"], foreground["rgb"], cfg.fusion_foreground)
        elif cfg.mode == "fused" and self.agreement == "separate":
            grid, scores = separate_fusion(*inst["rgb"], *inst["lidar"], foreground["rgb"], cfg.fusion_foreground,
                                           cfg.fusion_iou)
        elif cfg.mode == "fused" and self.agreement == "either":
            grid, scores = either_fusion(*inst["rgb"], *inst["lidar"], foreground["rgb"], cfg.fusion_foreground,
                                         cfg.fusion_iou, cfg.fusion_mask, cfg.keep_single, cfg.single_score)
        elif cfg.mode == "fused":
            grid, scores = late_fusion(*inst["rgb"], *inst["lidar"], cfg.fusion_iou, cfg.keep_single, cfg.single_score,
                                       cfg.fusion_mask)
        else:
            grid, conf = inst[cfg.mode]
            scores = {k + 1: float(c) for k, c in enumerate(conf)}          # the tracker keeps those present
        students = {m: inst[m][0].cpu().numpy() for m in self.models}
        hybrid_points = None
        if cfg.instances == "hybrid":                                         # on the host: clusters are numpy
            grid, hybrid_points, scores = hybrid_instances(points, fv.point_pixel, list(students.values()),
                                                           torch.as_tensor(grid).cpu().numpy(), scores, self.hybrid,
                                                           self.calib_small, self.movable, self.previous_hybrid)
            self.previous_hybrid = grid
            timings["hybrid"] = (time.perf_counter() - t) * 1e3
        if cfg.grid_depth_gate_m > 0 and cfg.instances == "slots" and cfg.mode in ("lidar", "fused") and fv is not None:
            lo, hi = DEPTH_RANGE                                              # the scan trims the masks' spill (on the
            grid = depth_gate_grid(torch.as_tensor(grid).cpu().numpy(), fv.features[3] * (hi - lo) + lo, fv.valid,
                                   cfg.grid_depth_gate_m)                     # host, where the grid goes next anyway)
        grid, scores = self.tracker(grid, scores)                             # fusion and tracking on the device
        grid = torch.as_tensor(grid).to(torch.int32).cpu().numpy()
        labels = cv2.resize(grid.astype(np.uint16), (W0, H0), interpolation=cv2.INTER_NEAREST)
        timings["fusion"] = (time.perf_counter() - t) * 1e3
        plane, ground = None, None
        parts = cfg.part_voxel_m > 0 and cfg.instances == "slots" and cfg.mode in ("lidar", "fused") and fv is not None
        if parts:                                                             # each instance keeps its main 3D part
            t = time.perf_counter()
            plane = ground_plane(points[fv.point_pixel >= 0], self.hybrid.clusters)
            ground = np.abs(plane_distance(points[:, :3], plane)) < self.hybrid.clusters.ground_tol \
                if is_ground(plane) else np.zeros(len(points), bool)
            labels = trim_image(labels, point_pixels(points, self.calib), points[:, :3], ground, cfg.part_voxel_m,
                                part_window(H0), ROAD_MARGIN if cfg.part_road else None)
            timings["parts"] = (time.perf_counter() - t) * 1e3
        point_labels, objects = None, []
        if points is not None:
            t = time.perf_counter()
            if hybrid_points is None:
                point_labels = grid_labels_to_points(grid, fv.point_pixel)
                if parts:
                    point_labels = trim_points(point_labels, points[:, :3], ground, cfg.part_voxel_m)
            else:                                                             # each point keeps its object, with its track id
                point_labels = self.tracker.track_ids(hybrid_points)
            objects, point_labels = cluster_objects(points, point_labels, scores, cfg.min_points, cfg.depth_gate_m)
            point_labels = point_labels.astype(np.uint16)
            timings["clusters"] = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        if plane is None and self.box_source == "3d_ground" and objects:
            plane = ground_plane(points[fv.point_pixel >= 0], self.hybrid.clusters)
        box_ids, boxes = frame_boxes(labels, objects, self.calib, self.box_source, plane,
                                     None if parts else grid)               # trimmed: labels are no grid upscale
        timings["boxes"] = (time.perf_counter() - t) * 1e3
        timings["total"] = (time.perf_counter() - t0) * 1e3
        return FrameResult(labels, point_labels, objects, scores, timings, new_seq, grid, students, box_ids, boxes)
