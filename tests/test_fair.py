"""The fair comparison: per-sample outcomes stored per chunk, paired bootstrap, equal-cost readings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from unetdyn.interventions import Schedule, preset
from unetdyn.paper import fair as fr
from unetdyn.paper import fair_readings as frr
from unetdyn.paper.alternatives import Method, methods
from unetdyn.paper.cache import Cache, CacheMiss
from unetdyn.sampler import SamplerConfig

PROMPTS, SEEDS = ["circle", "star", "ring", "heart"], [0, 1, 2, 3]
SMALL = {"K": 10, "fewer": (5,), "dual": ((4, 7),), "cache": ((4, 2),), "truncate": (3,)}


def classify(images: torch.Tensor):
    """A stand-in classifier: class 0 for every image; features: the per-channel means and spreads."""
    x = images.float()
    return np.zeros(len(x), dtype=np.int64), torch.cat([x.mean((2, 3)), x.std((2, 3))], 1).double().numpy()


def stand_in(cid: str = "stand-in") -> fr.Classifier:
    """The stand-in classifier for outcomes (they read only its ``classify`` and ``id``)."""
    return fr.Classifier(classify, cid, None, None, None, None)


def with_real(real, real_b) -> fr.Classifier:
    """A classifier whose real sets are ``real`` and ``real_b`` (one stratum), for the readings."""
    from unetdyn.builtin_model.classifier import frechet_distance

    return fr.Classifier(classify, "stand-in", real, real_b, np.zeros(len(real), int), frechet_distance)


@pytest.fixture(scope="module")
def stored(unet, one_thread, tmp_path_factory):
    cache = Cache(tmp_path_factory.mktemp("fair"))
    ms = methods(**SMALL)
    outs = fr.outcomes(unet, ms, PROMPTS, SEEDS, cache, stand_in(), chunk=2, batch_size=4, progress=False)
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
    again = fr.outcomes(unet, ms, PROMPTS, SEEDS, Cache(cache.root, read_only=True), stand_in(), chunk=2,
                        progress=False)
    for name in outs:
        for f in fr.FAITHFULNESS + fr.CLASSIFIED:
            np.testing.assert_array_equal(again[name][f], outs[name][f])
    # another classifier is another result
    with pytest.raises(CacheMiss, match="benchmarks/fair_comparison.py"):
        fr.outcomes(unet, ms, PROMPTS, SEEDS, Cache(cache.root, read_only=True), stand_in("another"), chunk=2, progress=False)


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
        fr.outcomes(unet, ms, PROMPTS, SEEDS, Cache(tmp_path, read_only=True), stand_in(), chunk=2, progress=False)
    calls = []
    real = fr._compute_chunk
    monkeypatch.setattr(fr, "_compute_chunk", lambda unet, ms, todo, *a: calls.append(len(todo)) or real(unet, ms, todo, *a))
    redo = fr.outcomes(unet, ms, PROMPTS, SEEDS, copy, stand_in(), chunk=2, batch_size=4, progress=False)
    assert sum(calls) == 3 and len(list(tmp_path.glob("*/*.npz"))) == 2 * len(ms)
    for name in outs:  # the same samples, the same batch shapes: the same numbers
        np.testing.assert_allclose(redo[name]["ssim"], outs[name]["ssim"], atol=1e-6)


def test_outcomes_refuse_a_reference_with_interventions(unet, tmp_path):
    ms = methods(**SMALL)
    with pytest.raises(ValueError, match="reference"):
        fr.outcomes(unet, [ms[-1], ms[0]], PROMPTS, SEEDS, Cache(tmp_path), stand_in("x"), progress=False)
    with pytest.raises(ValueError, match="chunk=0"):
        fr.outcomes(unet, ms, PROMPTS, SEEDS, Cache(tmp_path), stand_in("x"), chunk=0, progress=False)


def test_a_schedule_resumed_from_the_baseline_scores_as_if_sampled_from_scratch(stored, unet):
    from unetdyn.metrics import compare
    from unetdyn.sampler import RunOptions, sample, trajectory

    ms, _, outs = stored
    m = next(m for m in ms if m.name == "DeepCache nb=4 k=2")
    base = trajectory(unet, PROMPTS, SEEDS, run=RunOptions(ms[0].config, batch_size=4, progress=False))
    out = sample(unet, PROMPTS, SEEDS, m.schedule, RunOptions(m.config, batch_size=4, progress=False)).images[0]
    np.testing.assert_allclose(outs[m.name]["ssim"], compare(base.x0, out)["ssim"], atol=1e-5)


def test_a_lost_ddim_entry_is_recomputed_against_its_own_reference(stored, unet, tmp_path):
    ms, cache, outs = stored
    for p in cache.root.glob("*/*.npz"):
        (tmp_path / p.parent.name).mkdir(exist_ok=True)
        (tmp_path / p.parent.name / p.name).write_bytes(p.read_bytes())
    copy = Cache(tmp_path)
    mid = fr.model_id(unet)
    lost = [m for m in ms if m.name in ("DDIM K=5", "DeepCache nb=4 k=2")]  # DDIM K=10 (its reference) stays stored
    for m in lost:
        for s in (0, 2):
            copy.path(fr._key(mid, "stand-in", m, ms[0], PROMPTS[s : s + 2], SEEDS[s : s + 2])).unlink()
    redo = fr.outcomes(unet, ms, PROMPTS, SEEDS, copy, stand_in(), chunk=2, batch_size=4, progress=False)
    for m in lost:
        for f in fr.FAITHFULNESS + fr.CLASSIFIED:
            np.testing.assert_allclose(redo[m.name][f], outs[m.name][f], atol=1e-6)


def test_without_a_classifier_the_same_comparison_reads_faithfulness_only(stored, unet, tmp_path):
    ms, _, outs = stored
    plain = fr.outcomes(unet, ms, PROMPTS, SEEDS, Cache(tmp_path), None, chunk=2, batch_size=4, progress=False)
    for name, o in plain.items():  # the same samples, the same batch shapes: the same faithfulness, to the bit
        assert tuple(o) == fr.FAITHFULNESS
        for f in fr.FAITHFULNESS:
            np.testing.assert_array_equal(o[f], outs[name][f])
    # its entries are its own: the classified run's store holds none of them
    with pytest.raises(CacheMiss):
        fr.outcomes(unet, ms, PROMPTS, SEEDS, Cache(tmp_path, read_only=True), stand_in(), chunk=2, progress=False)


def test_the_readings_without_a_classifier_leave_its_qualities_out():
    ms, outs, flops, secs, *_ = _synthetic()
    ms = ms + [_method("DDIM", "DDIM K=50", 50), _method("DDIM", "DDIM K=100", 100)]
    ms[-2], ms[-1] = (Method("DDIM", m.name, m.schedule, m.config, k) for m, k in ((ms[-2], 50), (ms[-1], 100)))
    outs.update({"DDIM K=50": dict(outs["K=50"]), "DDIM K=100": dict(outs["full"])})
    flops.update({"DDIM K=50": 50.0, "DDIM K=100": 100.0})
    secs.update({"DDIM K=50": [50.0, 50.0], "DDIM K=100": [100.0, 100.0]})
    plain = {k: {f: v[f] for f in fr.FAITHFULNESS} for k, v in outs.items()}
    f = frr.summarize(plain, ms, flops, secs, None, n_boot=300)
    assert not f.classified and np.isnan(f.frechet_real)
    assert not {"agreement", "frechet", "agreement_lo", "frechet_hi"} & set(f.table.columns)
    assert set(f.boot["K=50"]) == {"ssim", "ssim_p5", "psnr", "ssim_own"}
    # the faithfulness columns are those of the classified reading: the same resamples
    both = _summary(ms, outs, flops, secs, *_synthetic()[4:], n_boot=300)
    pd.testing.assert_frame_equal(f.table, both.table[f.table.columns])
    e = frr.equal_cost(f, "flop_speedup")
    assert set(e.quality) == {"ssim"} and e.set_index("family").loc["fewer steps", "verdict"] == "shortcut better"
    text = frr.verdict_text(f, {"flop_speedup": e})
    assert "only faithfulness to the full output is read" in text and "class agreement" not in text
    assert frr.ddim_text(f).endswith("needs a quality classifier, which this model has not.")


def test_the_key_holds_what_the_outcome_depends_on(stored):
    from dataclasses import replace

    ms, _, _ = stored
    m, ref = ms[1], ms[0]
    k = fr._key("model", "clf", m, ref, PROMPTS, SEEDS)
    assert k != fr._key("model", "clf", replace(m, config=replace(m.config, guidance=2.0)), ref, PROMPTS, SEEDS)
    assert k != fr._key("model", "clf", m, replace(ref, config=replace(ref.config, guidance=2.0)), PROMPTS, SEEDS)
    assert k != fr._key("model", "clf", m, ref, PROMPTS, [9, 1, 2, 3])
    assert k == fr._key("model", "clf", replace(m, name="renamed", strength=7.0), ref, PROMPTS, SEEDS)


# -- readings on synthetic outcomes with known answers --------------------------------------------


def _method(family: str, name: str, steps: int = 100) -> Method:
    return Method(family, name, preset("full") if name == "full" else Schedule((), name=name), SamplerConfig(steps=steps))


def _synthetic(n: int = 400, seed: int = 0):
    """full (speed 1), shortcut (speed 1.5, SSIM 0.7), fewer steps at speeds 4/3 (SSIM 0.65) and 2 (0.6),
    DeepCache at speed 1.2 only."""
    rng = np.random.default_rng(seed)
    ms = [_method("full", "full"), _method("paper shortcut", "paper shortcut"), _method("fewer steps", "K=75", 75),
          _method("fewer steps", "K=50", 50), _method("DeepCache", "cache")]
    ssim = {"full": np.ones(n), "paper shortcut": 0.7 + 0.02 * rng.standard_normal(n),
            "K=75": 0.65 + 0.02 * rng.standard_normal(n), "K=50": 0.6 + 0.02 * rng.standard_normal(n),
            "cache": 0.9 + 0.02 * rng.standard_normal(n)}
    feat = rng.standard_normal((n, 3))
    outs = {k: {"ssim": v, "psnr": np.where(v >= 1, np.inf, 20 * v), "ssim_own": v, "psnr_own": v,
                "agree": (rng.random(n) < 0.9).astype(np.uint8), "feat": feat + (1.0 if k == "K=50" else 0.0)}
            for k, v in ssim.items()}
    flops = {"full": 100.0, "paper shortcut": 100 / 1.5, "K=75": 75.0, "K=50": 50.0, "cache": 100 / 1.2}
    secs = {k: [v, v] for k, v in flops.items()}
    return ms, outs, flops, secs, rng.standard_normal((n, 3)), rng.standard_normal((n, 3))


def _summary(ms, outs, flops, secs, real, real_b, **kw):
    return frr.summarize(outs, ms, flops, secs, with_real(real, real_b), **{"n_boot": 500, "n_boot_frechet": 50, **kw})


def test_the_summary_is_stored_under_a_digest_of_its_inputs(tmp_path, monkeypatch):
    ms, outs, flops, secs, real, real_b = _synthetic(n=60)
    cache, kw = Cache(tmp_path), {"n_boot": 200, "n_boot_frechet": 20}
    first = frr.summarize_stored(cache, outs, ms, flops, secs, with_real(real, real_b), store=True, **kw)
    assert len(list(tmp_path.rglob("*.npz"))) == 1

    def no_bootstrap(*a, **k):
        raise AssertionError("the stored summary should have been read")

    monkeypatch.setattr(frr, "summarize", no_bootstrap)
    again = frr.summarize_stored(cache, outs, ms, flops, secs, with_real(real, real_b), **kw)
    pd.testing.assert_frame_equal(again.table, first.table)
    assert (again.samples, again.frechet_real) == (first.samples, first.frechet_real)
    for m, qs in first.boot.items():
        for q, reads in qs.items():
            np.testing.assert_array_equal(again.boot[m][q], reads)
    # one changed outcome, other timings or other bootstrap settings: another summary
    outs["K=75"]["ssim"] = outs["K=75"]["ssim"].copy()
    outs["K=75"]["ssim"][7] += 1e-6
    for args, options in (((outs, ms, flops, secs), kw), ((_synthetic(n=60)[1], ms, flops, {**secs, "K=50": [9.0, 9.0]}), kw),
                          ((_synthetic(n=60)[1], ms, flops, secs), {**kw, "seed": 1})):
        with pytest.raises(AssertionError, match="should have been read"):
            frr.summarize_stored(cache, *args, with_real(real, real_b), **options)


def test_summarize_gives_intervals_around_the_known_means():
    f = _summary(*_synthetic())
    t = f.table.set_index("method")
    assert t.loc["paper shortcut", "flop_speedup"] == pytest.approx(1.5)
    assert t.loc["paper shortcut", "ssim_lo"] < 0.7 < t.loc["paper shortcut", "ssim_hi"]
    assert t.loc["paper shortcut", "ssim_hi"] - t.loc["paper shortcut", "ssim_lo"] < 0.01  # sd 0.02 over 400 samples
    assert t.loc["full", "ssim_lo"] == t.loc["full", "ssim_hi"] == 1.0 and np.isnan(t.loc["full", "psnr"])
    # a shifted feature set is far (the true distance is 3); the same features are near the floor
    assert 2.0 < t.loc["K=50", "frechet_lo"] and t.loc["K=50", "frechet_hi"] < 4.0
    assert t.loc["full", "frechet_hi"] < 1.0
    for m in t.index:  # the bias-corrected value lies in its own interval
        assert t.loc[m, "frechet_lo"] <= t.loc[m, "frechet"] <= t.loc[m, "frechet_hi"]
    assert f.samples == 400 and abs(f.frechet_real) < 0.2


def test_wall_clock_speed_ups_are_medians_of_per_round_ratios():
    ms, outs, flops, secs, real, real_b = _synthetic()
    secs = {k: [1.0, 1.0, 1.0] for k in secs}
    secs["full"], secs["paper shortcut"] = [1.0, 2.0, 1.2], [0.5, 1.0, 1.0]  # a slow second round hits both alike
    t = _summary(ms, outs, flops, secs, real, real_b).table.set_index("method")
    assert t.loc["paper shortcut", "speedup"] == pytest.approx(2.0)  # median of 2, 2, 1.2; the medians' ratio is 1.2
    assert (t.loc["paper shortcut", "speedup_low"], t.loc["paper shortcut", "speedup_high"]) == (1.2, 2.0)
    assert t.loc["paper shortcut", "sec_per_sample"] == 1.0


def test_resamples_keep_every_class_count():
    strata = np.arange(30) % 3
    idx = frr.resample(strata, 50, np.random.default_rng(1))
    assert idx.shape == (50, 30) and (strata[idx] == strata[None, :]).all()
    assert len(np.unique(idx)) == 30  # every sample is drawn somewhere


def test_a_pivotal_reading_corrects_a_bias_that_puts_every_replicate_above_the_estimate():
    reads = np.linspace(2.0, 4.0, 101)  # all above the estimate 1.5, mean 3.0
    v, lo, hi = frr._read(1.5, reads, True)
    assert v == pytest.approx(0.0) and lo == pytest.approx(3.0 - 3.95, abs=0.02) and hi == pytest.approx(3.0 - 2.05, abs=0.02)
    assert frr._read(1.5, reads, False) == (1.5, pytest.approx(2.05, abs=0.02), pytest.approx(3.95, abs=0.02))


def test_equal_cost_interpolates_the_family_curve_and_reads_the_advantage():
    ms, outs, flops, secs, real, real_b = _synthetic()
    f = _summary(ms, outs, flops, secs, real, real_b)
    e = frr.equal_cost(f, "flop_speedup").set_index(["family", "quality"])
    # fewer steps at 1.5x: a quarter of the way from K=75 (4/3x) to K=50 (2x); the full sampler is no point of it
    row = e.loc[("fewer steps", "ssim")]
    assert row.value == pytest.approx(0.75 * t_mean(outs, "K=75") + 0.25 * t_mean(outs, "K=50"))
    assert row.advantage == pytest.approx(row.value - t_mean(outs, "paper shortcut"))
    assert row.verdict == "shortcut better" and row.adv_hi < 0 and row.read_between == "K=75 / K=50"
    fd = e.loc[("fewer steps", "frechet")]  # lower is better: a farther family has a negative advantage
    assert fd.adv_hi < 0 and fd.verdict == "shortcut better"
    # DeepCache's one setting spans no speed-up
    assert e.loc[("DeepCache", "ssim")].verdict == "outside its range" and e.loc[("DeepCache", "ssim")].fastest == pytest.approx(1.2)
    text = frr.verdict_text(f, {"flop_speedup": frr.equal_cost(f, "flop_speedup")})
    assert "outside the family's settings): DeepCache (1.20x..1.20x)" in text and "shortcut better: fewer steps" in text


def test_equal_cost_of_a_copy_of_the_shortcut_is_inconclusive():
    ms, outs, flops, secs, real, real_b = _synthetic()
    outs["K=75"] = outs["K=50"] = outs["paper shortcut"]
    f = _summary(ms, outs, flops, secs, real, real_b, n_boot=300, n_boot_frechet=30)
    e = frr.equal_cost(f, "speedup").set_index(["family", "quality"])
    for q in ("ssim", "agreement", "frechet"):  # paired resamples: the difference is exactly zero on every one
        r = e.loc[("fewer steps", q)]
        assert r.adv_lo == pytest.approx(0.0, abs=1e-12) and r.adv_hi == pytest.approx(0.0, abs=1e-12)
        assert r.verdict == "inconclusive"


def t_mean(outs, name) -> float:
    return float(np.mean(outs[name]["ssim"]))


def test_equal_cost_verdicts():
    assert frr.equal_cost_verdict(0.001, 0.2) == "family better"
    assert frr.equal_cost_verdict(-0.2, -0.001) == "shortcut better"
    assert frr.equal_cost_verdict(-0.1, 0.0) == "inconclusive"
    assert frr.equal_cost_verdict(np.nan, np.nan) == "n/a"
    with pytest.raises(ValueError, match="not among"):
        frr.equal_cost(frr.Fair(pd.DataFrame({"method": ["full"], "family": ["full"]}), {}, 2, 0.0))


def test_the_ddim_sentence_reads_the_paired_difference():
    ms, outs, flops, secs, real, real_b = _synthetic()
    ms = ms + [_method("DDIM", "DDIM K=50", 50), _method("DDIM", "DDIM K=100", 100)]
    ms[-2] = Method("DDIM", "DDIM K=50", ms[-2].schedule, ms[-2].config, 50)
    ms[-1] = Method("DDIM", "DDIM K=100", ms[-1].schedule, ms[-1].config, 100)
    n = len(outs["full"]["ssim"])
    low = {**outs["full"], "agree": np.zeros(n, np.uint8), "ssim": np.full(n, 0.2), "ssim_own": np.full(n, 0.97)}
    outs.update({"DDIM K=50": low, "DDIM K=100": {**low, "ssim_own": np.ones(n)}})
    flops.update({"DDIM K=50": 50.0, "DDIM K=100": 100.0})
    secs.update({"DDIM K=50": [50.0, 50.0], "DDIM K=100": [100.0, 100.0]})
    text = frr.ddim_text(_summary(ms, outs, flops, secs, real, real_b))
    assert "its own 100-step output at mean SSIM 0.970 to 0.970 over K = 50" in text
    assert "Its class agreement at K = 100 is 0.0%" in text and "below zero (400 samples)" in text


def test_the_readme_report_prints_chapter_7s_readings_from_the_committed_store():
    import importlib.util
    from pathlib import Path

    from unetdyn.backends import load_unet
    from unetdyn.paper.sweeps import default_samples
    from unetdyn.paths import CACHE_DIR

    path = Path(__file__).parents[1] / "benchmarks" / "fair_comparison.py"
    spec = importlib.util.spec_from_file_location("fair_comparison", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    text = bench.report(100, 100, store=False)  # the committed store is only read
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    # the point estimates, recomputed here from the stored per-sample outcomes
    unet = load_unet("builtin")
    prompts, seeds = default_samples(unet, "builtin", 100)
    ms = [m for m in methods() if m.name in bench.README_METHODS]
    outs = fr.outcomes(unet, ms, prompts, seeds, Cache(CACHE_DIR, read_only=True), fr.shape_classifier(100), chunk=100,
                       progress=False)
    for m in ms:
        o = outs[m.name]
        assert f"| {o['ssim'].mean():.3f} [" in rows[m.name], m.name
        assert f"| {o['agree'].mean():.1%} [" in rows[m.name], m.name
    assert rows["full"].split(" | ")[3].startswith("1.000 [1.000, 1.000]")  # the reference against itself
    assert text.splitlines().count("|---|---|---|---|") == 2 and "at K = 100" in text  # two equal-cost tables
