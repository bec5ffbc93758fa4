"""Training: the hybrid loss, learning, exact resume, export and checksum-verified loading."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from unetdyn.backends.builtin import BuiltinConfig
from unetdyn.backends.builtin_weights import WeightsError, load_builtin
from unetdyn.builtin_model import checkpoint as ck
from unetdyn.builtin_model import train as tr
from unetdyn.builtin_model.checkpoint import export_weights
from unetdyn.builtin_model.config import TrainConfig
from unetdyn.builtin_model.data import make_batch
from unetdyn.builtin_model.objective import DiffusionTables, discretized_gaussian_log_likelihood, hybrid_loss
from unetdyn.builtin_model.train import train

TINY = BuiltinConfig(
    model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_ds=(2,), head_channels=8, norm_groups=4
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Training is timed and compared on one thread (see conftest.one_thread)."""


@pytest.fixture(scope="module")
def tables() -> DiffusionTables:
    return DiffusionTables.cosine()


def _fixed_eval(tables, n=64):
    x0, y = make_batch(999, range(n))
    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, 1000, (n,), generator=g)
    t[:4] = 0  # the decoder term too
    noise = torch.randn(x0.shape, generator=g)
    return x0, y, t, noise, tables.q_sample(x0, t, noise)


# -- the loss ----------------------------------------------------------------------------


def test_tables_are_the_ddpm_posterior_of_the_cosine_schedule(tables):
    """Training reads the sampler's coefficients; checked here against the DDPM formulas."""
    from unetdyn.noise import cosine_alphas_cumprod

    abar = cosine_alphas_cumprod(1000)
    prev = np.concatenate([[1.0], abar[:-1]])
    beta = 1.0 - abar / prev
    post_var = beta * (1.0 - prev) / (1.0 - abar)
    f = lambda a: torch.as_tensor(a, dtype=torch.float64).float()  # noqa: E731
    for ours, formula in [
        (tables.log_beta, np.log(beta)),
        (tables.post_log_var[1:], np.log(post_var[1:])),
        (tables.post_coef_x0, beta * np.sqrt(prev) / (1.0 - abar)),
        (tables.post_coef_xt, (1.0 - prev) * np.sqrt(1.0 - beta) / (1.0 - abar)),
        (tables.sqrt_recip_abar, np.sqrt(1.0 / abar)),
        (tables.sqrt_recipm1_abar, np.sqrt(1.0 / abar - 1.0)),
        (tables.sqrt_abar**2 + tables.sqrt_one_minus_abar**2, np.ones(1000)),
    ]:
        torch.testing.assert_close(ours, f(formula), rtol=1e-5, atol=1e-6)
    assert tables.post_log_var[0] == tables.post_log_var[1]  # log clipped at t=0


def test_loss_vanishes_for_the_true_posterior(tables):
    x0, _, t, noise, x_t = _fixed_eval(tables, 16)
    t = t.clamp(min=1)
    x_t = tables.q_sample(x0, t, noise)
    out = torch.cat([noise, -torch.ones_like(noise)], dim=1)  # true eps, v=-1: log var = log beta~
    terms = hybrid_loss(out, x0, x_t, t, noise, tables)
    assert terms["mse"].abs().max() < 1e-10
    assert terms["vb"].abs().max() < 1e-3  # KL(q || p) = 0 up to float32 rounding


def test_decoder_is_a_distribution_over_8bit_values():
    levels = torch.arange(256, dtype=torch.float64) / 127.5 - 1
    for mean, log_scale in [(0.0, -3.0), (0.9, -2.0), (-0.99, -5.0), (0.3, 0.5)]:
        lp = discretized_gaussian_log_likelihood(
            levels, torch.tensor(mean, dtype=torch.float64), torch.tensor(log_scale, dtype=torch.float64)
        )
        assert abs(lp.exp().sum().item() - 1.0) < 1e-6


def test_vb_trains_only_the_variance(tables):
    x0, _, t, noise, x_t = _fixed_eval(tables, 8)
    out = (0.3 * torch.randn(8, 6, 32, 32, generator=torch.Generator().manual_seed(1))).requires_grad_()
    terms = hybrid_loss(out, x0, x_t, t, noise, tables)
    (g_vb,) = torch.autograd.grad(terms["vb"].sum(), out, retain_graph=True)
    assert g_vb[:, :3].abs().max() == 0 and g_vb[:, 3:].abs().max() > 0  # stop-gradient on the mean
    (g_mse,) = torch.autograd.grad(terms["mse"].sum(), out)
    assert g_mse[:, 3:].abs().max() == 0


