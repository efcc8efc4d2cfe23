"""2D boxes of the instances (`xmod_core.image_boxes`, `PredictorConfig.box_source`): every box
source against both ground-truth conventions, on simulated VALIDATION drives (never a test seed or
the real frames), in one pass of the students.

    .venv/bin/python bench/bench_boxes.py --data 'data/sparse/sim7[7-9]/*/*_sync' 'data/sparse/sim80/*/*_sync' \
        --json out/boxes_sparse.json
    # cost per frame on real KITTI scans (~120k points), the ways side by side
    .venv/bin/python bench/bench_boxes.py --part speed --scan ../shared/kitti_tracking

Per frame the students run once per mode (with the box source `mask`), then the boxes of every
source are made from the frame's labels and 3D objects (the ground plane of the scan's points in
view for `3d_ground`) and scored as `python -m xmod_core.evaluate --box-source S --gt-boxes G`
scores them (box F1@50, objects under 0.1 % of the image ignored): each printed figure is the one
that command gives for its setting. The clustering baseline's boxes come from its clusters.
`speed` times, on the same frames of hybrid (lidar) instances in one run: the boxes around the
camera-resolution labels (`metrics.instance_boxes`, the evaluator's way before `box_source`), the
`mask` boxes from the processing grid (the Predictor's), and `3d_ground` (ground plane included).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from xmod_core.baselines import ClusterConfig, clusters_to_image, euclidean_clusters, ground_plane  # noqa: E402
from xmod_core.clusters import cluster_objects  # noqa: E402
from xmod_core.data import find_drives  # noqa: E402
from xmod_core.evaluate import GT_BOXES, NAMES, _Row, _small_ids, gt_object_boxes, method_config  # noqa: E402
from xmod_core.frontview import project_scan  # noqa: E402
from xmod_core.image_boxes import BOX_SOURCES, frame_boxes  # noqa: E402
from xmod_core.kitti import KittiRawDrive  # noqa: E402
from xmod_core.metrics import instance_boxes  # noqa: E402
from xmod_core.predictor import Predictor, PredictorConfig  # noqa: E402


def sweep(drives, modes, min_area: float = 0.001) -> dict:
    """{row: {box source: {gt convention: box metrics}}} over the drives."""
    rows: dict = {}
    for drive_dir in drives:
        drive = KittiRawDrive(drive_dir)
        calib = drive.calib
        preds = {m: Predictor(PredictorConfig(box_source="mask", **method_config(m)), calib) for m in modes}
        for t in range(len(drive)):
            fid = drive.frame_ids[t]
            image, scan = drive.image(t), drive.scan(t)
            gt = cv2.imread(str(drive.drive_dir / "instance_02/data" / f"{fid}.png"), cv2.IMREAD_UNCHANGED).astype(np.int64)
            objs = json.loads((drive.drive_dir / "objects/data" / f"{fid}.json").read_text())["objects"]
            moving = [o["id"] for o in objs if o["moving"]]
            area = np.bincount(gt.reshape(-1))
            visible = np.flatnonzero(area[1:]) + 1
            sizes = {int(i): int(area[i]) for i in visible}
            ignore = _small_ids(gt, max(4, min_area * gt.size))
            gt_boxes = {"masks": instance_boxes(gt), "kitti": gt_object_boxes(objs, visible, calib)}
            plane = ground_plane(scan[project_scan(scan, calib).point_pixel >= 0], ClusterConfig())
            cl = euclidean_clusters(scan, ClusterConfig())
            outs = {"LiDAR clustering": (clusters_to_image(scan, cl, calib, *gt.shape),
                                         cluster_objects(scan, cl, min_points=1, depth_gate=0.0)[0], None)}
            for m, p in preds.items():
                res = p(image=image if p.cfg.mode != "lidar" else None, points=scan, stamp=float(drive.timestamps[t]))
                outs[NAMES[m]] = (res.labels, res.objects, res.scores)
            for name, (labels, objects, scores) in outs.items():
                for src in BOX_SOURCES:
                    pred = frame_boxes(labels, objects, calib, src, plane)
                    for g in GT_BOXES:
                        rows.setdefault(name, {}).setdefault(src, {}).setdefault(g, _Row()).add_boxes(
                            gt_boxes[g], pred, scores, ignore, moving, sizes)
        print(f"{drive_dir}", file=sys.stderr, flush=True)
    return {n: {s: {g: r.result("2d_box") for g, r in gs.items()} for s, gs in ss.items()} for n, ss in rows.items()}


def speed(scan_root: str, frames: int = 30, repeats: int = 3) -> dict:
    """ms per frame (p50, p90) of each way of making the boxes, on the same real scans."""
    from xmod_core.kitti_gt import find_gt_sources
    src = find_gt_sources([scan_root])[0]
    p = Predictor(PredictorConfig(mode="lidar", instances="hybrid", box_source="mask"), src.frame(0).calib)
    ways = {"labels (instance_boxes at camera resolution)": lambda r, scan, view: instance_boxes(r.labels),
            "mask from the grid": lambda r, scan, view: frame_boxes(r.labels, r.objects, p.calib, "mask", grid=r.grid),
            "3d_ground (plane + projection)": lambda r, scan, view: frame_boxes(
                r.labels, r.objects, p.calib, "3d_ground", ground_plane(scan[view], ClusterConfig()), r.grid)}
    times = {k: [] for k in ways}
    for i in range(min(frames, len(src))):
        fr = src.frame(i)
        r = p(points=fr.scan, stamp=fr.stamp)
        view = project_scan(fr.scan, p.calib).point_pixel >= 0
        for _ in range(repeats):
            for k, f in ways.items():
                t0 = time.perf_counter()
                f(r, fr.scan, view)
                times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: (float(np.percentile(v, 50)), float(np.percentile(v, 90))) for k, v in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("sweep", "speed"), default="sweep")
    ap.add_argument("--data", nargs="+", help="sweep: simulated drives (globs)")
    ap.add_argument("--scan", default="../shared/kitti_tracking", help="speed: a real KITTI layout")
    ap.add_argument("--mode", nargs="+", default=["lidar", "fused", "hybrid:lidar", "hybrid:fused"])
    ap.add_argument("--json", type=Path, help="write every figure here")
    a = ap.parse_args(argv)
    if a.part == "speed":
        res = speed(a.scan)
        base = res["labels (instance_boxes at camera resolution)"][0]
        for k, (p50, p90) in res.items():
            print(f"{k:48s} p50 {p50:6.2f} ms  p90 {p90:6.2f} ms  ({base / p50:.1f}x the labels' way)")
        return 0
    if not a.data:
        ap.error("--part sweep needs --data")
    res = sweep(find_drives(a.data), a.mode)
    print("| row | ground truth | " + " | ".join(BOX_SOURCES) + " |\n|---|---|" + "---:|" * len(BOX_SOURCES))
    for name, ss in res.items():
        for g in GT_BOXES:
            print(f"| {name} | {g} | " + " | ".join(f"{ss[s][g]['f1']:.3f}" for s in BOX_SOURCES) + " |")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
