"""Whole drives: motion masks for every frame, written next to the images, plus overlays."""
from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..kitti import KittiFormatError, KittiRawDrive, load_imu_to_velo
from .config import MotionConfig
from .ego import EgoMotion, MotionInputError, relative_motion_from_poses
from .segment import Evidence, MotionSegmenter, PairResult

__all__ = ["process_drive", "DriveSummary", "MASK_DIR", "PARAMS_FILE", "overlay", "read_motion_json"]

MASK_DIR = "motion_masks"
PARAMS_FILE = "motion.json"
FORMAT_VERSION = 1


@dataclass
class DriveSummary:
    out_dir: Path
    frames: int = 0
    processed: int = 0
    skipped: int = 0
    unknown: list = field(default_factory=list)
    seconds: float = 0.0
    frame_ms: list = field(default_factory=list)      # wall time per processed frame
    frame_cpu_ms: list = field(default_factory=list)  # CPU time of this process (all threads)

    @property
    def ms_per_frame(self) -> float:
        return float(np.mean(self.frame_ms)) if self.frame_ms else float("nan")


def read_motion_json(out_dir) -> dict | None:
    p = Path(out_dir) / PARAMS_FILE
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MotionInputError(f"{p}: unreadable motion parameters ({exc}); delete it or use --force") from exc


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _linked(ids: list[str], step: int) -> list[bool]:
    """ok[i]: frame i+step is ``step`` frames after frame i (numeric ids differ by ``step``, i.e.
    no frame is missing in between; non-numeric ids are taken as consecutive)."""
    out = []
    for a, b in zip(ids[:-step], ids[step:]):
        try:
            out.append(int(b) - int(a) == step)
        except ValueError:
            out.append(True)
    return out


@dataclass
class _Pair:
    fw: np.ndarray
    bw: np.ndarray
    valid_f: np.ndarray
    valid_b: np.ndarray
    ego: EgoMotion


class _DriveRunner:
    """Lazily computed frames and pairs of a drive, each computed once."""

    def __init__(self, seg: MotionSegmenter, drive: KittiRawDrive, poses, T_imu_to_velo):
        self.seg, self.drive = seg, drive
        self.poses, self.T_imu_to_velo = poses, T_imu_to_velo
        self.H, self.W = drive.calib.height, drive.calib.width
        self.pcalib = seg.processing_calib(drive.calib, self.H, self.W)
        self.ids = drive.frame_ids
        self.step = seg.cfg.frame_step
        self.linked = _linked(self.ids, self.step)
        self._gray: dict = {}
        self._tex: dict = {}
        self._lidar: dict = {}
        self._pairs: dict = {}

    def gray(self, i: int) -> np.ndarray:
        if i not in self._gray:
            path = self.drive.image_path(i)
            img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)   # decoded straight to grey
            if img is None:
                raise KittiFormatError(f"{path}: missing or not a readable image")
            if img.shape[:2] != (self.H, self.W):
                raise MotionInputError(f"{path}: image is {img.shape[1]}x{img.shape[0]}, "
                                       f"the calibration says {self.W}x{self.H}")
            self._gray[i] = self.seg.prepare_image(img, str(path))
        return self._gray[i]

    def texture(self, i: int) -> np.ndarray:
        if i not in self._tex:
            self._tex[i] = self.seg.texture(self.gray(i))
        return self._tex[i]

    def lidar(self, i: int):
        if not self.drive.has_lidar:
            return None
        if i not in self._lidar:
            self._lidar[i] = self.seg.lidar(self.drive.scan(i), self.pcalib, np.random.default_rng(i))
        return self._lidar[i]

    def pose(self, i: int):
        if self.poses is None:
            return None
        return relative_motion_from_poses(self.poses[i], self.poses[i + self.step], self.drive.calib, self.T_imu_to_velo)

    def pair(self, i: int) -> _Pair:
        """Flows and ego-motion of frames (i, i+step)."""
        if i not in self._pairs:
            ga, gb = self.gray(i), self.gray(i + self.step)
            fw, bw = self.seg.flows(ga, gb)
            vf, vb = self.seg.validity(fw, bw), self.seg.validity(bw, fw)
            ego = self.seg.ego_motion(self.pose(i), self.lidar(i), fw, vf & self.texture(i), self.pcalib,
                                      np.random.default_rng(1000 + i))
            self._pairs[i] = _Pair(fw, bw, vf, vb, ego)
        return self._pairs[i]

    def evidences(self, t: int) -> list[Evidence]:
        seg, g, lv = self.seg, self.gray(t), self.lidar(t)
        evs = []
        k = self.step
        if t + k < len(self.ids) and self.linked[t]:
            p = self.pair(t)
            evs.append(seg.evidence(g, p.fw, p.bw, p.ego, lv, self.pcalib, p.valid_f, self.texture(t)))
        if t - k >= 0 and self.linked[t - k]:
            p = self.pair(t - k)
            evs.append(seg.evidence(g, p.bw, p.fw, p.ego.inverse(), lv, self.pcalib, p.valid_b, self.texture(t)))
        return evs

    def frame(self, t: int) -> PairResult:
        evs = self.evidences(t)
        if not evs:
            return PairResult(None, np.zeros((1, 1), np.float32), np.zeros((1, 1), bool),
                              EgoMotion("failed", reason="no neighbour frame"),
                              info={"reason": "no neighbour frame (isolated frame in the drive)"})
        return self.seg.finish(evs, self.lidar(t), (self.H, self.W))

    def forget_before(self, t: int) -> None:
        for cache in (self._gray, self._tex, self._lidar, self._pairs):
            for k in [k for k in cache if k < t]:
                del cache[k]


