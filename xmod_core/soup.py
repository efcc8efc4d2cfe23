"""Weight-space averages of exported students ("model soups", Wortsman et al., ICML 2022).

Students fine-tuned from the same weights (the same recipe with another training seed, or another
set of drives) stay close in weight space, and their weighted average is one student of the same
size and speed (here above its ingredients on the validation drives, not on held-out ones). An ingredient that is the common
starting point itself gives the WiSE-FT interpolation (Wortsman et al., CVPR 2022) between the
init and its fine-tunes.

    python -m xmod_core.soup soup.pt a/student_lidar_ema.pt b/student_lidar_ema.pt [--weights 1 1]

Only students of one modality and one architecture (the same `ModelConfig` after defaults) mix;
the output is written by the trainer's `export_student` (format `xmod-student-1`, atomically), its
meta naming each ingredient, its weight, step and seed; BatchNorm's step counters are the first's. It refuses to overwrite an ingredient
and, without `--force`, any existing file. Whether a soup is better than its ingredients is a
measurement (docs/training.md, "Soups of students").
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .checkpoint import CheckpointError
from .model import load_student


def soup(paths: list[str], weights: list[float] | None = None) -> dict:
    """Exported students at `paths` (read and checked by `load_student`) -> {stage, modality,
    model_config, state_dict, meta}: the float weights and buffers the average of theirs weighted by
    `weights` (normalised to sum to one; uniform when None); integer buffers (BatchNorm's
    `num_batches_tracked`, which fine-tunes of one student never share) are the first student's."""
    if len(paths) < 2:
        raise ValueError(f"a soup needs at least two students, got {len(paths)}")
    w = torch.tensor([1.0] * len(paths) if weights is None else [float(x) for x in weights], dtype=torch.float64)
    if len(w) != len(paths):
        raise ValueError(f"{len(w)} weights for {len(paths)} students")
    if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be finite, non-negative and not all zero, got {w.tolist()}")
    w = w / w.sum()
    students = [load_student(p) for p in paths]                                           # [(model, info)]
    (first, info0) = students[0]
    for p, (model, info) in zip(paths[1:], students[1:]):
        if info["modality"] != info0["modality"]:
            raise CheckpointError(f"{p} holds a {info['modality']} student, {paths[0]} a {info0['modality']} one")
        if model.cfg != first.cfg:
            diff = {k: (v, getattr(model.cfg, k)) for k, v in vars(first.cfg).items() if getattr(model.cfg, k) != v}
            raise CheckpointError(f"{p} has another architecture than {paths[0]}: {diff}")
    states = [m.state_dict() for m, _ in students]
    state = {name: torch.einsum("s,s...->...", w, torch.stack([sd[name].double() for sd in states])).to(t0.dtype)
             if t0.is_floating_point() else t0.clone() for name, t0 in states[0].items()}
    stages = {info.get("stage") for _, info in students}
    meta = {"soup": [{"path": str(p), "weight": float(x), "stage": info.get("stage"),
                      "step": info.get("meta", {}).get("step"), "seed": info.get("meta", {}).get("seed")}
                     for p, x, (_, info) in zip(paths, w.tolist(), students)]}
    return {"stage": stages.pop() if len(stages) == 1 else "soup", "modality": info0["modality"],
            "model_config": first.cfg, "state_dict": state, "meta": meta}


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
    from .train import export_student                    # the trainer's own export format
    export_student(out, ck["stage"], ck["modality"], ck["model_config"], ck["state_dict"], ck["meta"])
    parts = ", ".join(f"{Path(m['path']).parent.name or m['path']} x{m['weight']:.3f}" for m in ck["meta"]["soup"])
    print(f"wrote {out}: {ck['modality']} student, soup of {len(a.students)} ({parts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
