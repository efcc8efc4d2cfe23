"""One command for a lent GPU: data, the five training stages, evaluation, within a time budget.

    python -m xmod_core.gpu_pipeline --out OUT --budget-s 480          (tools/gpu_pipeline.sh; docs/gpu.md)

1. **Data**: simulates the training, validation and test drives (`--train-seeds`, `--val-seeds`,
   `--test-seeds`; one process per CPU core over all drives) and computes each drive's motion masks
   in the same pool as soon as it is written (config/motion.yaml). Drives already made with the
   same settings under `--work` are reused.
2. **Training**: the stages of `--config-dir`/pipeline.yaml (config/gpu: 2D burn-in, 2D ts, 3D
   burn-in, 3D ts, 2D+3D ts, each from the earlier stages' students) with `xmod_core.train.train`;
   the clips are decoded once by all cores and held on the training device (`data.device_cache`,
   one cache shared by the stages), bf16 autocast on CUDA. The budget left for training (budget
   less `--eval-reserve-s`) is shared among the stages in proportion to their planned cost (steps x
   batch x a per-stage factor); a stage that runs out of its share stops after the current step
   and exports its students, so later stages still run; a stage whose share is under
   `--min-stage-s` is skipped, and so are the stages that start from it. Prints clips/s per stage;
   after each stage, the students' held-out loss on the validation drives (motion masks).
3. **Evaluation**: the final students (the last stage that trained each) with `xmod_core.evaluate
   --mode all` on the test drives, beside the shipped demo students on the same drives, in
   parallel; on real KITTI too when `--real-data` folders exist (by default ../shared/kitti_tracking
   and ../shared/kitti_object beside the repository).
4. **Outputs** in `--out`, at most 8 files of at most 16 MiB each (refused otherwise, with the
   reason in summary.json and log.txt; log.txt is cut in the middle to fit): student_rgb.pt and
   student_lidar.pt (exported students, weights stored in float16: 12 MiB each at config/gpu),
   metrics.jsonl (per phase and per stage: steps, seconds, clips/s, final loss, validation loss),
   eval_sim.md, eval_real.md (when run), summary.json, log.txt. Everything else (drives, stage
   folders with checkpoints and TensorBoard logs) stays in `--work`.

Exit status: 0 when every stage ran its steps and the evaluation finished; 3 when the budget cut
something short (the outputs say what); 2 on an error.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT_FILES = ("student_rgb.pt", "student_lidar.pt", "metrics.jsonl", "eval_sim.md", "eval_real.md", "summary.json",
             "log.txt")
MAX_FILES, MAX_BYTES = 8, 16 * 2**20
STAGE_COST = {"2d_burn_in": 1.0, "3d_burn_in": 1.0, "2d_ts": 1.6, "3d_ts": 1.6, "2d_3d_ts": 3.0}   # a step's cost
                                                # relative to a burn-in step (config/gpu/pipeline.yaml)
MODALITIES = {"2d_burn_in": ("rgb",), "2d_ts": ("rgb",), "3d_burn_in": ("lidar",), "3d_ts": ("lidar",),
              "2d_3d_ts": ("rgb", "lidar")}
DEFAULT_REAL = (ROOT.parent / "shared" / "kitti_tracking", ROOT.parent / "shared" / "kitti_object")


class LimitError(RuntimeError):
    """A file would break the output folder's limits (count or size)."""


class OutFolder:
    """The output folder: only the files this run writes, at most `max_files`, each at most
    `max_bytes`; a text file may be cut in the middle to fit, anything else is refused."""

    def __init__(self, path: Path, max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES, names=OUT_FILES):
        self.path, self.max_files, self.max_bytes, self.names = Path(path), max_files, max_bytes, tuple(names)
        self.path.mkdir(parents=True, exist_ok=True)
        others = sorted(p.name for p in self.path.iterdir() if p.name not in self.names)
        if others:
            raise LimitError(f"{self.path} holds {len(others)} file(s) this run does not write ({', '.join(others[:5])}); "
                             "give an empty or new --out")
        for name in self.names:               # a re-run replaces its own files
            (self.path / name).unlink(missing_ok=True)
        self.written: dict[str, int] = {}

    def put_bytes(self, name: str, data: bytes, truncate: bool = False) -> int:
        if name not in self.names:
            raise LimitError(f"{name} is not one of the output files {self.names}")
        if name not in self.written and len(self.written) >= self.max_files:
            raise LimitError(f"{name}: the output folder already holds {self.max_files} files, the most it may have")
        if len(data) > self.max_bytes:
            if not truncate:
                raise LimitError(f"{name}: {len(data) / 2**20:.1f} MiB, over the {self.max_bytes / 2**20:.0f} MiB a file may have")
            mark = f"\n[... {len(data) - self.max_bytes + 200} bytes cut to fit {self.max_bytes} ...]\n".encode()
            keep = (self.max_bytes - len(mark)) // 2
            data = data[:keep] + mark + data[len(data) - keep:]
        tmp = self.path / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(self.path / name)
        self.written[name] = len(data)
        return len(data)

    def put_text(self, name: str, text: str, truncate: bool = False) -> int:
        return self.put_bytes(name, text.encode(), truncate)


