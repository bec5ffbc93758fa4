"""The book: execute every notebook with papermill, then build the Jupyter Book offline and strict.

Parameters come from one YAML file (default ``book/params.yaml``)::

    all:                     # given to every notebook
      progress: false
    notebooks:
      03_nb_sweep: {t_stride: 5}

The executed copies land in ``<root>/book/`` and the HTML in ``<root>/_build/html``. ``root``
is the repository (default) or a scratch folder that receives a copy of the book's sources,
so a test build never overwrites the committed chapters.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml

from unetdyn.paths import BOOK_DIR, NOTEBOOKS_DIR, REPO_ROOT

__all__ = ["NOTEBOOKS", "load_params", "execute", "build", "offline_violations", "make_book"]

NOTEBOOKS = ("01_phases", "02_skip_vs_deconv", "03_nb_sweep", "04_n_limit", "05_relaxation", "06_shortcut", "07_alternatives")
PARAMS_FILE = BOOK_DIR / "params.yaml"
# anything the browser would fetch from elsewhere
_REMOTE = re.compile(r"""(?:src|href)\s*=\s*["'](?:https?:)?//[^"']+\.(?:js|css|woff2?|ttf)(?:\?[^"']*)?["']""", re.I)


def load_params(path: str | Path | None = None) -> dict[str, dict]:
    """Per-notebook parameters from the YAML file (``all`` merged under each notebook's own)."""
    p = Path(path) if path is not None else PARAMS_FILE
    raw = yaml.safe_load(p.read_text()) if p.exists() else {}
    raw = raw or {}
    unknown = set(raw) - {"all", "notebooks"}
    if unknown:
        raise ValueError(f"{p}: unknown top-level key(s) {sorted(unknown)}; allowed: all, notebooks")
    per = raw.get("notebooks") or {}
    bad = set(per) - set(NOTEBOOKS)
    if bad:
        raise ValueError(f"{p}: unknown notebook(s) {sorted(bad)}; notebooks: {', '.join(NOTEBOOKS)}")
    return {name: {**(raw.get("all") or {}), **(per.get(name) or {})} for name in NOTEBOOKS}


def execute(name: str, params: dict, out_dir: str | Path = BOOK_DIR, log_output: bool = False) -> Path:
    """Run ``notebooks/<name>.ipynb`` with ``params`` into ``out_dir/<name>.ipynb``."""
    import papermill as pm

    if name not in NOTEBOOKS:
        raise ValueError(f"unknown notebook {name!r}; notebooks: {', '.join(NOTEBOOKS)}")
    out = Path(out_dir) / f"{name}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(
        str(NOTEBOOKS_DIR / f"{name}.ipynb"),
        str(out),
        parameters=params,
        kernel_name="python3",
        cwd=str(REPO_ROOT),
        progress_bar=False,
        log_output=log_output,
    )
    return out


def _copy_sources(root: Path) -> None:
    """Give a scratch ``root`` the book's sources (config, TOC, chapters' markdown)."""
    if root.resolve() == REPO_ROOT.resolve():
        return
    (root / "book").mkdir(parents=True, exist_ok=True)
    for f in ("_config.yml", "_toc.yml"):
        shutil.copy2(REPO_ROOT / f, root / f)
    for md in BOOK_DIR.glob("*.md"):
        shutil.copy2(md, root / "book" / md.name)


def _mathjax(root: Path) -> None:
    """Serve MathJax from the book: copy the files jupyter-server-mathjax ships."""
    import jupyter_server_mathjax

    src = Path(jupyter_server_mathjax.__file__).parent / "static"
    dst = root / "book" / "_static" / "mathjax"
    if not (dst / "MathJax.js").exists():
        shutil.copytree(src, dst, dirs_exist_ok=True)


def offline_violations(html_dir: str | Path) -> list[str]:
    """References in the built HTML to scripts, styles or fonts on other hosts."""
    found = []
    for page in Path(html_dir).rglob("*.html"):
        for m in _REMOTE.finditer(page.read_text(errors="replace")):
            found.append(f"{page.name}: {m.group(0)}")
    return found


def build(root: str | Path = REPO_ROOT, strict: bool = True) -> Path:
    """Build the HTML with Jupyter Book 1 (no execution); raise if it fails or reaches the network."""
    root = Path(root)
    _copy_sources(root)
    _mathjax(root)
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(root), "--path-output", str(root)]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    html = root / "_build" / "html"
    bad = offline_violations(html)
    if bad:
        raise RuntimeError("the book references other hosts:\n" + "\n".join(bad[:20]))
    return html / "index.html"


def make_book(
    params_file: str | Path | None = None,
    only: Sequence[str] | None = None,
    overrides: dict | None = None,
    root: str | Path = REPO_ROOT,
    execute_notebooks: bool = True,
    build_html: bool = True,
    log=print,
) -> Path | None:
    """Execute the notebooks (all, or ``only``) and build the book; returns index.html."""
    root = Path(root)
    params = load_params(params_file)
    names: Iterable[str] = only or NOTEBOOKS
    if execute_notebooks:
        _copy_sources(root)
        for name in names:
            p = {**params[name], **(overrides or {})}
            log(f"executing {name} {p}")
            execute(name, p, root / "book")
    return build(root) if build_html else None
