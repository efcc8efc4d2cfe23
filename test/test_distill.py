"""Distillation pieces: EMA teacher, pseudo-labels (slot 0 as an object, split components),
motion confidence and merged targets."""
import json

import torch

from xmod_core.distill import (DistillConfig, compact_per_frame, connected_components, ema_update, make_teacher,
                               merge_targets, pseudo_labels)
from xmod_core.model import DIOD, ModelConfig

TINY = ModelConfig(widths=(8, 8, 8, 8, 8), blocks=(1, 1, 1, 1), num_slots=4, slot_dim=16, mlp_hidden=32,
                   gru_hidden=16, decoder_channels=8, norm="batch")


def test_ema_update_averages_parameters_and_copies_buffers():
    torch.manual_seed(0)
    student = DIOD(TINY)
    teacher = make_teacher(student)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    student.train()(torch.randn(2, 1, 3, 16, 32))                      # moves BatchNorm statistics
    before = [p.clone() for p in teacher.parameters()]
    ema_update(teacher, student, keep=0.9)
    for b, t, s in zip(before, teacher.parameters(), student.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * s)
    for bt, bs in zip(teacher.buffers(), student.buffers()):
        assert torch.equal(bt, bs)                                     # copied, counters included
    bn = dict(teacher.named_buffers())["encoder.stem.1.num_batches_tracked"]
    assert bn.dtype == torch.long and int(bn) == 1


def test_connected_components_and_compaction():
    m = torch.zeros(1, 6, 8, dtype=torch.bool)
    m[0, 0:2, 0:2] = True
    m[0, 4:6, 5:8] = True
    m[0, 2, 2] = True                                                  # diagonal neighbour: same component
    cc = connected_components(m)
    assert len(torch.unique(cc[m])) == 2 and cc[0, 2, 2] == cc[0, 0, 0] and (cc[~m] == 0).all()
    ids = torch.tensor([[[0, 7], [7, 40]], [[3, 3], [9, 9]]])
    out = compact_per_frame(ids)
    assert out[0].tolist() == [[0, 1], [1, 2]] and out[1].tolist() == [[1, 1], [2, 2]]


def test_pseudo_labels_slot0_and_split_components():
    K, h, w = 4, 12, 16
    logits = torch.full((1, K, h, w), -5.0)
    logits[0, K - 1] = 5.0                                             # background everywhere ...
    logits[0, 0, 1:4, 1:5] = 10.0                                      # slot 0 is an object
    logits[0, 1, 6:9, 0:3] = 10.0                                      # slot 1: two separate blobs -> two objects
    logits[0, 1, 6:9, 10:14] = 10.0
    logits[0, 2, 10:12, 6:8] = 0.6                                     # slot 2: weak, not confident
    logits[0, 2, 10:12, 6:8] += 5.0
    masks = torch.softmax(logits, 1)
    masks[0, :, 10:12, 6:8] = torch.tensor([0.0, 0.0, 0.55, 0.45]).view(K, 1, 1)   # fg 0.55 < 0.9
    ids, conf = pseudo_labels(masks, DistillConfig(min_size=4))
    assert ids.shape == (1, h, w)
    assert ids.max() == 3                                              # slot 0 + two components of slot 1
    assert ids[0, 2, 2] > 0 and ids[0, 7, 1] > 0 and ids[0, 7, 11] > 0 and ids[0, 7, 1] != ids[0, 7, 11]
    assert ids[0, 10, 6] == 0 and (conf[ids == 0] == 0).all() and (conf[ids > 0] > 0.9).all()


def test_merge_targets_weights_and_teacher_objects():
    K, h, w = 4, 10, 12
    logits = torch.full((1, 1, K, h, w), -5.0)
    logits[..., K - 1, :, :] = 5.0
    logits[0, 0, 0, 1:4, 1:4] = 10.0                                   # teacher sees the moving object
    logits[0, 0, 1, 6:9, 6:10] = 10.0                                  # and a static one (no motion)
    masks = torch.softmax(logits, 2)
    motion = torch.zeros(1, 1, h, w, dtype=torch.long)
    motion[0, 0, 1:4, 1:4] = 1
    motion[0, 0, 8:10, 0:2] = 2                                        # a motion blob the teacher does not see
    ids, weights = merge_targets(motion, torch.ones(1, 1, dtype=torch.bool), masks, DistillConfig(min_size=4))
    assert ids.max() == 2                                              # moving object + teacher's static object
    assert ids[0, 0, 2, 2] == 1 and ids[0, 0, 7, 7] == 2 and ids[0, 0, 9, 0] == 0
    assert weights.shape == (1, 2) and ((weights > 1.9) & (weights <= 2)).all()    # 1 + confidence
    ids, _ = merge_targets(motion, torch.zeros(1, 1, dtype=torch.bool), masks, DistillConfig(min_size=4))
    assert ids.max() == 2 and ids[0, 0, 9, 0] == 0                     # unknown motion frame: teacher objects only


