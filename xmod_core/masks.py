"""Reading the instance-mask PNGs that `python -m xmod_core.motion` (motion masks) and
`python -m xmod_core.mining` (mined still objects) write into a drive: uint16 (H, W) at camera
resolution, 0 = background, 1..n the frame's instances. Torch-free, so the CLIs start fast."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

MOTION_DIR = "image_02/motion_masks"


def read_motion(drive: Path, motion_dir: str, frame_id: str) -> np.ndarray | None:
    """The instance mask (H, W) int64 of one frame, or None when it is missing or unreadable."""
    path = Path(drive) / motion_dir / f"{frame_id}.png"
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.is_file() else None
    return None if m is None else m.astype(np.int64)


def unknown_frames(drive: Path, motion_dir: str) -> set:
    """Frames the motion masks call unknown (motion.json "unknown": ego-motion failed)."""
    meta = Path(drive) / motion_dir / "motion.json"
    return {str(f) for f in json.loads(meta.read_text()).get("unknown", [])} if meta.is_file() else set()
