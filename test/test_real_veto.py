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
