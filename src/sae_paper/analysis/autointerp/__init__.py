"""Automated interpretability (Section 3 and Appendices A, C, G of the paper; Bills et al. 2023).

Explain → simulate → score for the features of any :class:`~sae_paper.core.decompositions.Decomposition`:

- :mod:`.fragments`: 64-token fragments, each feature's activation on every token, rescaling to
  0..10, top/random fragment selection, skipped-feature counting, activation moments (Table 2);
- :mod:`.backends`: the explainer/simulator interface and the ``token-list`` stand-in (not an LLM),
  with every model call cached on disk and failures counted, never scored as 0;
- :mod:`.openai_compatible`: the ``openai-compatible`` HTTP client; :mod:`.local`: the in-process
  llama-cpp backend;
- :mod:`.scoring`: top-and-random and random-only correlation scores, 95 % CIs over features; each
  method's scores stored beside the calls, keyed by :mod:`.fingerprints` (content hashes);
- :mod:`.token_list`: the ``token-list`` stand-in's rules over all fragments at once (the scorer's fast path);
- :mod:`.registry`: backends by name (``make_backend``), above both the interface and the local backend;
- :mod:`.testserver`: a localhost server speaking the OpenAI API, for tests.

Notebook 02's parameters, the decompositions it scores and its verdicts are a chapter's:
:mod:`sae_paper.chapters.autointerp`.
"""

from sae_paper.analysis.autointerp.backends import (
    ActivationRecord,
    Backend,
    BackendFailure,
    Cached,
    CallCache,
    TokenListBackend,
)
from sae_paper.analysis.autointerp.fragments import (
    Fragments,
    FragmentSpec,
    fragment_activations,
    load_fragments,
    rescale,
)
from sae_paper.analysis.autointerp.openai_compatible import OpenAICompatibleBackend
from sae_paper.analysis.autointerp.registry import BACKENDS, make_backend
from sae_paper.analysis.autointerp.scoring import (
    FeatureResult,
    MethodResult,
    MethodSummary,
    ScoringConfig,
    correlation,
    score_decomposition,
    score_feature,
    summarize,
    summary_table,
)

__all__ = [
    "BACKENDS", "ActivationRecord", "Backend", "BackendFailure", "Cached", "CallCache", "OpenAICompatibleBackend",
    "TokenListBackend", "make_backend", "FragmentSpec", "Fragments", "fragment_activations", "load_fragments", "rescale",
    "FeatureResult", "MethodResult", "MethodSummary", "ScoringConfig", "correlation", "score_decomposition",
    "score_feature", "summarize", "summary_table",
]
