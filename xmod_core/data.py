"""Training clips from KITTI-layout drives (simulated or real) with their motion masks.

A sample is a clip of T consecutive frames of one drive, with the geometric augmentation (crop,
horizontal flip) identical for every frame, for the images, the LiDAR front view and the masks:

    rgb           (T, 3, H, W) float in [0, 1]   the 2D student's input (colour jitter, grayscale)
    rgb_target    (T, 3, H, W)                   reconstruction target (= the student's input)
    rgb_clean     (T, 3, H, W)                   the same crop without colour augmentation (teachers' input)
    lidar         (T, 4, H, W)                   the 3D student's input (jitter; in some clips a sparser cloud: point drop)
    lidar_target  (T, 4, H, W)                   the original cloud's projection (scene completion target,
                                                 and the 3D teacher's input)
    lidar_valid   (T, H, W) bool                 pixels with a return in the original projection
    motion        (T, H/s, W/s) int64            (s = data.mask_stride) motion-mask instances 1..G per frame, 0 = background
                                                 (and mined still objects after them, data.mined_dir)
    motion_valid  (T,) bool                      False where the motion mask is unknown or missing
    motion_mined_from (T,) int64                 the first id of `motion` that is a mined instance (ids are in
                                                 order: motion instances, then mined ones); G + 1 when none
    crop, flip                                   the geometric augmentation (to align teachers' outputs)

The LiDAR is projected straight onto the cropped, resized grid by adjusting the intrinsics, never
by resizing a projected map. Flipping mirrors the lateral channel (x), not y.
"""
from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .frontview import X_RANGE, project_scan
from .kitti import CameraCalib, KittiRawDrive
from .masks import MOTION_DIR, read_motion, unknown_frames  # noqa: F401 (re-exported)



@dataclass
class DataConfig:
    drives: list[str] = field(default_factory=lambda: ["data/sim/*/*_sync"])   # glob patterns of drive folders
    clip_len: int = 4
    height: int = 96              # input size (multiples of 4)
    mask_stride: int = 4          # motion targets on the 1/mask_stride grid (= model.output_stride)
    width: int = 320
    clip_stride: int = 1          # frames between the starts of two clips
    workers: int = 2              # DataLoader worker processes
    motion_dir: str = MOTION_DIR  # relative to the drive folder
    mined_dir: str = ""           # e.g. "image_02/mined_masks" (python -m xmod_core.mining): still objects
                                  # that look like movers, merged under the motion masks; "": off. Frames
                                  # without a motion mask keep none (the miner could not tell movers there)
    mined_min_confidence: float = 0.0   # mined instances with a lower vote (mined.json) are left out
    min_target_cells: int = 0     # target instances covering fewer cells of the mask grid (after crop and
                                  # resize) become background, as the teacher's pseudo-labels under
                                  # distill.min_size do; 0: every target kept (docs/training.md)
    preload: bool = False         # decode every frame (image, scan, motion mask) once into memory at the
                                  # start; augmentation still runs per clip (forked workers share the frames)
    device_cache: int = 0         # > 0: decode this many augmented passes over the clips once, hold them as
                                  # tensors on the training device and draw batches from them (no DataLoader
                                  # between steps; DeviceClipCache); 0: a DataLoader decodes every batch


@dataclass
class AugmentConfig:
    crop_scale: tuple[float, float] = (0.7, 1.0)   # crop height as a share of the image height
    hflip: float = 0.5                             # probability
    color_jitter: float = 0.3                      # brightness/contrast/saturation strength (2D student)
    grayscale: float = 0.1                         # probability (2D student)
    # camera appearance beyond colour (2D student; 0 = off, the default, and no random draw at all):
    gamma: float = 0.0                             # gamma exp(U(-g, g)) per clip
    channel_gain: float = 0.0                      # white balance: each channel times U(1 - c, 1 + c) per clip
    blur: float = 0.0                              # half the clips blurred, Gaussian sigma U(0.3, blur) px (input grid;
                                                   # any blur under 0.3 blurs at 0.3)
    noise: float = 0.0                             # Gaussian sensor noise of std U(0, noise) per clip
    point_drop: float = 0.5                        # share of LiDAR points the 3D student does not see ...
    point_drop_prob: float = 0.1                   # ... in this share of the clips (paper, KITTI: 0.1); the
                                                   # others keep every point (scene completion still
                                                   # reconstructs through the slots)
    point_jitter: float = 0.02                     # metres, Gaussian noise on the student's points


