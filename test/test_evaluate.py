"""The evaluator and the LiDAR clustering baseline on a tiny simulated drive."""
import json

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("pybullet", reason="pybullet (extra 'sim') is not installed")

from xmod_core.baselines import ClusterConfig, clusters_to_image, euclidean_clusters, ground_mask  # noqa: E402
from xmod_core.evaluate import evaluate, main, tables  # noqa: E402
from xmod_core.kitti import KittiRawDrive  # noqa: E402
from xmod_core.model import DIOD, ModelConfig  # noqa: E402
from xmod_core.sim.rig import Rig  # noqa: E402
from xmod_core.sim.writer import simulate_drive  # noqa: E402
from xmod_core.stages import student_config  # noqa: E402
from xmod_core.train import export_student  # noqa: E402


@pytest.fixture(scope="module")
def sim_drive(tmp_path_factory):
    drive = simulate_drive(tmp_path_factory.mktemp("eval"), 21, 0, 3, Rig.scaled(0.4), preview=False)
    # motion masks: the ground truth of the moving objects, so the baseline's numbers are known
    (drive / "image_02/motion_masks").mkdir(parents=True)
    for f in sorted((drive / "instance_02/data").glob("*.png")):
        gt = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        moving = [o["id"] for o in json.loads((drive / "objects/data" / f"{f.stem}.json").read_text())["objects"] if o["moving"]]
        cv2.imwrite(str(drive / "image_02/motion_masks" / f.name), np.where(np.isin(gt, moving), gt, 0).astype(np.uint16))
    return drive


@pytest.fixture(scope="module")
def students(tmp_path_factory):
    d = tmp_path_factory.mktemp("st")
    cfg = ModelConfig(widths=(8, 8, 8, 8, 8), blocks=(1, 1, 1, 1), num_slots=4, slot_dim=16, mlp_hidden=32, gru_hidden=16,
                      decoder_channels=8, norm="group")
    torch.manual_seed(0)
    for m in ("rgb", "lidar"):
        export_student(d / f"{m}.pt", "test", m, cfg, DIOD(student_config(cfg, m)).state_dict(), {})
    return d


def test_lidar_clustering_finds_objects_and_drops_ground(sim_drive):
    d = KittiRawDrive(sim_drive)
    scan = d.scan(0)
    gt = (np.fromfile(sim_drive / "velodyne_labels/data/0000000000.label", np.uint32) & 0xFFFF)
    ground = ground_mask(scan, ClusterConfig())
    road = np.isin(gt, [40, 48, 72])
    assert (ground & road).sum() / road.sum() > 0.9 and (ground & ~road).sum() / ground.sum() < 0.05
    labels = euclidean_clusters(scan)
    assert labels.max() >= 3
    assert (road & (labels > 0)).sum() / (labels > 0).sum() < 0.05              # clusters are not road
    objects = (gt == 10) | (gt == 18) | (gt == 30) | (gt == 31)
    assert (objects & (labels > 0)).sum() / (labels > 0).sum() > 0.5            # mostly objects
    img = clusters_to_image(scan, labels, d.calib, d.calib.height, d.calib.width)
    assert img.shape == (d.calib.height, d.calib.width) and set(np.unique(img)) <= set(np.unique(labels))
    assert (euclidean_clusters(np.zeros((0, 4), np.float32)) == 0).all()


