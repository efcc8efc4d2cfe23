"""One student step per frame, as the Predictor runs it: encoder, ConvGRU, slot attention and
instance extraction, optionally replayed as a CUDA graph.

At one frame at a time the students are launch-bound on a GPU: a step is a few hundred small
kernels, and launching them from Python takes as long as running them and holds the CPU, which
has the scan projection, fusion and clusters to do (paper configuration on an H200: about 6 ms of
launching per student, about 6 ms of GPU work for the 3D student). A frame that
carries state from the previous one replays a graph captured once (one launch); the first frame
of a sequence, which has no state yet (and one more slot-attention iteration), runs eagerly, as
does everything on the CPU. Same kernels in the same order, so the same numbers.
"""
from __future__ import annotations

import warnings
from typing import Callable

import torch

from .model import DIOD, State


class StudentStep:
    def __init__(self, model: DIOD, post: Callable, amp: bool = False, graphs: bool = False):
        """post: masks (B, K, h, w) -> (ids, scores), queued on the device as well. A step also
        returns the foreground attention (B, h, w) = 1 - the background slot's (what late fusion's
        `separate`, `either` and `foreground` agreements read). `amp` (bf16 autocast) and `graphs` apply on CUDA only."""
        cuda = next(model.parameters()).is_cuda
        self.model, self.post = model, post
        self.amp, self.graphs = amp and cuda, graphs and cuda                    # both for CUDA only
        self.graph = None

    def _run(self, x: torch.Tensor, state: State | None):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out, state = self.model.step(x, state, decode=False)                # masks only
        ids, conf = self.post(out["masks"])
        return ids, conf, 1 - out["masks"][:, -1].float(), state

    def _capture(self, x: torch.Tensor, state: State) -> None:
        self.x, self.hidden, self.slots = x.clone(), [h.clone() for h in state.hidden], state.slots.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):                                           # warm-up: kernels chosen, memory pooled
            for _ in range(2):
                self._run(self.x, State(self.hidden, self.slots))
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = self._run(self.x, State(self.hidden, self.slots))

    def __call__(self, x: torch.Tensor, state: State | None):
        """x (B, C, H, W) on the model's device, state from the previous frame or None ->
        ids, scores, foreground attention, next state (nothing synchronised with the host)."""
        if not self.graphs or state is None:
            return self._run(x, state)
        if self.graph is None or x.shape != self.x.shape or state.slots.shape != self.slots.shape:
            try:
                self._capture(x, state)
            except RuntimeError as e:                                           # a driver or op without capture support
                warnings.warn(f"CUDA graph capture failed ({e}); the students run eagerly", RuntimeWarning)
                self.graphs, self.graph = False, None
                return self._run(x, state)
        self.x.copy_(x)
        for buf, h in zip(self.hidden, state.hidden):
            buf.copy_(h)
        self.slots.copy_(state.slots)
        self.graph.replay()
        ids, conf, fg, nxt = self.out                                           # the graph's buffers: copy them out
        return ids.clone(), conf.clone(), fg.clone(), State([h.clone() for h in nxt.hidden], nxt.slots.clone())
