"""The project's own Unet: GLIDE's base-model topology at small width, class-conditional.

Topology (as GLIDE's ``UNetModel`` with ``resblock_updown=True``, scale-shift norm):

* 16 encoder blocks: an input conv, then for each of 4 resolutions 3 residual blocks
  (with attention at the lower resolutions), and a residual down-sampling block between
  resolutions (3 in all). Each block pushes its output as one skip.
* a middle block: residual, attention, residual.
* 16 decoder blocks, 4 per resolution from the bottom: a residual block on
  ``cat([h, skip])`` (with attention at the lower resolutions); the last one of each of the
  three lower resolutions ends with a residual up-sampling block. Each pops one skip, so
  decoder ``j`` consumes the skip of encoder ``15 - j``.
* head: norm, SiLU, conv to 6 channels (eps and the variance interpolation v).

Conditioning is a class embedding added to the time embedding; class index
``num_classes`` is the null class used for classifier-free guidance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from unetdyn.noise import Diffusion

__all__ = ["BuiltinConfig", "BuiltinUnet", "DEFAULT_CLASSES", "MAX_PARAMETERS", "parameter_shapes"]

DEFAULT_CLASSES = ("circle", "square", "triangle", "ring", "cross", "star", "heart", "crescent", "diamond", "arrow")


@dataclass(frozen=True)
class BuiltinConfig:
    """Size of the built-in Unet. The block structure is fixed (GLIDE's); widths are not."""

    image_size: int = 32
    in_channels: int = 3
    model_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    num_res_blocks: int = 3
    attention_ds: tuple[int, ...] = (2, 4, 8)  # down-sampling factors that get attention
    head_channels: int = 32
    norm_groups: int = 8
    dropout: float = 0.0
    class_names: tuple[str, ...] = field(default=DEFAULT_CLASSES)

    def __post_init__(self):
        for k in ("channel_mult", "attention_ds", "class_names"):
            value = getattr(self, k)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, k, tuple(value))
        for name, (kind, low, high) in _FIELD_RULES.items():
            _check_field(name, getattr(self, name), kind, low, high)
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"config.class_names={_short(self.class_names)} holds a name twice; names must be unique")
        if self.image_size % (2 ** (len(self.channel_mult) - 1)):
            raise ValueError(
                f"config.image_size={self.image_size} must be divisible by {2 ** (len(self.channel_mult) - 1)} "
                f"for {len(self.channel_mult)} resolutions"
            )
        ch0 = self.model_channels
        if ch0 % 2:
            raise ValueError(f"config.model_channels={ch0} must be even (the time embedding holds a cosine and a sine per frequency)")
        widths = sorted({ch0} | {m * ch0 for m in self.channel_mult})
        odd = [w for w in widths if w % self.norm_groups]
        if odd:
            raise ValueError(
                f"config.norm_groups={self.norm_groups} must divide model_channels and every width model_channels * "
                f"channel_mult ({', '.join(map(str, widths))}); {odd[0]} is not divisible by it"
            )
        # attention splits a width into max(1, width // head_channels) heads of equal size
        attended = {m * ch0 for level, m in enumerate(self.channel_mult) if 2**level in self.attention_ds}
        uneven = [w for w in sorted(attended | {self.channel_mult[-1] * ch0}) if w % max(1, w // self.head_channels)]
        if uneven:
            w = uneven[0]
            raise ValueError(
                f"config.head_channels={self.head_channels} splits the attention width {w} into {w // self.head_channels} "
                f"unequal heads; give a head_channels that divides it, or one of at least {w}"
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def num_parameters(self) -> int:
        """The model's parameter count, from the config alone (nothing is allocated)."""
        return sum(math.prod(shape) for shape in parameter_shapes(self).values())

    def check_size(self) -> None:
        """A ValueError if the model would hold more than ``MAX_PARAMETERS`` parameters."""
        n = self.num_parameters()
        if n > MAX_PARAMETERS:
            raise ValueError(
                f"config (model_channels={self.model_channels}, channel_mult={list(self.channel_mult)}, "
                f"num_res_blocks={self.num_res_blocks}) makes {n:,} parameters; the built-in Unet holds at most "
                f"{MAX_PARAMETERS:,} ({4 * MAX_PARAMETERS // 10**9} GB in float32)"
            )

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Any) -> BuiltinConfig:
        """The config recorded as ``d``; a ValueError naming the field for unknown keys, bad
        types or values out of range (a weights file's metadata is user input)."""
        if not isinstance(d, dict):
            raise ValueError(f"config must be a mapping of field: value, got {type(d).__name__} {_short(d)}")
        names = [f.name for f in fields(cls)]
        extra = sorted(map(str, set(d) - set(names)))
        if extra:
            raise ValueError(f"config has unknown field(s) {_short(extra)}; its fields are {', '.join(names)}")
        return cls(**d)


# field -> (kind, low, high): the ranges a config may take. The block structure fixes little;
# the bounds keep a config to what a CPU or one GPU can hold and what the topology can build
# (GroupNorm, attention heads, down-sampling), so that a bad value is refused before allocation.
MAX_PARAMETERS = 500_000_000  # 2 GB in float32
_FIELD_RULES: dict[str, tuple[str, float, float]] = {
    "image_size": ("int", 1, 4096),
    "in_channels": ("int", 1, 64),
    "model_channels": ("int", 1, 4096),
    "channel_mult": ("ints", 1, 64),  # each entry; 1..8 entries (resolutions)
    "num_res_blocks": ("int", 1, 32),
    "attention_ds": ("ints", 1, 4096),  # each entry; may be empty
    "head_channels": ("int", 1, 4096),
    "norm_groups": ("int", 1, 4096),
    "dropout": ("float", 0.0, 1.0),  # [0, 1)
    "class_names": ("strs", 1, 80),  # each name's length; 1..10000 classes
}
_LENGTHS = {"channel_mult": (1, 8), "attention_ds": (0, 16), "class_names": (1, 10_000)}


def _short(value: Any, limit: int = 60) -> str:
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _check_field(name: str, value: Any, kind: str, low: float, high: float) -> None:
    where = f"config.{name}"
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer in {low}..{high}, got {_short(value)}")
        if not low <= value <= high:
            raise ValueError(f"{where}={value} is out of range {low}..{high}")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
            raise ValueError(f"{where}={_short(value)} must be a number in [{low}, {high})")
    else:
        lo_n, hi_n = _LENGTHS[name]
        if not isinstance(value, tuple) or not lo_n <= len(value) <= hi_n:
            raise ValueError(f"{where} must be a list of {lo_n}..{hi_n} entries, got {_short(value)}")
        for k, item in enumerate(value):
            if kind == "strs":
                if not isinstance(item, str) or not low <= len(item) <= high:
                    raise ValueError(f"{where}[{k}]={_short(item)} must be a string of {low}..{high} characters")
            else:
                _check_field(f"{name}[{k}]", item, "int", low, high)


def parameter_shapes(cfg: BuiltinConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in the state dict of ``BuiltinUnet(cfg)``, without allocating it."""
    with torch.device("meta"):
        net = BuiltinUnet(cfg)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
    """Sinusoidal embedding of (training-step) timesteps, [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    """Residual block with scale-shift conditioning; optionally down- or up-samples."""

    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int, dropout: float, resample: str = ""):
        super().__init__()
        self.resample = resample
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def _resample(self, h: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return F.avg_pool2d(h, 2)
        if self.resample == "up":
            return F.interpolate(h, scale_factor=2, mode="nearest")
        return h

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # without a backward to feed, the elementwise steps overwrite their input (the same
        # operations in the same order, so the same bits) instead of allocating new tensors
        inplace = not torch.is_grad_enabled()
        h = F.silu(self.norm1(x), inplace=inplace)
        h = self.conv1(self._resample(h))
        x = self._resample(x)
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h)
        h = h.mul_(1 + scale).add_(shift) if inplace else h * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h, inplace=inplace)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over pixels, residual, output projection zero-initialised."""

    def __init__(self, ch: int, head_channels: int, groups: int):
        super().__init__()
        self.heads = max(1, ch // head_channels)
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Conv1d(ch, 3 * ch, 1)
        self.proj = nn.Conv1d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, hh, ww = x.shape
        d = c // self.heads
        qkv = self.qkv(self.norm(x).reshape(b, c, -1))  # [B, 3C, L]
        q, k, v = (z.reshape(b * self.heads, d, -1) for z in qkv.reshape(b, 3, self.heads, d, -1).unbind(1))
        # softmax(q^T k / sqrt(d)) as two batched matrix products: on a CPU at these sizes
        # (L <= 256, d = 32) that is ~1.5x faster than scaled_dot_product_attention on transposed views
        w = torch.bmm(q.transpose(1, 2), k).mul_(d**-0.5).softmax(-1)  # [BH, L, L]
        out = torch.bmm(v, w.transpose(1, 2)).reshape(b, c, -1)
        return x + self.proj(out).reshape(b, c, hh, ww)


class Block(nn.ModuleList):
    """A sequence of layers, each called with (h, emb)."""

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            h = layer(h) if isinstance(layer, nn.Conv2d) else layer(h, emb)
        return h


class BuiltinUnet(nn.Module):
    """GLIDE-topology Unet (16 encoder blocks, middle, 16 decoder blocks), class-conditional.

    Example:
        >>> net = BuiltinUnet(BuiltinConfig(model_channels=16))
        >>> len(net.input_blocks), len(net.output_blocks)
        (16, 16)
        >>> net(torch.zeros(2, 3, 32, 32), torch.tensor([0, 999]), torch.tensor([0, 10])).shape
        torch.Size([2, 6, 32, 32])
    """

    def __init__(self, config: BuiltinConfig | None = None):
        super().__init__()
        config = BuiltinConfig() if config is None else config
        if torch.get_default_device().type != "meta":  # on meta nothing is allocated: no bound needed
            config.check_size()
        self.config = cfg = config
        ch0 = cfg.model_channels
        emb_dim = 4 * ch0
        g, p = cfg.norm_groups, cfg.dropout
        self.time_embed = nn.Sequential(nn.Linear(ch0, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_embed = nn.Embedding(cfg.num_classes + 1, emb_dim)  # last index = null class

        def attn(ch: int, ds: int) -> list[nn.Module]:
            return [Attention(ch, cfg.head_channels, g)] if ds in cfg.attention_ds else []

        self.input_blocks = nn.ModuleList([Block([nn.Conv2d(cfg.in_channels, ch0, 3, padding=1)])])
        skip_chs = [ch0]
        self._out_shapes: list[tuple[int, int, int]] = []
        ch, ds = ch0, 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                self.input_blocks.append(Block([ResBlock(ch, mult * ch0, emb_dim, g, p), *attn(mult * ch0, ds)]))
                ch = mult * ch0
                skip_chs.append(ch)
            if level != len(cfg.channel_mult) - 1:
                self.input_blocks.append(Block([ResBlock(ch, ch, emb_dim, g, p, resample="down")]))
                ds *= 2
                skip_chs.append(ch)

        self.middle_block = Block([ResBlock(ch, ch, emb_dim, g, p), Attention(ch, cfg.head_channels, g), ResBlock(ch, ch, emb_dim, g, p)])

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers: list[nn.Module] = [ResBlock(ch + skip_chs.pop(), mult * ch0, emb_dim, g, p)]
                ch = mult * ch0
                layers += attn(ch, ds)
                if level and i == cfg.num_res_blocks:
                    layers.append(ResBlock(ch, ch, emb_dim, g, p, resample="up"))
                    ds //= 2
                self.output_blocks.append(Block(layers))
                self._out_shapes.append((ch, cfg.image_size // ds, cfg.image_size // ds))

        self.out = nn.Sequential(nn.GroupNorm(g, ch), nn.SiLU(), nn.Conv2d(ch, 2 * cfg.in_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

        n_in, n_out = len(self.input_blocks), len(self.output_blocks)
        self.skips_pushed = (1,) * n_in
        self.skips_popped = (1,) * n_out
        self.image_shape = (cfg.in_channels, cfg.image_size, cfg.image_size)
        self.prediction = "eps_var"  # eps, then the learned variance interpolation (improved DDPM)
        self.diffusion = Diffusion()  # GLIDE's: cosine, learned variance, x0 clipped
        self.conditional = True
        self.weights_sha256: str | None = None  # set by unetdyn.backends.builtin_weights.load_builtin

    # -- plain forward (training, reference) ---------------------------------------------

    def embed(self, timesteps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.time_embed(timestep_embedding(timesteps, self.config.model_channels)) + self.class_embed(labels)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Plain full forward: ``labels`` are class indices, ``num_classes`` for the null class."""
        emb = self.embed(timesteps, labels)
        hs = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)

    # -- the Unet protocol (unetdyn.unet) ------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.class_embed.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.class_embed.weight.dtype

    def class_index(self, prompt: Any) -> int:
        """A class name or index -> index; ``None`` -> the null class."""
        names = self.config.class_names
        if prompt is None:
            return len(names)
        if isinstance(prompt, int) and not isinstance(prompt, bool):
            if not 0 <= prompt < len(names):
                raise ValueError(f"class index {prompt} is out of range 0..{len(names) - 1}")
            return prompt
        if isinstance(prompt, str) and prompt in names:
            return names.index(prompt)
        raise ValueError(f"unknown class {prompt!r}; classes are {', '.join(names)} (or 0..{len(names) - 1})")

    def condition(self, prompts: Sequence[Any]) -> dict[str, torch.Tensor]:
        return {"labels": torch.tensor([self.class_index(p) for p in prompts], dtype=torch.long, device=self.device)}

    def begin(self, x: torch.Tensor, timesteps: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.embed(timesteps, cond["labels"])

    def encoder_block(self, i: int, h: torch.Tensor, ctx: torch.Tensor):
        h = self.input_blocks[i](h, ctx)
        return h, (h,)

    def middle(self, h: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return self.middle_block(h, ctx)

    def decoder_block(self, j: int, h: torch.Tensor, skips, ctx: torch.Tensor) -> torch.Tensor:
        return self.output_blocks[j](torch.cat([h, *skips], dim=1), ctx)

    def head(self, h: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return self.out(h)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return x  # a pixel model

    def decoder_out_shape(self, j: int) -> tuple[int, int, int]:
        return self._out_shapes[j]