class Log:
    """Prints and keeps every line (log.txt)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "w")

    def __call__(self, *parts):
        line = " ".join(str(p) for p in parts)
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()

    def close(self):
        self.file.close()


# --------------------------------------------------------------------------------------------
# data


def _worker_init():
    import torch
    torch.set_num_threads(1)              # cv2's threads are set in the parent (reconfiguring them after fork can hang)


def _simulate(job: tuple) -> str:
    root, seed, seq, frames, scale = job
    from .sim.rig import Rig
    from .sim.writer import simulate_drive
    return str(simulate_drive(Path(root), seed, seq, frames, Rig.scaled(scale), preview=False))


def _motion(drive: str) -> dict:
    from .motion import load_motion_config, process_drive
    from .motion.cli import DEFAULT_CONFIG
    cfg = load_motion_config(DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None, [])
    s = process_drive(Path(drive), cfg, progress=False)
    return {"drive": drive, "processed": s.processed, "unknown": len(s.unknown)}


def make_data(work: Path, splits: dict, workers: int, log: Log) -> dict:
    """splits: {name: {seeds, drives, frames, scale}} -> {name: [drive dirs]}; simulated and with
    motion masks, one process per core; a split already made with the same settings is reused."""
    jobs, drives, todo = [], {}, []
    for name, p in splits.items():
        root = work / "data" / name
        stamp = root / "params.json"
        if stamp.is_file() and json.loads(stamp.read_text()) == p:
            drives[name] = sorted(str(d) for d in root.glob("*/*_sync"))
            log(f"data: {name} reused ({len(drives[name])} drives in {root})")
            continue
        shutil.rmtree(root, ignore_errors=True)
        todo.append(name)
        jobs += [(str(root), seed, i, p["frames"], p["scale"]) for seed in p["seeds"] for i in range(p["drives"])]
    if jobs:
        jobs.sort(key=lambda j: -j[3])                     # the longest drives first
        frames = sum(j[3] for j in jobs)
        log(f"data: simulating {len(jobs)} drives ({frames} frames) and their motion masks, {workers} processes")
        t0 = time.perf_counter()
        import multiprocessing

        import cv2
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)                               # one process per core, no OpenCV pool across the fork
        ex = ProcessPoolExecutor(workers, multiprocessing.get_context("fork"), initializer=_worker_init)
        try:
            pending = {ex.submit(_simulate, j) for j in jobs}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    res = f.result()
                    if isinstance(res, str):                 # a drive is written: its motion masks next
                        pending.add(ex.submit(_motion, res))
                    elif res["unknown"]:
                        log(f"data: {res['drive']}: {res['unknown']} frame(s) without motion mask (ego-motion failed)")
        except BaseException:
            ex.shutdown(wait=False, cancel_futures=True)     # a failed drive: do not wait for the others
            raise
        else:
            ex.shutdown()
        finally:
            cv2.setNumThreads(threads)
        log(f"data: {len(jobs)} drives, {frames} frames in {time.perf_counter() - t0:.1f} s")
        for name in todo:
            root = work / "data" / name
            drives[name] = sorted(str(d) for d in root.glob("*/*_sync"))
            (root / "params.json").write_text(json.dumps(splits[name]))
    return drives


# --------------------------------------------------------------------------------------------
# training


def stage_shares(remaining: float, costs: list[float]) -> float:
    """The first stage's share of `remaining` seconds, the stages' costs being `costs` (itself first)."""
    total = sum(costs)
    return remaining * costs[0] / total if total > 0 else remaining


def resolve(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() or p.exists() else ROOT / p


def load_stages(config_dir: Path, work: Path, train_drives: str, device: str, overrides: list[str],
                steps: int | None) -> list[tuple]:
    """[(PipelineStage, TrainConfig)] of `config_dir`/pipeline.yaml with this run's settings."""
    from .config import load_config
    from .train import PipelineConfig, TrainConfig
    pipe = load_config(PipelineConfig, resolve(str(config_dir)) / "pipeline.yaml")
    out = []
    for st in pipe.stages:
        over = list(st.overrides) + list(overrides) + [
            f"out_dir={json.dumps(str(work / 'pipeline' / st.name))}", f"stage={st.stage or st.name}",
            f"data.drives={json.dumps([train_drives])}", f"device={device}"]
        if steps is not None:
            over.append(f"optim.steps={steps}")
        out.append((st, load_config(TrainConfig, resolve(st.config), over)))
    return out