def test_lambda_maps_to_unit_weight(tables):
    """lambda = 0.001 with T = 1000 -> loss = mse + vb (improved-diffusion's RESCALED_MSE)."""
    x0, _, t, noise, x_t = _fixed_eval(tables, 8)
    out = 0.1 * torch.randn(8, 6, 32, 32, generator=torch.Generator().manual_seed(2))
    terms = hybrid_loss(out, x0, x_t, t, noise, tables, lambda_vlb=0.001)
    torch.testing.assert_close(terms["loss"], terms["mse"] + terms["vb"])
    terms2 = hybrid_loss(out, x0, x_t, t, noise, tables, lambda_vlb=0.002)
    torch.testing.assert_close(terms2["loss"], terms["mse"] + 2 * terms["vb"])


# -- learning ----------------------------------------------------------------------------


def test_training_reduces_held_out_loss(tmp_path, tables):
    cfg = TrainConfig(model=TINY, batch_size=16, steps=30, ckpt_every=30, lr=3e-3, lr_warmup=1)
    x0, y, t, noise, x_t = _fixed_eval(tables)

    def held_out(net):
        with torch.no_grad():
            terms = hybrid_loss(net(x_t, t, y), x0, x_t, t, noise, tables)
        return terms["mse"].mean().item(), terms["vb"].mean().item()

    mse0, vb0 = held_out(ck.new_state(cfg).model)
    train(cfg, tmp_path, progress=False)
    mse1, vb1 = held_out(ck.restore(cfg, tmp_path).model)
    assert abs(mse0 - 1.0) < 0.05  # zero-initialised head: eps = 0
    assert mse1 < 0.6 * mse0, (mse0, mse1)  # ~0.37 after 30 steps
    assert vb1 < 0.6 * vb0, (vb0, vb1)
    hist = np.loadtxt(tmp_path / "losses.csv", delimiter=",", skiprows=1)
    assert hist.shape == (30, len(ck.HISTORY_COLUMNS))
    assert hist[-5:, 1].mean() < 0.6 * hist[:5, 1].mean()


# -- checkpoints and resume --------------------------------------------------------------

RESUME_CFG = TrainConfig(model=TINY, batch_size=8, steps=6, ckpt_every=3, lr=1e-3, lr_warmup=2, p_uncond=0.5)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    train(RESUME_CFG, out, progress=False)
    return out


def _assert_same_checkpoint(a, b):
    ta, tb = load_file(str(a / ck.CKPT_NAME)), load_file(str(b / ck.CKPT_NAME))
    assert ta.keys() == tb.keys()
    assert any(k.startswith("opt.") for k in ta) and any(k.startswith("ema.") for k in ta)
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


def test_checkpoint_contents(full_run):
    files = {p.name for p in full_run.iterdir()}
    assert {"ckpt.safetensors", "ckpt.json", "losses.csv", "losses.png", "data.png"} <= files
    assert not [f for f in files if ".tmp" in f]
    with safe_open(str(full_run / ck.CKPT_NAME), framework="pt") as f:
        meta = f.metadata()
    assert meta["step"] == "6"
    # the format resume reads: runs written before any change to this code must stay resumable
    assert meta["format"] == "unetdyn-train-checkpoint/1"
    assert set(meta) == {"format", "step", "train_config", "optimizer_param_groups", "optimizer_state_extra",
                         "history_columns", "train_seconds", "rng"}
    assert json.loads(meta["history_columns"]) == ["step", "loss", "mse", "vb", "grad_norm", "lr"]
    assert TrainConfig.from_dict(json.loads(meta["train_config"])) == RESUME_CFG
    assert json.loads((full_run / "ckpt.json").read_text())["step"] == 6


def test_resume_after_stop_is_exact(full_run, tmp_path):
    r = train(RESUME_CFG, tmp_path, progress=False, max_steps=3)
    assert r["step"] == 3
    r = train(RESUME_CFG, tmp_path, progress=False)
    assert r["step"] == 6
    _assert_same_checkpoint(full_run, tmp_path)


