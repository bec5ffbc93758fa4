"""The book: execute every notebook with papermill, then build the Jupyter Book offline and strict.

Parameters come from one YAML file (default ``book/params.yaml``)::

    all:                     # given to every notebook that declares the parameter
      progress: false
    notebooks:
      03_nb_sweep: {t_stride: 5}

Every value is checked against the notebook's ``parameters`` cell before papermill starts: an
unknown name, or a value whose type differs from the default's, is a one-line error.

The executed copies land in ``<root>/book/`` and the HTML in ``<root>/_build/html``. ``root``
is the repository (default) or a scratch folder that receives a copy of the book's sources,
so a test build never overwrites the committed chapters. An executed notebook replaces the
previous one only when its run succeeded and drew a figure; the build refuses a chapter
with an error output or without a figure.

This module is also the Sphinx extension (``_config.yml``: ``extra_extensions``) that drops
scripts naming other hosts from every page: the book must work offline.
"""

from __future__ import annotations

import ast
import contextlib
import html.parser
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from unetdyn.paper.book_params import (
    NOTEBOOKS,
    PARAMS_FILE,
    BookError,
    _first_line,
    check_params,
    load_params,
    notebook_parameters,
    parse_value,
    read_params_file,
)
from unetdyn.paths import BOOK_DIR, NOTEBOOKS_DIR, REPO_ROOT

__all__ = [
    "NOTEBOOKS",
    "PARAMS_FILE",
    "APPENDICES",
    "BookError",
    "read_params_file",
    "load_params",
    "notebook_parameters",
    "check_params",
    "parse_value",
    "execute",
    "present",
    "chapter_problems",
    "build",
    "offline_violations",
    "make_book",
]

APPENDICES = ("09_other_unets", "10_is_it_the_model")  # pages with no paper-vs-ours table of their own


# ----------------------------------------------------------------------------- execution


def _tags(cell) -> list[str]:
    return cell.metadata.setdefault("tags", [])


def _merge_assignments(defaults: str, injected: str) -> str:
    """The parameters cell with each value papermill injected written in place of the default."""
    try:
        new = {
            n.targets[0].id: ast.get_source_segment(injected, n.value)
            for n in ast.parse(injected).body
            if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)
        }
        body = ast.parse(defaults).body
    except SyntaxError:
        return defaults.rstrip("\n") + "\n\n" + injected
    lines = defaults.splitlines(keepends=True)
    seen = set()
    for node in reversed(body):  # back to front: earlier line numbers stay valid
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(node, "target", None)
        if not isinstance(target, ast.Name) or target.id not in new or node.value is None:
            continue
        seen.add(target.id)
        v = node.value  # ast columns count UTF-8 bytes
        head = lines[v.lineno - 1].encode()[: v.col_offset].decode()
        tail = lines[v.end_lineno - 1].encode()[v.end_col_offset :].decode()
        lines[v.lineno - 1 : v.end_lineno] = [head + new[target.id] + tail]
    extra = [f"{k} = {v}\n" for k, v in new.items() if k not in seen]
    if extra and lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return "".join(lines + extra)


def _only_displays(cell) -> bool:
    """A cell whose outputs are all tables or markdown: its code is not worth showing."""
    outs = cell.get("outputs", [])
    return bool(outs) and all(
        o.output_type in ("display_data", "execute_result")
        and ({"text/html", "text/markdown"} & set(o.data))
        and not any(k.startswith("image/") for k in o.data)
        for o in outs
    )


def present(nb) -> None:
    """Tag an executed notebook's cells for the reader, in place.

    The parameters cell stays visible and shows the values used (papermill's injected cell is
    merged into it); every other code cell is folded (``hide-input``), or its code removed
    (``remove-input``) where it only displays a table or markdown. Tags already set are kept.
    """
    params = next((c for c in nb.cells if c.cell_type == "code" and "parameters" in _tags(c)), None)
    injected = next((c for c in nb.cells if "injected-parameters" in _tags(c)), None)
    if injected is not None and params is not None:
        params.source = _merge_assignments(params.source, injected.source)
        nb.cells.remove(injected)
    elif injected is not None:  # no parameters cell: the injected one takes its place
        params = injected
    folded = {"hide-input", "remove-input", "hide-cell", "remove-cell"}
    for cell in nb.cells:
        if cell.cell_type == "code" and cell is not params and not folded & set(_tags(cell)):
            _tags(cell).append("remove-input" if _only_displays(cell) else "hide-input")


