"""The diffusers backend against diffusers itself, on tiny random models built in-process (CPU)."""

from __future__ import annotations

import json

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

from unetdyn.backends import load_unet  # noqa: E402
from unetdyn.backends.diffusers import DiffusersUnet, arch_config, diffusion_from_scheduler  # noqa: E402
from unetdyn.cost import schedule_cost  # noqa: E402
from unetdyn.interventions import DropBlocks, EarlyStop, Schedule  # noqa: E402
from unetdyn.noise import Diffusion, ModelOutput, NoiseSchedule, Rule  # noqa: E402
from unetdyn.sampler import RunOptions, SamplerConfig, sample, trajectory  # noqa: E402
from unetdyn.unet import Surgery, Unet, forward, zero_output  # noqa: E402

PIXEL = dict(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
             down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
             norm_num_groups=4, attention_head_dim=4)
TEXT = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            norm_num_groups=4, attention_head_dim=2, cross_attention_dim=12)
SHORT = Schedule(name="short", interventions=(DropBlocks(4, 2, 2), EarlyStop(2)))  # for K = 6 or more steps
DDPM = {"_class_name": "DDPMScheduler", "beta_schedule": "linear", "variance_type": "fixed_large", "clip_sample": True}


def tiny(kind: str, seed: int = 0, out_channels: int | None = None):
    cfg = dict(PIXEL if kind == "pixel" else TEXT)
    if out_channels:
        cfg["out_channels"] = out_channels
    klass = diffusers.UNet2DModel if kind == "pixel" else diffusers.UNet2DConditionModel
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = klass(**cfg).eval().requires_grad_(False)
        for p in model.parameters():  # diffusers zero-initialises some output convs: make every block matter
            p.add_(0.05 * torch.randn_like(p))
    return model


def wrap(model, scheduler=DDPM) -> DiffusersUnet:
    diffusion, prediction = diffusion_from_scheduler(scheduler)
    return DiffusersUnet(model, diffusion, prediction)


def inputs(unet: DiffusersUnet, b: int = 2):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, *unet.image_shape, generator=g)
    t = torch.tensor([999, 421][:b])
    text = torch.randn(b, 5, 12, generator=g)
    return x, t, text


def reference(model, x, t, text):
    if isinstance(model, diffusers.UNet2DConditionModel):
        return model(x, t, encoder_hidden_states=text).sample
    return model(x, t).sample


@pytest.mark.parametrize("kind", ["pixel", "text"])
def test_full_forward_equals_diffusers_bit_for_bit(kind):
    model = tiny(kind)
    unet = wrap(model)
    assert isinstance(unet, Unet)
    assert len(unet.skips_pushed) == len(unet.skips_popped) == 4  # conv_in, resnet, downsampler, resnet
    x, t, text = inputs(unet)
    cond = {"text": text} if kind == "text" else {}
    with torch.no_grad():
        ours = forward(unet, x, t, cond).out
        theirs = reference(model, x, t, text)
    assert torch.equal(ours, theirs)


def _decoder_module(model, j: int):
    """The module whose output is decoder ``j``'s output (decoders numbered from the bottom)."""
    flat = [(block, k) for block in model.up_blocks for k in range(len(block.resnets))]
    block, k = flat[j]
    if k == len(block.resnets) - 1:
        return block  # the last resnet's output goes through the up-sampler: the block's output
    return block.attentions[k] if getattr(block, "attentions", None) else block.resnets[k]


@pytest.mark.parametrize("kind", ["pixel", "text"])
@pytest.mark.parametrize("nb", [1, 2, 3, 4])
def test_truncated_forward_equals_the_forward_with_that_decoder_zeroed(kind, nb):
    model = tiny(kind)
    unet = wrap(model)
    x, t, text = inputs(unet)
    cond = {"text": text} if kind == "text" else {}
    with torch.no_grad():
        res = forward(unet, x, t, cond, Surgery(drop_blocks=nb))
        with zero_output(_decoder_module(model, nb - 1)):
            theirs = reference(model, x, t, text)
    assert torch.equal(res.out, theirs)
    assert res.decoder_blocks == 4 - nb
    # encoder blocks that only feed removed decoders are not run
    assert res.encoder_blocks == 4 - nb
    assert not torch.equal(res.out, reference(model, x, t, text))


