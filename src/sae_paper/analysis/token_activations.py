"""Activations with the tokens they sit on, and the token classes features are judged by.

Section 5 looks at single features through the tokens they fire on. This module gives every
view of :mod:`sae_paper.analysis.feature_stats` and :mod:`sae_paper.analysis.feature_contexts`
the same input: a corpus's activations at a site with their token ids and positions
(:class:`TokenActivations`, harvested once and cached), a decomposition's codes on them in
bounded memory (:func:`feature_codes`), and the token classes of the paper's examples
(apostrophes, newlines, closing brackets, text inside brackets).

Position 0 of every context is the BOS token ``<|endoftext|>``, whose residual activation
is an outlier of huge norm that no SAE is trained on; it is never part of the statistics.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from sae_paper.core.decompositions import Decomposition, interpretable_codes
from sae_paper.data.activations import HarvestSpec, harvest
from sae_paper.data.models import Site, model_spec
from sae_paper.data.text import load_contexts
from sae_paper.errors import SaePaperError

CODE_BATCH = 8192
"""Rows encoded at a time (bounds memory: rows × n_features floats)."""


# --------------------------------------------------------------------------------------
# Activations with their tokens
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenActivations:
    """A site's activations at every non-BOS position of some contexts, with their tokens.

    Row ``r`` of :attr:`rows` is position ``r % (ctx_len − 1) + 1`` of context
    ``r // (ctx_len − 1)``: the layout of the harvest cache, restricted to whole contexts.
    """

    contexts: Int[Tensor, "n_ctx ctx_len"]
    """Token ids, BOS at position 0."""
    rows: Float[Tensor, "n_rows d_in"]
    sources: tuple[tuple[str, int], ...] = ()
    """(text source, number of contexts) for each part, in order (see :meth:`concat`)."""

    def __post_init__(self) -> None:
        if self.contexts.ndim != 2 or self.rows.ndim != 2:
            raise SaePaperError(f"contexts must be [n_ctx, ctx_len] and rows [n_rows, d], got "
                                f"{tuple(self.contexts.shape)} and {tuple(self.rows.shape)}")
        expected = self.contexts.shape[0] * (self.contexts.shape[1] - 1)
        if self.rows.shape[0] != expected:
            raise SaePaperError(f"{self.contexts.shape[0]} contexts of {self.contexts.shape[1]} tokens need "
                                f"{expected} activation rows (BOS excluded), got {self.rows.shape[0]}")

    @property
    def per_context(self) -> int:
        return self.contexts.shape[1] - 1

    @property
    def tokens(self) -> Int[Tensor, " n_rows"]:
        """The token at each row's position."""
        return self.contexts[:, 1:].reshape(-1)

    @property
    def previous_tokens(self) -> Int[Tensor, " n_rows"]:
        """The token before each row's position (BOS for position 1)."""
        return self.contexts[:, :-1].reshape(-1)

    @property
    def next_tokens(self) -> Int[Tensor, " n_rows"]:
        """The token after each row's position (-1 at the last position of a context)."""
        padded = torch.cat([self.contexts[:, 2:], torch.full_like(self.contexts[:, :1], -1)], dim=1)
        return padded.reshape(-1)

    def locate(self, rows: Int[Tensor, " k"]) -> tuple[Int[Tensor, " k"], Int[Tensor, " k"]]:
        """(context index, position) of each row."""
        return rows // self.per_context, rows % self.per_context + 1

    def source_mask(self, name: str) -> Bool[Tensor, " n_rows"]:
        """Rows that come from the named text source."""
        mask = torch.zeros(self.contexts.shape[0], dtype=torch.bool)
        start = 0
        for source, count in self.sources:
            if source == name:
                mask[start : start + count] = True
            start += count
        if not any(source == name for source, _ in self.sources):
            raise SaePaperError(f"no contexts from {name!r}; sources here: {', '.join(s for s, _ in self.sources)}")
        return mask.repeat_interleave(self.per_context)

    @staticmethod
    def concat(parts: Sequence["TokenActivations"]) -> "TokenActivations":
        """One set from several (same context length and width), keeping each part's source."""
        if not parts:
            raise SaePaperError("nothing to concatenate")
        return TokenActivations(
            torch.cat([p.contexts for p in parts]),
            torch.cat([p.rows for p in parts]),
            tuple(s for p in parts for s in p.sources),
        )


