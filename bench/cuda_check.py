"""CUDA checks, for a machine with a GPU (CI has none): the model, the losses and the trainer on
CUDA agree with the CPU, mixed precision trains, resume works; prints what it checked.

    python bench/cuda_check.py [--drive DRIVE_DIR]   # then: bench/bench_train.py --device cuda, bench/bench_losses.py --device cuda
"""
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))
sys.path.insert(0, str(ROOT / "bench"))


def predictor_agreement(drive_dir: str) -> None:
    """The shipped students through the Predictor (fused) on real frames: CPU, CUDA eager, CUDA
    graphs and CUDA graphs in bf16 autocast; the share of pixels and points whose labels agree with
    the CPU's."""
    import numpy as np
    from xmod_core.kitti import KittiRawDrive
    from xmod_core.predictor import Predictor, PredictorConfig
    drive = KittiRawDrive(drive_dir)
    frames = [(drive.image(i), drive.scan(i)) for i in range(len(drive))]
    out = {}
    for name, dev, amp, graphs in (("cpu", "cpu", False, False), ("cuda eager fp32", "cuda", False, False),
                                   ("cuda graph fp32", "cuda", False, True), ("cuda graph bf16", "cuda", True, True)):
        p = Predictor(PredictorConfig(mode="fused", device=dev, amp=amp, cuda_graphs=graphs), drive.calib)
        out[name] = [p(image=img, points=scan, stamp=0.1 * t) for t, (img, scan) in enumerate(frames)]
    ref = out["cpu"]
    for name in ("cuda eager fp32", "cuda graph fp32", "cuda graph bf16"):
        pix = np.mean([np.mean(r.labels == c.labels) for r, c in zip(ref, out[name])])
        pts = np.mean([np.mean(r.point_labels == c.point_labels) for r, c in zip(ref, out[name])])
        objs = [len(c.objects) for c in out[name]]
        print(f"predictor {name} vs cpu on {len(frames)} real frames: labels agree on {pix:.4f} of pixels, "
              f"{pts:.4f} of points; objects per frame {objs} (cpu {[len(r.objects) for r in ref]})")
        assert pix > (0.9 if "bf16" in name else 0.99), f"{name}: labels differ from the CPU's"


def main():
    assert torch.cuda.is_available(), "no CUDA device"
    print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__)
    from xmod_core.losses import motion_losses
    from xmod_core.model import DIOD, ModelConfig
    torch.manual_seed(0)
    m = DIOD(ModelConfig(num_slots=8)).eval()
    clip = torch.randn(1, 3, 3, 64, 128)
    with torch.no_grad():
        cpu = m(clip)["masks"]
        mc = m.cuda()
        gpu = mc(clip.cuda())["masks"].cpu()
        state, steps = None, []
        for t in range(3):
            o, state = mc.step(clip[:, t].cuda(), state)
            steps.append(o["masks"].cpu())
    print("model cpu vs cuda max |diff|:", float((cpu - gpu).abs().max()),
          "| streaming vs clip on cuda:", float((torch.stack(steps, 1) - gpu).abs().max()))
    assert torch.allclose(cpu, gpu, atol=1e-3) and torch.allclose(torch.stack(steps, 1), gpu, atol=1e-4)
    from bench_losses import inputs
    masks, targets, valid = inputs(8, 12, 4, 46, 156, "cpu")
    a = motion_losses(masks, targets, valid)["total"]
    b = motion_losses(masks.cuda(), targets.cuda(), valid.cuda())["total"].cpu()
    print("losses cpu vs cuda:", float(a), float(b))
    assert torch.allclose(a, b, rtol=1e-4)

    from conftest import make_tiny_drive
    from xmod_core.config import from_dict
    from xmod_core.train import TrainConfig, train
    import json
    with tempfile.TemporaryDirectory() as d:
        drive = make_tiny_drive(Path(d) / "tiny")
        for stage in ("2d_burn_in", "3d_burn_in"):
            out = Path(d) / stage
            cfg = {"stage": stage, "out_dir": str(out), "device": "cuda", "amp": True, "log_every": 1,
                   "model": {"widths": [16, 16, 32, 32, 32], "blocks": [1, 1, 1, 1], "num_slots": 4, "norm": "batch"},
                   "data": {"drives": [str(drive)], "clip_len": 2, "height": 32, "width": 96, "workers": 2},
                   "optim": {"batch_size": 2, "steps": 10, "warmup_steps": 1, "lr": 2e-3, "grad_clip": 1.0}}
            cfg_half = json.loads(json.dumps(cfg))
            cfg_half["optim"]["steps"] = 5
            cfg_half["ckpt_every"] = 5
            train(from_dict(TrainConfig, cfg), progress=False)
            half = Path(d) / (stage + "_resume")
            cfg_half["out_dir"] = str(half)
            train(from_dict(TrainConfig, cfg_half), progress=False)
            cfg["out_dir"] = str(half)
            train(from_dict(TrainConfig, cfg), resume=True, progress=False)
            la = [json.loads(x)["total"] for x in (out / "metrics.jsonl").read_text().splitlines()]
            lb = [json.loads(x)["total"] for x in (half / "metrics.jsonl").read_text().splitlines()]
            print(f"{stage} on cuda (bf16 autocast): losses {la[0]:.4f} -> {la[-1]:.4f}; resumed run steps 6-10 "
                  f"max |diff| {max(abs(x - y) for x, y in zip(la[5:], lb[5:])):.2e}")
    if "--drive" in sys.argv:
        predictor_agreement(sys.argv[sys.argv.index("--drive") + 1])
    print("CUDA checks passed")


if __name__ == "__main__":
    main()
