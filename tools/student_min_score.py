"""Name the instance threshold chosen on validation for an exported student, in a copy of its file.

The Predictor drops a student's instances whose slot holds less than `min_score` of their pixels'
attention. How sure a slot is depends on how the student was trained (a dice term in the matched
loss, for one, makes slots bolder: docs/training.md "A dice term for small objects"), so a
threshold chosen on the validation drives for one student belongs to that student's file. The
Predictor (`min_score: null`, the node's `min_score: -1`) then uses it; an explicit `min_score`
still applies to both students.

    .venv/bin/python tools/student_min_score.py runs/s17/dice003_s1/snapshots/student_lidar_ema_800.pt \
        xmod_core/assets/student_lidar_grid2.pt --min-score 0.6
        # how the shipped 3D student was made; student_lidar_grid2.pt is student_lidar.pt since 2026-12-03
"""
from __future__ import annotations

import argparse
import sys

from xmod_core.train import stamp_min_score


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="an exported student (student_<modality>.pt)")
    ap.add_argument("dst", help="the stamped copy (a new path: nothing is overwritten)")
    ap.add_argument("--min-score", type=float, required=True, help="the threshold, within [0, 1); negative: name none")
    a = ap.parse_args(argv)
    try:
        out = stamp_min_score(a.src, a.dst, a.min_score if a.min_score >= 0 else None)
    except (OSError, ValueError, RuntimeError) as e:          # RuntimeError: CheckpointError
        ap.error(str(e))
    print(f"written: {out} (min_score {a.min_score if a.min_score >= 0 else 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
