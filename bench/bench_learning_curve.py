"""A training run's learning curve: every student snapshot it exported (`export_every`, in
`RUN/snapshots/student_<modality>[_ema]_<step>.pt`) scored by `bench_burn_in.py`'s rule (all
simulated objects, F1@50 at the students' 96x320, instances scoring >= 0.5, largest fragment) on
one or more sets of drives, the weights and their EMA side by side. Scores are kept in
`--cache` (one JSON per run), so a run that goes on over several sittings only scores its new
snapshots; `--plot` draws F1@50 against the step.

    .venv/bin/python bench/bench_learning_curve.py --run runs/x10/3d_burn_in \
        --data val='data/mine/sim77/*/*_sync' --plot docs/img/learning_curve_3d_burn_in.png
"""
import argparse
import json
import re
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_burn_in import evaluate  # noqa: E402

from xmod_core.data import find_drives  # noqa: E402
from xmod_core.model import load_student  # noqa: E402

SNAPSHOT = re.compile(r"student_(rgb|lidar)(_ema)?_(\d+)\.pt$")
COLOURS = [(200, 90, 30), (40, 40, 220), (30, 160, 30), (160, 40, 160)]   # BGR, one per data set


def snapshots(run: Path) -> list[tuple[int, str, bool, Path]]:
    """(step, modality, is_ema, path) of every snapshot in RUN/snapshots, by step."""
    found = [(int(m[3]), m[1], bool(m[2]), p) for p in (run / "snapshots").glob("student_*.pt")
             if (m := SNAPSHOT.search(p.name))]
    if not found:
        raise FileNotFoundError(f"{run / 'snapshots'}: no student_<modality>[_ema]_<step>.pt (train with export_every > 0)")
    return sorted(found)


def score_all(run: Path, data: dict[str, str], cache: Path) -> dict:
    """{set: {"<step>[ema]": bench_burn_in row}} for every snapshot, the cached ones not re-scored."""
    done = json.loads(cache.read_text()) if cache.is_file() else {}
    for name, pattern in data.items():
        drives, rows = find_drives([pattern]), done.setdefault(name, {})
        for step, modality, ema, path in snapshots(run):
            key = f"{step}{' ema' if ema else ''}"
            if key not in rows:
                res = evaluate(drives, {modality: load_student(path)[0]}, 96, 320, 50)
                rows[key] = res[f"{modality} student"]
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps(done, indent=1))        # after each: an interrupted run keeps its scores
    return done


def plot(done: dict, path: Path, title: str, size=(720, 400)) -> None:
    """F1@50 against the step, one colour per set, solid: the weights, dashed (dots): their EMA."""
    W, H, m = *size, 50
    img = np.full((H, W, 3), 255, np.uint8)
    steps = sorted({int(k.split()[0]) for rows in done.values() for k in rows})
    x0, x1 = min(steps), max(steps)
    f1s = [r["f1"] for rows in done.values() for r in rows.values()]
    y0, y1 = np.floor(min(f1s) * 10) / 10, np.ceil(max(f1s) * 10) / 10
    px = lambda s: int(m + (s - x0) / max(x1 - x0, 1) * (W - 2 * m))
    py = lambda f: int(H - m - (f - y0) / max(y1 - y0, 1e-9) * (H - 2 * m))
    for f in np.arange(y0, y1 + 1e-9, 0.05):
        cv2.line(img, (m, py(f)), (W - m, py(f)), (225, 225, 225), 1)
        cv2.putText(img, f"{f:.2f}", (4, py(f) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (80, 80, 80), 1, cv2.LINE_AA)
    for s in steps:
        cv2.putText(img, str(s), (px(s) - 14, H - m + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (80, 80, 80), 1, cv2.LINE_AA)
    for i, (name, rows) in enumerate(done.items()):
        c = COLOURS[i % len(COLOURS)]
        for ema in (False, True):
            pts = sorted((int(k.split()[0]), r["f1"]) for k, r in rows.items() if k.endswith("ema") == ema)
            pts = np.array([(px(s), py(f)) for s, f in pts], np.int32)
            if ema:
                for p in pts:
                    cv2.circle(img, tuple(int(v) for v in p), 3, c, -1, cv2.LINE_AA)
            else:
                cv2.polylines(img, [pts], False, c, 2, cv2.LINE_AA)
        cv2.putText(img, name, (W - m - 110, m + 16 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, c, 1, cv2.LINE_AA)
    cv2.putText(img, f"{title}: F1@50 by step (line: weights, dots: EMA)", (m, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True, help="a training out_dir with snapshots/")
    ap.add_argument("--data", nargs="+", required=True, metavar="NAME=GLOB", help="drive sets, e.g. val='data/mine/sim77/*/*_sync'")
    ap.add_argument("--cache", type=Path, help="scores kept between calls (default out/learning_curve/<run name>.json)")
    ap.add_argument("--plot", type=Path)
    a = ap.parse_args()
    data = {}
    for item in a.data:
        name, sep, pattern = item.partition("=")
        if not sep or not name or not pattern:
            ap.error(f"--data takes NAME=GLOB, got {item!r}")
        data[name] = pattern
    try:
        done = score_all(a.run, data, a.cache or Path("out/learning_curve") / f"{a.run.name}.json")
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    print(f"{'step':>10s} " + " ".join(f"{n + ': P / R / F1@50 / R still':>34s}" for n in data))
    for key in sorted({k for n in data for k in done[n]}, key=lambda k: (int(k.split()[0]), k)):
        cells = [done[n].get(key) for n in data]
        print(f"{key:>10s} " + " ".join(f"{'':>8s}{r['precision']:.3f} / {r['recall']:.3f} / {r['f1']:.3f} / "
                                        f"{r['recall_still']:.3f}" if r else f"{'-':>34s}" for r in cells))
    if a.plot:
        plot({n: done[n] for n in data}, a.plot, a.run.name)
        print(f"written: {a.plot}")


if __name__ == "__main__":
    main()
