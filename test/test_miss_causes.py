"""tools/miss_causes.py: each way of missing an object on a hand-made frame, the size bins at the
1242x375 camera, and bad input named."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

spec = importlib.util.spec_from_file_location("miss_causes", Path(__file__).parents[1] / "tools/miss_causes.py")
mc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mc)

FOUND, ABSENT, PARTIAL, SPILLED, MERGED = range(5)


def test_every_cause_on_a_hand_made_frame():
    gt = np.zeros((40, 100), np.int64)
    gt[0:10, 0:10] = 1          # found: its instance covers it exactly
    gt[0:10, 20:30] = 2         # absent: nothing on it
    gt[0:10, 40:50] = 3         # partial: a third of it
    gt[20:30, 0:10] = 4         # spilled: inside an instance four times its size, mostly background
    gt[20:30, 40:50] = 5        # merged: inside the instance of object 6, which is larger
    gt[20:40, 50:70] = 6
    pred = np.zeros_like(gt)
    pred[0:10, 0:10] = 10
    pred[0:10, 40:44] = 11
    pred[20:40, 0:20] = 12
    pred[20:40, 40:70] = 13
    ids, area, cause = mc.miss_causes(gt, pred)
    assert ids.tolist() == [1, 2, 3, 4, 5, 6]
    assert area.tolist() == [100, 100, 100, 100, 100, 400]
    assert cause.tolist() == [FOUND, ABSENT, PARTIAL, SPILLED, MERGED, FOUND]


def test_spilled_when_the_instance_is_mostly_the_object_itself():
    gt = np.zeros((10, 30), np.int64)
    gt[:, 0:10] = 1             # 100 px: the instance's largest share
    gt[:, 10:19] = 2            # 90 px, all inside the same instance
    pred = np.zeros_like(gt)
    pred[:, 0:28] = 3           # 280 px: object 1, object 2 and 90 px of background
    assert mc.miss_causes(gt, pred)[2].tolist() == [SPILLED, MERGED]      # IoU 0.36 and 0.32


def test_no_instances_at_all_and_ids_that_skip_zero():
    gt = np.full((10, 10), 4, np.int64)       # an object over the whole frame, no background id
    ids, area, cause = mc.miss_causes(gt, np.zeros_like(gt))
    assert ids.tolist() == [4] and area.tolist() == [100] and cause.tolist() == [ABSENT]
    pred = np.full((10, 10), 9, np.int64)     # an instance over the whole frame
    assert mc.miss_causes(gt, pred)[2].tolist() == [FOUND]


def test_tally_bins_by_area_and_drops_small_objects():
    rows = [(np.array([100.0, 500.0, 2000.0, 5000.0, 20000.0]), np.array([FOUND, ABSENT, MERGED, SPILLED, FOUND]))]
    counts = mc.tally(rows)
    assert counts.sum() == 4                                      # the 100 px object is under min_area
    assert counts[0, ABSENT] == 1 and counts[1, MERGED] == 1 and counts[2, SPILLED] == 1 and counts[3, FOUND] == 1
    assert "| 1k-3k | 1 |" in mc.table(counts)


def test_bad_input_is_named(tmp_path, capsys):
    with pytest.raises(ValueError, match="ground truth is 10x5, the instances 10x6"):
        mc.miss_causes(np.zeros((5, 10)), np.zeros((6, 10)))
    with pytest.raises(SystemExit):
        mc.main([str(tmp_path)])
    assert "no instance_02/" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        mc.main([str(tmp_path), "--every", "0"])
    assert "--every must be at least 1" in capsys.readouterr().err
