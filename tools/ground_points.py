#!/usr/bin/env python3
"""How many of the points a LiDAR student calls an object lie on the ground, and what dropping them
would do to its point F1@50 (simulated drives: their per-point labels say which points are objects).

    .venv/bin/python tools/ground_points.py 'data/basic/sim7[7-9]/*/*_sync' 'data/basic/sim80/*/*_sync' [--ckpt-3d stride4]

A slot instance's points are those whose pixel its front-view mask covers, so the mask's cells over
the road around a car bring road points with it. Per set: the share of predicted instance points
that are background in the ground truth, the share of those on the ground plane (the clustering
baseline's RANSAC `ground_mask`, `ClusterConfig.ground_tol` 0.2 m), and point F1@50 (P / R) of the
lidar mode as the evaluator scores its `3d` domain (points in the camera's view, objects under
`--min-points` ignored), as predicted and with the ground points dropped from every instance
(`drop_ground`). A measurement, not a Predictor setting: docs/inference.md ("Ground points in the
LiDAR instances") has the figures and why it is not adopted.
"""
from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from xmod_core.baselines import ClusterConfig, ground_mask  # noqa: E402
from xmod_core.evaluate import _small_ids, sim_point_ids  # noqa: E402
from xmod_core.frontview import project_scan  # noqa: E402
from xmod_core.kitti import KittiRawDrive  # noqa: E402
from xmod_core.metrics import F1Accumulator  # noqa: E402
from xmod_core.predictor import Predictor, PredictorConfig  # noqa: E402


def drop_ground(point_labels: np.ndarray, ground: np.ndarray) -> np.ndarray:
    """(N,) instance ids, (N,) bool ground points -> the ids with the ground points set to 0."""
    if point_labels.shape != ground.shape:
        raise ValueError(f"labels {point_labels.shape} and ground mask {ground.shape} differ in shape")
    return np.where(ground, 0, point_labels)


def measure(drives, ckpt_3d=None, height=96, width=320, min_points=10, device="cpu") -> dict:
    """{'points': n, 'background': share, 'ground_of_background': share, 'as_is' / 'no_ground': F1 result}."""
    acc = {"as_is": F1Accumulator(), "no_ground": F1Accumulator()}
    n = bg = bg_ground = 0
    for dd in drives:
        drive = KittiRawDrive(dd)
        pred = Predictor(PredictorConfig(ckpt_3d=ckpt_3d, mode="lidar", height=height, width=width, device=device),
                         drive.calib)
        for t in range(len(drive)):
            fid, scan = drive.frame_ids[t], drive.scan(t)
            gt = sim_point_ids(drive.drive_dir, fid)
            objs = json.loads((drive.drive_dir / "objects/data" / f"{fid}.json").read_text())["objects"]
            moving = [o["id"] for o in objs if o["moving"]]
            res = pred(points=scan, stamp=float(drive.timestamps[t]))
            view = project_scan(scan, drive.calib).point_pixel >= 0
            ground = ground_mask(scan, ClusterConfig())
            labels = res.point_labels.astype(np.int64)
            obj = (labels > 0) & view
            n, bg, bg_ground = n + obj.sum(), bg + (obj & (gt == 0)).sum(), bg_ground + (obj & (gt == 0) & ground).sum()
            ignore = _small_ids(gt[view], min_points)
            for name, lab in (("as_is", labels), ("no_ground", drop_ground(labels, ground))):
                acc[name].update(gt[view], lab[view], scores=res.scores, ignore_ids=ignore, moving_ids=moving)
    return {"points": int(n), "background": bg / max(n, 1), "ground_of_background": bg_ground / max(bg, 1),
            **{k: a.result() for k, a in acc.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="+", help="simulated drive folders or glob patterns (pooled)")
    ap.add_argument("--ckpt-3d", default=None, help="exported 3D student, or a shipped one by name: stride4, fine (default: the shipped one)")
    ap.add_argument("--min-points", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    drives = sorted({d for g in a.data for d in glob.glob(g)})
    if not drives:
        print(f"error: no drive matches {a.data}", file=sys.stderr)
        return 2
    r = measure(drives, a.ckpt_3d, min_points=a.min_points, device=a.device)
    print(f"{len(drives)} drives, {r['points']} instance points in view: {r['background']:.3f} background, "
          f"{r['ground_of_background']:.3f} of those on the ground")
    for k in ("as_is", "no_ground"):
        f = r[k]
        print(f"{k:10s} point F1@50 {f['f1']:.3f} (P {f['precision']:.3f} / R {f['recall']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
