"""Notebook 04 (case studies, Section 5): its parameters, the shared steps, and its claim verdicts.

:class:`FeatureStudy` holds what notebooks 04 and 05 share: the SAE they inspect (the
main SAE of notebook 01: :meth:`FeatureStudy.main_config` builds the same
:class:`~sae_paper.core.config.RunConfig` from the same values, so :class:`~sae_paper.core.pipeline.Run`
finds it in the cache), and the text its features are inspected on: the SAE's own training
activations (Wikipedia) plus a conversational corpus (20 Newsgroups) for apostrophes and
contractions. :class:`CaseStudy` adds notebook 04's parameters (the logit-effect examples
and the causal tree).

The steps both notebooks use are functions here: :func:`load_corpus` (harvest once, cached),
:func:`find_by_prompt` (Appendix D.3's search: rank features on the apostrophe of a prompt,
then keep the candidate whose activation is most concentrated on apostrophes).
The verdict functions, each turning our numbers into the scoreboard's (ours, verdict, note)
by the :class:`~sae_paper.report.rules.Rule` beside it, are :mod:`sae_paper.chapters.case_verdicts`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from sae_paper.analysis.causal_tree import TreeNode
from sae_paper.analysis.feature_contexts import TokenFeatures, features_on_token
from sae_paper.analysis.feature_stats import ClassStats, multi_class_stats
from sae_paper.analysis.token_activations import TokenActivations, cached_activations, feature_codes, token_display
from sae_paper.chapters.study import SaeRunFields, check_n_seeds
from sae_paper.core.config import RunConfig
from sae_paper.core.decompositions import Decomposition, SaeDecomposition
from sae_paper.core.pipeline import Run
from sae_paper.data.activations import HarvestSpec
from sae_paper.data.models import Site, model_spec
from sae_paper.errors import SaePaperError
from sae_paper.report.markdown import code_span

NOTEBOOK = "04_case_studies"
PAPER_PROMPT = " I don't know about that. It is now up to Dave\"'"
"""Appendix D.3's prompt; the feature search looks at its final token (an apostrophe)."""
LONE_APOSTROPHE_PROMPT = " I don't know about that. It is now up to Dave'"
"""The same sentence ending in a lone apostrophe token (SmolLM2 merges ``"'`` into one token)."""


def _tuple_field(value: Any, name: str, notebook: str) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise SaePaperError(f"{notebook} parameter {name}={value!r}: must be a list")
    return tuple(value)


