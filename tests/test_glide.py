"""The GLIDE backend against glide-text2im's own ``Text2ImUNet.forward`` (random weights, CPU).

Skipped where glide-text2im is not installed. The model (385M parameters) is built once per
module; its zero-initialised layers are re-randomised so that outputs are not trivially zero.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("glide_text2im")

from unetdyn.backends.glide import GlideUnet  # noqa: E402
from unetdyn.unet import Surgery, Unet, forward, zero_output  # noqa: E402

PROMPTS = ["a corgi wearing a red hat", None]


@pytest.fixture(scope="module")
def glide() -> GlideUnet:
    g = GlideUnet.from_random(seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        for m in g.model.modules():
            if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d)) and not m.weight.any():
                m.reset_parameters()  # GLIDE's zero_module layers: else every output is 0
    return g


@pytest.fixture(scope="module")
def inputs(glide: GlideUnet):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, *glide.image_shape, generator=gen)
    t = torch.tensor([999, 505])
    tokens, mask = glide.tokenize(PROMPTS)
    with torch.no_grad():
        cond = glide.condition(PROMPTS)
    return x, t, cond, tokens, mask


def test_protocol_and_shapes(glide: GlideUnet):
    assert isinstance(glide, Unet)
    assert glide.skips_pushed == (1,) * 16 and glide.skips_popped == (1,) * 16
    assert glide.image_shape == (3, 64, 64)
    assert glide.dtype == torch.float32 and glide.device == torch.device("cpu")
    assert [glide.decoder_out_shape(j) for j in (0, 3, 7, 11, 15)] == [
        (768, 8, 8),
        (768, 16, 16),
        (576, 32, 32),
        (384, 64, 64),
        (192, 64, 64),
    ]


def test_full_forward_equals_text2im_forward(glide: GlideUnet, inputs):
    x, t, cond, tokens, mask = inputs
    shapes: dict[int, tuple[int, ...]] = {}
    hooks = [
        b.register_forward_hook(lambda _m, _i, out, j=j: shapes.__setitem__(j, tuple(out.shape[1:])))
        for j, b in enumerate(glide.model.output_blocks)
    ]
    try:
        with torch.no_grad():
            ref = glide.model(x, t, tokens=tokens, mask=mask)
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        res = forward(glide, x, t, cond)
    assert ref.shape == (2, 6, 64, 64) and ref.abs().mean() > 0.01
    assert torch.equal(res.out, ref)
    assert (res.encoder_blocks, res.decoder_blocks, res.middle) == (16, 16, True)
    assert [shapes[j] for j in range(16)] == [glide.decoder_out_shape(j) for j in range(16)]


@pytest.mark.parametrize("nb", [2, 8])
def test_truncated_forward_equals_zeroed_block(glide: GlideUnet, inputs, nb: int):
    x, t, _cond, tokens, mask = inputs  # batch 1 here, to keep the test fast
    with torch.no_grad():
        with zero_output(glide.model.output_blocks[nb - 1]):
            ref = glide.model(x[:1], t[:1], tokens=tokens[:1], mask=mask[:1])
        res = forward(glide, x[:1], t[:1], glide.condition(PROMPTS[:1]), Surgery(drop_blocks=nb))
    assert ref.abs().mean() > 0.01 and torch.equal(res.out, ref)
    assert (res.encoder_blocks, res.decoder_blocks, res.middle) == (16 - nb, 16 - nb, False)


def test_condition_once_per_prompt_and_unconditional(glide: GlideUnet, inputs):
    *_, cond, _tokens, _mask = inputs
    assert cond["xf_proj"].shape == (2, 768) and cond["xf_out"].shape == (2, 512, 128)
    tokens, mask = glide.tokenize([None, ""])
    assert not mask.any() and torch.equal(tokens[0], tokens[1])
    with torch.no_grad():
        uncond = glide.model.get_text_emb(tokens[:1], mask[:1])
        cond3 = glide.condition([None, "a corgi wearing a red hat", None])
    assert torch.equal(cond3["xf_out"][0], uncond["xf_out"][0])
    assert torch.equal(cond3["xf_out"][0], cond3["xf_out"][2])
    assert torch.allclose(cond3["xf_out"][1], cond["xf_out"][0], atol=1e-5)  # batch size differs
    assert not torch.allclose(cond3["xf_out"][0], cond3["xf_out"][1])


def test_bad_prompt_and_fp16_on_cpu(glide: GlideUnet):
    with pytest.raises(TypeError, match="strings or None"):
        glide.tokenize([3])
    with pytest.raises(ValueError, match="CUDA"):
        GlideUnet.build("cpu", use_fp16=True)


def test_checkpoint_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="base.pt"):
        GlideUnet.from_checkpoint(tmp_path / "base.pt")
    import glide_text2im.download as download

    def offline(*_a, **_k):
        raise ConnectionError("no network")

    monkeypatch.setattr(download, "fetch_file_cached", offline)
    with pytest.raises(RuntimeError, match="from_checkpoint"):
        GlideUnet.from_pretrained(cache_dir=str(tmp_path))


def test_from_checkpoint_roundtrip(glide: GlideUnet, tmp_path):
    path = tmp_path / "base.pt"
    torch.save(glide.model.state_dict(), path)
    loaded = GlideUnet.from_checkpoint(path)
    path.unlink()
    ref = glide.model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in loaded.model.state_dict().items())


def test_missing_glide_gives_install_hint(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "glide_text2im.model_creation", None)  # as if not installed
    with pytest.raises(ImportError, match="openai/glide-text2im"):
        GlideUnet.build()


def test_sampler_and_sweep_key_run_on_glide(glide: GlideUnet):
    """Two sampling steps of the real sampler on GLIDE, plain and with the bottom 8 blocks removed."""
    from unetdyn.interventions import DropBlocks, Schedule
    from unetdyn.paper.sweeps import model_id
    from unetdyn.sampler import RunOptions, SamplerConfig, sample

    cfg = SamplerConfig(steps=2)
    res = sample(glide, ["a corgi"], [0], ["full", Schedule((DropBlocks(t_start=2, n=1, nb=8),))],
                 RunOptions(cfg, progress=False))
    assert res.images.shape == (2, 1, 3, 64, 64) and torch.isfinite(res.images).all()
    assert not torch.equal(res.images[0], res.images[1])
    assert res.stats.encoder_blocks == 16 + 16 + 8 + 16  # full: 2 calls; cut: one truncated call, one full
    assert len(model_id(glide)) == 64


def test_alternatives_cost_on_glide(glide: GlideUnet):
    from unetdyn.paper.alternatives import glide_costs, methods

    ms = [m for m in methods() if m.name in ("full", "paper shortcut", "guidance truncated last 10", "ancestral K=50")]
    g = glide_costs(glide, ms, repeats=0, progress=False).set_index("method")
    # the shortcut skips 17 of 100 equal calls and truncates 5 at nb = 6 and 16 at nb = 8, which save 20.7% and 33.5%
    # of a GLIDE call (the README's per-call table): (17 + 5 * 0.207 + 16 * 0.335) / 100 = 0.234
    assert g.loc["paper shortcut", "flop_saving"] == pytest.approx((17 + 5 * 0.207 + 16 * 0.335) / 100, abs=0.001)
    assert g.loc["ancestral K=50", "flop_saving"] == pytest.approx(0.5, abs=0.001)  # the text encoded once either way
    assert 0.04 < g.loc["guidance truncated last 10", "flop_saving"] < 0.05  # 10 of 100 calls at one row of two
    every = g.loc["text encoded every step"]
    assert every.flop_saving == pytest.approx(-0.0295, abs=0.001)  # GLIDE's text transformer: ~3% of a call
