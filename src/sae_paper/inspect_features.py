"""Looking at single features: which tokens they fire on, how strongly, and in what context.

Section 5 of the paper shows what individual dictionary features mean with three views,
all of which are here for any :class:`~sae_paper.decompositions.Decomposition` (an SAE,
the neuron / residual basis, PCA, ...):

- **Token histogram per activation bin** (Figure 4 left, Figures 11–15): over every
  token where the feature fires, split its activation range into equal-width bins and
  count the tokens in each, stacked by token; a few tokens are named, the rest are
  "other". A monosemantic feature shows one kind of token, above all at high
  activation; a polysemantic direction (Figure 11) shows different tokens in different
  ranges. :func:`token_histogram`.
- **Top-activating contexts**, the firing token highlighted and every token shaded by
  the feature's activation. :func:`top_contexts`, :func:`contexts_html`.
- **The most active features on one token of a prompt** (Appendix D.3: run
  ``" I don't know about that. It is now up to Dave\\"'"`` and rank the features on the
  final apostrophe). :func:`features_on_token`.

To find features by what they fire on (the single-token features of Section 5: periods,
``" the"``, newlines; or the 'If'-in-code and apostrophe features of Appendix D),
:func:`class_stats` counts, for every feature at once, how often it fires and how often
on a given class of tokens: the *precision* (share of its firings on the class; "fires
only on periods" means precision near 1) and the *recall* (share of the class it fires on).

Position 0 of every context is the BOS token ``<|endoftext|>``, whose residual activation
is an outlier of huge norm that no SAE is trained on; it is never part of the statistics.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from sae_paper import SaePaperError
from sae_paper.activations import HarvestSpec, harvest
from sae_paper.data import load_contexts
from sae_paper.decompositions import Decomposition, interpretable_codes
from sae_paper.models import Site, model_spec

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

    The contexts are rebuilt with :func:`sae_paper.data.load_contexts` exactly as the
    harvest built them. Every non-BOS position of the contexts that hold the spec's rows is
    returned, those the separator-row policy drops included: a case study shows which
    tokens a feature fires on, and at the early layers it inspects the separators and first
    tokens are not outliers. ``model_fn`` gives the loaded model; it is called only if
    something must be harvested or no ``tokenizer`` is given.
    """
    from sae_paper.activations import ActivationCache, complete

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


def token_label(tokenizer, token_id: int) -> str:
    """A token as a reader sees it in a legend: quoted, with newlines and tabs escaped."""
    text = token_text(tokenizer, token_id)
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


# --------------------------------------------------------------------------------------
# Token histogram per activation bin (Figure 4 left, Figures 11-15)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenHistogram:
    """Counts of the tokens a feature fires on, per equal-width activation bin."""

    edges: Float[Tensor, " n_bins_plus_1"]
    """Bin edges from 0 to the largest activation."""
    token_ids: tuple[int, ...]
    """The named tokens (the columns of :attr:`counts` but the last)."""
    labels: tuple[str, ...]
    """Their labels, then "other"."""
    counts: Int[Tensor, "n_bins n_named_plus_1"]
    """Tokens per bin and per named token; the last column is every other token."""

    @property
    def n_firing(self) -> int:
        return int(self.counts.sum())

    def top_per_bin(self, k: int = 3) -> list[list[tuple[str, int]]]:
        """For each bin, its ``k`` most frequent named tokens with their counts."""
        out = []
        for row in self.counts:
            order = row[:-1].argsort(descending=True)[:k]
            out.append([(self.labels[i], int(row[i])) for i in order if row[i] > 0])
        return out


def activation_bins(activation: Float[Tensor, " n"], n_bins: int) -> tuple[Float[Tensor, " b1"], Int[Tensor, " n"]]:
    """Equal-width bins over (0, max]: the edges and each value's bin (values must be > 0)."""
    top = float(activation.max())
    edges = torch.linspace(0.0, top, n_bins + 1)
    index = (activation / top * n_bins).floor().long().clamp(0, n_bins - 1)
    return edges, index


