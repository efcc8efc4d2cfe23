"""Checkpoints that hold only tensors and plain data, written atomically, loaded safely.

* :func:`save_atomic` writes through a temporary file in the target directory, fsyncs it and
  renames it over the target, so a crash never leaves a half-written checkpoint behind.
* :func:`load_checkpoint` uses ``torch.load(weights_only=True)`` only: a checkpoint can hold
  tensors, dicts, lists, tuples, str/int/float/bool/None but never make the loader run code.
  Every failure is a :class:`CheckpointError` naming the file.
* :class:`CheckpointManager` keeps the last ``keep_last`` ``step_XXXXXXXX.pt`` files, a
  ``latest`` pointer and ``best.pt`` / ``best.json`` for the best metric so far.
* :func:`capture_rng_state` / :func:`restore_rng_state` save the python, numpy, torch and CUDA
  RNGs as tensors and plain data, so they survive a ``weights_only`` round trip.
"""
from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

__all__ = ["CheckpointError", "save_atomic", "load_checkpoint", "CheckpointManager",
           "capture_rng_state", "restore_rng_state"]

_MISSING = object()


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, unsafe or does not match what the caller expects."""


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX); silently skipped where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(f)`` on a temp file next to ``path``, fsync, then ``os.replace`` it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)          # mkstemp's 0600 would make shared checkpoints unreadable
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (temp file in the same directory, flush,
    fsync, ``os.replace``); parent directories are created.  Returns the path."""
    return _write_atomic(path, lambda f: torch.save(obj, f))


def _write_text_atomic(path: Path, text: str) -> Path:
    return _write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # e.g. tensors of different shapes, ambiguous truth values
        return False


def _load_error(path: Path, exc: Exception) -> CheckpointError:
    """Turn a ``torch.load`` failure into a CheckpointError: unsafe content vs corrupt file."""
    text = str(exc)
    m = re.search(r"WeightsUnpickler error:\s*(.*?)(?:\n\s*\n|$)", text, re.S)
    detail = " ".join((m.group(1) if m else text).split()) or type(exc).__name__
    detail = re.split(r"(?<=\.)\s", detail, maxsplit=1)[0][:300]  # first sentence
    if m and re.search(r"GLOBAL|Can only (create|build)", detail):
        return CheckpointError(
            f"refusing to load checkpoint {path}: it holds objects other than tensors and plain "
            f"data, which would need arbitrary unpickling (weights_only=True): {detail}")
    return CheckpointError(f"cannot read checkpoint {path} (truncated, corrupt or not a torch "
                           f"checkpoint): {type(exc).__name__}: {detail}")


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu",
                    expect: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Load a checkpoint dict with ``torch.load(weights_only=True)``.

    ``expect`` maps top-level keys to required values (e.g. ``{"config_hash": h,
    "stage": "2d_burn_in"}``); any difference raises :class:`CheckpointError` listing each
    key with the stored and the expected value.  A missing, truncated or corrupt file, a file
    whose top level is not a dict, or one that would need arbitrary unpickling also raise it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure of the loader is a bad checkpoint
        raise _load_error(path, exc) from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, expected a dict")
    if expect:
        diffs = []
        for key, want in expect.items():
            got = obj.get(key, _MISSING)
            if got is _MISSING:
                diffs.append(f"{key!r} is missing (expected {want!r})")
            elif not _same(got, want):
                diffs.append(f"{key!r} is {got!r}, expected {want!r}")
        if diffs:
            raise CheckpointError(f"checkpoint {path} does not match: " + "; ".join(diffs))
    return obj


