"""Each chapter's computation on a tiny random Unet: it computes into the store once, then a
read-only run reads everything back (the book computes nothing), and a miss names what is missing."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from unetdyn.interventions import DropBlocks, SkipSteps
from unetdyn.paper import chapters
from unetdyn.paper.cache import Cache, CacheMiss
from unetdyn.paper.chapters import (
    ch01_phases,
    ch02_skip_vs_deconv,
    ch03_nb_sweep,
    ch04_n_limit,
    ch05_relaxation,
    ch06_shortcut,
    common,
)
from unetdyn.paper.sweeps import Sweep, SweepSpec, default_samples

SPEC = SweepSpec(n_samples=4, steps=10)


@pytest.fixture()
def store(monkeypatch, unet, tmp_path, one_thread):
    """Chapters open their sweeps on the tiny Unet, over a store in tmp_path."""

    def fake_open(spec, *, compute=True, cache_dir=None, batch_size=16, **_):
        prompts, seeds = default_samples(unet, "builtin", spec.n_samples)
        return Sweep(unet, prompts, seeds, spec.config, Cache(tmp_path, read_only=not compute), batch_size, False)

    monkeypatch.setattr(common, "open_sweep", fake_open)
    return tmp_path


def test_phases_computes_once_then_reads(store):
    kw = dict(n=2, t_stride=2, n_values=(2, 3), t_stride_fig18=3, image_t_starts=(8, 4), image_samples=2)
    r = ch01_phases.run(ch01_phases.Params.of(SPEC, compute=True, **kw))
    again = ch01_phases.run(ch01_phases.Params.of(SPEC, **kw))
    assert again.fig4.table.equals(r.fig4.table)
    assert r.fig4.image(SkipSteps(t_start=8, n=2)).shape == (2, 32, 32, 3)
    assert set(r.fig18.table.n) == {2, 3}
    assert {f.verdict for f in r.findings} <= {"holds", "differs", "imprecise", "-"}
    assert all(f.ours for f in r.findings)
    assert {s.parameter for s in r.sensitivities} >= {"x0_threshold", "rise_factor", "early", "late"}
    own = {f.claim for f in r.findings if f.own}
    assert {"phase-dip", "psnr-rise", "x0-accurate", "x0-at-25", "early-harms-late-benign"} <= own
    with pytest.raises(CacheMiss, match="not in the result store"):
        ch01_phases.run(ch01_phases.Params.of(SPEC, **{**kw, "n": 3}))


def test_block_sweep_and_the_chapters_that_reuse_it(store):
    grid = dict(n=2, nbs=(2, 4, 6, 8), t_stride=3, image_t_starts=(7,), image_samples=2)
    b = ch03_nb_sweep.run(ch03_nb_sweep.Params.of(SPEC, compute=True, **grid))
    assert set(b.crossings) == {2, 4, 6, 8}
    # the block-usage map: every bottom nb of the model, every other step from K down
    u = b.usage
    assert u.nbs == tuple(range(1, 17)) and u.steps[0] == SPEC.steps
    assert u.change.shape == (16, len(u.steps)) and (u.change > 0).all()
    assert u.share.shape == (16, len(u.steps)) and ((u.share > 0) & (u.share < 1)).all()
    assert "the bottom 8, by" in b.usage_text() and "decoder 8, " in b.usage_text()
    # chapters 4 and 5 ask for the same Fig. 8 sweep by the same spec: read-only works for it
    cross = ch03_nb_sweep.fig8_crossings(common.SweepParams.of(SPEC).open(), [2, 4], 2, 3)
    assert {k: str(v) for k, v in cross.items()} == {k: str(b.crossings[k]) for k in (2, 4)}
    lim = ch04_n_limit.run(ch04_n_limit.Params.of(SPEC, paper_t_starts={2: 8}, own_t_starts=True, n_values=(1, 2, 3),
                                                   fig8_n=2, fig8_t_stride=3, image_samples=2, compute=True))
    assert ("paper t_start", 2) in lim.limits
    assert lim.result.image(DropBlocks(8, 3, 2)).shape == (2, 32, 32, 3)
    rel = ch05_relaxation.run(ch05_relaxation.Params.of(SPEC, paper_t_starts={2: 9}, own_t_starts=False, n=2,
                                                         relax=(0, 2), fig8_n=2, fig8_t_stride=3, image_samples=2,
                                                         compute=True))
    assert set(rel.result.table.r) == {0, 2}
    # the relax grid (0, 2) holds no r of the paper's windows: only the smallest-r detail is read
    assert [f.claim for f in rel.findings] == ["relax-smallest", "relax-smallest"]


def test_skip_vs_blocks_readings_are_paired_differences(store):
    r = ch02_skip_vs_deconv.run(ch02_skip_vs_deconv.Params.of(SPEC, n=2, t_stride=2, image_t_starts=(8,), image_samples=2,
                                                           late=5, early=7, compute=True))
    d = r.readings["skips-cost-psnr"]
    sk, bl = r.skips.table, r.blocks.table
    direct = (sk[sk.t_start <= 5].groupby("sample").psnr.mean() - bl[bl.t_start <= 5].groupby("sample").psnr.mean()).mean()
    assert d.value == pytest.approx(direct) and d.lo <= d.value <= d.hi
    assert {f.claim for f in r.findings} == {"skips-cost-psnr", "blocks-redundant-late", "early-blocks-change",
                                             "early-skips-change"}
    early = next(s for s in r.sensitivities if s.claim == "early-skips-change")
    assert early.parameter == "early" and len(early.verdicts) == len(early.values)


def test_shortcut_from_a_schedule_file(store, tmp_path):
    f = tmp_path / "short.yaml"
    f.write_text("name: short\ninterventions:\n  - {kind: drop_blocks, t_start: 8, n: 2, nb: 4}\n  - {kind: early_stop, t: 3}\n")
    r = ch06_shortcut.run(ch06_shortcut.Params.of(SPEC, schedule=str(f), adapt=False, timing_samples=2, timing_repeats=1,
                                               compute=True))
    assert list(r.parts) == ["shortcut", "Unet interventions only", "early stop only"]
    assert r.costs.loc["early stop only", "Unet calls"] == 8  # t = 10..3
    assert r.ssim["shortcut"].lo <= r.ssim["shortcut"].value <= r.ssim["shortcut"].hi
    assert np.isfinite(r.timings.seconds).all()
    again = ch06_shortcut.run(ch06_shortcut.Params.of(SPEC, schedule=str(f), adapt=False, timing_samples=2, timing_repeats=1))
    assert again.timings.equals(r.timings)  # timings come from the store as measured


# -- the registry and the parameters -------------------------------------------------------------


def test_the_chapters_are_the_book_in_order():
    from unetdyn.paper.book import NOTEBOOKS
    from unetdyn.paths import NOTEBOOKS_DIR

    assert list(chapters.CHAPTERS) == list(NOTEBOOKS) == sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb"))
    for name, mod in chapters.CHAPTERS.items():  # each module is named as its notebook
        assert mod.__name__.rsplit(".", 1)[1] == f"ch{name}"


def test_each_notebooks_parameters_cell_is_its_dataclass():
    """The cell papermill overrides is written from the chapter's Params: one declaration of each parameter."""
    import json

    from unetdyn.paper.book import notebook_parameters
    from unetdyn.paths import NOTEBOOKS_DIR

    for name in chapters.CHAPTERS:
        path = NOTEBOOKS_DIR / f"{name}.ipynb"
        cell = next(c for c in json.loads(path.read_text())["cells"] if "parameters" in c["metadata"].get("tags", []))
        assert "".join(cell["source"]) == chapters.parameters_cell(name), f"{name}: run book_params.write_parameter_cells()"
        # and the values the cell declares build the defaults back
        assert chapters.params(name, notebook_parameters(path)) == chapters.module_of(name).Params()


