"""A Sphinx extension that serves MathJax 3 from the book's own ``_static``: equations render offline.

Sphinx's default ``mathjax_path`` is a CDN address, so a book opened on a machine without
internet shows raw TeX (``\\(x \\in \\mathbb{R}^{d}\\)``). This book is offline-first, so
``_config.yml`` loads this extension (``sphinx: extra_extensions``), which

1. points ``mathjax_path`` at ``_static/mathjax/tex-mml-chtml.js`` (the component Sphinx
   would otherwise fetch), and
2. after a successful build copies that component, its CommonHTML web fonts and the TeX /
   MathML extensions it may autoload from the installed MathJax into ``_static/mathjax``.

MathJax comes from a registry package that ``scripts/setup.sh`` installs with the ``book``
extra: ``django-static-mathjax`` on PyPI, MathJax 3.2.2's own distribution files (no
Django needed to read them). Nothing is fetched at build or read time.

The copy happens here rather than through ``html_static_path`` because Jupyter Book 1 adds
*every* ``.js`` file found under a static path to every page, which would load MathJax's
hundreds of modules on each page.
"""

from __future__ import annotations

from pathlib import Path

from sae_paper.errors import SaePaperError

DISTRIBUTION = "django-static-mathjax"
COMPONENT = "tex-mml-chtml.js"
"""The MathJax component: TeX and MathML input, CommonHTML output (Sphinx's default choice)."""
TARGET = "mathjax"
"""Folder under the HTML output's ``_static``."""
PARTS = (COMPONENT, "output/chtml/fonts/woff-v2", "input/tex/extensions", "input/mml/extensions", "ui")
"""What the component needs besides itself: its fonts, the extensions it autoloads, the menu."""


def mathjax_source() -> Path:
    """The installed MathJax 3 ``es5`` folder; one-line error naming the package if it is missing."""
    from importlib import metadata

    try:
        folder = Path(metadata.distribution(DISTRIBUTION).locate_file("mathjax/static/mathjax/es5"))
    except metadata.PackageNotFoundError:
        folder = None
    if folder is None or not (folder / COMPONENT).is_file():
        raise SaePaperError(f"MathJax 3 is not installed (the PyPI package {DISTRIBUTION}, in the 'book' extra); "
                            "run scripts/setup.sh")
    return folder


def copy_mathjax(static_dir: Path) -> Path:
    """Copy the component and what it loads into ``static_dir/mathjax``; return that folder."""
    import shutil

    source = mathjax_source()
    target = static_dir / TARGET
    for part in PARTS:
        path = source / part
        if path.is_dir():
            shutil.copytree(path, target / part, dirs_exist_ok=True)
        elif path.is_file():
            (target / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / part)
    return target


def _configure(app, config) -> None:
    from sphinx.errors import ExtensionError

    try:
        mathjax_source()
    except SaePaperError as error:
        raise ExtensionError(str(error)) from None
    config.mathjax_path = f"{TARGET}/{COMPONENT}"  # relative: Sphinx serves it from _static


def _copy(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        copy_mathjax(Path(app.outdir) / "_static")


def setup(app):
    """Sphinx entry point (``extra_extensions: [sae_paper.book.offline_math]``)."""
    app.connect("config-inited", _configure)
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
