"""The book as a reader's browser sees it: headless Chromium loads every page (1400 px wide) and
finds math typeset, every image loaded, every figure's smallest text at least ``MIN_TEXT_PX``
high on screen, every markdown table within the text column, no request to another host and no
console error.

Needs Debian's ``chromium`` (``apt-get install chromium``; ``.ci/run`` installs it) and the
``websocket-client`` package; elsewhere the tests skip, saying so. The first test builds a
small book (a markdown page and a tiny notebook, both with math) through the same
``execute``/``build`` path as ``unetdyn book``; the second checks the repository's own
``_build/html`` when it has been built.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import nbformat
import pytest

from unetdyn.paper.canvas import MIN_TEXT_PX
from unetdyn.paths import REPO_ROOT

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
HOW = "install Chromium to run it (Debian: apt-get install chromium; .ci/run does)"

MATH_PAGE = r"""# Math

Inline $t_{start}$ and $\pm 2\,\mathrm{sd}$ in prose, and a display equation:

$$
x_{t-1} = \frac{1}{\sqrt{\alpha_t}} \left( x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}} \epsilon_\theta(x_t, t) \right)
$$
"""

# a 2x2 PNG, so the tiny notebook's figure needs no plotting library
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg=="
)


def tiny_notebook(path: Path) -> None:
    """A chapter in miniature: prose with math, a parameters cell, a figure and a table."""
    cells = [
        nbformat.v4.new_markdown_cell("# Demo\n\nThe jump from $t_{start}$ to $t_{start} - n$:\n\n$$\\sum_{t=1}^{T} \\beta_t$$"),
        nbformat.v4.new_code_cell("n = 3  # points in the figure\nlabel = 'demo'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "import base64\nfrom IPython.display import Image, Markdown, display\n"
            f"display(Image(data=base64.b64decode({base64.b64encode(PNG).decode()!r}), width=200))"
        ),
        nbformat.v4.new_code_cell("display(Markdown('| claim | ours |\\n|---|---|\\n| $n$ steps | ' + str(n) + ' |'))"),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def build_tiny_book(root: Path) -> Path:
    from unetdyn.paper.book import build, execute

    src = root / "src"
    src.mkdir(parents=True)
    tiny_notebook(src / "demo.ipynb")
    (root / "book").mkdir()
    (root / "book" / "index.md").write_text(MATH_PAGE)
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/index\nchapters:\n  - file: book/demo\n")
    execute("demo", {"n": 4}, root / "book", source_dir=src)
    return build(root)


class Browser:
    """Headless Chromium driven over the DevTools protocol (one tab)."""

    def __init__(self):
        websocket = pytest.importorskip("websocket", reason="the browser test needs websocket-client (pip install websocket-client)")
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-port=0",
             "--remote-allow-origins=*", f"--user-data-dir={self.profile}", "--window-size=1400,1600", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if "DevTools listening on ws://" in line:
                port = int(line.split("ws://")[1].split("/")[0].split(":")[1])
            elif not line and self.proc.poll() is not None:
                break
        if port is None:
            self.close()
            raise RuntimeError("Chromium did not start its DevTools server")
        self.port = port
        self.ws = websocket.create_connection(self._page_ws(), timeout=30, suppress_origin=True)
        self._id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable")

    def _page_ws(self) -> str:
        import urllib.request

        for _ in range(50):  # the DevTools HTTP endpoint is on this machine
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=5))
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.1)
        raise RuntimeError("Chromium opened no tab")

    def call(self, method: str, **params) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def js(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True, timeout=20000)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression[:60]}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def open(self, url: str) -> None:
        """Load ``url`` and wait for its load event and MathJax's first typeset."""
        self.events.clear()
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + 30
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not load")
            self.events.append(json.loads(self.ws.recv()))
        self.js("""new Promise(done => {
            if (!window.MathJax) return done('none');
            const wait = () => (MathJax.Hub && MathJax.Hub.Register) ?
                MathJax.Hub.Register.StartupHook('End', () => done('typeset')) : setTimeout(wait, 50);
            wait();
        })""")
        # images below the fold may be lazy: ask for all of them and wait until each settles
        self.js("""Promise.all(Array.from(document.images).map(i => { i.loading = 'eager';
            return i.complete ? null : new Promise(r => { i.onload = i.onerror = r; }); }))""")
        self.call("Runtime.evaluate", expression="0")  # flush events that arrived meanwhile

    def at_width(self, width: int, expression: str):
        """``expression`` evaluated with the page laid out at ``width`` CSS px, then the window's width back."""
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=1600, deviceScaleFactor=1, mobile=False)
        try:
            return self.js(expression)
        finally:
            self.call("Emulation.clearDeviceMetricsOverride")

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def errors(self) -> list[str]:
        found = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                found.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                found.append("exception: " + d.get("exception", {}).get("description", d.get("text", "")))
            elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                found.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}")
        return found

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


