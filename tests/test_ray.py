"""Sweeps on Ray: the same store entries as in-process, no loss when a worker or the driver stops,
and a bad input that ends the run at once, named.

A local Ray with two CPU workers and no dashboard; every worker runs one torch thread, as the
in-process runs here do (the thread count changes the kernels' rounding).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'unetdyn[ray]' runs these tests")

from unetdyn.interventions import DropBlocks, Schedule, ScheduleError, SkipSteps  # noqa: E402
from unetdyn.paper import executors  # noqa: E402
from unetdyn.paper.cache import Cache  # noqa: E402
from unetdyn.paper.executors import RayExecutor, make_executor  # noqa: E402
from unetdyn.paper.sweeps import Sweep  # noqa: E402
from unetdyn.sampler import SamplerConfig  # noqa: E402

CFG = SamplerConfig(steps=10)
PROMPTS, SEEDS = ["circle", "heart", "star", "ring"], [0, 1, 2, 3]
SCHEDS = [Schedule((SkipSteps(t_start=t, n=3),), name=f"skip@{t}") for t in (9, 7, 5)] + [
    Schedule((DropBlocks(t_start=t, n=2, nb=4),), name=f"nb4@{t}") for t in (8, 6, 4)
]
CHUNK = 2  # three units of two schedules


@pytest.fixture(scope="module")
def cluster(one_thread):
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    executors.shutdown_workers()
    ray.shutdown()


def _entries(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.glob("*/*.npz"))}


MORE = [Schedule((DropBlocks(t_start=3, n=2, nb=4),), name="nb4@3"), Schedule(SCHEDS[0].interventions, name="skip@9 again")]


def _compute(sweep: Sweep, together: bool = False) -> None:
    """What a chapter does: the baseline's metrics, two families of schedules with images (one
    after the other, or ``together`` in one :meth:`Sweep.run_many`), schedules resumed from
    another's trajectory, the block usage map."""
    sweep.baseline()
    if together:
        sweep.run_many([(SCHEDS, None), (MORE, None)], images=[0, 2], chunk=CHUNK)
    else:
        sweep.run(SCHEDS, images=[0, 2], chunk=CHUNK)
        sweep.run(MORE, images=[0, 2], chunk=CHUNK)
    extend = [Schedule((SkipSteps(t_start=9, n=3), DropBlocks(t_start=t, n=2, nb=2)), name=f"then nb2@{t}") for t in (5, 3)]
    sweep.run(extend, resume_from=SCHEDS[0], chunk=1)
    sweep.block_usage((1, 4), (10, 5), samples=3)


@pytest.fixture(scope="module")
def local_store(unet, one_thread, tmp_path_factory):
    root = tmp_path_factory.mktemp("local")
    _compute(Sweep(unet, PROMPTS, SEEDS, CFG, Cache(root), batch_size=4, progress=False))
    return _entries(root)


def test_ray_stores_the_local_entries_to_the_bit(cluster, unet, local_store, tmp_path):
    sweep = Sweep(unet, PROMPTS, SEEDS, CFG, Cache(tmp_path), batch_size=4, progress=False, executor="ray")
    _compute(sweep, together=True)
    got = _entries(tmp_path)
    assert len(got) == len(local_store) == 1 + 2 * (len(SCHEDS) + 1) + 2 + 2  # block usage: x0 change, input shares
    assert got.keys() == local_store.keys()
    assert [k for k in got if got[k] != local_store[k]] == []  # same bytes: same arrays, same records


def _counting_puts(monkeypatch) -> list[str]:
    keys: list[str] = []
    real = Cache.put

    def put(self, key, arrays, info=None):
        keys.append(key)
        return real(self, key, arrays, info)

    monkeypatch.setattr(Cache, "put", put)
    return keys


def test_a_killed_worker_loses_nothing_and_stores_nothing_twice(cluster, unet, local_store, tmp_path, monkeypatch):
    marker = tmp_path / "killed"
    store = tmp_path / "store"
    ex = RayExecutor(unet, crash_once=str(marker))  # the first worker to finish a unit exits before returning it
    puts = _counting_puts(monkeypatch)
    sweep = Sweep(unet, PROMPTS, SEEDS, CFG, Cache(store), batch_size=4, progress=False, executor=ex)
    sweep.run(SCHEDS, images=[0, 2], chunk=CHUNK)
    assert marker.exists()  # a worker did die mid-unit
    assert len(puts) == len(set(puts)) == 2 * len(SCHEDS)
    got = _entries(store)
    assert got == {k: local_store[k] for k in got}


