"""Training throughput (clips/s) and peak memory of the demo and paper configurations, on the
device at hand, for both students. The model step only (synthetic clips with motion masks, so
that data loading does not hide the model's cost); each configuration runs in its own process so
that its peak memory is its own.

    .venv/bin/python bench/bench_train.py [--steps 5] [--device cpu|cuda]

`--part ceiling`: how much faster the same model's step could be on this CPU at all: one thread's
step time against the step's floating-point work (forward and backward, counted by PyTorch) done at
the core's sgemm rate; the convolutions' share of work and time, and their rate.

    .venv/bin/python bench/bench_train.py --part ceiling [--steps 3]

`--part loop`: the whole training loop (`xmod_core.train.train`, data included) on simulated
drives, before and after the throughput changes, side by side in one run: variants alternate
(A B C A B C ...) so that a busy machine slows them alike, and the ratio to "before" is printed.

    .venv/bin/python bench/bench_train.py --part loop --data 'data/demo/sim/*/*_sync' [--steps 15 --rounds 2]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def synthetic_stage(config: str, dev: torch.device, batch: int | None = None, clip_len: int | None = None):
    """The configuration's stage and Adam on `dev`, and a synthetic batch of its size (random
    frames, five box-shaped motion objects per frame)."""
    from xmod_core.config import load_config
    from xmod_core.stages import build_stage
    from xmod_core.train import TrainConfig
    cfg = load_config(TrainConfig, ROOT / config)
    B = batch or cfg.optim.batch_size
    T = clip_len or cfg.data.clip_len
    H, W = cfg.data.height, cfg.data.width
    stage = build_stage(cfg.stage, cfg.model, cfg.loss).to(dev)
    opt = torch.optim.Adam(stage.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    motion = torch.zeros(B, T, H // 4, W // 4, dtype=torch.long)
    for k in range(1, 6):
        y, x = torch.randint(0, H // 4 - 6, (1,), generator=g).item(), torch.randint(0, W // 4 - 10, (1,), generator=g).item()
        motion[:, :, y:y + 6, x:x + 10] = k
    C = 3 if stage.modalities == ("rgb",) else 4
    key = stage.modalities[0]
    batch_ = {key: torch.rand(B, T, C, H, W, generator=g), f"{key}_target": torch.rand(B, T, C, H, W, generator=g),
              "lidar_valid": torch.rand(B, T, H, W, generator=g) > 0.5, "motion": motion,
              "motion_valid": torch.ones(B, T, dtype=torch.bool)}
    return cfg, stage, opt, {k: v.to(dev) for k, v in batch_.items()}


def run_one(config: str, device: str, steps: int, batch: int | None, clip_len: int | None) -> dict:
    dev = torch.device(device)
    cfg, stage, opt, batch_ = synthetic_stage(config, dev, batch, clip_len)
    B, T, H, W = *batch_["motion"].shape[:2], cfg.data.height, cfg.data.width
    use_amp = dev.type == "cuda" and cfg.amp
    times = []
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(steps + 1):
        t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            total, _, _ = stage.loss(batch_, stage.students)
        opt.zero_grad()
        total.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i:                                         # the first step warms up
            times.append(time.perf_counter() - t)
    step_s = sorted(times)[len(times) // 2]
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"config": config, "device": device, "batch": B, "clip_len": T, "size": f"{H}x{W}",
            "s_per_step": step_s, "clips_per_s": B / step_s, "peak_mib": peak,
            "params_m": sum(p.numel() for p in stage.parameters()) / 1e6}


# "before": how the demo configuration ran until now (a DataLoader worker decodes every clip from
# disk, reconstruction at the input resolution, one process with 2 threads; the losses and the
# foreach optimiser of the current code); the others change how it runs (same model, data and
# global batch), then the reconstruction head. (launcher, overrides)
LOOP_VARIANTS = {
    "before (disk, 1 worker, full-res recon)": ("python", ["data.workers=1", "data.preload=false", "model.recon_stride=1"]),
    "frames preloaded, no worker": ("python", ["data.workers=0", "data.preload=true", "model.recon_stride=1"]),
    "2 processes x 1 thread (torchrun, gloo)": ("torchrun", ["data.workers=0", "data.preload=true", "model.recon_stride=1"]),
    "+ reconstruction at 1/2": ("torchrun", ["data.workers=0", "data.preload=true", "model.recon_stride=2"]),
    "+ reconstruction at 1/4": ("torchrun", ["data.workers=0", "data.preload=true", "model.recon_stride=4"]),
}


def loop_one(config: str, data: str, steps: int, launcher: str, overrides: list[str]) -> float:
    """clips/s of the training CLI's loop (its own timing, setup excluded)."""
    import random
    import re
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        args = ["-m", "xmod_core.train", "--config", str(ROOT / config), "--no-progress", *overrides,
                f"data.drives=[{data!r}]", f"optim.steps={steps}", f"out_dir={tmp}/run", "ckpt_every=1000000",
                "image_every=1000000", "device=cpu"]
        env = dict(os.environ)
        if launcher == "torchrun":
            env["OMP_NUM_THREADS"] = "1"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(random.randint(20000, 60000)), *args]
        else:
            cmd = [sys.executable, *args]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
        m = re.search(r"([\d.]+) clips/s", out.stdout)
        if out.returncode or not m:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
        return float(m.group(1))