@torch.no_grad()
def collect_activations(model, site: Site, contexts: Int[Tensor, "n_ctx ctx_len"], *,
                        batch_size: int = 32, source: str = "") -> TokenActivations:
    """Run ``contexts`` up to ``site`` and keep its activations at every non-BOS position (in memory)."""
    captured: list[Tensor] = []

    def hook(activation: Tensor, hook=None) -> Tensor:
        captured.append(activation[:, 1:].reshape(-1, activation.shape[-1]).float().cpu())
        return activation

    for start in range(0, len(contexts), batch_size):
        model.run_with_hooks(contexts[start : start + batch_size], fwd_hooks=[(site.hook_name, hook)],
                             stop_at_layer=site.layer + 1)
    return TokenActivations(contexts, torch.cat(captured), ((source, len(contexts)),))


def cached_activations(model_fn: Callable[[], object], spec: HarvestSpec, site: Site, *, tokenizer=None,
                       batch_size: int = 32) -> TokenActivations:
    """The harvest cache of ``spec`` at ``site`` (harvested on first use) with its contexts.

    The contexts are rebuilt with :func:`sae_paper.data.text.load_contexts` exactly as the
    harvest built them. Every non-BOS position of the contexts that hold the spec's rows is
    returned, those the separator-row policy drops included: a case study shows which
    tokens a feature fires on, and at the early layers it inspects the separators and first
    tokens are not outliers. ``model_fn`` gives the loaded model; it is called only if
    something must be harvested or no ``tokenizer`` is given.
    """
    from sae_paper.data.activations import ActivationCache, complete

    folder = spec.folder() / str(site)
    if complete(folder, spec.n_tokens):
        cache = ActivationCache(folder, n_rows=spec.n_tokens)
    else:
        cache = harvest(model_fn(), spec, [site], batch_size=batch_size, progress=False)[site]
    tokenizer = tokenizer if tokenizer is not None else model_fn().tokenizer
    contexts = load_contexts(spec.source, tokenizer, n_contexts=cache.n_contexts, context_length=spec.context_length,
                             bos_token_id=model_spec(spec.model).bos_token_id, split=spec.split, seed=spec.seed,
                             max_document_tokens=spec.max_document_tokens)
    rows, _ = cache.read_aligned()
    return TokenActivations(contexts, rows, ((spec.source, cache.n_contexts),))


def feature_codes(decomposition: Decomposition, rows: Float[Tensor, "n d_in"],
                  features: Sequence[int] | int) -> Float[Tensor, "n k"]:
    """Non-negative activations of the chosen features on every row (``[n]`` for one feature)."""
    single = isinstance(features, int)
    index = torch.tensor([features] if single else list(features), dtype=torch.long)
    out = torch.cat([interpretable_codes(decomposition, rows[s : s + CODE_BATCH])[:, index]
                     for s in range(0, len(rows), CODE_BATCH)])
    return out[:, 0] if single else out


# --------------------------------------------------------------------------------------
# Token labels and classes
# --------------------------------------------------------------------------------------


def token_text(tokenizer, token_id: int) -> str:
    """The decoded text of one token."""
    return tokenizer.decode([int(token_id)])


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Byte-level BPE's printable stand-ins (GPT-2, GPT-NeoX, SmolLM2: ``Ġ`` for a space, ...) → the byte."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}


