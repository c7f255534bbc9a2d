"""The token-list stand-in over many fragments at once: explanations and simulations as lookups.

:class:`~sae_paper.analysis.autointerp.backends.TokenListBackend` is written like an LLM backend:
a JSON prompt per fragment, parsed back, each answer stored in the call cache. For a lookup that
is all overhead: scoring the default book's ~2,000 features cost minutes, warm or cold, of which
the rules themselves are a small part. :class:`TokenListScorer` applies the same rules to token
ids: every fragment token is mapped once to its normalised token
(:func:`~sae_paper.analysis.autointerp.backends.normal_token`); an explanation is a mean per
normalised token (``bincount``) ranked by
:func:`~sae_paper.analysis.autointerp.backends.token_list_explanation`; a simulation is one table
over the normalised tokens (the listed weights, else the largest listed symbol each contains),
indexed by the fragments' token ids. Same explanations, same predictions, no call cache (nothing to
save: the stand-in is deterministic and costs microseconds per fragment);
``tests/test_autointerp.py`` checks it against the reference backend on real fragments.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from sae_paper.analysis.autointerp.backends import (
    TokenListBackend,
    normal_token,
    token_list_explanation,
    token_list_weights,
)
from sae_paper.analysis.autointerp.fragments import Fragments


class TokenListScorer:
    """The token-list explainer and simulator for one fragment pool (see the module docstring)."""

    def __init__(self, backend: TokenListBackend, fragments: Fragments):
        self.backend = backend
        index: dict[str, int] = {}
        by_string: dict[str, int] = {}
        rows = []
        for strings in fragments.token_strings:
            row = []
            for token in strings:
                position = by_string.get(token)
                if position is None:
                    position = by_string[token] = index.setdefault(normal_token(token), len(index))
                row.append(position)
            rows.append(row)
        self.index = index
        """Normalised token → its id."""
        self.normal: list[str] = list(index)
        """Normalised token by id."""
        self.ids: Int[Tensor, "n_fragments pos"] = torch.tensor(rows, dtype=torch.long)
        self._contains: dict[str, Tensor] = {}

    def explain(self, fragments: Sequence[int], scaled: Int[Tensor, "n pos"]) -> str:
        """The explanation from ``fragments`` (indices) and the feature's activations 0..10 on them."""
        ids = self.ids[list(fragments)].flatten()
        sums = torch.bincount(ids, weights=scaled.flatten().double(), minlength=len(self.normal))
        counts = torch.bincount(ids, minlength=len(self.normal))
        present = counts.nonzero().flatten().tolist()
        means = (sums[present] / counts[present]).tolist()
        return token_list_explanation({self.normal[i]: m for i, m in zip(present, means)}, self.backend.max_tokens)

    def _symbol_mask(self, symbol: str) -> Tensor:
        """Which normalised tokens contain ``symbol`` (kept: the same symbols come back feature after feature)."""
        if symbol not in self._contains:
            self._contains[symbol] = torch.tensor([symbol in token for token in self.normal], dtype=torch.bool)
        return self._contains[symbol]

    def simulate(self, explanation: str, fragments: Sequence[int]) -> Float[Tensor, "n pos"]:
        """The predicted activation (0..10) on every token of ``fragments`` (indices), as float64."""
        weights, symbols = token_list_weights(explanation)
        table = torch.zeros(len(self.normal), dtype=torch.float64)
        for symbol, weight in symbols.items():
            table = torch.where(self._symbol_mask(symbol), torch.clamp(table, min=weight), table)
        listed = {self.index[t]: w for t, w in weights.items() if t in self.index}
        if listed:
            table[list(listed)] = torch.tensor(list(listed.values()), dtype=torch.float64)
        return table.clamp(0.0, 10.0)[self.ids[list(fragments)]]
