"""The book runner: profiles and overrides, the failure path, and the smoke book in a browser.

``test_smoke_book_in_a_browser`` builds the real notebooks with the ``smoke`` profile
(random-weight Pythia, tiny sizes: about two minutes on 2 CPU cores) into a temporary
copy of ``book/`` and opens it in headless Chromium. CI installs ``chromium`` and
``chromium-driver`` (see ``.ci/run``); elsewhere the test is skipped, saying so.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
import textwrap
import time
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from sae_paper.book.lanes import available_cores
from sae_paper.book.profiles import BookError, load_profile, parse_overrides, resolve_parameters
from sae_paper.book.progress import NotebookProgress, load_timings, save_timings
from sae_paper.book.runner import BookLayout, run_book
from sae_paper.data.paths import repo_root

ROOT = repo_root()
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def book_copy(tmp_path: Path) -> Path:
    """The book's sources (config resolved from its symlink, toc, its hand-written pages, its own CSS and JS) in a
    scratch folder."""
    book = tmp_path / "book"
    book.mkdir()
    for name in ("_config.yml", "_toc.yml", *(page.name for page in (ROOT / "book").glob("*.md"))):
        shutil.copy(ROOT / "book" / name, book / name)
    shutil.copytree(ROOT / "book" / "_static", book / "_static")
    shutil.copytree(ROOT / "book" / "checks", book / "checks")
    return book


@pytest.mark.parametrize("profile", ["smoke", "default", "paper"])
def test_every_profile_validates_and_builds_every_run_config(profile, capsys):
    result = run_book(profile, notebooks=["01_training"], validate_only=True)
    assert result.notebooks == ["01_training"]
    out = capsys.readouterr().out
    assert f"profile {profile}: valid for 01_training" in out
    if profile == "paper":
        assert "pythia-70m-deduped resid_post.2 tied R=2 alpha=0.00086" in out
        assert "pythia-70m-deduped mlp_post.0 untied" in out and "n_tokens=10,000,000" in out


def test_overrides_apply_to_the_notebooks_that_have_the_parameter():
    profile = load_profile(ROOT / "profiles" / "smoke.yaml")
    resolved = resolve_parameters(profile, ["01_training"], parse_overrides(["epochs=3", "01_training.mlp_alphas=[0, 1e-3]"]))
    assert resolved["01_training"]["epochs"] == 3 and resolved["01_training"]["mlp_alphas"] == [0, 1e-3]
    with pytest.raises(BookError, match="no selected notebook has a parameter 'epoch'"):
        resolve_parameters(profile, ["01_training"], parse_overrides(["epoch=3"]))
    with pytest.raises(BookError, match="02_x is not a selected notebook"):
        resolve_parameters(profile, ["01_training"], parse_overrides(["02_x.epochs=3"]))
    with pytest.raises(BookError, match="notebook 01_training: .*layer 9 does not exist"):
        resolve_parameters(profile, ["01_training"], parse_overrides(["layer=9"]))
    with pytest.raises(BookError, match="-p takes key=value"):
        parse_overrides(["epochs"])


def test_progress_counts_code_cells_and_estimates_from_the_last_run():
    now, stream = [0.0], io.StringIO()

    def progress(previous):
        return NotebookProgress("nb", previous, stream=stream, live=False, every=0, clock=lambda: now[0])

    def last_line():
        return stream.getvalue().splitlines()[-1]

    shown = progress([1.0, 10.0, 0.0, 20.0])
    shown.start(["code", "code", "markdown", "code"])
    assert last_line() == "nb: 0/3 code cells, 0s elapsed, ~31s left (last run 31s)"
    shown.cell_started(0)
    now[0] = 0.25
    assert shown.remaining() == pytest.approx(30.75)  # 10 + 0 + 20 still to run, 0.75 left of the running cell
    shown.cell_done(0)
    shown.cell_started(1)
    now[0] = 14.0  # 13.75 s into a cell the last run did in 10: it counts as done, not negative
    assert shown.remaining() == pytest.approx(20.0)
    shown.cell_done(1)
    shown.cell_started(2)
    shown.cell_done(2)
    shown.cell_started(3)
    assert last_line() == "nb: 2/3 code cells, 14s elapsed, ~20s left (last run 31s)"
    now[0] = 24.0
    assert shown.status() == "24s elapsed, ~10s left (last run 31s)"
    shown.cell_done(3)
    shown.finish()
    assert last_line() == "nb: 3/3 code cells, 24s elapsed, ~0s left (last run 31s)"

    first = progress(None)
    first.start(["code"])
    assert last_line() == "nb: 0/1 code cells, 0s elapsed (no earlier run to estimate from)"
    changed = progress([30.0, 60.0])  # the notebook has three cells now: the last total is the estimate
    changed.start(["code", "code", "code"])
    now[0] += 50.0
    assert changed.remaining() == pytest.approx(40.0)


def test_progress_in_a_log_keeps_printing_while_one_cell_runs():
    """No cell event for a while (one long cell): the log still gets a line every ``every`` seconds."""
    stream = io.StringIO()
    shown = NotebookProgress("nb", None, stream=stream, live=False, every=0.05)
    shown.start(["code", "code"])
    shown.cell_started(0)
    deadline = time.monotonic() + 30
    while len(stream.getvalue().splitlines()) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    lines_while_running = stream.getvalue().splitlines()
    shown.finish()
    assert len(lines_while_running) >= 3
    assert all(line.startswith("nb: 0/2 code cells, ") for line in lines_while_running)
    assert stream.getvalue().splitlines()[-1].startswith("nb: 0/2 code cells, ")
    settled = stream.getvalue()
    time.sleep(1.5)  # finished: the heartbeat has stopped
    assert stream.getvalue() == settled


def test_cell_timings_round_trip_per_profile_and_notebook():
    executed = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x"), nbformat.v4.new_markdown_cell("y")])
    executed.cells[0].metadata["papermill"] = {"duration": 2.5}
    executed.cells[1].metadata["papermill"] = {"duration": None}
    assert load_timings("smoke", "nb") is None
    assert save_timings("smoke", "nb", executed) == [2.5, 0.0]
    assert load_timings("smoke", "nb") == [2.5, 0.0] and load_timings("default", "nb") is None


def test_a_failing_cell_names_notebook_and_cell_and_keeps_the_previous_book(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "boom.py").write_text(textwrap.dedent('''\
        # ---
        # jupyter:
        #   kernelspec:
        #     display_name: Python 3
        #     language: python
        #     name: python3
        # ---

        # %% tags=["parameters"]
        profile = "notebook"
        divisor = 1

        # %%
        print("fine so far")

        # %%
        1 / divisor
        '''))
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "tiny.yaml").write_text("boom:\n  divisor: 0\n")
    book = book_copy(tmp_path)
    previous_html = book / "_build" / "html" / "index.html"
    previous_html.parent.mkdir(parents=True)
    previous_html.write_text("the previous book")
    previous_nb = book / "generated" / "boom.ipynb"
    previous_nb.parent.mkdir()
    previous_nb.write_text("{}")
    layout = BookLayout(notebooks, book, profiles)

    with pytest.raises(BookError) as failure:
        run_book("tiny", layout=layout, log=lambda line: None)
    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith("notebook boom failed in cell 3 of boom.py (starting '1 / divisor'): ")
    assert "'1 / divisor'" in message and "ZeroDivisionError: division by zero" in message
    assert "previous book is kept" in message
    assert previous_html.read_text() == "the previous book"
    assert previous_nb.read_text() == "{}"
    executed = Path(message.split("the executed notebook is ")[1].split(";")[0])
    outputs = [o for c in json.loads(executed.read_text())["cells"] for o in c.get("outputs", [])]
    assert any("fine so far" in "".join(o.get("text", "")) for o in outputs)  # ran up to the failing cell
    shutil.rmtree(executed.parent.parent)  # the staging folder the message named


def test_notebooks_in_lanes_run_in_their_own_processes_and_a_failure_there_is_the_same_one_line(tmp_path, capsys):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    header = ("# ---\n# jupyter:\n#   kernelspec:\n#     display_name: Python 3\n#     language: python\n"
              "#     name: python3\n# ---\n\n")
    (notebooks / "a_fine.py").write_text(header + '# %% tags=["parameters"]\nprofile = "notebook"\n\n'
                                         "# %%\nimport os\nprint('threads', os.environ.get('OMP_NUM_THREADS'))\n")
    (notebooks / "boom.py").write_text(header + '# %% tags=["parameters"]\nprofile = "notebook"\ndivisor = 1\n\n'
                                       "# %%\nprint('fine so far')\n\n# %%\n1 / divisor\n")
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "tiny.yaml").write_text("a_fine: {}\nboom:\n  divisor: 0\n")
    layout = BookLayout(notebooks, book_copy(tmp_path), profiles)
    lines = []
    with pytest.raises(BookError) as failure:
        run_book("tiny", layout=layout, log=lines.append, lanes=2)
    message = str(failure.value)
    assert "\n" not in message and message.startswith("notebook boom failed in cell 3 of boom.py (starting '1 / divisor'): ")
    assert "ZeroDivisionError" in message
    assert any("2 lanes side by side, 1 thread(s) each" in line for line in lines) or available_cores() < 2
    assert any(line.startswith("a_fine: done in") for line in lines)  # unregistered notebooks run one after another
    assert re.search(r"^a_fine: (\d+)/\1 code cells", capsys.readouterr().err, re.MULTILINE)  # the lane's progress, passed on
    staging = Path(message.split("the executed notebook is ")[1].split(";")[0]).parent.parent
    executed = json.loads((staging / "generated" / "a_fine.ipynb").read_text())
    printed = "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
    assert "threads 1" in printed or available_cores() < 2  # its kernel ran on its lane's share of the cores
    shutil.rmtree(staging)


EXTERNAL_RESOURCE = re.compile(r"<(?:script|img|iframe|source)\b[^>]*\bsrc=[\"']https?://|<link\b[^>]*\bhref=[\"']https?://"
                               r"|url\(\s*[\"']?https?://|@import\s+[\"']https?://", re.IGNORECASE)
"""A page or stylesheet that makes the browser fetch something from the network (links to read elsewhere are fine)."""


def external_resources(html: Path) -> dict[str, list[str]]:
    """Every HTML page and stylesheet of a built book that references an http(s) script, stylesheet, font or image."""
    found = {}
    for path in [*html.rglob("*.html"), *html.rglob("*.css")]:
        hits = EXTERNAL_RESOURCE.findall(path.read_text(errors="replace"))
        if hits:
            found[str(path.relative_to(html))] = hits[:3]
    return found


PIPE_TABLE = re.compile(r"\|\s*:?-{3,}:?\s*\||\|\s*:?—+:?\s*\|")
"""Markdown table rules (``|---|``, ``| --- |``, ``|—|``) left as text: a table that did not render."""


class _PageText(HTMLParser):
    """A built page's prose and cell outputs (code cells' inputs, scripts and styles left out), and its outputs alone."""

    SKIP = {"script", "style", "noscript"}

    def __init__(self):
        super().__init__()
        self.text, self.outputs, self._stack = [], [], []

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        if tag in ("br", "img", "meta", "link", "input", "hr"):
            return
        self._stack.append((tag, "cell_input" in classes, "cell_output" in classes))

    def handle_endtag(self, tag):
        while self._stack:
            if self._stack.pop()[0] == tag:
                break

    def handle_data(self, data):
        if any(t in self.SKIP or inp for t, inp, _ in self._stack):
            return
        self.text.append(data)
        if any(out for _, _, out in self._stack):
            self.outputs.append(data)


def page_problems(page: str, forbidden: Sequence[str]) -> list[str]:
    """What a reader must never meet in a built page: Markdown tables left as text, U+FFFD, and in a cell's output
    a library log line, a ``PosixPath(...)`` or an absolute path of the building machine (``forbidden``)."""
    parsed = _PageText()
    parsed.feed(page)
    text, outputs = " ".join(parsed.text), " ".join(parsed.outputs)
    problems = [f"pipe table as text: {m.group(0)!r}" for m in PIPE_TABLE.finditer(text)][:1]
    if "\ufffd" in page:
        problems.append("U+FFFD (a token shown as a replacement character)")
    problems += [f"{what} in a cell output" for what in ("sae-paper:", "PosixPath(") if what in outputs]
    problems += [f"the building machine's path {path} in a cell output" for path in forbidden if path in outputs]
    return problems


@pytest.mark.parametrize("page, problem", [
    ("<article><p>| a | b |</p><p>|---|---|</p></article>", "pipe table as text"),
    ("<article><p>a \ufffd b</p></article>", "U+FFFD"),
    ('<div class="cell_output"><pre>sae-paper: training the SAE in /x</pre></div>', "sae-paper: in a cell output"),
    ('<div class="cell_output"><pre>PosixPath(\'/x\')</pre></div>', "PosixPath( in a cell output"),
    ('<div class="cell_output"><p>saved in /home/me/.cache/sae-paper/saes</p></div>', "path /home/me"),
])
def test_the_reader_checks_catch_each_problem(page, problem):
    assert any(problem in found for found in page_problems(page, ["/home/me"]))


def test_the_reader_checks_pass_code_tables_and_paths_outside_outputs():
    page = ('<div class="cell_input"><pre>Markdown("| a |\\n|---|")</pre></div><table><tr><td>1</td></tr></table>'
            '<div class="cell_output"><table><tr><td>ok</td></tr></table></div><p>the cache, e.g. /home/me</p>'
            '<script>const x = "|---|";</script>')
    assert page_problems(page, ["/home/me"]) == []


@pytest.mark.slow  # builds the smoke book twice
@pytest.mark.skipif(not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
                    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver; CI installs them)")
def test_smoke_book_in_a_browser(tmp_path, monkeypatch, capsys):
    """The smoke book as a reader meets it, in headless Chromium with every network name unresolvable."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    from sae_paper.book.pages import toc_entries

    book = book_copy(tmp_path)
    result = run_book("smoke", layout=BookLayout(ROOT / "notebooks", book, ROOT / "profiles"), log=print)
    html = result.html
    assert (html / "index.html").is_file()
    terminal = capsys.readouterr()
    for name in result.notebooks:  # the runner's progress, on the terminal (stderr here is not a tty: plain lines)
        assert re.search(rf"^{name}: (\d+)/\1 code cells, \d+(m\d\ds)?s? elapsed", terminal.err, re.MULTILINE), terminal.err[-2000:]
    print(terminal.out)
    recorded = [r["claim_id"] for r in json.loads((book / "generated" / "claims" / "01_training.json").read_text())["records"]]
    assert {"train-runtime", "splice-perplexity", "fig6-tradeoff", "fig7-epochs", "fig16-resid-alive",
            "fig16-mlp-dead", "c3-untied-alive"} <= set(recorded)
    exports = list((book / "generated" / "saelens" / "01_training").iterdir())  # the main SAE, for SAELens
    assert len(exports) == 1 and {p.name for p in exports[0].iterdir()} == {"cfg.json", "sae_weights.safetensors"}
    board = json.loads((book / "generated" / "scoreboard.json").read_text())["claims"]
    assert {row["id"] for row in board if row["notebook"] == "01_training"} == set(recorded)

    # built again with nothing changed: every notebook and the feature browser reused, the records byte for byte
    generated = book / "generated"
    records = {p: p.read_bytes() for p in sorted([*generated.glob("*/*.json"), generated / "scoreboard.json"])}
    pages = {p: p.read_bytes() for p in sorted((generated / "features").rglob("*")) if p.is_file()}
    again = run_book("smoke", layout=BookLayout(ROOT / "notebooks", book, ROOT / "profiles"), build=False, log=print)
    assert again.reused == result.notebooks and again.seconds == {}
    assert {p: p.read_bytes() for p in records} == records
    assert {p: p.read_bytes() for p in sorted((generated / "features").rglob("*")) if p.is_file()} == pages
    assert "feature browser: reused" in capsys.readouterr().out

    # no page makes the browser fetch anything from the network
    assert external_resources(html) == {}

    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager reach for the network
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors are a failure
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--host-resolver-rules=MAP * ~NOTFOUND",  # the network is off: no host name resolves
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1280,2000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(30)

    def fetched_from_network():
        return driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)"
                                     ".filter(n => /^https?:/.test(n));")

    try:
        driver.get((html / "generated" / "01_training.html").as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);")
        figures = [src for src, _, _ in images if "_images/" in src]
        assert len(figures) >= 4, f"expected the notebook's figures on the page, found images {images}"
        broken = [src for src, complete, width in images if not (complete and width > 0)]
        assert not broken, f"images that did not load: {broken}"
        page = driver.find_element(By.TAG_NAME, "body").text
        assert "ce_loss_score" in page and "SAE.load_from_disk" in page  # SAEBench's convention, SAELens loading
        screenshot = tmp_path / "01_training.png"
        driver.save_screenshot(str(screenshot))
        print(f"screenshot of the 01_training page: {screenshot}")

        # equations render with the network off: MathJax from _static, no raw TeX left
        pages_with_math = sorted(p for p in (html / "generated").glob("*.html") if 'class="math' in p.read_text())
        assert html / "generated" / "01_training.html" in pages_with_math
        for page in pages_with_math:
            driver.get(page.as_uri())
            rendered = driver.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "MathJax.startup.promise.then(() => done([document.querySelectorAll('mjx-container').length,"
                " document.querySelectorAll('mjx-merror').length, document.body.innerText.includes('\\\\(')]));")
            assert rendered[0] > 0 and rendered[1] == 0 and not rendered[2], f"{page.name}: {rendered}"
            assert fetched_from_network() == [], page.name

        # the scoreboard: verdict badges, one line per claim, no horizontal scroll at 1,280 px
        driver.get((html / "generated" / "scoreboard.html").as_uri())
        assert driver.find_elements(By.CSS_SELECTOR, ".sb-counts .sb-badge")
        claims_shown = driver.find_elements(By.CSS_SELECTOR, "details.sb-claim")
        assert len(claims_shown) == len(board) == 26
        text = driver.find_element(By.CSS_SELECTOR, ".sb-board").text
        for claim_id in recorded:
            assert claim_id in text
        overflow = driver.execute_script(
            "const d = document.documentElement;"
            "const wide = Array.from(document.querySelectorAll('.sb-board, .sb-claim > summary'))"
            ".filter(e => e.scrollWidth > e.clientWidth + 1).length;"
            "return [d.scrollWidth, d.clientWidth, wide, Math.max(...Array.from("
            "document.querySelectorAll('.sb-claim > summary')).map(e => e.getBoundingClientRect().height))];")
        assert overflow[0] <= overflow[1] and overflow[2] == 0, f"horizontal overflow at 1,280 px: {overflow}"
        cut = driver.execute_script("return Array.from(document.querySelectorAll('.sb-id, .sb-line, .sb-mark'))"
                                    ".filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent);")
        assert cut == [], f"scoreboard text cut off at 1,280 px: {cut}"
        marked = {row["id"]: row["marks"] for row in board}
        assert all("stand-in" in marked[c] for c in ("fig2-early-layers", "fig2-depth", "fig9-random-only"))
        assert len(driver.find_elements(By.CSS_SELECTOR, ".sb-m-stand-in")) == sum("stand-in" in m for m in marked.values())
        spans = [row["trend_span"] for row in board if row["trend"]]
        assert spans and all(" → " in span for span in spans)  # the deciding number at both ends of the budget
        claims_shown[0].click()  # unfolds into the rule and notes
        assert claims_shown[0].find_element(By.CSS_SELECTOR, ".sb-more").is_displayed()
        driver.save_screenshot(str(tmp_path / "scoreboard.png"))
        print(f"screenshot of the scoreboard: {tmp_path / 'scoreboard.png'}")

        # every claim id links to the section that computed it, and that section shows its verdict
        links = driver.execute_script("return Array.from(document.querySelectorAll('a.sb-id')).map(a => a.href);")
        assert len(links) == sum(1 for row in board if row["notebook"])
        verdicts = {row["id"]: row["verdict"] for row in board}
        by_page: dict[str, list[str]] = {}
        for link in links:
            page, _, anchor = link.partition("#")
            by_page.setdefault(page, []).append(anchor)
        for page, anchors in by_page.items():
            driver.get(page)
            for anchor in anchors:
                claim_id = anchor.removeprefix("claim-")
                shown = driver.execute_script(
                    "const target = document.getElementById(arguments[0]); if (!target) return null;"
                    "const section = target.closest('section') || target;"
                    "const badge = section.querySelector(`.claim-badge[data-claim='${arguments[1]}']`);"
                    "return badge ? badge.dataset.verdict : '';", anchor, claim_id)
                assert shown is not None, f"{page} has no anchor {anchor}"
                assert shown == verdicts[claim_id], f"{page}#{anchor} does not state {claim_id}'s verdict ({shown!r})"

        # every page as a reader meets it: tables rendered, no log line, path or U+FFFD, no console error, and
        # every figure drawn narrower than its natural width opens enlarged on a click
        forbidden = [str(ROOT), str(Path.home()), tempfile.gettempdir() + "/", str(tmp_path)]
        pages = sorted([*(html / "generated").rglob("*.html"), html / "intro.html", html / "budget.html"])
        driver.get_log("browser")  # what earlier pages logged is checked below, page by page
        for page in pages:
            problems = page_problems(page.read_text(), forbidden)
            driver.get(page.as_uri())
            driver.execute_script("window.scrollTo(0, document.body.scrollHeight);")
            time.sleep(0.3)
            problems += [f"console: {e['message'][:200]}" for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            shrunk = driver.execute_script(
                "return Array.from(document.querySelectorAll('article img')).filter(i => i.complete &&"
                " i.naturalWidth > i.clientWidth + 2 && !i.classList.contains('sp-zoomable')).map(i => i.src);")
            problems += [f"figure shrunk with no way to enlarge it: {src}" for src in shrunk]
            if page.parent.name == "generated" and page.stem[:2].isdigit():
                summary = driver.execute_script("return !!document.querySelector('section#summary .cell_output table');")
                problems += [] if summary else ["its summary is not a table"]
            assert not problems, f"{page.relative_to(html)}: {problems}"
        driver.get((html / "generated" / "01_training.html").as_uri())
        zoomable = driver.find_elements(By.CSS_SELECTOR, "img.sp-zoomable")
        assert zoomable, "01's wide figures (Figure 16) should be shrunk to the column and enlargeable"
        driver.execute_script("arguments[0].scrollIntoView();", zoomable[0])
        zoomable[0].click()
        enlarged = driver.execute_script("const i = document.querySelector('.sp-zoom img');"
                                         "return i ? [i.clientWidth, i.naturalWidth] : null;")
        assert enlarged and enlarged[0] == enlarged[1], f"the enlarged figure is not at its natural size: {enlarged}"

        # the intro links every chapter of the toc
        driver.get((html / "intro.html").as_uri())
        hrefs = set(driver.execute_script("return Array.from(document.querySelectorAll('article a')).map(a => a.href);"))
        for entry, _ in toc_entries(book / "_toc.yml"):
            assert (html / f"{entry}.html").as_uri() in hrefs, f"the intro does not link {entry}"

        # a feature page: the index, shaded tokens, a histogram image
        driver.get((html / "generated" / "features" / "main.html").as_uri())
        shaded = driver.execute_script(
            "return Array.from(document.querySelectorAll('.fb-contexts span')).map(s => getComputedStyle(s).backgroundColor)"
            ".filter(c => c.includes('255, 140, 0') && !c.endsWith(', 0)')).length;")
        assert shaded > 0, "no token shaded by its activation on the feature page"
        histograms = driver.execute_script(
            "return Array.from(document.querySelectorAll('img.fb-hist')).map(i => i.complete && i.naturalWidth > 0);")
        assert histograms and all(histograms)
        rows = driver.find_elements(By.CSS_SELECTOR, ".fb-table tbody tr")
        cards = driver.find_elements(By.CSS_SELECTOR, "[id^='fb-main-']")
        assert len(rows) == len(cards) > 0, "the index should list every card"
        driver.find_element(By.CSS_SELECTOR, ".fb-table th:nth-child(4)").click()  # sort by firing rate, largest first
        rates = driver.execute_script(
            "return Array.from(document.querySelectorAll('.fb-table tbody tr')).map(r => +r.cells[3].dataset.value);")
        assert rates == sorted(rates, reverse=True)
        first = rows[0].find_element(By.CSS_SELECTOR, "td:nth-child(1)").text
        driver.find_element(By.CSS_SELECTOR, ".fb-filter").send_keys("no feature explanation holds this")
        assert all(not row.is_displayed() for row in rows), f"the filter left rows shown (first {first})"
        driver.save_screenshot(str(tmp_path / "features.png"))
        print(f"screenshot of the feature browser: {tmp_path / 'features.png'}")
        assert fetched_from_network() == []

        # Jupyter Book's own search finds a feature by a word of its explanation
        from selenium.webdriver.support.ui import WebDriverWait

        scored = json.loads((book / "generated" / "feature_records" / "02_autointerp.json").read_text())
        explanation = next(f["explanation"] for f in scored["saes"]["main"]["features"] if f["explanation"])
        word = max(re.findall(r"[A-Za-z]{4,}", explanation.split(":", 1)[-1]), key=len)
        driver.get((html / "search.html").as_uri() + f"?q={word}")
        found = WebDriverWait(driver, 20).until(lambda d: d.execute_script(
            "const links = Array.from(document.querySelectorAll('#search-results a')).map(a => a.href);"
            "const summary = document.querySelector('#search-results .search-summary');"
            "return summary && summary.innerText.trim() ? links : null;"))  # filled in when the search is done
        assert any("generated/features/main.html" in link for link in found), f"search for {word!r} found {found}"
    finally:
        driver.quit()
    size = sum(p.stat().st_size for p in (html / "generated" / "features").rglob("*")) + sum(
        p.stat().st_size for p in (html / "_images").glob("main-*.png")) + sum(
        p.stat().st_size for p in (html / "_images").glob("mlp-*.png"))
    print(f"feature browser: {size / 1e6:.2f} MB")
    assert size < 20e6


def test_parameters_show_once_as_what_this_build_changed():
    from sae_paper.book.pages import show_parameters_once

    cells = [nbformat.v4.new_code_cell("n_tokens = 1000  # rows\nlayers = (3, 9)\nseed = 0", metadata={"tags": ["parameters"]}),
             nbformat.v4.new_code_cell("# Parameters\nn_tokens = 4000\nlayers = [3, 9]\nseed = 0\nprofile = \"smoke\"\n",
                                       metadata={"tags": ["injected-parameters"]}),
             nbformat.v4.new_code_cell("print(n_tokens)")]
    cells[1].outputs = []
    assert show_parameters_once(cells, "smoke") == 1
    assert cells[0].metadata["tags"] == ["parameters", "remove-cell"] and cells[0].cell_type == "code"
    assert cells[1].cell_type == "markdown" and "outputs" not in cells[1]
    assert "| `n_tokens` | `4000` | `1000` |" in cells[1].source and "layers" not in cells[1].source  # (3, 9) == [3, 9]
    assert "the other 2 are as the notebook sets them" in cells[1].source and len(cells) == 3


def test_the_costs_page_states_what_this_build_measured_and_on_which_machine(tmp_path):
    from sae_paper.book.costs_page import costs_markdown
    from sae_paper.report.provenance import cpu_description

    cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse4_2 avx avx2 fma\n\nprocessor\t: 1\n"
    model, extensions = cpu_description(cpuinfo)
    assert (model, extensions) == ("AMD EPYC 7B13", ["sse4_2", "avx", "avx2", "fma"])  # no AVX-512: the slower kind
    (tmp_path / "provenance").mkdir()
    hardware = {"cpu_model": model, "vector_extensions": extensions, "cpus_usable": 2, "torch_threads": 2}
    for name, wall, sections in (("01_training", 120.4, {"main SAE": 21.0, "α sweeps": 64.0}), ("02_x", 700.0, {})):
        (tmp_path / "provenance" / f"{name}.json").write_text(json.dumps(
            {"commit": "abcdef1234567890", "started": "2026-12-02T15:00", "wall_seconds": wall, "sections": sections,
             "hardware": hardware}))
    page = costs_markdown(tmp_path, ["01_training", "02_x", "03_not_run"], {"harvest": 128.0, "feature browser": 57.0},
                          "default")
    assert "profile `default`, commit `abcdef123456`" in page
    assert "AMD EPYC 7B13 (sse4_2, avx, avx2, fma), 2 usable cores" in page
    assert "| 01_training | 120 s | α sweeps 64 s; main SAE 21 s |" in page and "| 02_x | 11.7 min |" in page
    assert "03_not_run" not in page  # not measured, not printed
    assert "| **total** | **16.8 min** |" in page  # 128 + 120.4 + 700 + 57 s
    assert costs_markdown(tmp_path / "empty", ["01_training"], {}, "default").startswith("No step")
    reused = costs_markdown(tmp_path, ["01_training", "02_x"], {}, "default", reused=["02_x"])
    assert "| 02_x (reused: the run of 2026-12-02T15:00) | 11.7 min |" in reused and "**120 s**" in reused
    side = costs_markdown(tmp_path, ["01_training", "02_x"], {"notebooks side by side": 710.0, "lanes": 2}, "default")
    assert "| notebooks, in 2 lanes side by side | 11.8 min | from the first start to the last end; the notebooks' own " \
           "times above, each on its lane's share of the cores, add up to 13.7 min |" in side
    assert "| **total** | **11.8 min** |" in side  # the span, not the notebooks' sum


def test_the_ica_section_prices_a_converged_fit_at_the_builds_sizes(tmp_path):
    from sae_paper.book.costs_page import ica_section, write_ica_page

    row = {"layer": 3, "rows": 4096, "method": "FastICA", "budget": 200, "iterations": 200, "change": 4.9e-2,
           "converged": False, "seconds": 65.0}
    record = {"model": "smollm2-135m", "source": "enwiki2015", "seed": 0, "tol": 1e-4,
              "machine": {"cpu_model": "AMD EPYC", "vector_extensions": ["avx2", "avx512f"]},
              "rows": [row, {**row, "method": "Picard-O", "rows": 16384, "iterations": 200, "change": 1.25e-5,
                             "converged": True, "seconds": 163.84},
                       {**row, "method": "Picard-O", "rows": 4096, "iterations": 200, "change": 2e-5,
                        "converged": True, "seconds": 20.48}]}
    text = ica_section(record, {"n_tokens": 49152, "layers": [3, 9, 14], "n_seeds": 3, "ica_rows": 4096,
                                "ica_max_iter": 40})
    assert "| 3 | 4,096 | FastICA | 200 (200) | 4.90e-02 | no | 65 |" in text
    assert "(avx512f)" in text
    # the cheapest converged fit a row: 20.48 s / 4,096 rows = 5 ms; 49,152 rows → 245.8 s ≈ 4.1 min; 9 fits → 37 min
    assert "cheapest fit that met the tolerance cost 5.0 ms a row (Picard-O at layer 3: 20 s on 4,096 rows;" in text
    assert "at least 4.1 min a fit, and 37 min for this build's 9 fits" in text
    assert "40 FastICA iterations on 4,096 rows today" in text
    assert "No fit measured here met the tolerance" in ica_section({**record, "rows": [row]})
    missing = write_ica_page(tmp_path, tmp_path / "absent.json", None).read_text()
    assert missing.startswith("No measurement in this checkout (absent.json is absent)")
