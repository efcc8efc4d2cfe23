"""Real KITTI ground truth: the 3D object benchmark and tracking benchmark layouts, their labels,
and the ground truth per LiDAR point.

Layouts (``ROOT`` or ``ROOT/training`` may be given)::

    object:    training/{image_2/NNNNNN.png, velodyne/NNNNNN.bin, calib/NNNNNN.txt, label_2/NNNNNN.txt}
    tracking:  training/{velodyne/SEQ/NNNNNN.bin, calib/SEQ.txt, label_02/SEQ.txt, image_02/SEQ/NNNNNN.png}

Images are optional in both (a LiDAR-only benchmark still has the camera's calibration, which
defines the field of view: 1242x375 is assumed without images). Calibration keys of both
conventions are read: ``P2``, ``R0_rect`` or ``R_rect``, ``Tr_velo_to_cam`` or ``Tr_velo_cam``,
lines with or without a colon after the key.

Labels: ``type truncated occluded alpha left top right bottom h w l x y z rotation_y`` (the
tracking layout prefixes ``frame track_id``); the 3D box stands on its bottom centre (x, y, z) in
rectified camera coordinates (y down), ``rotation_y`` about the camera's y axis. ``DontCare``
lines are image regions with unlabelled objects, not objects.

Every problem with a file raises :class:`~xmod_core.kitti.KittiFormatError` naming the file and,
for labels and calibration, the line.
"""
from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .kitti import CameraCalib, KittiFormatError

DONT_CARE = "DontCare"
DEFAULT_SIZE = (375, 1242)          # (height, width) of a KITTI image, for layouts without images


@dataclass(frozen=True, eq=False)
class Label:
    type: str
    track_id: int               # -1 in the object layout
    truncated: float
    occluded: int
    bbox: np.ndarray            # (4,) left, top, right, bottom, pixels
    dims: np.ndarray            # (3,) height, width, length, m
    location: np.ndarray        # (3,) bottom centre, rectified camera coordinates, m
    rotation_y: float           # radians about the camera's y axis


@dataclass
class GTFrame:
    name: str                   # e.g. "000042"
    calib: CameraCalib
    scan: np.ndarray            # (N, 4) float32
    labels: list                # list[Label], DontCare included
    image: np.ndarray | None    # (H, W, 3) uint8 RGB, or None
    stamp: float | None         # seconds (10 Hz) in sequences, None for single frames


# --------------------------------------------------------------------------- files
def read_labels(path, tracking: bool = False) -> list[tuple[int, Label]]:
    """(frame, Label) per line of a KITTI label file (frame = -1 in the object layout)."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise KittiFormatError(f"{path}: cannot read labels ({exc})") from exc
    n = 17 if tracking else 15
    out = []
    for lineno, line in enumerate(lines, 1):
        f = line.split()
        if not f:
            continue
        if len(f) not in (n, n + 1):                                            # + 1: a detection score
            raise KittiFormatError(f"{path}:{lineno}: {len(f)} fields, expected {n} "
                                   f"({'frame track_id ' if tracking else ''}type truncated occluded alpha bbox(4) h w l x y z rotation_y)")
        head, f = (f[:2], f[2:]) if tracking else (["-1", "-1"], f)
        try:
            frame, track = int(head[0]), int(head[1])
            v = np.array([float(x) for x in f[1:15]])
        except ValueError as exc:
            raise KittiFormatError(f"{path}:{lineno}: not a number ({exc})") from exc
        if not np.isfinite(v).all():
            raise KittiFormatError(f"{path}:{lineno}: non-finite value")
        if f[0] != DONT_CARE and (v[7:10] <= 0).any():
            raise KittiFormatError(f"{path}:{lineno}: box dimensions must be positive, got h w l {v[7:10]}")
        out.append((frame, Label(f[0], track, float(v[0]), int(v[1]), v[3:7], v[7:10], v[10:13], float(v[13]))))
    return out


def read_calib(path, height: int, width: int) -> CameraCalib:
    """Camera 2 of an object/tracking calibration file at an image size of width x height."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise KittiFormatError(f"{path}: cannot read calibration ({exc})") from exc
    vals = {}
    for lineno, line in enumerate(lines, 1):
        key, sep, rest = line.partition(":")
        if not sep:
            key, _, rest = line.strip().partition(" ")
        if not key.strip():
            continue
        try:
            vals[key.strip()] = (lineno, np.array([float(x) for x in rest.split()]))
        except ValueError as exc:
            raise KittiFormatError(f"{path}:{lineno}: not a number ({exc})") from exc

    def get(names, n):
        for k in names:
            if k in vals:
                lineno, v = vals[k]
                if v.size != n:
                    raise KittiFormatError(f"{path}:{lineno}: {k} has {v.size} values, expected {n}")
                return v
        raise KittiFormatError(f"{path}: missing key {' or '.join(names)}")

    T = np.eye(4)
    T[:3] = get(("Tr_velo_to_cam", "Tr_velo_cam"), 12).reshape(3, 4)
    return CameraCalib(get(("P2",), 12).reshape(3, 4), get(("R0_rect", "R_rect"), 9).reshape(3, 3), T, width, height)


def _read_scan(path: Path) -> np.ndarray:
    size = path.stat().st_size
    if size % 16:
        raise KittiFormatError(f"{path}: size {size} bytes is not a multiple of 16 (4 float32 per point)")
    return np.fromfile(path, dtype="<f4").reshape(-1, 4)