def token_histogram(
    activation: Float[Tensor, " n"],
    tokens: Int[Tensor, " n"],
    *,
    n_bins: int = 10,
    n_named: int = 8,
    label: Callable[[int], str] = str,
) -> TokenHistogram:
    """Histogram of the tokens where ``activation > 0``, split into ``n_bins`` activation bins.

    Named tokens: the most frequent token of each bin (so every range shows what leads
    it), then the most frequent tokens overall, up to ``n_named``; the rest is "other".
    The counts add up to the number of firing tokens.
    """
    if activation.shape != tokens.shape or activation.ndim != 1:
        raise SaePaperError(f"activation and tokens must be equal-length vectors, got {tuple(activation.shape)} and {tuple(tokens.shape)}")
    fired = activation > 0
    if not fired.any():
        raise SaePaperError("the feature never fires on these tokens: no histogram to draw")
    values, ids = activation[fired].float(), tokens[fired]
    edges, index = activation_bins(values, n_bins)
    unique, column = torch.unique(ids, return_inverse=True)
    table = torch.zeros(n_bins, len(unique), dtype=torch.long)
    table.index_put_((index, column), torch.ones_like(index), accumulate=True)
    named: list[int] = []
    for row in reversed(list(table)):  # each bin's leader first, highest bin first
        if row.sum() > 0:
            leader = int(row.argmax())
            if leader not in named and len(named) < n_named:
                named.append(leader)
    for candidate in table.sum(dim=0).argsort(descending=True).tolist():
        if len(named) >= n_named:
            break
        if candidate not in named:
            named.append(candidate)
    named_index = torch.tensor(named, dtype=torch.long)
    counts = torch.cat([table[:, named_index], (table.sum(dim=1) - table[:, named_index].sum(dim=1)).unsqueeze(1)], dim=1)
    token_ids = tuple(int(unique[i]) for i in named)
    return TokenHistogram(edges, token_ids, tuple(label(t) for t in token_ids) + ("other",), counts)


def class_share_per_bin(activation: Float[Tensor, " n"], in_class: Bool[Tensor, " n"], n_bins: int = 10) -> Float[Tensor, " n_bins"]:
    """For each activation bin of :func:`token_histogram`, the share of firing tokens in a class (NaN if empty)."""
    fired = activation > 0
    _, index = activation_bins(activation[fired].float(), n_bins)
    total = torch.bincount(index, minlength=n_bins).double()
    hits = torch.bincount(index, weights=in_class[fired].double(), minlength=n_bins)
    return (hits / total).float()


# --------------------------------------------------------------------------------------
# Top-activating contexts
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContextExample:
    """A window of tokens around one position where a feature fired."""

    context: int
    position: int
    activation: float
    token_ids: tuple[int, ...]
    activations: tuple[float, ...]
    """The feature's activation on each token of the window."""
    focus: int
    """Index of the firing token within the window."""


def top_contexts(
    acts: TokenActivations,
    activation: Float[Tensor, " n_rows"],
    *,
    k: int = 10,
    before: int = 12,
    after: int = 4,
    distinct_contexts: bool = True,
    order: Int[Tensor, " m"] | None = None,
) -> list[ContextExample]:
    """The ``k`` highest activations, each with ``before``/``after`` tokens of context.

    ``activation`` is the feature's activation on every row of ``acts`` (e.g. from
    :func:`feature_codes`). With ``distinct_contexts`` each context is shown at most once.
    ``order``: the rows to take examples from, in that order, instead of all rows from the
    highest activation down (e.g. the firing rows shuffled, for random firing contexts); a
    row where the feature does not fire ends the list.
    """
    order = activation.argsort(descending=True) if order is None else order
    examples: list[ContextExample] = []
    used: set[int] = set()
    per_context = activation.reshape(-1, acts.per_context)
    for row in order.tolist():
        value = float(activation[row])
        if value <= 0 or len(examples) >= k:
            break
        context, position = (int(v) for v in acts.locate(torch.tensor(row)))
        if distinct_contexts and context in used:
            continue
        used.add(context)
        start, stop = max(1, position - before), min(acts.contexts.shape[1], position + after + 1)
        window = acts.contexts[context, start:stop].tolist()
        values = per_context[context, start - 1 : stop - 1].tolist()
        examples.append(ContextExample(context, position, value, tuple(window), tuple(values), position - start))
    return examples


class HtmlBlock(str):
    """A string that a notebook shows as HTML (so library functions can return displayable HTML)."""

    def _repr_html_(self) -> str:
        return str(self)


def contexts_html(examples: Sequence[ContextExample], tokenizer, *, title: str = "") -> HtmlBlock:
    """The examples as an HTML table: each token shaded by activation, the firing token boxed."""
    top = max((max(e.activations) for e in examples), default=1.0) or 1.0
    lines = ['<table style="font-family:monospace;font-size:85%;border-collapse:collapse">']
    if title:
        lines.append(f'<caption style="text-align:left">{html.escape(title)}</caption>')
    lines.append("<tr><th style='text-align:right'>act.</th><th style='text-align:left'>context</th></tr>")
    for example in examples:
        spans = []
        for i, (token, value) in enumerate(zip(example.token_ids, example.activations)):
            text = html.escape(token_text(tokenizer, token)).replace("\n", "↵").replace(" ", "&nbsp;")
            alpha = max(0.0, value) / top
            style = f"background:rgba(255,140,0,{alpha:.2f})"
            if i == example.focus:
                style += ";outline:1.5px solid #b00;font-weight:bold"
            spans.append(f'<span style="{style}">{text}</span>')
        lines.append(f"<tr><td style='text-align:right;padding-right:8px'>{example.activation:.2f}</td>"
                     f"<td style='text-align:left'>{''.join(spans)}</td></tr>")
    lines.append("</table>")
    return HtmlBlock("\n".join(lines))


