"""Where a sweep's missing results are computed: in this process, or by workers on a Ray cluster.

A *unit* is the work behind a few store entries, as the store keys them: a group of schedules on
a sweep's samples, resumed from its baseline (:meth:`~unetdyn.paper.sweeps.Sweep.run`), or the
fair comparison's methods on one chunk of samples (:func:`~unetdyn.paper.fair.outcomes`). A unit
is a generator function ``fn(unet, **shared, **args)`` that yields its results; the process that
drives the sweep stores each result as it arrives. Workers never write the store, so no
filesystem is shared, and a driver that is stopped resumes from what the store holds.

- :class:`LocalExecutor` runs the units one after the other in this process, on its Unet.
- :class:`RayExecutor` runs them on Ray actors: one per GPU, or per CPU worker, each loading the
  Unet once. Ray places the actors and restarts them; nothing here schedules beyond handing the
  next unit to an idle actor.

Faults on Ray: an actor that dies mid-unit (killed, out of memory, its node lost) is restarted and
its unit retried (Ray's ``max_restarts`` and ``max_task_retries``); the unit's results arrive once
and are stored once. An exception the unit raises itself (a schedule that does not fit the Unet,
a sample gone NaN) is not retried: it ends the run at once, naming the unit's input.

Identical results: a unit computes what the local executor computes, with the same batch shapes,
and the noise derives from (seed, t), so on the CPU its results equal the local ones to the bit,
provided both run torch with the same number of threads (a CPU worker runs ``threads`` of them,
default 1; other thread counts change the rounding of the kernels: up to about 1e-3 in a pixel of
the built-in model's images).
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

__all__ = ["EXECUTORS", "Unit", "Executor", "LocalExecutor", "RayExecutor", "UnitProgress", "make_executor",
           "connect", "shutdown_workers", "live_workers"]

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Unit:
    """One unit of work.

    Attributes:
        args: the unit's own keyword arguments (beside the ones all units of a run share).
        label: its input, as an error names it (e.g. ``the schedules 'a', 'b' (100 samples, ...)``).
        steps: the sample-steps it computes (Unet calls times samples), for the progress bar.
    """

    args: Mapping[str, Any]
    label: str
    steps: int = 0


class Executor:
    """Runs units; see the module's docstring."""

    kind = ""

    def map(self, fn: Callable[..., Iterator[Any]], units: Sequence[Unit],
            shared: Mapping[str, Any] | None = None) -> Iterator[tuple[int, list[Any], bool]]:
        """Run ``fn(unet, **shared, **unit.args)`` for every unit; yield ``(index, results, finished)``
        as results arrive: ``results`` is what the unit yielded since its last report, ``finished``
        whether it is done. Close the iterator to abandon the units still running."""
        raise NotImplementedError

    def call(self, fn: Callable[..., Any], label: str, **kwargs) -> Any:
        """``fn(unet, **kwargs)`` on one worker, its return value (``label``: its input, for errors)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the workers (a later unit starts them again)."""


class LocalExecutor(Executor):
    """The units one after the other in this process, on ``unet``; each result is reported as the
    unit yields it, so it is stored before the unit goes on."""

    kind = "local"

    def __init__(self, unet):
        self.unet = unet

    def map(self, fn, units, shared=None):
        for i, unit in enumerate(units):
            for item in fn(self.unet, **(shared or {}), **unit.args):
                yield i, [item], False
            yield i, [], True

    def call(self, fn, label, **kwargs):
        return fn(self.unet, **kwargs)


class UnitProgress:
    """A progress bar over units: it counts their sample-steps, and the units done beside them."""

    def __init__(self, units: Sequence[Unit], desc: str, disable: bool = False):
        self.n, self.done = len(units), 0
        total = sum(u.steps for u in units)
        self.bar = tqdm(total=total, desc=desc, unit="step", unit_scale=total >= 10_000, disable=disable)
        self.bar.set_postfix_str(f"units 0/{self.n}", refresh=False)

    def finished(self, unit: Unit) -> None:
        self.done += 1
        self.bar.set_postfix_str(f"units {self.done}/{self.n}", refresh=False)
        self.bar.update(unit.steps)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> UnitProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- Ray ------------------------------------------------------------------------------------------