def find_drives(patterns) -> list[Path]:
    out = sorted({Path(p) for pat in patterns for p in glob.glob(str(pat)) if (Path(p) / "image_02").is_dir()
                  or (Path(p) / "velodyne_points").is_dir()})
    if not out:
        raise FileNotFoundError(f"no KITTI drive folder matches {list(patterns)}")
    return out


def read_mined_confidence(drive: Path, mined_dir: str) -> dict:
    """{frame id: {mined id: confidence}} from the miner's mined.json (FileNotFoundError naming the
    drive when the miner has not run there)."""
    meta = drive / mined_dir / "mined.json"
    if not meta.is_file():
        raise FileNotFoundError(f"{drive}: no {mined_dir}/mined.json; run python -m xmod_core.mining {drive} "
                                "or set data.mined_dir to ''")
    frames = json.loads(meta.read_text()).get("frames", {})
    return {fid: {int(k): float(v["confidence"]) for k, v in ids.items()} for fid, ids in frames.items()}


def merge_mined(motion: np.ndarray, mined: np.ndarray | None, confidence: dict, min_confidence: float) -> np.ndarray:
    """Motion instances first; mined instances with confidence >= min_confidence get ids after
    them wherever no motion pixel is set (the motion mask wins where both are set)."""
    if mined is None:
        return motion
    keep = np.zeros(int(mined.max()) + 1, bool)                          # mined id -> kept
    ids = np.fromiter(confidence.keys(), np.int64, len(confidence))
    conf = np.fromiter(confidence.values(), np.float64, len(confidence))
    ok = (conf >= min_confidence) & (ids < len(keep))
    keep[ids[ok]] = True
    mined = np.where(keep[mined], mined.astype(np.int64) + int(motion.max(initial=0)), 0)
    return np.where(motion > 0, motion, mined)


def compact_ids(ids: np.ndarray) -> np.ndarray:
    """Renumber instance ids to 1..G (0 stays background)."""
    u, inv = np.unique(ids, return_inverse=True)
    return (inv.reshape(ids.shape) + (0 if u[0] == 0 else 1)).astype(np.int64)


def drop_small_ids(ids: np.ndarray, min_cells: int) -> np.ndarray:
    """Compact ids (0 = background) with the instances of fewer than `min_cells` pixels set to 0
    and the rest renumbered 1..G; `min_cells` <= 1 returns `ids` unchanged."""
    if min_cells <= 1:
        return ids
    small = np.bincount(ids.reshape(-1), minlength=1) < min_cells                  # (G + 1,)
    small[0] = True
    return compact_ids(np.where(small[ids], 0, ids))


def crop_calib(calib: CameraCalib, x0: int, y0: int, cw: int, ch: int, W: int, H: int) -> CameraCalib:
    """Intrinsics of the crop [x0, x0+cw) x [y0, y0+ch) resized to W x H (pixel centres at integers)."""
    sx, sy = W / cw, H / ch
    P = calib.P_rect.astype(np.float64).copy()
    P[0] = sx * P[0] + (0.5 * sx - 0.5 - sx * x0) * P[2]
    P[1] = sy * P[1] + (0.5 * sy - 0.5 - sy * y0) * P[2]
    return CameraCalib(P, calib.R_rect, calib.T_velo_to_cam, W, H, calib.camera)


