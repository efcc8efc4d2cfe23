"""The DIOD student: one architecture for the 2D student (RGB clips, 3 channels) and the 3D
student (LiDAR front-view clips, 4 channels: x, y, z, depth).

    frames (B, T, C, H, W)
      -> ResNet encoder, output stride o (4; 2: finer) (B*T, E, h, w)  h = H/o, w = W/o
      -> 2-layer ConvGRU over the T frames          (B, T, G, h, w)
      -> + soft position embedding, per-token LayerNorm + MLP -> tokens (B, T, N, D), N = h*w
      -> slot attention, K slots, softmax over slots, the LAST slot is the background;
         the slots of frame t initialise frame t+1 (one iteration per frame, one extra on the first)
      -> masks (B, T, K, h, w) summing to one over slots; foreground = 1 - masks[:, :, -1]
         (fine_masks: (B, T, K, 2h, 2w): the attention upsampled x2 and sharpened by each slot's
         similarity to the stem's stride-2 features, `FineMasks`)
      -> decoder from the attention-weighted slot map -> (B, T, out, H/s, W/s), s = recon_stride:
         RGB reconstruction (2D) or scene completion of all four LiDAR channels (3D)

Streaming: `step(frame, state)` processes one frame and returns the state (ConvGRU hidden states
and slots) for the next; `forward(clip)` gives the same result as stepping through the clip.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ModelConfig:
    in_channels: int = 3
    out_channels: int = 3
    widths: tuple[int, ...] = (64, 64, 128, 256, 512)   # stem, layer1..layer4 (ResNet-18)
    blocks: tuple[int, ...] = (2, 2, 2, 2)              # basic blocks per layer
    gru_hidden: int = 64
    gru_layers: int = 2
    num_slots: int = 45                                 # including the background slot (the last)
    slot_dim: int = 64
    mlp_hidden: int = 128
    decoder_channels: int = 64
    first_frame_iters: int = 2                          # slot-attention iterations on a clip's first frame
    norm: str = "batch"                                 # encoder normalisation: "batch" (ResNet) or "group"
    output_stride: int = 4                              # slot grid at 1/4 of the input (the paper's) or 1/2 (finer:
                                                        # layer2 keeps its resolution; data.mask_stride must match)
    recon_stride: int = 1                               # reconstruction at 1/recon_stride of the input (1, 2 or 4, at
                                                        # most output_stride): fewer transposed convs, targets averaged over cells
    fine_masks: bool = False                            # slot masks at 1/2 of the input from the 1/4 slot grid (`FineMasks`;
                                                        # output_stride 4 only; data.mask_stride 2)

    def __post_init__(self):
        if len(self.widths) != 5 or len(self.blocks) != 4:
            raise ValueError("model.widths needs 5 entries (stem + 4 layers) and model.blocks 4")
        if self.num_slots < 2:
            raise ValueError("model.num_slots must be at least 2 (objects + background)")
        if self.norm not in ("batch", "group"):
            raise ValueError(f"model.norm must be 'batch' or 'group', got {self.norm!r}")
        if self.output_stride not in (2, 4):
            raise ValueError(f"model.output_stride must be 2 or 4, got {self.output_stride}")
        if self.recon_stride not in (1, 2, 4) or self.recon_stride > self.output_stride:
            raise ValueError(f"model.recon_stride must be 1, 2 or 4 and at most output_stride ({self.output_stride}), "
                             f"got {self.recon_stride}")
        if self.fine_masks and self.output_stride != 4:
            raise ValueError("model.fine_masks needs model.output_stride 4 (the masks come out at 1/2 of the input)")

    @property
    def mask_stride(self) -> int:
        """The input's size over the masks' size (the grid the motion targets must live on)."""
        return self.output_stride // 2 if self.fine_masks else self.output_stride


@dataclass
class State:
    """Temporal state carried between frames of one sequence."""
    hidden: list        # gru_layers x (B, G, h, w)
    slots: torch.Tensor  # (B, K, D)


def norm_layer(kind: str, c: int) -> nn.Module:
    """BatchNorm as in ResNet, or GroupNorm (batch-independent: identical under any data-parallel
    split of a batch, and no train/eval gap; BatchNorm syncs across GPUs only)."""
    return nn.BatchNorm2d(c) if kind == "batch" else nn.GroupNorm(min(8, c), c)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: str = "batch"):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = norm_layer(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = norm_layer(norm, cout)
        self.short = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), norm_layer(norm, cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.short(x))


class Encoder(nn.Module):
    """ResNet without max-pool, layer2 at stride 2 and layer3/layer4 at stride 1: output stride 4
    (output_stride 2: layer2 at stride 1 too)."""

    def __init__(self, cin: int, widths, blocks, norm: str = "batch", output_stride: int = 4):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(cin, widths[0], 7, 2, 3, bias=False), norm_layer(norm, widths[0]), nn.ReLU())
        layers, c = [], widths[0]
        for i, (w, n) in enumerate(zip(widths[1:], blocks)):
            stride = 2 if i == 1 and output_stride == 4 else 1
            layers += [BasicBlock(c, w, stride, norm)] + [BasicBlock(w, w, 1, norm) for _ in range(n - 1)]
            c = w
        self.layers = nn.Sequential(*layers)
        self.out_channels = c

    def forward(self, x, stem: bool = False):  # (B, C, H, W) -> (B, E, H/s, W/s), s = output_stride
        low = self.stem(x)                        # (B, widths[0], H/2, W/2)
        out = self.layers(low)
        return (out, low) if stem else out


class ConvGRUCell(nn.Module):
    def __init__(self, cin: int, hidden: int, k: int = 3):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(cin + hidden, 2 * hidden, k, padding=k // 2)
        self.cand = nn.Conv2d(cin + hidden, hidden, k, padding=k // 2)

    def forward(self, x, h):  # (B, Cin, h, w), (B, G, h, w) -> (B, G, h, w)
        r, z = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, 1)
        c = torch.tanh(self.cand(torch.cat([x, r * h], 1)))
        return (1 - z) * h + z * c


class SlotAttention(nn.Module):
    """One slot-attention iteration per call (Locatello et al.): softmax over slots, weighted
    mean of the values, GRU update and a residual MLP."""

    def __init__(self, dim: int, hidden: int, eps: float = 1e-8):
        super().__init__()
        self.scale, self.eps = dim ** -0.5, eps
        self.norm_slots, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.gru = nn.GRUCell(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, slots, k, v):  # (B, K, D), (B, N, D), (B, N, D)
        B, K, D = slots.shape
        q = self.to_q(self.norm_slots(slots)) * self.scale                     # (B, K, D)
        attn = torch.softmax(torch.einsum("bkd,bnd->bkn", q, k), dim=1)         # (B, K, N) over slots
        w = attn / (attn.sum(-1, keepdim=True) + self.eps)                      # weighted mean
        updates = torch.einsum("bkn,bnd->bkd", w, v)                            # (B, K, D)
        slots = self.gru(updates.reshape(-1, D), slots.reshape(-1, D)).view(B, K, D)
        return slots + self.mlp(self.norm_mlp(slots)), attn


class Decoder(nn.Module):
    """Attention-weighted slot map (B, D, h, w) at 1/o of the input -> (B, out, H/s, W/s) by
    log2(o/s) stride-2 transposed convs (o = output_stride, s = recon_stride: 1 gives the input
    resolution)."""

    def __init__(self, dim: int, ch: int, out: int, recon_stride: int = 1, output_stride: int = 4):
        super().__init__()
        ups = {1: 0, 2: 1, 4: 2}[output_stride // recon_stride]
        self.net = nn.Sequential(
            nn.Conv2d(dim, ch, 3, padding=1), nn.ReLU(),
            *[m for _ in range(ups) for m in (nn.ConvTranspose2d(ch, ch, 4, 2, 1), nn.ReLU())],
            nn.Conv2d(ch, out, 3, padding=1))

    def forward(self, x):
        return self.net(x)


class FineMasks(nn.Module):
    """Slot masks at twice the slot grid's resolution. The slot attention (B, K, h, w) is upsampled
    bilinearly x2 and its log is shifted, per pixel and slot, by the slot's similarity to a pixel
    embedding of the stem's stride-2 features and the upsampled ConvGRU state; a softmax over the
    slots gives masks (B, K, 2h, 2w) that still sum to one. The slot projection starts at zero, so a
    student that gains this head starts from its upsampled attention and learns only the edges."""

    def __init__(self, c_low: int, c_high: int, dim: int, hidden: int):
        super().__init__()
        self.pix = nn.Sequential(nn.Conv2d(c_low + c_high, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, dim, 1))
        self.to_q = nn.Linear(dim, dim)
        nn.init.zeros_(self.to_q.weight)
        nn.init.zeros_(self.to_q.bias)

    def forward(self, attn, slots, low, high):  # (B, K, h, w), (B, K, D), (B, Cl, 2h, 2w), (B, Ch, h, w)
        size = low.shape[-2:]
        up = F.interpolate(attn, size=size, mode="bilinear", align_corners=False)                    # (B, K, 2h, 2w)
        e = self.pix(torch.cat([low, F.interpolate(high, size=size, mode="bilinear", align_corners=False)], 1))
        logits = torch.log(up.clamp(min=1e-6)) + torch.einsum("bkd,bdhw->bkhw", self.to_q(slots), e)  # (B, K, 2h, 2w)
        return logits.softmax(1)


class DIOD(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.slot_dim
        self.encoder = Encoder(cfg.in_channels, cfg.widths, cfg.blocks, cfg.norm, cfg.output_stride)
        cins = [self.encoder.out_channels] + [cfg.gru_hidden] * (cfg.gru_layers - 1)
        self.gru = nn.ModuleList(ConvGRUCell(c, cfg.gru_hidden) for c in cins)
        self.pos = nn.Linear(4, cfg.gru_hidden)                                 # soft position embedding
        self.token_norm = nn.LayerNorm(cfg.gru_hidden)                          # per token, any resolution
        self.token_mlp = nn.Sequential(nn.Linear(cfg.gru_hidden, cfg.mlp_hidden), nn.ReLU(), nn.Linear(cfg.mlp_hidden, D))
        self.norm_in = nn.LayerNorm(D)
        self.to_k, self.to_v = nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False)
        self.slots_init = nn.Parameter(torch.randn(cfg.num_slots, D) * D ** -0.5)   # learned, not frozen
        self.slot_attn = SlotAttention(D, cfg.mlp_hidden)
        self.decoder = Decoder(D, cfg.decoder_channels, cfg.out_channels, cfg.recon_stride, cfg.output_stride)
        self.fine = FineMasks(cfg.widths[0], cfg.gru_hidden, D, cfg.decoder_channels) if cfg.fine_masks else None

    @staticmethod
    def _grid(h: int, w: int, device, dtype) -> torch.Tensor:  # (h*w, 4): x, y, 1-x, 1-y in [0, 1]
        ys, xs = torch.meshgrid(torch.linspace(0, 1, h, device=device, dtype=dtype),
                                torch.linspace(0, 1, w, device=device, dtype=dtype), indexing="ij")
        g = torch.stack([xs, ys], -1).reshape(-1, 2)
        return torch.cat([g, 1 - g], -1)

    def init_state(self, batch: int, h: int, w: int, device, dtype=torch.float32) -> State:
        c = self.cfg
        return State([torch.zeros(batch, c.gru_hidden, h, w, device=device, dtype=dtype) for _ in self.gru],
                     self.slots_init.to(dtype).unsqueeze(0).expand(batch, -1, -1))

    def _check(self, x: torch.Tensor):
        if x.shape[-3] != self.cfg.in_channels:
            raise ValueError(f"expected {self.cfg.in_channels} input channels, got shape {tuple(x.shape)}")
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"input height and width must be multiples of 4, got {tuple(x.shape[-2:])}")

    def _temporal(self, feat: torch.Tensor, state: State | None, low: torch.Tensor | None = None):
        """One frame after the encoder: feat (B, E, h, w) (and, with fine_masks, the stem's output
        low (B, widths[0], 2h, 2w)) -> masks, slot map, next state."""
        B, _, h, w = feat.shape
        first = state is None
        if first:
            state = self.init_state(B, h, w, feat.device, feat.dtype)
        x, hidden = feat, []
        for cell, hprev in zip(self.gru, state.hidden):
            x = cell(x, hprev)
            hidden.append(x)
        tokens = x.flatten(2).transpose(1, 2) + self.pos(self._grid(h, w, x.device, x.dtype))  # (B, N, G)
        tokens = self.token_mlp(self.token_norm(tokens))                                     # (B, N, D)
        tokens = self.norm_in(tokens)
        k, v = self.to_k(tokens), self.to_v(tokens)
        slots = state.slots
        for _ in range(self.cfg.first_frame_iters if first else 1):
            slots, attn = self.slot_attn(slots, k, v)                                        # attn (B, K, N)
        slot_map = torch.einsum("bkn,bkd->bdn", attn, slots).reshape(B, -1, h, w)           # (B, D, h, w)
        masks = attn.reshape(B, -1, h, w)
        if self.fine is not None:
            masks = self.fine(masks, slots, low, x)                                          # (B, K, 2h, 2w)
        return masks, slot_map, State(hidden, slots)

    def step(self, frame: torch.Tensor, state: State | None = None, decode: bool = True) -> tuple[dict, State]:
        """Streaming: one frame (B, C, H, W) -> {'masks': (B, K, h, w) (fine_masks: 2h, 2w), 'recon': (B, out, H/s, W/s)},
        state.
        decode=False skips the decoder (inference needs only the masks; no 'recon' then)."""
        self._check(frame)
        feat, low = self.encoder(frame, stem=True)
        masks, slot_map, state = self._temporal(feat, state, low)
        out = {"masks": masks, "slots": state.slots}
        if decode:
            out["recon"] = self.decoder(slot_map)
        return out, state

    def forward(self, clip: torch.Tensor, state: State | None = None) -> dict:
        """clip (B, T, C, H, W) -> masks (B, T, K, h, w) (fine_masks: 2h, 2w), recon (B, T, out, H/s, W/s)
        (s = recon_stride), state."""
        self._check(clip)
        B, T = clip.shape[:2]
        feats, lows = self.encoder(clip.flatten(0, 1), stem=True)                 # (B*T, E, h, w), (B*T, C0, 2h, 2w)
        feats, lows = feats.view(B, T, *feats.shape[1:]), lows.view(B, T, *lows.shape[1:])
        masks, maps = [], []
        for t in range(T):                                                        # recurrent over time
            m, s, state = self._temporal(feats[:, t], state, lows[:, t])
            masks.append(m)
            maps.append(s)
        recon = self.decoder(torch.stack(maps, 1).flatten(0, 1))                  # (B*T, out, H, W)
        return {"masks": torch.stack(masks, 1), "recon": recon.view(B, T, *recon.shape[1:]), "state": state}

    @staticmethod
    def foreground(masks: torch.Tensor) -> torch.Tensor:
        """(..., K, h, w) -> (..., h, w): 1 - the background slot's attention."""
        return 1 - masks[..., -1, :, :]


