"""Late fusion (xmod_core.fusion, one IoU matrix: the one-hot product as a joint histogram) against the double-loop
reference (bench/reference_fusion.py) on identical inputs: 45 slots at 92x312 (the paper's 1/4
grid). The outputs must be identical; prints the speed ratio. Then the agreements beyond the paper
(`separate`, `either`, `foreground`: the 2D student's foreground attention on its own, coarser
grid), their per-instance mean attention checked against a loop over the instances, and their time
side by side with late fusion's.

    .venv/bin/python bench/bench_fusion.py
"""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_fusion import reference_late_fusion  # noqa: E402

from xmod_core.fusion import (either_fusion, foreground_fusion, foreground_means, late_fusion,  # noqa: E402
                              separate_fusion)


def random_instances(rng, K=45, H=92, W=312):
    """Blocky instance maps with K-1 object slots, like argmax slot maps."""
    small = rng.integers(0, K, (H // 4, W // 4))
    small[rng.random(small.shape) < 0.5] = 0
    return np.kron(small, np.ones((4, 4), int))[:H, :W], rng.random(K - 1)


def main():
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(5):
        a, sa = random_instances(rng)
        b = a.copy()
        noise = rng.random(a.shape) < 0.3
        b[noise] = rng.integers(0, 45, noise.sum())
        cases.append((a, sa, b, rng.random(44)))
    for keep in (False, True):
        for a, sa, b, sb in cases:
            f1, s1 = late_fusion(a, sa, b, sb, 0.1, keep)
            f2, s2 = reference_late_fusion(a, sa, b, sb, 0.1, keep)
            assert (f1 == f2).all() and s1.keys() == s2.keys() and all(abs(s1[k] - s2[k]) < 1e-9 for k in s1)
    t = time.perf_counter()
    for a, sa, b, sb in cases:
        late_fusion(a, sa, b, sb)
    fast = (time.perf_counter() - t) / len(cases)
    t = time.perf_counter()
    for a, sa, b, sb in cases:
        reference_late_fusion(a, sa, b, sb)
    ref = (time.perf_counter() - t) / len(cases)
    print("45 slots at 92x312: outputs identical to the double-loop reference (with and without keep_single)")
    print(f"matrix fusion {fast * 1e3:.2f} ms, double loop {ref * 1e3:.0f} ms: {ref / fast:.0f}x faster")
    # the agreements by the 2D student's foreground attention (on a 23x78 grid, resized inside)
    import torch
    fgs = [rng.random((23, 78)) for _ in cases]
    for (a, sa, b, sb), fg in zip(cases, fgs):
        up = torch.nn.functional.interpolate(torch.as_tensor(fg)[None, None].float(), size=b.shape, mode="bilinear",
                                             align_corners=False)[0, 0].numpy()
        want = [up[b == j].mean() if (b == j).any() else 0.0 for j in range(1, 45)]
        assert np.allclose(foreground_means(torch.as_tensor(b), 44, fg)[0].numpy()[1:], want, atol=1e-5)
    runs = {"late fusion (iou)": lambda a, sa, b, sb, fg: late_fusion(a, sa, b, sb, 0.1, False, 0.9, "lidar"),
            "separate": lambda a, sa, b, sb, fg: separate_fusion(a, sa, b, sb, fg, 0.7),
            "either": lambda a, sa, b, sb, fg: either_fusion(a, sa, b, sb, fg, 0.7),
            "foreground": lambda a, sa, b, sb, fg: foreground_fusion(b, sb, fg, 0.7)}
    times = {}
    for name, fn in runs.items():
        t = time.perf_counter()
        for _ in range(3):
            for (a, sa, b, sb), fg in zip(cases, fgs):
                fn(a, sa, b, sb, fg)
        times[name] = (time.perf_counter() - t) / (3 * len(cases))
    base = times["late fusion (iou)"]
    print("per-instance mean attention identical to a loop over the instances; ms per frame (x late fusion): " +
          ", ".join(f"{k} {v * 1e3:.2f} ({v / base:.2f}x)" for k, v in times.items()))


if __name__ == "__main__":
    main()
