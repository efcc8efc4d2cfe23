"""The GPU run (tools/gpu_pipeline.sh, xmod_core.gpu_pipeline) on the CPU: config/gpu loads and is
sized as its arithmetic says, the clip cache gives the DataLoader's batches, a stage stops on time
and exports, the output folder's limits hold, and a smoke run of the whole script (tiny drives, a
tiny model, two steps a stage) writes its files; a tiny budget skips the stages and says so."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_train import losses
from test_train import tiny_cfg as train_tiny_cfg
from xmod_core.config import ConfigError, load_config
from xmod_core.data import ClipDataset, DeviceClipCache
from xmod_core.gpu_pipeline import MAX_BYTES, OUT_FILES, STAGE_COST, LimitError, OutFolder, half_student, stage_shares
from xmod_core.model import DIOD, load_student
from xmod_core.train import PipelineConfig, TrainConfig, TrainingError, train

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "config" / "gpu"
SMOKE = ["--train-seeds", "1", "--val-seeds", "2", "--test-seeds", "3", "--drives-per-seed", "1", "--frames", "4",
         "--eval-drives-per-seed", "1", "--eval-frames", "2", "--scale", "0.25", "--steps-override", "2",
         "--device", "cpu", "--min-stage-s", "0", "--eval-reserve-s", "30", "--real-data",
         "--override", "model.widths=[8,8,8,8,8]", "model.num_slots=4", "model.slot_dim=16", "model.mlp_hidden=32",
         "model.gru_hidden=16", "model.decoder_channels=8", "data.height=32", "data.width=96", "data.clip_len=2",
         "data.workers=0", "optim.batch_size=2", "data.device_cache=1"]


def test_gpu_configs_load_and_fit_their_arithmetic(tmp_path):
    pipe = load_config(PipelineConfig, GPU / "pipeline.yaml")
    demo = load_config(PipelineConfig, ROOT / "config" / "demo" / "pipeline.yaml")
    assert [(s.name, s.init_from) for s in pipe.stages] == [(s.name, s.init_from) for s in demo.stages]
    planned = 0.0
    for st in pipe.stages:
        cfg = load_config(TrainConfig, ROOT / st.config)
        assert cfg.stage == st.name and cfg.amp and cfg.data.device_cache >= 1
        assert (cfg.data.height, cfg.data.width) == (192, 640) and 3 <= cfg.data.clip_len <= 5
        assert 24 <= cfg.model.num_slots <= 45 and tuple(cfg.model.widths) == (64, 64, 128, 256, 512)
        assert cfg.loss.w_reg == 0.3                                     # the paper's losses, per-modality weights
        if "rgb" in cfg.stage or cfg.stage.startswith("2d"):
            assert cfg.loss.w_recon_rgb == 0.2
        if cfg.stage.startswith("3d") or cfg.stage == "2d_3d_ts":
            assert cfg.loss.w_recon_lidar == (100.0 if cfg.stage == "3d_burn_in" else 50.0)
        planned += STAGE_COST[cfg.stage] * cfg.optim.steps * cfg.optim.batch_size / 60.0   # 60 clips/s a burn-in
        with torch.device("meta"):
            params = sum(p.numel() for p in DIOD(cfg.model).parameters())
        assert params * 2 < MAX_BYTES                                    # a float16 student fits a returned file
        bad = tmp_path / f"{st.name}.yaml"                               # unknown keys are still refused
        bad.write_text((ROOT / st.config).read_text() + "\nbogus_key: 1\n")
        with pytest.raises(ConfigError, match="bogus_key"):
            load_config(TrainConfig, bad)
    assert 440 <= planned <= 520, planned                                # about 8 minutes (pipeline.yaml)


def tiny_cfg(drive, out, **over):
    """test_train's tiny stage, without its frequent checkpoints."""
    return train_tiny_cfg(drive, out, **{"ckpt_every": 100} | over)



@pytest.mark.parametrize("stage", ["2d_burn_in", "3d_burn_in"])
def test_device_cache_trains_as_the_dataloader(tiny_drive, tmp_path, stage):
    # 7 clips, 3 batches an epoch: 6 steps are two epochs, each with its own decoded pass
    train(tiny_cfg(tiny_drive, tmp_path / "loader", stage=stage), progress=False)
    res = train(tiny_cfg(tiny_drive, tmp_path / "cache", stage=stage, **{"data.device_cache": 2}), progress=False)
    assert losses(tmp_path / "loader") == pytest.approx(losses(tmp_path / "cache"), rel=1e-6, abs=1e-7)
    assert res["stopped"] == "steps" and res["steps_run"] == 6 and res["clips_per_s"] > 0


def test_shared_clip_cache_must_fit(tiny_drive, tmp_path):
    cfg = tiny_cfg(tiny_drive, tmp_path / "a", **{"data.device_cache": 1, "optim.steps": 2})
    ds = ClipDataset(cfg.data, cfg.augment, ("rgb", "lidar"), seed=cfg.seed)
    cache = DeviceClipCache(ds, "cpu", passes=1)
    assert len(cache) == len(ds) and set(cache.batch([0, 1])) >= {"rgb", "rgb_target", "lidar", "motion"}
    forked = DeviceClipCache(ds, "cpu", passes=1, workers=2)           # decoded by 2 processes: the same
    assert all(torch.equal(forked.tensors[k], v) for k, v in cache.tensors.items())
    train(cfg, progress=False, clip_cache=cache)                        # a shared cache of both modalities
    with pytest.raises(TrainingError, match="clip cache"):
        train(tiny_cfg(tiny_drive, tmp_path / "b", **{"data.device_cache": 2}), progress=False, clip_cache=cache)


