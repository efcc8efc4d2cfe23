"""Teacher objects snapped to LiDAR clusters, as training labels (an ablation of issue #14; not part
of the recipe, docs/training.md "Teacher objects snapped to LiDAR clusters").

For each frame of each drive: the hybrid (fused) instances of the shipped students (`PredictorConfig(
instances="hybrid")`: the clusters they agree with, split and merged by their instances, painted
as hulls at camera resolution), united with the miner's instances (`image_02/mined_masks`) that
lie mostly (over half their pixels) where no hybrid instance is. Written like the miner's output
(`image_02/OUT/NNNNNNNNNN.png`, uint16 ids, and `mined.json` with a confidence of 1 per id), so
that `data.mined_dir=image_02/OUT` trains on them.

    .venv/bin/python tools/snap_labels.py snap_masks 'data/az18/train/*/*_sync'
"""
from __future__ import annotations

import argparse
import json

import cv2
import numpy as np

from xmod_core.data import find_drives
from xmod_core.kitti import KittiRawDrive
from xmod_core.predictor import Predictor, PredictorConfig


def snap(hybrid: np.ndarray, mined: np.ndarray) -> np.ndarray:
    """(H, W) hybrid ids (any values, 0 = none) united with the mined ids (H, W) lying mostly where
    no hybrid id is: ids 1..n for the hybrid instances, n+1.. for the mined ones added."""
    _, hyb = np.unique(hybrid, return_inverse=True)
    hyb = hyb.reshape(hybrid.shape) + int(hybrid.min() != 0)                  # 0 stays the background
    n = int(hyb.max())
    mined = np.asarray(mined, np.int64)
    M = int(mined.max(initial=0)) + 1
    total = np.bincount(mined.ravel(), minlength=M)
    free = np.bincount(mined.ravel(), (hyb.ravel() == 0).astype(np.float64), minlength=M)
    add = (total > 0) & (free > 0.5 * total)
    add[0] = False
    lut = np.zeros(M, np.int64)
    lut[add] = n + np.arange(1, add.sum() + 1)
    return np.where((hyb == 0) & add[mined], lut[mined], hyb)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="folder name under each drive's image_02/ (e.g. snap_masks)")
    ap.add_argument("drives", nargs="+", help="drive folders or globs, with image_02/mined_masks")
    a = ap.parse_args(argv)
    for d in find_drives(a.drives):
        drive = KittiRawDrive(d)
        p = Predictor(PredictorConfig(mode="fused", instances="hybrid"), drive.calib)
        out = d / "image_02" / a.out
        out.mkdir(parents=True, exist_ok=True)
        frames, stamps = {}, drive.timestamps
        for t in range(len(drive)):
            fid = drive.frame_ids[t]
            r = p(image=drive.image(t), points=drive.scan(t), stamp=float(stamps[t]))
            mined = cv2.imread(str(d / "image_02/mined_masks" / f"{fid}.png"), cv2.IMREAD_UNCHANGED)
            lab = snap(r.labels, np.zeros(r.labels.shape, np.int64) if mined is None else mined)
            cv2.imwrite(str(out / f"{fid}.png"), lab.astype(np.uint16))
            frames[fid] = {str(i): {"confidence": 1.0} for i in np.unique(lab) if i}
        (out / "mined.json").write_text(json.dumps({"format": "tools/snap_labels.py", "frames": frames}))
        print(f"{d}: {len(drive)} frames -> {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
