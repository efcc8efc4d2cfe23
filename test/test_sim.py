"""Simulator: determinism, ground-truth consistency between LiDAR and camera, the KITTI reader on
its output, scene diversity (moving and still objects of every class, ego still/straight/turn)."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("pybullet", reason="pybullet (extra 'sim') is not installed")

from xmod_core.frontview import project_scan  # noqa: E402
from xmod_core.kitti import KittiRawDrive, load_calib  # noqa: E402
from xmod_core.sim import main as sim_main  # noqa: E402
from xmod_core.sim.rig import Rig  # noqa: E402
from xmod_core.sim.scene import CLASS_IDS, OBJECT_CLASSES, generate  # noqa: E402
from xmod_core.sim.writer import (GT_INSTANCE_DIR, GT_LABEL_DIR, GT_OBJECT_DIR, ego_motion_labels,  # noqa: E402
                                  sequence_rngs, simulate_drive)

FRAMES, SCALE, SEED = 4, 0.5, 7


@pytest.fixture(scope="module")
def drive(tmp_path_factory) -> Path:
    return simulate_drive(tmp_path_factory.mktemp("sim"), SEED, 0, FRAMES, Rig.scaled(SCALE), preview=True)


def test_layout_and_reader_round_trip(drive):
    d = KittiRawDrive(drive)
    rig = Rig.scaled(SCALE)
    assert len(d) == FRAMES and d.frame_ids == [f"{i:010d}" for i in range(FRAMES)]
    assert d.image(0).shape == (rig.height, rig.width, 3) and d.image(0).dtype == np.uint8
    scan = d.scan(1)
    assert scan.dtype == np.float32 and scan.shape[1] == 4 and len(scan) > 100_000   # a full 64-beam sweep
    assert np.isfinite(scan).all() and (np.hypot(scan[:, 0], scan[:, 1]) <= 121).all()
    np.testing.assert_allclose(np.diff(d.timestamps), 0.1, atol=1e-6)
    calib = load_calib(drive)
    np.testing.assert_allclose(calib.P_rect, rig.P_rect_02, rtol=1e-8)
    assert (calib.width, calib.height) == (rig.width, rig.height)
    # oxts round trip: reader's LiDAR poses (relative to frame 0) equal the simulator's world poses
    frames = [json.loads((drive / GT_OBJECT_DIR / "data" / f"{i:010d}.json").read_text()) for i in range(FRAMES)]
    world = np.array([f["ego"]["pose_world"] for f in frames])
    imu0 = world[0] @ rig.T_imu_to_velo
    np.testing.assert_allclose(d.velo_poses, np.linalg.inv(imu0) @ world, atol=1e-4)
    assert (drive / "preview.png").is_file()
    assert cv2.imread(str(drive / "preview.png")).shape == (3 * rig.height, rig.width, 3)


def test_ground_truth_lidar_agrees_with_camera(drive):
    """Points labelled with instance k project into pixels labelled k in >= 90% of visible cases."""
    d = KittiRawDrive(drive)
    agree = total = 0
    for i in range(FRAMES):
        inst_img = cv2.imread(str(drive / GT_INSTANCE_DIR / "data" / f"{i:010d}.png"), cv2.IMREAD_UNCHANGED)
        assert inst_img.dtype == np.uint16
        labels = np.fromfile(drive / GT_LABEL_DIR / "data" / f"{i:010d}.label", np.uint32)
        scan = d.scan(i)
        assert len(labels) == len(scan)
        inst = labels >> 16
        fv = project_scan(scan, d.calib, *inst_img.shape)
        pp = fv.point_pixel
        visible = (pp >= 0) & (inst > 0)
        visible[visible] = fv.pixel_point.reshape(-1)[pp[visible]] == np.flatnonzero(visible)  # z-buffer winner
        agree += int((inst_img.reshape(-1)[pp[visible]] == inst[visible]).sum())
        total += int(visible.sum())
    assert total > 500, total
    assert agree / total >= 0.9, f"{agree}/{total}"


def test_labels_and_objects_are_consistent(drive):
    valid_classes = set(CLASS_IDS.values())
    object_ids = {CLASS_IDS[c] for c in OBJECT_CLASSES}
    for i in range(FRAMES):
        labels = np.fromfile(drive / GT_LABEL_DIR / "data" / f"{i:010d}.label", np.uint32)
        cls, inst = labels & 0xFFFF, labels >> 16
        assert set(np.unique(cls).tolist()) <= valid_classes
        assert set(np.unique(cls[inst > 0]).tolist()) <= object_ids          # instances only on objects
        assert set(np.unique(cls[inst == 0]).tolist()).isdisjoint(object_ids)  # every object point has an id
        frame = json.loads((drive / GT_OBJECT_DIR / "data" / f"{i:010d}.json").read_text())
        by_id = {o["id"]: o for o in frame["objects"]}
        for k in np.unique(inst[inst > 0]):
            assert CLASS_IDS[by_id[int(k)]["class"]] == int(np.bincount(cls[inst == k]).argmax())
        for o in frame["objects"]:
            assert o["moving"] == (o["speed"] > 0.25)


def test_deterministic_for_a_seed(drive, tmp_path):
    again = simulate_drive(tmp_path, SEED, 0, FRAMES, Rig.scaled(SCALE), preview=False)
    for sub in ("image_02/data", "velodyne_points/data", GT_INSTANCE_DIR + "/data", GT_LABEL_DIR + "/data",
                GT_OBJECT_DIR + "/data", "oxts/data"):
        a, b = sorted((drive / sub).iterdir()), sorted((again / sub).iterdir())
        assert [p.name for p in a] == [p.name for p in b]
        for p, q in zip(a, b):
            assert p.read_bytes() == q.read_bytes(), p
    other = simulate_drive(tmp_path / "other", SEED + 1, 0, 1, Rig.scaled(SCALE), preview=False)
    assert (other / "image_02/data/0000000000.png").read_bytes() != (drive / "image_02/data/0000000000.png").read_bytes()


def test_lidar_worker_process_gives_identical_sweeps(drive, tmp_path):
    split = simulate_drive(tmp_path, SEED, 0, FRAMES, Rig.scaled(SCALE), preview=False, lidar_process=True)
    for i in range(FRAMES):
        name = f"{i:010d}"
        assert (split / f"velodyne_points/data/{name}.bin").read_bytes() == (drive / f"velodyne_points/data/{name}.bin").read_bytes()
        assert (split / f"{GT_LABEL_DIR}/data/{name}.label").read_bytes() == (drive / f"{GT_LABEL_DIR}/data/{name}.label").read_bytes()


def test_scene_diversity():
    """Over a few seeds: every object class, moving and still objects, ego still/straight/turn."""
    classes, moving, still, ego = set(), 0, 0, set()
    for seed in range(12):
        scene = generate(sequence_rngs(seed, 0)[0], 60)
        for b in scene.objects:
            classes.add(b.cls)
            speed = np.hypot(np.diff(b.x), np.diff(b.y)) / 0.1
            moving += bool(speed.max() > 0.5)
            still += bool(speed.max() == 0)
        ego |= set(ego_motion_labels(scene)[1])
        assert (scene.ego_speed >= 0).all() and (scene.ego_speed <= 15).all()
    assert classes == set(OBJECT_CLASSES)
    assert moving > 50 and still > 50
    assert ego == {"still", "straight", "turn"}


def test_cli_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        sim_main(["--frames", "0", "--out", str(tmp_path)])
    assert "--frames must be at least 1" in capsys.readouterr().err
    assert sim_main(["--out", str(tmp_path), "--frames", "1", "--scale", "0.2", "--no-preview", "--seed", "3"]) == 0
    drives = list(tmp_path.glob("*/*_drive_0000_sync"))
    assert len(drives) == 1 and (drives[0] / "image_02/data/0000000000.png").is_file()
    assert not (drives[0] / "preview.png").exists()


def test_street_clutter_adds_only_static_furniture_beside_the_road():
    """`clutter: street` keeps a seed's basic scene and adds object-sized static furniture off the
    road, inside clustering's size window (so it is a confuser), of the furniture classes."""
    from xmod_core.baselines import ClusterConfig
    from xmod_core.sim.scene import KERBSIDE, SIDEWALK
    with pytest.raises(ValueError, match="clutter must be one of"):
        generate(sequence_rngs(0, 0)[0], 5, "dense")
    size = ClusterConfig()
    added = 0
    for seed in range(3):
        basic = generate(sequence_rngs(seed, 0)[0], 20)
        street = generate(sequence_rngs(seed, 0)[0], 20, "street")
        old = [(b.cls, b.instance, float(b.x[0]), float(b.y[0])) for b in basic.bodies]
        new = [(b.cls, b.instance, float(b.x[0]), float(b.y[0])) for b in street.bodies]
        extra = [b for b in street.bodies if (b.cls, b.instance, float(b.x[0]), float(b.y[0])) not in set(old)]
        assert [k for k in new if k in set(old)] == old                      # the basic scene, untouched
        assert len(extra) > 40
        added += len(extra)
        for b in extra:
            assert b.instance == 0 and b.static and b.cls in KERBSIDE
            assert street.route.lateral(np.array([[b.x[0], b.y[0]]]))[0] >= SIDEWALK[0] + 0.2   # never on the road
            lo = np.array([np.asarray(p.centre) - np.asarray(p.half) for p in b.parts]).min(0)
            hi = np.array([np.asarray(p.centre) + np.asarray(p.half) for p in b.parts]).max(0)
            assert size.min_height <= hi[2] - lo[2] <= size.max_height
            assert min(hi[:2] - lo[:2]) <= size.max_width
    assert added > 150