def test_stage_stops_on_time_and_exports(tiny_drive, tmp_path):
    out = tmp_path / "timed"
    res = train(tiny_cfg(tiny_drive, out, **{"optim.steps": 1000}), progress=False, max_seconds=0.0)
    assert res["stopped"] == "time" and res["step"] == 1 and len(losses(out)) == 1
    net, meta = load_student(out / "student_rgb.pt")
    assert meta["meta"]["step"] == 1
    # the float16 copy of the exported student loads into the same float32 model
    half = tmp_path / "half.pt"
    half.write_bytes(half_student(out / "student_rgb.pt"))
    net16, meta16 = load_student(half)
    assert meta16["meta"]["stored_dtype"] == "float16" and half.stat().st_size < (out / "student_rgb.pt").stat().st_size
    clip = torch.rand(1, 2, 3, 32, 96)
    with torch.no_grad():
        a, b = net(clip)["masks"], net16(clip)["masks"]
    assert next(net16.parameters()).dtype == torch.float32 and torch.allclose(a, b, atol=2e-2)


def test_stage_shares():
    assert stage_shares(100.0, [1.0, 1.0, 2.0]) == pytest.approx(25.0)
    assert stage_shares(-5.0, [1.0]) == -5.0
    assert stage_shares(10.0, [0.0]) == 10.0                            # no cost: all of it


def test_out_folder_limits(tmp_path):
    out = OutFolder(tmp_path / "o", max_files=2, max_bytes=100)
    out.put_text("summary.json", "{}")
    out.put_text("summary.json", "{ }")                                  # replacing a file is no new file
    with pytest.raises(LimitError, match="100 B|MiB"):
        out.put_bytes("student_rgb.pt", b"x" * 101)                     # binaries are never cut
    n = out.put_text("log.txt", "a" * 500, truncate=True)              # text is cut in the middle to fit
    text = (tmp_path / "o" / "log.txt").read_text()
    assert n <= 100 and text.startswith("a") and text.endswith("a") and "cut" in text
    with pytest.raises(LimitError, match="2 files"):
        out.put_text("eval_sim.md", "#")
    with pytest.raises(LimitError, match="not one of"):
        out.put_text("extra.txt", "")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "foreign.bin").write_bytes(b"")
    with pytest.raises(LimitError, match="foreign.bin"):
        OutFolder(tmp_path / "p")


def run_script(args, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "XMOD_PY": sys.executable}
    return subprocess.run(["bash", str(ROOT / "tools" / "gpu_pipeline.sh"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_smoke_run_of_the_gpu_script(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    p = run_script(["--out", str(out), "--work", str(work), "--budget-s", "400", *SMOKE])
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    files = sorted(f.name for f in out.iterdir())
    assert set(files) <= set(OUT_FILES) and len(files) <= 8
    assert {"student_rgb.pt", "student_lidar.pt", "metrics.jsonl", "eval_sim.md", "summary.json", "log.txt"} <= set(files)
    assert all(f.stat().st_size <= MAX_BYTES for f in out.iterdir())
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    stages = [r for r in rows if "stage" in r]
    assert [r["stage"] for r in stages] == ["2d_burn_in", "2d_ts", "3d_burn_in", "3d_ts", "2d_3d_ts"]
    assert all(r["status"] == "trained" and r["steps"] == 2 and r["clips_per_s"] > 0 and r["val"] for r in stages)
    for m in ("rgb", "lidar"):
        net, meta = load_student(out / f"student_{m}.pt")
        assert meta["modality"] == m and meta["stage"] == "2d_3d_ts" and net.cfg.num_slots == 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["skipped"] == [] and summary["evaluation"] == {"sim_gpu": "done", "sim_shipped": "done"}
    assert "fused" in summary["comparison_sim"]["2d_grid"]
    md = (out / "eval_sim.md").read_text()
    assert "GPU students (32x96)" in md and "shipped demo students" in md and "| fused |" in md
    assert "clips/s" in p.stdout and "clips/s" in (out / "log.txt").read_text()

    # a budget spent before training: every stage skipped, and said so; the drives are reused
    out2 = tmp_path / "out2"
    p = run_script(["--out", str(out2), "--work", str(work), "--budget-s", "5", *SMOKE, "--eval-reserve-s", "10"])
    assert p.returncode == 3, p.stdout[-3000:] + p.stderr[-3000:]
    summary = json.loads((out2 / "summary.json").read_text())
    assert not summary["complete"] and summary["skipped"] == ["2d_burn_in", "2d_ts", "3d_burn_in", "3d_ts", "2d_3d_ts"]
    assert all(s["status"] == "skipped" and ("budget" in s["reason"] or "did not train" in s["reason"])
               for s in summary["stages"])
    assert "reused" in (out2 / "log.txt").read_text()
    assert not (out2 / "student_rgb.pt").exists() and summary["evaluation"] == "skipped: no students"
