"""The model card of the shipped built-in weights: ``data/builtin/MODEL_CARD.md``.

Everything in it is read from files, never typed in: the weights' metadata (config, data
seed, steps, training time), their checksum, the training run's loss curve, and the
quality check's ``quality.json`` and sample grid (``python -m unetdyn.builtin_model.quality``).

    python -m unetdyn.builtin_model.card --run runs/builtin
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from unetdyn.backends.builtin_weights import read_metadata, verify_checksum
from unetdyn.builtin_model.checkpoint import LOSSES_CSV, LOSSES_PNG
from unetdyn.fileio import atomic_write
from unetdyn.paths import BUILTIN_DIR, BUILTIN_WEIGHTS

__all__ = ["write_model_card"]


def _quality_section(q: dict | None) -> list[str]:
    if q is None:
        return ["No quality check has been run on these weights yet (`python -m unetdyn.builtin_model.quality`)."]
    n = q.get("n_per_class")
    lines = [
        f"Checked by `python -m unetdyn.builtin_model.quality` on {n} samples per class ({q.get('steps')} steps, guidance "
        f"{q.get('guidance')}), classified by an independent CNN trained on other procedural data "
        f"(held-out accuracy {q['classifier_accuracy']:.1%}).",
        "",
        "| measure | value | bar |",
        "|---|---|---|",
        f"| samples labelled as their class | {q['agreement']:.1%} | >= {q['bar']:.0%}: **{'met' if q['passes'] else 'not met'}** |",
        f"| Frechet distance, generated vs real (classifier features) | {q['frechet_gen_real']:.3f} | |",
        f"| Frechet distance, real vs real (same sizes) | {q['frechet_real_real']:.3f} | |",
        "",
        "Per class: " + ", ".join(f"{k} {v:.0%}" for k, v in q["per_class"].items()) + ".",
    ]
    return lines


def write_model_card(weights: Path = BUILTIN_WEIGHTS, run_dir: Path | None = None, out_dir: Path = BUILTIN_DIR) -> Path:
    """Write ``MODEL_CARD.md`` (and copy the loss curve and its table) beside the weights; returns its path."""
    digest = verify_checksum(weights)
    meta = read_metadata(weights)
    train_cfg = json.loads(meta["train_config"])
    for name in (LOSSES_PNG, LOSSES_CSV):  # kept beside the weights once the run folder is gone
        if run_dir is not None and (Path(run_dir) / name).exists():
            shutil.copy2(Path(run_dir) / name, out_dir / name)
    qpath = out_dir / "quality.json"
    quality = json.loads(qpath.read_text()) if qpath.exists() else None
    if quality is not None and quality.get("model", {}).get("sha256") not in (None, digest):
        quality = None  # a check of other weights says nothing about these
    hours = float(meta["train_seconds"]) / 3600
    lines = [
        "# The built-in model" if out_dir.resolve() == BUILTIN_DIR.resolve() else
        f"# `builtin:{out_dir.name}`, a member of the built-in model's family",
        "",
        "A class-conditional Unet with GLIDE's base-model topology (16 encoder blocks, a middle block,",
        "16 decoder blocks, attention at the lower resolutions, scale-shift norm, learned variance),",
        "trained on the procedural shapes dataset (`unetdyn/data.py`) with GLIDE's objective: the",
        "improved-DDPM hybrid loss (lambda = 0.001), cosine schedule over 1000 steps, the class",
        "replaced by the null class 20% of the time, EMA of the weights.",
        "",
        "| | |",
        "|---|---|",
        f"| file | `{weights.name}` ({weights.stat().st_size / 1e6:.1f} MB, {meta['dtype']}, {int(meta['params']) / 1e6:.2f}M parameters) |",
        f"| sha256 | `{digest}` |",
        f"| weights | {meta['weights']} |",
        f"| training steps | {meta['steps']} of batch {train_cfg['batch_size']} |",
        f"| training time | {hours:.2f} h on a 2-core CPU |",
        f"| data seed | {meta['data_seed']} |",
        f"| model config | `{meta['config']}` |",
        f"| training config | `{meta['train_config']}` |",
        "",
        "## Loss",
        "",
        "![loss curve](losses.png)" if (out_dir / "losses.png").exists() else "(no loss curve copied)",
        "",
        "## Quality",
        "",
        *_quality_section(quality),
        "",
    ]
    if quality is not None and (out_dir / "samples_by_class.png").exists():
        lines += ["## Samples, one row per class", "", "![samples](samples_by_class.png)", ""]
    text = "\n".join(lines)
    return atomic_write(out_dir / "MODEL_CARD.md", lambda p: p.write_text(text))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m unetdyn.builtin_model.card", description=__doc__.split("\n")[0])
    ap.add_argument("--weights", type=Path, default=BUILTIN_WEIGHTS)
    ap.add_argument("--run", type=Path, help="training run folder (for the loss curve)")
    args = ap.parse_args(argv)
    print(f"wrote {write_model_card(args.weights, args.run, args.weights.parent)}")


if __name__ == "__main__":
    main()
