"""Is a candidate's drop on the real labelled frames a loss or one object's noise?

Compares two real-frame results of `python -m xmod_core.evaluate --data ../shared/kitti_tracking
../shared/kitti_object --out DIR` (DIR/results.json; the runs must hold `per_frame` counts, written
since 2026-12-02) row by row: pooled F1@50 of the baseline and of the candidate, their difference,
and a paired bootstrap over frames (the same frames drawn for both, F1 pooled over each draw) giving
the difference's 90 % interval and the share of draws where the candidate is below the baseline.

    .venv/bin/python tools/real_veto.py out/real_shipped/results.json out/real_candidate/results.json
    .venv/bin/python tools/real_veto.py base_s0.json cand_s0.json --baseline-seeds base_s1.json --candidate-seeds cand_s1.json

With other training seeds of either recipe, the sides are compared by their runs' mean F1 and each
bootstrap draw resamples the runs of each side as well as the frames, so the interval holds the
spread between training seeds, which a bootstrap over frames alone does not see (two seeds of one
recipe draw a `loss` verdict against each other on the object frames: docs/evaluation.md).

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
    """base (Sb, F, 3), cand (Sc, F, 3): per-frame [tp, fp, fn] of each side's runs (training seeds;
    (F, 3) for one run) on the same F frames -> (draws,) mean F1 of the candidate's runs minus the
    baseline's. Each draw resamples the frames (the same for every run) and, on each side, the runs,
    with replacement: with one run a side it is the paired bootstrap over frames, with several the
    spread between training seeds widens the interval too."""
    base, cand = (x[None] if x.ndim == 2 else x for x in (np.asarray(base), np.asarray(cand)))
    if base.ndim != 3 or cand.ndim != 3 or base.shape[1:] != cand.shape[1:] or base.shape[2] != 3:
        raise ValueError(f"per-frame counts must be (runs, F, 3) arrays of the same frames, got {base.shape} and {cand.shape}")
    rng = np.random.default_rng(seed)
    F = base.shape[1]
    frames = rng.integers(0, F, (draws, F))                                               # (D, F)
    mult = np.zeros((draws, F), np.int64)                                                 # (D, F) times each frame is drawn
    np.add.at(mult, (np.arange(draws)[:, None], frames), 1)

    def side(counts):                                                                     # (S, F, 3) -> (D,)
        sums = np.einsum("df,sfk->dsk", mult, counts)                                     # (D, S, 3)
        runs = rng.integers(0, len(counts), (draws, len(counts)))                         # (D, S) runs drawn
        return pooled_f1(np.take_along_axis(sums, runs[..., None], axis=1)).mean(1)

    return side(cand) - side(base)


def _counts(results: list[dict], src: str, dom: str, name: str) -> np.ndarray | None:
    """(S, F, 3) per-frame counts of one row in every run, None where a run lacks the row or its counts."""
    rows = [r.get(src, {}).get(dom, {}).get(name) for r in results]
    if any(r is None or "per_frame" not in r for r in rows):
        return None
    runs = [np.asarray(r["per_frame"], np.int64).reshape(-1, 3) for r in rows]
    if len({len(x) for x in runs}) > 1:
        raise ValueError(f"{src} {dom} {name!r}: {' / '.join(str(len(x)) for x in runs)} frames in the runs of one side; "
                         "not the same frames")
    return np.stack(runs)


def compare(base, cand, drop: float = 0.02, draws: int = 5000, seed: int = 0) -> list[dict]:
    """Rows present in both sides (source, domain, row name) with per-frame counts. `base` and `cand`
    are one evaluate results dict each, or a list of them: the runs of one recipe with different
    training seeds, compared by their mean F1."""
    base, cand = ([r.get("real", r) for r in (x if isinstance(x, list) else [x])] for x in (base, cand))  # {simulated, real}
    out = []
    for src, doms in base[0].items():
        for dom, rows in doms.items():
            for name in rows:
                fb, fc = _counts(base, src, dom, name), _counts(cand, src, dom, name)
                if fb is None or fc is None:
                    continue
                if fb.shape[1] != fc.shape[1]:
                    raise ValueError(f"{src} {dom} {name!r}: {fb.shape[1]} frames against {fc.shape[1]}; not the same frames")
                b, c = float(pooled_f1(fb.sum(1)).mean()), float(pooled_f1(fc.sum(1)).mean())
                boot = paired_bootstrap(fb, fc, draws, seed)
                lo, hi = np.quantile(boot, [0.05, 0.95])
                d = c - b
                verdict = ("loss" if hi < 0 else "noise?") if d < -drop else ("gain" if lo > 0 else "loss-free")
                out.append({"source": src, "domain": dom, "row": name, "frames": fb.shape[1], "runs": [len(fb), len(fc)],
                            "base": b, "candidate": c, "diff": d, "lo90": float(lo), "hi90": float(hi),
                            "p_below": float(np.mean(boot < 0)), "verdict": verdict})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="tools/real_veto.py", description=__doc__.split("\n\n")[0])
    p.add_argument("baseline", type=Path, help="results.json of the baseline's real-frame evaluation")
    p.add_argument("candidate", type=Path, help="results.json of the candidate's, on the same frames")
    p.add_argument("--baseline-seeds", type=Path, nargs="+", default=[], metavar="JSON",
                   help="more runs of the baseline's recipe (other training seeds): compared by the mean F1")
    p.add_argument("--candidate-seeds", type=Path, nargs="+", default=[], metavar="JSON",
                   help="more runs of the candidate's recipe (other training seeds)")
    p.add_argument("--drop", type=float, default=0.02, help="F1 drop that asks for a verdict (default 0.02)")
    p.add_argument("--draws", type=int, default=5000, help="bootstrap draws (default 5000)")
    p.add_argument("--json", type=Path, help="also write the rows here")
    a = p.parse_args(argv)
    try:
        load = lambda files: [json.loads(f.read_text()) for f in files]                  # noqa: E731
        rows = compare(load([a.baseline, *a.baseline_seeds]), load([a.candidate, *a.candidate_seeds]),
                       drop=a.drop, draws=a.draws)
    except (OSError, ValueError) as e:
        print(f"real_veto: {e}", file=sys.stderr)
        return 2
    if not rows:
        print("real_veto: no row holds per-frame counts in both files (evaluate them again with this version)", file=sys.stderr)
        return 2
    runs = rows[0]["runs"]
    if runs != [1, 1]:
        print(f"mean F1 of {runs[0]} baseline and {runs[1]} candidate runs; the bootstrap draws runs as well as frames")
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