def test_resume_after_crash_is_exact(full_run, tmp_path, monkeypatch):
    real_step = tr._train_step

    def crashing(st, tables):
        if st.step == 5:
            raise KeyboardInterrupt
        return real_step(st, tables)

    monkeypatch.setattr(tr, "_train_step", crashing)
    with pytest.raises(KeyboardInterrupt):
        train(RESUME_CFG, tmp_path, progress=False)
    assert ck.load_checkpoint(tmp_path)[1]["step"] == "3"  # at most one interval lost
    monkeypatch.setattr(tr, "_train_step", real_step)
    train(RESUME_CFG, tmp_path, progress=False)
    _assert_same_checkpoint(full_run, tmp_path)


def test_resume_refuses_another_config(full_run, tmp_path):
    import shutil

    shutil.copytree(full_run, tmp_path / "run")
    with pytest.raises(ValueError, match="lr: checkpoint 0.001 vs asked 0.002"):
        train(TrainConfig(**{**RESUME_CFG.__dict__, "lr": 2e-3}), tmp_path / "run", progress=False)
    # more steps is fine: the run goes on
    more = TrainConfig(**{**RESUME_CFG.__dict__, "steps": 7})
    assert train(more, tmp_path / "run", progress=False)["step"] == 7


# -- export and loading ------------------------------------------------------------------


