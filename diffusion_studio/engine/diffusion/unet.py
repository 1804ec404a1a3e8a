"""A small U-Net that predicts the noise eps_theta(x_t, t) for 28x28 images.

Shape of the network (``base`` = ``UNetConfig.base_channels``, 32 by default):

    x_t (B,1,28,28)
      enc1  ConvBlock(1 -> base)        28x28  --skip1-->
      pool  MaxPool 2x2                 14x14
      enc2  ConvBlock(base -> 2 base)   14x14  --skip2-->
      pool  MaxPool 2x2                  7x7
      mid   ConvBlock(2 base -> 4 base)  7x7   (bottleneck)
      up2   ConvTranspose 2x2/2 (4 base -> 2 base) 14x14, concat skip2
      dec2  ConvBlock(4 base -> 2 base) 14x14
      up1   ConvTranspose 2x2/2 (2 base -> base)   28x28, concat skip1
      dec1  ConvBlock(2 base -> base)   28x28
      out   1x1 conv (base -> 1)        = eps_theta(x_t, t)

Each ConvBlock is ``convs_per_block`` x (3x3 conv, BatchNorm, ReLU); the
timestep enters every block through a sinusoidal embedding (Vaswani et al.
2017, as in Ho et al. 2020) passed through a small MLP and added as a
per-channel bias after the block's first convolution. With base 32 and two
convolutions per block this is about 150 MFLOP per image forward.

Optional class conditioning (for classifier-free guidance, Ho & Salimans
2022) adds a learned label embedding to the time embedding; label index
``num_classes`` is the "no label" token used for the unconditional branch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

from .schedule import _known_fields


ARCHS = ("plain", "res")
# what the network's output means: the noise eps (the app's training), or v = alpha eps - sigma x_0
# (Salimans & Ho 2022), which stays well defined at t = T, where a one-step student starts
PREDICTIONS = ("eps", "v")
# a weight the network takes as an input (a distilled student, Meng et al. 2023): "" none,
# "guidance" the classifier-free weight w, "autoguidance" the autoguidance weight g
WEIGHT_INPUTS = ("", "guidance", "autoguidance")
# Size limits, checked before anything is allocated (a config can come from a
# damaged or hostile checkpoint): 1024 channels at 28x28 are already ~20 GFLOP
# per image, far beyond what this app trains or samples in reasonable time.
MAX_CHANNELS = 1024
MAX_CLASSES = 1000


@dataclass(frozen=True)
class UNetConfig:
    """The network's shape.

    arch "plain" is the report's U-Net (module docstring): ConvBlocks with
    BatchNorm, ``base_channels`` at 28x28, twice that at 14x14, four times at 7x7.
    arch "res" is ``ResUNet``: residual blocks with GroupNorm and SiLU, the time
    embedding as a per-channel scale and shift, ``level_channels`` channels and
    ``level_blocks`` residual blocks at 28x28, 14x14 and 7x7, and self-attention
    at 7x7 when ``attention``. It puts its capacity where the FLOPs are cheap
    (a 3x3 conv at 7x7 costs 1/16 of one at 28x28 with the same channels).
    Checkpoints written before ``arch`` existed load as "plain".
    """

    base_channels: int = 32
    convs_per_block: int = 2
    time_embed_dim: int = 128
    image_channels: int = 1
    num_classes: int = 0  # 0 = unconditional; 10 for class-conditional MNIST
    arch: Literal["plain", "res"] = "plain"
    level_channels: tuple[int, int, int] = (32, 64, 128)  # "res" only: 28x28, 14x14, 7x7
    level_blocks: tuple[int, int, int] = (1, 2, 2)  # "res" only: residual blocks per level
    attention: bool = True  # "res" only: self-attention at 7x7
    norm_groups: int = 8  # "res" only: GroupNorm groups
    prediction: Literal["eps", "v"] = "eps"  # what forward() returns (PREDICTIONS)
    weight_input: Literal["", "guidance", "autoguidance"] = ""  # a guidance weight as input (students)
    distilled_steps: int = 0  # a student's sampling steps (0: not a student; it samples as asked)

    def __post_init__(self) -> None:
        for name, value, limit in (("base_channels", self.base_channels, MAX_CHANNELS),
                                   ("time_embed_dim", self.time_embed_dim, MAX_CHANNELS),
                                   ("num_classes", self.num_classes, MAX_CLASSES),
                                   ("image_channels", self.image_channels, 4)):
            if not isinstance(value, int) or value > limit:
                raise ValueError(f"{name} must be an integer of at most {limit} (asked for {value})")
        if self.image_channels < 1:
            raise ValueError(f"image_channels must be >= 1, got {self.image_channels}")
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {', '.join(ARCHS)}")
        object.__setattr__(self, "level_channels", tuple(int(c) for c in self.level_channels))
        object.__setattr__(self, "level_blocks", tuple(int(b) for b in self.level_blocks))
        if len(self.level_channels) != 3 or min(self.level_channels) < 1 or max(self.level_channels) > MAX_CHANNELS:
            raise ValueError(
                f"level_channels must be three channel counts in 1..{MAX_CHANNELS}, got {self.level_channels}"
            )
        if len(self.level_blocks) != 3 or min(self.level_blocks) < 1 or max(self.level_blocks) > 8:
            raise ValueError(f"level_blocks must be three block counts in 1..8, got {self.level_blocks}")
        if self.norm_groups < 1 or any(c % self.norm_groups for c in self.level_channels):
            raise ValueError(
                f"norm_groups ({self.norm_groups}) must divide every level's channels {self.level_channels}"
            )
        if self.base_channels < 1:
            raise ValueError(f"base_channels must be >= 1, got {self.base_channels}")
        if self.convs_per_block not in (1, 2, 3):
            raise ValueError(f"convs_per_block must be 1, 2 or 3, got {self.convs_per_block}")
        if self.time_embed_dim < 2 or self.time_embed_dim % 2:
            raise ValueError(f"time_embed_dim must be an even number >= 2, got {self.time_embed_dim}")
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {self.num_classes}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {self.prediction!r}")
        if self.weight_input not in WEIGHT_INPUTS:
            raise ValueError(f"weight_input must be one of {WEIGHT_INPUTS}, got {self.weight_input!r}")
        if self.weight_input == "guidance" and not self.conditional:
            raise ValueError("a network that takes the classifier-free weight must be class-conditional")
        if isinstance(self.distilled_steps, bool) or not isinstance(self.distilled_steps, int) \
                or not 0 <= self.distilled_steps <= 10_000:
            raise ValueError(f"distilled_steps must be a whole number in 0..10000, got {self.distilled_steps!r}")

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def is_student(self) -> bool:
        """A distilled student: it samples with its own ``distilled_steps`` steps."""
        return self.distilled_steps > 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "UNetConfig":
        fields = _known_fields(cls, data)
        fields.setdefault("arch", "plain")  # written before "res" existed
        return cls(**fields)


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style position embedding of integer timesteps.

    t: (B,) integer or float timesteps -> (B, dim) float32,
    [sin(t w_0) .. sin(t w_{d/2-1}), cos(t w_0) .. cos(t w_{d/2-1})], w_i = max_period^(-2i/dim).
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


# the weight input's embedding: sinusoids of w x WEIGHT_SCALE, so weights 0.01 apart (the slider's
# step) get distinct embeddings at the frequencies the time embedding uses for timesteps
WEIGHT_SCALE = 100.0


def weight_mlp(dim: int) -> nn.Sequential:
    """The embedding MLP of a weight input; its last layer starts at zero, so a student starts
    as exactly the network it was copied from."""
    mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
    nn.init.zeros_(mlp[-1].weight)
    nn.init.zeros_(mlp[-1].bias)
    return mlp


def conditioning(net: nn.Module, t: torch.Tensor, y: torch.Tensor | None,
                 w: torch.Tensor | float | None = None) -> torch.Tensor:
    """The vector every block receives: time_mlp(embedding of t), plus the label's
    embedding for a class-conditional ``net`` (y None = the "no label" token), plus the
    weight's for a ``net`` that takes a guidance weight (w None = 0).

    net: a UNet or ResUNet (it has ``config``, ``time_mlp``, ``label_embed``, ``weight_mlp``).
    t: (B,) timesteps; y: (B,) labels or None; w: (B,) weights, one number, or None
    -> (B, time_embed_dim).
    """
    emb = net.time_mlp(sinusoidal_embedding(t, net.config.time_embed_dim))
    if net.label_embed is not None:
        if y is None:
            y = torch.full_like(t, net.config.num_classes, dtype=torch.long)
        emb = emb + net.label_embed(y)
    if net.weight_mlp is not None:
        w = torch.zeros(t.shape, device=t.device) if w is None else \
            torch.as_tensor(w, dtype=torch.float32, device=t.device).reshape(-1).expand(t.shape[0])
        emb = emb + net.weight_mlp(sinusoidal_embedding(w * WEIGHT_SCALE, net.config.time_embed_dim))
    return emb


class ConvBlock(nn.Module):
    """n x (3x3 conv, BatchNorm, ReLU) with the time embedding added after the first conv."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, n_convs: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(out_ch)
        self.emb = nn.Linear(emb_dim, out_ch)
        rest = []
        for _ in range(n_convs - 1):
            rest += [nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
        self.rest = nn.Sequential(*rest)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.norm1(self.conv1(x))
        h = torch.relu(h + self.emb(emb)[:, :, None, None])
        return self.rest(h)


class UNet(nn.Module):
    """eps_theta(x_t, t[, y]).

    forward(x, t, y=None):
      x: (B, C, 28, 28) float, the noisy image x_t (any H, W divisible by 4 works)
      t: (B,) integer timesteps in 1..T
      y: (B,) integer labels in 0..num_classes (num_classes = "no label"), only
         for a conditional network; None means "no label" for every image.
      w: the guidance weight, only for a network that takes one (``weight_input``).
    returns (B, C, H, W): the predicted noise (or v, for ``prediction`` "v").
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or UNetConfig()
        b, e, n = c.base_channels, c.time_embed_dim, c.convs_per_block
        self.time_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.label_embed = nn.Embedding(c.num_classes + 1, e) if c.conditional else None
        self.weight_mlp = weight_mlp(e) if c.weight_input else None
        self.enc1 = ConvBlock(c.image_channels, b, e, n)
        self.enc2 = ConvBlock(b, 2 * b, e, n)
        self.pool = nn.MaxPool2d(2)
        self.mid = ConvBlock(2 * b, 4 * b, e, n)
        self.up2 = nn.ConvTranspose2d(4 * b, 2 * b, 2, stride=2)
        self.dec2 = ConvBlock(4 * b, 2 * b, e, n)
        self.up1 = nn.ConvTranspose2d(2 * b, b, 2, stride=2)
        self.dec1 = ConvBlock(2 * b, b, e, n)
        self.out = nn.Conv2d(b, c.image_channels, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                w: torch.Tensor | float | None = None) -> torch.Tensor:
        emb = conditioning(self, t, y, w)
        s1 = self.enc1(x, emb)
        s2 = self.enc2(self.pool(s1), emb)
        h = self.mid(self.pool(s2), emb)
        h = self.dec2(torch.cat([self.up2(h), s2], dim=1), emb)
        h = self.dec1(torch.cat([self.up1(h), s1], dim=1), emb)
        return self.out(h)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_flops(config: UNetConfig, height: int = 28, width: int = 28) -> int:
    """Multiply-adds x 2 of one forward pass for one image.

    Counts convolutions, transposed convolutions and attention's two matrix
    products (the bulk of the work), measured by running the network once on a
    (1, C, H, W) input; normalisation, activations, pooling and the embedding
    MLP are negligible.
    """
    model = build_model(config)
    total = 0

    def conv_hook(module: nn.Module, inputs, output) -> None:
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1]
        cin = module.in_channels // module.groups
        # a transposed conv does its multiply-adds per *input* position
        positions = inputs[0].shape[-2] * inputs[0].shape[-1] if isinstance(module, nn.ConvTranspose2d) \
            else output.shape[-2] * output.shape[-1]
        total += 2 * positions * k * cin * module.out_channels

    def attention_hook(module: nn.Module, inputs, output) -> None:
        nonlocal total
        _, C, H, W = inputs[0].shape
        total += 2 * 2 * (H * W) ** 2 * C  # q k^T and (softmax) v

    hooks = []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, SelfAttention):
            hooks.append(m.register_forward_hook(attention_hook))
    with torch.no_grad():
        model(torch.zeros(1, config.image_channels, height, width), torch.ones(1, dtype=torch.long))
    for h in hooks:
        h.remove()
    return total


# ----------------------------------------------------------------- arch "res"
class ResBlock(nn.Module):
    """GroupNorm, SiLU, 3x3 conv; time embedding as scale and shift; GroupNorm, SiLU, 3x3 conv; + skip.

    The scale-shift form, h = norm(h) * (1 + scale) + shift, is the one of
    Dhariwal & Nichol 2021 ("adaptive group normalisation"). The last conv starts
    at zero, so every block starts as the identity and a deep net trains at once.
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(nn.functional.silu(h))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head self-attention over the H x W positions (49 at 7x7), pre-norm, residual."""

    def __init__(self, ch: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).transpose(-1, -2).unbind(1)  # (B, HW, C) each
        h = nn.functional.scaled_dot_product_attention(q, k, v)  # (B, HW, C)
        return x + self.proj(h.transpose(-1, -2).reshape(B, C, H, W))


class ResUNet(nn.Module):
    """eps_theta(x_t, t[, y]) with residual blocks (``UNetConfig.arch == "res"``).

    With c = ``level_channels`` and n = ``level_blocks``:

        x_t (B,1,28,28) -> 3x3 conv -> c0
        28x28  n0 x ResBlock(c0)                                  --skip0-->
        down   3x3 conv, stride 2
        14x14  n1 x ResBlock(c1)                                  --skip1-->
        down   3x3 conv, stride 2
        7x7    n2 x ResBlock(c2), self-attention, n2 x ResBlock(c2)
        up     nearest x2, concat skip1, n1 x ResBlock(-> c1)      14x14
        up     nearest x2, concat skip0, n0 x ResBlock(-> c0)      28x28
        out    GroupNorm, SiLU, 3x3 conv -> (B,1,28,28)

    One skip per level, as in the plain U-Net (not one per block, as in
    Ho et al.'s network): the concatenations at 28x28 are what cost most.
    Same call as ``UNet``: forward(x, t, y=None, w=None) -> the prediction (B, C, H, W).
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = c = config
        e, g = c.time_embed_dim, c.norm_groups
        (c0, c1, c2), (n0, n1, n2) = c.level_channels, c.level_blocks
        self.time_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.label_embed = nn.Embedding(c.num_classes + 1, e) if c.conditional else None
        self.weight_mlp = weight_mlp(e) if c.weight_input else None

        def blocks(first_in: int, out: int, n: int) -> nn.ModuleList:
            return nn.ModuleList([ResBlock(first_in if i == 0 else out, out, e, g) for i in range(n)])

        self.stem = nn.Conv2d(c.image_channels, c0, 3, padding=1)
        self.enc0 = blocks(c0, c0, n0)
        self.down0 = nn.Conv2d(c0, c0, 3, stride=2, padding=1)
        self.enc1 = blocks(c0, c1, n1)
        self.down1 = nn.Conv2d(c1, c1, 3, stride=2, padding=1)
        self.mid1 = blocks(c1, c2, n2)
        self.attn = SelfAttention(c2, g) if c.attention else None
        self.mid2 = blocks(c2, c2, n2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec1 = blocks(c2 + c1, c1, n1)
        self.dec0 = blocks(c1 + c0, c0, n0)
        self.out = nn.Sequential(nn.GroupNorm(g, c0), nn.SiLU(), nn.Conv2d(c0, c.image_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    @staticmethod
    def _run(blocks: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for block in blocks:
            h = block(h, emb)
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                w: torch.Tensor | float | None = None) -> torch.Tensor:
        emb = conditioning(self, t, y, w)
        s0 = self._run(self.enc0, self.stem(x), emb)
        s1 = self._run(self.enc1, self.down0(s0), emb)
        h = self._run(self.mid1, self.down1(s1), emb)
        if self.attn is not None:
            h = self.attn(h)
        h = self._run(self.mid2, h, emb)
        h = self._run(self.dec1, torch.cat([self.up(h), s1], dim=1), emb)
        h = self._run(self.dec0, torch.cat([self.up(h), s0], dim=1), emb)
        return self.out(h)


def build_model(config: UNetConfig) -> nn.Module:
    """The network a config describes: ``UNet`` for arch "plain", ``ResUNet`` for "res"."""
    return ResUNet(config) if config.arch == "res" else UNet(config)
