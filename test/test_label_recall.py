"""tools/label_recall.py: training labels scored against a hand-made simulated frame, with object
sizes counted at the 1242x375 camera whatever size the frame has, and bad input named."""
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

spec = importlib.util.spec_from_file_location("label_recall", Path(__file__).parents[1] / "tools/label_recall.py")
label_recall = importlib.util.module_from_spec(spec)
spec.loader.exec_module(label_recall)


def _drive(root: Path, h: int, w: int, labels: np.ndarray, gt: np.ndarray, moving=(1,)) -> Path:
    d = root / "2030_01_01" / "2030_01_01_drive_0000_sync"
    for sub in ("instance_02/data", "objects/data", "image_02/motion_masks"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(d / "instance_02/data/0000000000.png"), gt.astype(np.uint16))
    cv2.imwrite(str(d / "image_02/motion_masks/0000000000.png"), labels.astype(np.uint16))
    objs = [{"id": int(i), "moving": int(i) in moving} for i in np.unique(gt) if i]
    (d / "objects/data/0000000000.json").write_text(json.dumps({"objects": objs}))
    return d


def test_counts_by_size_at_full_camera_resolution(tmp_path):
    h, w = 75, 248                                   # 1/5 of 1242x375 (about): one pixel is ~25 at full size
    gt = np.zeros((h, w), np.int64)
    gt[10:30, 10:40] = 1                             # moving, 600 px here = ~15,000 px at 1242x375
    gt[40:46, 100:106] = 2                           # still, 36 px = ~900 px at full size
    gt[60:62, 200:202] = 3                           # still, 4 px = ~100 px: under min_area, not counted
    labels = np.zeros_like(gt)
    labels[10:30, 10:38] = 7                         # covers object 1 (IoU 0.93)
    labels[40:46, 100:103] = 8                       # half of object 2: IoU 0.5, not above it
    labels[0:5, 200:240] = 9                         # on nothing
    d = _drive(tmp_path, h, w, labels, gt)
    r = label_recall.label_recall([d], "motion_masks")
    assert r["moving"]["total"] == [0, 0, 0, 1] and r["moving"]["found"] == [0, 0, 0, 1]
    assert r["still"]["total"] == [1, 0, 0, 0] and r["still"]["found"] == [0, 0, 0, 0]
    assert (r["labels"], r["correct"], r["frames"]) == (3, 1, 1)
    labels[40:46, 100:104] = 8                       # two thirds of object 2: found
    _drive(tmp_path, h, w, labels, gt)
    assert label_recall.label_recall([d], "motion_masks")["still"]["found"] == [1, 0, 0, 0]


def test_bad_input_is_named(tmp_path, capsys):
    gt = np.zeros((20, 30), np.int64)
    gt[2:8, 2:8] = 1
    d = _drive(tmp_path, 20, 30, np.zeros((10, 30)), gt)
    with pytest.raises(ValueError, match="0000000000.png is 30x10, its ground truth 30x20"):
        label_recall.label_recall([d], "motion_masks")
    with pytest.raises(SystemExit):
        label_recall.main(["motion_masks", str(tmp_path / "nowhere")])
    assert "no instance_02/" in capsys.readouterr().err


def test_a_label_without_its_ground_truth_is_named(tmp_path):
    gt = np.zeros((20, 30), np.int64)
    gt[2:8, 2:8] = 1
    d = _drive(tmp_path, 20, 30, gt, gt)
    (d / "instance_02/data/0000000000.png").unlink()
    with pytest.raises(FileNotFoundError, match="ground truth instance_02/data/0000000000.png"):
        label_recall.label_recall([d], "motion_masks")


def test_mined_labels_merge_as_the_loader_does_and_kept_counts_the_next_frame(tmp_path, capsys):
    """--mined: the miner's instances join the motion ones (mined.json's ids, motion pixels win); `kept`
    counts an object labelled in one frame and again in the next."""
    h, w = 75, 248
    gt = np.zeros((h, w), np.int64)
    gt[10:30, 10:40], gt[40:60, 100:130] = 1, 2        # 1 moving, 2 still (both ~15,000 px at full size)
    d = _drive(tmp_path, h, w, np.where(gt == 1, 5, 0), gt)
    (d / "image_02/mined_masks").mkdir(parents=True)
    for fid, still_mined in (("0000000000", True), ("0000000001", True), ("0000000002", False)):
        cv2.imwrite(str(d / "instance_02/data" / f"{fid}.png"), gt.astype(np.uint16))
        cv2.imwrite(str(d / "image_02/motion_masks" / f"{fid}.png"), np.where(gt == 1, 5, 0).astype(np.uint16))
        cv2.imwrite(str(d / "image_02/mined_masks" / f"{fid}.png"), np.where(gt == 2, 1, 0).astype(np.uint16) * still_mined)
        (d / "objects/data" / f"{fid}.json").write_text(json.dumps({"objects": [{"id": 1, "moving": True},
                                                                                {"id": 2, "moving": False}]}))
    (d / "image_02/mined_masks/mined.json").write_text(json.dumps({"frames": {
        "0000000000": {"1": {"confidence": 1.0}}, "0000000001": {"1": {"confidence": 1.0}}, "0000000002": {}}}))
    motion = label_recall.label_recall([d], "motion_masks")
    assert motion["still"]["found"] == [0, 0, 0, 0] and motion["moving"]["kept"] == [0, 0, 0, 2]
    merged = label_recall.label_recall([d], "motion_masks", mined="mined_masks")
    assert merged["still"]["found"] == [0, 0, 0, 2] and merged["still"]["total"] == [0, 0, 0, 3]
    assert merged["still"]["pairs"] == [0, 0, 0, 2] and merged["still"]["kept"] == [0, 0, 0, 1]   # lost in frame 2
    assert label_recall.main(["motion_masks", str(d), "--mined", "mined_masks"]) == 0
    assert "still   kept in the next frame" in capsys.readouterr().out
    (d / "image_02/mined_masks/mined.json").unlink()
    assert label_recall.main(["motion_masks", str(d), "--mined", "mined_masks"]) == 1
    assert "mined.json" in capsys.readouterr().err
