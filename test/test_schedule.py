"""Tests for xmod_core.schedule: warm-up + exponential decay learning-rate schedule."""
from __future__ import annotations

import io
import math

import pytest
import torch

from xmod_core.schedule import WarmupExponential, warmup_exponential

BASE_LR, WARMUP, RATE, DECAY = 4e-4, 100, 0.5, 1000


def make(lr: float = BASE_LR):
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=lr)
    return opt, warmup_exponential(opt, WARMUP, RATE, DECAY)


def test_factor_values():
    f = WarmupExponential(WARMUP, RATE, DECAY)
    assert f(0) == 0.0
    assert f(WARMUP // 2) == pytest.approx(0.5)
    assert f(WARMUP) == pytest.approx(1.0)
    assert f(WARMUP + DECAY) == pytest.approx(RATE)
    assert f(WARMUP + 3 * DECAY) == pytest.approx(RATE ** 3)
    assert f(WARMUP + DECAY // 2) == pytest.approx(math.sqrt(RATE))
    assert WarmupExponential(0, RATE, DECAY)(0) == 1.0  # no warm-up
    values = [f(s) for s in range(3 * WARMUP)]
    assert all(a < b for a, b in zip(values[:WARMUP], values[1:WARMUP + 1]))  # rises
    assert all(a > b for a, b in zip(values[WARMUP:], values[WARMUP + 1:]))   # then decays


def test_scheduler_drives_optimizer_lr():
    opt, sched = make()
    seen = {}
    for step in range(WARMUP + DECAY + 1):
        seen[step] = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
    assert seen[0] == 0.0
    assert seen[WARMUP // 2] == pytest.approx(BASE_LR / 2)
    assert seen[WARMUP] == pytest.approx(BASE_LR)
    assert seen[WARMUP + DECAY] == pytest.approx(BASE_LR * RATE)


def test_state_dict_round_trip_weights_only():
    opt, sched = make()
    for _ in range(150):
        opt.step()
        sched.step()
    buf = io.BytesIO()
    torch.save({"sched": sched.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)  # plain data only: no pickled callables
    opt2, sched2 = make()
    opt2.load_state_dict(loaded["opt"])
    sched2.load_state_dict(loaded["sched"])
    assert sched2.last_epoch == 150
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])
    for _ in range(10):
        opt.step(), sched.step(), opt2.step(), sched2.step()
    assert sched2.get_last_lr() == pytest.approx(sched.get_last_lr())


@pytest.mark.parametrize("args, name", [((-1, 0.5, 10), "warmup_steps"),
                                        ((10, 0.0, 10), "decay_rate"),
                                        ((10, 0.5, 0), "decay_steps")])
def test_invalid_arguments(args, name):
    with pytest.raises(ValueError, match=name):
        WarmupExponential(*args)