def process_drive(drive_dir, cfg: MotionConfig | None = None, force: bool = False, out_dir=None,
                  overlays=None, progress: bool = True, frames=None) -> DriveSummary:
    """Write ``DRIVE/image_02/motion_masks/NNNNNNNNNN.png`` (uint16 instance ids, 0 = background)
    for every frame of a KITTI raw drive, and ``motion.json`` (parameters, per-frame status;
    frames whose ego-motion failed are listed under "unknown" and get *no* PNG).

    A re-run skips frames already done (PNG present or listed as unknown) unless ``force``;
    a re-run with different parameters is refused without ``force``.  ``overlays``: a folder
    for overlay PNGs (masks on the image, score below).  ``frames``: optional iterable of frame
    indices to process (default all).
    """
    cfg = cfg or MotionConfig()
    drive = KittiRawDrive(drive_dir)
    if not drive.has_camera:
        raise MotionInputError(f"{drive.drive_dir}: no image_0{drive.camera}/data: motion needs camera frames")
    out = Path(out_dir) if out_dir is not None else drive.drive_dir / f"image_{drive.camera:02d}" / MASK_DIR
    out.mkdir(parents=True, exist_ok=True)
    ov_dir = Path(overlays) if overlays is not None else None
    if ov_dir is not None:
        ov_dir.mkdir(parents=True, exist_ok=True)
    seg = MotionSegmenter(cfg)
    params = {"config": cfg.to_dict(), "flow": seg.flow.params()}

    poses, T_i2v = None, None
    if cfg.ego.source in ("auto", "oxts"):
        poses = drive.poses
        if poses is not None:
            T_i2v = load_imu_to_velo(drive.drive_dir)
            if T_i2v is None:
                if cfg.ego.source == "oxts":
                    raise MotionInputError(f"{drive.drive_dir}: oxts present but calib_imu_to_velo.txt missing")
                warnings.warn(f"{drive.drive_dir}: no calib_imu_to_velo.txt, oxts ignored", stacklevel=2)
                poses = None
        elif cfg.ego.source == "oxts":
            raise MotionInputError(f"{drive.drive_dir}: ego.source=oxts but the drive has no oxts/data")
    ego_mode = "oxts" if poses is not None else ("pnp" if drive.has_lidar else "essential")

    prev = read_motion_json(out)
    if prev is not None and not force and prev.get("params") != params:
        raise MotionInputError(f"{out / PARAMS_FILE}: existing masks were made with other parameters; "
                               "use --force to recompute")
    frames_info = {} if (force or prev is None) else dict(prev.get("frames", {}))
    ids = drive.frame_ids
    todo = list(range(len(ids))) if frames is None else sorted(set(int(i) for i in frames))
    for i in todo:
        if not 0 <= i < len(ids):
            raise MotionInputError(f"frame index {i} outside the drive (0..{len(ids) - 1})")
    summary = DriveSummary(out, frames=len(todo))
    runner = _DriveRunner(seg, drive, poses, T_i2v)

    def save():
        unknown = sorted(k for k, v in frames_info.items() if v.get("status") == "unknown")
        _write_json(out / PARAMS_FILE, {
            "format": "uint16 PNG per frame, 0 = background, 1..n motion instances; frames listed "
                      "under 'unknown' have no PNG (ego-motion failed: not evidence of 'no object')",
            "version": FORMAT_VERSION, "drive": str(drive.drive_dir), "ego_source": ego_mode,
            "params": params, "unknown": unknown, "frames": dict(sorted(frames_info.items()))})

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), desc=f"motion {drive.drive_dir.name}", unit="frame")
    t_start = time.perf_counter()
    try:
        for t in todo:
            fid = ids[t]
            png = out / f"{fid}.png"
            done = png.is_file() or frames_info.get(fid, {}).get("status") == "unknown"
            if done and not force and fid in frames_info:
                summary.skipped += 1
                if bar is not None:
                    bar.update(1)
                continue
            t0, c0 = time.perf_counter(), time.process_time()
            res = runner.frame(t)
            if res.unknown:
                if png.exists():
                    png.unlink()
                frames_info[fid] = {"status": "unknown", "ego": res.ego.summary(),
                                    "reason": res.info.get("reason", res.ego.reason)}
                summary.unknown.append(fid)
            else:
                if not cv2.imwrite(str(png), res.instances):
                    raise MotionInputError(f"{png}: cannot write mask")
                frames_info[fid] = {"status": "ok", "instances": int(res.n_instances),
                                    "evidences": int(res.info.get("evidences", 1)), "ego": res.ego.summary()}
            summary.frame_ms.append((time.perf_counter() - t0) * 1000)
            summary.frame_cpu_ms.append((time.process_time() - c0) * 1000)
            summary.processed += 1
            if ov_dir is not None:
                cv2.imwrite(str(ov_dir / f"{fid}.png"), overlay(drive.image(t), res, cfg)[..., ::-1])
            runner.forget_before(t - cfg.frame_step)
            if bar is not None:
                bar.update(1)
            if summary.processed % 25 == 0:
                save()
    finally:
        if bar is not None:
            bar.close()
        save()
    summary.seconds = time.perf_counter() - t_start
    return summary