def cache_key(cfg) -> str:
    from .config import to_dict
    data = to_dict(cfg.data)
    data.pop("workers")
    return json.dumps([data, to_dict(cfg.augment), cfg.seed], sort_keys=True)


def val_losses(stage_name: str, cfg, students: dict, val_cache, dev) -> dict:
    """Held-out loss of each exported student against the validation drives' motion masks
    (the burn-in loss of its modality, eval mode, no augmentation): {modality: {term: value}}."""
    import torch
    from .model import load_student
    from .stages import BurnIn
    out = {}
    for modality, path in students.items():
        net, _ = load_student(path, dev)
        stage = BurnIn(cfg.model, cfg.loss, modality)
        sums, n = {}, 0
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            for j in range(0, len(val_cache), 8):
                idx = range(j, min(j + 8, len(val_cache)))
                _, logs, _ = stage.loss(val_cache.batch(idx), {modality: net})
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + v * len(idx)
                n += len(idx)
        out[modality] = {k: v / n for k, v in sums.items()}
    return out


def last_logged_loss(out_dir: Path) -> float | None:
    f = out_dir / "metrics.jsonl"
    lines = f.read_text().splitlines() if f.is_file() else []
    return json.loads(lines[-1])["total"] if lines else None


# --------------------------------------------------------------------------------------------
# outputs


def half_student(path: Path) -> bytes:
    """An exported student with its floating-point weights stored in float16 (it loads with
    `load_student` into a float32 model as before)."""
    import torch
    from .checkpoint import load_checkpoint
    ck = load_checkpoint(path)
    ck["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in ck["state_dict"].items()}
    ck["meta"] = dict(ck.get("meta", {}), stored_dtype="float16")
    buf = io.BytesIO()
    torch.save(ck, buf)
    return buf.getvalue()


def demote(md: str) -> str:
    return "\n".join("#" + line if line.startswith("#") else line for line in md.splitlines())


def compare(gpu: dict, shipped: dict) -> dict:
    """Per domain and method, F1@50 and FG-ARI of the GPU students against the shipped ones."""
    out = {}
    for dom, rows in gpu.items():
        for name, r in rows.items():
            s = shipped.get(dom, {}).get(name)
            if s is None or name in ("motion masks", "LiDAR clustering"):
                continue
            out.setdefault(dom, {})[name] = {k: {"gpu": r.get(k), "shipped": s.get(k)} for k in ("f1", "fg_ari")}
    return out


# --------------------------------------------------------------------------------------------


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m xmod_core.gpu_pipeline", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="output folder (at most 8 files of 16 MiB)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "gpu", help="drives, stage folders, logs (default runs/gpu)")
    ap.add_argument("--budget-s", type=float, default=480, help="stop before this many seconds from the start, saving what it has")
    ap.add_argument("--eval-reserve-s", type=float, default=60, help="seconds of the budget kept for the evaluation")
    ap.add_argument("--min-stage-s", type=float, default=10, help="a stage whose share of the budget is smaller is skipped")
    ap.add_argument("--stage-max-s", type=float, default=None, help="at most this many seconds a stage (tests)")
    ap.add_argument("--train-seeds", type=int, nargs="+", default=[10, 11, 12])
    ap.add_argument("--val-seeds", type=int, nargs="+", default=[77])
    ap.add_argument("--test-seeds", type=int, nargs="+", default=[200])
    ap.add_argument("--drives-per-seed", type=int, default=16, help="training drives per seed")
    ap.add_argument("--frames", type=int, default=40, help="frames per training drive")
    ap.add_argument("--eval-drives-per-seed", type=int, default=3, help="validation and test drives per seed")
    ap.add_argument("--eval-frames", type=int, default=30, help="frames per validation and test drive")
    ap.add_argument("--scale", type=float, default=0.64, help="simulated camera scale (0.64: 795x240, >= 192 rows in a 0.8 crop)")
    ap.add_argument("--config-dir", default="config/gpu", help="folder with pipeline.yaml and its stage configs")
    ap.add_argument("--steps-override", type=int, default=None, help="optim.steps of every stage (smoke runs)")
    ap.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for every stage")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--workers", type=int, default=0, help="data processes (default: one per core)")
    ap.add_argument("--real-data", nargs="*", default=None,
                    help="real KITTI folders to evaluate on (default: ../shared/kitti_tracking and kitti_object where they exist; none: no argument)")
    ap.add_argument("--no-shipped", action="store_true", help="do not evaluate the shipped demo students beside")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    t0 = time.monotonic()
    a = parse_args(argv)
    deadline = t0 + a.budget_s
    left = lambda: deadline - time.monotonic()
    try:
        out = OutFolder(a.out)
    except LimitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    a.work.mkdir(parents=True, exist_ok=True)
    log = Log(a.work / "log.txt")
    summary = {"budget_s": a.budget_s, "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()},
               "stages": [], "skipped": [], "complete": False, "errors": []}
    metrics: list[dict] = []
    status = 0
    try:
        status = _run(a, out, log, summary, metrics, left)
    except Exception as e:                                   # written down, then the outputs below
        import traceback
        log(traceback.format_exc().rstrip())
        summary["errors"].append(f"{type(e).__name__}: {e}")
        status = 2
    summary["elapsed_s"] = time.monotonic() - t0
    log(f"done in {summary['elapsed_s']:.0f} s of a {a.budget_s:.0f} s budget; exit status {status}")
    for name, text, trunc in (("metrics.jsonl", "".join(json.dumps(m) + "\n" for m in metrics), False),
                              ("summary.json", None, False), ("log.txt", None, True)):
        try:
            if name == "summary.json":
                summary["files"] = dict(out.written)
                text = json.dumps(summary, indent=1, default=str)
            elif name == "log.txt":
                log.close()
                text = log.path.read_text()
            out.put_text(name, text, trunc)
        except LimitError as e:
            print(f"error: {e}", file=sys.stderr)
            status = 2
    return status