class CheckpointManager:
    """Rotating checkpoints in one directory.

    ``save`` writes ``step_{step:08d}.pt`` atomically, removes all but the newest
    ``keep_last`` step files (by step number; the file just written is always kept), points
    ``latest`` (a one-line text file, replaced atomically) at it and, when ``metric`` improves
    on the best so far, copies it atomically to ``best.pt`` and records the metric in
    ``best.json``.  Each saved dict gets a ``"checkpoint_meta"`` entry ``{"step", "metric",
    "higher_is_better"}`` (so ``best.pt`` carries its metric).  Use from one process only
    (rank 0 under DDP).
    """

    LATEST = "latest"
    BEST = "best.pt"
    BEST_JSON = "best.json"
    META_KEY = "checkpoint_meta"
    _STEP_RE = re.compile(r"^step_(\d+)\.pt$")

    def __init__(self, directory: str | os.PathLike, keep_last: int = 3) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keep_last = keep_last

    def step_path(self, step: int) -> Path:
        return self.directory / f"step_{step:08d}.pt"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """``(step, path)`` of the step files present, ascending by step."""
        found = []
        for p in self.directory.iterdir():
            m = self._STEP_RE.match(p.name)
            if m and p.is_file():
                found.append((int(m.group(1)), p))
        return sorted(found)

    def best_info(self) -> dict[str, Any] | None:
        """Contents of ``best.json`` (``metric``, ``step``, ``higher_is_better``) or None."""
        try:
            return json.loads((self.directory / self.BEST_JSON).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"unreadable {self.directory / self.BEST_JSON}: {exc}") from exc

    def save(self, state: Mapping[str, Any], step: int, metric: float | None = None,
             higher_is_better: bool = False) -> Path:
        """Write the checkpoint of ``step``; returns its path (see the class docstring)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        metric = None if metric is None else float(metric)
        meta = {"step": int(step), "metric": metric, "higher_is_better": bool(higher_is_better)}
        path = save_atomic({**state, self.META_KEY: meta}, self.step_path(step))
        _write_text_atomic(self.directory / self.LATEST, path.name + "\n")
        if metric is not None and self._improves(metric, higher_is_better):
            best = self.directory / self.BEST
            with open(path, "rb") as src:
                _write_atomic(best, lambda f: shutil.copyfileobj(src, f, 1 << 20))
            _write_text_atomic(self.directory / self.BEST_JSON, json.dumps(meta, indent=1) + "\n")
        self._prune(keep=path)
        return path

    def _improves(self, metric: float, higher_is_better: bool) -> bool:
        if math.isnan(metric):
            return False
        info = self.best_info()
        if info is None or info.get("metric") is None or not (self.directory / self.BEST).is_file():
            return True
        if bool(info.get("higher_is_better", higher_is_better)) != higher_is_better:
            raise ValueError(f"{self.directory / self.BEST_JSON} was written with higher_is_better="
                             f"{info.get('higher_is_better')}, now called with {higher_is_better}")
        best = float(info["metric"])
        return metric > best if higher_is_better else metric < best

    def _prune(self, keep: Path) -> None:
        files = self.checkpoints()
        for _, p in files[:max(0, len(files) - self.keep_last)]:
            if p != keep:
                p.unlink(missing_ok=True)

    def latest(self) -> Path | None:
        """The most recently saved step file (``latest`` pointer, else the highest step)."""
        try:
            name = (self.directory / self.LATEST).read_text(encoding="utf-8").strip()
        except OSError:
            name = ""
        if name and self._STEP_RE.match(name) and (self.directory / name).is_file():
            return self.directory / name
        files = self.checkpoints()
        return files[-1][1] if files else None

    def best(self) -> Path | None:
        """``best.pt`` if a metric was ever recorded, else None."""
        p = self.directory / self.BEST
        return p if p.is_file() else None


# --------------------------------------------------------------------------------------------
# RNG state


def capture_rng_state() -> dict[str, Any]:
    """State of python ``random``, numpy's global RNG, torch's CPU RNG and every CUDA device's
    RNG (when CUDA is available), as tensors and plain data only (``weights_only``-loadable)."""
    py_version, py_internal, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": int(py_version),
                   "internal": torch.tensor(py_internal, dtype=torch.int64),
                   "gauss_next": None if py_gauss is None else float(py_gauss)},
        "numpy": {"kind": str(np_kind),
                  "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss),
                  "cached_gaussian": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`.  CUDA states are restored for the devices present
    (the first ``min(saved, available)``); a state without ``"cuda"`` leaves CUDA untouched."""
    try:
        py = state["python"]
        random.setstate((int(py["version"]),
                         tuple(int(x) for x in torch.as_tensor(py["internal"]).tolist()),
                         py["gauss_next"]))
        nps = state["numpy"]
        np.random.set_state((nps["kind"],
                             torch.as_tensor(nps["keys"]).cpu().numpy().astype(np.uint32),
                             int(nps["pos"]), int(nps["has_gauss"]),
                             float(nps["cached_gaussian"])))
        torch.set_rng_state(torch.as_tensor(state["torch"]).cpu().to(torch.uint8))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"invalid RNG state: {type(exc).__name__}: {exc}") from exc
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        for i, s in enumerate(cuda[:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(torch.as_tensor(s).cpu().to(torch.uint8), device=i)