def load_student(path, device="cpu") -> tuple[DIOD, dict]:
    """A student exported by the trainer (`student_<modality>.pt`): the model in eval mode on
    `device` and its metadata (modality, stage, provenance, and `min_score` where the file names the
    instance threshold chosen for this student on validation). Loaded with weights_only=True."""
    from .checkpoint import CheckpointError, load_checkpoint
    from .config import ConfigError, from_dict
    ck = load_checkpoint(path, map_location=device)
    if ck.get("format") != "xmod-student-1":
        raise CheckpointError(f"{path} is not an exported student (format {ck.get('format')!r}); "
                              "use the trainer's out_dir/student_<modality>.pt")
    try:
        cfg = from_dict(ModelConfig, ck["model_config"])
    except ConfigError as e:
        raise CheckpointError(f"{path}: bad model config: {e}") from None
    model = DIOD(cfg)
    try:
        model.load_state_dict(ck["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the stored model config: {str(e).splitlines()[0]}") from None
    score = ck.get("min_score")
    if score is not None and not (isinstance(score, float) and 0.0 <= score < 1.0):
        raise CheckpointError(f"{path}: min_score must be a float within [0, 1), got {score!r}")
    return model.to(device).eval(), {k: ck[k] for k in ("modality", "stage", "meta", "min_score") if k in ck}