def _read_image(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise KittiFormatError(f"{path}: missing or not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------- ground truth per point
def points_in_boxes(points: np.ndarray, calib: CameraCalib, labels: list) -> np.ndarray:
    """(N,) int64: 1 + index into `labels` of the 3D box holding each LiDAR point (velo frame), 0
    for none; DontCare lines hold no points; where boxes overlap, the first wins. One (N, B) test."""
    idx = np.array([i for i, lb in enumerate(labels) if lb.type != DONT_CARE], np.int64)
    out = np.zeros(len(points), np.int64)
    if not len(idx) or not len(points):
        return out
    X = calib.velo_to_rect(np.asarray(points)[:, :3])                                   # (N, 3) camera
    loc = np.stack([labels[i].location for i in idx])                                  # (B, 3)
    hwl = np.stack([labels[i].dims for i in idx])
    ry = np.array([labels[i].rotation_y for i in idx])
    d = X[:, None, :] - loc[None]                                                      # (N, B, 3)
    c, s = np.cos(ry), np.sin(ry)
    u = c * d[..., 0] - s * d[..., 2]                                                  # along the length
    w = s * d[..., 0] + c * d[..., 2]                                                  # along the width
    inside = (np.abs(u) <= hwl[:, 2] / 2) & (np.abs(w) <= hwl[:, 1] / 2) & (d[..., 1] <= 0) & (d[..., 1] >= -hwl[:, 0])
    any_ = inside.any(1)
    out[any_] = idx[inside[any_].argmax(1)] + 1
    return out


def dont_care_boxes(labels: list) -> np.ndarray:
    """(D, 4) left, top, right, bottom of the DontCare regions."""
    return np.array([lb.bbox for lb in labels if lb.type == DONT_CARE], np.float64).reshape(-1, 4)


def object_boxes(labels: list) -> np.ndarray:
    """(B, 4) 2D boxes of the objects (DontCare excluded), in the order `points_in_boxes` numbers them."""
    return np.array([lb.bbox for lb in labels if lb.type != DONT_CARE], np.float64).reshape(-1, 4)


# --------------------------------------------------------------------------- layouts
def _training(root) -> Path:
    root = Path(root)
    return root / "training" if (root / "training").is_dir() else root


class KittiObjectSet:
    """Frames of the KITTI 3D object layout (independent frames, no sequence)."""
    is_sequence = False

    def __init__(self, root):
        self.root = _training(root)
        self.velo = self.root / "velodyne"
        names = sorted(p.stem for p in self.velo.glob("*.bin"))
        if not names:
            raise KittiFormatError(f"{self.velo}: no .bin scans (KITTI object layout)")
        for sub, ext in (("calib", "txt"), ("label_2", "txt")):
            missing = [n for n in names if not (self.root / sub / f"{n}.{ext}").is_file()]
            if missing:
                raise KittiFormatError(f"{self.root / sub}: missing {len(missing)} file(s) for the scans, e.g. {missing[:3]}")
        self.names = names
        self.has_images = all((self.root / "image_2" / f"{n}.png").is_file() for n in names)
        self.name = f"{self.root.parent.name}/{self.root.name}"

    def __len__(self) -> int:
        return len(self.names)

    def frame(self, i: int) -> GTFrame:
        n = self.names[i]
        image = _read_image(self.root / "image_2" / f"{n}.png") if self.has_images else None
        h, w = image.shape[:2] if image is not None else DEFAULT_SIZE
        labels = [lb for _, lb in read_labels(self.root / "label_2" / f"{n}.txt")]
        return GTFrame(n, read_calib(self.root / "calib" / f"{n}.txt", h, w), _read_scan(self.velo / f"{n}.bin"),
                       labels, image, None)


class KittiTrackingSeq:
    """One sequence of the KITTI tracking layout (consecutive frames at 10 Hz, track ids)."""
    is_sequence = True

    def __init__(self, root, seq: str):
        self.root, self.seq = _training(root), seq
        self.velo = self.root / "velodyne" / seq
        self.names = sorted(p.stem for p in self.velo.glob("*.bin"))
        if not self.names:
            raise KittiFormatError(f"{self.velo}: no .bin scans (KITTI tracking layout)")
        self.image_dir = self.root / "image_02" / seq
        self.has_images = all((self.image_dir / f"{n}.png").is_file() for n in self.names)
        h, w = _read_image(self.image_dir / f"{self.names[0]}.png").shape[:2] if self.has_images else DEFAULT_SIZE
        self.calib = read_calib(self.root / "calib" / f"{seq}.txt", h, w)
        self.labels: dict[int, list] = {}
        for frame, lb in read_labels(self.root / "label_02" / f"{seq}.txt", tracking=True):
            self.labels.setdefault(frame, []).append(lb)
        self.name = f"{self.root.parent.name}/{seq}"

    def __len__(self) -> int:
        return len(self.names)

    def frame(self, i: int) -> GTFrame:
        n = self.names[i]
        image = _read_image(self.image_dir / f"{n}.png") if self.has_images else None
        return GTFrame(n, self.calib, _read_scan(self.velo / f"{n}.bin"), self.labels.get(int(n), []), image, int(n) / 10.0)


def find_gt_sources(patterns) -> list:
    """The real-ground-truth sources among folders matching `patterns`: a KittiObjectSet per
    object layout, a KittiTrackingSeq per tracking sequence. Folders of other layouts are skipped."""
    out = []
    for p in sorted({Path(x) for pat in patterns for x in glob.glob(str(pat))}):
        t = _training(p)
        if (t / "label_2").is_dir() and (t / "velodyne").is_dir():
            out.append(KittiObjectSet(p))
        elif (t / "label_02").is_dir() and (t / "velodyne").is_dir():
            out += [KittiTrackingSeq(p, s.stem) for s in sorted((t / "label_02").glob("*.txt"))]
    return out
