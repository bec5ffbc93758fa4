"""Every notebook runs end to end (small parameters, results computed from scratch) and the
book builds strictly and offline. This is the CI check of the book; it takes a few minutes."""

from __future__ import annotations

import json

import pytest

from unetdyn.paper.book import NOTEBOOKS, PARAMS_FILE, load_params, make_book, offline_violations
from unetdyn.paths import BOOK_DIR, REPO_ROOT


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("book")
    index = make_book(BOOK_DIR / "params-ci.yaml", root=root, overrides={"cache_dir": str(root / "cache")}, log=lambda *_: None)
    return root, index


def test_every_notebook_executes_and_the_book_builds(built):
    root, index = built
    assert index.exists()
    for name in NOTEBOOKS:
        nb = json.loads((root / "book" / f"{name}.ipynb").read_text())
        assert nb["metadata"]["papermill"]["exception"] in (None, False), name
        outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{name} drew no figure"
        html = ["".join(o["data"]["text/html"]) for o in outputs if "text/html" in o.get("data", {})]
        assert any("paper (GLIDE)" in h for h in html), f"{name} has no paper-vs-ours table"
        assert (root / "_build" / "html" / "book" / f"{name}.html").exists()


def test_results_were_computed_from_scratch_into_the_given_cache(built):
    root, _ = built
    assert len(list((root / "cache").rglob("*.npz"))) > 50


def test_html_needs_no_other_host(built):
    root, _ = built
    html = root / "_build" / "html"
    assert offline_violations(html) == []
    assert (html / "_static" / "mathjax" / "MathJax.js").exists()
    page = (html / "book" / "01_phases.html").read_text()
    assert "mathjax/MathJax.js" in page and "cdn.jsdelivr" not in page


def test_offline_check_catches_a_cdn(tmp_path):
    (tmp_path / "p.html").write_text('<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script>')
    assert len(offline_violations(tmp_path)) == 1


def test_params_file_lists_only_known_notebooks(tmp_path):
    assert set(load_params(PARAMS_FILE)) == set(NOTEBOOKS)
    bad = tmp_path / "p.yaml"
    bad.write_text("notebooks: {07_nothing: {}}")
    with pytest.raises(ValueError, match="unknown notebook"):
        load_params(bad)
    assert (REPO_ROOT / "_config.yml").exists()
