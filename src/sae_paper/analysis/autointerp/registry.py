"""Backends by name: ``make_backend("token-list" | "openai-compatible" | "local", **options)``.

The registry sits above :mod:`.backends` and the modules that build on its interface
(:mod:`.openai_compatible`, :mod:`.local`), so none imports the others' dependents.
"""

from __future__ import annotations

from collections.abc import Callable

from sae_paper.analysis.autointerp.backends import Backend, TokenListBackend
from sae_paper.analysis.autointerp.openai_compatible import OpenAICompatibleBackend
from sae_paper.errors import SaePaperError

# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------


def _local(**options) -> Backend:
    from sae_paper.analysis.autointerp.local import LocalBackend

    return LocalBackend(**options)


BACKENDS: dict[str, Callable[..., Backend]] = {
    "token-list": TokenListBackend,
    "openai-compatible": OpenAICompatibleBackend,
    "local": _local,
}


def make_backend(name: str, **options) -> Backend:
    """A backend by name (``token-list``, ``openai-compatible``, ``local``) with its options (model, base_url, ...)."""
    if name not in BACKENDS:
        raise SaePaperError(f"unknown autointerp backend {name!r}; known: {', '.join(BACKENDS)}")
    return BACKENDS[name](**{k: v for k, v in options.items() if v is not None})
