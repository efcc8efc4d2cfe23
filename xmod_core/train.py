"""Training CLI: `python -m xmod_core.train --config config/demo/2d_burn_in.yaml [--resume] [key=value ...]`.

One typed config (`TrainConfig`) from YAML; unknown keys and wrong types are errors naming the
key; `key=value` overrides (e.g. `optim.lr=1e-4 data.workers=0`) go through the same checks.
Runs on CPU or CUDA (`device: auto|cpu|cuda`), with mixed precision on CUDA, and on many GPUs
or nodes through torchrun + DistributedDataParallel (NCCL on CUDA, gloo on CPU):

    torchrun --nproc_per_node 4 -m xmod_core.train --config config/paper/2d_burn_in.yaml

`optim.batch_size` is the global batch; each process takes its share. Checkpoints (tensors and
plain data only, written atomically, the last `keep_last` plus the best) go to `out_dir`;
`--resume` continues exactly: models, optimiser, scheduler, step, position in the epoch and RNGs.
At the end the trained student is exported to `out_dir/student_<modality>.pt` for inference.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from . import distributed as dist
from .checkpoint import CheckpointError, CheckpointManager, capture_rng_state, load_checkpoint, restore_rng_state, save_atomic
from .config import ConfigError, config_hash, from_dict, load_config, to_dict
from .data import AugmentConfig, ClipDataset, DataConfig, DeviceClipCache
from .distill import DistillConfig
from .losses import LossConfig
from .model import ModelConfig
from .schedule import warmup_exponential
from .stages import build_stage, student_config


@dataclass
class OptimConfig:
    lr: float = 5e-4              # Adam
    warmup_steps: int = 2500      # linear warm-up
    decay_rate: float = 0.5       # exponential decay: lr * decay_rate ** (step / decay_steps)
    decay_steps: int = 100_000
    grad_clip: float = 1.0        # max global gradient norm (paper: 1.0)
    batch_size: int = 4           # global batch of clips, split over the processes
    steps: int = 200_000
    train_only: list = field(default_factory=list)   # parameter-name prefixes to train (e.g. [fine.]: only the fine-mask
                                                     # head); the rest of each student stays frozen. Empty: train all


@dataclass
class TrainConfig:
    stage: str = "2d_burn_in"
    out_dir: str = "runs/2d_burn_in"
    init_from: Union[str, dict[str, str], None] = None   # checkpoint or exported student(s) to start from;
                                                          # a mapping {rgb: path, lidar: path} per student
    seed: int = 0
    device: str = "auto"                # auto | cpu | cuda
    amp: bool = True                    # mixed precision (CUDA only)
    log_every: int = 10
    image_every: int = 200              # TensorBoard images of predicted vs motion masks
    ckpt_every: int = 500
    keep_last: int = 3
    export_every: int = 0               # > 0: students (and their EMA) also exported every this many steps as
                                        # snapshots/student_<modality>[_ema]_<step>.pt (a learning curve)
    ema_decay: float = 0.0              # > 0: an exponential moving average of each student's weights (kept
                                        # rate per step), checkpointed and exported as student_<modality>_ema.pt
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def __post_init__(self):
        if self.data.mask_stride != self.model.mask_stride:
            raise ValueError(f"data.mask_stride ({self.data.mask_stride}) must be {self.model.mask_stride} (model.output_stride "
                             f"{self.model.output_stride}, fine_masks {self.model.fine_masks}): the motion targets live on the "
                             "masks' grid")
        if self.data.min_target_cells < 0:
            raise ValueError(f"data.min_target_cells must be >= 0 (0: every target kept), got {self.data.min_target_cells}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be within [0, 1), got {self.ema_decay}")
        if self.export_every < 0:
            raise ValueError(f"export_every must be >= 0 (0: no snapshots), got {self.export_every}")
        if self.loss.mined_weight != 1.0 and (not self.stage.endswith("burn_in") or not self.data.mined_dir):
            raise ValueError(f"loss.mined_weight ({self.loss.mined_weight}) weighs mined labels in the burn-in stages "
                             f"and needs data.mined_dir; stage {self.stage!r}, data.mined_dir {self.data.mined_dir!r}")


class TrainingError(RuntimeError):
    """The trainer stopped; the message says why. Checkpoints already written are kept."""


def resume_hash(cfg: TrainConfig | dict) -> str:
    """What must not change when resuming: everything that shapes the trajectory except its length
    and the logging/checkpoint cadence (a TrainConfig or its to_dict form, as in config.json)."""
    d = to_dict(cfg)
    for k in ("out_dir", "log_every", "image_every", "ckpt_every", "keep_last", "init_from"):
        d.pop(k)
    d.pop("export_every", None)         # (absent from configs saved before it existed)
    if not d["optim"].get("train_only"):      # new keys at their defaults: the runs saved before them still resume
        d["optim"].pop("train_only", None)
    if not d["model"].get("fine_masks"):
        d["model"].pop("fine_masks", None)
    d["optim"].pop("steps")
    d["data"].pop("workers")
    d["data"].pop("preload", None)      # (absent from configs saved before these existed)
    d.pop("ema_decay", None)                  # an observer of the trajectory: may be switched on when resuming
    return config_hash(d)


class SkipSampler(Sampler):
    """The indices of `sampler` after the first `skip` (resuming inside an epoch)."""

    def __init__(self, sampler, skip: int):
        self.sampler, self.skip = sampler, skip

    def __iter__(self):
        it = iter(self.sampler)
        for _ in range(self.skip):
            next(it, None)
        return it

    def __len__(self):
        return max(0, len(self.sampler) - self.skip)


def colour_ids(ids: torch.Tensor) -> torch.Tensor:
    """(h, w) ids -> (3, h, w) uint8, fixed colours, black for 0."""
    g = torch.Generator().manual_seed(7)
    lut = torch.randint(60, 256, (256, 3), generator=g, dtype=torch.uint8)
    lut[0] = 0
    return lut[ids.long() % 256].permute(2, 0, 1)


def export_student(path: Path, stage_name: str, modality: str, model_cfg: ModelConfig, state: dict, meta: dict,
                   min_score: float | None = None):
    """A self-describing student file for inference: architecture, weights, provenance and, where
    given, the instance threshold chosen for it on validation (`min_score`: the Predictor's default
    for this student)."""
    ck = {"format": "xmod-student-1", "stage": stage_name, "modality": modality,
          "model_config": to_dict(student_config(model_cfg, modality)), "state_dict": state, "meta": meta}
    if min_score is not None:
        if not 0.0 <= min_score < 1.0:
            raise ValueError(f"min_score must be within [0, 1), got {min_score}")
        ck["min_score"] = float(min_score)
    save_atomic(ck, path)


def stamp_min_score(src: str | Path, dst: str | Path, min_score: float | None) -> Path:
    """A copy of the exported student `src` at `dst` naming `min_score` as its instance threshold
    (None: naming none, the Predictor's 0.5 applies). `dst` must not exist yet and differ from `src`:
    nothing already written is replaced."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        raise FileExistsError(f"{dst} exists: write the stamped student to a new path")
    ck = load_checkpoint(src)
    if ck.get("format") != "xmod-student-1":
        raise CheckpointError(f"{src} is not an exported student (format {ck.get('format')!r})")
    ck.pop("min_score", None)
    export_student(dst, ck["stage"], ck["modality"], from_dict(ModelConfig, ck["model_config"]), ck["state_dict"],
                   ck["meta"], min_score)
    return dst


def load_student_weights(path: str, modality: str) -> dict:
    """Weights of the `modality` student from a training checkpoint or an exported student file."""
    ck = load_checkpoint(path)
    if ck.get("format") == "xmod-student-1":
        if ck["modality"] != modality:
            raise CheckpointError(f"{path} holds a {ck['modality']} student, not a {modality} one")
        return ck["state_dict"]
    students = ck.get("models", {}).get("students", {})
    if modality not in students:
        raise CheckpointError(f"{path} has no {modality} student (it has {sorted(students)})")
    return students[modality]


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, max_seconds: float | None = None,
          clip_cache: DeviceClipCache | None = None, keep_group: bool = False) -> dict:
    """Train one stage. `max_seconds`: stop after the step during which this much wall time has passed
    since the call (setup included) and export what it has, as at the last step (result `stopped`:
    "time" instead of "steps"). `clip_cache`: clips already held on the device (`data.device_cache`
    passes of a dataset of the same drives and clips with at least this stage's modalities), shared
    by the stages of one run instead of each decoding its own. `keep_group`: leave the process
    group (under torchrun) in place for the next stage, as `run_pipeline` does: a default group
    destroyed and created again in one process reuses its rendezvous keys, and a rank that comes
    back first reads the other's stale address (a hang or "connection closed by peer")."""
    info = dist.init_distributed(cfg.device)
    try:
        return _train(cfg, info, resume, progress, max_seconds, clip_cache)
    finally:
        if not keep_group:
            dist.cleanup()


