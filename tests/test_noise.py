"""The schedule matches GLIDE's measured facts, and a jump equals respacing over the kept steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetdyn.noise import Diffusion, ModelOutput, NoiseSchedule, Rule, cosine_alphas_cumprod, space_timesteps


def test_respacing_100_keeps_glides_training_steps():
    kept = space_timesteps(1000, 100)
    assert kept[:7] == [0, 10, 20, 30, 40, 50, 61]
    assert kept[-2:] == [989, 999]
    strides = np.diff(kept)
    assert set(strides) == {10, 11}
    assert len(kept) == 100 and kept == sorted(set(kept))


@pytest.mark.parametrize(
    "index,train_step,abar",
    [(0, 0, 0.99996), (17, 172, 0.92267), (50, 505, 0.4845), (98, 989, 2.4e-4), (99, 999, 2.4e-9)],
)
def test_abar_at_respaced_indices_matches_glide_facts(index, train_step, abar):
    ns = NoiseSchedule(100)
    t = index + 1  # paper numbering
    assert ns.timestep(t) == train_step
    assert ns.abar[t] == pytest.approx(abar, rel=2e-2)


def test_cosine_schedule_caps_beta_only_at_the_last_step():
    a = cosine_alphas_cumprod()
    betas = 1 - a / np.concatenate([[1.0], a[:-1]])
    assert betas[-1] == pytest.approx(0.999)
    assert (betas[:-1] < 0.999).all()


def _glide_respaced(alphas_cumprod: np.ndarray, kept: list[int]) -> dict[str, np.ndarray]:
    """Reference: GLIDE's respaced diffusion tables, indexed by respaced index i (written from the formulas)."""
    ac = alphas_cumprod[kept]
    prev = np.concatenate([[1.0], ac[:-1]])
    betas = 1 - ac / prev
    post_var = betas * (1 - prev) / (1 - ac)
    return {
        "ac": ac,
        "betas": betas,
        "coef1": betas * np.sqrt(prev) / (1 - ac),
        "coef2": (1 - prev) * np.sqrt(1 - betas) / (1 - ac),
        "log_post": np.log(np.concatenate([[post_var[1]], post_var[1:]])),
    }


def _reference_step(tables, i, x, eps, v, noise):
    x0 = np.clip(np.sqrt(1 / tables["ac"][i]) * x - np.sqrt(1 / tables["ac"][i] - 1) * eps, -1, 1)
    mean = tables["coef1"][i] * x0 + tables["coef2"][i] * x
    frac = (v + 1) / 2
    log_var = frac * np.log(tables["betas"][i]) + (1 - frac) * tables["log_post"][i]
    return mean + (i != 0) * np.exp(0.5 * log_var) * noise


@pytest.mark.parametrize("t", [100, 64, 18, 2, 1])
def test_plain_step_equals_glides_p_sample(t):
    ns = NoiseSchedule(100)
    tables = _glide_respaced(ns.alphas_cumprod, ns.kept)
    g = torch.Generator().manual_seed(t)
    x, eps, noise = (torch.randn(1, 3, 4, 4, generator=g) for _ in range(3))
    v = torch.rand(1, 3, 4, 4, generator=g) * 2 - 1
    c = ns.coefficients([t], [t - 1], dtype=torch.float64)
    ours = ns.ancestral(c, x.double(), ns.predict_x0(c, x.double(), eps.double()), v.double(), noise.double())
    ref = _reference_step(tables, t - 1, x.double().numpy(), eps.double().numpy(), v.double().numpy(), noise.double().numpy())
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("t,n", [(60, 5), (30, 7), (18, 18), (100, 3)])
def test_jump_equals_glides_sampler_over_the_kept_steps(t, n):
    """A jump t -> t-n is GLIDE's respaced sampler over the steps that remain (paper Eq. 4)."""
    ns = NoiseSchedule(100)
    kept = [k for idx, k in enumerate(ns.kept, start=1) if not (t - n < idx < t)]
    tables = _glide_respaced(ns.alphas_cumprod, kept)
    i = kept.index(ns.timestep(t))  # respaced index of step t in the thinned schedule
    g = torch.Generator().manual_seed(n)
    x, eps, noise = (torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64) for _ in range(3))
    v = torch.rand(2, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    c = ns.coefficients([t, t], [t - n, t - n], dtype=torch.float64)
    ours = ns.ancestral(c, x, ns.predict_x0(c, x, eps), v, noise)
    ref = _reference_step(tables, i, x.numpy(), eps.numpy(), v.numpy(), noise.numpy())
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-10, atol=1e-12)


