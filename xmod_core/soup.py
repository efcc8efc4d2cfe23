"""Weight-space averages of exported students ("model soups", Wortsman et al., ICML 2022).

Students fine-tuned from the same weights (the same recipe with another training seed, or another
set of drives) stay close in weight space, and their weighted average is one student of the same
size and speed whose errors are not those of any one of them. An ingredient that is the common
starting point itself gives the WiSE-FT interpolation (Wortsman et al., CVPR 2022) between the
init and its fine-tunes.

    python -m xmod_core.soup soup.pt a/student_lidar_ema.pt b/student_lidar_ema.pt [--weights 1 1]

Only students of one modality and one architecture (the same `ModelConfig` after defaults) mix;
the output is a `student_<modality>.pt` like the trainer's export (format `xmod-student-1`, meta
naming each ingredient and its weight), written atomically. It refuses to overwrite an ingredient
and, without `--force`, any existing file. Whether a soup is better than its ingredients is a
measurement (docs/training.md, "Soups of 3D students").
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .checkpoint import CheckpointError, load_checkpoint, save_atomic
from .config import ConfigError, from_dict, to_dict
from .model import ModelConfig

FORMAT = "xmod-student-1"


def _ingredient(path: str) -> tuple[dict, ModelConfig]:
    ck = load_checkpoint(path)
    if ck.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an exported student (format {ck.get('format')!r}); "
                              "soups mix the trainer's out_dir/student_<modality>.pt files")
    try:
        cfg = from_dict(ModelConfig, ck["model_config"])
    except (ConfigError, KeyError) as e:
        raise CheckpointError(f"{path}: bad model config: {e}") from None
    return ck, cfg


def soup(paths: list[str], weights: list[float] | None = None) -> dict:
    """Exported students at `paths` -> one exported student dict, its weights the average of theirs
    weighted by `weights` (normalised to sum to one; uniform when None)."""
    if len(paths) < 2:
        raise ValueError(f"a soup needs at least two students, got {len(paths)}")
    w = torch.tensor([1.0] * len(paths) if weights is None else [float(x) for x in weights], dtype=torch.float64)
    if len(w) != len(paths):
        raise ValueError(f"{len(w)} weights for {len(paths)} students")
    if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be finite, non-negative and not all zero, got {w.tolist()}")
    w = w / w.sum()
    cks, cfgs = zip(*(_ingredient(p) for p in paths))
    first, cfg0 = cks[0], cfgs[0]
    for p, ck, cfg in zip(paths[1:], cks[1:], cfgs[1:]):
        if ck["modality"] != first["modality"]:
            raise CheckpointError(f"{p} holds a {ck['modality']} student, {paths[0]} a {first['modality']} one")
        if cfg != cfg0:
            diff = {k: (v, getattr(cfg, k)) for k, v in vars(cfg0).items() if getattr(cfg, k) != v}
            raise CheckpointError(f"{p} has another architecture than {paths[0]}: {diff}")
        if ck["state_dict"].keys() != first["state_dict"].keys():
            raise CheckpointError(f"{p} and {paths[0]} hold different parameters")
    state = {}
    for name, t0 in first["state_dict"].items():
        ts = [ck["state_dict"][name] for ck in cks]
        if not t0.is_floating_point():                      # counters and the like: must agree, kept as they are
            if any(not torch.equal(t, t0) for t in ts[1:]):
                raise CheckpointError(f"non-float tensor {name!r} differs between the students; cannot average it")
            state[name] = t0.clone()
            continue
        stacked = torch.stack([t.to(torch.float64) for t in ts])                        # (S, ...)
        state[name] = torch.einsum("s,s...->...", w, stacked).to(t0.dtype)
    stages = {ck.get("stage") for ck in cks}
    meta = {"soup": [{"path": str(p), "weight": float(x), "stage": ck.get("stage"),
                      "step": ck.get("meta", {}).get("step"), "seed": ck.get("meta", {}).get("seed")}
                     for p, x, ck in zip(paths, w.tolist(), cks)]}
    return {"format": FORMAT, "stage": stages.pop() if len(stages) == 1 else "soup", "modality": first["modality"],
            "model_config": to_dict(cfg0), "state_dict": state, "meta": meta}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m xmod_core.soup", description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="the soup's student file (.pt)")
    ap.add_argument("students", nargs="+", help="exported students of one modality and architecture")
    ap.add_argument("--weights", nargs="+", type=float, help="one weight per student (normalised); default uniform")
    ap.add_argument("--force", action="store_true", help="replace an existing output file (never an ingredient)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    if any(out.resolve() == Path(p).resolve() for p in a.students):
        print(f"error: the output {out} is one of the students; choose another path", file=sys.stderr)
        return 2
    if out.exists() and not a.force:
        print(f"error: {out} exists; pass --force to replace it", file=sys.stderr)
        return 2
    try:
        ck = soup(a.students, a.weights)
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    save_atomic(ck, out)
    parts = ", ".join(f"{Path(m['path']).parent.name or m['path']} x{m['weight']:.3f}" for m in ck["meta"]["soup"])
    print(f"wrote {out}: {ck['modality']} student, soup of {len(a.students)} ({parts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
