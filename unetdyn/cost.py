"""What a schedule costs, counted by running the intervened forward under torch's FLOP counter.

FLOPs depend on a step's surgery only (not on t or the data), so each distinct surgery of
the schedule is run once under :class:`torch.utils.flop_counter.FlopCounterMode` with the
rows a sampling step really has (two with classifier-free guidance), and multiplied by the
number of steps that use it. The prompt encoding is counted once per sample, as the
sampler computes it, and so is a latent model's VAE decode.

FLOPs depend on shapes only, so a random-weights model can be counted on the ``meta``
device, where nothing is computed. On the CPU, torch's counter misses the fused attention
kernel (``scaled_dot_product_attention``, which diffusers' attention uses); it is counted
here with torch's own attention formula.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from unetdyn.interventions import Schedule, preset
from unetdyn.sampler import SamplerConfig, step_noise
from unetdyn.unet import Surgery, Unet, forward

__all__ = ["Cost", "CallCost", "schedule_cost", "forward_flops", "sync", "timed"]


@dataclass
class Cost:
    """FLOPs per sample of a schedule next to the full schedule's."""

    schedule: str
    unet_calls: int
    truncated_calls: int
    flops_per_sample: float
    full_flops_per_sample: float
    condition_flops_per_sample: float
    decode_flops_per_sample: float  # a latent model's VAE decode (0 for a pixel model)
    saving: float  # fraction of the full schedule's FLOPs not spent
    flops_per_call: dict[str, float]  # per sample, by surgery and rows (2 with guidance), e.g. "nb=8,ns=0,rows=2"

    def to_dict(self) -> dict:
        return asdict(self)


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_MISSING_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


def _count(fn) -> int:
    with FlopCounterMode(display=False, custom_mapping=_MISSING_FORMULAS) as counter:
        fn()
    return counter.get_total_flops()


@torch.no_grad()
def forward_flops(unet: Unet, surgery: Surgery, rows: int, prompt=None) -> int:
    """FLOPs of one forward with ``surgery`` on ``rows`` rows (the encoding not included)."""
    cond = unet.condition([prompt] * rows)
    x = step_noise(0, 1, (rows, *unet.image_shape)).to(unet.device, unet.dtype)
    t = torch.full((rows,), 500, dtype=torch.long, device=unet.device)
    return _count(lambda: forward(unet, x, t, cond, surgery))


def sync(unet: Unet) -> None:
    """Wait for the device (CUDA runs asynchronously), so that wall-clock timings are real."""
    if unet.device.type == "cuda":
        torch.cuda.synchronize()


def timed(unet: Unet, fn: Callable[[], object]) -> float:
    """Wall-clock seconds of ``fn()``, the device synchronised before and after: the one timer
    every measurement of this package uses."""
    sync(unet)
    t0 = time.perf_counter()
    fn()
    sync(unet)
    return time.perf_counter() - t0


class CallCost:
    """FLOPs and (optionally) timed seconds of one Unet call, per distinct surgery and row count.

    Each distinct (zero_skips, drop_blocks, rows) forward is counted once and remembered;
    a schedule's cost is the sum over the calls it compiles to. One instance shared across
    schedules counts each forward once.
    """

    def __init__(self, unet: Unet, prompt: Any = None, batch: int = 1, repeats: int = 0):
        self.unet, self.prompt, self.batch, self.repeats = unet, prompt, batch, repeats
        self._flops: dict[tuple[int, int, int], float] = {}
        self._secs: dict[tuple[int, int, int], float] = {}
        self.condition_flops = float(self._count_condition())
        self.decode_flops = float(self._count_decode())

    @torch.no_grad()
    def _count_condition(self) -> int:
        return _count(lambda: self.unet.condition([self.prompt]))

    @torch.no_grad()
    def _count_decode(self) -> int:
        x = step_noise(0, 0, (1, *self.unet.image_shape), "init").to(self.unet.device, self.unet.dtype)
        return _count(lambda: self.unet.decode(x))

    def flops(self, zs: int, nb: int, rows: int) -> float:
        key = (zs, nb, rows)
        if key not in self._flops:
            self._flops[key] = float(forward_flops(self.unet, Surgery(zs, nb), rows, self.prompt))
        return self._flops[key]

    @torch.no_grad()
    def seconds(self, zs: int, nb: int, rows: int) -> float:
        """Median wall-clock of one forward of ``batch`` samples (times ``rows``), per sample."""
        key = (zs, nb, rows)
        if key not in self._secs:
            unet, n = self.unet, rows * self.batch
            cond = unet.condition([self.prompt] * n)
            x = step_noise(0, 1, (n, *unet.image_shape)).to(unet.device, unet.dtype)
            t = torch.full((n,), 500, dtype=torch.long, device=unet.device)
            times = [timed(unet, lambda: forward(unet, x, t, cond, Surgery(zs, nb))) for _ in range(1 + max(self.repeats, 1))]
            self._secs[key] = statistics.median(times[1:]) / self.batch  # the first call warms up
        return self._secs[key]

    def calls(self, schedule: Schedule, config: SamplerConfig) -> Counter:
        """How many Unet calls of each (zero_skips, drop_blocks, rows) one sample makes."""
        unet = self.unet
        steps = schedule.compile(config.steps, len(unet.skips_popped), sum(unet.skips_pushed))
        guided = config.guidance != 1.0 and unet.conditional
        return Counter((s.zero_skips, s.drop_blocks, 2 if (s.guided and guided) else 1) for s in steps)

    def flops_per_sample(self, schedule: Schedule, config: SamplerConfig, encode_every_step: bool = False) -> float:
        """FLOPs per sample; the prompt encoded once, or at every call (as GLIDE's notebook does),
        and a latent model's output decoded once."""
        calls = self.calls(schedule, config)
        enc = self.condition_flops * (sum(calls.values()) if encode_every_step else 1)
        return sum(n * self.flops(*key) for key, n in calls.items()) + enc + self.decode_flops

    def seconds_per_sample(self, schedule: Schedule, config: SamplerConfig) -> float:
        """Seconds per sample, summed from the timed per-call costs (the encoding not included)."""
        return sum(n * self.seconds(*key) for key, n in self.calls(schedule, config).items())


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
    cc = CallCost(unet, prompt)
    full_sched = preset("full")
    steps = sched.compile(config.steps, len(unet.skips_popped), sum(unet.skips_pushed))
    mine, full = cc.flops_per_sample(sched, config), cc.flops_per_sample(full_sched, config)
    keys = sorted(set(cc.calls(sched, config)) | set(cc.calls(full_sched, config)))
    return Cost(
        schedule=sched.name or sched.describe(),
        unet_calls=len(steps),
        truncated_calls=sum(1 for s in steps if s.drop_blocks),
        flops_per_sample=mine,
        full_flops_per_sample=full,
        condition_flops_per_sample=cc.condition_flops,
        decode_flops_per_sample=cc.decode_flops,
        saving=1.0 - mine / full,
        flops_per_call={f"nb={nb},ns={zs},rows={rows}": cc.flops(zs, nb, rows) for zs, nb, rows in keys},
    )