def loop_part(a) -> None:
    rows = {(c, v): [] for c in a.configs for v in LOOP_VARIANTS}
    for _ in range(a.rounds):
        for c in a.configs:
            for v, (launcher, ov) in LOOP_VARIANTS.items():
                rows[c, v].append(loop_one(c, a.data, a.steps, launcher, ov))
    print(f"whole training loop (python -m xmod_core.train), {a.steps} steps a run, {a.rounds} round(s) "
          f"alternating, median clips/s on {os.cpu_count()} cores")
    print(f"{'config':30s} {'variant':42s} {'clips/s':>8s} {'x before':>9s}")
    for c in a.configs:
        base = None
        for v in LOOP_VARIANTS:
            r = float(np.median(rows[c, v]))
            base = base or r
            print(f"{c:30s} {v:42s} {r:8.2f} {r / base:9.2f}")


def sgemm_gflops() -> float:
    """This core's single-precision matrix-multiply rate (1 thread, best of 512-2048 squares): the
    practical peak a convolution lowered to GEMM can reach."""
    best, threads = 0.0, torch.get_num_threads()
    torch.set_num_threads(1)
    for n in (512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        k = max(1, int(4e9 / (2 * n ** 3)))
        t = time.perf_counter()
        for _ in range(k):
            a @ b
        best = max(best, 2 * n ** 3 * k / (time.perf_counter() - t) / 1e9)
    torch.set_num_threads(threads)
    return best


def ceiling_one(config: str, steps: int) -> dict:
    """One training step of `config` on one CPU thread: its time, its floating-point work (PyTorch's
    FlopCounterMode, forward and backward), the convolutions' share of the time and their rate."""
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode
    torch.set_num_threads(1)
    cfg, stage, opt, b = synthetic_stage(config, torch.device("cpu"))

    def step():
        total, _, _ = stage.loss(b, stage.students)
        opt.zero_grad()
        total.backward()
        opt.step()
    step()
    with FlopCounterMode(display=False) as fc:
        step()
    counts = fc.get_flop_counts()["Global"]
    flops = sum(counts.values())
    conv_flops = sum(v for k, v in counts.items() if "convolution" in str(k))
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    ev = prof.key_averages()
    total_us = sum(e.self_cpu_time_total for e in ev)
    conv_us = sum(e.self_cpu_time_total for e in ev if "conv" in e.key)
    return {"config": config, "s_per_step": float(np.median(times)), "gflop": flops / 1e9,
            "conv_gflop_share": conv_flops / flops, "conv_time_share": conv_us / total_us,
            "conv_gflops_rate": conv_flops / 1e9 / (conv_us / 1e6)}


def ceiling_part(a) -> None:
    """How much faster the same model's training step could be on this CPU at all: its measured
    time against its floating-point work done at the core's matrix-multiply peak."""
    peak = sgemm_gflops()
    print(f"one CPU thread; sgemm peak {peak:.1f} GFLOP/s (best of 512-2048 squares)")
    print(f"{'config':30s} {'s/step':>7s} {'GFLOP':>6s} {'conv work':>9s} {'conv time':>9s} {'conv GFLOP/s':>12s} "
          f"{'s/step at peak':>14s} {'max x':>6s}")
    for c in a.configs:
        out = subprocess.run([sys.executable, __file__, "--ceiling-one", c, str(a.steps)], capture_output=True, text=True,
                             check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        floor = r["gflop"] / peak
        print(f"{c:30s} {r['s_per_step']:7.3f} {r['gflop']:6.1f} {r['conv_gflop_share']:9.1%} {r['conv_time_share']:9.1%} "
              f"{r['conv_gflops_rate']:12.1f} {floor:14.3f} {r['s_per_step'] / floor:6.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--part", choices=("model", "loop", "ceiling"), default="model")
    ap.add_argument("--data", default="data/demo/sim/*/*_sync", help="--part loop: drives with motion masks")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--configs", nargs="+", default=["config/demo/2d_burn_in.yaml", "config/demo/3d_burn_in.yaml"])

    ap.add_argument("--one", nargs=4, metavar=("CONFIG", "STEPS", "BATCH", "CLIP"), help=argparse.SUPPRESS)
    ap.add_argument("--ceiling-one", nargs=2, metavar=("CONFIG", "STEPS"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.ceiling_one:
        print(json.dumps(ceiling_one(a.ceiling_one[0], int(a.ceiling_one[1]))))
        return
    if a.part == "ceiling":
        ceiling_part(a)
        return
    if a.part == "loop":
        loop_part(a)
        return
    if a.one:
        c, s, b, t = a.one
        print(json.dumps(run_one(c, a.device, int(s), int(b) or None, int(t) or None)))
        return
    runs = [("config/demo/2d_burn_in.yaml", a.steps, 0, 0), ("config/demo/3d_burn_in.yaml", a.steps, 0, 0)]
    if a.device == "cuda":
        runs += [("config/paper/2d_burn_in.yaml", a.steps, 0, 0), ("config/paper/3d_burn_in.yaml", a.steps, 0, 0)]
    else:   # the paper configuration on a CPU: one clip of 2 frames is all that is practical
        runs += [("config/paper/2d_burn_in.yaml", 1, 1, 2), ("config/paper/3d_burn_in.yaml", 1, 1, 2)]
    print(f"{'config':32s} {'device':6s} {'batch x T @ size':22s} {'s/step':>8s} {'clips/s':>8s} {'peak MiB':>9s} {'params':>7s}")
    for c, s, b, t in runs:
        out = subprocess.run([sys.executable, __file__, "--device", a.device, "--one", c, str(s), str(b), str(t)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['config']:32s} {r['device']:6s} {str(r['batch']) + ' x ' + str(r['clip_len']) + ' @ ' + r['size']:22s} "
              f"{r['s_per_step']:8.3f} {r['clips_per_s']:8.2f} {r['peak_mib']:9.0f} {r['params_m']:6.2f}M")


if __name__ == "__main__":
    main()
