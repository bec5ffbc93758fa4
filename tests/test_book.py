"""The book: every notebook runs end to end (small parameters, results computed from scratch
into the test's own store), the book builds strictly and offline, and the driver refuses bad
parameters and broken chapters with one-line errors. The full build takes a few minutes."""

from __future__ import annotations

import json
import re

import nbformat
import pytest
import yaml

from unetdyn.paper.book import (
    APPENDICES,
    NOTEBOOKS,
    PARAMS_FILE,
    BookError,
    execute,
    load_params,
    make_book,
    notebook_parameters,
    offline_violations,
    parse_value,
)
from unetdyn.paper.claims import CLAIMS
from unetdyn.paper.summary import collect_findings
from unetdyn.paths import BOOK_DIR, NOTEBOOKS_DIR, REPO_ROOT


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("book")
    # the computing chapters compute into an empty store; chapter 7 and the appendix read the committed records
    params = yaml.safe_load((BOOK_DIR / "params-ci.yaml").read_text())
    for p in params["notebooks"].values():
        if p.get("compute"):
            p["cache_dir"] = str(root / "cache")
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    index = make_book(root / "params.yaml", root=root, log=lambda *_: None)
    return root, index


@pytest.mark.slow  # builds the whole book: minutes
def test_every_notebook_executes_and_the_book_builds(built):
    root, index = built
    assert index.exists()
    for name in NOTEBOOKS:
        nb = json.loads((root / "book" / f"{name}.ipynb").read_text())
        assert nb["metadata"]["papermill"]["exception"] in (None, False), name
        outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{name} drew no figure"
        if name not in APPENDICES:
            findings = collect_findings(nb)
            assert findings, f"{name} shows no findings table"
            assert all(f.claim in CLAIMS for f in findings), name
        assert (root / "_build" / "html" / "book" / f"{name}.html").exists()


