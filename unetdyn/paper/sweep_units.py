"""The units of work of a sweep: each runs where the Unet is (this process, or a Ray worker) and
returns arrays; the sweep that asked for it stores them (:mod:`unetdyn.paper.sweeps`).

Each takes the Unet first, then what the sweep gives it: samples, config, batch size, precision.
"""

from __future__ import annotations

import datetime
import json
import platform
from collections.abc import Iterator

import numpy as np
import torch

from unetdyn.cost import timed
from unetdyn.interventions import Schedule
from unetdyn.metrics import compare, psnr, ssim, to_uint8
from unetdyn.sampler import RunOptions, Trajectory, below_share, sample, trajectory, x0_change

__all__ = ["slim", "baseline_unit", "resumed_unit", "schedules_unit", "block_usage_unit", "timing_unit"]


def slim(traj: Trajectory) -> Trajectory:
    """A trajectory with every ``x_t`` but only the output of its x0 estimates: what resuming and
    comparing need, without ``K + 1`` decoded images per sample."""
    return Trajectory(prompts=traj.prompts, seeds=traj.seeds, config=traj.config, xs=traj.xs,
                      x0_hat=traj.x0_hat[:1].clone(), schedule=traj.schedule)


def baseline_unit(unet, prompts, seeds, config, batch_size, precision, progress=False):
    """The full run's trajectory (slim) and the baseline's metrics (see :meth:`Sweep.baseline`)."""
    b = trajectory(unet, prompts, seeds,
                   run=RunOptions(config, batch_size=batch_size, progress=progress, precision=precision))
    # PSNR on the picture x_t would show (a latent model: x_t against the final latent)
    x_t = b.xs.clamp(-1, 1)
    arrays = {
        "x0": to_uint8(b.x0),
        "psnr_xt": psnr(x_t, b.xs[0].clamp(-1, 1).expand_as(x_t)),
        "ssim_x0hat": ssim(b.x0_hat, b.x0.expand_as(b.x0_hat)),
    }
    return slim(b), arrays


def resumed_unit(unet, prompts, seeds, config, batch_size, precision, schedule, base):
    """The (slim) trajectory of ``schedule``, resumed from the slim full run ``base``."""
    # the x0 estimates of the shared prefix are not kept: zeros stand in (only x_t feeds the sampler)
    full = Trajectory(prompts=base.prompts, seeds=base.seeds, config=base.config, xs=base.xs,
                      x0_hat=torch.zeros((base.xs.shape[0], *base.x0_hat.shape[1:])), schedule=base.schedule)
    return slim(trajectory(unet, prompts, seeds, schedule,
                            RunOptions(config, batch_size=batch_size, progress=False, baseline=full,
                                       precision=precision)))


def schedules_unit(unet, prompts, seeds, config, batch_size, precision, start, x0, images, schedules
                    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """``schedules`` in one batched run resumed from ``start``; yields ``(index, {ssim, psnr[, images]})``
    per schedule, against the baseline's output ``x0``."""
    res = sample(unet, prompts, seeds, schedules,
                 RunOptions(config, baseline=start, batch_size=batch_size, progress=False, precision=precision))
    for j, out in enumerate(res.images):
        m = compare(x0, out)
        arrays = {"ssim": m["ssim"], "psnr": m["psnr"]}
        if images:
            arrays["images"] = to_uint8(out[images])
        yield j, arrays


def block_usage_unit(unet, prompts, seeds, config, batch_size, precision, nbs, steps, n, first, parts,
                     progress=False) -> dict[str, np.ndarray]:
    """On the first ``n`` samples (``first``: their baseline, or None to sample it once), each of ``parts``:
    ``change`` (:func:`~unetdyn.sampler.x0_change`) and ``share`` (:func:`~unetdyn.sampler.below_share`)."""
    if first is None:
        first = trajectory(unet, prompts[:n], seeds[:n],
                           run=RunOptions(config, batch_size=batch_size, progress=progress, precision=precision))
    maps = {"change": lambda: x0_change(unet, first, nbs, steps, batch_size),
            "share": lambda: below_share(unet, first, steps, batch_size)}
    return {name: maps[name]().numpy() for name in parts}


def timing_unit(unet, prompts, seeds, config, batch_size, precision, schedules, repeats) -> dict[str, np.ndarray]:
    """Seconds ``[schedules, repeats]`` of sampling from scratch, and the machine that measured them."""
    def run(s: Schedule) -> float:
        return timed(unet, lambda: sample(unet, prompts, seeds, s,
                                          RunOptions(config, batch_size=batch_size, progress=False,
                                                     precision=precision)))

    run(schedules[0])  # warm-up
    secs = np.array([[run(s) for s in schedules] for _ in range(repeats)]).T
    meta = {"host": platform.node(), "threads": torch.get_num_threads(), "date": datetime.date.today().isoformat()}
    return {"seconds": secs, "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
