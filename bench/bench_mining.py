"""Mined labels (`xmod_core.mining`) against the simulator's ground truth, and their cost.

    # simulated drives and their motion masks (seed 77: validation, choose settings here only)
    .venv/bin/python -m xmod_core.sim --out data/mine/sim77 --seed 77 --sequences 3 --frames 30 --scale 0.5 --no-preview
    .venv/bin/python -m xmod_core.motion data/mine/sim77/*/*_sync
    # the settings sweep (validation seed only; nothing is written into the drives)
    .venv/bin/python bench/bench_mining.py --data 'data/mine/sim77/*/*_sync' --sweep
    # one setting end to end: mine (writes DRIVE/image_02/mined_masks), then score the written PNGs
    .venv/bin/python bench/bench_mining.py --data 'data/mine/sim300/*/*_sync'

Scores at camera resolution, with the evaluator's rules (`xmod_core.evaluate`, `metrics.F1Accumulator`):
ground-truth objects under --min-area of the image (0.1 %: 116 px at 621x187) count neither way, a
prediction is a true positive when its IoU with an unmatched ground-truth object exceeds 0.5 (greedy
matching in score order). Rows:

- mined labels: precision (share of mined instances that are a true positive) and recall of the
  still objects (the issue's targets: precision >= 0.8, still recall >= 0.5);
- motion masks: their recall of the moving objects (reference);
- motion masks + mined labels (motion wins where both are set): what a loader merging them gives;
- all candidates / still candidates: every LiDAR cluster hull, and those that are no mover (what the
  classifier selects from: the recall ceiling and the precision without the classifier).
Timing: seconds per drive of `mining.mine` (candidates, k-means, writing), as printed.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from xmod_core.data import find_drives, read_motion  # noqa: E402
from xmod_core.metrics import F1Accumulator  # noqa: E402
from xmod_core.mining import (FEATURES, GEOMETRY, MiningConfig, candidate_table, check_drive,  # noqa: E402
                              cluster_runs, drive_candidates, mine, movable_votes)

FEATURE_SETS = {"geometry": GEOMETRY, "no_points": tuple(f for f in GEOMETRY if f != "log_points"),
                "no_eigen": ("length", "width", "top", "bottom", "log_density")}
K_SETS = ((20,), (10, 20, 40), (10, 15, 20, 30, 40))
SWEEP = {"scope": ("dataset", "drive"), "features": tuple(FEATURE_SETS), "k": K_SETS, "runs": (1, 3), "iou": (0.3, 0.5),
         "share": (0.05, 0.1, 0.2), "min_movers": (1, 3), "vote": (0.3, 0.5, 0.7, 1.0)}


def small_ids(ids: np.ndarray, min_count: float) -> list:
    """Ground-truth ids with fewer than min_count pixels (`evaluate._small_ids`, without its torch import)."""
    counts = np.bincount(ids.reshape(-1).astype(np.int64))
    return [int(i) for i in np.flatnonzero((counts > 0) & (counts < min_count)) if i]


def load_truth(drives, min_area: float, motion_dir: str) -> list[list[dict]]:
    """Per drive, per frame: ground-truth instances (H, W), moving and ignored ids, the motion mask."""
    out = []
    for d in drives:
        frames = []
        for fid in d.frame_ids:
            gt = cv2.imread(str(d.drive_dir / "instance_02/data" / f"{fid}.png"), cv2.IMREAD_UNCHANGED)
            objs = json.loads((d.drive_dir / "objects/data" / f"{fid}.json").read_text())["objects"]
            motion = read_motion(d.drive_dir, motion_dir, fid)
            frames.append({"fid": fid, "gt": gt, "moving": [o["id"] for o in objs if o["moving"]],
                           "ignore": small_ids(gt, max(4, min_area * gt.size)),
                           "motion": np.zeros(gt.shape, np.int64) if motion is None else motion})
        out.append(frames)
    return out


def score(truth: list[dict], preds: list[np.ndarray]) -> dict:
    """Pooled F1@50 of one prediction image per frame (scores: instance area)."""
    acc = F1Accumulator()
    for t, p in zip(truth, preds):
        acc.update(t["gt"].astype(np.int64), p.astype(np.int64), ignore_ids=t["ignore"], moving_ids=t["moving"])
    return acc.result()


def merged(motion: np.ndarray, mined: np.ndarray) -> np.ndarray:
    """Motion instances, then the mined ones (ids shifted past them) where no motion is set."""
    m = motion.astype(np.int64)
    return np.where(m > 0, m, np.where(mined > 0, mined.astype(np.int64) + int(m.max(initial=0)), 0))


def hulls(f) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(f.hulls_png, np.uint8), cv2.IMREAD_UNCHANGED)


def row(name: str, r: dict) -> str:
    f = lambda v: "-" if v is None else f"{v:.3f}"
    return f"| {name} | {f(r['precision'])} | {r['tp']} | {r['fp']} | {f(r['recall'])} | {f(r['recall_still'])} | " \
           f"{f(r['recall_moving'])} |"


HEADER = "| labels | precision | TP | FP | recall | R still | R moving |\n|---|---:|---:|---:|---:|---:|---:|"


def frame_truth_iou(f, t: dict) -> dict:
    """IoU (G, n) of the frame's ground-truth objects with each candidate's visible hull, the hulls'
    areas (n,) and the objects' ignored / moving flags (G,): mined labels are these hulls, so any
    subset of candidates is scored from this table (as `F1Accumulator.update` would score it)."""
    gt = t["gt"].astype(np.int64).reshape(-1)
    h = hulls(f).astype(np.int64).reshape(-1)
    n = len(f.desc)
    gids, gi = np.unique(gt, return_inverse=True)
    joint = np.bincount(gi * (n + 1) + h, minlength=len(gids) * (n + 1)).reshape(len(gids), n + 1)
    ga, ha = joint.sum(1), joint.sum(0)
    keep = gids > 0
    inter = joint[keep][:, 1:]
    iou = inter / np.maximum(ga[keep][:, None] + ha[None, 1:] - inter, 1)
    g = gids[keep]
    return {"iou": iou, "area": ha[1:], "ignored": np.isin(g, t["ignore"]), "moving": np.isin(g, t["moving"])}


def run_sweep(drives, truth, base: MiningConfig) -> list[dict]:
    """Every setting of SWEEP on candidates and k-means runs computed once; nothing is written.
    The k-means runs of a (scope, features) pair are shared by the k sets and run counts (each
    setting uses the runs of its k values and seeds < runs)."""
    t0 = time.perf_counter()
    cands = [drive_candidates(d, base) for d in drives]
    tables = [[frame_truth_iou(f, t) for f, t in zip(c, tr)] for c, tr in zip(cands, truth)]
    print(f"candidates and their IoU with the ground truth, {len(drives)} drives: {time.perf_counter() - t0:.1f} s", flush=True)
    all_k = tuple(sorted({k for ks in K_SETS for k in ks}))
    flat_frames = [f for c in cands for f in c]
    flat_tables = [t for tb in tables for t in tb]
    out = []
    for scope, feats in itertools.product(SWEEP["scope"], SWEEP["features"]):
        groups = [list(range(len(drives)))] if scope == "dataset" else [[i] for i in range(len(drives))]
        cfg0 = dataclasses.replace(base, features=FEATURE_SETS[feats], k=all_k, runs=max(SWEEP["runs"]), scope=scope)
        xs = []                                                                   # per group: x, runs
        for g in groups:
            x, _, known = candidate_table([f for i in g for f in cands[i]], cfg0)
            xs.append((g, known, cluster_runs(x, cfg0)))
        for ks, runs, iou, share, mm in itertools.product(SWEEP["k"], SWEEP["runs"], SWEEP["iou"], SWEEP["share"], SWEEP["min_movers"]):
            cfg = dataclasses.replace(cfg0, k=ks, runs=runs, iou=iou, share=share, min_movers=mm)
            votes = []
            for g, known, rr in xs:
                mover = np.concatenate([f.mover(cfg) for i in g for f in cands[i]])
                votes.append(movable_votes([r for r in rr if r[0] in ks and r[1] < runs], mover, known, cfg).vote)
            vote = np.concatenate(votes)                                          # drives in order in both scopes
            for v in SWEEP["vote"]:
                cfg_v = dataclasses.replace(cfg, vote=v)
                acc, off = F1Accumulator(), 0
                for f, tb in zip(flat_frames, flat_tables):
                    n = len(f.desc)
                    vis = tb["area"] > 0
                    idx = np.flatnonzero((vote[off:off + n] >= v - 1e-9) & ~f.mover(cfg_v) & (f.inside <= cfg_v.max_motion_overlap) & vis)
                    off += n
                    acc.count(tb["iou"][:, idx], tb["area"][idx], tb["ignored"], None, tb["moving"])
                r = acc.result()
                setting = {"scope": scope, "features": feats, "k": list(ks), "runs": runs, "iou": iou, "share": share,
                           "min_movers": mm, "vote": v}
                out.append(setting | {"precision": r["precision"], "recall_still": r["recall_still"] or 0.0, "tp": r["tp"], "fp": r["fp"]})
    print(f"{len(out)} settings in {time.perf_counter() - t0:.1f} s")
    fmt = lambda o: " ".join(f"{k}={o[k]}" for k in ("scope", "features", "k", "runs", "iou", "share", "min_movers", "vote")) + \
        f"  P {o['precision']:.3f} ({o['tp']}/{o['tp'] + o['fp']})  R still {o['recall_still']:.3f}"
    for floor in (0.8, 0.85, 0.9):
        ok = sorted((o for o in out if o["precision"] >= floor), key=lambda o: (-o["recall_still"], -o["precision"]))
        print(f"\nhighest still recall at precision >= {floor}:")
        for o in ok[:8]:
            print("  " + fmt(o))
    print("\nUNION's single k-means (k=20, one run, share 0.05, vote 1):")
    for o in out:
        if o["k"] == [20] and o["runs"] == 1 and o["share"] == 0.05 and o["vote"] == 1.0 and o["min_movers"] == 1:
            print("  " + fmt(o))
    return out


def main(argv=None) -> int:
    d = MiningConfig()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="glob patterns of simulated drives with motion masks")
    ap.add_argument("--min-area", type=float, default=0.001, help="ignore ground-truth objects under this share of the image")
    ap.add_argument("--sweep", action="store_true", help="score the SWEEP grid (validation drives only), write nothing")
    ap.add_argument("--iou", type=float, default=d.iou)
    ap.add_argument("--share", type=float, default=d.share)
    ap.add_argument("--min-movers", type=int, default=d.min_movers)
    ap.add_argument("--k", default=",".join(map(str, d.k)), help="comma-separated k values")
    ap.add_argument("--runs", type=int, default=d.runs)
    ap.add_argument("--seed", type=int, default=d.seed, help="k-means seed")
    ap.add_argument("--vote", type=float, default=d.vote)
    ap.add_argument("--scope", choices=("dataset", "drive"), default=d.scope)
    ap.add_argument("--max-motion-overlap", type=float, default=d.max_motion_overlap)
    ap.add_argument("--ground-contact", type=float, default=d.ground_contact)
    ap.add_argument("--features", default=",".join(d.features), help=f"among {','.join(FEATURES)}")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = ap.parse_args(argv)
    cfg = MiningConfig(iou=a.iou, share=a.share, min_movers=a.min_movers, k=tuple(int(v) for v in a.k.split(",")),
                       runs=a.runs, vote=a.vote, seed=a.seed, scope=a.scope,
                       max_motion_overlap=a.max_motion_overlap, ground_contact=a.ground_contact,
                       features=tuple(a.features.split(",")))
    drives = [check_drive(p, cfg) for p in find_drives(a.data)]
    for d_ in drives:
        if not (d_.drive_dir / "instance_02").is_dir():
            raise SystemExit(f"{d_.drive_dir}: no ground truth (instance_02/); the bench needs simulated drives")
    truth = load_truth(drives, a.min_area, cfg.motion_dir)
    if a.sweep:
        res = {"sweep": run_sweep(drives, truth, cfg)}
    else:
        t0 = time.perf_counter()
        stats = mine([d_.drive_dir for d_ in drives], cfg)
        wall = time.perf_counter() - t0
        print(f"mined {len(drives)} drive(s) in {wall:.1f} s (k-means over {a.scope}):")
        for p, s in stats.items():
            print(f"  {p}: {s['frames']} frames, {s['candidates']} candidates, {s['movers']} movers, {s['mined']} mined, "
                  f"{s['seconds']:.2f} s ({1000 * s['seconds'] / max(1, s['frames']):.0f} ms/frame)")
        cands = [drive_candidates(d_, cfg) for d_ in drives]          # reference rows: the candidates themselves
        flat = [t for tr in truth for t in tr]
        mined = [cv2.imread(str(d_.drive_dir / cfg.out_dir / f"{t['fid']}.png"), cv2.IMREAD_UNCHANGED)
                 for d_, tr in zip(drives, truth) for t in tr]
        all_h = [hulls(f) for c in cands for f in c]
        still_h = [np.where(np.isin(h, np.flatnonzero(f.mover(cfg)) + 1), 0, h) for h, f in zip(all_h, (f for c in cands for f in c))]
        rows = {"mined labels": score(flat, mined), "motion masks": score(flat, [t["motion"] for t in flat]),
                "motion masks + mined labels": score(flat, [merged(t["motion"], m) for t, m in zip(flat, mined)]),
                "all candidates (cluster hulls)": score(flat, all_h), "still candidates (no mover)": score(flat, still_h)}
        print(f"\n{len(flat)} frames of {len(drives)} drive(s) ({', '.join(a.data)}), GT objects >= {a.min_area:g} of the image\n")
        print(HEADER)
        for name, r in rows.items():
            print(row(name, r))
        res = {"rows": {k: {kk: vv for kk, vv in v.items() if kk != "recall_by_size"} for k, v in rows.items()},
               "timing": stats, "wall_s": wall}
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res | {"config": dataclasses.asdict(cfg), "data": a.data}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
