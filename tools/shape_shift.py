"""How the LiDAR candidates of drives look to a movable model, without labels: real against simulated.

For each glob of KITTI-layout drives (real or simulated; no ground truth used) it takes every
`--every`-th scan, finds mining's candidates (`mining.frame_candidates`) and prints their number,
the share the movable model (`xmod_core.movable`, default the shipped one) votes movable
(vote >= `--vote`), the share of car-sized ones (3.3-5 m long, 1.3-2.2 m wide, top under 2 m)
and their median log range-normalised density (the LiDAR's density on an object's face).

    .venv/bin/python tools/shape_shift.py '../shared/kitti_raw/*/*_sync' 'data/az18/train/*/*_sync' --every 3
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np

from xmod_core.data import find_drives
from xmod_core.kitti import KittiRawDrive
from xmod_core.mining import FEATURES, frame_candidates
from xmod_core.movable import MovableModel

F = {n: i for i, n in enumerate(FEATURES)}


def candidates(drive: KittiRawDrive, every: int) -> np.ndarray:
    """(n, len(FEATURES)) descriptors of the candidates of every `every`-th scan."""
    out = [frame_candidates(drive.scan(t), drive.calib).descriptors for t in range(0, len(drive), every)]
    return np.concatenate(out) if out else np.zeros((0, len(FEATURES)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("globs", nargs="+", help="drive folders or globs; one line per glob")
    ap.add_argument("--every", type=int, default=3, help="use every n-th scan (default 3)")
    ap.add_argument("--max-drives", type=int, default=6, help="drives per glob at most (default 6)")
    ap.add_argument("--model", default=None, help="movable model file (default: the shipped one)")
    ap.add_argument("--vote", type=float, default=0.5, help="vote from which a candidate counts as movable")
    a = ap.parse_args(argv)
    if a.every < 1:
        ap.error("--every must be at least 1")
    model = MovableModel.load(a.model)
    print("| drives | candidates | voted movable | car-sized | car-sized: median log density |\n"
          "| --- | ---: | ---: | ---: | ---: |")
    for g in a.globs:
        try:
            drives = find_drives([g])[: a.max_drives]
        except FileNotFoundError:
            ap.error(f"no drive matches {g!r}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")                     # real drives without timestamps.txt
            d = np.concatenate([candidates(KittiRawDrive(x), a.every) for x in drives])
        car = (d[:, F["length"]] > 3.3) & (d[:, F["length"]] < 5.0) & (d[:, F["width"]] > 1.3) & \
            (d[:, F["width"]] < 2.2) & (d[:, F["top"]] < 2.0)
        dens = f"{np.median(d[car, F['log_density']]):.2f}" if car.any() else "n/a"
        print(f"| {g} | {len(d)} | {np.mean(model.vote(d) >= a.vote):.0%} | {car.mean():.0%} | {dens} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