def _ray():
    try:
        import ray
    except ImportError:
        raise ImportError("executor='ray' needs Ray: pip install 'unetdyn[ray]'") from None
    return ray


def connect(address: str | None = None):
    """Ray, connected: to the cluster at ``address`` (``"auto"``: the one started on this machine by
    ``ray start --head``), or else to a local Ray started here without a dashboard. A process that
    is already connected (``ray.init`` called before) stays as it is."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address is not None:
        ray.init(address=address, **quiet)
    else:
        ray.init(include_dashboard=False, **quiet)
    return ray


class _Worker:
    """A Ray actor: the Unet, loaded once, and the units it is handed.

    ``source``: ``("load", model, weights)`` loads the model by name on the worker (a weights file
    must exist there); ``("object", unet)`` is a copy of the driver's Unet. A worker whose weights'
    checksum differs from the driver's refuses to start: its results would be stored under the
    driver's keys.
    """

    def __init__(self, source: tuple, device: str, threads: int, expect_id: str, crash_once: str | None):
        self.device, self.crash_once = device, crash_once
        self._shared: tuple[tuple, dict] = ((), {})
        # a failure to load is raised by ready(), as the exception itself: Ray reports an error in
        # __init__ only as the text of its traceback
        self.problem: Exception | None = None
        try:
            self.unet = self._load(source, device, threads, expect_id)
        except Exception as exc:  # noqa: BLE001 - reported by ready()
            self.problem = exc

    @staticmethod
    def _load(source: tuple, device: str, threads: int, expect_id: str):
        import socket

        import torch

        from unetdyn.paper.cache import model_id

        torch.set_num_threads(threads)
        if source[0] == "load":
            from unetdyn.backends import load_unet

            unet = load_unet(source[1], source[2], device)
        else:  # a reference into the object store (Ray resolves only references passed as arguments themselves)
            ray = _ray()
            unet = ray.get(source[1]) if isinstance(source[1], ray.ObjectRef) else source[1]
        got = model_id(unet)
        if got != expect_id:
            raise ValueError(f"the worker on {socket.gethostname()} loaded weights with checksum {got[:12]}, the driver's "
                             f"are {expect_id[:12]}: give every node the same weights file")
        return unet

    def ready(self) -> tuple[str, str, int]:
        import socket

        import torch

        if self.problem is not None:
            raise self.problem
        return socket.gethostname(), self.device, torch.get_num_threads()

    def _values(self, refs: dict) -> dict:
        """The values of the run's shared arguments, fetched once per run (the last run's are kept)."""
        ray = _ray()
        key = tuple(sorted((k, r.hex()) for k, r in refs.items()))
        if self._shared[0] != key:
            names = list(refs)
            self._shared = (key, dict(zip(names, ray.get([refs[k] for k in names]))))
        return self._shared[1]

    def run(self, fn, refs: dict, args: dict) -> list:
        self.ready()
        items = list(fn(self.unet, **self._values(refs), **args))
        if self.crash_once is not None and not os.path.exists(self.crash_once):
            Path(self.crash_once).touch()
            os._exit(1)  # as a worker killed with its unit computed but not returned
        return items

    def call(self, fn, kwargs: dict):
        self.ready()
        return fn(self.unet, **kwargs)


@dataclass
class _Pool:
    key: tuple
    actors: list
    where: list = field(default_factory=list)  # (host, device, threads) of each actor
    source: tuple = ()  # kept alive while the actors live: a restarted actor loads from it again


_POOL: _Pool | None = None  # this process's live actors: one pool at a time, so a pool never waits for another's resources


def shutdown_workers() -> None:
    """End this process's Ray actors (units still running are abandoned); the next unit starts new ones."""
    global _POOL
    if _POOL is not None:
        ray = _ray()
        for a in _POOL.actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001 - an actor already gone is what we want
                pass
        _POOL = None


