"""Quality of a teacher's pseudo-labels against the simulator's ground truth of all objects, for a
sweep of the distillation settings: what a teacher-student stage would train its student on.

For each held-out drive, a teacher (any exported student) runs on the clean input in windows of
--window frames, as in a teacher-student stage; its slot masks go through `merge_targets` with the
drive's motion masks, once per --min-confidence value. Rows: the motion masks alone (as the stage
keeps them), the teacher's objects alone (`pseudo_labels`) and the merged targets the student
learns from; columns: objects per frame, precision, recall (all, still) at IoU 0.5, scored on the
1/4 grid upsampled to the input resolution, ground-truth objects under --min-area ignored.
Choose distillation settings with it on validation drives, never on the real benchmarks.

    .venv/bin/python bench/bench_pseudo_labels.py --data 'data/mine/sim77/*/*_sync' \
        --teacher runs/demo/pipeline/3d_burn_in/student_lidar_ema.pt --min-confidence 0.9 0.95 0.98
"""
import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_burn_in import fmt, frame_truth  # noqa: E402

from xmod_core.data import ClipDataset, DataConfig, find_drives  # noqa: E402
from xmod_core.distill import DistillConfig, merge_targets  # noqa: E402
from xmod_core.geometry import LidarView  # noqa: E402
from xmod_core.metrics import F1Accumulator  # noqa: E402
from xmod_core.model import load_student  # noqa: E402
from xmod_core.stages import TEACHER_INPUT  # noqa: E402


def upsample(ids: torch.Tensor, H: int, W: int) -> np.ndarray:
    """(T, h, w) ids -> (T, H, W) nearest."""
    return F.interpolate(ids[:, None].float(), size=(H, W), mode="nearest")[:, 0].long().numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="glob of simulated drive folders with motion masks")
    ap.add_argument("--teacher", required=True, help="exported student (.pt) acting as the teacher")
    ap.add_argument("--min-confidence", type=float, nargs="+", default=[0.9])
    ap.add_argument("--min-size", type=int, default=8, help="distill.min_size (cells of the 1/4 grid)")
    ap.add_argument("--motion-min-confidence", type=float, default=0.5)
    ap.add_argument("--height", type=int, default=96)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--window", type=int, default=3)
    ap.add_argument("--min-area", type=int, default=50, help="ground-truth pixels at the input resolution")
    ap.add_argument("--geometry-gate", action="store_true",
                    help="also rows with distill.geometry_gate on (teacher objects judged on the LiDAR front view)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    torch.manual_seed(0)                                   # the gate's RANSAC draws: the same figures every run
    model, meta = load_student(a.teacher)
    modality = meta["modality"]
    H, W = a.height, a.width
    base = DistillConfig(min_size=a.min_size, motion_min_confidence=a.motion_min_confidence)
    rows = {"motion masks": F1Accumulator()}
    settings = [(c, g) for c in a.min_confidence for g in ((False, True) if a.geometry_gate else (False,))]
    tag = lambda c, g: f">{c:g}" + (" gated" if g else "")
    for c, g in settings:
        rows[f"teacher {tag(c, g)}"] = F1Accumulator()
        rows[f"targets {tag(c, g)}"] = F1Accumulator()
    counts = {k: [] for k in rows}
    drives = find_drives([a.data])
    for drive in drives:
        n = len(sorted((drive / "image_02" / "data").glob("*.png")))
        ds = ClipDataset(DataConfig(drives=[str(drive)], clip_len=n, height=H, width=W, workers=0), None,
                         modalities=tuple({modality, "lidar"} if a.geometry_gate else {modality}))
        s = ds[0]
        x = s[TEACHER_INPUT[modality]][None]
        with torch.no_grad():
            masks = torch.cat([model(x[:, i:i + a.window])["masks"] for i in range(0, n, a.window)], 1)  # (1, T, K, h, w)
        motion, valid = s["motion"][None], s["motion_valid"][None]
        mot = torch.where(valid.view(1, -1, 1, 1), motion, 0)
        preds = {"motion masks": upsample(mot[0], H, W)}
        lidar = LidarView.of(s["lidar_target"], s["lidar_valid"], base.gate) if a.geometry_gate else None
        for c, g in settings:
            dc = replace(base, min_confidence=c, geometry_gate=g)
            empty = torch.zeros_like(motion)                                  # the teacher's objects alone
            preds[f"teacher {tag(c, g)}"] = upsample(merge_targets(empty, valid, masks, dc, lidar)[0][0], H, W)
            preds[f"targets {tag(c, g)}"] = upsample(merge_targets(motion, valid, masks, dc, lidar)[0][0], H, W)
        for t, fid in enumerate(ds.drives[0].frame_ids):
            gt, moving, ignore = frame_truth(drive, fid, s["crop"], W, H, a.min_area)
            for name, p in preds.items():
                rows[name].update(gt, p[t], ignore_ids=ignore, moving_ids=moving)
                counts[name].append(len(np.unique(p[t])) - (p[t] == 0).any())
    print(f"teacher {a.teacher} ({modality}), {len(drives)} drives, min_size {a.min_size}, window {a.window}")
    print(f"{'labels':22s} {'obj/frame':>9s} {'P':>6s} {'R':>6s} {'F1@50':>6s} {'R still':>8s}")
    res = {}
    for name, acc in rows.items():
        r = acc.result() | {"objects_per_frame": float(np.mean(counts[name]))}
        res[name] = r
        print(f"{name:22s} {r['objects_per_frame']:9.2f} {fmt(r['precision'])} {fmt(r['recall'])} {fmt(r['f1'])} "
              f"{fmt(r['recall_still']):>8s}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
