"""diffusers Unets (``UNet2DModel``, ``UNet2DConditionModel``) behind the :class:`~unetdyn.unet.Unet` protocol.

diffusers is an optional dependency (``pip install "unetdyn[diffusers]"``); this module imports
without it, and building a :class:`DiffusersUnet` then raises ``ImportError``.

The paper's terms on diffusers' structure:

* **encoder blocks** are ``conv_in``, then each resnet (with its attention) of each down block,
  then that block's down-sampler: each pushes one skip, exactly the tensors diffusers collects
  in ``down_block_res_samples``.
* a **decoder block** is one resnet (with its attention) of an up block; it consumes one skip.
  The up block's up-sampler runs after its last resnet. Decoders are numbered from the bottom
  (decoder 0 runs right after the middle block), so ``nb`` counts as on GLIDE.
* the **top ns skips** are the first ``ns`` pushed: ``conv_in``'s output first.
* removing the bottom ``nb`` decoders also skips the encoder blocks that only feed them
  (:func:`unetdyn.unet.encoder_blocks_needed`), a saving the FLOP count sees.

The blocks are diffusers' own modules, called with the arguments and in the order of
``UNet2DModel.forward`` / ``UNet2DConditionModel.forward``, so the full forward equals
diffusers' to the bit. Text prompts are encoded once per prompt (classifier-free guidance uses
the empty prompt); a latent model's VAE decodes the sampler's output into images.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from unetdyn.noise import Diffusion
from unetdyn.unet import exact_float32

__all__ = ["ARCHS", "INSTALL_HINT", "DiffusersUnet", "diffusion_from_scheduler", "arch_config"]

INSTALL_HINT = 'the diffusers backend needs diffusers (and transformers for text encoders): pip install "unetdyn[diffusers]"'

ARCHS_DIR = Path(__file__).resolve().parent / "archs"
ARCHS = ("sd15", "ddpm32")

BETAS = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine"}
VARIANCES = {"fixed_small": "fixed_small", "fixed_small_log": "fixed_small", "fixed_large": "fixed_large",
             "fixed_large_log": "fixed_large", "learned_range": "learned"}
CLIPPING_SCHEDULERS = ("DDPMScheduler", "DDIMScheduler")  # their clip_sample defaults to True


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(f"cannot import {name} ({exc}); {INSTALL_HINT}") from exc


def arch_config(arch: str) -> dict:
    """The shipped config of a named architecture: ``unet``, ``scheduler`` and (latent) ``vae``."""
    if arch not in ARCHS:
        raise ValueError(f"arch={arch!r} is not one of {', '.join(ARCHS)}")
    return json.loads((ARCHS_DIR / f"{arch}.json").read_text())


def diffusion_from_scheduler(config: dict) -> tuple[Diffusion, str]:
    """The training process and the prediction (``eps``, ``v`` or ``eps_var``) a scheduler config describes.

    Example:
        >>> d, pred = diffusion_from_scheduler({"_class_name": "DDPMScheduler", "beta_schedule": "linear",
        ...     "variance_type": "fixed_large", "prediction_type": "epsilon"})
        >>> d.betas, d.variance, d.clip_x0, pred
        ('linear', 'fixed_large', True, 'eps')
    """
    cls = config.get("_class_name", "")
    if config.get("trained_betas") is not None:
        raise ValueError("scheduler config: trained_betas is not supported (give beta_schedule)")
    for flag in ("thresholding", "rescale_betas_zero_snr"):
        if config.get(flag):
            raise ValueError(f"scheduler config: {flag}=true is not supported")
    schedule = config.get("beta_schedule", "linear")
    if schedule not in BETAS:
        raise ValueError(f"scheduler config: beta_schedule={schedule!r} is not one of {', '.join(BETAS)}")
    variance = config.get("variance_type") or "fixed_small"
    if variance not in VARIANCES:
        raise ValueError(f"scheduler config: variance_type={variance!r} is not one of {', '.join(VARIANCES)}")
    kind = config.get("prediction_type", "epsilon")
    if kind not in ("epsilon", "v_prediction"):
        raise ValueError(f"scheduler config: prediction_type={kind!r} is not one of epsilon, v_prediction")
    if VARIANCES[variance] == "learned" and kind != "epsilon":
        raise ValueError("scheduler config: a learned variance goes with prediction_type='epsilon'")
    if float(config.get("clip_sample_range", 1.0)) != 1.0:
        raise ValueError(f"scheduler config: clip_sample_range={config['clip_sample_range']} is not supported (only 1.0)")
    diffusion = Diffusion(
        betas=BETAS[schedule],
        beta_start=float(config.get("beta_start", 0.0001)),
        beta_end=float(config.get("beta_end", 0.02)),
        train_steps=int(config.get("num_train_timesteps", 1000)),
        variance=VARIANCES[variance],
        clip_x0=bool(config.get("clip_sample", cls in CLIPPING_SCHEDULERS)),
    )
    prediction = "eps_var" if diffusion.variance == "learned" else {"epsilon": "eps", "v_prediction": "v"}[kind]
    return diffusion, prediction


class DiffusersContext(NamedTuple):
    emb: torch.Tensor  # time embedding [B, D]
    text: torch.Tensor | None  # encoder hidden states [B, L, D'] (text models)


class DiffusersUnet:
    """A diffusers ``UNet2DModel`` or ``UNet2DConditionModel`` as a :class:`~unetdyn.unet.Unet`.

    Args:
        model: the diffusers Unet, in eval mode.
        diffusion, prediction: the training process and what the model predicts (see
            :func:`diffusion_from_scheduler`).
        vae: a latent model's ``AutoencoderKL`` (None: a pixel model).
        text_encoder, tokenizer: a text model's encoder (transformers); without them a text
            model is conditioned on a fixed pseudo-random embedding per prompt (random-weights
            architectures, for cost measurements).

    Example:
        >>> unet = DiffusersUnet.from_pipeline("path/to/ddpm-pipeline")   # doctest: +SKIP
        >>> len(unet.skips_pushed), len(unet.skips_popped)                # doctest: +SKIP
        (12, 12)
    """

    def __init__(self, model: nn.Module, diffusion: Diffusion, prediction: str, vae: nn.Module | None = None,
                 text_encoder: nn.Module | None = None, tokenizer: Any = None):
        _check_supported(model)
        self.model, self.vae, self.text_encoder, self.tokenizer = model, vae, text_encoder, tokenizer
        self.diffusion, self.prediction = diffusion, prediction
        cfg = model.config
        self.text_model = type(model).__name__ == "UNet2DConditionModel"  # conditioned on encoder hidden states
        self.conditional = self.text_model
        size = cfg.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        self.image_shape: tuple[int, int, int] = (cfg.in_channels, h, w)
        factor = 2 ** sum(1 for b in model.down_blocks if getattr(b, "downsamplers", None))
        if h % factor or w % factor:
            raise ValueError(f"sample_size {h}x{w} must be divisible by {factor}, the Unet's down-sampling factor")
        self.out_channels = cfg.out_channels
        want = 2 * cfg.in_channels if prediction == "eps_var" else cfg.in_channels
        if self.out_channels != want:
            raise ValueError(f"a model that predicts {prediction} has {want} output channels; this one has {self.out_channels}")

        # the protocol's blocks: (kind, down/up block, resnet index or None)
        self._enc: list[tuple[str, nn.Module | None, int | None]] = [("conv_in", None, None)]
        for block in model.down_blocks:
            self._enc += [("resnet", block, k) for k in range(len(block.resnets))]
            if getattr(block, "downsamplers", None):
                self._enc.append(("down", block, None))
        self._dec: list[tuple[nn.Module, int]] = [(block, k) for block in model.up_blocks for k in range(len(block.resnets))]
        self.skips_pushed: tuple[int, ...] = (1,) * len(self._enc)
        self.skips_popped: tuple[int, ...] = (1,) * len(self._dec)
        if len(self._enc) != len(self._dec):
            raise ValueError(f"{len(self._enc)} skips pushed but {len(self._dec)} popped: not a symmetric Unet")
        self._out_shapes = self._decoder_shapes(h)

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def from_pipeline(cls, path: str | Path, device: str | torch.device = "cpu", random_weights: bool = False) -> DiffusersUnet:
        """Load a diffusers pipeline directory from disk (``model_index.json``, ``unet/``, ``scheduler/``,
        optionally ``vae/``, ``text_encoder/`` and ``tokenizer/``); never from a hub.

        ``random_weights``: the pipeline's architectures with random weights (nothing but the
        configs is read).
        """
        path = Path(path)
        index = path / "model_index.json"
        if not index.is_file():
            raise FileNotFoundError(f"no diffusers pipeline at {path}: {index} is missing (save one with pipeline.save_pretrained)")
        parts = json.loads(index.read_text())
        for need in ("unet", "scheduler"):
            if not isinstance(parts.get(need), list):
                raise ValueError(f"the pipeline at {path} has no {need} (model_index.json lists {sorted(k for k in parts if not k.startswith('_'))})")
        diffusers = _import("diffusers")
        sched = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
        diffusion, prediction = diffusion_from_scheduler(sched)

        def load(name: str, library: str) -> Any:
            if not isinstance(parts.get(name), list) or parts[name][1] is None:
                return None
            lib = diffusers if parts[name][0] == "diffusers" else _import(library)
            klass = getattr(lib, parts[name][1])
            if random_weights and hasattr(klass, "from_config"):
                return _random(lambda: klass.from_config(klass.load_config(path / name)))
            if random_weights and hasattr(klass, "config_class"):  # a transformers model
                return _random(lambda: klass(klass.config_class.from_pretrained(path / name)))
            extra = {"low_cpu_mem_usage": False} if lib is diffusers else {}  # (accelerate's loader is not needed)
            return klass.from_pretrained(path / name, local_files_only=True, **extra)

        unet = load("unet", "diffusers")
        vae = load("vae", "diffusers")
        text_encoder = load("text_encoder", "transformers")
        tokenizer = load("tokenizer", "transformers") if text_encoder is not None else None
        return cls._assemble(device, unet, diffusion, prediction, vae, text_encoder, tokenizer)

    @classmethod
    def from_arch(cls, arch: str, device: str | torch.device = "cpu", seed: int = 0) -> DiffusersUnet:
        """A named architecture (:data:`ARCHS`) with random weights, for cost measurements.

        ``sd15``: Stable Diffusion 1.5's Unet (latent 4x64x64), its VAE and scheduler; the text
        encoder is left out (a text model without one gets a fixed embedding per prompt).
        ``ddpm32``: DDPM's 32x32 CIFAR-10 Unet and scheduler.
        """
        cfg = arch_config(arch)
        diffusers = _import("diffusers")
        diffusion, prediction = diffusion_from_scheduler(cfg["scheduler"])
        unet = _random(lambda: getattr(diffusers, cfg["unet"]["_class_name"]).from_config(cfg["unet"]), seed)
        vae = _random(lambda: diffusers.AutoencoderKL.from_config(cfg["vae"]), seed) if "vae" in cfg else None
        return cls._assemble(device, unet, diffusion, prediction, vae, None, None)

    @classmethod
    def _assemble(cls, device, unet, diffusion, prediction, vae, text_encoder, tokenizer) -> DiffusersUnet:
        device = torch.device(device)
        mods = [m.to(device).eval().requires_grad_(False) if m is not None else None for m in (unet, vae, text_encoder)]
        return cls(mods[0], diffusion, prediction, mods[1], mods[2], tokenizer)

    # -- identity -------------------------------------------------------------------------------

    @cached_property
    def weights_sha256(self) -> str:
        """Checksum of every module's weights and of the training process (what results depend on)."""
        h = hashlib.sha256(repr((self.diffusion, self.prediction)).encode())
        for prefix, module in (("unet", self.model), ("vae", self.vae), ("text", self.text_encoder)):
            if module is None:
                continue
            for name, p in sorted(module.state_dict().items()):
                h.update(f"{prefix}.{name}".encode())
                h.update(p.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    # -- the Unet protocol (unetdyn.unet) --------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.model.conv_in.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.conv_in.weight.dtype

    def condition(self, prompts: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Text models: the encoder's hidden states, once per distinct prompt (``None`` = the empty
        prompt ``""``). Pixel models without conditioning: nothing."""
        if not self.text_model:
            return {}
        texts = ["" if p is None else p for p in prompts]
        for p in texts:
            if not isinstance(p, str):
                raise TypeError(f"text prompts are strings or None (the empty prompt), got {p!r}")
        unique = list(dict.fromkeys(texts))
        if self.text_encoder is not None:
            tok = self.tokenizer(unique, padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt")
            mask = tok.attention_mask.to(self.device) if getattr(self.text_encoder.config, "use_attention_mask", False) else None
            with exact_float32(self.device):
                enc = self.text_encoder(tok.input_ids.to(self.device), attention_mask=mask)[0].to(self.dtype)
        else:
            enc = torch.stack([_stand_in_embedding(p, self.model.config.cross_attention_dim) for p in unique])
            enc = enc.to(self.device, self.dtype)
        index = torch.tensor([unique.index(p) for p in texts], device=enc.device)
        return {"text": enc.index_select(0, index)}

    def begin(self, x: torch.Tensor, timesteps: torch.Tensor, cond: dict[str, torch.Tensor]) -> DiffusersContext:
        """The time embedding, as the model's forward computes it."""
        m = self.model
        if self.text_model:
            emb = m.time_embedding(m.get_time_embed(sample=x, timestep=timesteps), None)
            if m.time_embed_act is not None:
                emb = m.time_embed_act(emb)
            return DiffusersContext(emb, m.process_encoder_hidden_states(encoder_hidden_states=cond["text"], added_cond_kwargs=None))
        t = timesteps * torch.ones(x.shape[0], dtype=timesteps.dtype, device=timesteps.device)
        return DiffusersContext(m.time_embedding(m.time_proj(t).to(dtype=self.dtype)), None)

    def _attend(self, block: nn.Module, k: int, h: torch.Tensor, ctx: DiffusersContext) -> torch.Tensor:
        attentions = getattr(block, "attentions", None)
        if not attentions:
            return h
        if getattr(block, "has_cross_attention", False):
            return attentions[k](h, encoder_hidden_states=ctx.text, cross_attention_kwargs=None, attention_mask=None,
                                 encoder_attention_mask=None, return_dict=False)[0]
        return attentions[k](h)

    def encoder_block(self, i: int, h: torch.Tensor, ctx: DiffusersContext) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        kind, block, k = self._enc[i]
        if kind == "conv_in":
            if self.model.config.center_input_sample:
                h = 2 * h - 1.0
            h = self.model.conv_in(h)
        elif kind == "resnet":
            h = self._attend(block, k, block.resnets[k](h, ctx.emb), ctx)
        else:
            for down in block.downsamplers:
                h = down(h, temb=ctx.emb) if getattr(block, "downsample_type", None) == "resnet" else down(h)
        return h, (h,)

    def middle(self, h: torch.Tensor, ctx: DiffusersContext) -> torch.Tensor:
        mid = self.model.mid_block
        if mid is None:
            return h
        if getattr(mid, "has_cross_attention", False):
            return mid(h, ctx.emb, encoder_hidden_states=ctx.text, attention_mask=None, cross_attention_kwargs=None,
                       encoder_attention_mask=None)
        return mid(h, ctx.emb)

    def decoder_block(self, j: int, h: torch.Tensor, skips: tuple[torch.Tensor, ...], ctx: DiffusersContext) -> torch.Tensor:
        block, k = self._dec[j]
        h = block.resnets[k](torch.cat([h, *skips], dim=1), ctx.emb)
        h = self._attend(block, k, h, ctx)
        if k == len(block.resnets) - 1 and block.upsamplers is not None:
            for up in block.upsamplers:
                h = up(h, temb=ctx.emb) if getattr(block, "upsample_type", None) == "resnet" else up(h)
        return h

    def head(self, h: torch.Tensor, ctx: DiffusersContext) -> torch.Tensor:
        m = self.model
        if m.conv_norm_out is not None:
            h = m.conv_act(m.conv_norm_out(h))
        return m.conv_out(h)

    def decoder_out_shape(self, j: int) -> tuple[int, int, int]:
        return self._out_shapes[j]

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel models: ``x``. Latent models: the VAE's decode of ``x / scaling_factor``, clipped to [-1, 1]."""
        if self.vae is None:
            return x
        cfg = self.vae.config
        z = x.to(self.vae.dtype) / cfg.scaling_factor
        if getattr(cfg, "shift_factor", None):
            z = z + cfg.shift_factor
        with exact_float32(z.device):
            return self.vae.decode(z, return_dict=False)[0].float().clamp(-1, 1)

    def _decoder_shapes(self, size: int) -> list[tuple[int, int, int]]:
        size //= 2 ** sum(1 for b in self.model.down_blocks if getattr(b, "downsamplers", None))
        shapes = []
        for block, k in self._dec:
            ch = block.resnets[k].out_channels
            if k == len(block.resnets) - 1 and block.upsamplers is not None:
                size *= 2
            shapes.append((ch, size, size))
        return shapes


def _check_supported(model: nn.Module) -> None:
    """Refuse the parts of diffusers' Unets this backend does not run, naming them."""
    name = type(model).__name__
    if name not in ("UNet2DModel", "UNet2DConditionModel"):
        raise ValueError(f"{name} is not supported: the diffusers backend runs UNet2DModel and UNet2DConditionModel")
    cfg = model.config
    unsupported = {
        "time_embedding_type": (getattr(cfg, "time_embedding_type", "positional"), "positional"),
        "class_embed_type": (getattr(cfg, "class_embed_type", None), None),
        "num_class_embeds": (getattr(cfg, "num_class_embeds", None), None),
        "addition_embed_type": (getattr(cfg, "addition_embed_type", None), None),
        "encoder_hid_dim": (getattr(cfg, "encoder_hid_dim", None), None),
        "time_cond_proj_dim": (getattr(cfg, "time_cond_proj_dim", None), None),
    }
    for field, (value, ok) in unsupported.items():
        if value != ok:
            raise ValueError(f"{name} config {field}={value!r} is not supported (only {ok!r})")
    blocks = ("DownBlock2D", "AttnDownBlock2D", "CrossAttnDownBlock2D", "UpBlock2D", "AttnUpBlock2D", "CrossAttnUpBlock2D")
    for block in [*model.down_blocks, *model.up_blocks]:
        if type(block).__name__ not in blocks:
            raise ValueError(f"{type(block).__name__} is not supported; the backend runs {', '.join(blocks)}")


def _random(build, seed: int = 0):
    """Build with reproducible random weights without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _stand_in_embedding(prompt: str, dim: int, length: int = 77) -> torch.Tensor:
    """A fixed pseudo-random text embedding per prompt (zeros for the empty prompt), for models
    without their text encoder: the Unet's cost does not depend on it."""
    if not prompt:
        return torch.zeros(length, dim)
    seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "little")
    return torch.randn(length, dim, generator=torch.Generator().manual_seed(seed))