def chapter_problems(nb) -> list[str]:
    """What keeps an executed notebook out of the book: an error output, or no figure."""
    found = []
    pm_exc = nb.metadata.get("papermill", {}).get("exception")
    outs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outs if o.output_type == "error"]
    if errors:
        found.append(f"stopped on an error ({errors[0].ename}: {_first_line(errors[0].evalue, 200)})")
    elif pm_exc:
        found.append("stopped on an error")
    if not any("image/png" in o.get("data", {}) for o in outs):
        found.append("drew no figure")
    return found


@contextlib.contextmanager
def _quiet_kernel():
    """Keep the kernel's own start-up warnings (debugger, frozen modules) off our terminal.

    With the kernel's log level at CRITICAL (see :func:`execute`) its transport warnings go
    too, and so does the "KeyboardInterrupt caught in kernel" it logs when the client
    interrupts it, idle, while shutting it down; the notebook's own warnings and errors still
    land in its outputs, where the reader (and :func:`chapter_problems`) sees them.

    Papermill's own reading of the parameters cell skips a line with more than one ``=`` (a
    budget such as ``"ssim_lcb>=0.8"``), warning that it cannot parse it, and then that the value
    passed for it is unknown; the cell has already been read with :mod:`ast` and every passed
    name checked against it (:func:`check_params`), so those two warnings say nothing here.
    """
    saved = os.environ.get("PYDEVD_DISABLE_FILE_VALIDATION")
    os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    misread = lambda record: not record.getMessage().startswith(("Unable to parse line", "Passed unknown parameter"))  # noqa: E731
    loggers = [logging.getLogger(name) for name in ("papermill", "papermill.translators")]
    for logger in loggers:
        logger.addFilter(misread)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(misread)
        if saved is None:
            os.environ.pop("PYDEVD_DISABLE_FILE_VALIDATION", None)
        else:
            os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = saved


def _failure(name: str, exc) -> str:
    """One line for a notebook that raised: the chapter, the exception, and the fix."""
    msg = f"chapter {name}: {exc.ename}: {_first_line(exc.evalue)}"
    if exc.ename == "CacheMiss":
        msg += f"; `unetdyn figure {name}` computes it (or `unetdyn book --compute`)"
    return msg


def execute(
    name: str,
    params: dict,
    out_dir: str | Path = BOOK_DIR,
    log_output: bool = False,
    source_dir: str | Path = NOTEBOOKS_DIR,
) -> Path:
    """Run ``<source_dir>/<name>.ipynb`` with ``params`` into ``out_dir/<name>.ipynb``.

    The run goes to a temporary file that replaces the target only when the notebook ran
    without error and drew a figure; a failure is a :class:`BookError` naming the chapter.
    """
    import nbformat
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    src = Path(source_dir) / f"{name}.ipynb"
    if not src.exists():
        raise BookError(f"no notebook {src}; notebooks: {', '.join(NOTEBOOKS)}")
    check_params(name, params, notebook_parameters(src))
    out = Path(out_dir) / f"{name}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{name}.partial-{os.getpid()}.ipynb")
    try:
        with _quiet_kernel():
            pm.execute_notebook(
                str(src), str(tmp), parameters=params, kernel_name="python3", cwd=str(REPO_ROOT), progress_bar=False,
                log_output=log_output, extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
            )  # fmt: skip
        nb = nbformat.read(str(tmp), as_version=4)
        bad = chapter_problems(nb)
        if bad:
            raise BookError(f"chapter {name} {' and '.join(bad)}; {out} is left as it was")
        present(nb)
        nbformat.write(nb, str(tmp))
        os.replace(tmp, out)
    except PapermillExecutionError as exc:
        raise BookError(_failure(name, exc)) from None
    finally:
        tmp.unlink(missing_ok=True)
    return out


