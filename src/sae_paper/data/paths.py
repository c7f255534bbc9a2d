"""Where things live: the read-only ``shared`` folder and the writable cache.

Both are settings, never absolute paths in code:

- ``SAE_PAPER_SHARED``: the folder with the paper digest, text data and model
  configs. Default: ``../shared`` beside the repository checkout (the checkout
  is found from this file for an editable install, else the working directory).
- ``SAE_PAPER_CACHE``: where activation caches and trained SAEs are kept.
  Default: ``$XDG_CACHE_HOME/sae-paper`` (``~/.cache/sae-paper``).
- ``SAE_PAPER_MODEL_CACHE``: where converted models (the dequantised SmolLM2) are kept.
  Default: ``models/`` under the cache above. Separate so that tests and experiments can
  use a scratch cache without converting the model again.
- ``SAE_PAPER_BOOK``: the Jupyter Book's folder (its config, and what ``sae-paper book``
  writes: ``generated/`` and ``_build/``). Default: ``book`` in the checkout. Another
  folder builds a second copy without touching the checkout's (the fault tests do).
- ``SAE_PAPER_BOOK_OUTPUT``: where notebooks write what the book shows besides their own
  outputs (claim records, provenance). Default: ``generated`` in the book's folder; the
  book runner points it at a staging folder while it executes the notebooks.
"""

from __future__ import annotations

import os
from pathlib import Path

from sae_paper.errors import SaePaperError

SHARED_ENV = "SAE_PAPER_SHARED"
CACHE_ENV = "SAE_PAPER_CACHE"
MODEL_CACHE_ENV = "SAE_PAPER_MODEL_CACHE"
BOOK_ENV = "SAE_PAPER_BOOK"
BOOK_OUTPUT_ENV = "SAE_PAPER_BOOK_OUTPUT"


def repo_root() -> Path:
    """The checkout this package was installed from (editable), else the working directory."""
    candidate = Path(__file__).resolve().parents[3]  # src/sae_paper/data/paths.py → the checkout
    if (candidate / "pyproject.toml").is_file():
        return candidate
    return Path.cwd()


def shared_dir() -> Path:
    """The ``shared`` folder, checked to exist; one clear error line if it does not."""
    setting = os.environ.get(SHARED_ENV)
    path = Path(setting).expanduser() if setting else repo_root().parent / "shared"
    if not path.is_dir():
        how = f"{SHARED_ENV}={setting}" if setting else f"the default {path} (set {SHARED_ENV} to change it)"
        raise SaePaperError(
            f"shared folder not found at {how}; it holds the data and model configs "
            "that cannot be downloaded here (see README: 'The shared folder')"
        )
    return path


def shared_file(*parts: str) -> Path:
    """A file under the shared folder, with an error naming it if it is missing."""
    path = shared_dir().joinpath(*parts)
    if not path.exists():
        raise SaePaperError(f"missing shared file {path}; the shared folder looks incomplete")
    return path


def cache_dir(*parts: str) -> Path:
    """A folder under the cache root, created on first use."""
    setting = os.environ.get(CACHE_ENV)
    if setting:
        root = Path(setting).expanduser()
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sae-paper"
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_cache_dir(*parts: str) -> Path:
    """A folder under the model cache, created on first use."""
    setting = os.environ.get(MODEL_CACHE_ENV)
    root = Path(setting).expanduser() if setting else cache_dir("models")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def book_dir() -> Path:
    """The Jupyter Book's folder (``SAE_PAPER_BOOK``, default ``book`` in the checkout)."""
    setting = os.environ.get(BOOK_ENV)
    return Path(setting).expanduser() if setting else repo_root() / "book"


def book_output_dir(*parts: str) -> Path:
    """A folder under the book's generated output (claim records, provenance), created on first use."""
    setting = os.environ.get(BOOK_OUTPUT_ENV)
    root = Path(setting).expanduser() if setting else book_dir() / "generated"
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