def _cfg(drive, out, stage, **over):
    from test_train import tiny_cfg
    return tiny_cfg(drive, out, stage=stage, **{"optim.steps": 2, "optim.batch_size": 2, **over})


def test_every_distillation_stage_trains_two_steps(tiny_drive, tmp_path):
    from xmod_core.train import train
    import json
    train(_cfg(tiny_drive, tmp_path / "b2", "2d_burn_in"), progress=False)
    train(_cfg(tiny_drive, tmp_path / "b3", "3d_burn_in"), progress=False)
    train(_cfg(tiny_drive, tmp_path / "t2", "2d_ts", init_from=str(tmp_path / "b2/student_rgb.pt")), progress=False)
    train(_cfg(tiny_drive, tmp_path / "t3", "3d_ts", init_from=str(tmp_path / "b3/student_lidar.pt")), progress=False)
    train(_cfg(tiny_drive, tmp_path / "x", "2d_3d_ts", init_from={"rgb": str(tmp_path / "t2/student_rgb.pt"),
                                                                  "lidar": str(tmp_path / "t3/student_lidar.pt")}), progress=False)
    for run, students in (("t2", ["rgb"]), ("t3", ["lidar"]), ("x", ["rgb", "lidar"])):
        logs = [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        assert len(logs) == 2 and all(f"{m}/bce" in logs[0] for m in students)
        for m in students:
            assert (tmp_path / run / f"student_{m}.pt").is_file()


def test_cross_modal_routes_teacher_labels_to_the_other_student(tiny_drive, monkeypatch):
    from xmod_core import stages
    from xmod_core.data import AugmentConfig, ClipDataset, DataConfig
    from xmod_core.losses import LossConfig
    from torch.utils.data import default_collate
    ds = ClipDataset(DataConfig(drives=[str(tiny_drive)], clip_len=2, height=32, width=96, workers=0), AugmentConfig(),
                     ("rgb", "lidar"))
    batch = default_collate([ds[0], ds[1]])
    for cross, expect in ((True, {"rgb": "lidar", "lidar": "rgb"}), (False, {"rgb": "rgb", "lidar": "lidar"})):
        st = stages.build_stage("2d_3d_ts", TINY, LossConfig(), DistillConfig(cross_modal=cross))
        st.on_start()
        with torch.no_grad():
            teacher_out = {m: t(batch[stages.TEACHER_INPUT[m]])["masks"] for m, t in st.teachers.items()}
        seen = []
        real = stages.merge_targets
        monkeypatch.setattr(stages, "merge_targets", lambda mo, mv, tm, c, *li: (seen.append(tm), real(mo, mv, tm, c, *li))[1])
        st.loss(batch, st.students)
        for m, tm in zip(st.modalities, seen):                       # students in order: rgb, lidar
            assert torch.equal(tm, teacher_out[expect[m]]), (cross, m)
        monkeypatch.setattr(stages, "merge_targets", real)


def write_tiny_pipeline(tmp_path, drive, extra_stages=()) -> tuple:
    """Tiny 2d_burn_in and 2d_ts configs and a pipeline of the two (plus `extra_stages`) under
    tmp_path -> (pipeline path, the configs' common dict)."""
    import yaml
    from test_train import TINY_MODEL
    base = {"device": "cpu", "seed": 1, "model": TINY_MODEL,
            "data": {"drives": [str(drive)], "clip_len": 2, "height": 32, "width": 96, "workers": 0},
            "optim": {"batch_size": 2, "steps": 2, "warmup_steps": 1}}
    for name in ("2d_burn_in", "2d_ts"):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({**base, "stage": name}))
    pipe = tmp_path / "pipeline.yaml"
    pipe.write_text(yaml.safe_dump({"out_dir": str(tmp_path / "runs"), "stages": [
        {"name": "2d_burn_in", "config": str(tmp_path / "2d_burn_in.yaml")},
        {"name": "2d_ts", "config": str(tmp_path / "2d_ts.yaml"), "init_from": {"rgb": "2d_burn_in"}},
        *extra_stages]}))
    return pipe, base


