"""Cost of turning slot masks into instances, `fragments` keep against largest, side by side.

The shipped students run once over real KITTI frames (default: ../shared/kitti_raw, 2D on the
image and 3D on the scan's front view, each frame from a fresh state, as the Predictor's first
frame of a sequence); their slot masks are kept, and `slots_to_instances` is then timed on each
frame's masks with both settings in alternation (so a busy machine slows both alike). Prints the
median ms per frame and student, the ratio, and how much of the foreground the largest-component
rule gives back to the background.

    .venv/bin/python bench/bench_instances.py [--drive DIR] [--repeats 20] [--device cpu|cuda]
"""
import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xmod_core.frontview import project_scan  # noqa: E402
from xmod_core.instances import slots_to_instances  # noqa: E402
from xmod_core.kitti import KittiRawDrive  # noqa: E402
from xmod_core.model import load_student  # noqa: E402
from xmod_core.predictor import DEFAULT_2D, DEFAULT_3D  # noqa: E402


def student_masks(drive: KittiRawDrive, device: torch.device, H: int, W: int, frames: int) -> dict:
    """{modality: (T, K, h, w)} slot masks of the shipped students, one fresh-state step per frame."""
    calib = drive.calib.scaled(H, W)
    out = {}
    for modality, path in (("rgb", DEFAULT_2D), ("lidar", DEFAULT_3D)):
        model = load_student(path, device)[0]
        masks = []
        with torch.no_grad():
            for t in range(frames):
                if modality == "rgb":
                    x = cv2.resize(drive.image(t), (W, H), interpolation=cv2.INTER_AREA)
                    x = torch.from_numpy(x).permute(2, 0, 1).float().div(255)
                else:
                    x = torch.from_numpy(project_scan(drive.scan(t), calib).features)
                masks.append(model.step(x[None].to(device), None, decode=False)[0]["masks"][0])
        out[modality] = torch.stack(masks)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--drive", type=Path, default=ROOT.parent / "shared/kitti_raw/2011_09_26/2011_09_26_drive_sfnd_sync")
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--height", type=int, default=96)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    if not a.drive.is_dir():
        ap.error(f"--drive {a.drive} is not a folder (a KITTI raw drive: image_02/, velodyne_points/)")
    device = torch.device(a.device)
    drive = KittiRawDrive(a.drive)
    n = min(a.frames, len(drive))
    masks = student_masks(drive, device, a.height, a.width, n)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"{n} frames of {a.drive.name}, {a.height}x{a.width}, device {device}, torch threads {torch.get_num_threads()}")
    for modality, m in masks.items():
        times = {"keep": [], "largest": []}
        fg = {}
        for _ in range(a.repeats):
            for fragments in times:                                          # alternating, frame by frame
                for t in range(n):
                    sync()
                    t0 = time.perf_counter()
                    ids, _ = slots_to_instances(m[t:t + 1], size=(a.height, a.width), min_pixels=20, min_score=0.5,
                                                fragments=fragments)
                    sync()
                    times[fragments].append(time.perf_counter() - t0)
                    fg.setdefault(fragments, []).append(float((ids > 0).float().mean()))
        keep, largest = (1e3 * np.median(times[k]) for k in ("keep", "largest"))
        print(f"  {modality:5s} keep {keep:6.2f} ms/frame, largest {largest:6.2f} ms/frame: x{largest / keep:.2f} "
              f"(+{largest - keep:.2f} ms); foreground {np.mean(fg['keep']):.3f} -> {np.mean(fg['largest']):.3f} of the grid")


if __name__ == "__main__":
    main()
