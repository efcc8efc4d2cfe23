"""The movers' shape model (`xmod_core.movable`): the votes of mining's ensemble kept for new
clusters, its file, its CLI on a tiny drive, and its weight in hybrid instances."""
import json

import numpy as np
import pytest

from test_hybrid import scene  # noqa: F401  (fixture)
from test_hybrid import ids_of
from test_mining import _tiny_scene
from xmod_core import mining, movable
from xmod_core.hybrid import HybridConfig, hybrid_instances
from xmod_core.baselines import ClusterConfig, clusters_and_candidates
from xmod_core.mining import FEATURES, MiningConfig, _Frame, scan_descriptors
from xmod_core.movable import MovableFormatError, MovableModel, fit

F = {name: i for i, name in enumerate(FEATURES)}


def blob(rng, n, length, width, top):
    d = np.zeros((n, len(FEATURES)))
    d[:, F["length"]], d[:, F["width"]], d[:, F["top"]] = (v + 0.1 * rng.standard_normal(n) for v in (length, width, top))
    d[:, F["bottom"]] = 0.25 + 0.02 * rng.standard_normal(n)
    d[:, F["log_density"]] = 6 + 0.1 * rng.standard_normal(n)
    return d


def toy_frames(seed=0):
    """Cars (a fifth of them movers), poles and walls, spread over four frames."""
    rng = np.random.default_rng(seed)
    desc = np.concatenate([blob(rng, 60, 4.2, 1.8, 1.5), blob(rng, 60, 0.3, 0.3, 3.0), blob(rng, 60, 9.0, 0.4, 2.5)])
    mover = np.zeros(180, bool)
    mover[:60:5] = True
    frames = []
    for i in range(4):
        sel = np.arange(i, 180, 4)
        frames.append(_Frame(str(i), b"", desc[sel], np.full(len(sel), 50), np.full(len(sel), 10.0),
                             np.where(mover[sel], 0.8, 0.0), np.zeros(len(sel)), True))
    return frames, desc, mover


def test_votes_are_minings_and_generalise_to_new_clusters():
    frames, desc, _ = toy_frames()
    cfg = MiningConfig(k=(3, 5), runs=2, min_movers=1)
    model, vote = fit(frames, cfg)
    table = np.concatenate([f.desc for f in frames])
    np.testing.assert_allclose(model.vote(table), vote)                     # the nearest centre is the run's cluster
    assert model.centres.shape == (4, 5, len(cfg.features)) and np.isinf(model.centres[:2, 3:]).all()
    order = np.concatenate([np.arange(i, 180, 4) for i in range(4)])         # the frames' order of the toy descriptors
    cars = order < 60
    assert (vote[cars] == 1).all() and (vote[~cars] == 0).all()
    rng = np.random.default_rng(5)                                           # unseen clusters
    new = np.concatenate([blob(rng, 5, 4.0, 1.7, 1.4), blob(rng, 5, 0.25, 0.25, 2.8), blob(rng, 5, 8.0, 0.5, 2.4)])
    np.testing.assert_array_equal(model.vote(new), [1] * 5 + [0] * 10)
    assert model.vote(np.zeros((0, len(FEATURES)))).shape == (0,)
    with pytest.raises(ValueError, match="descriptors must be"):
        model.vote(np.zeros((3, 4)))


def test_file_round_trip_and_bad_files(tmp_path):
    frames, desc, _ = toy_frames()
    model, vote = fit(frames, MiningConfig(k=(3, 5), runs=2, min_movers=1))
    path = tmp_path / "m.json"
    model.save(path)
    back = MovableModel.load(path)
    np.testing.assert_allclose(back.vote(desc), model.vote(desc))
    assert back.features == model.features and back.clusters == model.clusters
    obj = json.loads(path.read_text())
    assert obj["trained_on"]["movers"] == 12 and [r["k"] for r in obj["runs"]] == [3, 3, 5, 5]
    cases = {"format": dict(obj, format=7), "features": dict(obj, features=["colour"]),
             "scale": dict(obj, scale=[0.0] * len(obj["mean"])), "runs": dict(obj, runs=[]),
             "centres": dict(obj, runs=[dict(obj["runs"][0], movable=[1])]), "malformed": {k: v for k, v in obj.items() if k != "mean"}}
    for word, bad in cases.items():
        p = tmp_path / f"{word}.json"
        p.write_text(json.dumps(bad))
        with pytest.raises(MovableFormatError, match=str(p).replace(".", r"\.")):
            MovableModel.load(p)
    bad_mean = dict(obj, mean=[float("nan")] * len(obj["mean"]))
    flat = dict(obj, runs=[dict(r, centres=np.ravel(r["centres"]).tolist()) for r in obj["runs"]])
    for word, bad in (("finite", bad_mean), ("flags", flat)):
        p = tmp_path / f"{word}.json"
        p.write_text(json.dumps(bad))
        with pytest.raises(MovableFormatError, match=word):
            MovableModel.load(p)
    with pytest.raises(MovableFormatError, match="cannot be read"):
        MovableModel.load(tmp_path)
    (tmp_path / "text.json").write_text("{not json")
    with pytest.raises(MovableFormatError, match="not JSON"):
        MovableModel.load(tmp_path / "text.json")
    with pytest.raises(MovableFormatError, match="no such"):
        MovableModel.load(tmp_path / "missing.json")


