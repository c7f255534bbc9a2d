"""What the book runner adds to the pages besides executing notebooks: the chapter list and claim anchors.

- :func:`write_chapter_list`: the intro's list of chapters, made from ``book/_toc.yml`` (the one
  place chapters are listed), so a chapter added to the toc appears on the front page with
  nothing else to edit. ``book/intro.md`` includes the generated ``generated/chapters.md``.
  Each entry is the page's title and the line under it (a notebook's "*Section 3 and ...*"
  line, shortened to the sections; a Markdown page's first sentence).
- :func:`show_parameters_once`: after a notebook ran, its parameters appear once, as a table of what
  this build set differently from the notebook's defaults.
- :func:`anchor_claim_sections`: before a notebook runs, the heading cell of every section that
  records a claim (``board.record("fig2-depth", ...)``) gets an anchor ``claim-fig2-depth``
  (:func:`sae_paper.report.claims.claim_anchor`), which is where the scoreboard's claim ids link to.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from sae_paper.errors import SaePaperError
from sae_paper.report.claims import claim_anchor

CHAPTER_LIST = "chapters.md"
WIDE_PAGE = "---\nhtml_theme.sidebar_secondary.remove: true\n---\n"
"""Front matter for a generated page that needs the width (the scoreboard, the feature browser): no right-hand
table of contents; ``book/_static/sae-paper.css`` then lets the article use the space it leaves."""
RECORD_CALL = re.compile(r"\.record\(\s*[\"']([A-Za-z0-9_.-]+)[\"']")
"""A literal claim id passed to ``Scoreboard.record`` in a code cell."""
HEADING = re.compile(r"^#{1,6}\s+\S", re.MULTILINE)


def toc_entries(toc_path: Path) -> list[tuple[str, int]]:
    """Every file of a ``jb-book`` toc, in reading order, with its depth (0: a chapter, 1: its section, ...)."""
    import yaml

    try:
        toc = yaml.safe_load(toc_path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise SaePaperError(f"cannot read the table of contents {toc_path}: {error}") from None

    def walk(entries, depth: int) -> Iterator[tuple[str, int]]:
        for entry in entries or ():
            if "glob" in entry:
                raise SaePaperError(f"{toc_path}: list files, not globs ({entry['glob']!r}), so the intro can list them")
            if "file" in entry:
                yield str(entry["file"]), depth
            yield from walk(entry.get("sections"), depth + 1)

    if not isinstance(toc, dict) or "root" not in toc:
        raise SaePaperError(f"{toc_path} is not a jb-book table of contents (no 'root')")
    return [e for part in [toc, *toc.get("parts", ())] for e in walk(part.get("chapters"), 0)]


def _markdown_lines(path: Path) -> list[str]:
    """The Markdown text of a page: a Markdown file as it is, a Jupytext notebook's Markdown cells."""
    if path.suffix == ".py":
        lines, in_markdown = [], False
        for line in path.read_text().splitlines():
            if line.startswith("# %%"):
                in_markdown = "[markdown]" in line
            elif in_markdown:
                lines.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        return lines
    return path.read_text().splitlines()


def page_summary(path: Path) -> tuple[str, str]:
    """(title, one line) of a page: its first ``#`` heading, then its italic source line or first sentence."""
    lines = _markdown_lines(path)
    title_at = next((i for i, line in enumerate(lines) if line.startswith("# ")), None)
    if title_at is None:
        raise SaePaperError(f"page {path} has no '# title' line")
    paragraph = []
    for line in lines[title_at + 1:]:
        if line.strip():
            if line.lstrip().startswith(("#", "<", "|", "```", ":::")):
                break
            paragraph.append(line.strip())
        elif paragraph:
            break
    text = " ".join(paragraph)
    if text.startswith("*"):  # a notebook's "*Section 3 and Appendices A, C and G of Cunningham et al. ...*"
        text = text.strip("*").split(" of Cunningham")[0]
    else:
        text = re.split(r"(?<=[.:])\s", text, maxsplit=1)[0].rstrip(".:")
    return lines[title_at][2:].strip(), text


def _source_of(entry: str, book_dir: Path, notebooks_dir: Path) -> Path | None:
    """Where a toc entry's text is: a Markdown page in the book, else the notebook it is executed from."""
    page = book_dir / f"{entry}.md"
    if page.is_file():
        return page
    notebook = notebooks_dir / f"{Path(entry).name}.py"
    return notebook if notebook.is_file() else None


def chapter_list(book_dir: Path, notebooks_dir: Path) -> str:
    """The intro's chapter list (Markdown, links relative to ``book_dir``), one item per toc entry."""
    lines = []
    for entry, depth in toc_entries(book_dir / "_toc.yml"):
        source = _source_of(entry, book_dir, notebooks_dir)
        if source is None:
            lines.append(f"{'  ' * depth}- {Path(entry).name}: not built yet")
            continue
        title, line = page_summary(source)
        suffix = ".md" if source.suffix == ".md" else ".ipynb"
        lines.append(f"{'  ' * depth}- [{title}]({entry}{suffix})" + (f": {line}" if line else ""))
    return "\n".join(lines) + "\n"


