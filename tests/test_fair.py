"""The fair comparison: per-sample outcomes stored per chunk, paired bootstrap, equal-cost readings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from unetdyn.interventions import Schedule, preset
from unetdyn.paper import fair as fr
from unetdyn.paper.alternatives import Method, methods
from unetdyn.paper.cache import Cache, CacheMiss
from unetdyn.sampler import SamplerConfig

PROMPTS, SEEDS = ["circle", "star", "ring", "heart"], [0, 1, 2, 3]
SMALL = {"K": 10, "fewer": (5,), "dual": ((4, 7),), "cache": ((4, 2),), "truncate": (3,)}


def classify(images: torch.Tensor):
    """A stand-in classifier: class 0 for every image; features: the per-channel means and spreads."""
    x = images.float()
    return np.zeros(len(x), dtype=np.int64), torch.cat([x.mean((2, 3)), x.std((2, 3))], 1).double().numpy()


@pytest.fixture(scope="module")
def stored(unet, one_thread, tmp_path_factory):
    cache = Cache(tmp_path_factory.mktemp("fair"))
    ms = methods(**SMALL)
    outs = fr.outcomes(unet, ms, PROMPTS, SEEDS, cache, classify, "stand-in", chunk=2, batch_size=4, progress=False)
    return ms, cache, outs


def test_outcomes_compare_with_the_full_output_and_the_own_family(stored, unet):
    ms, _, outs = stored
    assert set(outs) == {m.name for m in ms}
    full = outs["full"]
    assert np.allclose(full["ssim"], 1.0) and np.isinf(full["psnr"]).all()
    assert full["feat"].shape == (4, 6) and full["feat"].dtype == np.float32
    # the classifier's class 0 is "circle": only the first sample agrees
    assert full["agree"].tolist() == [1, 0, 0, 0] == [int(unet.class_index(p) == 0) for p in PROMPTS]
    ddim = outs["DDIM K=10"]  # DDIM's own full output is itself
    assert np.allclose(ddim["ssim_own"], 1.0) and (ddim["ssim"] < 0.99).all()
    assert (outs["DDIM K=5"]["ssim_own"] > outs["DDIM K=5"]["ssim"]).all()  # closer to its own family than to ancestral
    for name in ("ancestral K=5", "DeepCache nb=4 k=2", "guidance truncated last 3"):  # the family is the ancestral sampler
        np.testing.assert_array_equal(outs[name]["ssim_own"], outs[name]["ssim"])
        assert (outs[name]["ssim"] < 1).all()


def test_outcomes_are_stored_per_method_and_chunk_and_reread(stored, unet):
    ms, cache, outs = stored
    entries = sorted(cache.root.glob("*/*.npz"))
    assert len(entries) == 2 * len(ms)  # two chunks of two samples
    again = fr.outcomes(unet, ms, PROMPTS, SEEDS, Cache(cache.root, read_only=True), classify, "stand-in", chunk=2,
                        progress=False)
    for name in outs:
        for f in fr.OUTCOME_FIELDS:
            np.testing.assert_array_equal(again[name][f], outs[name][f])
    # another classifier is another result
    with pytest.raises(CacheMiss, match="benchmarks/fair_comparison.py"):
        fr.outcomes(unet, ms, PROMPTS, SEEDS, Cache(cache.root, read_only=True), classify, "another", chunk=2, progress=False)


def test_an_interrupted_run_recomputes_only_what_is_missing(stored, unet, monkeypatch, tmp_path):
    ms, cache, outs = stored
    copy = Cache(tmp_path)
    for p in cache.root.glob("*/*.npz"):
        (tmp_path / p.parent.name).mkdir(exist_ok=True)
        (tmp_path / p.parent.name / p.name).write_bytes(p.read_bytes())
    lost = sorted(tmp_path.glob("*/*.npz"))[:3]
    for p in lost:
        p.unlink()
    with pytest.raises(CacheMiss, match="of the fair comparison are not in"):
        fr.outcomes(unet, ms, PROMPTS, SEEDS, Cache(tmp_path, read_only=True), classify, "stand-in", chunk=2, progress=False)
    calls = []
    real = fr._compute_chunk
    monkeypatch.setattr(fr, "_compute_chunk", lambda unet, ms, todo, *a: calls.append(len(todo)) or real(unet, ms, todo, *a))
    redo = fr.outcomes(unet, ms, PROMPTS, SEEDS, copy, classify, "stand-in", chunk=2, batch_size=4, progress=False)
    assert sum(calls) == 3 and len(list(tmp_path.glob("*/*.npz"))) == 2 * len(ms)
    for name in outs:  # the same samples, the same batch shapes: the same numbers
        np.testing.assert_allclose(redo[name]["ssim"], outs[name]["ssim"], atol=1e-6)


def test_outcomes_refuse_a_reference_with_interventions(unet, tmp_path):
    ms = methods(**SMALL)
    with pytest.raises(ValueError, match="reference"):
        fr.outcomes(unet, [ms[-1], ms[0]], PROMPTS, SEEDS, Cache(tmp_path), classify, "x", progress=False)
    with pytest.raises(ValueError, match="chunk=0"):
        fr.outcomes(unet, ms, PROMPTS, SEEDS, Cache(tmp_path), classify, "x", chunk=0, progress=False)


# -- readings on synthetic outcomes with known answers --------------------------------------------


def _method(family: str, name: str, steps: int = 100) -> Method:
    return Method(family, name, preset("full") if name == "full" else Schedule((), name=name), SamplerConfig(steps=steps))


def _synthetic(n: int = 400, seed: int = 0):
    """full (speed 1), shortcut (speed 1.5, SSIM 0.7), fewer steps at speed 2 (SSIM 0.6), DeepCache at speed 1.2 only."""
    rng = np.random.default_rng(seed)
    ms = [_method("full", "full"), _method("paper shortcut", "paper shortcut"), _method("fewer steps", "K=50", 50),
          _method("DeepCache", "cache")]
    ssim = {"full": np.ones(n), "paper shortcut": 0.7 + 0.02 * rng.standard_normal(n), "K=50": 0.6 + 0.02 * rng.standard_normal(n),
            "cache": 0.9 + 0.02 * rng.standard_normal(n)}
    feat = rng.standard_normal((n, 3))
    outs = {k: {"ssim": v, "psnr": np.where(v >= 1, np.inf, 20 * v), "ssim_own": v, "psnr_own": v,
                "agree": (rng.random(n) < 0.9).astype(np.uint8), "feat": feat + (0.0 if k != "K=50" else 1.0)}
            for k, v in ssim.items()}
    flops = {"full": 100.0, "paper shortcut": 100 / 1.5, "K=50": 50.0, "cache": 100 / 1.2}
    real = rng.standard_normal((n, 3))
    return ms, outs, flops, dict(flops), real, rng.standard_normal((n, 3))


def test_summarize_gives_intervals_around_the_known_means():
    from unetdyn.builtin_model.quality import frechet_distance

    ms, outs, flops, secs, real, real_b = _synthetic()
    f = fr.summarize(outs, ms, flops, secs, real, real_b, frechet_distance, n_boot=500, n_boot_frechet=50)
    t = f.table.set_index("method")
    assert t.loc["paper shortcut", "flop_speedup"] == pytest.approx(1.5)
    assert t.loc["paper shortcut", "ssim_lo"] < 0.7 < t.loc["paper shortcut", "ssim_hi"]
    assert t.loc["paper shortcut", "ssim_hi"] - t.loc["paper shortcut", "ssim_lo"] < 0.01  # sd 0.02 over 400 samples
    assert t.loc["full", "ssim_lo"] == t.loc["full", "ssim_hi"] == 1.0 and np.isnan(t.loc["full", "psnr"])
    # a shifted feature set is far; the same features are at the real-vs-real floor's scale
    assert t.loc["K=50", "frechet_lo"] > 2.0 > t.loc["full", "frechet_hi"]
    assert t.loc["full", "frechet_lo"] <= t.loc["full", "frechet"] <= t.loc["full", "frechet_hi"]
    assert f.samples == 400 and f.frechet_real < 0.2


def test_equal_cost_interpolates_the_family_curve_and_reads_the_advantage():
    from unetdyn.builtin_model.quality import frechet_distance

    ms, outs, flops, secs, real, real_b = _synthetic()
    f = fr.summarize(outs, ms, flops, secs, real, real_b, frechet_distance, n_boot=500, n_boot_frechet=50)
    e = fr.equal_cost(f, "flop_speedup").set_index(["family", "quality"])
    # fewer steps at 1.5x: halfway between the full sampler (1.0) and K=50 (0.6)
    row = e.loc[("fewer steps", "ssim")]
    assert row.value == pytest.approx(0.5 * 1.0 + 0.5 * t_mean(outs, "K=50"))
    assert row.advantage == pytest.approx(row.value - t_mean(outs, "paper shortcut"))
    assert row.verdict == "family better" and row.adv_lo > 0 and row.read_between == "full / K=50"
    # DeepCache never reaches 1.5x
    assert e.loc[("DeepCache", "ssim")].verdict == "not reached" and e.loc[("DeepCache", "ssim")].fastest == pytest.approx(1.2)
    text = fr.verdict_text(f, {"flop_speedup": fr.equal_cost(f, "flop_speedup")})
    assert "never as fast: DeepCache" in text and "family better: fewer steps" in text


def test_equal_cost_of_a_copy_of_the_shortcut_is_inconclusive():
    from unetdyn.builtin_model.quality import frechet_distance

    ms, outs, flops, secs, real, real_b = _synthetic()
    outs["K=50"] = outs["paper shortcut"]
    flops["K=50"] = secs["K=50"] = flops["paper shortcut"]
    f = fr.summarize(outs, ms, flops, secs, real, real_b, frechet_distance, n_boot=300, n_boot_frechet=30)
    e = fr.equal_cost(f, "speedup").set_index(["family", "quality"])
    for q in ("ssim", "agreement", "frechet"):  # paired resamples: the difference is exactly zero on every one
        r = e.loc[("fewer steps", q)]
        assert r.adv_lo == r.adv_hi == 0.0 and r.verdict == "inconclusive"


def t_mean(outs, name) -> float:
    return float(np.mean(outs[name]["ssim"]))


def test_equal_cost_verdicts():
    assert fr.equal_cost_verdict(0.001, 0.2) == "family better"
    assert fr.equal_cost_verdict(-0.2, -0.001) == "shortcut better"
    assert fr.equal_cost_verdict(-0.1, 0.0) == "inconclusive"
    with pytest.raises(ValueError, match="not among"):
        fr.equal_cost(fr.Fair(pd.DataFrame({"method": ["full"], "family": ["full"]}), {}, 2, 0.0))
