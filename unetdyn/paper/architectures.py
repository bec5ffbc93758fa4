"""What the paper's interventions save on other Unets: FLOPs of random-weights architectures.

FLOPs depend on shapes only, so each architecture is built with random weights on the
``meta`` device (nothing is computed) and counted by :mod:`unetdyn.cost`: the saving of a
guided Unet call per number of bottom decoder blocks removed, and the paper's shortcut per
sample. Quality on these architectures needs their checkpoints; cost does not.
"""

from __future__ import annotations

from dataclasses import asdict

from unetdyn.cost import CallCost, schedule_cost
from unetdyn.sampler import SamplerConfig
from unetdyn.unet import Unet, encoder_blocks_needed

__all__ = ["ARCHITECTURES", "load_architecture", "architecture_costs"]

# name -> (what it is, how load_unet builds it)
ARCHITECTURES = {
    "builtin": ("this project's model (GLIDE's topology at width 16, 32x32)", dict(model="builtin")),
    "glide": ("GLIDE's base model (64x64, text)", dict(model="glide")),
    "sd15": ("Stable Diffusion 1.5's Unet (latent 4x64x64, text; VAE decode to 512x512)", dict(model="diffusers", arch="sd15")),
    "ddpm32": ("DDPM's CIFAR-10 Unet (32x32, unconditional)", dict(model="diffusers", arch="ddpm32")),
}


def load_architecture(name: str, device: str = "meta") -> Unet:
    """The architecture ``name`` (:data:`ARCHITECTURES`) with random weights."""
    from unetdyn.backends import load_unet

    if name not in ARCHITECTURES:
        raise ValueError(f"architecture {name!r} is not one of {', '.join(ARCHITECTURES)}")
    return load_unet(**ARCHITECTURES[name][1], device=device, random_weights=True)


def architecture_costs(name: str, schedule: str = "paper-shortcut", config: SamplerConfig = SamplerConfig()) -> dict:
    """FLOPs of architecture ``name``: per guided call with the bottom ``nb`` decoders removed
    (``nb = 0 .. all``), and ``schedule``'s saving per sample.

    Example:
        >>> rec = architecture_costs("builtin")                         # doctest: +SKIP
        >>> rec["per_nb"][8]["saved"], round(rec["shortcut"]["saving"], 3)  # doctest: +SKIP
        (0.30, 0.228)
    """
    unet = load_architecture(name)
    cc = CallCost(unet)
    rows = 2 if unet.conditional and config.guidance != 1.0 else 1
    full = cc.flops(0, 0, rows)
    n_dec = len(unet.skips_popped)
    per_nb = [
        {"nb": nb, "flops": cc.flops(0, nb, rows), "saved": 1 - cc.flops(0, nb, rows) / full,
         "encoder_blocks_run": encoder_blocks_needed(unet, nb)}
        for nb in range(n_dec + 1)
    ]
    return {
        "arch": name,
        "what": ARCHITECTURES[name][0],
        "decoder_blocks": n_dec,
        "encoder_blocks": len(unet.skips_pushed),
        "rows_per_call": rows,
        "image_shape": list(unet.image_shape),
        "prediction": unet.prediction,
        "diffusion": asdict(unet.diffusion),
        "per_nb": per_nb,
        "shortcut": schedule_cost(unet, schedule, config).to_dict(),
    }