def mirror_x(features: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Front view (4, H, W) flipped left-right, with the lateral channel x mirrored (x -> -x)."""
    f = features[:, :, ::-1].copy()
    lo, hi = X_RANGE
    f[0] = np.where(valid[:, ::-1], np.clip(-f[0] - 2 * lo / (hi - lo), 0, 1), 0)
    return f


class ClipDataset(Dataset):
    """Clips of `clip_len` consecutive frames; `modalities` among 'rgb', 'lidar'."""

    def __init__(self, cfg: DataConfig, aug: AugmentConfig | None, modalities=("rgb",), drives=None, seed: int = 0):
        if cfg.height % 4 or cfg.width % 4:
            raise ValueError(f"data.height and data.width must be multiples of 4, got {cfg.height}x{cfg.width}")
        if cfg.mask_stride not in (2, 4):
            raise ValueError(f"data.mask_stride must be 2 or 4, got {cfg.mask_stride}")
        self.cfg, self.aug, self.modalities, self.seed = cfg, aug, tuple(modalities), seed
        self.drives = [KittiRawDrive(d) for d in (drives if drives is not None else find_drives(cfg.drives))]
        self.unknown = [unknown_frames(d.drive_dir, cfg.motion_dir) for d in self.drives]
        self.mined = [read_mined_confidence(d.drive_dir, cfg.mined_dir) for d in self.drives] if cfg.mined_dir else None
        self.index = [(i, s) for i, d in enumerate(self.drives)
                      for s in range(0, len(d) - cfg.clip_len + 1, cfg.clip_stride)]
        if not self.index:
            raise ValueError(f"no clip of {cfg.clip_len} frames in {len(self.drives)} drive(s)")
        self.epoch = 0
        self.frames: dict | None = None
        if cfg.preload:
            self.frames = {}
            for di, d in enumerate(self.drives):
                for t in range(len(d)):
                    img, scan, m, n_motion = self._read(di, t)
                    self.frames[di, t] = (img, scan, None if m is None else m.astype(np.uint16 if m.max() < 2 ** 16 else np.int64),
                                          n_motion)

    def _read(self, di: int, t: int) -> tuple:
        d, fid = self.drives[di], self.drives[di].frame_ids[t]
        m = None if fid in self.unknown[di] else read_motion(d.drive_dir, self.cfg.motion_dir, fid)
        n_motion = 0 if m is None else int(m.max(initial=0))                  # ids above it are mined ones
        if m is not None and self.mined is not None:
            mined = read_motion(d.drive_dir, self.cfg.mined_dir, fid)
            if mined is not None and mined.shape != m.shape:
                raise ValueError(f"{d.drive_dir / self.cfg.mined_dir / fid}.png is {mined.shape[1]}x{mined.shape[0]}, "
                                 f"its motion mask {m.shape[1]}x{m.shape[0]}: mine the drive again")
            m = merge_mined(m, mined, self.mined[di].get(fid, {}), self.cfg.mined_min_confidence)
        return (d.image(t) if "rgb" in self.modalities else None, d.scan(t) if "lidar" in self.modalities else None, m,
                n_motion)

    def _frame(self, di: int, t: int) -> tuple:
        """(image, scan, motion ids or None, the largest motion-mask id) of frame t of drive di, from
        memory when preloaded; the motion ids include the mined instances (above the motion-mask
        ids) when data.mined_dir is set."""
        return self.frames[di, t] if self.frames is not None else self._read(di, t)

    def __len__(self) -> int:
        return len(self.index)

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __getitem__(self, i: int) -> dict:
        di, start = self.index[i]
        d, cfg = self.drives[di], self.cfg
        rng = np.random.default_rng([self.seed, self.epoch, i])     # reproducible, worker-independent
        H0, W0 = d.calib.height, d.calib.width
        H, W, T = cfg.height, cfg.width, cfg.clip_len
        a = self.aug
        # geometric augmentation, identical for the whole clip
        scale = rng.uniform(*a.crop_scale) if a else 1.0
        ch = min(H0, int(round(H0 * scale)))
        cw = min(W0, int(round(ch * W / H)))
        if not a:
            ch, cw = min(H0, int(round(W0 * H / W))), W0
        x0, y0 = (int(rng.integers(0, W0 - cw + 1)), int(rng.integers(0, H0 - ch + 1))) if a else ((W0 - cw) // 2, (H0 - ch) // 2)
        flip = bool(a and rng.random() < a.hflip)
        out = {"crop": torch.tensor([x0, y0, cw, ch]), "flip": torch.tensor(flip)}
        frames = range(start, start + T)
        data = [self._frame(di, t) for t in frames]                   # (image, scan, motion, n_motion) per frame

        motion, mvalid, mined_from = [], [], []
        for _, _, m, n_motion in data:
            mvalid.append(m is not None)
            if m is None:
                m = np.zeros((H0, W0), np.int64)
            s = cfg.mask_stride
            m = cv2.resize(m[y0:y0 + ch, x0:x0 + cw].astype(np.float32), (W // s, H // s), interpolation=cv2.INTER_NEAREST)
            m = (m[:, ::-1] if flip else m).astype(np.int64)
            ids = drop_small_ids(compact_ids(m), cfg.min_target_cells)   # renumbered in order: mined ones stay last
            mined = ids[(m > n_motion) & (ids > 0)]
            mined_from.append(int(mined.min()) if mined.size else int(ids.max(initial=0)) + 1)
            motion.append(ids)
        out["motion"] = torch.from_numpy(np.stack(motion))
        out["motion_valid"] = torch.tensor(mvalid)
        out["motion_mined_from"] = torch.tensor(mined_from, dtype=torch.int64)

        if "rgb" in self.modalities:
            imgs = np.stack([cv2.resize(img[y0:y0 + ch, x0:x0 + cw], (W, H), interpolation=cv2.INTER_AREA)
                             for img, _, _, _ in data]).astype(np.float32) / 255.0               # (T, H, W, 3)
            imgs = imgs[:, :, ::-1] if flip else imgs
            out["rgb_clean"] = torch.from_numpy(np.ascontiguousarray(imgs.transpose(0, 3, 1, 2)))  # (T, 3, H, W)
            if a:                                                     # the camera effects draw from their own stream
                x = self._camera(self._colour(imgs, rng), [self.seed, self.epoch, i, 1])
                out["rgb"] = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            else:
                out["rgb"] = out["rgb_clean"]
            out["rgb_target"] = out["rgb"]
        if "lidar" in self.modalities:
            calib = crop_calib(d.calib, x0, y0, cw, ch, W, H)
            student, target, valid = [], [], []
            drop = a.point_drop if a and rng.random() < a.point_drop_prob else 0.0   # one draw per clip
            for _, scan, _, _ in data:
                dense = project_scan(scan, calib)
                keep = rng.random(len(scan)) >= drop
                sparse_pts = scan[keep, :3] + (rng.normal(0, a.point_jitter, (int(keep.sum()), 3)).astype(np.float32) if a else 0)
                sparse = project_scan(sparse_pts, calib)
                if flip:
                    target.append(mirror_x(dense.features, dense.valid))
                    student.append(mirror_x(sparse.features, sparse.valid))
                    valid.append(dense.valid[:, ::-1])
                else:
                    target.append(dense.features)
                    student.append(sparse.features)
                    valid.append(dense.valid)
            out["lidar"] = torch.from_numpy(np.stack(student))
            out["lidar_target"] = torch.from_numpy(np.stack(target))
            out["lidar_valid"] = torch.from_numpy(np.ascontiguousarray(np.stack(valid)))
        return out

    def _colour(self, imgs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Clip-consistent colour jitter (brightness, contrast, saturation) and grayscale on
        (T, H, W, 3) float32 in [0, 1] (numpy: cheap and single-threaded in the workers)."""
        j = self.aug.color_jitter
        b, c, s = (np.float32(rng.uniform(1 - j, 1 + j)) for _ in range(3))
        luma = lambda x: x @ np.array([0.299, 0.587, 0.114], np.float32)          # (T, H, W)
        x = imgs * b
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        x = (x - mean) * c + mean
        g = luma(x)[..., None]
        x = g + (x - g) * s
        if rng.random() < self.aug.grayscale:
            x = np.repeat(luma(x)[..., None], 3, axis=-1)
        return np.clip(x, 0, 1, out=x)

    def _camera(self, x: np.ndarray, seed) -> np.ndarray:
        """Clip-consistent camera appearance (gamma, white balance, blur, sensor noise) on (T, H, W, 3)
        float32 in [0, 1], after the colour jitter; `seed` starts the clip's own random stream for
        these (only when one is on), so every other augmentation's draws (crop, colour, LiDAR) stay
        as they are without them."""
        a = self.aug
        if not (a.gamma or a.channel_gain or a.blur or a.noise):
            return x
        rng = np.random.default_rng(seed)
        if a.gamma > 0:
            x = x ** np.float32(np.exp(rng.uniform(-a.gamma, a.gamma)))
        if a.channel_gain > 0:
            x = x * rng.uniform(1 - a.channel_gain, 1 + a.channel_gain, 3).astype(np.float32)
        if a.blur > 0 and rng.random() < 0.5:
            sigma = float(rng.uniform(0.3, max(0.3, a.blur)))
            x = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in x])                # T frames, not pixels
        if a.noise > 0:
            x = x + rng.normal(0, rng.uniform(0, a.noise), x.shape).astype(np.float32)
        return np.clip(x, 0, 1)


