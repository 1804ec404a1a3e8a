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

import torch
from torch import nn

from .schedule import _known_fields


@dataclass(frozen=True)
class UNetConfig:
    base_channels: int = 32
    convs_per_block: int = 2
    time_embed_dim: int = 128
    image_channels: int = 1
    num_classes: int = 0  # 0 = unconditional; 10 for class-conditional MNIST

    def __post_init__(self) -> None:
        if self.base_channels < 1:
            raise ValueError(f"base_channels must be >= 1, got {self.base_channels}")
        if self.convs_per_block not in (1, 2, 3):
            raise ValueError(f"convs_per_block must be 1, 2 or 3, got {self.convs_per_block}")
        if self.time_embed_dim < 2 or self.time_embed_dim % 2:
            raise ValueError(f"time_embed_dim must be an even number >= 2, got {self.time_embed_dim}")
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {self.num_classes}")

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "UNetConfig":
        return cls(**_known_fields(cls, data))


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
    returns (B, C, H, W): the predicted noise.
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or UNetConfig()
        b, e, n = c.base_channels, c.time_embed_dim, c.convs_per_block
        self.time_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.label_embed = nn.Embedding(c.num_classes + 1, e) if c.conditional else None
        self.enc1 = ConvBlock(c.image_channels, b, e, n)
        self.enc2 = ConvBlock(b, 2 * b, e, n)
        self.pool = nn.MaxPool2d(2)
        self.mid = ConvBlock(2 * b, 4 * b, e, n)
        self.up2 = nn.ConvTranspose2d(4 * b, 2 * b, 2, stride=2)
        self.dec2 = ConvBlock(4 * b, 2 * b, e, n)
        self.up1 = nn.ConvTranspose2d(2 * b, b, 2, stride=2)
        self.dec1 = ConvBlock(2 * b, b, e, n)
        self.out = nn.Conv2d(b, c.image_channels, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_mlp(sinusoidal_embedding(t, self.config.time_embed_dim))
        if self.label_embed is not None:
            if y is None:
                y = torch.full_like(t, self.config.num_classes, dtype=torch.long)
            emb = emb + self.label_embed(y)
        s1 = self.enc1(x, emb)
        s2 = self.enc2(self.pool(s1), emb)
        h = self.mid(self.pool(s2), emb)
        h = self.dec2(torch.cat([self.up2(h), s2], dim=1), emb)
        h = self.dec1(torch.cat([self.up1(h), s1], dim=1), emb)
        return self.out(h)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_flops(config: UNetConfig, height: int = 28, width: int = 28) -> int:
    """Multiply-adds x 2 of the convolutions of one forward pass for one image.

    Counts convolutions and transposed convolutions (the bulk of the work);
    BatchNorm, ReLU, pooling and the embedding MLP are negligible.
    """
    b, n, ch = config.base_channels, config.convs_per_block, config.image_channels

    def block(cin: int, cout: int, h: int, w: int) -> int:
        return 2 * h * w * 9 * (cin * cout + (n - 1) * cout * cout)

    h1, w1 = height, width
    h2, w2 = h1 // 2, w1 // 2
    h3, w3 = h2 // 2, w2 // 2
    total = block(ch, b, h1, w1) + block(b, 2 * b, h2, w2) + block(2 * b, 4 * b, h3, w3)
    total += 2 * h3 * w3 * 4 * b * 2 * b * 4 + block(4 * b, 2 * b, h2, w2)
    total += 2 * h2 * w2 * 2 * b * b * 4 + block(2 * b, b, h1, w1)
    total += 2 * h1 * w1 * b * ch
    return total
