"""Training throughput (clips/s) and peak memory of the demo and paper configurations, on the
device at hand, for both students. The model step only (synthetic clips with motion masks, so
that data loading does not hide the model's cost); each configuration runs in its own process so
that its peak memory is its own.

    .venv/bin/python bench/bench_train.py [--steps 5] [--device cpu|cuda]
"""
import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def run_one(config: str, device: str, steps: int, batch: int | None, clip_len: int | None) -> dict:
    from xmod_core.config import load_config
    from xmod_core.stages import build_stage
    from xmod_core.train import TrainConfig
    cfg = load_config(TrainConfig, ROOT / config)
    B = batch or cfg.optim.batch_size
    T = clip_len or cfg.data.clip_len
    H, W = cfg.data.height, cfg.data.width
    dev = torch.device(device)
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
    batch_ = {k: v.to(dev) for k, v in batch_.items()}
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--one", nargs=4, metavar=("CONFIG", "STEPS", "BATCH", "CLIP"), help=argparse.SUPPRESS)
    a = ap.parse_args()
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
