"""What the zoomed tiles add, for a person to look at: one frame of a drive run fused without (top)
and with `zoom_tiles` (bottom), the drive played up to that frame so that the students carry their
state: the instances over the image, the tiles' windows in white, and in the lower panel the
instances' pixels that the frame alone left empty (what the tiles added) outlined in yellow. With
`--finer` the lower panel is the finer configuration: the tiles seen by the shipped fine-mask
students, and the mirrored frame (its additions outlined too). With `--agreements A B` the panels
differ by the late fusion's agreement instead (no tiles; `fusion_agreement` A on top, B below).

    .venv/bin/python tools/zoom_picture.py data/basic/sim77/2030_03_19/2030_03_19_drive_0001_sync --frame 8 \\
        --out docs/img/zoom_tiles.jpg          # --finer --out docs/img/finer.jpg
    .venv/bin/python tools/zoom_picture.py DRIVE --frame F --agreements iou separate --out docs/img/fusion_agreement.jpg
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from xmod_core.fusion import AGREEMENTS  # noqa: E402
from xmod_core.kitti import KittiRawDrive  # noqa: E402
from xmod_core.predictor import FINER, Predictor, PredictorConfig  # noqa: E402
from xmod_ros import render  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("drive", type=Path)
    ap.add_argument("--frame", type=int, default=20)
    ap.add_argument("--tiles", type=int, default=3)
    ap.add_argument("--mode", default="fused", choices=("rgb", "lidar", "fused"))
    ap.add_argument("--finer", action="store_true", help="lower panel: the finer configuration (tiles seen by the "
                    "fine-mask students, and the mirrored frame)")
    ap.add_argument("--agreements", nargs=2, metavar=("A", "B"), choices=("auto", *AGREEMENTS),
                    help="fused: compare two late-fusion agreements (top A, bottom B) instead of tiles")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    drive = KittiRawDrive(a.drive)
    if not 0 <= a.frame < len(drive):
        ap.error(f"--frame {a.frame}: the drive has frames 0..{len(drive) - 1}")
    if a.agreements and (a.mode != "fused" or a.finer):
        ap.error("--agreements compares fused modes without tiles: drop --mode / --finer")
    finer = FINER | {"zoom_tiles": a.tiles} if a.finer else {"zoom_tiles": a.tiles}
    if a.agreements:
        preds = [Predictor(PredictorConfig(mode=a.mode, fusion_agreement=g), drive.calib) for g in a.agreements]
    else:
        preds = [Predictor(PredictorConfig(mode=a.mode), drive.calib),
                 Predictor(PredictorConfig(mode=a.mode, **finer), drive.calib)]
    for t in range(a.frame + 1):
        image, scan, stamp = drive.image(t), drive.scan(t), float(drive.timestamps[t])
        res = [p(image=image, points=scan, stamp=stamp) for p in preds]
    H0, W0 = image.shape[:2]
    panels = []
    for p, r in zip(preds, res):
        img = render.overlay(image, r.labels)
        sy, sx = H0 / p.cfg.height, W0 / p.cfg.width
        for tile in p.tiles:
            cv2.rectangle(img, (round(tile.col * sx), round(tile.row * sy)),
                          (round((tile.col + p.cfg.width // 2) * sx) - 1, round((tile.row + p.cfg.height // 2) * sy) - 1),
                          (255, 255, 255), 1)
        if p is preds[1]:                            # instances on cells the frame alone left empty: the views'
            before = cv2.resize(res[0].grid.astype(np.uint16), (W0, H0), interpolation=cv2.INTER_NEAREST)
            new = (r.labels > 0) & (before == 0)
            n, comp = cv2.connectedComponents(new.astype(np.uint8))
            for k in range(1, n):
                cs, _ = cv2.findContours((comp == k).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                cv2.drawContours(img, cs, -1, (255, 255, 0), 1)
        views = f"{len(p.tiles)} zoomed tiles" + (" (fine-mask students) and the mirrored frame" if a.finer else "")
        title = f"{a.mode}, {views}: {len(r.scores)} objects" if p is preds[1] else \
            f"{a.mode}, frame only: {len(r.scores)} objects"
        if a.agreements:
            title = f"fused, agreement {p.cfg.fusion_agreement}: {len(r.scores)} objects"
        cv2.putText(img, title, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, title, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        panels.append(img)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(a.out), np.concatenate(panels, 0)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    source = f"agreement {a.agreements[1]}" if a.agreements else "tiles and the mirror" if a.finer else "tiles"
    print(f"written: {a.out} ({len(np.unique(res[1].labels[(res[1].labels > 0) & (before == 0)]))} instances gained "
          f"pixels from the {source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