def live_workers() -> list[tuple[str, str, int]]:
    """The (host, device, torch threads) of each of this process's Ray actors (none: an empty list)."""
    return [tuple(w) for w in _POOL.where] if _POOL is not None else []


def _named(exc: BaseException, label: str) -> BaseException:
    """``exc`` again, its message prefixed by the input that raised it."""
    text = f"{label}: {exc}"
    try:
        named = type(exc)(text)
    except Exception:  # noqa: BLE001 - an exception class with another signature
        return RuntimeError(f"{label}: {type(exc).__name__}: {exc}")
    return named if str(named) == text else RuntimeError(f"{label}: {type(exc).__name__}: {exc}")


class RayExecutor(Executor):
    """Units on Ray actors, each holding the Unet.

    Args:
        unet: the driver's Unet (its weights' checksum keys the results; every worker must match it).
        model, weights: how a worker loads the Unet (:func:`~unetdyn.backends.load_unet`); the
            weights file must exist on every node (the shipped built-in weights come with the
            install). None: the workers get a copy of ``unet`` through Ray's object store.
        device: the workers' device: ``cuda`` (one actor per GPU) or ``cpu``; None: ``cuda`` where
            the cluster has GPUs, else ``cpu``.
        address: the cluster (see :func:`connect`); None: a local Ray.
        workers: how many actors (None: one per GPU of the cluster, or one per ``threads`` of its CPUs).
        threads: torch threads (and Ray CPUs) per worker.
        max_restarts: how often an actor that died is restarted, and its unit retried.
        crash_once: a file path: the first worker to find it missing creates it and exits after
            computing its unit, before returning it (how the tests kill a worker mid-unit).
    """

    kind = "ray"

    def __init__(self, unet, *, model: str | None = None, weights: str | None = None, device: str | None = None,
                 address: str | None = None, workers: int | None = None, threads: int = 1, max_restarts: int = 3,
                 crash_once: str | None = None):
        from unetdyn.backends.registry import check_device
        from unetdyn.paper.cache import model_id

        _ray()
        check_device(device, allow_meta=False)
        if device is not None and device.startswith("cuda:"):
            raise ValueError(f"device={device!r}: a Ray worker gets its GPU from Ray; give device='cuda'")
        for name, value, low in (("workers", workers, 1), ("threads", threads, 1), ("max_restarts", max_restarts, 0)):
            if value is None and name == "workers":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 4096:
                raise ValueError(f"{name}={value!r} is out of range {low}..4096")
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise ValueError(f"address={address!r} must name a Ray cluster (e.g. 'auto' or 'ray://HOST:10001') or be None")
        self.unet, self.model, self.weights, self.device = unet, model, weights, device
        self.address, self.workers, self.threads = address, workers, threads
        self.max_restarts, self.crash_once = max_restarts, crash_once
        self.model_id = model_id(unet)

    # -- the actors ---------------------------------------------------------------------------

    def _plan(self, ray) -> tuple[str, int]:
        """The workers' device and count, checked against the cluster's resources."""
        res = ray.cluster_resources()
        gpus, cpus = int(res.get("GPU", 0)), int(res.get("CPU", 0))
        device = self.device or ("cuda" if gpus else "cpu")
        have = gpus if device == "cuda" else cpus // self.threads
        what = f"{gpus} GPU(s)" if device == "cuda" else f"{cpus} CPU(s), {self.threads} thread(s) per worker"
        n = self.workers or have
        if n < 1 or n > have:
            raise ValueError(f"workers={n}: the Ray cluster has room for 1..{have} ({what})"
                             + ("; give device='cpu'" if device == "cuda" and not gpus else ""))
        return device, n

    def actors(self) -> list:
        """The live actors, started (and the Unet loaded on each) if they are not."""
        global _POOL
        ray = connect(self.address)
        device, n = self._plan(ray)
        job = ray.get_runtime_context().get_job_id()  # actors of an earlier connection are gone
        key = (job, self.model_id, self.model, self.weights, device, n, self.threads, self.max_restarts, self.crash_once)
        if _POOL is not None and _POOL.key == key:
            return _POOL.actors
        shutdown_workers()
        # by name, or one copy of the driver's Unet in the object store, fetched by each actor
        source = ("load", self.model, self.weights) if self.model is not None else ("object", ray.put(self.unet))
        cls = ray.remote(_Worker).options(num_cpus=self.threads, num_gpus=1 if device == "cuda" else 0,
                                          max_restarts=self.max_restarts, max_task_retries=self.max_restarts)
        actors = [cls.remote(source, device, self.threads, self.model_id, self.crash_once) for _ in range(n)]
        try:
            where = [self._get(ray, a.ready.remote(), f"starting a Ray worker on {device}") for a in actors]
        except BaseException:
            for a in actors:
                ray.kill(a, no_restart=True)
            raise
        _POOL = _Pool(key, actors, where, source)
        return actors

    def close(self) -> None:
        shutdown_workers()

    # -- running units ------------------------------------------------------------------------

    def _get(self, ray, ref, label: str):
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as err:  # the unit raised: its input is at fault, no retry
            cause = err.cause if isinstance(err.cause, Exception) else err
            raise _named(cause, label) from err
        except ray.exceptions.RayActorError as err:  # died more often than it may restart
            raise RuntimeError(f"{label}: the worker computing it died {self.max_restarts + 1} time(s); "
                               f"see the Ray logs of that node ({err.__class__.__name__})") from err

    def map(self, fn, units, shared=None):
        ray = connect(self.address)
        actors = self.actors()
        refs = {k: ray.put(v) for k, v in (shared or {}).items()}  # each shared value sent once
        idle, queue, running = list(actors), deque(range(len(units))), {}
        complete = False
        try:
            while queue or running:
                while queue and idle:
                    i, actor = queue.popleft(), idle.pop(0)
                    running[actor.run.remote(fn, refs, dict(units[i].args))] = (i, actor)
                [ref], _ = ray.wait(list(running), num_returns=1)
                i, actor = running.pop(ref)
                items = self._get(ray, ref, units[i].label)
                idle.append(actor)
                yield i, items, True
            complete = True
        finally:
            if not complete:  # stopped or failed: end the units still running (the store keeps what arrived)
                shutdown_workers()

    def call(self, fn, label, **kwargs):
        ray = connect(self.address)
        actor = self.actors()[0]
        done = False
        try:
            out = self._get(ray, actor.call.remote(fn, kwargs), label)
            done = True
            return out
        finally:
            if not done:
                shutdown_workers()


def make_executor(executor: str | Executor, unet, *, model: str | None = None, weights: str | None = None,
                  device: str | None = None, address: str | None = None, workers: int | None = None) -> Executor:
    """The executor named ``executor`` (``local`` or ``ray``) for ``unet``; an :class:`Executor` is
    returned as it is. ``model``, ``weights``, ``device``, ``address``, ``workers``: see
    :class:`RayExecutor` (``address`` and ``workers`` apply to Ray only)."""
    if isinstance(executor, Executor):
        return executor
    if executor == "local":
        if address is not None or workers is not None:
            which = "address" if address is not None else "workers"
            raise ValueError(f"{which}={address if address is not None else workers!r} applies to executor='ray' only")
        return LocalExecutor(unet)
    if executor == "ray":
        return RayExecutor(unet, model=model, weights=weights, device=device, address=address, workers=workers)
    raise ValueError(f"executor={executor!r} is not one of {', '.join(EXECUTORS)}")
