"""How cluttered a drive is, without labels: object clusters per frame in the camera's view.

Runs the LiDAR clustering baseline (`xmod_core.baselines`, ground removal + Euclidean clustering
with its object-size filters) on every `--every`-th scan of each KITTI-layout drive (real or
simulated) and prints the mean and median number of clusters whose points lie in the camera's
view, and the points per scan (the LiDAR's density: the simulator's `--azimuth-step`). Needs no
ground truth, so it can compare the simulator with real unlabelled drives.

    .venv/bin/python tools/cluster_count.py '../shared/kitti_raw/*/*_sync' 'data/street/sim77/*/*_sync'
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np

from xmod_core.baselines import euclidean_clusters
from xmod_core.data import find_drives
from xmod_core.frontview import project_scan
from xmod_core.kitti import KittiRawDrive


def clusters_in_view(drive: KittiRawDrive, every: int) -> list[tuple[int, int]]:
    """(clusters in the camera's view, points in the scan) of every `every`-th scan."""
    out = []
    for t in range(0, len(drive), every):
        scan = drive.scan(t)
        view = project_scan(scan, drive.calib).point_pixel >= 0
        cl = euclidean_clusters(scan[view])
        out.append((len(np.unique(cl[cl > 0])), len(scan)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("globs", nargs="+", help="drive folders or globs; one line per glob")
    ap.add_argument("--every", type=int, default=3, help="use every n-th scan (default 3)")
    a = ap.parse_args(argv)
    if a.every < 1:
        ap.error("--every must be at least 1")
    print("| drives | frames | clusters in view per frame: mean | median | points per scan: mean |\n"
          "| --- | ---: | ---: | ---: | ---: |")
    for g in a.globs:
        try:
            drives = find_drives([g])
        except FileNotFoundError:
            ap.error(f"no drive matches {g!r}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")                     # real drives without timestamps.txt
            counts, points = np.array([c for d in drives for c in clusters_in_view(KittiRawDrive(d), a.every)]).reshape(-1, 2).T
        print(f"| {g} | {len(counts)} | {np.mean(counts):.1f} | {np.median(counts):.0f} | {np.mean(points):,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