@dataclass(frozen=True)
class FeatureStudy(SaeRunFields):
    """Parameters shared by notebooks 04 and 05: the SAE to inspect and the text to inspect it on."""

    layer: int = 3
    """Residual-stream layer of the inspected SAE (notebook 01's main SAE)."""
    n_tokens: int = 49_152
    """Its training activations (also the Wikipedia part of the inspected text)."""
    ratio: float = 2.0
    """Its dictionary ratio R."""
    alpha: float | None = None
    """Its L1 coefficient (None: the model's residual default)."""
    epochs: int = 4
    """Its epochs."""
    batch_size: int = 128
    """Its batch size."""
    news_source: str = "20news"
    """Conversational text added to the inspected corpus (apostrophes, contractions)."""
    news_tokens: int = 24_576
    """Tokens of it (harvested once at the SAE's layer, then cached)."""
    prompts: tuple[str, ...] = (PAPER_PROMPT, LONE_APOSTROPHE_PROMPT)
    """Prompts whose final token is searched for the apostrophe feature (Appendix D.3)."""
    top_k: int = 10
    """Features ranked on that token; the apostrophe feature is chosen among them."""
    n_bins: int = 10
    """Activation bins of the token histograms."""
    n_named: int = 8
    """Tokens named in a histogram's legend (the rest are "other")."""
    min_fires: int = 20
    """A feature must fire at least this often on the inspected text to be chosen."""

    notebook = "04/05"

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompts", _tuple_field(self.prompts, "prompts", self.notebook))
        if not self.prompts:
            raise SaePaperError(f"{self.notebook} parameter prompts must not be empty")
        for name in ("news_tokens", "top_k", "n_bins", "n_named", "min_fires"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise SaePaperError(f"{self.notebook} parameter {name}={value!r}: must be a positive integer")
        Site("resid_post", self.layer).check(model_spec(self.model))
        self.main_config()  # validates the SAE's fields with one-line errors

    # --- what is inspected --------------------------------------------------------------

    @property
    def site(self) -> Site:
        return Site("resid_post", self.layer)

    def main_config(self) -> RunConfig:
        """Notebook 01's main SAE (the same fields as ``TrainingStudy.main_config``)."""
        alpha = model_spec(self.model).default_alpha("resid_post") if self.alpha is None else float(self.alpha)
        return RunConfig(
            model=self.model, layer=self.layer, site="resid_post", source=self.source, n_tokens=self.n_tokens,
            context_length=self.context_length, harvest_batch_size=self.harvest_batch_size, dtype=self.dtype,
            sae="tied", ratio=self.ratio, alpha=alpha, lr=self.lr, batch_size=self.batch_size, epochs=self.epochs,
            seed=self.seed, text_seed=self.text_order,
            eval_tokens=self.eval_tokens, alive_threshold=self.alive_threshold,
        )

    def corpus_specs(self) -> list[HarvestSpec]:
        """The inspected text: the SAE's training activations, then ``news_tokens`` of ``news_source``."""
        specs = [HarvestSpec(self.model, self.source, "train", self.n_tokens, self.context_length, self.dtype,
                             self.text_order)]
        if self.news_source and self.news_tokens:
            specs.append(HarvestSpec(self.model, self.news_source, "train", self.news_tokens, self.context_length,
                                     self.dtype, self.text_order))
        return specs

    def all_configs(self) -> list[RunConfig]:
        """Every SAE the notebook needs (for the book runner's validation)."""
        return [self.main_config()]

    def dictionary(self, seed: int | None = None) -> SaeDecomposition:
        """The main SAE at ``seed`` (None: the study's own), read from the cache or trained on the cached activations
        (another seed retrains it: initialisation and batch order)."""
        at = self if seed is None or seed == self.seed else self.reseeded(seed)
        return SaeDecomposition(Run(at.main_config(), progress=False).sae(), name=f"SAE {self.site}")

    def inspect(self, model, dictionary: Decomposition, corpus: TokenActivations,
                classes: Mapping[str, Tensor]) -> Inspection:
        """Everything Figure 4 (left) and Section 5 read off one SAE, by the notebook's procedure: each class's
        statistics, the prompt search's feature (Appendix D.3) and its activation, the best feature per class."""
        stats = multi_class_stats(dictionary, corpus.rows, classes)
        search = find_by_prompt(model, self.site, dictionary, self.prompts, stats["apostrophes"], k=self.top_k,
                                min_fires=self.min_fires)
        activation = feature_codes(dictionary, corpus.rows, search.chosen) if search.chosen >= 0 else None
        single = {}
        for name in classes:
            best = stats[name].best(1, min_fires=self.min_fires, by_mass=True)
            single[name] = (best[0] if best else -1, stats[name])
        return Inspection(stats, search, activation, single)


@dataclass(frozen=True)
class CaseStudy(FeatureStudy):
    """Parameters of notebook 04: Section 5's apostrophe feature, ablation and causal tree."""

    ablation_examples: int = 8
    """Top-activating contexts (one position each) the logit effect is averaged over."""
    logit_threshold: float = 0.1
    """Logit differences within ±this are not drawn (the paper's display cut)."""
    tree_layer: int | None = None
    """Layer of the tree's target feature (None: the SAE's layer; the paper: the model's last layer)."""
    tree_depth: int = 2
    """Layers the causal tree descends below the target's layer (each needs its own SAE)."""
    tree_n_tokens: int = 16_384
    """Training activations of the tree's SAEs other than the main SAE. Each is seeded with
    ``seed`` + its distance below the target's layer, so no two layers' SAEs start from the
    same random directions (short training leaves most features near their start, and
    same-seed SAEs would then look alike across layers for no reason but their seed)."""
    tree_contexts: int = 20
    """Contexts sampled with the target in [M/2, M] (the paper: 20)."""
    tree_branching: int = 3
    """Strongest parents kept per node."""
    tree_expand: int = 1
    """How many of those are traced a layer further down (the paper recursed on the strong ones)."""
    tree_candidates: int = 8
    """Features ablated exactly per node, chosen by a first-order estimate (0: all firing features)."""
    unembed_k: int = 10
    """Top unembedded tokens checked for closing brackets when picking the tree's target."""
    sae_budgets: tuple[int, ...] = (49_152, 196_608)
    """Training activations at which the main SAE is retrained for the budget sensitivity of Section 5's verdicts
    (:mod:`sae_paper.chapters.case_budget`); those above ``n_tokens`` only when a larger profile left them trained."""
    n_seeds: int = 3
    """Seeds Figure 4 (left) and the single-token features are decided at (``seed``, ``seed + 1``, …): each retrains
    the main SAE on the same activations and inspects it on the same text; the majority decides."""

    notebook = NOTEBOOK

    def __post_init__(self) -> None:
        super().__post_init__()
        check_n_seeds(self)
        for name in ("ablation_examples", "tree_n_tokens", "tree_contexts", "tree_branching", "tree_expand", "unembed_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise SaePaperError(f"{NOTEBOOK} parameter {name}={value!r}: must be a positive integer")
        Site("resid_post", self.target_layer).check(model_spec(self.model))
        if not isinstance(self.tree_depth, int) or not 0 < self.tree_depth <= self.target_layer:
            raise SaePaperError(f"{NOTEBOOK} parameter tree_depth={self.tree_depth!r}: must be 1..{self.target_layer} "
                                "(the target's layer)")
        if self.tree_candidates < 0:
            raise SaePaperError(f"{NOTEBOOK} parameter tree_candidates must be >= 0")
        object.__setattr__(self, "sae_budgets", _tuple_field(self.sae_budgets, "sae_budgets", NOTEBOOK))
        if any(not isinstance(n, int) or isinstance(n, bool) or n <= 0 for n in self.sae_budgets):
            raise SaePaperError(f"{NOTEBOOK} parameter sae_budgets={list(self.sae_budgets)!r}: positive integers")

    @property
    def target_layer(self) -> int:
        return self.layer if self.tree_layer is None else self.tree_layer

    def tree_configs(self) -> dict[int, RunConfig]:
        """The SAE of each layer of the tree, target's included, by layer: the main SAE at its own
        layer, elsewhere the same settings on ``tree_n_tokens`` activations of the same text (one harvest pass
        reads every layer), each layer's SAE at its own seed."""
        main = self.main_config()
        return {layer: main if layer == self.layer else
                main.replace(layer=layer, n_tokens=self.tree_n_tokens, seed=self.seed + self.target_layer - layer)
                for layer in range(self.target_layer - self.tree_depth, self.target_layer + 1)}

    def all_configs(self) -> list[RunConfig]:
        return list(dict.fromkeys([self.main_config(), *self.tree_configs().values()]))


# --------------------------------------------------------------------------------------
# Shared steps
# --------------------------------------------------------------------------------------


def load_corpus(specs: Sequence[HarvestSpec], site: Site, model_fn: Callable[[], Any], tokenizer) -> TokenActivations:
    """The activations of ``site`` over every spec's text (harvested on first use, then cached), with tokens."""
    return TokenActivations.concat([cached_activations(model_fn, spec, site, tokenizer=tokenizer) for spec in specs])


def prefetch_train(configs: Sequence[RunConfig], model_fn: Callable[[], Any]) -> list[str]:
    """Harvest the training activations of several configs that share a text spec in one pass
    (only the sites whose cache is short); one line per harvest done."""
    from sae_paper.core.sweeps import prefetch

    return prefetch(configs, model=model_fn, splits=("train",))


class Inspection(NamedTuple):
    """What :meth:`FeatureStudy.inspect` reads off one SAE."""

    stats: dict[str, ClassStats]
    """Each token class's statistics over the features."""
    search: PromptSearch
    """The prompt search and the apostrophe feature it chose (-1: none)."""
    activation: Tensor | None
    """The chosen feature's activation on every inspected token (None when none was chosen)."""
    single: dict[str, tuple[int, ClassStats]]
    """Class name → (the feature with the most of its activation on the class, -1 if none fires enough; its stats)."""


@dataclass(frozen=True)
class PromptSearch:
    """Appendix D.3's search on some prompts, and the feature chosen from it."""

    rankings: tuple[TokenFeatures, ...]
    """The top features on each prompt's final token."""
    chosen: int
    """The candidate whose activation mass is most concentrated on the class (-1 if none fires enough)."""
    rows: tuple[dict, ...]
    """One row per candidate (prompt, rank, feature, activation, class precision, firings) for a table."""

    def markdown(self, name: Callable[[int], str] = str) -> str:
        scaled = any(abs(row["score"] - row["activation"]) > 1e-6 for row in self.rows)
        score = " | ranked by (activation ÷ typical size)" if scaled else ""
        lines = [f"| prompt's final token | rank | feature | activation{score} | share of activation on the class | "
                 "fires on the class / in all | |", "|---|---:|---|---:|" + ("---:|" if scaled else "") + "---:|---:|---|"]
        for row in self.rows:
            mark = "**chosen**" if row["feature"] == self.chosen and row["first"] else ""
            extra = f" | {row['score']:.2f}" if scaled else ""
            lines.append(f"| `{row['token']!r}` | {row['rank']} | {name(row['feature'])} | {row['activation']:.2f}{extra} | "
                         f"{row['mass_precision']:.0%} | {row['in_class']:,} / {row['fires']:,} | {mark} |")
        return "\n".join(lines) + "\n"


def find_by_prompt(
    model,
    site: Site,
    decomposition: Decomposition,
    prompts: Sequence[str],
    stats: ClassStats,
    *,
    k: int = 10,
    min_fires: int = 20,
    scale: Tensor | None = None,
) -> PromptSearch:
    """Rank features on each prompt's final token, then choose among the top ``k`` of every prompt
    the one whose activation is most concentrated on the class of ``stats`` (apostrophes).

    The paper took the top features on the final apostrophe and looked at them: the first
    was an outlier-dimension feature, the second an O'Brien-apostrophe feature, then the
    apostrophe-preceding-s feature it shows. The class precision makes that look explicit.
    """
    rankings = tuple(features_on_token(model, site, decomposition, prompt, k=k, scale=scale) for prompt in prompts)
    rows, seen = [], set()
    for ranking in rankings:
        for rank, (feature, activation, score) in enumerate(
                zip(ranking.features, ranking.activations, ranking.scores), start=1):
            rows.append({"token": ranking.token, "rank": rank, "feature": feature, "activation": activation, "score": score,
                         "mass_precision": float(stats.mass_precision[feature]), "in_class": int(stats.in_class[feature]),
                         "fires": int(stats.fire_counts[feature]), "first": feature not in seen})
            seen.add(feature)
    eligible = [row for row in rows if row["fires"] >= min_fires and row["activation"] > 0]
    chosen = max(eligible, key=lambda row: (row["mass_precision"], row["activation"]))["feature"] if eligible else -1
    return PromptSearch(rankings, chosen, tuple(rows))


@dataclass(frozen=True)
class TargetChoice:
    """Section 5.3's target: the feature whose unembedded direction is most closing brackets."""

    feature: int
    scores: Tensor
    """Per feature: share of closing brackets among its top unembedded tokens."""
    top_tokens: Tensor
    """Per feature: those top token ids."""
    precedes: Tensor
    """Per feature: share of its activation on tokens followed by a closing bracket."""
    fires: Tensor
    random_share: float
    """The same share for random unit directions (the chance level)."""

    def markdown(self, tokenizer, n: int = 5, min_fires: int = 0) -> str:
        order = torch.where(self.fires >= min_fires, self.scores + 1e-3 * self.precedes, torch.full_like(self.scores, -1.0))
        lines = ["| feature | closing brackets in top unembedded tokens | top unembedded tokens | fires | "
                 "activation followed by a closing bracket | |", "|---:|---:|---|---:|---:|---|"]
        for feature in order.argsort(descending=True)[:n].tolist():
            tokens = " ".join(code_span(repr(token_display(tokenizer, t))) for t in self.top_tokens[feature].tolist())
            mark = "**target**" if feature == self.feature else ""
            lines.append(f"| {feature} | {float(self.scores[feature]):.0%} | {tokens} | {int(self.fires[feature]):,} | "
                         f"{float(self.precedes[feature]):.1%} | {mark} |")
        return "\n".join(lines) + "\n"


def choose_closing_target(model, decomposition: Decomposition, followed_by_closing: ClassStats, tokenizer, *,
                          k: int = 10, min_fires: int = 20, seed: int = 0) -> TargetChoice:
    """The feature (firing at least ``min_fires`` times) with the largest share of closing brackets
    among its top ``k`` unembedded tokens; ties go to the one more often followed by a closing bracket."""
    from sae_paper.analysis.causal_tree import unembedding_scores
    from sae_paper.analysis.feature_stats import unembed_direction
    from sae_paper.analysis.token_activations import is_closing_bracket, vocabulary_mask

    closing = vocabulary_mask(tokenizer, model.cfg.d_vocab, is_closing_bracket)
    scores, tops = unembedding_scores(model, decomposition, closing, k=k)
    precedes, fires = followed_by_closing.mass_precision, followed_by_closing.fire_counts
    key = torch.where(fires >= min_fires, scores + 1e-3 * precedes, torch.full_like(scores, -1.0))
    if float(key.max()) < 0:
        raise SaePaperError(f"no feature fires {min_fires} times on the inspected text")
    generator = torch.Generator().manual_seed(seed)
    random = torch.randn(256, decomposition.d_in, generator=generator)
    random_top = unembed_direction(model, random / random.norm(dim=1, keepdim=True)).topk(k, dim=1).indices
    return TargetChoice(int(key.argmax()), scores, tops, precedes, fires, float(closing[random_top].float().mean()))


def bracket_shares(tree: TreeNode, layer_acts: Mapping[int, TokenActivations],
                   decompositions: Mapping[int, Decomposition], tokenizer) -> dict[tuple[int, int], float]:
    """For each node of the tree, the share of its activation (over its layer's text) on tokens inside round brackets."""
    from sae_paper.analysis.token_activations import feature_codes, inside_brackets

    shares: dict[tuple[int, int], float] = {}
    for layer, acts in layer_acts.items():
        features = sorted({node.feature for node, _ in tree.walk() if node.layer == layer})
        if not features:
            continue
        inside = inside_brackets(acts.contexts, tokenizer).double()
        codes = feature_codes(decompositions[layer], acts.rows, features).double()
        share = (codes * inside.unsqueeze(1)).sum(dim=0) / codes.sum(dim=0).clamp(min=1e-12)
        shares.update({(layer, f): float(v) for f, v in zip(features, share)})
    return shares


def init_cosine(sae, seed: int) -> Tensor:
    """Cosine of each trained feature direction with its random initial direction (same seed):
    near 1 means training barely moved it."""
    from sae_paper.core.sae import make_sae

    start = make_sae(sae.kind, sae.d_in, sae.d_sae, seed=seed).feature_directions().detach()
    return (sae.feature_directions().detach() * start).sum(dim=1)


def mean_abs_cosine(first: Decomposition, second: Decomposition) -> float:
    """Mean |cosine similarity| between every feature direction of one dictionary and every one of another."""
    a = torch.nn.functional.normalize(first.feature_directions().float(), dim=1)
    b = torch.nn.functional.normalize(second.feature_directions().float(), dim=1)
    return float((a @ b.T).abs().mean())


def is_punctuation(text: str) -> bool:
    """A token of punctuation only (no letters, digits or whitespace-only)."""
    stripped = text.strip()
    return bool(stripped) and not any(c.isalnum() for c in stripped)
