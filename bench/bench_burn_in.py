"""Burn-in students against the motion masks they learned from, on held-out simulated drives,
scored with the simulator's ground truth of ALL objects (moving and still): precision, recall
and F1 at IoU 0.5 (pooled), FG-ARI, and recall on moving and on still objects.

Evaluation at the students' input resolution (the demo's 96x320 centre crop); ground-truth
objects under --min-area pixels there are ignored (neither a miss nor, when matched, a false
positive); predicted fragments under --min-area are dropped, and so are the students' instances
scoring under --min-score (as the Predictor does). FG-ARI is reported twice: of the instances
scored for F1 (after those drops) and "(all)" of the whole partition before any drop (the students'
slot argmax, as the paper computes it; the motion masks before the size filter). Unknown motion frames count as
empty motion masks (that is what the motion masks give there).

    .venv/bin/python bench/bench_burn_in.py --data 'data/bench/sim/*/*_sync' \
        --ckpt-2d runs/demo/2d_burn_in/student_rgb.pt --ckpt-3d runs/demo/3d_burn_in/student_lidar.pt
"""
import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from xmod_core.data import ClipDataset, DataConfig, find_drives
from xmod_core.instances import FRAGMENTS, slots_to_instances
from xmod_core.metrics import F1Accumulator, fg_ari
from xmod_core.model import load_student


def crop_resize(img: np.ndarray, crop, W: int, H: int) -> np.ndarray:
    x0, y0, cw, ch = (int(v) for v in crop)
    return cv2.resize(img[y0:y0 + ch, x0:x0 + cw], (W, H), interpolation=cv2.INTER_NEAREST)


def fmt(v) -> str:
    return "   n/a" if v is None else f"{v:6.3f}"


def frame_truth(drive: Path, fid: str, crop, W: int, H: int, min_area: int) -> tuple:
    """The simulator's instance ids of one frame at the evaluation crop and size, its moving ids
    and the ids under min_area pixels there (to be ignored)."""
    gt = crop_resize(cv2.imread(str(drive / "instance_02/data" / f"{fid}.png"), cv2.IMREAD_UNCHANGED),
                     crop, W, H).astype(np.int64)
    objs = json.loads((drive / "objects/data" / f"{fid}.json").read_text())["objects"]
    moving = [o["id"] for o in objs if o["moving"]]
    areas = np.bincount(gt.ravel())
    ignore = [int(i) for i in np.flatnonzero((areas > 0) & (areas < min_area)) if i]
    return gt, moving, ignore


def evaluate(drives, students: dict, H: int, W: int, min_area: int, window: int = 3, min_score: float = 0.5,
             fragments: str = "largest") -> dict:
    rows = {"motion masks": (F1Accumulator(), [], [])} | {f"{m} student": (F1Accumulator(), [], []) for m in students}
    for drive in drives:
        n = len(sorted((drive / "image_02" / "data").glob("*.png")))
        ds = ClipDataset(DataConfig(drives=[str(drive)], clip_len=n, height=H, width=W, workers=0), None,
                         modalities=tuple(students) or ("rgb",))
        sample = ds[0]
        preds = {}
        with torch.no_grad():
            for modality, model in students.items():
                x = sample[modality][None]                          # (1, T, C, H, W): the whole drive
                step = window or x.shape[1]                          # state restarted every `window` frames
                masks = torch.cat([model(x[:, i:i + step])["masks"] for i in range(0, x.shape[1], step)], 1)
                ids, conf = slots_to_instances(masks[0], size=(H, W), min_pixels=min_area, min_score=min_score,
                                               fragments=fragments)
                seg, _ = slots_to_instances(masks[0], size=(H, W))      # the whole partition, nothing dropped
                preds[f"{modality} student"] = (ids.numpy(), conf.numpy(), seg.numpy())
        for t, fid in enumerate(ds.drives[0].frame_ids):
            gt, moving, ignore = frame_truth(drive, fid, sample["crop"], W, H, min_area)
            mpath = drive / "image_02/motion_masks" / f"{fid}.png"
            motion = cv2.imread(str(mpath), cv2.IMREAD_UNCHANGED) if mpath.is_file() else None
            motion = np.zeros_like(gt) if motion is None else crop_resize(motion, sample["crop"], W, H).astype(np.int64)
            m_area = np.bincount(motion.ravel())
            motion_all = motion.copy()
            motion[np.isin(motion, np.flatnonzero(m_area < min_area))] = 0
            frame_preds = {"motion masks": (motion, None, motion_all)} | {
                k: (ids[t], conf[t], seg[t]) for k, (ids, conf, seg) in preds.items()}
            gt_kept = np.where(np.isin(gt, ignore), 0, gt)
            for name, (pred, conf, seg) in frame_preds.items():
                acc, aris, aris_seg = rows[name]
                scores = None if conf is None else {k + 1: float(c) for k, c in enumerate(conf)}
                acc.update(gt, pred, scores=scores, ignore_ids=ignore, moving_ids=moving)
                for out, p in ((aris, pred), (aris_seg, seg)):
                    a = fg_ari(gt_kept, p)
                    if a is not None:
                        out.append(a)
    mean = lambda v: float(np.mean(v)) if v else None
    return {name: acc.result() | {"fg_ari": mean(aris), "fg_ari_all": mean(aris_seg), "frames_ari": len(aris)}
            for name, (acc, aris, aris_seg) in rows.items()}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, nargs="+",
                    help="globs (or folders) of held-out drive folders with motion masks, scored pooled")
    ap.add_argument("--ckpt-2d")
    ap.add_argument("--ckpt-3d")
    ap.add_argument("--height", type=int, default=96)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--min-area", type=int, default=50, help="pixels at the evaluation resolution")
    ap.add_argument("--window", type=int, default=3,
                    help="frames the students carry their state before it restarts, as the Predictor's "
                         "state_horizon (0: the whole drive)")
    ap.add_argument("--min-score", type=float, default=0.5,
                    help="students' instances scoring less are dropped, as the Predictor's min_score (0.5, chosen on "
                         "the held-out seed-300 drives of bench_xmod_table, not on these)")
    ap.add_argument("--fragments", choices=FRAGMENTS, default="largest",
                    help="as the Predictor's fragments: largest (its default) keeps each slot's largest connected "
                         "component, keep every pixel the slot wins (the setting of the figures before 2026-11-30)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    if a.window < 0:
        ap.error(f"--window must be >= 0, got {a.window}")
    students = {}
    for modality, path in (("rgb", a.ckpt_2d), ("lidar", a.ckpt_3d)):
        if path:
            students[modality] = load_student(path)[0]
    drives = find_drives(a.data)
    res = evaluate(drives, students, a.height, a.width, a.min_area, a.window, a.min_score, a.fragments)
    print(f"{len(drives)} drives, evaluation at {a.height}x{a.width}, ground-truth objects >= {a.min_area} px, "
          f"state restarted every {a.window or 'drive'} frames, students' instances scoring >= {a.min_score}, "
          f"fragments: {a.fragments}")
    print(f"{'method':16s} {'P':>6s} {'R':>6s} {'F1@50':>6s} {'FG-ARI':>7s} {'(all)':>6s} {'R still':>8s} {'R moving':>9s}")
    for name, r in res.items():
        print(f"{name:16s} {fmt(r['precision'])} {fmt(r['recall'])} {fmt(r['f1'])} {fmt(r['fg_ari']):>7s} {fmt(r['fg_ari_all'])} "
              f"{fmt(r['recall_still']):>8s} {fmt(r['recall_moving']):>9s}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
