"""tools/real_veto.py: per-frame counts of the F1 accumulator, the paired bootstrap over frames and
its verdicts (a loss on every frame against one object's difference), bad input."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from xmod_core.metrics import F1Accumulator

spec = importlib.util.spec_from_file_location("real_veto", Path(__file__).parents[1] / "tools/real_veto.py")
real_veto = importlib.util.module_from_spec(spec)
spec.loader.exec_module(real_veto)


def test_accumulator_keeps_each_frames_counts():
    acc = F1Accumulator()
    gt = np.array([0, 1, 1, 2, 2])
    acc.update(gt, np.array([0, 1, 1, 0, 0]))                 # object 1 found, object 2 missed
    acc.update(gt, np.array([0, 0, 0, 3, 3]) + np.array([5, 0, 0, 0, 0]))   # 2 found, a stray pixel false
    assert acc.frames == [[1, 0, 1], [1, 1, 1]]
    assert np.sum(acc.frames, 0).tolist() == [acc.tp, acc.fp, acc.fn]


def _result(per_frame):
    return {"real": {"src": {"3d": {"student": {"per_frame": per_frame}}}}}


def test_verdicts_separate_a_loss_from_one_objects_noise(tmp_path, capsys):
    base = [[4, 1, 1]] * 12                                      # 12 frames, 4 of 5 objects found each
    everywhere = [[3, 2, 2]] * 12                                # one object fewer in every frame
    one = [[4, 1, 1]] * 11 + [[3, 2, 2]]                         # one object fewer in one frame
    loss = real_veto.compare(_result(base), _result(everywhere))[0]
    assert loss["diff"] == pytest.approx(0.6 - 0.8) and loss["hi90"] < 0 and loss["verdict"] == "loss"
    small = real_veto.compare(_result(base), _result(one), drop=0.01)[0]
    assert -0.03 < small["diff"] < -0.01 and small["verdict"] == "noise?" and small["hi90"] >= 0
    same = real_veto.compare(_result(base), _result(base))[0]
    assert same["diff"] == 0 and same["verdict"] == "loss-free"
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_result(base)))
    b.write_text(json.dumps(_result(base[:5])))
    assert real_veto.main([str(a), str(b)]) == 2
    assert "12 frames against 5" in capsys.readouterr().err
    b.write_text(json.dumps({"real": {"src": {"3d": {"student": {"f1": 0.5}}}}}))
    assert real_veto.main([str(a), str(b)]) == 2
    assert "per-frame counts" in capsys.readouterr().err
    b.write_text(json.dumps(_result(everywhere)))
    assert real_veto.main([str(a), str(b)]) == 0
    assert "| src | 3d | student | 12 |" in capsys.readouterr().out


def test_training_seeds_widen_the_interval_and_a_consistent_loss_stays_one(tmp_path, capsys):
    strong, weak = [[4, 1, 1]] * 12, [[3, 2, 2]] * 12
    one_each = real_veto.compare(_result(strong), _result(weak))[0]
    assert one_each["verdict"] == "loss" and one_each["runs"] == [1, 1]
    # the baseline reseeded scores like the candidate, the candidate reseeded like the baseline: no loss
    crossed = real_veto.compare([_result(strong), _result(weak)], [_result(weak), _result(strong)])[0]
    assert crossed["diff"] == 0 and crossed["lo90"] < 0 < crossed["hi90"] and crossed["verdict"] == "loss-free"
    assert crossed["runs"] == [2, 2]
    # both candidate seeds below both baseline seeds: still a loss, and the mean F1 per side
    weaker = [[3, 3, 2]] * 12
    both = real_veto.compare([_result(strong), _result(strong)], [_result(weak), _result(weaker)])[0]
    assert both["verdict"] == "loss" and both["candidate"] == pytest.approx((0.6 + 6 / 11) / 2)
    files = {}
    for name, rows in (("b0", strong), ("b1", weak), ("c0", weak), ("c1", strong), ("short", strong[:5])):
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(_result(rows)))
    assert real_veto.main([str(files["b0"]), str(files["c0"]), "--baseline-seeds", str(files["b1"]),
                           "--candidate-seeds", str(files["c1"])]) == 0
    out = capsys.readouterr().out
    assert "mean F1 of 2 baseline and 2 candidate runs" in out and "| loss-free |" in out
    assert real_veto.main([str(files["b0"]), str(files["c0"]), "--baseline-seeds", str(files["short"])]) == 2
    assert "12 / 5 frames in the runs of one side" in capsys.readouterr().err
