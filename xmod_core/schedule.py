"""Learning-rate schedules.

:func:`warmup_exponential` is the slot-attention / DIOD schedule: linear warm-up from 0 to the
base learning rate over ``warmup_steps`` optimizer steps, then exponential decay by
``decay_rate`` every ``decay_steps`` steps.  Call ``scheduler.step()`` once after every
``optimizer.step()``.
"""
from __future__ import annotations

import torch

__all__ = ["WarmupExponential", "warmup_exponential"]


class WarmupExponential:
    """LR factor ``min(1, step / warmup_steps) * decay_rate ** (max(0, step - warmup_steps) /
    decay_steps)``.  A plain callable object (not a lambda), so ``LambdaLR.state_dict()``
    stores its attributes as plain data and the scheduler state loads with weights_only."""

    def __init__(self, warmup_steps: int, decay_rate: float, decay_steps: int) -> None:
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if not decay_rate > 0:
            raise ValueError(f"decay_rate must be > 0, got {decay_rate}")
        if decay_steps <= 0:
            raise ValueError(f"decay_steps must be > 0, got {decay_steps}")
        self.warmup_steps = int(warmup_steps)
        self.decay_rate = float(decay_rate)
        self.decay_steps = int(decay_steps)

    def __call__(self, step: int) -> float:
        warm = min(1.0, step / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        return warm * self.decay_rate ** (max(0, step - self.warmup_steps) / self.decay_steps)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(warmup_steps={self.warmup_steps}, "
                f"decay_rate={self.decay_rate}, decay_steps={self.decay_steps})")


def warmup_exponential(optimizer: torch.optim.Optimizer, warmup_steps: int, decay_rate: float,
                       decay_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` with :class:`WarmupExponential` for every parameter group.  The learning
    rate is 0 for the very first step (step 0) and reaches the base rate at ``warmup_steps``."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupExponential(warmup_steps, decay_rate, decay_steps))
