"""What a schedule costs, counted by running the intervened forward under torch's FLOP counter.

FLOPs depend on a step's surgery only (not on t or the data), so each distinct surgery of
the schedule is run once under :class:`torch.utils.flop_counter.FlopCounterMode` with the
rows a sampling step really has (two with classifier-free guidance), and multiplied by the
number of steps that use it. The prompt encoding is counted once per sample, as the
sampler computes it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from .plan import Schedule, preset
from .sampler import SamplerConfig, step_noise
from .unet import Surgery, Unet, forward

__all__ = ["Cost", "schedule_cost", "forward_flops"]


@dataclass
class Cost:
    """FLOPs per sample of a schedule next to the full schedule's."""

    schedule: str
    unet_calls: int
    truncated_calls: int
    flops_per_sample: float
    full_flops_per_sample: float
    condition_flops_per_sample: float
    saving: float  # fraction of the full schedule's FLOPs not spent
    flops_per_call: dict[str, float]  # per sample, by surgery and rows (2 with guidance), e.g. "nb=8,ns=0,rows=2"

    def to_dict(self) -> dict:
        return asdict(self)


def _count(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@torch.no_grad()
def forward_flops(unet: Unet, surgery: Surgery, rows: int, prompt=None) -> int:
    """FLOPs of one forward with ``surgery`` on ``rows`` rows (the encoding not included)."""
    cond = unet.condition([prompt] * rows)
    x = step_noise(0, 1, (rows, *unet.image_shape)).to(unet.device, unet.dtype)
    t = torch.full((rows,), 500, dtype=torch.long, device=unet.device)
    return _count(lambda: forward(unet, x, t, cond, surgery))


@torch.no_grad()
def schedule_cost(
    unet: Unet, schedule: Schedule | str, config: SamplerConfig = SamplerConfig(), prompt=None
) -> Cost:
    """FLOPs per sample of ``schedule`` and of the full schedule, and the fraction saved.

    Example:
        >>> c = schedule_cost(unet, "paper-shortcut")   # doctest: +SKIP
        >>> c.unet_calls, round(c.saving, 3)             # doctest: +SKIP
        (83, 0.25)
    """
    sched = preset(schedule) if isinstance(schedule, str) else schedule
    K = config.steps
    n_blocks, n_skips = len(unet.skips_popped), sum(unet.skips_pushed)
    cache: dict[tuple[int, int, int], int] = {}

    def total(steps) -> float:
        counts = Counter((s.zero_skips, s.drop_blocks, 2 if s.guided and config.guidance != 1.0 else 1) for s in steps)
        flops = 0
        for key, n in counts.items():
            if key not in cache:
                zs, nb, rows = key
                cache[key] = forward_flops(unet, Surgery(zs, nb), rows, prompt)
            flops += n * cache[key]
        return float(flops)

    steps = sched.compile(K, n_blocks, n_skips)
    cond_flops = float(_count(lambda: unet.condition([prompt])))
    full = total(preset("full").compile(K, n_blocks, n_skips)) + cond_flops
    mine = total(steps) + cond_flops
    return Cost(
        schedule=sched.name or sched.describe(),
        unet_calls=len(steps),
        truncated_calls=sum(1 for s in steps if s.drop_blocks),
        flops_per_sample=mine,
        full_flops_per_sample=full,
        condition_flops_per_sample=cond_flops,
        saving=1.0 - mine / full,
        flops_per_call={f"nb={nb},ns={zs},rows={rows}": v for (zs, nb, rows), v in sorted(cache.items())},
    )