def test_shipped_model_loads_and_votes():
    model = MovableModel.load()
    assert model.info["trained_on"]["movers"] > 100 and len(model.movable) == len(MiningConfig.k) * MiningConfig.runs
    car, pole = np.zeros((2, len(FEATURES)))
    car[[F["length"], F["width"], F["top"], F["bottom"], F["log_density"]]] = 4.2, 1.8, 1.5, 0.25, 7.0
    pole[[F["length"], F["width"], F["top"], F["bottom"], F["log_density"]]] = 0.3, 0.3, 4.0, 0.25, 7.0
    v = model.vote(np.stack([car, pole]))
    assert v[0] > v[1]


def test_cli_fits_the_tiny_drive(tmp_path, capsys):
    drive_dir = _tiny_scene(tmp_path)
    out = tmp_path / "movable.json"
    rc = movable.main([str(drive_dir), "--out", str(out), "--k", "2", "--runs", "1", "--min-movers", "1", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert "8 frames" in capsys.readouterr().out
    model = MovableModel.load(out)
    frames = mining.drive_candidates(mining.check_drive(drive_dir, MiningConfig()), MiningConfig())
    votes = model.vote(frames[0].desc)
    poles = frames[0].desc[:, F["length"]] < 1.0
    assert poles.sum() == 2 and (votes[poles] == 0).all() and (votes[~poles] == 1).all()   # boxes look like the mover
    assert movable.main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.json")]) == 1
    assert "nowhere" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
    with pytest.raises(SystemExit):
        movable.main([str(drive_dir), "--out", str(tmp_path / "x.json"), "--k", "0"])
    assert "mining k (each)" in capsys.readouterr().err and not (tmp_path / "x.json").exists()


def test_hybrid_keeps_clusters_shaped_like_the_movers(scene):  # noqa: F811
    """The students cover neither the wall nor the bush; a model whose movable centre is the bush's
    shape and whose other centre is the wall's brings the bush in, not the wall; weight 0 is the
    plain hybrid."""
    pts, part, names, pp, grid = scene
    scores = {1: 0.9, 2: 0.8, 3: 0.7, 4: 0.7}
    view = pp >= 0
    cl, cand = clusters_and_candidates(pts[view], ClusterConfig())
    desc, _ = scan_descriptors(pts[view], cl, cand, ClusterConfig())
    feats = MiningConfig().features
    cols = [FEATURES.index(f) for f in feats]
    bush, wall = (np.bincount(cl[part[view] == names.index(n)]).argmax() for n in ("bush", "wall"))
    model = MovableModel(feats, np.zeros(len(cols)), np.ones(len(cols)), desc[[bush - 1, wall - 1]][:, cols][None],
                         np.array([[True, False]]), ClusterConfig(), {"runs": [{"k": 2, "seed": 0}]})
    base = hybrid_instances(pts, pp, [grid], grid, scores)
    same = hybrid_instances(pts, pp, [grid], grid, scores, HybridConfig(movable=0.0), movable=model)
    np.testing.assert_array_equal(base[0], same[0])
    np.testing.assert_array_equal(base[1], same[1])
    assert base[2] == same[2]
    assert (ids_of(base[1], part, names, "bush") == 0).all()
    for w in (1.0, 0.5):
        _, labels, out_scores = hybrid_instances(pts, pp, [grid], grid, scores, HybridConfig(movable=w), movable=model)
        b, wl = ids_of(labels, part, names, "bush"), ids_of(labels, part, names, "wall")
        assert (b > 0).all() and len(np.unique(b)) == 1 and (wl == 0).all()
        assert out_scores[int(b[0])] == pytest.approx(w)                     # its objectness: the weighted vote
    with pytest.raises(ValueError, match="movable model"):
        hybrid_instances(pts, pp, [grid], grid, scores, HybridConfig(movable=0.5))
    with pytest.raises(ValueError, match="movable"):
        HybridConfig(movable=1.5)


def test_shape_shift_tool_on_the_tiny_drive(tmp_path, capsys):
    """tools/shape_shift.py: one row per glob with its candidates and the share voted movable."""
    import importlib.util
    from pathlib import Path
    drive_dir = _tiny_scene(tmp_path)
    out = tmp_path / "movable.json"
    assert movable.main([str(drive_dir), "--out", str(out), "--k", "2", "--runs", "1", "--min-movers", "1", "--quiet"]) == 0
    spec = importlib.util.spec_from_file_location("shape_shift", Path(__file__).parents[1] / "tools/shape_shift.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    capsys.readouterr()
    assert tool.main([str(drive_dir), "--every", "2", "--model", str(out)]) == 0
    row = capsys.readouterr().out.strip().splitlines()[-1].split("|")
    assert int(row[2]) == 4 * 5 and row[3].strip() == "60%"    # per scan: the mover and 2 boxes voted movable, 2 poles not
    with pytest.raises(SystemExit):
        tool.main([str(tmp_path / "nothing"), "--model", str(out)])
