"""The analysis layer: the paper's methods for reading features, applied to any decomposition
from :mod:`sae_paper.core`, with no verdict and no chapter in them.

- :mod:`.autointerp`: explain → simulate → score (Section 3), its backends and call cache;
- :mod:`.ioi_prompts`, :mod:`.patching`, :mod:`.patching_curves`: IOI prompts, feature patching and
  the ACDC-ordered curves of Figure 3 (Section 4);
- :mod:`.token_activations`, :mod:`.feature_stats`, :mod:`.feature_contexts`: a feature's tokens,
  histograms, precision and recall, top contexts (Section 5);
- :mod:`.ablation`, :mod:`.causal_tree`: a feature's logit effect and its upstream tree (Figure 5).

It may import :mod:`sae_paper.core`, :mod:`sae_paper.data` and :mod:`sae_paper.errors`. Whether a
number reproduces the paper is decided above, in :mod:`sae_paper.chapters`.
"""