def test_final_step_adds_no_noise_and_returns_the_mean():
    ns = NoiseSchedule(100)
    c = ns.coefficients([5], [0], dtype=torch.float64)
    x = torch.randn(1, 3, 2, 2, dtype=torch.float64)
    eps = torch.randn_like(x)
    x0 = ns.predict_x0(c, x, eps)
    out = ns.ancestral(c, x, x0, torch.zeros_like(x), torch.randn_like(x) * 100)
    torch.testing.assert_close(out, x0)  # abar_0 = 1: the posterior mean is x0 itself
    assert torch.equal(ns.ddim(c, x, x0, torch.randn_like(x)), ns.ddim(c, x, x0, torch.zeros_like(x)))


def test_ddim_with_eta_zero_is_deterministic_and_matches_its_formula():
    ns = NoiseSchedule(100)
    c = ns.coefficients([50], [45], dtype=torch.float64)
    x = torch.randn(1, 3, 2, 2, dtype=torch.float64)
    x0 = ns.predict_x0(c, x, torch.randn_like(x))
    out = ns.ddim(c, x, x0, torch.randn_like(x), eta=0.0)
    at, as_ = ns.abar[50], ns.abar[45]
    eps = (x / np.sqrt(at) - x0) / np.sqrt(1 / at - 1)
    torch.testing.assert_close(out, np.sqrt(as_) * x0 + np.sqrt(1 - as_) * eps)



def test_step_reads_the_prediction_and_applies_the_rule():
    """``step`` is the x0 estimate (from eps, or from v) followed by the ancestral or the DDIM update,
    per row: here a plain step and a jump of five in one batch."""
    ns, g = NoiseSchedule(100), torch.Generator().manual_seed(0)
    c = ns.coefficients([60, 60], [59, 55])
    x, pred, var, noise = (torch.randn(2, 3, 4, 4, generator=g) for _ in range(4))
    x0 = ns.predict_x0(c, x, pred)
    assert all(map(torch.equal, ns.step(c, x, ModelOutput(pred, var), noise), (x0, ns.ancestral(c, x, x0, var, noise))))
    ddim = ns.step(c, x, ModelOutput(pred), noise, Rule("eps", "ddim", eta=0.5))
    assert torch.equal(ddim[1], ns.ddim(c, x, x0, noise, eta=0.5))
    vs = NoiseSchedule(100, Diffusion(variance="fixed_small", clip_x0=False))
    x0_v = vs.predict_x0(c, x, vs.eps_from_v(c, x, pred), clip=False)
    assert torch.equal(vs.step(c, x, ModelOutput(pred), noise, Rule("v"))[0], x0_v)
    with pytest.raises(ValueError, match="method='euler' is not one of ancestral, ddim"):
        Rule(method="euler")

@pytest.mark.parametrize("bad", [0, 1001])
def test_bad_step_counts_are_named(bad):
    with pytest.raises(ValueError, match=f"steps={bad} is out of range 1..1000"):
        space_timesteps(1000, bad)


def test_coefficients_reject_backward_jumps():
    with pytest.raises(ValueError, match="0 <= s <= variance_s < t"):
        NoiseSchedule(10).coefficients([3], [3])


def test_a_jump_with_one_step_variance_keeps_the_jump_mean_and_the_one_step_noise():
    ns = NoiseSchedule(100)
    jump, one = ns.coefficients([60], [55]), ns.coefficients([60], [59])
    literal = ns.coefficients([60], [55], variance_s=[59])
    for name in ("mean_coef_x0", "mean_coef_xt", "sqrt_abar_s", "abar_s"):
        assert torch.equal(getattr(literal, name), getattr(jump, name)), name
    for name in ("log_beta", "log_beta_tilde"):
        assert torch.equal(getattr(literal, name), getattr(one, name)), name
    assert float(literal.log_beta) < float(jump.log_beta)  # one step adds less noise than a stride of five


# steps glide-text2im's space_timesteps keeps where they differ from round(k * stride), read
# off its code (accumulated float stride): K -> {index: kept training step}
GLIDE_KEPT = {21: {10: 499}, 23: {11: 499}, 27: {13: 499}, 47: {23: 499}, 91: {25: 277, 35: 389, 55: 611, 75: 833}}


def test_respacing_accumulates_the_stride_as_glide_does():
    from unetdyn.noise import space_timesteps

    for K, kept in GLIDE_KEPT.items():
        ours = space_timesteps(1000, K)
        multiplied = [round(k * 999 / (K - 1)) for k in range(K)]
        assert {i: ours[i] for i in kept} == kept, K
        assert [i for i in range(K) if ours[i] != multiplied[i]] == sorted(kept), K  # elsewhere the two agree
    for K in (1, 2, 50, 100, 1000):
        kept = space_timesteps(1000, K)
        assert kept[0] == 0 and len(set(kept)) == K and (K == 1 or kept[-1] == 999)


def test_respacing_matches_glide_text2im_where_installed():
    respace = pytest.importorskip("glide_text2im.respace", reason="glide-text2im is not installed")
    from unetdyn.noise import space_timesteps

    for K in range(1, 1001):
        assert sorted(respace.space_timesteps(1000, [K])) == space_timesteps(1000, K), K
