#!/usr/bin/env python3
"""Why does a mode miss the objects it misses? Each simulated object is sorted, per frame, by what
the mode's instances (camera resolution) do with its pixels:

- `found`: an instance overlaps it at IoU >= 0.5 (F1@50's test, without the one-to-one matching);
- `absent`: less than a fifth of its pixels lie in any instance (no slot went there);
- `partial`: a fifth to a half of its pixels lie in instances (fragments, or an edge caught);
- `spilled`: at least half of its pixels lie in instances, and the instance holding most of them
  is mostly this object or the background, so it is too large for the object (IoU < 0.5);
- `merged`: at least half of its pixels lie in instances, and the instance holding most of them is
  mostly another object.

Objects are binned by their visible area in pixels of the 1242x375 camera, whatever size the drive
was rendered at (as `tools/label_recall.py`); objects under `--min-area` are not counted.

    .venv/bin/python tools/miss_causes.py 'data/fullval/sim7[78]/*/*_sync' --mode lidar --every 3
    .venv/bin/python tools/miss_causes.py 'data/basic/sim77/*/*_sync' --mode fused --ckpt-3d runs/NAME/student_lidar.pt
    .venv/bin/python tools/miss_causes.py 'data/fullval/sim7[78]/*/*_sync' --mode fused --objects still   # parked only

`--objects still|moving` counts only the objects the simulator does not mark / marks moving in that frame
(objects/data/FRAME.json, as the evaluator's recall split).
"""
from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from label_recall import BINS, EDGES, FULL_AREA  # noqa: E402  (the same size bins as the training labels' recall)

CAUSES = ("found", "absent", "partial", "spilled", "merged")


def miss_causes(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """gt, pred (H, W) int instance ids (0 = background) -> (object ids (G,), their areas in pixels
    (G,), their causes (G,) as indices into CAUSES). One joint histogram of (object, instance)
    pixel pairs; no loop over objects or pixels."""
    gt, pred = np.asarray(gt, np.int64), np.asarray(pred, np.int64)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth is {gt.shape[1]}x{gt.shape[0]}, the instances {pred.shape[1]}x{pred.shape[0]}")
    gids, gi = np.unique(gt.ravel(), return_inverse=True)
    pids, pi = np.unique(pred.ravel(), return_inverse=True)
    if gids[0] != 0:                                             # keep row 0 = background on both sides
        gids, gi = np.concatenate([[0], gids]), gi + 1
    if pids[0] != 0:
        pids, pi = np.concatenate([[0], pids]), pi + 1
    G, P = len(gids), len(pids)
    inter = np.bincount(gi * P + pi, minlength=G * P).reshape(G, P)      # (G, P) pixel pairs
    ga, pa = inter.sum(1), inter.sum(0)
    obj, inst = inter[1:], inter[1:, 1:]                                 # objects x (all / instances)
    area = ga[1:]
    iou = inst / np.maximum(area[:, None] + pa[None, 1:] - inst, 1)      # (G-1, P-1)
    covered = 1 - obj[:, 0] / np.maximum(area, 1)
    best = iou.max(1) if P > 1 else np.zeros(G - 1)
    holder = inst.argmax(1) + 1 if P > 1 else np.zeros(G - 1, np.int64)  # the instance with most of its pixels
    owner = inter[:, holder].argmax(0)                                   # that instance's largest share: 0 = background
    own = (owner == np.arange(1, G)) | (owner == 0)
    cause = np.select([best >= 0.5, covered < 0.2, covered < 0.5, own], [0, 1, 2, 3], 4)
    return gids[1:], area, cause


def tally(rows: list[tuple[np.ndarray, np.ndarray]], min_area: int = 300) -> np.ndarray:
    """[(areas at 1242x375, causes)] per frame -> (4 size bins, 5 causes) counts."""
    out = np.zeros((len(BINS), len(CAUSES)), np.int64)
    edges = (min_area,) + EDGES[1:]
    for area, cause in rows:
        b = np.digitize(area, edges) - 1
        keep = b >= 0
        np.add.at(out, (b[keep], cause[keep]), 1)
    return out


def table(counts: np.ndarray) -> str:
    lines = ["| object size (px at 1242x375) | objects | " + " | ".join(CAUSES) + " |",
             "| --- | ---: | " + " | ".join("---:" for _ in CAUSES) + " |"]
    for name, row in zip(BINS, counts):
        n = int(row.sum())
        cells = [f"{c / n:.2f}" if n else "n/a" for c in row]
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("drives", nargs="+", help="simulated drive folders or globs")
    ap.add_argument("--mode", choices=("rgb", "lidar", "fused"), default="lidar")
    ap.add_argument("--ckpt-2d", default=None, help="exported 2D student, or a shipped one by name")
    ap.add_argument("--ckpt-3d", default=None, help="exported 3D student, or a shipped one by name")
    ap.add_argument("--every", type=int, default=1, help="score every N-th frame (all frames still run, in order)")
    ap.add_argument("--min-area", type=int, default=300, help="smaller objects (px at 1242x375) are not counted")
    ap.add_argument("--json", type=Path, default=None, help="also write the counts here")
    ap.add_argument("--objects", choices=("all", "still", "moving"), default="all",
                    help="count all objects, or only those still / moving in the frame (the simulator's flag)")
    from xmod_core.evaluate import add_slot_arguments, slot_overrides
    add_slot_arguments(ap)             # the scan's trims and checks (--rescue-iou 0: as before 2026-12-03, latest)
    a = ap.parse_args(argv)
    if a.every < 1:
        ap.error("--every must be at least 1")
    drives = sorted({p for g in a.drives for p in (glob.glob(g) or [g])})
    missing = [d for d in drives if not (Path(d) / "instance_02").is_dir()]
    if missing:
        ap.error(f"{missing[0]}: no instance_02/ (ground truth); miss_causes needs simulated drives")

    from xmod_core.kitti import KittiRawDrive
    from xmod_core.predictor import Predictor, PredictorConfig
    rows = []
    for d in drives:
        drive = KittiRawDrive(d)
        p = Predictor(PredictorConfig(mode=a.mode, ckpt_2d=a.ckpt_2d, ckpt_3d=a.ckpt_3d, **slot_overrides(a)),
                      drive.calib)
        for t in range(len(drive)):                        # every frame: the students keep their state
            res = p(image=drive.image(t) if a.mode != "lidar" else None, points=drive.scan(t),
                    stamp=float(drive.timestamps[t]))
            if t % a.every:
                continue
            fid = drive.frame_ids[t]
            gt = cv2.imread(str(Path(d) / "instance_02" / "data" / f"{fid}.png"), cv2.IMREAD_UNCHANGED)
            if gt is None:
                raise FileNotFoundError(f"{d}/instance_02/data/{fid}.png: no readable ground truth")
            gids, area, cause = miss_causes(gt, res.labels)
            if a.objects != "all":
                objs = json.loads((Path(d) / "objects" / "data" / f"{fid}.json").read_text())["objects"]
                moving = np.isin(gids, [o["id"] for o in objs if o["moving"]])
                keep = moving if a.objects == "moving" else ~moving
                area, cause = area[keep], cause[keep]
            rows.append((area * (FULL_AREA / gt.size), cause))
    counts = tally(rows, a.min_area)
    print(table(counts))
    if a.json:
        a.json.write_text(json.dumps({"bins": BINS, "causes": CAUSES, "counts": counts.tolist(), "frames": len(rows),
                                       "objects": a.objects}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
