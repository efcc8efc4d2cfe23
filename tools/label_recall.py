#!/usr/bin/env python3
"""How much of a simulated drive's objects a set of training labels covers, by object size.

    .venv/bin/python tools/label_recall.py motion_masks 'data/demo/sim/*/*_sync'
    .venv/bin/python tools/label_recall.py mined_masks 'data/fullres/train/*/*_sync' --json out.json
    .venv/bin/python tools/label_recall.py motion_masks 'data/demo/sim/*/*_sync' --mined mined_masks   # as trained on

For each frame that has a label PNG in `DRIVE/image_02/SUBDIR/` (uint16 instance ids, as the motion
masks and the mined labels are written), every simulator object of at least `--min-area` pixels
counts as found when one label instance overlaps it with IoU > 0.5; recall is split into moving
and still objects (the `moving` flag of `objects/data/*.json`) and binned by the object's visible
area **in pixels of the 1242x375 camera**, whatever size the drive was rendered at (`sim --scale`),
so drives rendered at different sizes compare object for object. `correct` counts the label
instances that overlap some object with IoU > 0.5 (of all of them: a precision of the labels
against every object, moving or not). Frames without a label PNG (unknown ego-motion) are skipped.
`--mined SUBDIR` merges the miner's labels into them as the training loader does (`data.merge_mined`:
the motion instances first, mined ones where no motion pixel is set). `kept` counts, per size bin
(at the later frame), the objects labelled in one frame that are labelled again in the next labelled
frame of the drive: how steady a target the students are given.
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
from xmod_core.data import merge_mined, read_mined_confidence  # noqa: E402
from xmod_core.metrics import iou_matrix  # noqa: E402

FULL_AREA = 1242 * 375
EDGES = (300, 1000, 3000, 10000)
BINS = ("300-1k", "1k-3k", "3k-10k", ">=10k")


def label_recall(drives, subdir: str, min_area: int = 300, mined: str | None = None) -> dict:
    """{'moving': {'found': [4], 'total': [4], 'pairs': [4], 'kept': [4]}, 'still': {...},
    'labels': n, 'correct': n, 'frames': n} over the drives' labelled frames; bins by area at
    1242x375 from `min_area` up; `mined`: a folder of mined labels merged in as the loader does."""
    edges = (min_area,) + EDGES[1:]
    out = {k: {n: np.zeros(4, np.int64) for n in ("found", "total", "pairs", "kept")} for k in ("moving", "still")}
    labels = correct = frames = 0
    for d in map(Path, drives):
        if mined and not (d / "image_02" / mined / "mined.json").is_file():
            raise FileNotFoundError(f"{d / 'image_02' / mined}: no mined.json (run python -m xmod_core.mining {d}, "
                                    f"or leave --mined out)")
        conf = read_mined_confidence(d, f"image_02/{mined}") if mined else {}
        before = np.zeros(0, np.int64)                                           # ids labelled in the previous frame
        for f in sorted((d / "image_02" / subdir).glob("*.png")):
            fid = f.stem
            pred = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
            gt = cv2.imread(str(d / "instance_02" / "data" / f"{fid}.png"), cv2.IMREAD_UNCHANGED)
            if pred is None or gt is None:
                raise FileNotFoundError(f"{f}: no readable label PNG or ground truth instance_02/data/{fid}.png")
            if mined:
                m = cv2.imread(str(d / "image_02" / mined / f"{fid}.png"), cv2.IMREAD_UNCHANGED)
                if m is not None and m.shape != pred.shape:
                    raise ValueError(f"{d / 'image_02' / mined / fid}.png is {m.shape[1]}x{m.shape[0]}, "
                                     f"{f} {pred.shape[1]}x{pred.shape[0]}")
                pred = merge_mined(pred.astype(np.int64), m, conf.get(fid, {}), 0.0)
            if pred.shape != gt.shape:
                raise ValueError(f"{f} is {pred.shape[1]}x{pred.shape[0]}, its ground truth {gt.shape[1]}x{gt.shape[0]}")
            objs = json.loads((d / "objects" / "data" / f"{fid}.json").read_text())["objects"]
            moving = np.array(sorted(o["id"] for o in objs if o["moving"]), np.int64)
            gids, pids, iou, area = iou_matrix(gt.astype(np.int64), pred.astype(np.int64))
            area_full = area * (FULL_AREA / gt.size)                             # (G,) at 1242x375
            hit = iou.max(1) > 0.5 if iou.shape[1] else np.zeros(len(gids), bool)
            b = np.digitize(area_full, edges) - 1                                # -1: under min_area
            for key, sel in (("moving", np.isin(gids, moving)), ("still", ~np.isin(gids, moving))):
                keep = sel & (b >= 0)
                out[key]["total"] += np.bincount(b[keep], minlength=4)
                out[key]["found"] += np.bincount(b[keep], hit[keep].astype(np.int64), 4).astype(np.int64)
                again = keep & np.isin(gids, before)                             # labelled in the frame before
                out[key]["pairs"] += np.bincount(b[again], minlength=4)
                out[key]["kept"] += np.bincount(b[again], hit[again].astype(np.int64), 4).astype(np.int64)
            before = gids[hit]
            labels += len(pids)
            correct += int((iou.max(0) > 0.5).sum()) if iou.shape[0] else 0
            frames += 1
    return {**{k: {kk: vv.tolist() for kk, vv in v.items()} for k, v in out.items()},
            "labels": labels, "correct": correct, "frames": frames}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("subdir", help="label folder under image_02/ (motion_masks, mined_masks, ...)")
    ap.add_argument("drives", nargs="+", help="simulated drive folders or globs")
    ap.add_argument("--min-area", type=int, default=300, help="smaller objects (px at 1242x375) are not counted")
    ap.add_argument("--mined", default=None, help="also merge these mined labels (a folder under image_02/) as the "
                                                  "training loader does")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    drives = sorted({p for g in a.drives for p in (glob.glob(g) or [g])})
    missing = [d for d in drives if not (Path(d) / "instance_02").is_dir()]
    if missing:
        ap.error(f"{missing[0]}: no instance_02/ (ground truth); label_recall needs simulated drives")
    try:
        r = label_recall(drives, a.subdir, a.min_area, a.mined)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for key in ("moving", "still"):
        f, t = r[key]["found"], r[key]["total"]
        print(f"{key:7s} " + "  ".join(f"{n}: {x}/{y} = {x / max(y, 1):.2f}" for n, x, y in zip(BINS, f, t)))
    for key in ("moving", "still"):
        f, t = r[key]["kept"], r[key]["pairs"]
        print(f"{key:7s} kept in the next frame " + "  ".join(f"{n}: {x}/{y} = {x / max(y, 1):.2f}"
                                                              for n, x, y in zip(BINS, f, t)))
    print(f"{r['frames']} frames, {r['labels']} label instances, {r['correct']} on an object at IoU > 0.5 "
          f"({r['correct'] / max(r['labels'], 1):.2f})")
    if a.json:
        a.json.write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