def context_text(example: ContextExample, tokenizer) -> str:
    """One example as plain text, the firing token in ⟦ ⟧ (for logs and tests)."""
    parts = [token_text(tokenizer, t) for t in example.token_ids]
    parts[example.focus] = "⟦" + parts[example.focus] + "⟧"
    return "".join(parts).replace("\n", "↵")


# --------------------------------------------------------------------------------------
# The most active features on one token of a prompt (Appendix D.3)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenFeatures:
    """The features most active on one token of a prompt."""

    prompt_tokens: tuple[str, ...]
    token_index: int
    """Index into :attr:`prompt_tokens` (BOS not counted)."""
    features: tuple[int, ...]
    activations: tuple[float, ...]
    """Raw activations, in rank order."""
    scores: tuple[float, ...] = field(default=())
    """What the ranking used (activation / scale when a scale was given)."""

    @property
    def token(self) -> str:
        return self.prompt_tokens[self.token_index]


@torch.no_grad()
def prompt_activations(model, site: Site, prompt: str, bos_token_id: int = 0) -> tuple[Int[Tensor, " pos"], Float[Tensor, "pos d_in"]]:
    """The prompt's tokens (BOS prepended) and the site's activations on each."""
    ids = model.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    tokens = torch.tensor([[bos_token_id] + list(ids)])
    seen: dict[str, Tensor] = {}

    def hook(activation: Tensor, hook=None) -> Tensor:
        seen["x"] = activation[0].float()
        return activation

    model.run_with_hooks(tokens, fwd_hooks=[(site.hook_name, hook)], stop_at_layer=site.layer + 1)
    return tokens[0], seen["x"]


def features_on_token(
    model,
    site: Site,
    decomposition: Decomposition,
    prompt: str,
    *,
    token_index: int = -1,
    k: int = 10,
    scale: Float[Tensor, " n_features"] | None = None,
    bos_token_id: int = 0,
) -> TokenFeatures:
    """Rank features by their activation on token ``token_index`` of ``prompt`` (BOS is prepended, not counted).

    ``scale``: divide each feature's activation by it before ranking (e.g. each residual
    dimension's typical size over the data, so that outlier dimensions, large on every
    token, do not win by default). Negative codes count as not firing.
    """
    tokens, x = prompt_activations(model, site, prompt, bos_token_id)
    body = tokens[1:]
    index = token_index if token_index >= 0 else len(body) + token_index
    if not 0 <= index < len(body):
        raise SaePaperError(f"token_index {token_index} is outside the prompt's {len(body)} tokens")
    codes = interpretable_codes(decomposition, x[index + 1 : index + 2])[0]
    scores = codes if scale is None else codes / scale.clamp(min=1e-12)
    top = scores.topk(min(k, len(scores)))
    return TokenFeatures(
        prompt_tokens=tuple(token_text(model.tokenizer, t) for t in body.tolist()),
        token_index=index,
        features=tuple(top.indices.tolist()),
        activations=tuple(float(codes[i]) for i in top.indices),
        scores=tuple(top.values.tolist()),
    )


# --------------------------------------------------------------------------------------
# Finding features by the tokens they fire on
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassStats:
    """For every feature: how often it fires, how high, and how often on a class of tokens."""

    fire_counts: Int[Tensor, " n_features"]
    in_class: Int[Tensor, " n_features"]
    """Firings on rows of the class."""
    max_activation: Float[Tensor, " n_features"]
    mass: Float[Tensor, " n_features"]
    """Sum of each feature's activations."""
    in_class_mass: Float[Tensor, " n_features"]
    """... over the rows of the class."""
    class_size: int
    n_rows: int

    @property
    def precision(self) -> Float[Tensor, " n_features"]:
        """Share of each feature's firings that are on the class (0 for a feature that never fires)."""
        return self.in_class.double().div(self.fire_counts.clamp(min=1)).float()

    @property
    def mass_precision(self) -> Float[Tensor, " n_features"]:
        """Share of each feature's total activation that is on the class: like :attr:`precision`,
        but the many faint firings most features have at the bottom of their range count little."""
        return self.in_class_mass.div(self.mass.clamp(min=1e-12)).float()

    @property
    def recall(self) -> Float[Tensor, " n_features"]:
        """Share of the class's rows each feature fires on."""
        return self.in_class.double().div(max(self.class_size, 1)).float()

    @property
    def f1(self) -> Float[Tensor, " n_features"]:
        p, r = self.precision, self.recall
        return torch.where(p + r > 0, 2 * p * r / (p + r).clamp(min=1e-12), torch.zeros_like(p))

    @property
    def mass_f1(self) -> Float[Tensor, " n_features"]:
        """Harmonic mean of :attr:`mass_precision` and :attr:`recall`."""
        p, r = self.mass_precision, self.recall
        return torch.where(p + r > 0, 2 * p * r / (p + r).clamp(min=1e-12), torch.zeros_like(p))

    def best(self, k: int = 5, *, min_precision: float = 0.0, min_fires: int = 1, by_mass: bool = False) -> list[int]:
        """Up to ``k`` features by F1 (``by_mass``: by :attr:`mass_f1`, precision read as
        :attr:`mass_precision`), among those with at least that precision and firings."""
        precision, f1 = (self.mass_precision, self.mass_f1) if by_mass else (self.precision, self.f1)
        ok = (precision >= min_precision) & (self.fire_counts >= min_fires) & (self.in_class > 0)
        score = torch.where(ok, f1, torch.full_like(f1, -1.0))
        order = score.argsort(descending=True)[:k]
        return [int(i) for i in order if score[i] >= 0]