def test_unetdyn_cost_reports_the_shortcut_on_the_architectures(capsys):
    from unetdyn.cli import main

    main(["cost", "--model", "diffusers", "--random-weights", "--arch", "sd15", "--schedule", "paper-shortcut", "--json"])
    sd = json.loads(capsys.readouterr().out)
    assert 0.2 < sd["saving"] < 0.35 and sd["truncated_calls"] == 21
    assert 0 < sd["decode_flops_per_sample"] < 0.05 * sd["full_flops_per_sample"]  # the VAE decode, once per sample
    calls = sd["flops_per_call"]
    assert calls["nb=8,ns=0,rows=2"] < calls["nb=6,ns=0,rows=2"] < calls["nb=0,ns=0,rows=2"]
    unet = load_unet("diffusers", device="meta", random_weights=True, arch="ddpm32")
    ddpm = schedule_cost(unet, "paper-shortcut")
    assert 0.1 < ddpm.saving < 0.4 and ddpm.decode_flops_per_sample == 0
    assert all(k.endswith("rows=1") for k in ddpm.flops_per_call)  # unconditional: no guidance rows


def test_cpu_counts_the_attention_kernel_as_meta_does():
    model = tiny("pixel")
    cpu = wrap(model)
    meta = wrap(tiny("pixel").to("meta"))
    sched = Schedule(interventions=(DropBlocks(60, 10, 2), DropBlocks(30, 5, 4)))
    a, b = schedule_cost(cpu, sched), schedule_cost(meta, sched)
    assert a.saving > 0
    assert a.flops_per_call == b.flops_per_call and a.flops_per_sample == b.flops_per_sample


# -- one sampler step against diffusers' schedulers -----------------------------------------------

PARAMETERIZATIONS = [
    ("epsilon", "fixed_small", 3),
    ("epsilon", "fixed_large", 3),
    ("v_prediction", "fixed_small", 3),
    ("epsilon", "learned_range", 6),
]


