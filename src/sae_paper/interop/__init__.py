"""The interop layer: our SAEs in other libraries' formats and back.

- :mod:`.saelens`: export to SAELens 6.x's folder format (``cfg.json`` and
  ``sae_weights.safetensors``) and import from it, byte-identical round trips, and our CE recovered
  beside SAEBench's convention.

It sits beside :mod:`sae_paper.analysis` and may import :mod:`sae_paper.core`,
:mod:`sae_paper.data` and :mod:`sae_paper.errors`; which SAEs the book exports is the book's
business (:mod:`sae_paper.book.exports`).
"""