# what a page shows once MathJax has run: raw delimiters left in the visible text, typeset
# formulas, formulas MathJax could not parse, math Sphinx marked up, and broken images
PAGE_STATE = r"""(() => {
    const text = document.body.innerText;
    return {
        raw: ['\\(', '\\[', '$$'].filter(d => text.includes(d)),
        typeset: document.querySelectorAll('.MathJax, .MathJax_Display, .MathJax_SVG, .MathJax_CHTML, mjx-container').length,
        failed: document.querySelectorAll('.MathJax .merror, .MathJax_SVG .merror, mjx-merror').length,
        math: document.querySelectorAll('.math').length,
        broken: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
        images: document.images.length,
    };
})()"""


# every image as laid out at the page's width, the folded ones unfolded: where it comes from, its
# width on screen and its width in pixels of its own
IMAGE_SIZES = r"""(() => {
    document.querySelectorAll('details').forEach(d => { d.open = true; });
    return Array.from(document.images).map(i => ({
        src: i.currentSrc || i.src, shown: i.getBoundingClientRect().width, natural: i.naturalWidth}));
})()"""


# the markdown tables wider than the text column: their last columns hidden behind a scroll bar
CLIPPED_TABLES = r"""Array.from(document.querySelectorAll('article .pst-scrollable-table-container'))
    .filter(c => c.scrollWidth > c.clientWidth + 1)
    .map(c => (c.querySelector('th') || c).innerText.slice(0, 40) + ` (${c.scrollWidth} px in ${c.clientWidth})`)"""
LAPTOP_PX = 1280  # a common laptop's window: the tables must fit it as well as the 1400 px the rest is checked at


def _png_bytes(src: str) -> bytes | None:
    if src.startswith("data:image/png;base64,"):
        return base64.b64decode(src.split(",", 1)[1])
    if src.startswith("file://") and src.lower().endswith(".png"):
        return Path(urllib.parse.unquote(src[len("file://"):])).read_bytes()
    return None


def text_on_screen(images: list[dict]) -> list[tuple[str, float | None]]:
    """For each PNG a page shows: its name and the height on screen, in CSS px, of its smallest
    text (the height its figure recorded in the PNG, scaled as the browser scales the image), or
    None for a PNG that recorded none."""
    from PIL import Image

    from unetdyn.paper.canvas import TEXT_PX_KEY

    found = []
    for im in images:
        data = _png_bytes(im["src"])
        if data is None or not im["natural"]:
            continue
        recorded = Image.open(io.BytesIO(data)).text.get(TEXT_PX_KEY)
        name = im["src"].rsplit("/", 1)[-1][:60]
        found.append((name, None if recorded is None else float(recorded) * im["shown"] / im["natural"]))
    return found