# --------------------------------------------------------------------------------- build


CSS_FILE = "unetdyn.css"  # book/_static/: the book's layout rules beside the theme's


def _copy_sources(root: Path) -> None:
    """Give a scratch ``root`` the book's sources (TOC, chapters' markdown)."""
    if root.resolve() == REPO_ROOT.resolve():
        return
    (root / "book").mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO_ROOT / "_toc.yml", root / "_toc.yml")
    for md in BOOK_DIR.glob("*.md"):
        shutil.copy2(md, root / "book" / md.name)


def _stylesheet(root: Path) -> None:
    """Give a scratch ``root`` the book's stylesheet (the repository's is in place)."""
    dst = root / "book" / "_static" / CSS_FILE
    if dst.resolve() != (BOOK_DIR / "_static" / CSS_FILE).resolve():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(BOOK_DIR / "_static" / CSS_FILE, dst)


def _mathjax(root: Path) -> None:
    """Serve MathJax 2 from the book: copy the files jupyter-server-mathjax ships."""
    import jupyter_server_mathjax

    src = Path(jupyter_server_mathjax.__file__).parent / "static"
    dst = root / "book" / "_static" / "mathjax"
    if not (dst / "config" / "TeX-AMS-MML_HTMLorMML-full.js").exists():
        shutil.copytree(src, dst, dirs_exist_ok=True)


def _toc_files(toc: Any) -> Iterable[str]:
    """Every ``file`` named in a ``_toc.yml`` (root, chapters, parts, sections)."""
    if isinstance(toc, dict):
        for key, value in toc.items():
            if key in ("root", "file") and isinstance(value, str):
                yield value
            else:
                yield from _toc_files(value)
    elif isinstance(toc, list):
        for item in toc:
            yield from _toc_files(item)


def check_chapters(root: str | Path = REPO_ROOT) -> None:
    """Raise :class:`BookError` unless every notebook chapter of the TOC ran cleanly and drew a figure."""
    import nbformat

    root = Path(root)
    bad = []
    for f in _toc_files(yaml.safe_load((root / "_toc.yml").read_text())):
        stem = Path(f).name.removesuffix(".ipynb").removesuffix(".md")
        base = root / Path(f).parent / stem
        if base.with_suffix(".md").exists():
            continue
        nb_path = base.with_suffix(".ipynb")
        problems = chapter_problems(nbformat.read(str(nb_path), as_version=4)) if nb_path.exists() else ["has not been executed"]
        if problems:
            bad.append(f"chapter {stem} {' and '.join(problems)}: run `unetdyn figure {stem}`")
    if bad:
        raise BookError("the book was not built: " + "; ".join(bad))


class _Resources(html.parser.HTMLParser):
    """Collects the http(s) URLs a browser would load from a page: the src/href of scripts,
    styles, images, frames and media, ``url(...)`` in styles, and any URL named inside an
    inline script or style. Plain ``<a href>`` links are not loaded, so they pass."""

    _URL = re.compile(r"""(?:https?:)?//[^\s"'`()<>]+""")
    _LOADS = {"script": ("src",), "img": ("src", "srcset"), "source": ("src", "srcset"), "iframe": ("src",), "embed": ("src",),
              "video": ("src", "poster"), "audio": ("src",), "track": ("src",), "object": ("data",), "input": ("src",), "link": ("href",)}
    _NAMESPACE = re.compile(r"^https?://www\.w3\.org/")  # SVG/MathML namespace names, never fetched

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._inline: str | None = None

    def _remote(self, text: str) -> None:
        for m in self._URL.finditer(text):
            url = m.group(0)
            if url.startswith(("http:", "https:", "//")) and not self._NAMESPACE.match(url):
                self.found.append(url)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in self._LOADS.get(tag, ()):
            value = a.get(key) or ""
            if tag == "link" and set((a.get("rel") or "").split()) <= {"canonical", "alternate", "author", "license"}:
                continue  # links the browser does not fetch
            if re.match(r"\s*(https?:)?//", value) or (key == "srcset" and "//" in value):
                self.found.append(f"<{tag} {key}={value}>")
        if "url(" in (a.get("style") or ""):
            self._remote(re.sub(r"^.*?url\(", "", a["style"]))
        if tag in ("script", "style"):
            self._inline = tag

    def handle_endtag(self, tag):
        if tag == self._inline:
            self._inline = None

    def handle_data(self, data):
        if self._inline:
            self._remote(data)