def test_params_reads_the_notebooks_values_and_nothing_else():
    p = chapters.params("03_nb_sweep", {"nbs": [2, 8], "n_samples": 4, "plt": object(), "r": None}, compute=True)
    assert p == ch03_nb_sweep.Params(nbs=(2, 8), n_samples=4, compute=True)
    assert p.spec == SweepSpec(n_samples=4) and p.runtime["batch_size"] == 16
    with pytest.raises(KeyError, match="no chapter '10_more'"):
        chapters.params("10_more", {})
    with pytest.raises(TypeError, match="not a chapter's parameters"):
        chapters.run(SPEC)


# -- the chapters that read benchmark records, on tiny stores --------------------------------------


def _record(store, name: str, model: str, params: dict, rec: dict) -> None:
    from unetdyn.paper.alternatives import benchmark_key

    Cache(store).put_record(benchmark_key(name, model, params), rec, {"what": f"benchmark {name}"})


def test_other_unets_reads_each_architectures_record(tmp_path):
    from unetdyn.paper.chapters import ch09_other_unets as ch09

    shortcut = {"full_flops_per_sample": 2e12, "unet_calls": 83, "truncated_calls": 20, "decode_flops_per_sample": 5e11,
                "saving": 0.25}
    _record(tmp_path, "other_unets", "sd15", {"schedule": "paper-shortcut"},
            {"decoder_blocks": 12, "per_nb": [{"nb": 3, "saved": 0.1}, {"nb": 6, "saved": 0.2}], "shortcut": shortcut,
             "rows_per_call": 2, "what": "SD 1.5"})
    r = ch09.run(ch09.Params(archs=("sd15", "glide"), cache_dir=str(tmp_path)))
    assert r.per_nb.to_dict("records") == [{"arch": "sd15", "nb": 3, "share": 0.25, "saved": 0.1},
                                           {"arch": "sd15", "nb": 6, "share": 0.5, "saved": 0.2}]
    row = r.shortcut.iloc[0]
    assert row["TFLOP per sample (full)"] == 2.0 and row["VAE decode share"] == 0.25 and row["paper-shortcut saves"] == 0.25
    assert len(r.missing) == 1 and r.missing[0].startswith("glide: the other_unets benchmark") and "run `python" in r.missing[0]


