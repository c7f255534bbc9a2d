"""Reading a feature in context: its top-activating contexts, and the features on one token of a prompt.

- **Top-activating contexts**, the firing token highlighted and every token shaded by
  the feature's activation. :func:`top_contexts`, :func:`contexts_html`.
- **The most active features on one token of a prompt** (Appendix D.3: run
  ``" I don't know about that. It is now up to Dave\\"'"`` and rank the features on the
  final apostrophe). :func:`features_on_token`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor

from sae_paper.analysis.token_activations import TokenActivations, token_display
from sae_paper.core.decompositions import Decomposition, interpretable_codes
from sae_paper.data.models import Site
from sae_paper.errors import SaePaperError

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
            text = html.escape(token_display(tokenizer, token)).replace("\n", "↵").replace(" ", "&nbsp;")
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
    parts = [token_display(tokenizer, t) for t in example.token_ids]
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
        prompt_tokens=tuple(token_display(model.tokenizer, t) for t in body.tolist()),
        token_index=index,
        features=tuple(top.indices.tolist()),
        activations=tuple(float(codes[i]) for i in top.indices),
        scores=tuple(top.values.tolist()),
    )