def test_pipeline_runs_stages_in_order_and_skips_finished_ones(tiny_drive, tmp_path, capsys):
    import yaml
    from xmod_core.train import main
    pipe, base = write_tiny_pipeline(tmp_path, tiny_drive, [
        # an ablation: another folder, the same training stage, one setting changed
        {"name": "2d_ts_ablation", "stage": "2d_ts", "config": str(tmp_path / "2d_ts.yaml"),
         "init_from": {"rgb": "2d_burn_in"}, "overrides": ["loss.w_reg=0.25"]}])
    assert main(["--pipeline", str(pipe), "--no-progress"]) == 0
    first = capsys.readouterr().out
    assert first.count("trained") == 3
    cfg = json.loads((tmp_path / "runs/2d_ts/config.json").read_text())
    assert cfg["init_from"] == {"rgb": str(tmp_path / "runs/2d_burn_in/student_rgb.pt")}
    abl = json.loads((tmp_path / "runs/2d_ts_ablation/config.json").read_text())
    assert abl["stage"] == "2d_ts" and abl["loss"]["w_reg"] == 0.25 and cfg["loss"]["w_reg"] != 0.25
    assert abl["init_from"] == cfg["init_from"]
    assert main(["--pipeline", str(pipe), "--no-progress"]) == 0
    assert capsys.readouterr().out.count("skipped") == 3
    # a finished stage whose config changed since is not silently reused
    (tmp_path / "2d_ts.yaml").write_text(yaml.safe_dump({**base, "stage": "2d_ts", "loss": {"w_reg": 0.75}}))
    assert main(["--pipeline", str(pipe), "--no-progress"]) == 2
    assert "another configuration" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"out_dir": str(tmp_path / "r2"), "stages": [
        {"name": "2d_ts", "config": str(tmp_path / "2d_ts.yaml"), "init_from": {"rgb": "2d_burn_in"}}]}))
    assert main(["--pipeline", str(bad), "--no-progress"]) == 2
    assert "not an earlier stage" in capsys.readouterr().err


def test_shipped_configs_load():
    from pathlib import Path
    from xmod_core.config import load_config
    from xmod_core.train import PipelineConfig, TrainConfig
    root = Path(__file__).resolve().parents[1] / "config"
    files = sorted(root.glob("*/*_*.yaml"))
    assert len(files) >= 7
    for f in files:
        assert load_config(TrainConfig, f).stage in f.stem
    main_stages = ["2d_burn_in", "2d_ts", "3d_burn_in", "3d_ts", "2d_3d_ts"]
    pipe = load_config(PipelineConfig, root / "demo/pipeline.yaml")
    assert [s.name for s in pipe.stages] == main_stages
    abl = load_config(PipelineConfig, root / "demo/ablations.yaml")
    assert [s.name for s in abl.stages][:5] == main_stages and len(abl.stages) == 7
    same = lambda stages: [(s.name, s.config, s.init_from, s.overrides) for s in stages]
    assert same(abl.stages[:5]) == same(pipe.stages)   # shared out_dir: the same stages, or a re-run refuses them
    for st in abl.stages[5:]:                      # every ablation override names a real key
        load_config(TrainConfig, root.parent / st.config, st.overrides + [f"stage={st.stage}"])


def test_min_size_counts_cells_of_the_quarter_grid_on_finer_masks():
    """On masks at 1/2 of the input (4 pixels a cell of the 1/4 grid) min_size keeps its area: a
    12-pixel object passes min_size 8 on the 1/4 grid, and is noise (3 cells) on the 1/2 grid."""
    K, h, w = 3, 8, 8
    logits = torch.full((1, K, h, w), -5.0)
    logits[0, K - 1] = 5.0
    logits[0, 0, 1:4, 1:5] = 10.0                                      # 12 pixels
    masks = torch.softmax(logits, 1)
    assert pseudo_labels(masks, DistillConfig(min_size=8))[0].max() == 1
    assert pseudo_labels(masks, DistillConfig(min_size=8), cells=4)[0].max() == 0
    motion = torch.zeros(1, 1, h, w, dtype=torch.long)
    ids, _ = merge_targets(motion, torch.ones(1, 1, dtype=torch.bool), masks[:, None], DistillConfig(min_size=8), cells=4)
    assert ids.max() == 0