def test_an_interrupted_driver_resumes_with_what_is_missing(cluster, unet, local_store, tmp_path, monkeypatch):
    real = Cache.put
    calls = {"n": 0}

    def stop_at_the_fifth(self, key, arrays, info=None):
        calls["n"] += 1
        if calls["n"] == 5:  # two units stored (two schedules each), the third arriving
            raise KeyboardInterrupt
        return real(self, key, arrays, info)

    monkeypatch.setattr(Cache, "put", stop_at_the_fifth)
    first = Sweep(unet, PROMPTS, SEEDS, CFG, Cache(tmp_path), batch_size=4, progress=False, executor="ray")
    with pytest.raises(KeyboardInterrupt):
        first.run(SCHEDS, chunk=CHUNK)
    assert len(_entries(tmp_path)) == 4
    monkeypatch.setattr(Cache, "put", real)

    units: list[int] = []
    again = Sweep(unet, PROMPTS, SEEDS, CFG, Cache(tmp_path), batch_size=4, progress=False, executor="ray")
    real_map = again.executor.map
    again.executor.map = lambda fn, us, shared=None: units.append(sum(len(u.args["schedules"]) for u in us)) or real_map(fn, us, shared)
    res = again.run(SCHEDS, chunk=CHUNK)
    assert units == [2]  # the one unit that was not stored
    got = _entries(tmp_path)
    assert len(got) == len(SCHEDS) and got == {k: local_store[k] for k in got}
    assert len(res.table) == len(SCHEDS) * len(SEEDS)


def test_a_bad_input_fails_the_run_at_once_naming_it(cluster, unet, tmp_path):
    bad = Schedule((DropBlocks(t_start=8, n=2, nb=99),), name="too many blocks")
    sweep = Sweep(unet, PROMPTS, SEEDS, CFG, Cache(tmp_path), batch_size=4, progress=False, executor="ray")
    sweep.full_trajectory  # noqa: B018
    t0 = time.perf_counter()
    with pytest.raises(ScheduleError, match="the schedules 'nb4@8', 'too many blocks'.*'too many blocks'.*nb=99"):
        sweep.run([*SCHEDS[:2], SCHEDS[3], bad], chunk=CHUNK)
    assert time.perf_counter() - t0 < 60  # not retried


def test_a_worker_with_other_weights_refuses_to_start(cluster, unet):
    ex = RayExecutor(unet, model="builtin", workers=1)  # the shipped weights, not the tiny random Unet's
    with pytest.raises(ValueError, match="checksum .* the driver's are"):
        ex.actors()


def test_ray_options_name_their_range(cluster, unet):
    with pytest.raises(ValueError, match="workers=0 is out of range 1..4096"):
        RayExecutor(unet, workers=0)
    with pytest.raises(ValueError, match=r"workers=3: the Ray cluster has room for 1..2 \(2 CPU"):
        RayExecutor(unet, workers=3).actors()
    with pytest.raises(ValueError, match="executor='dask' is not one of local, ray"):
        make_executor("dask", unet)
    with pytest.raises(ValueError, match="address='auto' applies to executor='ray' only"):
        make_executor("local", unet, address="auto")


def test_the_fair_comparison_on_ray_equals_it_in_process(cluster, unet, tmp_path):
    import torch

    from unetdyn.paper import fair as fr
    from unetdyn.paper.alternatives import methods

    def classify(images):  # defined here: Ray's pickle sends it by value to the workers
        x = images.float()
        return np.zeros(len(x), dtype=np.int64), torch.cat([x.mean((2, 3)), x.std((2, 3))], 1).double().numpy()

    ms = methods(K=10, fewer=(5,), dual=((4, 7),), cache=((4, 2),), truncate=(3,))
    kw = dict(chunk=2, batch_size=4, progress=False)
    clf = fr.Classifier(classify, "stand-in", None, None, None, None)  # outcomes read its classify and id only
    local = fr.outcomes(unet, ms, PROMPTS, SEEDS, Cache(tmp_path / "local"), clf, **kw)
    remote = fr.outcomes(unet, ms, PROMPTS, SEEDS, Cache(tmp_path / "ray"), clf, executor="ray", **kw)
    for name in local:
        for f in fr.FAITHFULNESS + fr.CLASSIFIED:
            np.testing.assert_array_equal(remote[name][f], local[name][f])
    assert _entries(tmp_path / "ray") == _entries(tmp_path / "local")