def test_alternatives_without_a_classifier_is_the_same_comparison_without_its_columns(monkeypatch, unet, tmp_path,
                                                                                      one_thread):
    from unetdyn.paper import fair, plots
    from unetdyn.paper.alternatives import methods
    from unetdyn.paper.cache import model_id
    from unetdyn.paper.chapters import ch07_alternatives as ch07

    ms = methods(fewer=(), dual=(), cache=(), truncate=(10,))  # the shortcut needs 100 steps
    prompts = ["circle", "star"]
    monkeypatch.setattr(ch07, "load_unet", lambda model, weights: unet)
    monkeypatch.setattr(ch07, "methods", lambda: ms)
    monkeypatch.setattr(ch07, "default_samples", lambda unet, model, n: (prompts[:n], list(range(n))))
    p = ch07.Params(model="tiny", samples=2, chunk=2, timing_samples=2, repeats=1, batch_size=4, cache_dir=str(tmp_path))
    with pytest.raises(CacheMiss, match="fair benchmark .* is not in .* run `python benchmarks/fair_comparison.py "
                                        "--model tiny --timing-only --timing-samples 2 --repeats 1 --batch-size 4`"):
        ch07.run(p)
    secs = [[1.0, 1.0]] * len(ms)
    secs[[m.name for m in ms].index("paper shortcut")] = [0.8, 0.7]
    _record(tmp_path, "fair", model_id(unet), {"timing_samples": 2, "repeats": 1, "batch_size": 4},
            {"meta": {"threads": 1}, "methods": [m.name for m in ms], "seconds": secs})
    with pytest.raises(CacheMiss, match="fair_comparison.py --model tiny --samples 2 --chunk 2"):
        ch07.run(p)
    fair.outcomes(unet, ms, prompts, list(range(2)), Cache(tmp_path), None, chunk=2, batch_size=4, progress=False)
    r = ch07.run(p)
    assert not r.fair.classified and r.fair.samples == 2 and list(r.table.method) == [m.name for m in ms]
    assert "agreement" not in r.table and r.table.set_index("method").loc["full", "ssim"] == 1.0
    assert set(r.equal_cost["speedup"].quality) == {"ssim"} and "faithfulness" in r.verdict
    speed, ssim = r.findings  # no GLIDE record in this store: the timing and the shortcut's SSIM
    assert speed.claim == "speedup" and "range over rounds 20.0% to 30.0%" in speed.ours
    assert ssim.claim == "shortcut-ssim" and "(2;" in ssim.setting
    assert "class agreement" not in plots.methods_table(r).to_html()
    assert plots.equal_cost(r).axes[0].get_ylabel() == "SSIM to the full output"


