"""The students' late fusion (the paper's `fused` mode, `instances: slots`): its settings chosen on
simulated VALIDATION drives, never on a test seed or on the real frames.

    .venv/bin/python bench/bench_fused_settings.py --data 'data/basic/sim7[7-9]/*/*_sync' 'data/basic/sim80/*/*_sync' \
        --data2 'data/sparse/sim7[7-9]/*/*_sync' 'data/sparse/sim80/*/*_sync' --json out/fused_settings.json

Each setting runs `xmod_core.evaluate` (the shipped students unless --ckpt-2d / --ckpt-3d) over both
validation sets, the object-dense default streets (`--data`) and the object-sparse cluttered ones
(`--data2`, about KITTI's objects per image). The rule: the setting with the best mean, over the
two sets, of the 2D F1@50 at camera resolution (the paper's metric for the fused students). Printed
per setting and set: that F1@50 (P / R), FG-ARI, and the point F1@50 for reference.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from xmod_core.data import find_drives  # noqa: E402
from xmod_core.evaluate import evaluate  # noqa: E402

# (name, overrides of the Predictor's defaults); rows 0-12 measure the paper's late fusion (`iou`, the
# agreement of all of them until 2026-12-03) whatever the default is now; row 7 is the default they were
# chosen against until then
SETTINGS = [
    ("default before 2026-12-01 (fusion IoU 0.1, min_score 0.5, union masks)", {"fusion_agreement": "iou", "fusion_mask": "union"}),
    ("fusion IoU 0.3", {"fusion_agreement": "iou", "fusion_iou": 0.3, "fusion_mask": "union"}),
    ("keep single >= 0.9", {"fusion_agreement": "iou", "keep_single": True, "single_score": 0.9, "fusion_mask": "union"}),
    ("keep single >= 0.8", {"fusion_agreement": "iou", "keep_single": True, "single_score": 0.8, "fusion_mask": "union"}),
    ("fusion IoU 0.3, keep single >= 0.9", {"fusion_agreement": "iou", "fusion_iou": 0.3, "keep_single": True, "single_score": 0.9,
                                            "fusion_mask": "union"}),
    ("min_score 0.25", {"fusion_agreement": "iou", "min_score": 0.25, "fusion_mask": "union"}),
    ("min_score 0.75", {"fusion_agreement": "iou", "min_score": 0.75, "fusion_mask": "union"}),
    ("fusion mask: the 3D partners' only (the default since 2026-12-01)", {"fusion_agreement": "iou", "fusion_mask": "lidar"}),
    ("fusion mask: the 2D mask only", {"fusion_agreement": "iou", "fusion_mask": "rgb"}),
    ("3D masks, keep single >= 0.8", {"fusion_agreement": "iou", "fusion_mask": "lidar", "keep_single": True, "single_score": 0.8}),
    ("3D masks, fusion IoU 0.3", {"fusion_agreement": "iou", "fusion_mask": "lidar", "fusion_iou": 0.3}),
    ("3D masks, min_score 0.4", {"fusion_agreement": "iou", "fusion_mask": "lidar", "min_score": 0.4}),
    ("3D masks, min_score 0.3", {"fusion_agreement": "iou", "fusion_mask": "lidar", "min_score": 0.3}),
    ("foreground agreement 0.5", {"fusion_agreement": "foreground", "fusion_foreground": 0.5}),
    ("foreground agreement 0.6", {"fusion_agreement": "foreground", "fusion_foreground": 0.6}),
    ("foreground agreement 0.7", {"fusion_agreement": "foreground", "fusion_foreground": 0.7}),
    ("foreground agreement 0.8", {"fusion_agreement": "foreground", "fusion_foreground": 0.8}),
    ("either agreement 0.5", {"fusion_agreement": "either", "fusion_foreground": 0.5}),
    ("either agreement 0.6", {"fusion_agreement": "either", "fusion_foreground": 0.6}),
    ("either agreement 0.7", {"fusion_agreement": "either", "fusion_foreground": 0.7}),
    ("either agreement 0.8", {"fusion_agreement": "either", "fusion_foreground": 0.8}),
    ("separate agreement 0.6", {"fusion_agreement": "separate", "fusion_foreground": 0.6}),
    ("separate agreement 0.7", {"fusion_agreement": "separate", "fusion_foreground": 0.7}),
    ("separate agreement 0.8", {"fusion_agreement": "separate", "fusion_foreground": 0.8}),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="object-dense validation drives")
    ap.add_argument("--data2", nargs="+", required=True, help="object-sparse validation drives")
    ap.add_argument("--ckpt-2d")
    ap.add_argument("--ckpt-3d")
    ap.add_argument("--settings", type=int, nargs="+",
                    help=f"indices into the settings to run (default: all {len(SETTINGS)}; 0 is the default setting)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    chosen = [SETTINGS[i] for i in (a.settings if a.settings is not None else range(len(SETTINGS)))]
    sets = {"dense": find_drives(a.data), "sparse": find_drives(a.data2)}
    out = {}
    for name, over in chosen:
        row = {}
        for s, drives in sets.items():
            t0 = time.perf_counter()
            res = evaluate(drives, ["fused"], a.ckpt_2d, a.ckpt_3d, progress=False, predictor_overrides=over,
                           baselines=False, names={"fused": name})
            img, pts = res["2d_full"][name], res["3d"][name]
            row[s] = {"f1": img["f1"], "precision": img["precision"], "recall": img["recall"], "fg_ari": img["fg_ari"],
                      "recall_still": img["recall_still"], "points_f1": pts["f1"], "seconds": time.perf_counter() - t0}
        row["mean_f1"] = (row["dense"]["f1"] + row["sparse"]["f1"]) / 2
        out[name] = row
        print(f"{name}: mean 2D F1@50 {row['mean_f1']:.3f} | " + " | ".join(
            f"{s} {r['f1']:.3f} ({r['precision']:.3f} / {r['recall']:.3f}) FG-ARI {r['fg_ari']:.3f} points {r['points_f1']:.3f}"
            for s, r in ((s, row[s]) for s in sets)), flush=True)
    best = max(out, key=lambda k: out[k]["mean_f1"])
    print(f"best by the rule: {best}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"settings": dict(chosen), "results": out, "best": best}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