@torch.no_grad()
def class_stats(decomposition: Decomposition, rows: Float[Tensor, "n d_in"], in_class: Bool[Tensor, " n"]) -> ClassStats:
    """:class:`ClassStats` of every feature of ``decomposition`` over ``rows``, in one pass."""
    return multi_class_stats(decomposition, rows, {"class": in_class})["class"]


@torch.no_grad()
def multi_class_stats(decomposition: Decomposition, rows: Float[Tensor, "n d_in"],
                      classes: Mapping[str, Bool[Tensor, " n"]]) -> dict[str, ClassStats]:
    """:class:`ClassStats` for several token classes at once (the rows are encoded once)."""
    for name, mask in classes.items():
        if mask.shape != rows.shape[:1]:
            raise SaePaperError(f"the mask of class {name!r} must have one entry per row ({rows.shape[0]}), got {tuple(mask.shape)}")
    n = decomposition.n_features
    fires = torch.zeros(n, dtype=torch.long)
    top = torch.zeros(n)
    mass = torch.zeros(n, dtype=torch.float64)
    hits = {name: torch.zeros(n, dtype=torch.long) for name in classes}
    hit_mass = {name: torch.zeros(n, dtype=torch.float64) for name in classes}
    for start in range(0, len(rows), CODE_BATCH):
        codes = interpretable_codes(decomposition, rows[start : start + CODE_BATCH])
        fired = codes > 0
        fires += fired.sum(dim=0)
        top = torch.maximum(top, codes.max(dim=0).values)
        mass += codes.sum(dim=0, dtype=torch.float64)
        for name, mask in classes.items():
            chosen = mask[start : start + CODE_BATCH]
            hits[name] += fired[chosen].sum(dim=0)
            hit_mass[name] += codes[chosen].sum(dim=0, dtype=torch.float64)
    return {name: ClassStats(fires, hits[name], top, mass, hit_mass[name], int(mask.sum()), len(rows))
            for name, mask in classes.items()}


@torch.no_grad()
def top_tokens(
    decomposition: Decomposition,
    acts: TokenActivations,
    features: Sequence[int],
    tokenizer,
    *,
    k: int = 3,
) -> dict[int, list[str]]:
    """For each feature, the ``k`` tokens carrying the most of its total activation (labels)."""
    codes = feature_codes(decomposition, acts.rows, list(features))
    unique, column = torch.unique(acts.tokens, return_inverse=True)
    mass = torch.zeros(len(unique), len(features), dtype=torch.float64)
    mass.index_add_(0, column, codes.double())
    out = {}
    for j, feature in enumerate(features):
        order = mass[:, j].argsort(descending=True)[:k]
        out[int(feature)] = [token_label(tokenizer, int(unique[i])) for i in order if mass[i, j] > 0]
    return out


def unembed_direction(model, direction: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab"]:
    """Residual direction(s) read through the final norm's gain and the unembedding (Section 5.3).

    The norm's scale factor is positive and common to all tokens, so it is left out; a
    LayerNorm (Pythia) also centres the vector first; an RMSNorm (SmolLM2) does not.
    """
    norm = getattr(model.ln_final, "_original_component", model.ln_final)
    vector = direction.float()
    if getattr(norm, "bias", None) is not None:  # LayerNorm subtracts the mean over d_model
        vector = vector - vector.mean(dim=-1, keepdim=True)
    weight = getattr(norm, "weight", None)
    if weight is not None:
        vector = vector * weight.detach().float()
    return vector @ model.W_U.detach().float()
