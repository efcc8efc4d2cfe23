"""The demo students shipped inside the package: present, small, self-describing, and usable by
the Predictor on a real KITTI frame."""
from pathlib import Path

import numpy as np
import pytest

from xmod_core.model import load_student
from xmod_core.predictor import (DEFAULT_2D, DEFAULT_3D, FINE_2D, FINE_3D, GRID2_2D, GRID2_3D, STRIDE4_3D, Predictor,
                                  PredictorConfig, student_path)

REAL = Path(__file__).resolve().parents[2] / "shared" / "kitti_raw" / "2011_09_26" / "2011_09_26_drive_sfnd_sync"


def test_shipped_students_load_and_are_small():
    total = 0
    for path, modality in ((DEFAULT_2D, "rgb"), (DEFAULT_3D, "lidar"), (FINE_2D, "rgb"), (FINE_3D, "lidar"),
                           (GRID2_2D, "rgb"), (STRIDE4_3D, "lidar")):
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


def test_the_fine_mask_3d_student_is_the_stride4_one_with_a_head():
    """student_lidar_fine.pt: the stride-4 3D student's weights (the default until 2026-12-03)
    unchanged plus a trained fine-mask head (masks at 1/2 of the input), usable by the Predictor on
    a real scan."""
    import torch
    base, _ = load_student(STRIDE4_3D)
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


def test_shipped_students_by_name():
    assert student_path(None, "rgb") == student_path("", "rgb") == DEFAULT_2D and student_path("", "lidar") == DEFAULT_3D
    assert student_path("grid2", "rgb") == GRID2_2D and student_path("grid2", "lidar") == GRID2_3D == DEFAULT_3D
    assert student_path("stride4", "rgb") == DEFAULT_2D and student_path("stride4", "lidar") == STRIDE4_3D
    assert student_path("fine", "lidar") == FINE_3D and student_path("runs/x/student_rgb.pt", "rgb") == "runs/x/student_rgb.pt"
    with pytest.raises(FileNotFoundError, match="rgb checkpoint not found: grid3 .*name: fine, grid2"):
        Predictor(PredictorConfig(mode="rgb", ckpt_2d="grid3", device="cpu"), None)   # a misspelt name is a missing path


def test_the_grid2_students_have_a_slot_grid_twice_as_fine():
    """student_rgb_grid2.pt and the default 3D student student_lidar.pt: output stride 2 (masks on a
    48x160 grid at 96x320), the architecture of the stride-4 students otherwise, run by name in fused
    mode on a real frame."""
    import torch
    for name, base_path in ((GRID2_2D, DEFAULT_2D), (DEFAULT_3D, STRIDE4_3D)):
        g, _ = load_student(name)
        b, _ = load_student(base_path)
        assert g.cfg.output_stride == 2 and b.cfg.output_stride == 4
        assert {k: v.shape for k, v in g.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
        x = torch.zeros(1, 1, g.cfg.in_channels, 96, 320)
        with torch.no_grad():
            assert g(x)["masks"].shape[-2:] == (48, 160) and b(x)["masks"].shape[-2:] == (24, 80)
    # the grid2 3D student (trained with a dice term) names its validation-chosen threshold; the others none
    assert load_student(DEFAULT_3D)[1].get("min_score") == 0.6
    assert all("min_score" not in load_student(n)[1] for n in (GRID2_2D, DEFAULT_2D, STRIDE4_3D))
    if not REAL.is_dir():
        pytest.skip(f"../shared/kitti_raw not found: {REAL} is absent")
    from xmod_core.kitti import KittiRawDrive
    d = KittiRawDrive(REAL)
    p = Predictor(PredictorConfig(mode="fused", ckpt_2d="grid2", ckpt_3d="grid2", device="cpu"), d.calib)
    assert all(m.cfg.output_stride == 2 for m in p.models.values())
    assert p.min_scores == {"rgb": 0.5, "lidar": 0.6}
    for t in range(2):
        r = p(image=d.image(t), points=d.scan(t), stamp=0.1 * t)
    assert r.labels.shape == (375, 1242) and r.grid.shape == (96, 320)
    assert {m: s.shape for m, s in r.students.items()} == {"rgb": (96, 320), "lidar": (96, 320)}