def check_pages(html_dir: Path) -> dict[str, dict]:
    """Open every page of a built book; return each page's state, after asserting it is sound."""
    if CHROMIUM is None:
        pytest.skip(f"headless Chromium not found: {HOW}")
    browser = Browser()
    seen = {}
    try:
        pages = [p for p in sorted(html_dir.rglob("*.html")) if not p.relative_to(html_dir).parts[0].startswith("_")]
        for page in pages:  # not the theme's fragments under _static
            name = str(page.relative_to(html_dir))
            refresh = re.search(r'http-equiv="refresh" content="\d+;\s*url=([^"]+)"', page.read_text(), re.I)
            if refresh:  # a redirect (Jupyter Book's top index.html): its target is checked as a page
                assert (page.parent / refresh.group(1)).exists(), f"{name} redirects to a missing {refresh.group(1)}"
                continue
            browser.open(page.as_uri())
            state = browser.js(PAGE_STATE)
            assert not state["raw"], f"{name}: untypeset math delimiters {state['raw']} in the visible text"
            assert state["math"] == 0 or state["typeset"] > 0, f"{name}: has math but MathJax typeset none of it"
            assert state["failed"] == 0, f"{name}: {state['failed']} formula(s) MathJax could not parse"
            assert not state["broken"], f"{name}: images that did not load: {state['broken']}"
            remote = [u for u in browser.requests() if not u.startswith(("file:", "data:", "blob:", "about:"))]
            assert not remote, f"{name}: requests that leave the machine: {remote}"
            assert not browser.errors(), f"{name}: console errors: {browser.errors()}"
            state["text_px"] = text_on_screen(browser.js(IMAGE_SIZES))
            small = [(img, round(px, 1)) for img, px in state["text_px"] if px is not None and px < MIN_TEXT_PX - 0.05]
            assert not small, f"{name}: figures whose smallest text is under {MIN_TEXT_PX} px on screen: {small}"
            clipped = browser.at_width(LAPTOP_PX, CLIPPED_TABLES)  # last: the page is laid out anew at that width
            assert not clipped, f"{name}: tables wider than the text column at {LAPTOP_PX} px: {clipped}"
            seen[name] = state
    finally:
        browser.close()
    return seen


def test_a_small_book_renders_in_the_browser(tmp_path):
    if CHROMIUM is None:
        pytest.skip(f"headless Chromium not found: {HOW}")
    index = build_tiny_book(tmp_path)
    seen = check_pages(index.parent)
    for page in ("book/index.html", "book/demo.html"):
        assert seen[page]["typeset"] >= 2, f"{page}: expected inline and display math typeset, got {seen[page]}"
    assert seen["book/demo.html"]["images"] >= 1
    # the reader sees the values used in the parameters cell, the figure's code folded and the
    # table's code removed
    nb = nbformat.read(str(tmp_path / "book" / "demo.ipynb"), as_version=4)
    assert [c.metadata.get("tags") for c in nb.cells if c.cell_type == "code"] == [["parameters"], ["hide-input"], ["remove-input"]]
    assert nb.cells[1].source == "n = 4  # points in the figure\nlabel = 'demo'"
    demo = (index.parent / "book" / "demo.html").read_text()
    assert "tag_hide-input" in demo and "tag_remove-input" in demo and "display(Markdown" not in demo


def test_the_repository_book_renders_in_the_browser():
    html = REPO_ROOT / "_build" / "html"
    if not (html / "index.html").exists():
        pytest.skip("the book has not been built here: run `unetdyn book` (or `make book`) first")
    seen = check_pages(html)
    chapters = [p for p in seen if p.startswith("book/0")]
    assert chapters, "no chapter page in _build/html"
    assert all(seen[p]["images"] > 0 for p in chapters), {p: seen[p]["images"] for p in chapters}
    check_chapter_figures(seen)


def check_chapter_figures(seen: dict[str, dict]) -> None:
    """Every figure of every chapter recorded its smallest text (so ``check_pages`` measured it)."""
    unmeasured = {p: [img for img, px in s["text_px"] if px is None] for p, s in seen.items() if p.startswith("book/")}
    assert not any(unmeasured.values()), f"figures that recorded no text size: { {p: v for p, v in unmeasured.items() if v} }"