def test_beyond_searches_then_reads_back(monkeypatch, unet, tmp_path, one_thread):
    from unetdyn.paper.chapters import ch08_beyond as ch08

    def fake_search_sweep(model, weights, per_class, steps, guidance, *, compute, cache_dir, **_):
        prompts, seeds = default_samples(unet, "builtin", 5 * per_class)
        return Sweep(unet, prompts[::2], [1000 + s for s in seeds[::2]], SweepSpec(steps=steps).config,
                     Cache(tmp_path, read_only=not compute), 16, False)

    def fake_open(spec, *, compute=True, cache_dir=None, **_):
        prompts, seeds = default_samples(unet, "builtin", spec.n_samples)
        return Sweep(unet, prompts, seeds, spec.config, Cache(tmp_path, read_only=not compute), 16, False)

    def no_architecture(name):
        raise ImportError(name)

    monkeypatch.setattr(ch08, "open_search_sweep", fake_search_sweep)
    monkeypatch.setattr(common, "open_sweep", fake_open)
    monkeypatch.setattr(ch08, "load_architecture", no_architecture)
    p = ch08.Params.of(SPEC, budget="ssim>=0.5", other_budgets=(), per_class=1, window=5, references=(),
                       deepcache=None, timing_samples=2, timing_repeats=1, image_samples=2, cache_dir=str(tmp_path))
    r = ch08.run(chapters.params("08_beyond", vars(p), compute=True))
    again = ch08.run(p)  # read-only: the search replays from the store, and nothing is sampled
    assert again.search.best.schedule == r.search.best.schedule and again.result.table.equals(r.result.table)
    assert list(r.parts) == ["found"] and r.costs.loc["found", "FLOP speed-up"] >= 1
    assert r.search.best.value >= 0.5  # the budget holds on the search samples
    assert set(r.ssim["found"]) == {"all held-out samples", "held-out classes", "5th percentile"}
    assert r.alternatives is None and r.architectures.empty
    assert [f.claim for f in r.findings][:3] == ["search-goals"] * 3


# -- chapter 10: the claims on every member ---------------------------------------------------------


def test_across_reads_the_members_verdicts():
    from unetdyn.paper.chapters.ch10_is_it_the_model import across

    assert across({"a": "holds", "b": "holds"}) == "holds on every member"
    assert across({"a": "differs", "b": "differs"}) == "differs on every member"
    # a member not read yet: the agreement of those read is not "every member"
    assert across({"a": "holds", "b": "holds", "c": "not run"}) == "holds so far"
    assert across({"a": "differs", "b": "differs", "c": "not run"}) == "differs so far"
    assert across({"a": "differs", "b": "not run"}) == "one member read so far"  # nothing across members yet
    assert across({"a": "holds", "b": "differs", "c": "imprecise"}) == "depends on the member"
    assert across({"a": "holds", "b": "differs", "c": "not run"}) == "depends on the member"
    assert across({"a": "holds", "b": "imprecise"}) == "imprecise"
    assert across({"a": "holds", "b": "imprecise", "c": "not run"}) == "imprecise so far"  # c may yet differ
    assert across({"a": "imprecise", "b": "imprecise", "c": "not run"}) == "imprecise so far"
    assert across({"a": "-", "b": "not run"}) == "not run"
    assert across({"a": "holds", "b": "holds", "c": "-"}) == "holds so far"  # c gave no verdict: not every member read
    assert across({"a": "holds"}) == "holds on every member"  # a family of one is read whole