def _run(a, out: OutFolder, log: Log, summary: dict, metrics: list, left) -> int:
    import torch
    from .config import ConfigError
    from .data import ClipDataset, DeviceClipCache
    from .predictor import pick_device
    from .train import train

    partial = False
    log(f"torch {torch.__version__}, {os.cpu_count()} CPU cores, budget {a.budget_s:.0f} s")
    if a.device == "auto" and not torch.cuda.is_available() and a.steps_override is None:
        log("warning: no CUDA device; config/gpu on the CPU trains a small part of its steps within the budget")

    # 1. data (before CUDA is initialised: the pool forks)
    t = time.monotonic()
    workers = a.workers or os.cpu_count() or 1
    ev = {"drives": a.eval_drives_per_seed, "frames": a.eval_frames, "scale": a.scale}
    splits = {"train": {"seeds": a.train_seeds, "drives": a.drives_per_seed, "frames": a.frames, "scale": a.scale},
              "val": {"seeds": a.val_seeds, **ev}, "test": {"seeds": a.test_seeds, **ev}}
    drives = make_data(a.work.resolve(), splits, workers, log)
    nframes = sum(p["frames"] * p["drives"] * len(p["seeds"]) for p in splits.values())
    metrics.append({"phase": "data", "seconds": time.monotonic() - t, "drives": {k: len(v) for k, v in drives.items()},
                    "frames": nframes})
    summary["data_s"] = time.monotonic() - t
    dev = pick_device(a.device)
    summary["device"] = str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else "")
    log(f"device: {summary['device']}")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    # 2. training
    try:
        stages = load_stages(Path(a.config_dir), a.work.resolve(), str(a.work.resolve() / "data" / "train" / "*" / "*_sync"),
                             a.device, a.override, a.steps_override)
    except ConfigError as e:
        raise RuntimeError(f"config: {e}") from None
    shutil.rmtree(a.work / "pipeline", ignore_errors=True)       # a fresh run each time (drives are kept)
    caches, done, val_cache = {}, {}, None
    train_left = lambda: left() - a.eval_reserve_s
    for i, (st, cfg) in enumerate(stages):
        rec = {"stage": st.name, "planned_steps": cfg.optim.steps, "batch": cfg.optim.batch_size}
        missing = [f"{m}={e}" for m, e in st.init_from.items() if e not in done]
        if missing:
            rec |= {"status": "skipped", "reason": f"starts from {', '.join(missing)}, which did not train"}
        else:
            later = [STAGE_COST[c.stage] * c.optim.steps * c.optim.batch_size for _, c in stages[i:]]
            share = lambda: min(stage_shares(train_left(), later), a.stage_max_s if a.stage_max_s is not None else float("inf"))
            key = cache_key(cfg)
            if share() >= a.min_stage_s and cfg.data.device_cache and key not in caches:
                mods = sorted({m for s, c in stages[i:] if cache_key(c) == key for m in MODALITIES[c.stage]})
                tc = time.monotonic()
                ds = ClipDataset(cfg.data, cfg.augment, mods, seed=cfg.seed)
                caches[key] = DeviceClipCache(ds, dev, cfg.data.device_cache, cfg.data.workers)
                cs = time.monotonic() - tc
                log(f"clip cache: {cfg.data.device_cache} pass(es) of {len(ds)} clips ({', '.join(mods)}) on {dev}, "
                    f"{caches[key].nbytes() / 2**30:.2f} GiB, in {cs:.1f} s")
                metrics.append({"phase": "clip_cache", "seconds": cs, "clips": len(caches[key]), "gib": caches[key].nbytes() / 2**30})
            if share() >= a.min_stage_s and val_cache is None:
                vcfg = replace(cfg.data, drives=[str(a.work.resolve() / "data" / "val" / "*" / "*_sync")])
                val_cache = DeviceClipCache(ClipDataset(vcfg, None, ("rgb", "lidar"), seed=cfg.seed), dev, 1, cfg.data.workers)
            share = share()
            if share < a.min_stage_s:
                rec |= {"status": "skipped", "reason": f"budget: {max(share, 0):.0f} s left for it (under --min-stage-s {a.min_stage_s:g})"}
            else:
                cfg.init_from = {m: str(done[e] / f"student_{m}.pt") for m, e in st.init_from.items()} or cfg.init_from
                log(f"stage {st.name}: up to {cfg.optim.steps} steps of {cfg.optim.batch_size} clips, {share:.0f} s at most")
                res = train(cfg, progress=False, max_seconds=share, clip_cache=caches.get(cache_key(cfg)))
                done[st.name] = Path(cfg.out_dir)
                students = {m: Path(cfg.out_dir) / f"student_{m}.pt" for m in MODALITIES[cfg.stage]}
                rec |= {"status": "trained" if res["stopped"] == "steps" else "stopped_by_time", "steps": res["step"],
                        "seconds": res["train_s"], "setup_s": res["setup_s"], "clips_per_s": res["clips_per_s"],
                        "final_loss": res["smooth_loss"], "last_loss": last_logged_loss(Path(cfg.out_dir)),
                        "max_seconds": share, "val": val_losses(st.name, cfg, students, val_cache, dev)}
                cps = f"{res['clips_per_s']:.1f}" if res["clips_per_s"] else "n/a"
                log(f"stage {st.name}: {rec['status']} at step {res['step']}/{cfg.optim.steps} in {res['train_s']:.1f} s "
                    f"(+{res['setup_s']:.1f} s setup): {cps} clips/s, smoothed loss {res['smooth_loss']:.4f}; "
                    "validation " + ", ".join(f"{m} {v['total']:.4f}" for m, v in rec["val"].items()))
        if rec["status"] != "trained":
            partial = True
            if rec["status"] == "skipped":
                summary["skipped"].append(st.name)
                log(f"stage {st.name}: skipped ({rec['reason']})")
        summary["stages"].append(rec)
        metrics.append(rec)
    del caches
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    log("throughput: " + ", ".join(f"{r['stage']} {r['clips_per_s']:.1f} clips/s" if r.get("clips_per_s") else
                                   f"{r['stage']} n/a" for r in summary["stages"]))

    # 3. outputs and evaluation
    final, kind_of = {}, {s.name: c.stage for s, c in stages}
    for m in ("rgb", "lidar"):                                    # the last stage that trained each student
        trained = [(n, d) for n, d in done.items() if m in MODALITIES[kind_of[n]]]
        if trained:
            name, d = trained[-1]
            try:
                size = out.put_bytes(f"student_{m}.pt", half_student(d / f"student_{m}.pt"))
                final[m] = {"stage": name, "bytes": size}
            except LimitError as e:
                log(f"error: {e}")
                summary["errors"].append(str(e))
    summary["students"] = final
    h, w = stages[-1][1].data.height, stages[-1][1].data.width
    if set(final) != {"rgb", "lidar"}:
        log("evaluation: skipped (no rgb and lidar students to evaluate)")
        summary["evaluation"] = "skipped: no students"
        return 3 if partial or final else 2
    real = a.real_data if a.real_data is not None else [str(p) for p in DEFAULT_REAL if p.is_dir()]
    py = [sys.executable, "-m", "xmod_core.evaluate", "--mode", "all", "--device", a.device]
    ours = ["--ckpt-2d", str(out.path / "student_rgb.pt"), "--ckpt-3d", str(out.path / "student_lidar.pt"),
            "--height", str(h), "--width", str(w)]
    runs = {"sim_gpu": py + ["--data", *drives["test"], *ours]}
    if not a.no_shipped:
        runs["sim_shipped"] = py + ["--data", *drives["test"]]
    if real:
        runs["real_gpu"] = py + ["--data", *real, *ours]
        if not a.no_shipped:
            runs["real_shipped"] = py + ["--data", *real]
    timeout = left() - 5
    if timeout < 5:
        log("evaluation: skipped (budget spent)")
        summary["evaluation"] = "skipped: budget"
        return 3
    log(f"evaluation: {', '.join(runs)} in parallel, {timeout:.0f} s at most")
    t = time.monotonic()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    procs = {}
    for name, cmd in runs.items():
        eout = a.work / "eval" / name
        shutil.rmtree(eout, ignore_errors=True)
        procs[name] = (subprocess.Popen(cmd + ["--out", str(eout)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True), eout)
    results, evals = {}, {}
    for name, (p, eout) in procs.items():
        try:
            text, _ = p.communicate(timeout=max(1.0, timeout - (time.monotonic() - t)))
        except subprocess.TimeoutExpired:
            p.kill()
            text, _ = p.communicate()
            evals[name] = "stopped: budget"
            partial = True
        else:
            evals[name] = "done" if p.returncode == 0 else f"failed ({p.returncode})"
            if p.returncode:
                partial = True
        bar = re.compile(r"\|\s*\d+/\d+ \[")                       # tqdm's progress lines
        log(f"--- evaluate {name} ---\n" + "\n".join(ln for ln in text.splitlines() if ln.strip() and not bar.search(ln)))
        if (eout / "results.json").is_file() and (eout / "results.md").is_file():
            results[name] = (json.loads((eout / "results.json").read_text()), (eout / "results.md").read_text())
    summary["evaluation"] = evals
    metrics.append({"phase": "evaluation", "seconds": time.monotonic() - t, "runs": evals})
    size = f"{h}x{w}"
    for kind, title in (("sim", f"held-out simulated drives (seeds {' '.join(map(str, a.test_seeds))}, "
                                f"{len(drives['test'])} drives x {a.eval_frames} frames)"), ("real", "real KITTI: " + " ".join(real))):
        parts = [f"# Evaluation on {title}\n",
                 f"GPU students: {final['rgb']['stage']} (rgb), {final['lidar']['stage']} (lidar) at {size}; "
                 "shipped: the demo students (xmod_core/assets) at 96x320. `python -m xmod_core.evaluate --mode all`.\n"]
        for who, label in (("gpu", f"GPU students ({size})"), ("shipped", "shipped demo students (96x320)")):
            key = f"{kind}_{who}"
            if key in results:
                parts.append(f"## {label}\n" + demote(results[key][1]))
            elif key in evals:
                parts.append(f"## {label}\n\n{evals[key]}\n")
        if any(k.startswith(kind) for k in evals):
            try:
                out.put_text(f"eval_{kind}.md", "\n".join(parts), truncate=True)
            except LimitError as e:
                summary["errors"].append(str(e))
    if "sim_gpu" in results and "sim_shipped" in results:
        summary["comparison_sim"] = compare(results["sim_gpu"][0], results["sim_shipped"][0])
        f1 = summary["comparison_sim"].get("2d_grid", {}).get("fused", {}).get("f1", {})
        if f1:
            log(f"fused F1@50 on the 2D grid: GPU students {f1['gpu']}, shipped {f1['shipped']}")
    summary["complete"] = not partial
    return 3 if partial else 0


if __name__ == "__main__":
    sys.exit(main())
