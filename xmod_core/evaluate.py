"""Evaluation CLI: `python -m xmod_core.evaluate --data 'DRIVES' --ckpt-2d A --ckpt-3d B --mode all`.

Streams every frame of every drive (with ground truth: the simulator's instance_02/,
velodyne_labels/ and objects/) through the requested modes of the Predictor and two baselines
computed by the same code on the same frames:

1. the motion masks themselves (what the students learn from), and
2. classical LiDAR clustering (ground removal + Euclidean clustering, `baselines`), its clusters
   projected into the image for the 2D metrics.

Prints one table per domain (2D at the paper's resolution, the 1/4 grid of the input; 2D at full
camera resolution; 3D on the LiDAR points in the camera's view) with FG-ARI, all-ARI, F1@50, P, R,
recall on still and on moving objects, frames/s; writes them as JSON and Markdown to --out.
Ground-truth objects under --min-area (share of the image; --min-points in 3D) are ignored.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .baselines import ClusterConfig, clusters_to_image, euclidean_clusters
from .data import MOTION_DIR, find_drives, unknown_frames
from .frontview import grid_labels_to_points, project_scan
from .kitti import KittiRawDrive
from .metrics import F1Accumulator, all_ari, fg_ari
from .predictor import DEFAULT_2D, DEFAULT_3D, MODES, Predictor, PredictorConfig

DOMAINS = ("2d_grid", "2d_full", "3d")


class _Row:
    def __init__(self):
        self.f1 = {d: F1Accumulator() for d in DOMAINS}
        self.fg = {d: [] for d in DOMAINS}
        self.all = {d: [] for d in DOMAINS}
        self.seconds, self.frames = 0.0, 0

    def add(self, domain, gt, pred, scores, ignore, moving):
        self.f1[domain].update(gt, pred, scores=scores, ignore_ids=ignore, moving_ids=moving)
        clean_gt = np.where(np.isin(gt, ignore), 0, gt)
        for store, fn in ((self.fg, fg_ari), (self.all, all_ari)):
            v = fn(clean_gt, pred)
            if v is not None:
                store[domain].append(v)

    def result(self, domain) -> dict:
        r = self.f1[domain].result()
        mean = lambda xs: float(np.mean(xs)) if xs else None
        return {"fg_ari": mean(self.fg[domain]), "all_ari": mean(self.all[domain]), "f1": r["f1"], "precision": r["precision"],
                "recall": r["recall"], "recall_still": r["recall_still"], "recall_moving": r["recall_moving"],
                "fps": self.frames / self.seconds if self.seconds else None}


def _small_ids(ids: np.ndarray, min_count: int) -> list:
    counts = np.bincount(ids.reshape(-1).astype(np.int64))
    return [int(i) for i in np.flatnonzero((counts > 0) & (counts < min_count)) if i]


def evaluate(drives, modes, ckpt_2d=None, ckpt_3d=None, height=96, width=320, device="auto",
             min_area=0.001, min_points=10, progress=True, predictor_overrides=None, baselines=True,
             names=None) -> dict:
    """Scores of the requested modes (and, with `baselines`, of the motion masks and LiDAR
    clustering) per domain: {domain: {row name: metrics}}. `names` renames the modes' rows."""
    names = {"rgb": "DIOD 2D (rgb)", "lidar": "DIOD-3D (lidar)", "fused": "fused"} | (names or {})
    rows: dict[str, _Row] = {}
    row = lambda name: rows.setdefault(name, _Row())
    grid_hw = (height // 4, width // 4)
    for drive_dir in drives:
        drive = KittiRawDrive(drive_dir)
        if not (drive.drive_dir / "instance_02").is_dir():
            raise FileNotFoundError(f"{drive.drive_dir}: no ground truth (instance_02/); evaluate needs simulated drives")
        calib = drive.calib
        preds = {m: Predictor(PredictorConfig(mode=m, ckpt_2d=ckpt_2d, ckpt_3d=ckpt_3d, device=device, height=height,
                                              width=width, **(predictor_overrides or {})), calib) for m in modes}
        unknown = unknown_frames(drive.drive_dir, MOTION_DIR)
        stamps = drive.timestamps
        it = tqdm(range(len(drive)), desc=drive.drive_dir.name, disable=not progress, unit="frame")
        for t in it:
            fid = drive.frame_ids[t]
            image, scan = drive.image(t), drive.scan(t)
            gt = cv2.imread(str(drive.drive_dir / "instance_02/data" / f"{fid}.png"), cv2.IMREAD_UNCHANGED).astype(np.int64)
            gt_pts = (np.fromfile(drive.drive_dir / "velodyne_labels/data" / f"{fid}.label", np.uint32) >> 16).astype(np.int64)
            objs = json.loads((drive.drive_dir / "objects/data" / f"{fid}.json").read_text())["objects"]
            moving = [o["id"] for o in objs if o["moving"]]
            fv_full = project_scan(scan, calib)
            in_view = fv_full.point_pixel >= 0
            gts = {"2d_full": gt, "2d_grid": cv2.resize(gt.astype(np.uint16), grid_hw[::-1], interpolation=cv2.INTER_NEAREST),
                   "3d": gt_pts[in_view]}
            ignore = {"2d_full": _small_ids(gts["2d_full"], max(4, min_area * gt.size)),
                      "2d_grid": _small_ids(gts["2d_grid"], max(4, min_area * gts["2d_grid"].size)),
                      "3d": _small_ids(gts["3d"], min_points)}

            def score(name, labels_full, point_labels, scores, seconds):
                r = row(name)
                r.seconds, r.frames = r.seconds + seconds, r.frames + 1
                grid = cv2.resize(labels_full.astype(np.uint16), grid_hw[::-1], interpolation=cv2.INTER_NEAREST)
                for dom, pred in (("2d_full", labels_full), ("2d_grid", grid), ("3d", point_labels[in_view])):
                    r.add(dom, gts[dom], pred.astype(np.int64), scores, ignore[dom], moving)

            if baselines:
                # baseline 1: the motion masks
                t0 = time.perf_counter()
                mpath = drive.drive_dir / MOTION_DIR / f"{fid}.png"
                motion = cv2.imread(str(mpath), cv2.IMREAD_UNCHANGED) if mpath.is_file() and fid not in unknown else None
                motion = np.zeros(gt.shape, np.int64) if motion is None else motion.astype(np.int64)
                score("motion masks", motion, grid_labels_to_points(motion, fv_full.point_pixel), None, time.perf_counter() - t0)
                # baseline 2: LiDAR Euclidean clustering
                t0 = time.perf_counter()
                cl = euclidean_clusters(scan, ClusterConfig())
                score("LiDAR clustering", clusters_to_image(scan, cl, calib, *gt.shape), cl, None, time.perf_counter() - t0)
            for m, p in preds.items():
                t0 = time.perf_counter()
                res = p(image=image if m != "lidar" else None, points=scan, stamp=float(stamps[t]))
                score(names[m], res.labels, res.point_labels, res.scores, time.perf_counter() - t0)
    return {dom: {name: r.result(dom) for name, r in rows.items()} for dom in DOMAINS}


def tables(results: dict, title: str = "") -> str:
    cols = [("fg_ari", "FG-ARI"), ("all_ari", "all-ARI"), ("f1", "F1@50"), ("precision", "P"), ("recall", "R"),
            ("recall_still", "R still"), ("recall_moving", "R moving"), ("fps", "frames/s")]
    names = {"2d_grid": "2D, 1/4 grid of the input", "2d_full": "2D, full camera resolution", "3d": "3D, LiDAR points in view"}
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"
    out = [f"# {title}".rstrip()] if title else []
    for dom, rows in results.items():
        out += [f"\n## {names[dom]}\n", "| method | " + " | ".join(c[1] for c in cols) + " |",
                "|---|" + "---:|" * len(cols)]
        out += [f"| {name} | " + " | ".join(fmt(r[k]) for k, _ in cols) + " |" for name, r in rows.items()]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m xmod_core.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, nargs="+", help="drive folders or glob patterns (with ground truth)")
    ap.add_argument("--ckpt-2d", default=DEFAULT_2D)
    ap.add_argument("--ckpt-3d", default=DEFAULT_3D)
    ap.add_argument("--mode", default="all", choices=[*MODES, "all"])
    ap.add_argument("--height", type=int, default=96, help="processing (input) height of the students")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--min-area", type=float, default=0.001, help="ignore ground-truth objects under this share of the image")
    ap.add_argument("--min-points", type=int, default=10, help="ignore ground-truth objects with fewer LiDAR points (3D)")
    ap.add_argument("--fusion-iou", type=float, default=0.1, help="late fusion IoU threshold (paper: 0.1)")
    ap.add_argument("--keep-single", action="store_true", help="fused: also keep confident single-modality objects")
    ap.add_argument("--out", type=Path, default=Path("out/eval"))
    a = ap.parse_args(argv)
    try:
        drives = find_drives(a.data)
        modes = list(MODES) if a.mode == "all" else [a.mode]
        t0 = time.perf_counter()
        res = evaluate(drives, modes, a.ckpt_2d, a.ckpt_3d, a.height, a.width, a.device, a.min_area, a.min_points,
                       predictor_overrides={"fusion_iou": a.fusion_iou, "keep_single": a.keep_single})
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = tables(res, f"Evaluation of {len(drives)} drive(s) ({time.perf_counter() - t0:.0f} s)")
    print(text)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "results.json").write_text(json.dumps(res, indent=1))
    (a.out / "results.md").write_text(text)
    print(f"written: {a.out / 'results.json'}, {a.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