def test_the_across_text_names_the_members_a_partly_read_claim_rests_on():
    from unetdyn.paper.chapters import ch10_is_it_the_model as ch10
    from unetdyn.paper.claims import CLAIMS

    both, one = list(CLAIMS)[:2]
    verdicts = pd.DataFrame({"a": ["holds", "holds"], "b": ["holds", "not run"]}, index=pd.Index([both, one], name="claim"))
    verdicts["across"] = [ch10.across(row) for row in verdicts.to_dict("records")]
    members = {m: ch10.MemberResult(m, findings=(object(),)) for m in ("a", "b")}
    text = ch10.Members(members, verdicts, pd.DataFrame(), pd.DataFrame()).text()
    assert "1 of the 2 claims are so far read on fewer" in text
    assert "**No claim depends on the member so far**: of the 1 claim read on two or more members" in text
    assert list(verdicts.across) == ["holds on every member", "one member read so far"]
    assert f"**one member read so far** (1): on a only: {CLAIMS[one].short}." in text
    assert f"**holds on every member** (1): {CLAIMS[both].short}." in text  # read on both: unmarked
    # claims read on different sets of members: one nested item per set, the fully read one first
    verdicts = pd.DataFrame({"a": ["holds", "holds", "holds", "holds"], "b": ["holds", "holds", "holds", "not run"],
                             "c": ["not run", "holds", "not run", "holds"], "d": ["not run", "holds", "holds", "not run"]},
                            index=pd.Index(list(CLAIMS)[:4], name="claim"))
    verdicts["across"] = [ch10.across(row) for row in verdicts.to_dict("records")]
    members = {m: ch10.MemberResult(m, findings=(object(),)) for m in ("a", "b", "c", "d")}
    text = ch10.Members(members, verdicts, pd.DataFrame(), pd.DataFrame()).text()
    first, second, third, fourth = (CLAIMS[c].short for c in verdicts.index)
    assert f"- **holds on every member** (1): {second}." in text
    assert f"- **holds so far** (3):\n  - on a, b, d only: {third}.\n  - on a, b only: {first}.\n  - on a, c only: {fourth}." in text


def test_a_claim_that_depends_on_the_member_names_what_sets_the_members_apart():
    from unetdyn.paper.chapters import ch10_is_it_the_model as ch10
    from unetdyn.paper.claims import CLAIMS

    by_seed, by_width, mixed = list(CLAIMS)[:3]
    models = ("a", "a2", "b", "c")
    verdicts = pd.DataFrame({"a": ["holds", "holds", "holds"], "a2": ["differs", "holds", "differs"],
                             "b": ["holds", "differs", "holds"], "c": ["holds", "holds", "differs"]},
                            index=pd.Index([by_seed, by_width, mixed], name="claim"))
    verdicts["across"] = [ch10.across(row) for row in verdicts.to_dict("records")]
    cards = pd.DataFrame({"width": [16, 16, 8, 16], "image size": 32, "training steps": [10_000, 10_000, 10_000, 12_000],
                          "seed": [0, 1, 0, 0], "data seed": [0, 1, 0, 0]}, index=pd.Index(models, name="model"))
    members = {m: ch10.MemberResult(m, findings=(object(),)) for m in models}
    text = ch10.Members(members, verdicts, pd.DataFrame(), cards).text()
    assert (f"{CLAIMS[by_seed].short} (holds on a, b, c; differs on a2: only their seeds set the two groups apart"
            in text)
    assert f"{CLAIMS[by_width].short} (holds on a, a2, c; differs on b: they differ in width)" in text
    assert "**3 of the 3 claims read on two or more members depend on the member**" in text
    assert f"{CLAIMS[mixed].short} (holds on a, b; differs on a2, c: no one setting" in text
    # without cards (a member not carded yet) nothing is said of what sets them apart
    bare = ch10.Members(members, verdicts, pd.DataFrame(), pd.DataFrame()).text()
    assert f"{CLAIMS[by_width].short} (holds on a, a2, c; differs on b)" in bare