def token_bytes(tokenizer, token_id: int) -> bytes | None:
    """The raw bytes one token stands for, or None when the tokenizer's pieces are not byte-level.

    A byte-level BPE token may hold part of a UTF-8 character (``'ə'`` is two bytes, often two
    tokens); decoding it alone gives U+FFFD, which says nothing. Its bytes do.
    """
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    fallback = re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", piece or "")  # SentencePiece's byte fallback
    if fallback:
        return bytes([int(fallback[1], 16)])
    decoder = _byte_decoder()
    if piece and all(char in decoder for char in piece):
        return bytes(decoder[char] for char in piece)
    return None


def token_display(tokenizer, token_id: int) -> str:
    """One token's text for a reader: as decoded, except that bytes of a UTF-8 character split across tokens show
    as escapes (``\\xc9``) instead of U+FFFD. For display only: rules that classify tokens use :func:`token_text`."""
    text = token_text(tokenizer, token_id)
    if "\ufffd" not in text:
        return text
    raw = token_bytes(tokenizer, token_id)
    return raw.decode("utf-8", errors="backslashreplace") if raw is not None else text.replace("\ufffd", "\\ufffd")


def tokens_display(tokenizer, token_ids) -> str:
    """A run of tokens as one text for a reader: decoded together (a character split over two tokens is whole again),
    falling back to :func:`token_display` per token where the run itself starts or ends inside a character."""
    ids = [int(t) for t in token_ids]
    text = tokenizer.decode(ids)
    return text if "\ufffd" not in text else "".join(token_display(tokenizer, t) for t in ids)


def token_label(tokenizer, token_id: int) -> str:
    """A token as a reader sees it in a legend: quoted, with newlines and tabs escaped."""
    text = token_display(tokenizer, token_id)
    return '"' + text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t") + '"'


def token_mask(tokenizer, token_ids: Int[Tensor, " n"], predicate: Callable[[str], bool]) -> Bool[Tensor, " n"]:
    """Which of ``token_ids`` satisfy ``predicate(decoded text)`` (each distinct id decoded once)."""
    unique, inverse = torch.unique(token_ids, return_inverse=True)
    keep = torch.tensor([bool(predicate(token_text(tokenizer, t))) if t >= 0 else False for t in unique.tolist()],
                        dtype=torch.bool)
    return keep[inverse]


def has_apostrophe(text: str) -> bool:
    """A token holding an apostrophe (straight or curly): ``'``, ``'s``, ``n't``, ``"'``, ..."""
    return "'" in text or "\u2019" in text


def is_newline(text: str) -> bool:
    """A token made only of line breaks (and the indentation after them)."""
    return "\n" in text and not text.strip()


def is_closing_bracket(text: str) -> bool:
    """A token that closes a bracket and holds no letters or digits: ``)``, ``),``, ``]``, ``})``, ..."""
    stripped = text.strip()
    return any(c in stripped for c in ")]}") and not any(c.isalnum() for c in stripped)


def vocabulary_mask(tokenizer, vocab_size: int, predicate: Callable[[str], bool]) -> Bool[Tensor, " d_vocab"]:
    """Which token ids ``0..vocab_size−1`` satisfy ``predicate(decoded text)``."""
    return torch.tensor([bool(predicate(token_text(tokenizer, i))) for i in range(vocab_size)], dtype=torch.bool)


def inside_brackets(contexts: Int[Tensor, "n_ctx ctx_len"], tokenizer) -> Bool[Tensor, " n_rows"]:
    """For each non-BOS position, whether a round bracket opened earlier in the context (or by
    this token) is still open after this token: the "tokens in parentheses" of Section 5.3."""
    unique, inverse = torch.unique(contexts[:, 1:], return_inverse=True)
    texts = [token_text(tokenizer, t) for t in unique.tolist()]
    change = torch.tensor([t.count("(") - t.count(")") for t in texts], dtype=torch.long)[inverse]
    return (change.cumsum(dim=1) > 0).reshape(-1)
