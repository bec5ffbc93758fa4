"""The command line end to end on a tiny trained model: train -> export -> sample -> cost."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from unetdyn.cli import main, parse_seeds

from .conftest import tiny_state, write_weights

TINY = ["--width", "8", "--norm-groups", "4", "--head-channels", "8", "--batch-size", "4", "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    assert main(["train", "--out", str(d / "run"), "--steps", "2", *TINY, "--export", str(d / "w.safetensors")]) == 0
    return d / "w.safetensors"


def test_sample_writes_pngs_grid_arrays_and_metrics(weights, tmp_path, capsys):
    out = tmp_path / "s"
    rc = main(["sample", "--weights", str(weights), "--schedule", "full", "paper-shortcut", "--seeds", "0-1",
               "--classes", "star", "heart", "--out", str(out)])
    assert rc == 0
    assert sorted(p.name for p in (out / "paper-shortcut").iterdir()) == ["seed0000_star.png", "seed0001_heart.png"]
    grid = np.asarray(Image.open(out / "grid.png"))
    assert grid.shape[0] > grid.shape[1] / 2  # two rows of two
    z = np.load(out / "samples.npz")
    assert z["images"].shape == (2, 2, 3, 32, 32) and list(z["seeds"]) == [0, 1]
    assert json.loads(str(z["schedules"][1]))["name"] == "paper-shortcut"
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0] == "schedule,seed,prompt,ssim,psnr" and len(rows) == 5
    assert "SSIM to full" in capsys.readouterr().out


def test_cost_prints_one_json_object(weights, capsys):
    assert main(["cost", "--weights", str(weights), "--schedule", "paper-shortcut", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["unet_calls"] == 83 and 0 < d["saving"] < 1
    assert d["flops_per_sample"] < d["full_flops_per_sample"]


def test_bad_schedule_is_a_clear_error(weights, tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text("interventions: [{kind: drop_blocks, t_start: 60, n: 5, nb: 40}]")
    assert main(["sample", "--weights", str(weights), "--schedule", str(f), "--out", str(tmp_path / "o")]) == 2
    assert "drop_blocks.nb=40 is out of range 1..16" in capsys.readouterr().err


def test_missing_weights_is_a_clear_error(tmp_path, capsys):
    assert main(["sample", "--weights", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "o")]) == 2
    assert "weights not found" in capsys.readouterr().err


def test_cuda_without_gpu_is_a_clear_error(weights, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["sample", "--weights", str(weights), "--device", "cuda", "--out", str(tmp_path / "o")]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


@pytest.mark.parametrize("spec,seeds", [("0-3", [0, 1, 2, 3]), ("5", [5]), ("1,4-5", [1, 4, 5])])
def test_parse_seeds(spec, seeds):
    assert parse_seeds(spec) == seeds


def test_parse_seeds_rejects_backwards_ranges():
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="runs backwards"):
        parse_seeds("5-2")


def _schedule(tmp_path, name: str, text: str):
    f = tmp_path / name
    f.write_text(text)
    return str(f)


def test_schedule_names_cannot_leave_the_output_folder(weights, tmp_path, capsys):
    evil = _schedule(tmp_path, "evil.yaml", "name: ../../evil\ninterventions: []")
    assert main(["sample", "--weights", str(weights), "--schedule", evil, "--seeds", "0", "--out", str(tmp_path / "o")]) == 2
    assert "schedule.name='../../evil'" in capsys.readouterr().err
    assert not (tmp_path.parent / "evil").exists()


def test_two_schedules_with_one_name_are_refused_before_sampling(weights, tmp_path, capsys):
    a = _schedule(tmp_path, "a.yaml", "name: same\ninterventions: [{kind: early_stop, t: 20}]")
    b = _schedule(tmp_path, "b.yaml", "name: same\ninterventions: [{kind: early_stop, t: 30}]")
    assert main(["sample", "--weights", str(weights), "--schedule", a, b, "--seeds", "0", "--out", str(tmp_path / "o")]) == 2
    assert "two schedules are named 'same'" in capsys.readouterr().err


def test_the_reference_is_the_schedule_without_interventions(weights, tmp_path, capsys):
    fake = _schedule(tmp_path, "full.yaml", "name: full\ninterventions: [{kind: early_stop, t: 50}]")
    plain = _schedule(tmp_path, "plain.yaml", "name: plain\ninterventions: []")
    assert main(["sample", "--weights", str(weights), "--schedule", fake, plain, "--seeds", "0", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "SSIM to plain" in out and "SSIM to full" not in out


@pytest.mark.parametrize("make_out", ["file", "under_file"])
def test_a_bad_out_is_found_before_sampling(weights, tmp_path, capsys, monkeypatch, make_out):
    import unetdyn.sampler as sampler_module

    f = tmp_path / "a_file"
    f.write_text("x")
    out = f if make_out == "file" else f / "sub"
    monkeypatch.setattr(sampler_module, "sample", lambda *a, **k: pytest.fail("sampled before checking --out"))
    assert main(["sample", "--weights", str(weights), "--seeds", "0", "--out", str(out)]) == 2
    assert "--out" in capsys.readouterr().err


@pytest.mark.parametrize("argv_tail,expect", [
    (["--guidance", "inf"], "guidance=inf must be a finite number"),
    (["--device", "tpu"], "only cpu and cuda"),
    (["--device", "cuda:first"], "device='cuda:first': only cpu and cuda (cuda:N)"),
    (["--device", "meta"], "device='meta': only cpu and cuda (cuda:N) are supported; meta holds no data"),
    (["--device", "Cuda"], "only cpu and cuda"),
])
def test_bad_input_is_one_line(weights, tmp_path, capsys, argv_tail, expect):
    assert main(["sample", "--weights", str(weights), "--out", str(tmp_path / "o"), *argv_tail]) == 2
    err = capsys.readouterr().err
    assert expect in err and len(err.splitlines()) == 1


def test_a_huge_seed_range_is_refused_before_it_is_built():
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="at most 100000 seeds"):
        parse_seeds("0-99999999999")


def test_a_directory_or_a_huge_schedule_is_refused(weights, tmp_path, capsys):
    assert main(["sample", "--weights", str(weights), "--schedule", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a schedule file" in capsys.readouterr().err
    bomb = _schedule(tmp_path, "bomb.yaml", "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
        + "name: *i\ninterventions: []\n")
    assert main(["sample", "--weights", str(weights), "--schedule", bomb, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown field" in err and len(err) < 1000



def test_ctrl_c_is_one_line_and_exit_130(weights, tmp_path, capsys, monkeypatch):
    import unetdyn.sampler as sampler_module

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(sampler_module, "sample", interrupted)
    assert main(["sample", "--weights", str(weights), "--seeds", "0", "--out", str(tmp_path / "o")]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "unetdyn sample: interrupted"  # after the progress bar


@pytest.mark.parametrize("argv,expect", [
    (["figure", "02_skip_vs_deconv", "-p", "n_sample", "16"], "02_skip_vs_deconv has no parameter 'n_sample'"),
    (["figure", "02_skip_vs_deconv", "-p", "n_samples", "abc"], "n_samples of 02_skip_vs_deconv must be an integer"),
    (["figure", "03_nb_sweep", "-p", "nbs", "[2, 4"], "-p nbs: '[2, 4' is not valid YAML"),
    (["figure", "03_nb_sweep", "--params", "/nonexistent/p.yaml"], "no such file"),
    (["figure", "04_n_limit", "-p", "n_values", "[]"], "-p n_values: parameter n_values of 04_n_limit must be a non-empty list"),
    (["figure", "05_relaxation", "-p", "thresholds", "[0.8, 2]"], "thresholds of 05_relaxation entry 1 (2) must be a finite number in 0..1"),
    (["figure", "01_phases", "-p", "image_t_starts", "[0, 50]"], "image_t_starts of 01_phases entry 0 (0) must be an integer in 1..100"),
    (["figure", "02_skip_vs_deconv", "-p", "device", "meta"], "parameter device of 02_skip_vs_deconv must name a device"),
    (["figure", "03_nb_sweep", "--executor", "local", "--address", "auto"], "--address auto: applies to --executor ray only"),
    (["figure", "07_alternatives", "--executor", "ray"], "--executor ray: 07_alternatives computes nothing on a sweep"),
    (["book", "--params", "/nonexistent/p.yaml"], "no such file"),
])
def test_book_and_figure_refuse_bad_parameters_before_running(argv, expect, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expect in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("argv,expect", [
    (["search", "--budget", "ssim>0.8"], "must read METRIC>=VALUE"),
    (["search", "--budget", "fid>=3"], "budget metric 'fid' is not one of ssim, ssim_lcb, ssim_p5, psnr"),
    (["search", "--min-saving", "1.5"], "min_saving=1.5 is out of range [0, 1)"),
    (["search", "--out", "found.txt"], "give a .yaml file"),
    (["search", "--executor", "local", "--address", "auto"], "--address auto: applies to --executor ray only"),
    (["search", "--model", "nonsense"], "not one of builtin, builtin:NAME (a member of its family), glide, diffusers:PATH"),
    (["cost", "--arch", "sd15"], "arch='sd15' applies to model='diffusers' only"),
])
def test_search_and_cost_refuse_bad_arguments_before_running(argv, expect, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusal (usage line, then the error)
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert expect in err.strip().splitlines()[-1]  # the last line names the fault


def test_sample_in_bf16(weights, tmp_path):
    runs = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        assert main(["sample", "--weights", str(weights), "--seeds", "0", "--classes", "star", "--steps", "3",
                     "--precision", precision, "--out", str(out)]) == 0
        runs[precision] = np.load(out / "samples.npz")["images"]
    assert runs["bf16"].dtype == np.float32 and runs["bf16"].shape == runs["fp32"].shape
    assert not np.array_equal(runs["bf16"], runs["fp32"])


def test_meta_is_a_device_for_counting_flops_only(tmp_path, capsys):
    assert main(["cost", "--random-weights", "--device", "meta", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unet_calls"] > 0
    assert main(["search", "--device", "meta", "--out", str(tmp_path / "s.yaml")]) == 2
    assert "meta holds no data" in capsys.readouterr().err


@pytest.mark.parametrize("out", ["", "   "])
def test_an_empty_out_is_refused_and_nothing_is_written(weights, tmp_path, capsys, monkeypatch, out):
    import unetdyn.sampler as sampler_module

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sampler_module, "sample", lambda *a, **k: pytest.fail("sampled with an empty --out"))
    assert main(["sample", "--weights", str(weights), "--seeds", "0", "--out", out]) == 2
    assert capsys.readouterr().err.strip() == "unetdyn sample: error: --out is empty; give a folder (e.g. --out out/sample)"
    assert list(tmp_path.iterdir()) == []


def test_sample_shows_what_it_runs_and_its_progress(weights, tmp_path, capsys):
    argv = ["sample", "--weights", str(weights), "--schedule", "full", "--seeds", "0-1", "--steps", "4"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("sampling 2 sample(s) under 1 schedule(s) (full) on cpu: 8 sample-steps, batches of 16\n")
    assert "8/8" in err.splitlines()[-1]  # the bar stays, full
    assert main([*argv, "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_a_sample_that_goes_non_finite_is_an_error_and_writes_nothing(weights, tmp_path, capsys, monkeypatch):
    import unetdyn.sampler as sampler_module

    real = sampler_module.step_noise
    monkeypatch.setattr(sampler_module, "step_noise",
                        lambda seed, t, shape, kind="step": real(seed, t, shape, kind) * (float("inf") if t == 3 else 1))
    plain = _schedule(tmp_path, "plain.yaml", "name: plain\ninterventions: []")
    out = tmp_path / "o"
    assert main(["sample", "--weights", str(weights), "--schedule", plain, "--seeds", "4", "--steps", "5",
                 "--out", str(out)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("unetdyn sample: error: sampling went NaN or infinite at step t=3 under schedule(s) 'plain' (seed(s) 4)")
    assert not (out / "samples.npz").exists()


@pytest.mark.parametrize("change", ["int16", "config"])
def test_weights_with_a_right_checksum_and_bad_content_are_one_line(tmp_path, capsys, change):
    if change == "int16":
        path = write_weights(tmp_path / "w.safetensors", tensors={k: v.to(torch.int16) for k, v in tiny_state().items()})
        expect = "tensor class_embed.weight is I16; weights must be floating point"
    else:
        path = write_weights(tmp_path / "w.safetensors", config='{"image_size": 32, "width": 8}')
        expect = "unknown field(s) ['width']"
    assert main(["sample", "--weights", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and expect in err and str(path) in err


def test_any_failure_reading_a_users_file_is_one_line_naming_it(weights, tmp_path, capsys, monkeypatch):
    import unetdyn.interventions as interventions

    def broken(spec):
        raise KeyError("interventions")

    monkeypatch.setattr(interventions, "load_schedule", broken)
    path = _schedule(tmp_path, "s.yaml", "interventions: []")
    argv = ["sample", "--weights", str(weights), "--schedule", path, "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == f"unetdyn sample: error: cannot read schedule file {path}: KeyError: 'interventions'"
    with pytest.raises(ValueError, match="cannot read schedule file") as e:  # the traceback shows where
        main(["--debug", *argv])
    assert isinstance(e.value.__cause__, KeyError)


def test_an_unexpected_error_is_one_line_unless_debug(weights, tmp_path, capsys, monkeypatch):
    import unetdyn.viz as viz

    def broken(*a, **k):
        raise RuntimeError("a bug in the metrics\nover two lines")

    monkeypatch.setattr(viz, "save_grid", broken)
    argv = ["sample", "--weights", str(weights), "--seeds", "0", "--steps", "2", "--quiet", "--out", str(tmp_path / "o")]
    assert main(argv) == 1
    assert capsys.readouterr().err == ("unetdyn sample: error: RuntimeError: a bug in the metrics over two lines "
                                       "(rerun with --debug for the traceback)\n")
    with pytest.raises(RuntimeError, match="a bug in the metrics"):
        main(["--debug", *argv])