def _colours(n: int) -> np.ndarray:
    ids = np.arange(n + 1)
    hsv = np.stack([(ids * 47) % 180, np.full_like(ids, 230), np.full_like(ids, 255)], -1).astype(np.uint8)[None]
    lut = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]
    lut[0] = 0
    return lut


def overlay(rgb: np.ndarray, res: PairResult, cfg: MotionConfig) -> np.ndarray:
    """(2H, W, 3) RGB: instances over the image (top), motion score (bottom, grey = no valid flow,
    dark = explained by ego-motion, bright = moving)."""
    H, W = rgb.shape[:2]
    top = rgb.copy()
    if res.unknown:
        top = (0.5 * top).astype(np.uint8)
        cv2.putText(top, f"UNKNOWN ego-motion: {res.info.get('reason', res.ego.reason)}"[:90], (10, 30),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 60, 60), 2, cv2.LINE_AA)
    else:
        inst = res.instances
        lut = _colours(int(inst.max()))
        col = lut[inst]
        m = inst > 0
        top[m] = (0.45 * top[m] + 0.55 * col[m]).astype(np.uint8)
        edges = cv2.morphologyEx(inst, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        top[edges & m] = (255, 255, 255)
        cv2.putText(top, f"{res.n_instances} moving | ego {res.ego.status}", (10, 25),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 0), 2, cv2.LINE_AA)
    s = res.residual
    if s.size > 1:
        thr = cfg.residual.threshold
        v = np.clip(np.nan_to_num(s, nan=0.0) / (4 * thr), 0, 1)
        heat = cv2.applyColorMap((v * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1].copy()
        heat[~np.isfinite(s)] = (90, 90, 90)
        heat = cv2.resize(heat, (W, H), interpolation=cv2.INTER_NEAREST)
    else:
        heat = np.full_like(rgb, 90)
    return np.concatenate([top, heat], 0)