def test_street_clutter_drive_gives_more_clusters(drive, tmp_path):
    """A `street` drive of the same seed: its LiDAR sees the furniture classes, and object
    clustering finds more clusters that are no object than in the basic drive."""
    from xmod_core.baselines import euclidean_clusters
    street = simulate_drive(tmp_path, SEED, 0, 1, Rig.scaled(SCALE), preview=False, clutter="street")
    assert json.loads((street / "sim.json").read_text())["clutter"] == "street"
    false_clusters = []
    for d in (drive, street):
        scan = KittiRawDrive(d).scan(0)
        labels = np.fromfile(d / GT_LABEL_DIR / "data" / "0000000000.label", np.uint32)
        cl = euclidean_clusters(scan)
        inst = (labels >> 16).astype(np.int64)
        object_share = np.bincount(cl, inst > 0) / np.maximum(np.bincount(cl), 1)
        false_clusters.append(int((object_share[1:][np.bincount(cl)[1:] > 0] < 0.5).sum()))
        if d == street:
            assert {CLASS_IDS["traffic-sign"], CLASS_IDS["other-object"]} <= set((labels & 0xFFFF).tolist())
    assert false_clusters[1] > false_clusters[0] + 5, false_clusters


def test_cluster_count_tool(drive, tmp_path, capsys):
    """tools/cluster_count.py: one row per glob with the frames it used; a glob without drives is
    an error naming it."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("cluster_count", Path(__file__).parents[1] / "tools/cluster_count.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main([str(drive), "--every", "2"]) == 0
    row = capsys.readouterr().out.strip().splitlines()[-1].split("|")
    assert row[2].strip() == str(len(range(0, FRAMES, 2))) and float(row[3]) > 0
    scans = [len(KittiRawDrive(drive).scan(t)) for t in range(0, FRAMES, 2)]
    assert int(row[5].replace(",", "")) == round(np.mean(scans))
    with pytest.raises(SystemExit):
        tool.main([str(tmp_path / "nothing")])
    assert "no drive matches" in capsys.readouterr().err


def test_object_density_drops_objects_only(capsys, tmp_path):
    """`object_density` keeps a share of the objects and every piece of clutter; 1 is the scene as
    it was; values outside (0, 1] are errors (library and CLI)."""
    full_n = sparse_n = 0
    for seed in range(4):
        full = generate(sequence_rngs(seed, 0)[0], 20, "street")
        same = generate(sequence_rngs(seed, 0)[0], 20, "street", 1.0)
        sparse = generate(sequence_rngs(seed, 0)[0], 20, "street", 0.25)
        assert [b.instance for b in same.bodies] == [b.instance for b in full.bodies]
        key = lambda b: (b.cls, float(b.x[0]), float(b.y[0]))             # noqa: E731
        assert [key(b) for b in sparse.bodies if not b.instance] == [key(b) for b in full.bodies if not b.instance]
        assert {b.instance for b in sparse.objects} <= {b.instance for b in full.objects}
        full_n, sparse_n = full_n + len(full.objects), sparse_n + len(sparse.objects)
    assert 0.15 < sparse_n / full_n < 0.35, (sparse_n, full_n)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="object_density"):
            generate(sequence_rngs(0, 0)[0], 5, "basic", bad)
    with pytest.raises(SystemExit):
        sim_main(["--out", str(tmp_path), "--object-density", "0"])
    assert "--object-density must be within (0, 1]" in capsys.readouterr().err


def _parked_gaps(scene) -> np.ndarray:
    """Per parked vehicle (still car or truck on a parking strip): the free kerb to its nearest
    parked neighbour, centre distance minus both half lengths."""
    from xmod_core.sim.scene import PARK_D
    cars = [b for b in scene.objects if b.static and b.cls in ("car", "truck")]
    xy = np.array([[b.x[0], b.y[0]] for b in cars]).reshape(-1, 2)
    cars = [c for c, lat in zip(cars, scene.route.lateral(xy)) if abs(lat - PARK_D) < 0.5]
    xy = np.array([[b.x[0], b.y[0]] for b in cars])
    half = np.array([b.size[0] / 2 for b in cars])
    gap = np.linalg.norm(xy[:, None] - xy[None], axis=-1) - half[:, None] - half[None]
    np.fill_diagonal(gap, np.inf)
    return gap.min(1)


def test_tight_parking_lines_the_kerb_bumper_to_bumper():
    """`parking="tight"`: rows of parked vehicles 0.3-1.2 m apart (every one has a neighbour that
    close) and more of them than the `sparse` bays, where most stand metres apart; the CLI names a
    wrong choice."""
    tight, sparse = [], []
    for seed in range(3):
        tight.append(_parked_gaps(generate(sequence_rngs(seed, 0)[0], 20, parking="tight")))
        sparse.append(_parked_gaps(generate(sequence_rngs(seed, 0)[0], 20)))
    tight, sparse = np.concatenate(tight), np.concatenate(sparse)
    close = lambda g: float(np.mean((g > 0.25) & (g < 1.25)))          # noqa: E731
    assert close(tight) > 0.95 and close(sparse) < 0.3, (close(tight), close(sparse))
    assert len(tight) > 1.5 * len(sparse)
    with pytest.raises(ValueError, match="parking"):
        generate(sequence_rngs(0, 0)[0], 5, parking="full")


def test_cli_parking_reaches_the_drive(tmp_path, capsys):
    """`--parking tight` through the CLI's worker jobs: the drive is the tight scene (its sim.json
    says so, its objects are that scene's); a wrong choice is named."""
    with pytest.raises(SystemExit):
        sim_main(["--out", str(tmp_path), "--parking", "full"])
    assert "--parking: invalid choice: 'full'" in capsys.readouterr().err
    assert sim_main(["--out", str(tmp_path), "--frames", "1", "--scale", "0.2", "--no-preview", "--seed", "3",
                     "--parking", "tight"]) == 0
    drive = next(tmp_path.glob("*/*_drive_0000_sync"))
    assert json.loads((drive / "sim.json").read_text())["parking"] == "tight"
    objs = json.loads((drive / GT_OBJECT_DIR / "data" / "0000000000.json").read_text())["objects"]
    sizes = lambda scene: {b.instance: np.round(b.size, 4).tolist() for b in scene.objects}   # noqa: E731
    tight, sparse = sizes(generate(sequence_rngs(3, 0)[0], 1, parking="tight")), sizes(generate(sequence_rngs(3, 0)[0], 1))
    written = {o["id"]: o["box_world"]["size"] for o in objs}
    assert written and all(tight[i] == size for i, size in written.items())         # the tight scene's objects
    assert any(sparse.get(i) != size for i, size in written.items())                # not the sparse scene's


