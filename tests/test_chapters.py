"""Each chapter's computation on a tiny random Unet: it computes into the store once, then a
read-only run reads everything back (the book computes nothing), and a miss names what is missing."""

from __future__ import annotations

import numpy as np
import pytest

from unetdyn.interventions import DropBlocks, SkipSteps
from unetdyn.paper import chapters
from unetdyn.paper.cache import Cache, CacheMiss
from unetdyn.paper.sweeps import Sweep, SweepSpec, default_samples

SPEC = SweepSpec(n_samples=4, steps=10)


@pytest.fixture()
def store(monkeypatch, unet, tmp_path, one_thread):
    """Chapters open their sweeps on the tiny Unet, over a store in tmp_path."""

    def fake_open(spec, *, compute=True, device=None, cache_dir=None, batch_size=16, progress=True):
        prompts, seeds = default_samples(unet, "builtin", spec.n_samples)
        return Sweep(unet, prompts, seeds, spec.config, Cache(tmp_path, read_only=not compute), batch_size, False)

    monkeypatch.setattr(chapters, "open_sweep", fake_open)
    return tmp_path


def test_phases_computes_once_then_reads(store):
    kw = dict(n=2, t_stride=2, n_values=(2, 3), t_stride_fig18=3, image_t_starts=(8, 4), image_samples=2)
    r = chapters.phases(SPEC, compute=True, **kw)
    again = chapters.phases(SPEC, compute=False, **kw)
    assert again.fig4.table.equals(r.fig4.table)
    assert r.fig4.image(SkipSteps(t_start=8, n=2)).shape == (2, 32, 32, 3)
    assert set(r.fig18.table.n) == {2, 3}
    assert {f.verdict for f in r.findings} <= {"holds", "differs", "imprecise", "-"}
    assert all(f.ours for f in r.findings)
    assert {s.parameter for s in r.sensitivities} >= {"x0_threshold", "rise_factor", "early", "late"}
    own = {f.claim for f in r.findings if f.own}
    assert {"phase-dip", "psnr-rise", "x0-accurate", "x0-at-25", "early-harms-late-benign"} <= own
    with pytest.raises(CacheMiss, match="not in the result store"):
        chapters.phases(SPEC, compute=False, **{**kw, "n": 3})


def test_block_sweep_and_the_chapters_that_reuse_it(store):
    grid = dict(n=2, nbs=(2, 4, 6, 8), t_stride=3, image_t_starts=(7,), image_samples=2)
    b = chapters.block_sweep(SPEC, compute=True, **grid)
    assert set(b.crossings) == {2, 4, 6, 8}
    # the block-usage map: every bottom nb of the model, every other step from K down
    assert b.usage_nbs == tuple(range(1, 17)) and b.usage_steps[0] == SPEC.steps
    assert b.usage.shape == (16, len(b.usage_steps)) and (b.usage > 0).all()
    assert "the bottom 8, by" in b.usage_text()
    # chapters 4 and 5 ask for the same Fig. 8 sweep by the same spec: read-only works for it
    cross = chapters.fig8_crossings(SPEC, [2, 4], 2, 3, compute=False)
    assert {k: str(v) for k, v in cross.items()} == {k: str(b.crossings[k]) for k in (2, 4)}
    lim = chapters.n_limit(SPEC, paper_t_starts={2: 8}, own_t_starts=True, n_values=(1, 2, 3), fig8_n=2,
                           fig8_t_stride=3, image_samples=2, compute=True)
    assert ("paper t_start", 2) in lim.limits
    assert lim.result.image(DropBlocks(8, 3, 2)).shape == (2, 32, 32, 3)
    rel = chapters.relaxation(SPEC, paper_t_starts={2: 9}, own_t_starts=False, n=2, relax=(0, 2), fig8_n=2,
                              fig8_t_stride=3, image_samples=2, compute=True)
    assert set(rel.result.table.r) == {0, 2}
    # the relax grid (0, 2) holds no r of the paper's windows: only the smallest-r detail is read
    assert [f.claim for f in rel.findings] == ["relax-smallest", "relax-smallest"]


def test_skip_vs_blocks_readings_are_paired_differences(store):
    r = chapters.skip_vs_blocks(SPEC, n=2, t_stride=2, image_t_starts=(8,), image_samples=2, late=5, early=7, compute=True)
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
    r = chapters.shortcut(SPEC, schedule=str(f), adapt=False, timing_samples=2, timing_repeats=1, compute=True)
    assert list(r.parts) == ["shortcut", "Unet interventions only", "early stop only"]
    assert r.costs.loc["early stop only", "Unet calls"] == 8  # t = 10..3
    assert r.ssim["shortcut"].lo <= r.ssim["shortcut"].value <= r.ssim["shortcut"].hi
    assert np.isfinite(r.timings.seconds).all()
    again = chapters.shortcut(SPEC, schedule=str(f), adapt=False, timing_samples=2, timing_repeats=1, compute=False)
    assert again.timings.equals(r.timings)  # timings come from the store as measured
