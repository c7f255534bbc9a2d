"""A Sphinx extension that takes Thebe (live code cells through Binder) out of the book's pages.

Jupyter Book 1 always loads ``sphinx_thebe``, which adds to every page a script declaring
``const THEBE_JS_URL`` (declared twice when its hook runs twice, which the browser reports as
an error on every page), a loader that would fetch Thebe from a CDN, and a configuration
pointing at a public Binder repository. This book is built offline from notebooks that need
the cache and ``../shared``, so no Binder could run them: the pages carry none of it.
``_config.yml`` loads this extension after Jupyter Book's own, and it disconnects
``sphinx_thebe``'s hooks and drops its stylesheet before any page is read.
"""

from __future__ import annotations

THEBE_MODULE = "sphinx_thebe"


def remove_thebe(app) -> int:
    """Disconnect every event handler ``sphinx_thebe`` registered and drop its CSS; return how many hooks went."""
    removed = 0
    for listeners in app.events.listeners.values():
        for listener in list(listeners):
            if getattr(listener.handler, "__module__", "").startswith(THEBE_MODULE):
                listeners.remove(listener)
                removed += 1
    app.registry.css_files = [(name, attrs) for name, attrs in app.registry.css_files if "thebe" not in str(name)]
    app.registry.js_files = [(name, attrs) for name, attrs in app.registry.js_files if "thebe" not in str(name)]
    return removed


def setup(app):
    """Sphinx entry point (``extra_extensions: [sae_paper.book.no_thebe]``)."""
    remove_thebe(app)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