def test_clutter_and_density_reach_the_lidar_process(tmp_path):
    """With the LiDAR in a second process (the CLI's choice for one drive) the worker rebuilds the
    same `street`, object-sparse, tightly parked scene as the camera's: identical scans and labels,
    and no point labelled with an object the scene dropped."""
    kw = dict(preview=False, clutter="street", object_density=0.5, parking="tight")
    one = simulate_drive(tmp_path / "one", SEED, 0, 2, Rig.scaled(0.2), **kw)
    two = simulate_drive(tmp_path / "two", SEED, 0, 2, Rig.scaled(0.2), lidar_process=True, **kw)
    meta = json.loads((two / "sim.json").read_text())
    assert (meta["clutter"], meta["object_density"], meta["parking"]) == ("street", 0.5, "tight")
    kept = {b.instance for b in generate(sequence_rngs(SEED, 0)[0], 2, "street", 0.5, "tight").objects}
    dropped = {b.instance for b in generate(sequence_rngs(SEED, 0)[0], 2, "street", 1.0, "tight").objects} - kept
    assert dropped
    for i in range(2):
        name = f"{i:010d}"
        for sub in (f"velodyne_points/data/{name}.bin", f"{GT_LABEL_DIR}/data/{name}.label"):
            assert (one / sub).read_bytes() == (two / sub).read_bytes(), sub
        labels = np.fromfile(two / GT_LABEL_DIR / "data" / f"{name}.label", np.uint32)
        seen = set((labels >> 16).tolist()) - {0}
        assert seen and seen <= kept and not seen & dropped
        assert CLASS_IDS["other-object"] in set((labels & 0xFFFF).tolist())