def write_chapter_list(book_dir: Path, notebooks_dir: Path, generated: Path) -> Path:
    """Write :func:`chapter_list` to ``generated/chapters.md`` (included by ``intro.md``)."""
    path = generated / CHAPTER_LIST
    path.write_text(chapter_list(book_dir, notebooks_dir))
    return path


def anchor_claim_sections(cells) -> dict[str, int]:
    """Put a MyST target ``(claim-<id>)=`` for each claim a code cell records before the nearest heading above it.

    ``cells``: a notebook's cells (nbformat), changed in place; no cell is added or removed,
    so cell numbers in error messages stay those of the source. The target makes the
    section's HTML carry the id :func:`sae_paper.report.claims.claim_anchor` gives. Returns claim id
    → the index of the Markdown cell whose (last) heading got its target.
    """
    anchored: dict[str, int] = {}
    heading_cell = None
    for index, cell in enumerate(cells):
        if cell.cell_type == "markdown" and HEADING.search(cell.source):
            heading_cell = index
        elif cell.cell_type == "code" and heading_cell is not None:
            for claim_id in RECORD_CALL.findall(cell.source):
                anchored.setdefault(claim_id, heading_cell)
    for index in sorted(set(anchored.values())):
        targets = "".join(f"({claim_anchor(c)})=\n" for c, i in anchored.items() if i == index)
        source = cells[index].source
        last = list(HEADING.finditer(source))[-1].start()
        cells[index].source = source[:last] + targets + source[last:]
    return anchored


def _assignments(source: str) -> dict[str, str]:
    """``name = value`` lines of a parameters cell: name → the value's source text (comments dropped)."""
    import ast

    values = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = ast.get_source_segment(source, node.value) or ""
    return values


def _same(a: str, b: str) -> bool:
    """Whether two parameter values' source texts mean the same value (a profile's YAML list equals a tuple default)."""
    import ast

    def plain(value):
        return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value

    try:
        return plain(ast.literal_eval(a)) == plain(ast.literal_eval(b))
    except (ValueError, SyntaxError):
        return a.strip() == b.strip()


def show_parameters_once(cells, profile: str) -> int:
    """Show an executed notebook's parameters once, as what this build changed.

    The notebook's own ``parameters`` cell (its defaults) and papermill's ``injected-parameters``
    cell (the profile's values, every one of them) would show the same names twice, 30–45 lines
    each. Both get the ``remove-cell`` tag, and the injected cell becomes a Markdown table of the
    parameters whose value differs from the notebook's default. ``cells``: an executed notebook's
    cells, changed in place (no cell added or removed). Returns how many parameters differ.
    """
    defaults_cell = next((c for c in cells if "parameters" in c.metadata.get("tags", [])), None)
    injected_cell = next((c for c in cells if "injected-parameters" in c.metadata.get("tags", [])), None)
    if injected_cell is None:
        return 0
    defaults = _assignments(defaults_cell.source) if defaults_cell is not None else {}
    injected = _assignments(injected_cell.source)
    changed = {k: v for k, v in injected.items() if k != "profile" and not (k in defaults and _same(v, defaults[k]))}

    def code(text: str) -> str:
        return "`" + " ".join(text.split()).replace("|", "\\|").replace("`", "'") + "`"

    if changed:
        rows = [f"| `{name}` | {code(value)} | {code(defaults[name]) if name in defaults else '—'} |"
                for name, value in changed.items()]
        text = (f"**Parameters** of this build (profile `{profile}`): the {len(changed)} that differ from the notebook's "
                f"defaults; the other {len(injected) - len(changed) - ('profile' in injected)} are as the notebook sets "
                "them.\n\n| parameter | this build | the notebook's default |\n|---|---|---|\n" + "\n".join(rows))
    else:
        text = f"**Parameters** of this build (profile `{profile}`): all as the notebook sets them."
    if defaults_cell is not None and "remove-cell" not in defaults_cell.metadata["tags"]:
        defaults_cell.metadata["tags"].append("remove-cell")
    injected_cell.cell_type = "markdown"
    injected_cell.source = text
    for key in ("outputs", "execution_count"):
        injected_cell.pop(key, None)
    return len(changed)


def widen_notebook_page(notebook) -> None:
    """Give an executed notebook's page the width of the right-hand table of contents, as :data:`WIDE_PAGE` does for a
    Markdown page: its wide figures (Figure 16's panels, Figure 5's tree) are then drawn large enough to read, and
    ``book/_static/figures.js`` opens any figure still shrunk at its natural size on a click."""
    notebook.metadata["html_theme.sidebar_secondary.remove"] = True
