"""unetdyn: the temporal dynamics of the Unet in diffusion models, reproduced.

The pieces, in the direction data flows::

    paper/          the book's layer: sweeps over a keyed result store, readings, chapters, plots
    sampler         the one loop: schedules x samples -> images, with prefix reuse and batching
    interventions   interventions as data (SkipSteps, ZeroSkips, DropBlocks, EarlyStop, DropGuidance) -> Schedule
    noise           cosine noise schedule, GLIDE's respacing, ancestral / jump / DDIM updates
    unet            the backend protocol and the one intervened forward (backends/: builtin, glide)
    metrics         SSIM / PSNR per sample
    cost            FLOPs of a schedule under torch's FLOP counter, and the one timer
    builtin_model/  the built-in model's data, training, weights, quality check and card

Example:
    >>> from unetdyn import RunOptions, load_unet, sample, trajectory  # doctest: +SKIP
    >>> unet = load_unet("builtin")                                    # doctest: +SKIP
    >>> base = trajectory(unet, ["circle", "star"], [0, 1])            # doctest: +SKIP
    >>> res = sample(unet, base.prompts, base.seeds, "paper-shortcut", RunOptions(baseline=base))  # doctest: +SKIP
"""

from unetdyn.backends import load_unet
from unetdyn.interventions import (
    DropBlocks,
    DropGuidance,
    EarlyStop,
    Schedule,
    ScheduleError,
    SkipSteps,
    ZeroSkips,
    load_schedule,
    preset,
)
from unetdyn.metrics import compare, psnr, ssim
from unetdyn.sampler import RunOptions, SamplerConfig, sample, trajectory

__all__ = [
    "DropBlocks",
    "DropGuidance",
    "EarlyStop",
    "RunOptions",
    "SamplerConfig",
    "Schedule",
    "ScheduleError",
    "SkipSteps",
    "ZeroSkips",
    "compare",
    "load_schedule",
    "load_unet",
    "preset",
    "psnr",
    "sample",
    "ssim",
    "trajectory",
]
__version__ = "0.1.0"