@pytest.mark.parametrize("betas", ["linear", "scaled_linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("kind,variance,channels", PARAMETERIZATIONS)
def test_ancestral_step_equals_ddpm_scheduler(kind, variance, channels, betas):
    cfg = {"_class_name": "DDPMScheduler", "beta_schedule": betas, "variance_type": variance, "prediction_type": kind,
           "clip_sample": True, "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02}
    diffusion, prediction = diffusion_from_scheduler(cfg)
    ns = NoiseSchedule(100, diffusion)
    sched = diffusers.DDPMScheduler.from_config(cfg)
    sched.set_timesteps(timesteps=list(reversed(ns.kept)))  # the same respaced steps (GLIDE's rule)
    g = torch.Generator().manual_seed(0)
    for t in (100, 57, 2, 1):
        x = torch.randn(2, 3, 8, 8, generator=g)
        out = torch.randn(2, channels, 8, 8, generator=g)
        theirs = sched.step(out, ns.timestep(t), x, generator=torch.Generator().manual_seed(t)).prev_sample
        noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(t))
        coef = ns.coefficients([t, t], [t - 1, t - 1])
        pred, v = out[:, :3], (out[:, 3:] if prediction == "eps_var" else None)
        _, ours = ns.step(coef, x, ModelOutput(pred, v), noise, Rule(prediction))
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("clip", [True, False])
def test_ddim_step_equals_ddim_scheduler(kind, clip):
    T = 50  # K = T: GLIDE's respacing keeps every step, as DDIM's own spacing does
    cfg = {"_class_name": "DDIMScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
           "prediction_type": kind, "clip_sample": clip, "num_train_timesteps": T, "set_alpha_to_one": True}
    diffusion, prediction = diffusion_from_scheduler(cfg)
    ns = NoiseSchedule(T, diffusion)
    sched = diffusers.DDIMScheduler.from_config(cfg)
    sched.set_timesteps(T)
    g = torch.Generator().manual_seed(0)
    for t in (T, 31, 1):
        x, out = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
        theirs = sched.step(out, ns.timestep(t), x, eta=0.0, use_clipped_model_output=True).prev_sample
        coef = ns.coefficients([t, t], [t - 1, t - 1])
        _, ours = ns.step(coef, x, ModelOutput(out), torch.zeros_like(x), Rule(prediction, "ddim"))
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_scheduler_configs_map_onto_the_training_process():
    d, pred = diffusion_from_scheduler(arch_config("sd15")["scheduler"])
    assert (d.betas, d.beta_start, d.beta_end, d.variance, d.clip_x0, pred) == ("scaled_linear", 0.00085, 0.012, "fixed_small", False, "eps")
    d, pred = diffusion_from_scheduler(arch_config("ddpm32")["scheduler"])
    assert (d.betas, d.variance, d.clip_x0, pred) == ("linear", "fixed_large", True, "eps")
    d, pred = diffusion_from_scheduler({"beta_schedule": "squaredcos_cap_v2", "variance_type": "learned_range"})
    assert (d, pred) == (Diffusion(variance="learned", clip_x0=False), "eps_var")
    for bad, field in [({"beta_schedule": "sigmoid"}, "beta_schedule"), ({"prediction_type": "sample"}, "prediction_type"),
                       ({"variance_type": "learned"}, "variance_type"), ({"thresholding": True}, "thresholding")]:
        with pytest.raises(ValueError, match=field):
            diffusion_from_scheduler(bad)


def test_the_noise_schedules_match_diffusers():
    for name, ours in [("linear", "linear"), ("scaled_linear", "scaled_linear"), ("squaredcos_cap_v2", "cosine")]:
        sched = diffusers.DDPMScheduler(beta_schedule=name, beta_start=0.00085, beta_end=0.012)
        abar = Diffusion(ours, 0.00085, 0.012).alphas_cumprod()
        torch.testing.assert_close(torch.as_tensor(abar, dtype=torch.float32), sched.alphas_cumprod, rtol=1e-5, atol=1e-6)


# -- pipelines on disk ---------------------------------------------------------------------------------


def _tokenizer(folder):
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    folder.mkdir()
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=5), len(vocab)


@pytest.fixture(scope="module")
def pixel_pipeline(tmp_path_factory):
    path = tmp_path_factory.mktemp("ddpm")
    diffusers.DDPMPipeline(unet=tiny("pixel"), scheduler=diffusers.DDPMScheduler(variance_type="fixed_large")).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def text_pipeline(tmp_path_factory):
    path = tmp_path_factory.mktemp("sd")
    tok, n = _tokenizer(path / "vocab")
    text = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=n, hidden_size=12, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=5, bos_token_id=0, eos_token_id=1, pad_token_id=1)).eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vae = diffusers.AutoencoderKL(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                                      up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                                      layers_per_block=1, sample_size=16)
    sched = diffusers.DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, steps_offset=1,
                                    prediction_type="v_prediction")
    diffusers.StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=tiny("text"), scheduler=sched,
                                      safety_checker=None, feature_extractor=None, requires_safety_checker=False).save_pretrained(path)
    return path


