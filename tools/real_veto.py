"""Is a candidate's drop on the real labelled frames a loss or one object's noise?

Compares two real-frame results of `python -m xmod_core.evaluate --data ../shared/kitti_tracking
../shared/kitti_object --out DIR` (DIR/results.json; the runs must hold `per_frame` counts, written
since 2026-12-02) row by row: pooled F1@50 of the baseline and of the candidate, their difference,
and a paired bootstrap over frames (the same frames drawn for both, F1 pooled over each draw) giving
the difference's 90 % interval and the share of draws where the candidate is below the baseline.

    .venv/bin/python tools/real_veto.py out/real_shipped/results.json out/real_candidate/results.json

A verdict per row: `loss` when the difference is below -DROP and the interval lies below 0,
`noise?` when it is below -DROP but the interval reaches 0 (the 12 object frames hold 46 objects:
one object is 0.02-0.03 of F1), `gain` / `loss-free` otherwise. It reports; which drop vetoes a
candidate is the choice rule's, written before the candidate's run.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def pooled_f1(counts: np.ndarray) -> np.ndarray:
    """(..., 3) summed [tp, fp, fn] -> (...) F1 (0 where nothing was predicted or labelled)."""
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    return np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)


def paired_bootstrap(base: np.ndarray, cand: np.ndarray, draws: int = 5000, seed: int = 0) -> np.ndarray:
    """base, cand: (F, 3) per-frame [tp, fp, fn] of the same frames -> (draws,) F1(cand) - F1(base),
    each draw over the same resampled frames for both."""
    if base.shape != cand.shape or base.ndim != 2 or base.shape[1] != 3:
        raise ValueError(f"per-frame counts must be two (F, 3) arrays of the same frames, got {base.shape} and {cand.shape}")
    idx = np.random.default_rng(seed).integers(0, len(base), (draws, len(base)))           # (D, F)
    return pooled_f1(cand[idx].sum(1)) - pooled_f1(base[idx].sum(1))


def compare(base: dict, cand: dict, drop: float = 0.02, draws: int = 5000, seed: int = 0) -> list[dict]:
    """Rows present in both results (source, domain, row name) with per-frame counts."""
    base, cand = base.get("real", base), cand.get("real", cand)          # evaluate's file: {simulated, real}
    out = []
    for src, doms in base.items():
        for dom, rows in doms.items():
            for name, b in rows.items():
                c = cand.get(src, {}).get(dom, {}).get(name)
                if c is None or "per_frame" not in b or "per_frame" not in c:
                    continue
                fb, fc = np.asarray(b["per_frame"], np.int64).reshape(-1, 3), np.asarray(c["per_frame"], np.int64).reshape(-1, 3)
                if len(fb) != len(fc):
                    raise ValueError(f"{src} {dom} {name!r}: {len(fb)} frames against {len(fc)}; not the same frames")
                d = float(pooled_f1(fc.sum(0)) - pooled_f1(fb.sum(0)))
                boot = paired_bootstrap(fb, fc, draws, seed)
                lo, hi = np.quantile(boot, [0.05, 0.95])
                verdict = ("loss" if hi < 0 else "noise?") if d < -drop else ("gain" if lo > 0 else "loss-free")
                out.append({"source": src, "domain": dom, "row": name, "frames": len(fb), "base": float(pooled_f1(fb.sum(0))),
                            "candidate": float(pooled_f1(fc.sum(0))), "diff": d, "lo90": float(lo), "hi90": float(hi),
                            "p_below": float(np.mean(boot < 0)), "verdict": verdict})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="tools/real_veto.py", description=__doc__.split("\n\n")[0])
    p.add_argument("baseline", type=Path, help="results.json of the baseline's real-frame evaluation")
    p.add_argument("candidate", type=Path, help="results.json of the candidate's, on the same frames")
    p.add_argument("--drop", type=float, default=0.02, help="F1 drop that asks for a verdict (default 0.02)")
    p.add_argument("--draws", type=int, default=5000, help="bootstrap draws (default 5000)")
    p.add_argument("--json", type=Path, help="also write the rows here")
    a = p.parse_args(argv)
    try:
        res = [json.loads(f.read_text()) for f in (a.baseline, a.candidate)]
        rows = compare(*res, drop=a.drop, draws=a.draws)
    except (OSError, ValueError) as e:
        print(f"real_veto: {e}", file=sys.stderr)
        return 2
    if not rows:
        print("real_veto: no row holds per-frame counts in both files (evaluate them again with this version)", file=sys.stderr)
        return 2
    print("| source | domain | row | frames | baseline | candidate | diff | 90 % interval | P(below) | verdict |")
    print("|---|---|---|---:|---:|---:|---:|---|---:|---|")
    for r in rows:
        print(f"| {r['source']} | {r['domain']} | {r['row']} | {r['frames']} | {r['base']:.3f} | {r['candidate']:.3f} | "
              f"{r['diff']:+.3f} | [{r['lo90']:+.3f}, {r['hi90']:+.3f}] | {r['p_below']:.2f} | {r['verdict']} |")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
