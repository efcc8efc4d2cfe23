"""Batched motion losses (xmod_core.losses) against the per-frame, per-object loop reference
(bench/reference_losses.py) on the same inputs: values must agree; prints the speed ratio.

    .venv/bin/python bench/bench_losses.py [--frames 16] [--slots 45] [--objects 6] [--device cpu]
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_losses import reference_motion_losses  # noqa: E402

from xmod_core.losses import motion_losses  # noqa: E402


def inputs(frames, slots, objects, h, w, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    masks = torch.softmax(torch.randn(frames, slots, h, w, generator=g) * 3, 1).to(device)
    targets = torch.zeros(frames, h, w, dtype=torch.long)
    for f in range(frames):
        for k in range(1, objects + 1):
            y, x = torch.randint(0, h - 8, (1,), generator=g).item(), torch.randint(0, w - 12, (1,), generator=g).item()
            targets[f, y:y + 8, x:x + 12] = k
    valid = torch.ones(frames, dtype=torch.bool)
    valid[-1] = False
    return masks, targets.to(device), valid.to(device)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=16)      # batch 4 x 4 frames
    ap.add_argument("--slots", type=int, default=45)
    ap.add_argument("--objects", type=int, default=6)
    ap.add_argument("--height", type=int, default=92)      # the paper's 1/4 grid of 368x1248
    ap.add_argument("--width", type=int, default=312)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    masks, targets, valid = inputs(a.frames, a.slots, a.objects, a.height, a.width, a.device)
    fast = motion_losses(masks, targets, valid)
    ref = reference_motion_losses(masks.cpu(), targets.cpu(), valid.cpu())
    for k in ("bce", "fg_nll", "reg", "total"):
        assert abs(float(fast[k]) - ref[k]) < 1e-4 * max(1.0, abs(ref[k])), (k, float(fast[k]), ref[k])

    def timed(fn, n):
        fn()
        if a.device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(n):
            fn()
        if a.device == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t) / n

    t_fast = timed(lambda: motion_losses(masks, targets, valid), 10)
    t_ref = timed(lambda: reference_motion_losses(masks.cpu(), targets.cpu(), valid.cpu()), 1)
    print(f"{a.frames} frames, {a.slots} slots, {a.objects} objects, {a.height}x{a.width} grid, device {a.device}")
    print(f"values agree (|diff| < 1e-4): total {float(fast['total']):.6f} vs reference {ref['total']:.6f}")
    print(f"batched {t_fast * 1e3:.1f} ms, loop reference {t_ref * 1e3:.0f} ms: {t_ref / t_fast:.0f}x faster")


if __name__ == "__main__":
    main()