def test_a_pixel_pipeline_samples_from_disk(pixel_pipeline):
    unet = load_unet(f"diffusers:{pixel_pipeline}")
    assert (unet.prediction, unet.diffusion.variance, unet.conditional) == ("eps", "fixed_large", False)
    config = SamplerConfig(steps=10)
    res = sample(unet, [None, None], [0, 1], ["full", SHORT], RunOptions(config, progress=False))
    assert res.images.shape == (2, 2, 3, 8, 8) and res.images.abs().max() <= 1
    assert res.stats.unet_calls < 2 * 2 * 10  # unconditional: no guidance doubling, and the shortcut is shorter
    again = load_unet(f"diffusers:{pixel_pipeline}")
    assert again.weights_sha256 == unet.weights_sha256
    assert load_unet(f"diffusers:{pixel_pipeline}", random_weights=True).weights_sha256 != unet.weights_sha256


def test_a_latent_text_pipeline_encodes_once_and_decodes(text_pipeline):
    unet = load_unet(f"diffusers:{text_pipeline}")
    assert (unet.prediction, unet.diffusion.clip_x0, unet.conditional, unet.image_shape) == ("v", False, True, (4, 8, 8))
    calls = []
    handle = unet.text_encoder.register_forward_hook(lambda m, args, kwargs=None: calls.append(len(args[0])))
    try:
        cond = unet.condition(["a cat", "a dog", "a cat", None])
    finally:
        handle.remove()
    assert calls == [3]  # three distinct prompts (None is the empty prompt), one encoder call
    assert torch.equal(cond["text"][0], cond["text"][2])
    base = trajectory(unet, ["a cat", "a dog"], [0, 1], run=RunOptions(SamplerConfig(steps=6), progress=False))
    assert base.xs.shape == (7, 2, 4, 8, 8) and base.x0.shape == (2, 3, 16, 16)  # latents, decoded images
    assert torch.equal(base.x0, unet.decode(base.xs[0]))
    res = sample(unet, ["a cat", "a dog"], [0, 1], ["full", SHORT],
                 RunOptions(SamplerConfig(steps=6), baseline=base, progress=False))
    assert torch.equal(res.images[0], base.x0)
    cost = schedule_cost(unet, "full", SamplerConfig(steps=6), prompt="a cat")
    assert cost.decode_flops_per_sample > 0 and cost.condition_flops_per_sample > 0


def test_errors_name_what_is_wrong(tmp_path, pixel_pipeline):
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        load_unet(f"diffusers:{tmp_path}")
    with pytest.raises(ValueError, match="arch"):
        load_unet("diffusers", random_weights=True)
    with pytest.raises(ValueError, match="not one of"):
        load_unet("diffusers:")
    cfg = dict(PIXEL, num_class_embeds=10)
    with pytest.raises(ValueError, match="num_class_embeds"):
        wrap(diffusers.UNet2DModel(**cfg))
    with pytest.raises(ValueError, match="output channels"):
        wrap(tiny("pixel"), {"variance_type": "learned_range"})


def test_a_chapter_reruns_on_a_pipeline_from_disk(pixel_pipeline, tmp_path):
    """``unetdyn figure 02_skip_vs_deconv -p model diffusers:PATH ...``: the notebook runs end to end."""
    import nbformat

    from unetdyn.paper.book import execute, load_params

    overrides = {"model": f"diffusers:{pixel_pipeline}", "n_samples": 3, "steps": 20, "n": 3, "t_stride": 5,
                 "image_t_starts": [15, 5], "image_samples": 1, "late": 10, "early": 15, "compute": True,
                 "progress": False, "cache_dir": str(tmp_path / "cache")}
    params = load_params(None, ["02_skip_vs_deconv"], overrides)["02_skip_vs_deconv"]
    out = execute("02_skip_vs_deconv", params, out_dir=tmp_path)
    nb = nbformat.read(str(out), as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    shown = "".join(str(v) for o in outputs for v in o.get("data", {}).values())
    assert "image/png" in str([o.get("data", {}).keys() for o in outputs])
    assert any(v in shown for v in ("holds", "differs", "imprecise"))  # the findings table was computed
    assert list((tmp_path / "cache").rglob("*.npz"))  # its results went to the store it was given