def _train(cfg: TrainConfig, info, resume: bool, progress: bool, max_seconds: float | None = None,
           clip_cache: DeviceClipCache | None = None) -> dict:
    t_begin = time.perf_counter()
    out = Path(cfg.out_dir)
    dev, world, rank = info.device, info.world_size, info.rank
    if cfg.optim.batch_size % world:
        raise TrainingError(f"optim.batch_size={cfg.optim.batch_size} is not divisible by the {world} processes")
    per_rank = cfg.optim.batch_size // world
    dist.seed_everything(cfg.seed, rank)
    stage = build_stage(cfg.stage, cfg.model, cfg.loss, cfg.distill).to(dev)
    manager = CheckpointManager(out / "checkpoints", keep_last=cfg.keep_last)
    latest = manager.latest()
    if latest is not None and not resume:
        raise TrainingError(f"{out} already holds checkpoints ({latest.name}); pass --resume to continue "
                            "or choose another out_dir")
    if resume and latest is None:
        raise TrainingError(f"--resume: no checkpoint in {out / 'checkpoints'}")
    if cfg.init_from and not resume:
        sources = cfg.init_from if isinstance(cfg.init_from, dict) else {m: cfg.init_from for m in stage.students}
        unknown = set(sources) - set(stage.students)
        if unknown:
            raise TrainingError(f"init_from names {sorted(unknown)}, but stage {cfg.stage} has students {sorted(stage.students)}")
        for modality, net in stage.students.items():
            if modality not in sources:
                continue
            weights = load_student_weights(sources[modality], modality)
            try:
                missing, unexpected = net.load_state_dict(weights, strict=False)
                new_head = [k for k in missing if k.startswith("fine.")]          # a fine-mask head added: starts fresh
                if unexpected or len(new_head) != len(missing) or (new_head and len(new_head) != len(net.fine.state_dict())):
                    raise RuntimeError(f"missing keys {missing[:4]}, unexpected keys {unexpected[:4]}")
            except RuntimeError as e:
                hint = ("; the decoder has log2(output_stride / recon_stride) upsamplings, so a student of output "
                        "stride 4 and recon_stride R starts one of output stride 2 with recon_stride R / 2"
                        if "decoder." in str(e) else "")
                raise TrainingError(f"init_from {sources[modality]}: the {modality} student does not fit this "
                                    f"model config: {str(e).splitlines()[0]}{hint}") from None
    if cfg.optim.train_only:
        for m in stage.students.values():
            names = [n for n, _ in m.named_parameters()]
            for prefix in cfg.optim.train_only:
                if not any(n.startswith(prefix) for n in names):
                    raise TrainingError(f"optim.train_only: no parameter of the student starts with {prefix!r}")
            for n, p in m.named_parameters():
                p.requires_grad_(any(n.startswith(prefix) for prefix in cfg.optim.train_only))

    if not resume:
        stage.on_start()
    dataset = ClipDataset(cfg.data, cfg.augment, stage.data_modalities, seed=cfg.seed)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True)
    if len(sampler) < per_rank:
        raise TrainingError(f"{len(dataset)} clips are too few for a batch of {cfg.optim.batch_size}")
    cache = clip_cache
    if cache is not None:
        if cache.passes != cfg.data.device_cache or cache.size != len(dataset) or \
                not set(stage.data_modalities) <= set(cache.modalities):
            raise TrainingError(f"the clip cache ({cache.passes} pass(es) of {cache.size} clips, {cache.modalities}) does "
                                f"not fit data.device_cache={cfg.data.device_cache} and {len(dataset)} clips of "
                                f"{stage.data_modalities}")
    elif cfg.data.device_cache:
        cache = DeviceClipCache(dataset, dev, cfg.data.device_cache, cfg.data.workers)
    use_amp = cfg.amp and dev.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    if info.distributed and dev.type == "cuda":       # BatchNorm statistics over the global batch
        stage.students = {k: torch.nn.SyncBatchNorm.convert_sync_batchnorm(m) for k, m in stage.students.items()}
    params = [p for p in stage.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.optim.lr, foreach=True)          # one fused update, not a loop over tensors
    sched = warmup_exponential(opt, cfg.optim.warmup_steps, cfg.optim.decay_rate, cfg.optim.decay_steps)
    nets = dict(stage.students)
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP
        nets = {k: DDP(m, device_ids=[dev.index] if dev.type == "cuda" else None) for k, m in nets.items()}

    step, epoch, in_epoch, smooth = 0, 0, 0, None
    rhash = resume_hash(cfg)
    ema = None                                                           # modality -> name -> tensor
    if resume:
        ck = load_checkpoint(latest, map_location=dev, expect={"stage": cfg.stage, "resume_hash": rhash})
        stage.load_state_dict(ck["models"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        step, epoch, in_epoch, smooth = ck["step"], ck["epoch"], ck["in_epoch"], ck["smooth_loss"]
        ema = ck.get("ema") if cfg.ema_decay > 0 else None     # (absent: the average starts at the resumed weights)
        if ck["world_size"] == world:
            restore_rng_state(ck["rng"][rank] if rank < len(ck["rng"]) else ck["rng"][0])

    if cfg.ema_decay > 0 and ema is None:
        ema = {m: {k: v.detach().clone() for k, v in s.state_dict().items()} for m, s in stage.students.items()}
    ema_float = {m: [k for k, v in avg.items() if v.is_floating_point()] for m, avg in (ema or {}).items()}

    writer = bar = None
    metrics_file = None
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=1))
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(out / "tb"))
        metrics_file = open(out / "metrics.jsonl", "a")
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=cfg.optim.steps, initial=step, desc=cfg.stage, unit="step", dynamic_ncols=True)

    def checkpoint(final: bool = False):
        rngs = [capture_rng_state()]
        if info.distributed:
            rngs = [None] * world
            torch.distributed.all_gather_object(rngs, capture_rng_state())
        if not info.is_main:
            return
        state = {"stage": cfg.stage, "resume_hash": rhash, "config": to_dict(cfg), "step": step, "epoch": epoch,
                 "in_epoch": in_epoch, "smooth_loss": smooth, "world_size": world, "models": stage.state_dict(),
                 "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "rng": rngs}
        if ema is not None:
            state["ema"] = ema
        manager.save(state, step, metric=smooth)
        exports = [(out, "")] if final else []
        if cfg.export_every and step % cfg.export_every == 0:
            exports.append((out / "snapshots", f"_{step}"))
        for folder, suffix in exports:
            folder.mkdir(exist_ok=True)
            for modality, m in stage.students.items():
                export_student(folder / f"student_{modality}{suffix}.pt", cfg.stage, modality, cfg.model, m.state_dict(),
                               {"step": step, "seed": cfg.seed, "config": to_dict(cfg)})
                if ema is not None:
                    export_student(folder / f"student_{modality}_ema{suffix}.pt", cfg.stage, modality, cfg.model,
                                   ema[modality], {"step": step, "seed": cfg.seed, "config": to_dict(cfg),
                                                   "ema_decay": cfg.ema_decay})

    for m in stage.students.values():
        m.train()
        if cfg.optim.train_only:                 # a frozen BatchNorm keeps its running statistics too
            for bn in m.modules():
                if isinstance(bn, torch.nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in bn.parameters()):
                    bn.eval()
    t_last, seen = time.perf_counter(), 0
    t_loop, first_step, timed_out = t_last, step, False
    try:
        while step < cfg.optim.steps and not timed_out:
            sampler.set_epoch(epoch)
            dataset.set_epoch(epoch)
            if cache is None:
                loader = DataLoader(dataset, batch_size=per_rank, sampler=SkipSampler(sampler, in_epoch * per_rank),
                                    num_workers=cfg.data.workers, drop_last=True, pin_memory=dev.type == "cuda")
                batches = ({k: v.to(dev, non_blocking=True) for k, v in b.items()} for b in loader)
            else:                                   # the same indices, gathered on the device
                order = list(SkipSampler(sampler, in_epoch * per_rank))
                batches = (cache.batch(order[j:j + per_rank], epoch) for j in range(0, len(order) - per_rank + 1, per_rank))
            for batch in batches:
                ctx = torch.autocast("cuda", dtype=amp_dtype) if use_amp else nullcontext()
                with ctx:
                    total, logs, vis = stage.loss(batch, nets)
                if not torch.isfinite(total):
                    raise TrainingError(f"non-finite loss at step {step} ({logs}); the last checkpoint in "
                                        f"{out / 'checkpoints'} is intact")
                opt.zero_grad(set_to_none=True)
                scaler.scale(total).backward()
                scaler.unscale_(opt)
                gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip, foreach=True)
                scaler.step(opt)
                scaler.update()
                sched.step()
                stage.after_step(step)
                if ema is not None:
                    with torch.no_grad():
                        for modality, m in stage.students.items():
                            cur, avg, keys = m.state_dict(), ema[modality], ema_float[modality]
                            torch._foreach_lerp_([avg[k] for k in keys], [cur[k] for k in keys], 1 - cfg.ema_decay)
                            for k in avg.keys() - set(keys):             # integer buffers (BatchNorm's count)
                                avg[k].copy_(cur[k])
                step, in_epoch, seen = step + 1, in_epoch + 1, seen + cfg.optim.batch_size
                if info.distributed:
                    vals = dist.all_reduce_mean(torch.tensor(list(logs.values()), dtype=torch.float64, device=dev))
                    logs = dict(zip(logs, vals.tolist()))
                smooth = logs["total"] if smooth is None else 0.95 * smooth + 0.05 * logs["total"]
                if info.is_main:
                    now = time.perf_counter()
                    rate = seen / max(now - t_last, 1e-9)
                    lr = sched.get_last_lr()[0]
                    metrics_file.write(json.dumps({"step": step, **logs, "lr": lr, "grad_norm": float(gnorm)}) + "\n")
                    if step % cfg.log_every == 0 or step == cfg.optim.steps:
                        metrics_file.flush()
                        for k, v in logs.items():
                            writer.add_scalar(f"loss/{k}", v, step)
                        writer.add_scalar("train/lr", lr, step)
                        writer.add_scalar("train/grad_norm", float(gnorm), step)
                        writer.add_scalar("train/clips_per_s", rate, step)
                        t_last, seen = now, 0
                    if step % cfg.image_every == 0 or step == 1:
                        for modality, masks in vis.items():
                            pred = colour_ids(masks[0, 0].argmax(0).cpu())                   # first clip, first frame
                            mot = colour_ids(batch["motion"][0, 0].cpu())
                            writer.add_image(f"masks/{modality}_pred_vs_motion", torch.cat([pred, mot], 1), step)
                    if bar is not None:
                        bar.set_postfix(loss=f"{logs['total']:.4f}", clips_s=f"{rate:.2f}")
                        bar.update(1)
                if (step % cfg.ckpt_every == 0 or (cfg.export_every and step % cfg.export_every == 0)) \
                        and step < cfg.optim.steps:
                    checkpoint()
                if step >= cfg.optim.steps:
                    break
                if max_seconds is not None and time.perf_counter() - t_begin >= max_seconds:
                    timed_out = True                # the final checkpoint and students below, as at the last step
                    break
            else:                                   # the epoch is exhausted
                epoch, in_epoch = epoch + 1, 0
        train_s = time.perf_counter() - t_loop
        checkpoint(final=True)
        dist.barrier()          # every rank leaves once rank 0 has written the students (the next stage loads them)
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        if metrics_file is not None:
            metrics_file.close()
    ran = step - first_step
    return {"step": step, "smooth_loss": smooth, "out_dir": str(out), "steps_run": ran, "train_s": train_s,
            "clips_per_s": ran * cfg.optim.batch_size / train_s if ran and train_s > 0 else None,
            "setup_s": t_loop - t_begin, "stopped": "time" if timed_out else "steps"}