@pytest.mark.slow  # builds the whole book: minutes
def test_the_reader_sees_prose_and_figures_not_code(built):
    root, _ = built
    nb = nbformat.read(str(root / "book" / "03_nb_sweep.ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.tags
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    assert "n_samples = 4" in code[0].source  # the value used, in place of the default
    assert all({"hide-input", "remove-input"} & set(c.metadata.tags) for c in code[1:])


@pytest.mark.slow  # builds the whole book: minutes
def test_results_were_computed_from_scratch_into_the_given_cache(built):
    root, _ = built
    assert len(list((root / "cache").rglob("*.npz"))) > 50


@pytest.mark.slow  # builds the whole book: minutes
def test_the_summary_page_gathers_every_chapter(built):
    root, _ = built
    summary = (root / "book" / "summary.md").read_text()
    assert "In all:" in summary
    # one row per judged claim, each linking to the section of the chapter that reads it
    table = summary.split("<details>")[0]
    for c in CLAIMS.values():
        if c.judged:
            assert re.search(rf"\[{re.escape(c.short)}[^\]]*\]\([\w-]+\)", table.replace("\\", "")), c.id
    assert (root / "_build" / "html" / "book" / "summary.html").exists()


@pytest.mark.slow  # builds the whole book: minutes
def test_the_built_book_reads_in_the_browser(built):
    """Every page as Chromium shows it; every chapter figure's smallest text is readable at the page's width."""
    from tests.test_browser import check_chapter_figures, check_pages

    root, _ = built
    check_chapter_figures(check_pages(root / "_build" / "html"))


@pytest.mark.slow  # builds the whole book: minutes
def test_html_needs_no_other_host(built):
    root, _ = built
    html = root / "_build" / "html"
    assert offline_violations(html) == []
    assert (html / "_static" / "mathjax" / "MathJax.js").exists()
    page = (html / "book" / "01_phases.html").read_text()
    # the configuration the page asks for is one the copied MathJax ships
    assert "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full" in page
    assert (html / "_static" / "mathjax" / "config" / "TeX-AMS-MML_HTMLorMML-full.js").exists()
    assert "unpkg.com" not in page and "cdn.jsdelivr" not in page


def test_offline_check_catches_a_cdn(tmp_path):
    (tmp_path / "p.html").write_text('<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script>')
    assert len(offline_violations(tmp_path)) == 1
    (tmp_path / "p.html").write_text("<script>var s = 'https://unpkg.com/thebe@0.8.2/lib/index.js';</script>")
    assert len(offline_violations(tmp_path)) == 1


# -- parameters ------------------------------------------------------------------------------


def test_params_file_lists_only_known_notebooks(tmp_path):
    assert set(load_params(PARAMS_FILE)) == set(NOTEBOOKS)
    bad = tmp_path / "p.yaml"
    bad.write_text("notebooks: {07_nothing: {}}")
    with pytest.raises(BookError, match="unknown notebook"):
        load_params(bad)


def test_a_missing_params_file_is_an_error_not_the_defaults(tmp_path):
    with pytest.raises(BookError, match="no such file"):
        load_params(tmp_path / "nope.yaml")


def test_unknown_or_mistyped_parameters_are_refused():
    with pytest.raises(BookError, match="no parameter 'n_sample'"):
        load_params(None, ["02_skip_vs_deconv"], {"n_sample": 16})
    with pytest.raises(BookError, match="n_samples of 02_skip_vs_deconv must be an integer"):
        load_params(None, ["02_skip_vs_deconv"], {"n_samples": parse_value("n_samples", "abc")})
    with pytest.raises(BookError, match="nbs of 03_nb_sweep must be a list"):
        load_params(None, ["03_nb_sweep"], {"nbs": 17})
    with pytest.raises(BookError, match="not valid YAML"):
        parse_value("nbs", "[2, 4")


def test_defaults_go_only_to_notebooks_that_take_them_and_yield_to_the_file(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("notebooks: {01_phases: {compute: true}}")
    params = load_params(f, defaults={"compute": False})
    assert params["01_phases"]["compute"] is True
    assert params["02_skip_vs_deconv"]["compute"] is False
    assert "compute" not in params["07_alternatives"]


def test_defaults_that_are_expressions_are_read():
    assert notebook_parameters(NOTEBOOKS_DIR / "04_n_limit.ipynb")["n_values"] == list(range(1, 16))


# -- a failed chapter never replaces a good one --------------------------------------------------


def _notebook(path, body: str) -> None:
    cells = [nbformat.v4.new_code_cell("n = 1", metadata={"tags": ["parameters"]}), nbformat.v4.new_code_cell(body)]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def test_a_failing_or_figureless_chapter_leaves_the_last_good_one(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    (out / "ch.ipynb").write_text("the last good run")
    _notebook(src / "ch.ipynb", "raise ValueError('n must be positive')")
    with pytest.raises(BookError, match="chapter ch: ValueError: n must be positive"):
        execute("ch", {"n": 2}, out, source_dir=src)
    _notebook(src / "ch.ipynb", "print(n)")
    with pytest.raises(BookError, match="drew no figure"):
        execute("ch", {"n": 2}, out, source_dir=src)
    assert (out / "ch.ipynb").read_text() == "the last good run"
    assert sorted(p.name for p in out.iterdir()) == ["ch.ipynb"]  # no partial file left


def test_the_book_computes_nothing_and_names_what_is_missing(tmp_path):
    with pytest.raises(BookError, match=r"chapter 06_shortcut: CacheMiss: .*unetdyn figure 06_shortcut"):
        make_book(None, only=["06_shortcut"], overrides={"cache_dir": str(tmp_path / "empty")}, root=tmp_path / "root",
                  build_html=False, log=lambda *_: None)
    assert not (tmp_path / "empty").exists() or not any((tmp_path / "empty").rglob("*.npz"))
    assert (REPO_ROOT / "_config.yml").exists()


def test_the_build_refuses_a_chapter_with_an_error_or_no_figure(tmp_path):
    from unetdyn.paper.book import check_chapters

    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/index\nchapters:\n  - file: book/ch\n  - file: book/gone\n")
    (tmp_path / "book" / "index.md").write_text("# index")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1/0", outputs=[nbformat.v4.new_output(
        "error", ename="ZeroDivisionError", evalue="division by zero", traceback=[])])])
    nbformat.write(nb, str(tmp_path / "book" / "ch.ipynb"))
    with pytest.raises(BookError) as err:
        check_chapters(tmp_path)
    msg = str(err.value)
    assert "chapter ch stopped on an error (ZeroDivisionError" in msg and "drew no figure" in msg
    assert "chapter gone has not been executed" in msg and "unetdyn figure" in msg


def test_the_book_runner_drops_only_papermills_misreadings_of_a_parameters_cell(tmp_path, caplog):
    import logging

    import papermill as pm

    from unetdyn.paper.book import _quiet_kernel

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('budget = "ssim>=0.8"  # a budget\nn = 3',
                                                                   metadata={"tags": ["parameters"]})],
                                 metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}})
    path = tmp_path / "p.ipynb"
    nbformat.write(nb, str(path))
    with caplog.at_level(logging.WARNING):
        found = pm.inspect_notebook(str(path))  # papermill alone: the budget's line is skipped, with a warning
        assert "budget" not in found and "Unable to parse line 1" in caplog.text
        caplog.clear()
        with _quiet_kernel():
            pm.inspect_notebook(str(path))
            logging.getLogger("papermill").warning("Black encountered an error")  # any other warning still shows
        assert "Unable to parse" not in caplog.text and "Black encountered an error" in caplog.text
        caplog.clear()
        pm.inspect_notebook(str(path))  # the filter does not outlive the with
        assert "Unable to parse line 1" in caplog.text