def offline_violations(html_dir: str | Path) -> list[str]:
    """Resources in the built HTML that a browser would fetch from another host."""
    found = []
    for page in sorted(Path(html_dir).rglob("*.html")):
        parser = _Resources()
        parser.feed(page.read_text(errors="replace"))
        found += [f"{page.relative_to(html_dir)}: {url}" for url in parser.found]
    return found


def build(root: str | Path = REPO_ROOT, strict: bool = True) -> Path:
    """Build the HTML with Jupyter Book 1 (no execution); raise if a chapter is incomplete, the
    build fails, or a page would reach another host. ``root`` holds ``_toc.yml`` and the pages;
    the configuration is always the repository's ``_config.yml``."""
    root = Path(root)
    if "book/summary" in set(_toc_files(yaml.safe_load((root / "_toc.yml").read_text()))):
        from unetdyn.paper.summary import write_summary  # the front page, from the executed chapters

        write_summary([p for n in NOTEBOOKS if (p := root / "book" / f"{n}.ipynb").exists()], root / "book" / "summary.md")
    check_chapters(root)
    if root.resolve() != REPO_ROOT.resolve():
        shutil.copy2(REPO_ROOT / "_config.yml", root / "_config.yml")
    _mathjax(root)
    _stylesheet(root)
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(root), "--path-output", str(root)]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    if proc.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    html_dir = root / "_build" / "html"
    bad = offline_violations(html_dir)
    if bad:
        raise RuntimeError("the book references other hosts:\n" + "\n".join(bad[:20]))
    return html_dir / "index.html"


def make_book(
    params_file: str | Path | None = None,
    only: Sequence[str] | None = None,
    overrides: dict | None = None,
    root: str | Path = REPO_ROOT,
    execute_notebooks: bool = True,
    build_html: bool = True,
    compute: bool = False,
    log: Callable[[str], Any] = print,
) -> Path | None:
    """Execute the notebooks (all, or ``only``) and build the book; returns index.html.

    ``compute=False`` (the book's default) reads every result from the store: a missing one
    stops the chapter with an error naming it and the command that computes it.
    """
    root = Path(root)
    names = list(only or NOTEBOOKS)
    if execute_notebooks:  # every chapter's parameters are checked before the first one runs
        # compute goes to the chapters that take it, beneath what the parameters file says
        params = load_params(params_file, names, overrides, override_source="unetdyn book:", defaults={"compute": compute})
    _copy_sources(root)
    if execute_notebooks:
        for name in names:
            start = time.perf_counter()
            log(f"{name} ...")
            execute(name, params[name], root / "book")
            log(f"{name}: {time.perf_counter() - start:.0f} s")
    if not build_html:
        return None
    start = time.perf_counter()
    log("building the HTML ...")
    index = build(root)
    log(f"HTML: {time.perf_counter() - start:.0f} s")
    return index


# ------------------------------------------------------------------------ Sphinx extension


def _drop_remote_scripts(app, pagename, templatename, context, doctree) -> None:
    """Remove scripts that name another host (sphinx-thebe's CDN loader) and their helpers."""
    def remote(js) -> bool:
        name = str(getattr(js, "filename", "") or "")
        body = (getattr(js, "attributes", None) or {}).get("body", "")
        return bool(re.match(r"(https?:)?//", name) or re.search(r"https?://", body)) or "sphinx-thebe" in name

    if "script_files" in context:
        context["script_files"] = [js for js in context["script_files"] if not remote(js)]


def setup(app) -> dict:
    """Sphinx entry point: keep every page free of scripts from other hosts; add the book's stylesheet."""
    app.connect("html-page-context", _drop_remote_scripts, priority=900)
    app.add_css_file(CSS_FILE)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
