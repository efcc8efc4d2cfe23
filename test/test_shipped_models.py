"""The demo students shipped inside the package: present, small, self-describing, and usable by
the Predictor on a real KITTI frame."""
from pathlib import Path

import numpy as np
import pytest

from xmod_core.model import load_student
from xmod_core.predictor import DEFAULT_2D, DEFAULT_3D, FINE_3D, Predictor, PredictorConfig

REAL = Path(__file__).resolve().parents[2] / "shared" / "kitti_raw" / "2011_09_26" / "2011_09_26_drive_sfnd_sync"


def test_shipped_students_load_and_are_small():
    total = 0
    for path, modality in ((DEFAULT_2D, "rgb"), (DEFAULT_3D, "lidar"), (FINE_3D, "lidar")):
        assert Path(path).is_file(), f"shipped model missing: {path}"
        model, meta = load_student(path)
        assert meta["modality"] == modality and meta["meta"]["step"] > 0
        assert model.cfg.in_channels == (3 if modality == "rgb" else 4)
        total += Path(path).stat().st_size
    assert total <= 20 * 2**20


def test_shipped_students_run_fused_on_a_real_frame():
    if not REAL.is_dir():
        pytest.skip(f"../shared/kitti_raw not found: {REAL} is absent")
    from xmod_core.kitti import KittiRawDrive
    d = KittiRawDrive(REAL)
    p = Predictor(PredictorConfig(mode="fused", device="cpu"), d.calib)
    for t in range(3):
        r = p(image=d.image(t), points=d.scan(t), stamp=0.1 * t)
    assert r.labels.shape == (375, 1242) and r.point_labels.shape == (len(d.scan(2)),)
    assert all(o.num_points >= 5 and np.isfinite(o.center).all() for o in r.objects)


def test_the_fine_mask_3d_student_is_the_shipped_one_with_a_head():
    """student_lidar_fine.pt: the shipped 3D student's weights unchanged plus a trained fine-mask
    head (masks at 1/2 of the input), usable by the Predictor on a real scan."""
    import torch
    base, _ = load_student(DEFAULT_3D)
    fine, meta = load_student(FINE_3D)
    assert fine.cfg.fine_masks and not base.cfg.fine_masks
    sb, sf = base.state_dict(), fine.state_dict()
    assert all(torch.equal(sb[k], sf[k]) for k in sb)
    assert set(sf) - set(sb) == {k for k in sf if k.startswith("fine.")} and not torch.all(sf["fine.to_q.weight"] == 0)
    if not REAL.is_dir():
        pytest.skip(f"../shared/kitti_raw not found: {REAL} is absent")
    from xmod_core.kitti import KittiRawDrive
    d = KittiRawDrive(REAL)
    p = Predictor(PredictorConfig(mode="lidar", ckpt_3d=FINE_3D, device="cpu"), d.calib)
    r = p(points=d.scan(0), stamp=0.0)
    assert r.point_labels.shape == (len(d.scan(0)),) and r.grid.shape == (96, 320)