def test_usage_reads_changes_below_its_floor_as_the_floor():
    floor = ch03_nb_sweep.USAGE_FLOOR
    u = ch03_nb_sweep.Usage((1, 2), (2, 1), np.array([[0.0, floor / 10], [floor * 3, 0.5]]), np.full((2, 2), 0.5), 4)
    assert u.floored().tolist() == [[floor, floor], [floor * 3, 0.5]]
    assert u.change[0, 0] == 0.0  # the map itself keeps what was measured
    assert "(on the first 4 samples" in u.text() and "the bottom 2, by 0.0% to 50.0% (most at t = 1)" in u.text()


def test_the_usage_text_compares_each_members_maps_with_the_first(one_thread):
    from unetdyn.paper.chapters import ch10_is_it_the_model as ch10

    rng = np.random.default_rng(0)
    change, share = 10 ** rng.uniform(-4, 0, (16, 5)), rng.uniform(0.2, 0.8, (16, 5))
    maps = {"a": ch03_nb_sweep.Usage(tuple(range(1, 17)), (9, 7, 5, 3, 1), change, share, 20),
            "b": ch03_nb_sweep.Usage(tuple(range(1, 17)), (9, 7, 5, 3, 1), change * 2, share + 0.1, 20),
            "c": ch03_nb_sweep.Usage(tuple(range(1, 17)), (9, 5, 1), change[:, ::2], share[:, ::2], 20),
            "d": None,
            "e": ch03_nb_sweep.Usage(tuple(range(1, 17)), (10, 8, 6, 4, 2), change, share, 20)}  # other steps, same shape
    members = {m: ch10.MemberResult(m, findings=(), usage=u) for m, u in maps.items()}
    text = ch10.Members(members, pd.DataFrame(), pd.DataFrame(), pd.DataFrame()).usage_text()
    assert text.startswith("Each member's maps against a's")
    assert "b: r = 1.000; shares 0.100 apart on average, at most 0.10" in text  # twice the effect: the same pattern
    assert "c: read on other blocks or steps, not compared" in text and "d:" not in text
    assert "e: read on other blocks or steps, not compared" in text
    alone = {"a": members["a"], "d": members["d"]}
    assert ch10.Members(alone, pd.DataFrame(), pd.DataFrame(), pd.DataFrame()).usage_text() == ""


def test_a_members_parameters_are_its_grid_over_the_defaults():
    from unetdyn.paper.chapters.ch10_is_it_the_model import GRIDS, member_params

    p = member_params("04_n_limit", "builtin:seed1", GRIDS, compute=True)
    assert p == ch04_n_limit.Params(model="builtin:seed1", n_values=(1, 3, 5, 7, 9, 12, 15), fig8_t_stride=10, compute=True)
    with pytest.raises(ValueError, match=r"grids.04_n_limit.n_values: parameter n_values of 04_n_limit entry 0 \(0\)"):
        member_params("04_n_limit", "builtin", {"04_n_limit": {"n_values": [0, 3]}})