def test_evaluator_table_and_baselines(sim_drive, students, tmp_path):
    res = evaluate([sim_drive], ["rgb", "lidar", "fused"], str(students / "rgb.pt"), str(students / "lidar.pt"),
                   height=32, width=96, device="cpu", progress=False)
    assert set(res) == {"2d_grid", "2d_full", "2d_box", "3d"}
    for dom in res.values():
        assert set(dom) == {"motion masks", "LiDAR clustering", "DIOD 2D (rgb)", "DIOD-3D (lidar)", "fused"}
    motion = res["2d_full"]["motion masks"]
    # the motion masks here are exactly the moving objects: perfect precision, every moving object found
    assert motion["precision"] == 1.0 and motion["recall_moving"] == 1.0
    assert motion["recall_still"] == 0.0
    # boxes around those masks are the boxes around the moving objects' masks: the same counts
    box = res["2d_box"]["motion masks"]
    assert box["precision"] == 1.0 and box["recall_moving"] == 1.0 and box["recall_still"] == 0.0
    assert box["fg_ari"] is None and box["recall"] == motion["recall"]
    assert res["2d_full"]["LiDAR clustering"]["f1"] > 0.2
    md = tables(res, "t")
    assert "| LiDAR clustering |" in md and "FG-ARI" in md and "R >=10k px" in md
    sized = res["2d_full"]["LiDAR clustering"]["recall_by_size"]
    assert sum(n for _, n in sized.values()) > 0 and all(r is None or 0 <= r <= 1 for r, _ in sized.values())
    assert main(["--data", str(sim_drive), "--ckpt-2d", str(students / "rgb.pt"), "--ckpt-3d", str(students / "lidar.pt"),
                 "--mode", "rgb", "--height", "32", "--width", "96", "--device", "cpu", "--out", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o/results.json").read_text())["3d"]["DIOD 2D (rgb)"]["fps"] > 0
    # one mode under another name, without the baselines: the same figures as above
    only = evaluate([sim_drive], ["rgb"], str(students / "rgb.pt"), None, height=32, width=96, device="cpu",
                    progress=False, baselines=False, names={"rgb": "my row"})
    for dom in res:
        assert list(only[dom]) == ["my row"]
        assert {k: v for k, v in only[dom]["my row"].items() if k != "fps"} == \
            {k: v for k, v in res[dom]["DIOD 2D (rgb)"].items() if k != "fps"}


def test_paper_table_claims_are_judged_on_both_metrics():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from bench_xmod_table import claims
    row = lambda f1, ari, still=0.0: {"2d_grid": {"f1": f1, "fg_ari": ari, "recall_still": still}}
    res = {"xMOD 2D": row(0.3, 0.5), "DIOD 2D (ts)": row(0.3, 0.4), "xMOD fused": row(0.2, 0.6, 0.3),
           "xMOD 3D": row(None, 0.7), "motion masks": row(0.5, 0.3, 0.0), "xMOD same-modal fused": row(0.2, 0.6)}
    out = {line.split(":")[0][2:]: line for line in claims(res, "2d_grid")}
    assert "holds" in out["xMOD 2D >= DIOD 2D"]                 # >= on a tie in F1, better FG-ARI
    assert "mixed" in out["fused > 2D alone"]                   # worse F1, better FG-ARI
    assert "n/a" in out["fused > 3D alone"]                     # a missing metric is not a zero
    assert "refuted" in out["cross-modal > same-modal (fused)"]  # strict claim, a tie on both
    assert "holds" in out["learned rows recall more still objects than the motion masks"]
    assert "xMOD 3D >= DIOD-3D" not in out                      # rows not there: no verdict


def test_evaluator_needs_ground_truth(tmp_path):
    from conftest import make_tiny_drive
    drive = make_tiny_drive(tmp_path)
    assert main(["--data", str(drive), "--device", "cpu"]) == 2


def test_cli_passes_the_fragments_settings_to_the_predictor(sim_drive, monkeypatch, tmp_path):
    import xmod_core.evaluate as E
    seen = {}
    monkeypatch.setattr(E, "evaluate", lambda *a, predictor_overrides=None, baselines=True, **kw:
                        seen.update(predictor_overrides, baselines=baselines) or {})
    monkeypatch.setattr(E, "tables", lambda *a, **kw: "")
    E.main(["--data", str(sim_drive), "--out", str(tmp_path / "o")])
    assert seen["baselines"] is True
    E.main(["--data", str(sim_drive), "--no-baselines", "--out", str(tmp_path / "o")])
    assert seen["baselines"] is False                                                         # the modes only
    assert seen["fragments"] == "largest" and seen["hybrid_fragments"] == "keep"           # the Predictor's defaults
    E.main(["--data", str(sim_drive), "--fragments", "keep", "--hybrid-fragments", "largest", "--out", str(tmp_path / "o")])
    assert seen["fragments"] == "keep" and seen["hybrid_fragments"] == "largest"
    assert seen["min_score"] is None                                                          # each student's own
    E.main(["--data", str(sim_drive), "--min-score", "0.7", "--out", str(tmp_path / "o")])
    assert seen["min_score"] == 0.7
    assert seen["zoom_tiles"] == 0 and seen["zoom_claimed"] == 0.75 and seen["zoom_min_score"] == 0.7   # off; defaults
    E.main(["--data", str(sim_drive), "--zoom-tiles", "3", "--zoom-claimed", "0.5", "--zoom-min-score", "0.6",
            "--zoom-min-pixels", "30", "--zoom-lidar", "upsample", "--out", str(tmp_path / "o")])
    assert {k: seen[k] for k in seen if k.startswith("zoom_")} == {
        "zoom_tiles": 3, "zoom_claimed": 0.5, "zoom_min_score": 0.6, "zoom_min_pixels": 30, "zoom_lidar": "upsample",
        "zoom_ckpt_2d": "", "zoom_ckpt_3d": ""}
    assert seen["hybrid_far"] is False and seen["mirror"] is False                          # off by default
    E.main(["--data", str(sim_drive), "--hybrid-far", "--mirror", "--zoom-ckpt-2d", "fine", "--zoom-ckpt-3d", "a.pt",
            "--out", str(tmp_path / "o")])
    assert seen["hybrid_far"] is True and seen["mirror"] is True
    assert seen["zoom_ckpt_2d"] == "fine" and seen["zoom_ckpt_3d"] == "a.pt"


def test_learning_curve_scores_each_snapshot_once_and_plots(sim_drive, students, tmp_path, monkeypatch):
    """bench_learning_curve: every snapshot (weights and EMA) scored per set, the scores cached so a
    second call scores only new snapshots; a run without snapshots is named."""
    import shutil
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import bench_learning_curve as lc
    run = tmp_path / "run"
    (run / "snapshots").mkdir(parents=True)
    for name in ("student_lidar_2.pt", "student_lidar_ema_2.pt", "student_lidar_4.pt", "notes.pt"):
        shutil.copy(students / "lidar.pt", run / "snapshots" / name)
    assert [(s, m, e) for s, m, e, _ in lc.snapshots(run)] == [(2, "lidar", False), (2, "lidar", True), (4, "lidar", False)]
    calls = []
    real = lc.evaluate
    monkeypatch.setattr(lc, "evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    cache = tmp_path / "curve.json"
    done = lc.score_all(run, {"val": str(sim_drive)}, cache)
    assert sorted(done["val"]) == ["2", "2 ema", "4"] and len(calls) == 3
    assert 0.0 <= done["val"]["4"]["f1"] <= 1.0 and "recall_still" in done["val"]["4"]
    shutil.copy(students / "lidar.pt", run / "snapshots" / "student_lidar_6.pt")
    done = lc.score_all(run, {"val": str(sim_drive)}, cache)
    assert sorted(done["val"]) == ["2", "2 ema", "4", "6"] and len(calls) == 4         # only the new one scored
    lc.plot(done, tmp_path / "curve.png", "run")
    img = cv2.imread(str(tmp_path / "curve.png"))
    assert img is not None and (img < 200).any()
    with pytest.raises(FileNotFoundError, match="export_every"):
        lc.snapshots(tmp_path)


def test_burn_in_bench_pools_every_data_glob(sim_drive, tmp_path, monkeypatch, capsys):
    """bench_burn_in --data takes several globs (validation seeds 77-80) and scores their drives
    pooled, in one evaluation."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import bench_burn_in as bb
    from conftest import make_tiny_drive
    other = make_tiny_drive(tmp_path)
    seen = []
    monkeypatch.setattr(bb, "evaluate", lambda drives, *a, **k: seen.append(list(drives)) or {})
    bb.main(["--data", str(sim_drive), str(other)])
    assert len(seen) == 1 and sorted(map(str, seen[0])) == sorted([str(sim_drive), str(other)])
    assert "2 drives" in capsys.readouterr().out


def test_simulated_boxes_score_extent_not_shape():
    """The 2d_box domain matches boxes: a predicted filled square over a ring-shaped object misses in
    the mask domain (IoU 0.36) and hits in the box domain (IoU 1); a box half off does not."""
    from xmod_core.evaluate import _Row
    from xmod_core.metrics import instance_boxes
    gt = np.zeros((40, 60), np.int64)
    gt[5:25, 5:25] = 1
    gt[7:23, 7:23] = 0                                                         # a ring: 144 of 400 pixels
    pred = np.zeros_like(gt)
    pred[5:25, 5:25] = 4
    pred[5:25, 40:52] = 7                                                      # nothing there
    r = _Row()
    r.add("2d_full", gt, pred, {4: 0.9, 7: 0.8}, [], [1], {1: 144})
    r.add_boxes(instance_boxes(gt), instance_boxes(pred), {4: 0.9, 7: 0.8}, [], [1], {1: 144})
    mask, box = r.result("2d_full"), r.result("2d_box")
    assert (mask["f1"], mask["recall"]) == (0.0, 0.0)
    assert box["recall"] == 1.0 and box["precision"] == 0.5 and box["recall_moving"] == 1.0
    assert box["fg_ari"] is None and box["recall_by_size"]["<1k"] == (1.0, 1)
    shifted = np.zeros_like(gt)
    shifted[5:25, 15:35] = 4                                                   # box IoU 10*20 / (2*400 - 200) = 1/3
    r2 = _Row()
    r2.add_boxes(instance_boxes(gt), instance_boxes(shifted), {4: 0.9}, [], [], {1: 144})
    assert r2.result("2d_box")["f1"] == 0.0 and r2.result("2d_box")["recall_still"] == 0.0


def test_kitti_convention_boxes_and_box_sources(sim_drive, students):
    """--gt-boxes kitti scores against the image rectangles of the objects' 3D boxes: the motion
    masks' boxes (visible parts) match fewer of them than of the boxes around the masks, or as
    many; --box-source 3d gives the clustering row the projected boxes of its clusters; bad
    conventions are named."""
    from xmod_core.evaluate import _cluster_boxes
    from xmod_core.clusters import cluster_objects
    from xmod_core.image_boxes import frame_boxes
    kw = dict(height=32, width=96, device="cpu", progress=False)
    masks = evaluate([sim_drive], [], **kw)["2d_box"]
    kitti = evaluate([sim_drive], [], gt_boxes="kitti", **kw)["2d_box"]
    assert kitti["motion masks"]["recall"] <= masks["motion masks"]["recall"]
    d = KittiRawDrive(sim_drive)
    scan = d.scan(0)
    cl = euclidean_clusters(scan)
    img = clusters_to_image(scan, cl, d.calib, d.calib.height, d.calib.width)
    ids, boxes = _cluster_boxes(scan, cl, img, d.calib, "3d")
    want = frame_boxes(img, cluster_objects(scan, cl, min_points=1, depth_gate=0.0)[0], d.calib, "3d")
    assert (ids == want[0]).all() and np.allclose(boxes, want[1])
    mids, mboxes = _cluster_boxes(scan, cl, img, d.calib, "mask")
    common = np.intersect1d(ids, mids)
    assert len(common) and not np.allclose(boxes[np.isin(ids, common)], mboxes[np.isin(mids, common)])
    with pytest.raises(ValueError, match="gt_boxes"):
        evaluate([sim_drive], [], gt_boxes="hull", **kw)


def test_ground_points_tool_drops_only_ground_and_scores_both(sim_drive, students, capsys, monkeypatch):
    import sys
    from pathlib import Path
    from types import SimpleNamespace
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import ground_points as G
    from xmod_core.evaluate import sim_point_ids
    labels = np.array([0, 3, 3, 3, 5, 5])
    ground = np.array([True, True, False, False, True, False])
    assert G.drop_ground(labels, ground).tolist() == [0, 0, 3, 3, 0, 5]
    with pytest.raises(ValueError, match="differ in shape"):
        G.drop_ground(labels, ground[:3])
    # a stand-in student: every object exactly, plus the road (the ground plane's points that are no
    # object) claimed by the first object of the frame; the tool's ground mask is that road, so as
    # predicted that object's mask is mostly road (IoU < 0.5) and with the ground cut all is found
    drive = KittiRawDrive(sim_drive)
    seen = {}

    class RoadGrabber:
        def __init__(self, cfg, calib):
            self.t = 0

        def __call__(self, points, stamp):
            gt = sim_point_ids(sim_drive, drive.frame_ids[self.t])
            self.t += 1
            seen["road"] = road = ground_mask(points, ClusterConfig()) & (gt == 0)
            lab = np.where(road, gt[gt > 0].min(), gt)
            return SimpleNamespace(point_labels=lab.astype(np.uint16), scores={int(i): 1.0 for i in np.unique(lab) if i})

    monkeypatch.setattr(G, "Predictor", RoadGrabber)
    monkeypatch.setattr(G, "ground_mask", lambda points, cfg: seen["road"])
    r = G.measure([sim_drive], None)
    assert r["ground_of_background"] == 1.0 and 0 < r["background"] < 1
    assert r["as_is"]["f1"] < 1.0                                # the road-grabbing instance is wrong as predicted
    assert r["no_ground"]["f1"] == r["no_ground"]["precision"] == r["no_ground"]["recall"] == 1.0
    assert G.main([str(sim_drive) + "/nothing*"]) == 2 and "no drive matches" in capsys.readouterr().err


def test_miss_causes_cli_counts_every_scored_object(sim_drive, students, tmp_path, capsys):
    """tools/miss_causes.py over a drive: every object of a scored frame (--every 2) from --min-area
    up (its area at 1242x375) is counted once, in one bin and one cause."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("miss_causes", Path(__file__).parents[1] / "tools/miss_causes.py")
    mc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mc)
    out = tmp_path / "m.json"
    assert mc.main([str(sim_drive), "--mode", "lidar", "--ckpt-3d", str(students / "lidar.pt"), "--every", "2",
                    "--min-area", "300", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    frames = sorted((sim_drive / "instance_02/data").glob("*.png"))[::2]
    want = 0
    for f in frames:
        gt = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        area = np.bincount(gt.ravel().astype(np.int64))[1:] * (1242 * 375 / gt.size)
        want += int((area >= 300).sum())
    assert r["frames"] == len(frames) and np.sum(r["counts"]) == want > 0
    assert "| 1k-3k |" in capsys.readouterr().out
    # still and moving objects (the simulator's flag in that frame) split the same objects in two
    split = {}
    for kind in ("still", "moving"):
        assert mc.main([str(sim_drive), "--mode", "lidar", "--ckpt-3d", str(students / "lidar.pt"), "--every", "2",
                        "--min-area", "300", "--objects", kind, "--json", str(out)]) == 0
        split[kind] = np.array(json.loads(out.read_text())["counts"])
    assert (split["still"] + split["moving"] == np.array(r["counts"])).all()
    moving = sum(int(np.isin(np.unique(cv2.imread(str(f), cv2.IMREAD_UNCHANGED)),
                             [o["id"] for o in json.loads((sim_drive / "objects/data" / f"{f.stem}.json").read_text())["objects"]
                              if o["moving"]]).sum()) for f in frames)
    assert split["moving"].sum() <= moving and split["moving"].sum() > 0 and split["still"].sum() > 0


def test_slot_arguments_reach_the_predictor_config():
    """evaluate / car_ahead / miss_causes share the slot instances' trims and checks: parsed values map
    onto PredictorConfig fields, the defaults are the Predictor's."""
    import argparse
    from xmod_core.evaluate import add_slot_arguments, slot_overrides
    from xmod_core.predictor import PredictorConfig
    ap = argparse.ArgumentParser()
    add_slot_arguments(ap)
    default = slot_overrides(ap.parse_args([]))
    assert default == {f: getattr(PredictorConfig, f) for f in default} and len(default) == 6
    got = slot_overrides(ap.parse_args(["--rescue-iou", "0", "--rescue-min-score", "0.45", "--no-part-road",
                                        "--part-voxel", "0.3", "--grid-depth-gate", "2", "--fused-min-score-3d", "0.55"]))
    assert got == {"rescue_iou": 0.0, "rescue_min_score": 0.45, "part_road": False, "part_voxel_m": 0.3,
                   "grid_depth_gate_m": 2.0, "fused_min_score_3d": 0.55}
    PredictorConfig(**got)                                     # every key a field