def test_azimuth_step_reaches_the_lidar_and_halves_the_scan(tmp_path, capsys):
    """`--azimuth-step 0.18` (KITTI's real point count) fires each beam half as often: about half the
    points of the default scan, in the LiDAR worker process too, and the same camera image."""
    kw = dict(preview=False)
    dense = simulate_drive(tmp_path / "dense", SEED, 0, 1, Rig.scaled(0.2), **kw)
    sparse = simulate_drive(tmp_path / "sparse", SEED, 0, 1, Rig.scaled(0.2, 0.18), lidar_process=True, **kw)
    n = [len(np.fromfile(d / "velodyne_points/data/0000000000.bin", np.float32)) // 4 for d in (dense, sparse)]
    assert 0.45 < n[1] / n[0] < 0.55
    assert json.loads((sparse / "sim.json").read_text())["azimuth_step"] == 0.18
    assert (dense / "image_02/data/0000000000.png").read_bytes() == (sparse / "image_02/data/0000000000.png").read_bytes()
    with pytest.raises(SystemExit):
        sim_main(["--out", str(tmp_path), "--azimuth-step", "0"])
    assert "--azimuth-step must be within" in capsys.readouterr().err
    with pytest.raises(ValueError, match="azimuth step"):
        Rig(azimuth_step=5.0)


def test_foliage_depth_scatters_only_the_vegetation_returns(tmp_path, capsys):
    """`--foliage-depth D`: a return from a bush or a tree crown comes from inside it, D metres deeper
    on average (exponential, capped at 3 D) along its ray; every other return is where it was, and
    the camera image is unchanged."""
    hard = simulate_drive(tmp_path / "hard", SEED, 0, 1, Rig.scaled(0.2, 0.36), preview=False)
    leafy = simulate_drive(tmp_path / "leafy", SEED, 0, 1, Rig.scaled(0.2, 0.36, 0.5), preview=False, lidar_process=True)
    scan = {k: np.fromfile(d / "velodyne_points/data/0000000000.bin", np.float32).reshape(-1, 4) for k, d in
            (("hard", hard), ("leafy", leafy))}
    cls = np.fromfile(hard / GT_LABEL_DIR / "data/0000000000.label", np.uint32) & 0xFFFF
    assert (cls == (np.fromfile(leafy / GT_LABEL_DIR / "data/0000000000.label", np.uint32) & 0xFFFF)).all()
    veg = cls == CLASS_IDS["vegetation"]
    assert veg.sum() > 100
    r = {k: np.linalg.norm(v[:, :3], axis=1) for k, v in scan.items()}
    assert np.array_equal(scan["hard"][~veg, :3], scan["leafy"][~veg, :3])
    deeper = r["leafy"][veg] - r["hard"][veg]
    assert deeper.min() >= -1e-4 and deeper.max() <= 1.5 + 1e-4 and 0.35 < deeper.mean() < 0.6
    assert json.loads((leafy / "sim.json").read_text())["foliage_depth"] == 0.5
    assert (hard / "image_02/data/0000000000.png").read_bytes() == (leafy / "image_02/data/0000000000.png").read_bytes()
    with pytest.raises(SystemExit):
        sim_main(["--out", str(tmp_path), "--foliage-depth", "-1"])
    assert "--foliage-depth must be within" in capsys.readouterr().err
    with pytest.raises(ValueError, match="foliage depth"):
        Rig(foliage_depth=3.0)