def test_is_it_the_model_on_two_tiny_members(monkeypatch, tmp_path, one_thread):
    from unetdyn.paper.chapters import ch10_is_it_the_model as ch10

    from .conftest import random_unet

    unets = {"builtin": random_unet(seed=0), "builtin:other": random_unet(seed=1)}

    def fake_open(spec, *, compute=True, cache_dir=None, batch_size=16, **_):
        unet = unets[spec.model]
        prompts, seeds = default_samples(unet, "builtin", spec.n_samples)
        return Sweep(unet, prompts, seeds, spec.config, Cache(tmp_path, read_only=not compute), batch_size, False)

    monkeypatch.setattr(common, "open_sweep", fake_open)
    monkeypatch.setattr(ch10, "family_members", lambda: [])
    short = tmp_path / "short.yaml"
    short.write_text("name: short\ninterventions:\n  - {kind: drop_blocks, t_start: 8, n: 2, nb: 4}\n  - {kind: early_stop, t: 3}\n")
    tiny = {"n_samples": 4, "steps": 10}
    grids = {"01_phases": {**tiny, "t_stride": 3, "n_values": [2], "t_stride_fig18": 5, "eq4_variance": False,
                           "image_samples": 1, "image_t_starts": [8]},
             "02_skip_vs_deconv": {**tiny, "n": 2, "t_stride": 3, "image_samples": 1, "image_t_starts": [8], "late": 5,
                                   "early": 7},
             "03_nb_sweep": {**tiny, "n": 2, "nbs": [2, 8], "t_stride": 3, "image_samples": 1, "image_t_starts": [7],
                             "usage_samples": 2, "usage_stride": 5},
             "04_n_limit": {**tiny, "paper_t_starts": {2: 8}, "own_t_starts": False, "n_values": [1, 2], "image_samples": 1},
             "05_relaxation": {**tiny, "paper_t_starts": {2: 8}, "own_t_starts": False, "n": 2, "relax": [0, 2],
                               "image_samples": 1},
             "06_shortcut": {**tiny, "schedule": str(short), "adapt": False, "timed": False}}
    p = ch10.Params(members=("builtin", "builtin:other"), grids=grids, progress=False, cache_dir=str(tmp_path))
    first = ch10.run(p)  # read-only on an empty store: every chapter of every member is reported missing
    assert first.verdicts.empty and all(len(r.missing) == 6 for r in first.members.values())
    assert "- **builtin**: 01_phases, 02_skip_vs_deconv, 03_nb_sweep, 04_n_limit, 05_relaxation, 06_shortcut (and " \
           "chapter 3's maps)" in first.missing_text()
    assert all(res.usage is None for res in first.members.values())
    # the block-usage maps alone (cheap) are shown before the rest of chapter 3 is in the store
    ch03_nb_sweep.usage(ch10.member_params("03_nb_sweep", "builtin", grids, compute=True, progress=False,
                                           cache_dir=str(tmp_path)))
    maps = ch10.run(p)
    assert maps.members["builtin"].usage is not None and maps.members["builtin:other"].usage is None
    assert "03_nb_sweep" in maps.members["builtin"].missing
    assert "chapter 3's maps" not in maps.missing_text().split("builtin:other")[0]  # builtin's maps are read
    r = ch10.run(replace(p, compute=True))
    assert list(r.verdicts.columns) == ["builtin", "builtin:other", "across", "read on"]
    assert set(r.verdicts.across) <= set(ch10.ACROSS)
    for cid, row in r.verdicts.iterrows():  # the across reading is the rule applied to the row
        assert row.across == ch10.across({m: row[m] for m in ("builtin", "builtin:other")}), cid
    assert all(r.members[m].usage.change.shape == (16, 2) for m in r.members)  # 16 bottom-nb rows, t = 10 and 5
    assert all(r.members[m].usage.share.shape == (16, 2) for m in r.members)  # 16 decoders' input shares
    again = ch10.run(p)  # and read back from the store, unchanged
    assert again.verdicts.equals(r.verdicts) and not any(res.missing for res in again.members.values())