def test_export_and_load_round_trip(full_run, tmp_path):
    ema = {k[4:]: v for k, v in load_file(str(full_run / ck.CKPT_NAME)).items() if k.startswith("ema.")}
    info = export_weights(full_run, tmp_path / "unet.safetensors", dtype="float32")
    assert (tmp_path / "unet.safetensors.sha256").read_text().split() == [info["sha256"], "unet.safetensors"]
    net = load_builtin(tmp_path / "unet.safetensors")
    assert net.config == TINY and not net.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, ema[k]), k
    with safe_open(str(tmp_path / "unet.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["steps"] == "6" and meta["data_seed"] == "0" and float(meta["train_seconds"]) >= 0
    again = export_weights(full_run, tmp_path / "again.safetensors", dtype="float32")
    assert again["sha256"] == info["sha256"]  # same run, same bytes

    half = export_weights(full_run, tmp_path / "half.safetensors")  # float16 by default
    assert half["bytes"] < 0.6 * info["bytes"]
    net16 = load_builtin(tmp_path / "half.safetensors")
    for k, v in net16.state_dict().items():
        assert v.dtype == torch.float32
        torch.testing.assert_close(v, ema[k], rtol=1e-3, atol=1e-4)


def test_corrupt_truncated_or_missing_weights(full_run, tmp_path):
    path = tmp_path / "unet.safetensors"
    info = export_weights(full_run, path)
    data = path.read_bytes()

    path.write_bytes(data[:-7] + bytes([data[-7] ^ 1]) + data[-6:])  # one flipped bit
    with pytest.raises(WeightsError, match="checksum mismatch") as e:
        load_builtin(path)
    assert info["sha256"] in str(e.value) and str(path) in str(e.value) and "export" in str(e.value)

    path.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(WeightsError, match="checksum mismatch"):
        load_builtin(path)

    path.write_bytes(data)
    load_builtin(path)  # intact again
    (tmp_path / "unet.safetensors.sha256").unlink()
    with pytest.raises(WeightsError, match="no checksum file"):
        load_builtin(path)
    with pytest.raises(WeightsError, match="not found"):
        load_builtin(tmp_path / "missing.safetensors")


def test_default_path_points_into_the_repo():
    from unetdyn.paths import BUILTIN_WEIGHTS, REPO_ROOT

    assert BUILTIN_WEIGHTS == REPO_ROOT / "data" / "builtin" / "unet.safetensors"
    assert (REPO_ROOT / "unetdyn" / "builtin_model" / "train.py").exists()


# -- command line ------------------------------------------------------------------------


def test_cli_trains_resumes_and_exports(tmp_path, capsys):
    parser = tr.add_train_args(argparse.ArgumentParser())
    argv = [
        "--out",
        str(tmp_path / "run"),
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--width",
        "8",
        "--channel-mult",
        "1,2",
        "--num-res-blocks",
        "1",
        "--head-channels",
        "8",
        "--norm-groups",
        "4",
        "--no-progress",
    ]
    args = parser.parse_args(argv)
    cfg = tr.config_from_args(args)
    assert cfg.model.model_channels == 8 and cfg.model.channel_mult == (1, 2) and cfg.batch_size == 4
    tr.run_train(args)
    # resuming with only --steps picks the rest up from the checkpoint
    args = parser.parse_args(
        ["--out", str(tmp_path / "run"), "--steps", "3", "--no-progress", "--export", str(tmp_path / "w.safetensors")]
    )
    assert tr.config_from_args(args).model == cfg.model
    assert tr.run_train(args)["step"] == 3
    assert load_builtin(tmp_path / "w.safetensors").config == cfg.model
    exp = tr.add_export_args(argparse.ArgumentParser()).parse_args(
        ["--run", str(tmp_path / "run"), "--to", str(tmp_path / "x.safetensors")]
    )
    assert tr.run_export(exp)["step"] == 3


def test_ctrl_c_stops_after_a_whole_step_with_a_checkpoint(tmp_path, monkeypatch):
    """Ctrl-C mid-run keeps every finished step: the checkpoint holds them and resuming is exact."""
    import os
    import signal

    cfg = TrainConfig(model=BuiltinConfig(model_channels=8, channel_mult=(1, 2), num_res_blocks=1, head_channels=8, norm_groups=4),
                      steps=4, batch_size=4, ckpt_every=1000)
    real_step = tr._train_step

    def step_then_interrupt(st, tables):
        row = real_step(st, tables)
        if st.step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # arrives mid-step in real use; the step still completes
        return row

    monkeypatch.setattr(tr, "_train_step", step_then_interrupt)
    before = signal.getsignal(signal.SIGINT)  # Python's own, or SIG_IGN where pytest runs as a background job
    with pytest.raises(tr.TrainingInterrupted, match="interrupted at step 2"):
        train(cfg, tmp_path / "run", progress=False)
    assert signal.getsignal(signal.SIGINT) is before  # the handler did not outlive the run
    monkeypatch.setattr(tr, "_train_step", real_step)
    resumed = train(cfg, tmp_path / "run", progress=False)
    straight = train(cfg, tmp_path / "straight", progress=False)
    assert resumed["step"] == 4 and resumed["last"] == straight["last"]


def test_export_never_overwrites_without_force(tmp_path):
    parser = tr.add_export_args(argparse.ArgumentParser())
    with pytest.raises(SystemExit):  # --to is required: the shipped weights are never a silent default
        parser.parse_args(["--run", str(tmp_path)])
    target = tmp_path / "w.safetensors"
    target.write_bytes(b"keep me")
    with pytest.raises(ValueError, match="exists; add --force"):
        tr.run_export(parser.parse_args(["--run", str(tmp_path), "--to", str(target)]))
    assert target.read_bytes() == b"keep me"


@pytest.mark.parametrize("flag,value", [("--width", "0"), ("--threads", "-1"), ("--steps", "0"), ("--dropout", "1.5")])
def test_bad_training_options_are_one_line_errors(tmp_path, flag, value, capsys):
    from unetdyn.cli import main

    assert main(["train", "--out", str(tmp_path / "run"), flag, value, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("unetdyn train: error:") and flag in err and len(err.splitlines()) == 1


def test_an_empty_run_folder_is_refused(tmp_path, capsys, monkeypatch):
    from unetdyn.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["train", "--out", "", "--steps", "1", "--no-progress"])
    assert e.value.code == 2 and "argument --out: is empty" in capsys.readouterr().err.splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


def test_a_run_moves_whole_to_its_device(full_run):
    """Model, EMA and every optimizer moment follow the run to its device (meta stands in for a GPU here);
    AdamW's step counts stay on the CPU, as torch keeps them for a non-capturable optimizer."""
    st = ck.restore(RESUME_CFG, full_run)
    assert st.opt.state  # a resumed run has moments to move
    tr._on_device(st, torch.device("meta"))
    assert {p.device.type for p in st.model.parameters()} == {"meta"}
    assert {v.device.type for v in st.ema.values()} == {"meta"}
    moments = [(k, v.device.type) for s in st.opt.state.values() for k, v in s.items() if isinstance(v, torch.Tensor)]
    assert {d for k, d in moments if k != "step"} == {"meta"} and {d for k, d in moments if k == "step"} == {"cpu"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_training_on_an_absent_gpu_is_a_one_line_error(tmp_path, capsys):
    from unetdyn.cli import main

    assert main(["train", "--out", str(tmp_path / "run"), "--device", "cuda", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "torch sees no CUDA GPU here; use --device cpu" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()
