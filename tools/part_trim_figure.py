"""Figure of docs/inference.md "The scan trims each instance to its main 3D part": a frame's lidar /
fused instances without the trim, with the main part, and with the road rule too, one above the
other (the same frame; the students' state carried over the frames before it).

    .venv/bin/python tools/part_trim_figure.py --drive 'data/hyb/sim300/*/*_0000_sync' --frame 12 \\
        --mode fused --out docs/img/part_trim.jpg
"""
from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from xmod_core.kitti import KittiRawDrive  # noqa: E402
from xmod_core.predictor import Predictor, PredictorConfig  # noqa: E402
from xmod_ros.render import overlay  # noqa: E402

SETTINGS = (("no trim", {"part_voxel_m": 0.0}), ("main 3D part", {"part_road": False}), ("main 3D part + road (default)", {}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drive", required=True, help="a drive folder (a glob: its first match)")
    ap.add_argument("--frame", type=int, default=10)
    ap.add_argument("--mode", choices=("lidar", "fused"), default="fused")
    ap.add_argument("--width", type=int, default=900, help="width of each panel in the figure")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    found = sorted(glob.glob(a.drive))
    if not found:
        ap.error(f"--drive {a.drive}: no such folder")
    d = KittiRawDrive(found[0])
    if not 0 <= a.frame < len(d):
        ap.error(f"--frame {a.frame}: the drive has {len(d)} frames")
    panels = []
    for name, over in SETTINGS:
        p = Predictor(PredictorConfig(mode=a.mode, **over), d.calib)
        for t in range(a.frame + 1):
            r = p(image=d.image(t), points=d.scan(t), stamp=float(d.timestamps[t]))
        img = overlay(d.image(a.frame), r.labels)
        h = round(img.shape[0] * a.width / img.shape[1])
        img = cv2.resize(img, (a.width, h), interpolation=cv2.INTER_AREA)
        cv2.putText(img, f"{a.mode}: {name}", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
        panels.append(img)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(a.out), cv2.cvtColor(np.concatenate(panels, 0), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    print(f"written: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