@dataclass
class PipelineStage:
    name: str                              # its folder under out_dir, and the stage trained unless `stage` says
    config: str                            # its training config
    init_from: dict[str, str] = field(default_factory=dict)   # modality -> name of an earlier stage
    stage: str = ""                        # the training stage (2d_burn_in, ..., 2d_3d_ts); empty: `name`
    overrides: list[str] = field(default_factory=list)        # key=value on top of `config` (ablations)


@dataclass
class PipelineConfig:
    out_dir: str = "runs/pipeline"
    stages: list[PipelineStage] = field(default_factory=list)


def run_pipeline(path: str, overrides=(), progress: bool = True) -> list[dict]:
    """Every stage in order, each in out_dir/<name>, initialised from the students that earlier
    stages exported; a stage whose students are all exported is finished and skipped, one whose
    checkpoints exist without them is resumed."""
    pipe = load_config(PipelineConfig, path)
    root, done, summary = Path(pipe.out_dir), {}, []
    try:
        for st in pipe.stages:
            summary.append(_pipeline_stage(st, root, done, overrides, progress))
    finally:
        dist.cleanup()                     # one process group for every stage (see `train`'s keep_group)
    return summary


def _pipeline_stage(st: PipelineStage, root: Path, done: dict, overrides, progress: bool) -> dict:
    """Train (or skip, or resume) one stage of a pipeline; `done` maps finished stages to their folders."""
    out = root / st.name
    cfg = load_config(TrainConfig, Path(st.config),
                      list(st.overrides) + list(overrides) + [f"out_dir={out}", f"stage={st.stage or st.name}"])
    sources = {}
    for modality, earlier in st.init_from.items():
        if earlier not in done:
            raise TrainingError(f"pipeline stage {st.name}: init_from {modality}={earlier} is not an earlier stage")
        sources[modality] = str(done[earlier] / f"student_{modality}.pt")
    cfg.init_from = sources or cfg.init_from
    stage_students = build_stage(cfg.stage, cfg.model, cfg.loss, cfg.distill).students
    finished = all((out / f"student_{m}.pt").is_file() for m in stage_students)
    t0 = time.perf_counter()
    if finished:
        stored = json.loads((out / "config.json").read_text()) if (out / "config.json").is_file() else None
        if stored is not None and (resume_hash(stored) != resume_hash(cfg)
                                   or stored["optim"]["steps"] != cfg.optim.steps):
            raise TrainingError(f"pipeline stage {st.name}: {out} holds students trained with another "
                                f"configuration than {st.config} (with its overrides) gives now; delete {out} "
                                f"to train it again")
        result = {"step": None, "smooth_loss": None, "out_dir": str(out), "skipped": True}
    else:
        resume = CheckpointManager(out / "checkpoints").latest() is not None
        result = train(cfg, resume=resume, progress=progress, keep_group=True) | {"skipped": False, "resumed": resume}
    done[st.name] = out
    return {"stage": st.name, "seconds": time.perf_counter() - t0, **result}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m xmod_core.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="YAML training config (config/demo/*.yaml, config/paper/*.yaml)")
    src.add_argument("--pipeline", help="YAML pipeline: every stage in order (config/demo/pipeline.yaml)")
    p.add_argument("--resume", action="store_true", help="continue from out_dir's latest checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.steps=100 data.workers=0")
    a = p.parse_args(argv)
    try:
        if a.pipeline:
            summary = run_pipeline(a.pipeline, a.overrides, progress=not a.no_progress)
        else:
            cfg = load_config(TrainConfig, a.config, a.overrides)
            result = train(cfg, resume=a.resume, progress=not a.no_progress)
    except (ConfigError, CheckpointError, TrainingError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not dist.is_main():
        return 0
    if a.pipeline:
        w = max([12] + [len(r["stage"]) for r in summary])
        print(f"{'stage':{w}s} {'status':9s} {'steps':>6s} {'loss':>8s} {'time':>8s}  outputs")
        for r in summary:
            status = "skipped" if r["skipped"] else "resumed" if r.get("resumed") else "trained"
            loss = "" if r["smooth_loss"] is None else f"{r['smooth_loss']:.4f}"
            print(f"{r['stage']:{w}s} {status:9s} {r['step'] or '':>6} {loss:>8s} {r['seconds']:7.0f}s  {r['out_dir']}")
    else:
        rate = f", {result['clips_per_s']:.2f} clips/s" if result["clips_per_s"] else ""
        print(f"done: step {result['step']}, smoothed loss {result['smooth_loss']:.4f}{rate}, outputs in {result['out_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
