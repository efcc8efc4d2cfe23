"""Shape of the movers: a model of which LiDAR clusters look like objects that move, learnt from
2D motion alone, kept to vote on the clusters of new scans (hybrid instances, `movable` weight).

`xmod_core.mining` decides, inside one training set, which candidates look like the movers: an
ensemble of k-means runs over standardised cluster descriptors, a cluster of each run *movable*
when enough of its members are movers (UNION's rule). This module keeps that ensemble: the
descriptors' mean and scale, each run's centres and movable flags. A new cluster's *vote* is the
share of the runs whose nearest centre (standardised descriptor space) is movable, the vote
mining gives its own candidates where the runs have converged (Lloyd's fixed point: each
candidate is in the cluster of its nearest centre; `kmeans` stops after `iters`, and 8 of the
13,980 candidates of the shipped model's training drives get another vote). The centres kept are
the members' means (an emptied, re-seeded k-means centre has no members and is not kept). No labels: the movers are the clusters the
motion masks overlap.

File (JSON, no pickle)::

    {"format": 1, "features": [names of mining.FEATURES], "mean": [F], "scale": [F],
     "runs": [{"k": k, "seed": s, "centres": [[F] x k'], "movable": [k' x 0/1]}, ...],
     "clusters": asdict(ClusterConfig) of the candidates, "mining": {iou, share, min_movers, ...},
     "trained_on": {"drives", "frames", "candidates", "movers", "movable"}}

CLI: ``python -m xmod_core.movable DRIVES... --out FILE`` (drives with motion masks; the mining
settings are `MiningConfig`'s defaults unless given). The package ships one fitted on simulated
drives of the demo students' training seed with street furniture, at KITTI's LiDAR density
(`xmod_core/assets/movable.json`; hybrid instances leave it off by default: docs/mining.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .baselines import ClusterConfig
from .mining import (FEATURES, MiningConfig, MiningInputError, candidate_arrays, check_drive, cluster_runs,
                     drive_candidates, movable_votes, standardisation)

FORMAT_VERSION = 1
SHIPPED = Path(__file__).resolve().parent / "assets" / "movable.json"


class MovableFormatError(ValueError):
    """A movable-model file cannot be read; the message names the file and the problem."""


@dataclass
class MovableModel:
    features: tuple            # descriptor columns (names of mining.FEATURES)
    mean: np.ndarray           # (F,) of the training candidates' descriptors
    scale: np.ndarray          # (F,) their standard deviation (1 for a constant column)
    centres: np.ndarray        # (R, K, F) standardised centres of each run, padded with +inf past a run's k
    movable: np.ndarray        # (R, K) bool, False on padding
    clusters: ClusterConfig    # the clustering the training candidates came from
    info: dict                 # provenance: k and seed of each run, mining settings, what it was fitted on

    @property
    def columns(self) -> list[int]:
        return [FEATURES.index(f) for f in self.features]

    def vote(self, descriptors: np.ndarray) -> np.ndarray:
        """(n,) share of the runs whose nearest centre to each cluster's descriptor (n,
        len(FEATURES)) is movable, in [0, 1]."""
        d = np.asarray(descriptors, np.float64)
        if d.ndim != 2 or d.shape[1] != len(FEATURES):
            raise ValueError(f"descriptors must be (n, {len(FEATURES)}), got {d.shape}")
        if len(d) == 0:
            return np.zeros(0)
        x = (d[:, self.columns] - self.mean) / self.scale                          # (n, F)
        c = np.where(np.isfinite(self.centres), self.centres, 0.0)                 # (R, K, F)
        dist = (x ** 2).sum(1)[:, None, None] - 2 * np.einsum("nf,rkf->nrk", x, c) + (c ** 2).sum(2)[None]
        dist = np.where(np.isfinite(self.centres).all(2)[None], dist, np.inf)      # (n, R, K) padding never nearest
        near = dist.argmin(2)                                                      # (n, R)
        return self.movable[np.arange(len(self.movable))[None], near].mean(1)

    # ----------------------------------------------------------------------- files
    def to_json(self) -> dict:
        runs = []
        for r, meta in enumerate(self.info["runs"]):
            ok = np.isfinite(self.centres[r]).all(1)
            runs.append({**meta, "centres": np.round(self.centres[r][ok], 6).tolist(),
                         "movable": self.movable[r][ok].astype(int).tolist()})
        return {"format": FORMAT_VERSION, "features": list(self.features), "mean": self.mean.tolist(),
                "scale": self.scale.tolist(), "runs": runs, "clusters": dataclasses.asdict(self.clusters),
                "mining": self.info.get("mining", {}), "trained_on": self.info.get("trained_on", {})}

    def save(self, path) -> None:
        """Write the model as JSON (atomically: a temporary file renamed over `path`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        tmp.replace(path)

    @classmethod
    def from_json(cls, obj: dict, name: str = "movable model") -> "MovableModel":
        def bad(msg):
            return MovableFormatError(f"{name}: {msg}")
        if not isinstance(obj, dict) or obj.get("format") != FORMAT_VERSION:
            raise bad(f"not a movable model of format {FORMAT_VERSION} (format: "
                      f"{obj.get('format') if isinstance(obj, dict) else type(obj).__name__})")
        try:
            features = tuple(obj["features"])
            unknown = [f for f in features if f not in FEATURES]
            if unknown or not features:
                raise bad(f"features must be among {FEATURES}, got {list(features)}")
            F = len(features)
            mean, scale = np.asarray(obj["mean"], np.float64), np.asarray(obj["scale"], np.float64)
            if mean.shape != (F,) or scale.shape != (F,) or not np.isfinite(mean).all() or \
                    not np.isfinite(scale).all() or not (scale > 0).all():
                raise bad(f"mean and scale must be {F} finite numbers each, scale > 0")
            runs = obj["runs"]
            if not runs:
                raise bad("no k-means runs")
            parsed = []
            for i, r in enumerate(runs):
                c, m = np.asarray(r["centres"], np.float64), np.asarray(r["movable"], np.int64)
                if c.ndim != 2 or c.shape[1] != F or len(c) == 0 or m.shape != (len(c),) or not np.isfinite(c).all():
                    raise bad(f"run {i}: centres must be finite (k, {F}) with one movable flag each, got "
                              f"{c.shape} centres and {m.shape} flags")
                parsed.append((c, m > 0))
            K = max(len(c) for c, _ in parsed)
            centres = np.full((len(runs), K, F), np.inf)
            movable = np.zeros((len(runs), K), bool)
            for i, (c, m) in enumerate(parsed):
                centres[i, :len(c)], movable[i, :len(c)] = c, m
            clusters = ClusterConfig(**obj["clusters"])
        except MovableFormatError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise bad(f"malformed ({type(exc).__name__}: {exc})") from exc
        info = {"runs": [{"k": r.get("k"), "seed": r.get("seed")} for r in runs],
                "mining": obj.get("mining", {}), "trained_on": obj.get("trained_on", {})}
        return cls(features, mean, scale, centres, movable, clusters, info)

    @classmethod
    def load(cls, path=None) -> "MovableModel":
        """The model in `path` (default: the shipped one)."""
        path = Path(path) if path else SHIPPED
        try:
            obj = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise MovableFormatError(f"{path}: no such movable model file") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MovableFormatError(f"{path}: not JSON ({exc})") from exc
        except OSError as exc:
            raise MovableFormatError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
        return cls.from_json(obj, str(path))


def fit(frames: list, cfg: MiningConfig = MiningConfig()) -> tuple[MovableModel, np.ndarray]:
    """The movable model of the candidates of `frames` (mining's per-frame candidates, with their
    mover flags) and the training candidates' votes (N,) as mining computes them."""
    raw, mover, known = candidate_arrays(frames, cfg)                           # (N, F), (N,), (N,)
    if len(raw) == 0:
        raise MiningInputError("no candidates to fit a movable model on")
    mean, scale = standardisation(raw)
    x = (raw - mean) / scale
    runs = cluster_runs(x, cfg)
    cls = movable_votes(runs, mover, known, cfg)
    K = max(int(a.max()) + 1 for _, _, a in runs)
    centres = np.full((len(runs), K, raw.shape[1]), np.inf)
    movable = np.zeros((len(runs), K), bool)
    for i, ((k, s, a), table) in enumerate(zip(runs, cls.runs)):               # one run each: R = len(k) x runs
        kk = int(a.max()) + 1
        cnt = np.bincount(a, minlength=kk)
        sums = np.stack([np.bincount(a, x[:, j], kk) for j in range(x.shape[1])], 1)
        used = cnt > 0
        centres[i, :used.sum()] = sums[used] / cnt[used, None]                    # member means: the converged centres
        movable[i, :used.sum()] = table["movable"][used]
    info = {"runs": [{"k": int(k), "seed": int(s)} for k, s, _ in runs],
            "mining": {f: getattr(cfg, f) if not isinstance(getattr(cfg, f), tuple) else list(getattr(cfg, f))
                       for f in ("iou", "share", "min_movers", "k", "runs", "seed", "features", "ground_contact")},
            "trained_on": {"frames": len(frames), "candidates": int(len(raw)), "movers": int(mover.sum()),
                           "movable": float((cls.vote >= cfg.vote).mean())}}
    return MovableModel(tuple(cfg.features), mean, scale, centres, movable, cfg.clusters, info), cls.vote


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m xmod_core.movable", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("drives", nargs="+", type=Path, help="KITTI-layout drives with motion masks (python -m xmod_core.motion)")
    ap.add_argument("--out", type=Path, required=True, help="the model file to write (JSON)")
    ap.add_argument("--seed", type=int, default=MiningConfig.seed, help="k-means seed")
    ap.add_argument("--k", default=",".join(map(str, MiningConfig.k)), help="k-means cluster counts of the ensemble")
    ap.add_argument("--runs", type=int, default=MiningConfig.runs, help="seeded runs per k")
    ap.add_argument("--min-movers", type=int, default=MiningConfig.min_movers, help="movers a movable cluster holds at least")
    ap.add_argument("--quiet", action="store_true")
    return ap


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    try:
        cfg = MiningConfig(seed=a.seed, k=tuple(int(k) for k in a.k.split(",")), runs=a.runs, min_movers=a.min_movers)
    except ValueError as exc:
        _parser().error(str(exc))
    t0 = time.perf_counter()
    try:
        drives = [check_drive(d, cfg) for d in a.drives]
        frames = [f for d in drives for f in drive_candidates(d, cfg, progress=not a.quiet)]
        model, vote = fit(frames, cfg)
    except MiningInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    model.info["trained_on"]["drives"] = len(drives)
    model.save(a.out)
    t = model.info["trained_on"]
    print(f"{a.out}: {len(model.movable)} k-means runs over {t['candidates']} candidates of {t['frames']} frames "
          f"({len(drives)} drives), {t['movers']} movers; {t['movable']:.1%} of the candidates voted movable "
          f"(vote >= {cfg.vote}); {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