ALIASES = {"rgb_target": "rgb"}       # keys that are the same tensor as another in a sample
_DECODING: tuple | None = None         # (dataset, arrays, offset) for a DeviceClipCache's forked processes


def _decode_init():
    torch.set_num_threads(1)              # (cv2's threads are set in the parent: reconfiguring them after fork can hang)


def _decode(i: int, decoding: tuple | None = None) -> int:
    """Decode clip i into row offset + i of the shared arrays (their dtypes convert: float16 for CUDA)."""
    dataset, arrays, offset = decoding or _DECODING
    for k, v in dataset[i].items():
        if k not in ALIASES:
            arrays[k][offset + i] = v.numpy()
    return i


class DeviceClipCache:
    """Every clip of `dataset`, decoded `passes` times (the augmentation of epochs 0..passes-1, as
    the DataLoader would give them) by `workers` forked processes, once, and held as tensors on
    `device`; float tensors as float16 on CUDA (float32 elsewhere), motion ids as int16. The
    processes write straight into anonymous shared memory made before they fork (no /dev/shm, no
    pickling through the parent), which then goes to the device key by key. Epoch e of training
    reuses pass e % passes. `batch(indices, epoch)` gathers a batch on the device: the same values
    as the DataLoader's batch of those indices in the epochs that have their own pass (exactly on
    the CPU; to float16 rounding on CUDA). About 29 bytes per pixel and frame for both modalities
    (192x640, clips of 4: 13.8 MiB a clip)."""

    def __init__(self, dataset: ClipDataset, device, passes: int = 1, workers: int = 0):
        global _DECODING
        import mmap
        if passes < 1:
            raise ValueError(f"data.device_cache must be at least 1 to build a cache, got {passes}")
        self.device, self.passes, self.size = torch.device(device), passes, len(dataset)
        self.modalities = dataset.modalities
        half = self.device.type == "cuda"
        n, epoch0 = passes * self.size, dataset.epoch
        dataset.set_epoch(0)
        first = {k: v.numpy() for k, v in dataset[0].items() if k not in ALIASES}      # the shapes
        dtypes = {k: np.float16 if half and v.dtype.kind == "f" else np.int16 if k == "motion" else v.dtype
                  for k, v in first.items()}
        bufs = {k: mmap.mmap(-1, max(1, n * v.size * np.dtype(dtypes[k]).itemsize)) for k, v in first.items()}
        arrays = {k: np.frombuffer(bufs[k], dtypes[k], n * v.size).reshape(n, *v.shape) for k, v in first.items()}
        try:
            for p in range(passes):
                dataset.set_epoch(p)
                if workers > 0:
                    import multiprocessing
                    _DECODING = (dataset, arrays, p * self.size)            # inherited by the forked processes
                    threads = cv2.getNumThreads()
                    cv2.setNumThreads(1)             # no OpenCV thread pool across the fork
                    try:
                        with multiprocessing.get_context("fork").Pool(min(workers, self.size), initializer=_decode_init) as pool:
                            for _ in pool.imap_unordered(_decode, range(self.size), chunksize=4):
                                pass
                    finally:
                        cv2.setNumThreads(threads)
                else:
                    for i in range(self.size):
                        _decode(i, (dataset, arrays, p * self.size))
            if int(arrays["motion"].max(initial=0)) >= np.iinfo(np.int16).max:
                raise ValueError("motion ids beyond int16")
            self.tensors = {k: torch.from_numpy(a).to(self.device, copy=True) for k, a in arrays.items()}
        finally:
            dataset.set_epoch(epoch0)
            _DECODING = None
            del arrays
            for b in bufs.values():
                try:
                    b.close()
                except BufferError:                   # still viewed (an error on the way): freed with the view
                    pass

    def __len__(self) -> int:
        return self.passes * self.size

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def batch(self, indices, epoch: int = 0) -> dict:
        """The clips `indices` (of the dataset) as they were decoded for pass `epoch % passes`."""
        idx = torch.as_tensor(list(indices), dtype=torch.long) + (epoch % self.passes) * self.size
        idx = idx.to(self.device)
        out = {}
        for k, t in self.tensors.items():
            v = t.index_select(0, idx)
            out[k] = v.float() if v.is_floating_point() else v.long() if k == "motion" else v
        for k, src in ALIASES.items():
            if src in out:
                out[k] = out[src]
        return out

