"""Hybrid instances (`xmod_core.hybrid`): the choice of their settings and their cost.

    # quality: sweep the settings on simulated VALIDATION drives (never on a test seed or real frames)
    .venv/bin/python bench/bench_hybrid.py --part sweep --data 'data/hyb/sim77/*/*_sync' --json out/hybrid_sweep.json
    # cost: the time hybrid instances add per frame on a real KITTI scan (~120k points), side by side
    .venv/bin/python bench/bench_hybrid.py --part speed --scan ../shared/kitti_tracking

`sweep` runs the students once per frame (slots mode, which keeps the students' instance maps and
the pre-hybrid instances), then re-runs only the hybrid step for every setting, and prints the
pooled point F1@50 (3D, points in view, objects of >= 10 points) per mode and setting, with the
LiDAR clustering baseline and the students' own instances as references.
`speed` times, on the same frames in one run, the slots post-processing alone (the points' labels
from the grid) and the hybrid step, and prints the difference: what `instances: hybrid` adds
(with `--movable-weight W` > 0 also the hybrid step that weighs in the movers' shape).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from xmod_core.baselines import EXTENTS, ClusterConfig, euclidean_clusters  # noqa: E402
from xmod_core.data import find_drives  # noqa: E402
from xmod_core.evaluate import sim_point_ids  # noqa: E402
from xmod_core.frontview import grid_labels_to_points, project_scan  # noqa: E402
from xmod_core.hybrid import HybridConfig, hybrid_instances  # noqa: E402
from xmod_core.kitti import KittiRawDrive  # noqa: E402
from xmod_core.metrics import F1Accumulator  # noqa: E402
from xmod_core.movable import MovableModel  # noqa: E402
from xmod_core.predictor import Predictor, PredictorConfig  # noqa: E402

OBJECTNESS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
FINE_GAP = (0.15, 100.0)             # 100 m: never split a cluster
AGREEMENT = ("share", "iou")


def cache_frames(drives, modes, min_points: int, min_score: float, ckpt_2d=None, ckpt_3d=None) -> dict:
    """Per mode, per frame: what the hybrid step needs, and the 3D ground truth (students: the shipped
    ones, or ckpt_2d / ckpt_3d)."""
    out = {m: [] for m in modes}
    for d in drives:
        drive = KittiRawDrive(d)
        preds = {m: Predictor(PredictorConfig(mode=m, min_score=min_score, ckpt_2d=ckpt_2d, ckpt_3d=ckpt_3d), drive.calib) for m in modes}
        stamps = drive.timestamps
        for t in range(len(drive)):
            fid = drive.frame_ids[t]
            image, scan = drive.image(t), drive.scan(t)
            gt = sim_point_ids(drive.drive_dir, fid)
            in_view = project_scan(scan, drive.calib).point_pixel >= 0
            g = gt[in_view]
            cnt = np.bincount(g)
            ignore = np.flatnonzero((cnt > 0) & (cnt < min_points))
            for m, p in preds.items():
                res = p(image=image if m != "lidar" else None, points=scan, stamp=float(stamps[t]))
                pp = project_scan(scan, p.calib_small).point_pixel
                out[m].append(dict(first=t == 0, scan=scan, pp=pp, cover=list(res.students.values()), grid=res.grid, scores=res.scores,
                                   point_labels=res.point_labels, gt=g, ignore=ignore[ignore > 0], in_view=in_view))
    return out


def f1_of(frames, labels_fn) -> dict:
    acc = F1Accumulator()
    for f in frames:
        labels, scores = labels_fn(f)
        acc.update(f["gt"], np.asarray(labels, np.int64)[f["in_view"]], scores, ignore_ids=f["ignore"])
    r = acc.result()
    return {k: round(float(r[k]), 4) for k in ("f1", "precision", "recall")}


def sequential(cfg: HybridConfig, model):
    """The hybrid step over cached frames in drive order, each frame given the previous frame's
    hybrid instances (restarting at each drive), as the Predictor does."""
    prev = [None]

    def run(f):
        if f["first"]:
            prev[0] = None
        grid, labels, scores = hybrid_instances(f["scan"], f["pp"], f["cover"], f["grid"], f["scores"], cfg, movable=model,
                                                previous=prev[0])
        prev[0] = grid
        return labels, scores
    return run


def sweep(a) -> dict:
    drives = find_drives(a.data)
    modes = a.modes
    t0 = time.perf_counter()
    cache = cache_frames(drives, modes, a.min_points, a.min_score, a.ckpt_2d, a.ckpt_3d)
    print(f"{sum(len(v) for v in cache.values())} frame runs cached in {time.perf_counter() - t0:.0f} s", flush=True)
    frames0 = cache[modes[0]]
    base, default = ClusterConfig(), HybridConfig().clusters       # the baseline's clustering, the hybrid step's
    clusterings = {(r, e, v): replace(default, max_range=r, extent=e, split_voxel=v)
                   for r in (a.max_range or [default.max_range]) for e in (a.extent or [default.extent])
                   for v in (a.split_voxel or [default.split_voxel])}
    tag = lambda c: "" if c == default else f" max_range={c.max_range} extent={c.extent} split_voxel={c.split_voxel}"   # noqa: E731
    res = {"clustering": f1_of(frames0, lambda f: (euclidean_clusters(f["scan"], base), None))}
    print(f"LiDAR clustering: {res['clustering']}", flush=True)
    for c in clusterings.values():
        if c != base:                                                                # as the hybrid step clusters
            name = f"clustering max_range={c.max_range} extent={c.extent} split_voxel={c.split_voxel}"
            res[name] = f1_of(frames0, lambda f: (euclidean_clusters(f["scan"], c), None))
            print(f"LiDAR {name}: {res[name]}", flush=True)
    models = {str(m): MovableModel.load(m) for m in (a.movable or [None])} if any(a.movable_weight) else {"": None}
    for m in modes:
        res[f"{m} slots"] = f1_of(cache[m], lambda f: (f["point_labels"], f["scores"]))
        print(f"{m} slots: {res[f'{m} slots']}", flush=True)
        combines = a.combine if m == "fused" else ["mean"]                           # one student: all the same
        for agr, obj, gap, split, comb, mw, mname, clu, hold in itertools.product(
                a.agreement, a.objectness, a.fine_gap, a.split_score, combines, a.movable_weight, models,
                clusterings.values(), a.hold):
            if mw == 0 and mname != next(iter(models)):
                continue                                                              # off: the same for every model
            if hold > obj:
                continue
            cfg = HybridConfig(objectness=obj, fine_gap=gap, agreement=agr, split_score=split, combine=comb, movable=mw,
                               clusters=clu, hold=hold)
            model = models[mname]
            r = f1_of(cache[m], sequential(cfg, model))
            name = f"{m} hybrid agreement={agr} objectness={obj} fine_gap={gap} split_score={split}" + \
                (f" combine={comb}" if comb != "mean" else "") + (f" movable={mw}" + (f" model={mname}" if len(models) > 1 else "") if mw else "") + \
                tag(clu) + (f" hold={hold}" if hold else "")
            res[name] = r
            print(f"{name}: {r}", flush=True)
    return res


def speed(a) -> dict:
    from xmod_core.kitti_gt import find_gt_sources
    src = find_gt_sources([a.scan])[0]
    frames = [src.frame(i) for i in range(min(a.frames, len(src)))]
    pred = Predictor(PredictorConfig(mode="lidar", ckpt_3d=a.ckpt_3d), frames[0].calib)
    runs = []
    for f in frames:
        res = pred(points=f.scan, stamp=f.stamp)
        runs.append((f.scan, project_scan(f.scan, pred.calib_small).point_pixel, list(res.students.values()), res.grid, res.scores))
    cfg = HybridConfig()
    variants = {"axes": replace(cfg, clusters=replace(cfg.clusters, extent="axes")),              # side by side: the
                "split": replace(cfg, clusters=replace(cfg.clusters, split_voxel=0.2))}            # cluster options
    variant_ms = {k: [] for k in variants}
    mw = max(a.movable_weight)                                                    # > 0: also time the movers' shape
    model = MovableModel.load(a.movable[0] if a.movable else None) if mw > 0 else None
    slots_ms, hybrid_ms, movable_ms = [], [], []
    for _ in range(a.repeat):
        for scan, pp, cover, grid, scores in runs:
            t = time.perf_counter()
            grid_labels_to_points(grid, pp)
            slots_ms.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            hybrid_instances(scan, pp, cover, grid, scores, cfg)
            hybrid_ms.append((time.perf_counter() - t) * 1e3)
            for k, v in variants.items():
                t = time.perf_counter()
                hybrid_instances(scan, pp, cover, grid, scores, v)
                variant_ms[k].append((time.perf_counter() - t) * 1e3)
            if model is not None:
                t = time.perf_counter()
                hybrid_instances(scan, pp, cover, grid, scores, HybridConfig(movable=mw), movable=model)
                movable_ms.append((time.perf_counter() - t) * 1e3)
    t = time.perf_counter()
    for scan, *_ in runs:
        euclidean_clusters(scan, ClusterConfig())
    clusters_ms = (time.perf_counter() - t) * 1e3 / len(runs)
    out = {"points": int(np.mean([len(r[0]) for r in runs])), "points_in_view": int(np.mean([(r[1] >= 0).sum() for r in runs])),
           "slots_ms_p50": float(np.median(slots_ms)), "hybrid_ms_p50": float(np.median(hybrid_ms)),
           "hybrid_ms_p90": float(np.percentile(hybrid_ms, 90)), "added_ms_p50": float(np.median(hybrid_ms) - np.median(slots_ms)),
           "whole_scan_clustering_ms": clusters_ms}
    for k, v in variant_ms.items():
        out |= {f"hybrid_{k}_ms_p50": float(np.median(v)), f"default_over_{k}_ms_p50": float(np.median(hybrid_ms) - np.median(v))}
    if movable_ms:
        out |= {"hybrid_movable_ms_p50": float(np.median(movable_ms)),
                "added_movable_ms_p50": float(np.median(movable_ms) - np.median(slots_ms))}
    print(json.dumps(out, indent=1))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("sweep", "speed"), default="speed")
    ap.add_argument("--data", nargs="+", default=["data/hyb/sim77/*/*_sync"], help="simulated validation drives (sweep)")
    ap.add_argument("--modes", nargs="+", default=["lidar", "fused", "rgb"])
    ap.add_argument("--min-points", type=int, default=10)
    ap.add_argument("--ckpt-2d", help="2D student of the sweep (default: the shipped one; the speed part runs the 3D one only)")
    ap.add_argument("--ckpt-3d", help="3D student (default: the shipped one)")
    ap.add_argument("--min-score", type=float, default=0.5, help="the students' min_score (instances under it are dropped)")
    ap.add_argument("--agreement", nargs="+", default=list(AGREEMENT), choices=AGREEMENT)
    ap.add_argument("--objectness", nargs="+", type=float, default=list(OBJECTNESS))
    ap.add_argument("--fine-gap", nargs="+", type=float, default=list(FINE_GAP))
    ap.add_argument("--combine", nargs="+", default=["mean"], choices=("mean", "max", "min"),
                    help="fused: how the two students' agreements combine")
    ap.add_argument("--split-score", nargs="+", type=float, default=[0.5])
    ap.add_argument("--movable-weight", nargs="+", type=float, default=[0.0],
                    help="weights of the movers' shape in the objectness (0: off; xmod_core.movable)")
    ap.add_argument("--movable", type=Path, nargs="+", default=None, help="movable models (default: the shipped one)")
    ap.add_argument("--hold", type=float, nargs="+", default=[0.0],
                    help="hysteresis: how much lower the agreement may be for a cluster on an object of the previous frame")
    ap.add_argument("--max-range", type=float, nargs="+", help="clustering ranges in metres (default: ClusterConfig's)")
    ap.add_argument("--split-voxel", type=float, nargs="+",
                    help="clusters too large for the size filters are clustered again at this distance, m (0: dropped)")
    ap.add_argument("--extent", choices=EXTENTS, nargs="+",
                    help="how a cluster's sides are measured for the size filters (default: the hybrid step's)")
    ap.add_argument("--scan", default=str(Path(__file__).resolve().parents[2] / "shared/kitti_tracking"),
                    help="a KITTI tracking or object folder (speed)")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    res = sweep(a) if a.part == "sweep" else speed(a)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
