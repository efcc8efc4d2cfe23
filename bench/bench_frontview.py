"""Time xmod_core.frontview.project_scan at 375x1242 and 92x312 against a 20 ms target.

Usage: .venv/bin/python bench/bench_frontview.py [--runs 30]
Uses real scan 0 of ../shared/kitti_raw when present (its native ~114k points) and always a
synthetic 120k-point cloud (uniform azimuth, 64 elevation rings, 2-80 m ranges, fixed seed).
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xmod_core.frontview import project_scan  # noqa: E402
from xmod_core.kitti import CameraCalib, KittiRawDrive  # noqa: E402

TARGET_MS = 20.0
DRIVE = ROOT.parent / "shared" / "kitti_raw" / "2011_09_26" / "2011_09_26_drive_sfnd_sync"
SIZES = [(375, 1242), (92, 312)]


def synthetic_cloud(n: int = 120_000, seed: int = 0) -> np.ndarray:
    """(n,4) float32 HDL-64-like cloud in the velo frame."""
    rng = np.random.default_rng(seed)
    az = rng.uniform(-np.pi, np.pi, n)
    el = np.deg2rad(rng.integers(0, 64, n) * (26.9 / 63) - 24.9)
    r = rng.uniform(2.0, 80.0, n)
    return np.stack([r * np.cos(el) * np.cos(az), r * np.cos(el) * np.sin(az),
                     r * np.sin(el) + 1.7, rng.uniform(0, 1, n)], -1).astype(np.float32)


def kitti_like_calib() -> CameraCalib:
    """KITTI 2011_09_26 camera-2 values (rounded), for when ../shared is absent."""
    P = [[721.5377, 0, 609.5593, 44.85728], [0, 721.5377, 172.854, 0.2163791], [0, 0, 1, 0.002745884]]
    T = np.eye(4)
    T[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]
    T[:3, 3] = [0.0, -0.076, -0.272]
    return CameraCalib(np.array(P), np.eye(3), T, 1242, 375)


def median_ms(points, calib, size, runs):
    for _ in range(3):  # warm-up
        project_scan(points, calib, *size)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        project_scan(points, calib, *size)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    cases = []
    if DRIVE.is_dir():
        drive = KittiRawDrive(DRIVE)
        cases.append((f"real KITTI scan {drive.frame_ids[0]}", drive.scan(0), drive.calib))
    else:
        print(f"{DRIVE} not found: real scan skipped")
    cases.append(("synthetic cloud", synthetic_cloud(), kitti_like_calib()))
    print(f"project_scan, median of {args.runs} runs after 3 warm-up, target {TARGET_MS:g} ms")
    for name, pts, calib in cases:
        for size in SIZES:
            ms = median_ms(pts, calib, size, args.runs)
            print(f"  {name:32s} {len(pts):7d} pts  {size[0]:3d}x{size[1]:<4d}  {ms:6.2f} ms"
                  f"  ({ms / TARGET_MS:.2f} x target)")


if __name__ == "__main__":
    main()
