# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Case studies: the apostrophe feature and a causal tree
#
# *Section 5 and Appendix D.3 of Cunningham et al. (2023), "Sparse Autoencoders Find
# Highly Interpretable Features in Language Models".*
#
# ## Overview
#
# Section 5 of the paper looks closely at single dictionary features of a residual-stream
# SAE, in three ways this notebook repeats:
#
# 1. **What a feature fires on** (Figure 4, left). The paper finds an apostrophe feature
#    by running the prompt `" I don't know about that. It is now up to Dave"'"` and ranking
#    the features on its final apostrophe (Appendix D.3), then draws, for every token where
#    the feature fires, a histogram of its activation stacked by token: mostly apostrophes,
#    above all at high activation. Section 5 also reports features that fire only on
#    periods, on `" the"` and on newlines.
# 2. **What a feature does** (Figure 4, right). Ablate the feature, finish the forward
#    pass and see which next-token logits drop: for the apostrophe feature, `"s"`.
# 3. **Where a feature comes from** (Figure 5). Take a closing-parenthesis feature of the
#    last layer, sample contexts where it fires strongly, and rank the previous layer's
#    features by how much ablating each lowers it; recurse. The paper draws the result as a
#    tree whose edges are weighted by the effect.
#
# The ablation is the paper's *less-than-rank-one* ablation (footnote 5): the activation
# vector is moved along the feature's direction only until the feature stops firing.
#
# Each result is recorded on the [claims scoreboard](scoreboard.md) with a verdict
# computed from the numbers by a rule written beside it.
#
# ## Where our setting differs from the paper's
#
# | | paper | this book (`default` profile) |
# |---|---|---|
# | model | Pythia-70M-deduped, 6 layers | SmolLM2-135M-Instruct, 30 layers (Pythia's weights cannot be downloaded here) |
# | SAE | residual stream, layer 2-ish, trained on tens of millions of Pile activations | notebook 01's main SAE: residual stream after block 3, R = 2, ~50k Wikipedia activations |
# | inspected text | the Pile | the SAE's Wikipedia training text plus 20 Newsgroups posts (conversational: apostrophes) |
# | tokenizer | GPT-NeoX: `don` `'` `t`, `Dave` `"` `'` | SmolLM2: `don` `'t`, `Dave` `"'`: apostrophes are merged with what follows them, so `'s`, `'t`, `'m` are single tokens and a bare `s` after an apostrophe is rare |
# | causal tree | target in the last layer (5 of 5), whose direction unembeds to closing brackets | target in layer 3 of 30 (the layer of our SAE), two earlier layers' SAEs trained on ~16k activations each; an early layer's unembedding is a weak guide to what a feature does |
# | ablation | "the difference in logits" | the same, each example centred on its mean change over the vocabulary (the ablation shifts all of SmolLM2's logits together by several units) |
#
# The `paper` profile runs Pythia-70M with the tree's target in its last layer.

# %% [markdown]
# ## Parameters
#
# Set by a profile of `sae-paper book`; the defaults are the `default` profile.
# `sae_paper.chapters.case_studies.CaseStudy` documents each one. The first block must match
# notebook 01's main SAE (then its cached SAE is reused, not retrained).

# %% tags=["parameters"]
profile = "notebook"
model = "smollm2-135m"
source = "enwiki2015"
seed = 0
text_seed = None
context_length = 128
harvest_batch_size = 32
dtype = "float32"
eval_tokens = 2048
alive_threshold = 10
lr = 1e-3
layer = 3
n_tokens = 49_152
ratio = 2.0
alpha = None
epochs = 4
batch_size = 128
news_source = "20news"
news_tokens = 24_576
prompts = [" I don't know about that. It is now up to Dave\"'", " I don't know about that. It is now up to Dave'"]
top_k = 10
n_bins = 10
n_named = 8
min_fires = 20
ablation_examples = 8
logit_threshold = 0.1
tree_layer = None
tree_depth = 2
tree_n_tokens = 16_384
tree_contexts = 20
tree_branching = 3
tree_expand = 1
tree_candidates = 8
unembed_k = 10
sae_budgets = [49_152, 196_608]
n_seeds = 3

# %%
# %matplotlib inline
import functools
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")
warnings.filterwarnings("ignore", message="Glyph .* missing from font")  # a few tokens are CJK characters

import torch
from IPython.display import Markdown

from sae_paper.analysis.ablation import logit_effect
from sae_paper.analysis.causal_tree import causal_tree, sample_contexts
from sae_paper.analysis.feature_contexts import contexts_html, top_contexts
from sae_paper.analysis.feature_stats import class_share_per_bin, multi_class_stats, token_histogram, top_tokens
from sae_paper.analysis.token_activations import (
    cached_activations,
    feature_codes,
    has_apostrophe,
    inside_brackets,
    is_closing_bracket,
    is_newline,
    token_display,
    token_label,
    token_mask,
    vocabulary_mask,
)
from sae_paper.book import feature_browser
from sae_paper.chapters import case_budget
from sae_paper.chapters.case_studies import (
    NOTEBOOK,
    CaseStudy,
    bracket_shares,
    choose_closing_target,
    init_cosine,
    load_corpus,
    mean_abs_cosine,
    prefetch_train,
)
from sae_paper.chapters.case_verdicts import (
    WHAT,
    ablation_finding,
    causal_tree_finding,
    decisions,
    unembed_parens_finding,
)
from sae_paper.core.decompositions import SaeDecomposition
from sae_paper.core.pipeline import Run
from sae_paper.report import feature_plots, plots, provenance
from sae_paper.report.claims import Scoreboard
from sae_paper.report.seeds import decide_at_seeds, seed_table

study = CaseStudy.from_namespace(globals())
prov = provenance.start(NOTEBOOK, profile=profile, parameters=study.parameters(), seed=study.seed)
board = Scoreboard(NOTEBOOK)
torch.manual_seed(study.seed)
main = Run(study.main_config(), progress=False)
print(f"inspecting {study.model} {study.site}: tied SAE, R={study.ratio:g}, α={main.alpha:g} (notebook 01's main SAE)")

# %% [markdown]
# ## 1. The dictionary and the text it is inspected on
#
# The SAE is notebook 01's main SAE (loaded from the cache; trained here only if
# notebook 01 has not run). Its features are inspected on the activations of its own
# training text plus some 20 Newsgroups posts, harvested once at the same layer. Every
# context starts with the BOS token `<|endoftext|>`, whose residual activation is an outlier
# of huge norm: position 0 is never part of any statistic below.
#
# A caveat first: in the `default` profile the SAE has seen about fifty thousand
# activations (four epochs over them); the paper's dictionaries saw hundreds of times
# more. How far training moved its features from their random initial directions is
# printed below: features that barely moved are not worth reading.

# %%
with prov.section("SAE and model"):
    dictionary = study.dictionary()
    model = main.model
    tokenizer = model.tokenizer
with prov.section("inspected text: harvest or load"):
    corpus = load_corpus(study.corpus_specs(), study.site, lambda: model, tokenizer)


def label(token_id):
    return token_label(tokenizer, token_id)


print(f"{corpus.rows.shape[0]:,} token activations from "
      + ", ".join(f"{n} contexts of {name}" for name, n in corpus.sources))
drift = init_cosine(dictionary.sae, study.seed)
print(f"training moved {float((drift < 0.9).float().mean()):.0%} of the features more than cos 0.9 away from their "
      f"random initial direction (median cosine to it: {float(drift.median()):.2f})")

# %% [markdown]
# Per feature, in one pass over the text: how often it fires, its largest activation, and
# how much of its activation falls on each token class we look for. *Precision* below is
# the share of a feature's total activation on the class: a feature that "fires only on
# periods" has a precision near 1 for periods; *recall* is the share of the class's tokens
# it fires on.

# %%
classes = {
    "apostrophes": token_mask(tokenizer, corpus.tokens, has_apostrophe),
    "periods": token_mask(tokenizer, corpus.tokens, lambda t: t == "."),
    '" the"': token_mask(tokenizer, corpus.tokens, lambda t: t == " the"),
    "newlines": token_mask(tokenizer, corpus.tokens, is_newline),
}
with prov.section("feature statistics"):
    inspection = study.inspect(model, dictionary, corpus, classes)
print("tokens per class: " + ", ".join(f"{name} {int(mask.sum()):,}" for name, mask in classes.items()))

# %% [markdown]
# ## 2. Finding the apostrophe feature (Appendix D.3)
#
# The paper ran its prompt, ranked the features on the final apostrophe and looked at the
# top ones: the first was an "outlier dimension" feature (large on almost every token),
# the second fired on apostrophes after O (O'Brien), and the apostrophe feature it shows
# came after. We make that look explicit: among the top features on the final token of
# each prompt, we choose the one whose activation is most concentrated on apostrophe
# tokens. SmolLM2 merges the prompt's final `"'` into one token, so we also search the same
# sentence ending in a lone `'`.

# %%
search = inspection.search
apostrophe_feature = search.chosen
if apostrophe_feature < 0:
    raise RuntimeError("no feature among the prompt's top features fires often enough on the inspected text")
Markdown(search.markdown())

# %% [markdown]
# ## 3. Figure 4 (left): what the apostrophe feature fires on
#
# Every token where the feature fires, in ten equal-width bins of its activation, stacked
# by token (the tokens that lead some bin, then the most frequent; the rest is "other").
# The lower panel shows each bin's composition as shares, with the share of apostrophe
# tokens drawn over it.

# %%
activation = inspection.activation
histogram = token_histogram(activation, corpus.tokens, n_bins=study.n_bins, n_named=study.n_named, label=label)
share = class_share_per_bin(activation, classes["apostrophes"], study.n_bins)
feature_plots.token_histogram_figure(
    histogram, class_share=share.tolist(), class_name="apostrophe",
    title=f"Figure 4 (left) analogue: feature {apostrophe_feature} of the {study.site} SAE "
          f"({histogram.n_firing:,} firing tokens)")

# %%
Markdown("| bin | activation | tokens | top tokens | apostrophe share |\n|---:|---|---:|---|---:|\n" + "\n".join(
    f"| {i} | {histogram.edges[i]:.1f}–{histogram.edges[i + 1]:.1f} | {int(histogram.counts[i].sum()):,} | "
    + ", ".join(f"`{name}` {count:,}" for name, count in top) + f" | {share[i]:.0%} |"
    for i, top in enumerate(histogram.top_per_bin(3))))

# %% [markdown]
# Its top-activating contexts (the firing token boxed, every token shaded by the feature's
# activation):

# %%
contexts_html(top_contexts(corpus, activation, k=12), tokenizer,
              title=f"feature {apostrophe_feature}: top-activating contexts")

# %% [markdown]
# **At other seeds.** Which feature the prompt search picks, and how clean it is, depends on
# the SAE, and a seed decides much of the SAE: its initialisation and the order it sees its
# activations. The main SAE is trained again at each further seed on the same activations,
# and each goes through the same prompt search (for this figure) and class statistics (for
# Section 5 below) on the same text. The headline verdict is the seeds' majority.

# %%
decide = functools.partial(decisions, corpus=corpus, tokenizer=tokenizer, n_bins=study.n_bins)
with prov.section("Figure 4 and Section 5 at other seeds"):
    inspections = {study.seed: inspection, **{seed: study.inspect(model, study.dictionary(seed), corpus, classes)
                                              for seed in study.seeds()[1:]}}
    case_seeded = decide_at_seeds(decide, inspections, what=WHAT)
Markdown(seed_table(case_seeded))

# %%
board.record("fig4-apostrophe-hist", *case_seeded["fig4-apostrophe-hist"][0],
             seeds=case_seeded["fig4-apostrophe-hist"][1])

# %% [markdown]
# ## 4. Figure 4 (right): what ablating it does to the next-token prediction
#
# In each of the feature's top-activating contexts we ablate it at every position (BOS
# excepted): the residual vector $x$ moves along the feature's direction $f$ by
# $t = -(e \cdot x + b)/(e \cdot f)$ where the feature fires ($e$, $b$: its encoder row and
# bias; for this tied SAE $e = f$ and $t = -c$). The rest of the model runs on, and we
# average the change of the next-token logits at the position where the feature fired.
# Negative differences are tokens the feature was promoting. Adding the same constant to
# every logit changes no prediction, and the ablation can shift all logits together (the
# final norm rescales the residual stream), so each example's change is taken relative to
# its mean over the vocabulary; the mean shift is printed.

# %%
examples = top_contexts(corpus, activation, k=study.ablation_examples, before=0, after=0)
example_contexts = corpus.contexts[torch.tensor([e.context for e in examples])]
example_positions = torch.tensor([e.position for e in examples])
with prov.section("Figure 4 (right): ablation"):
    effect = logit_effect(model, study.site.hook_name, dictionary, apostrophe_feature, example_contexts,
                          example_positions, batch_size=4)
print(f"feature {apostrophe_feature}: activation {effect.feature_clean.mean():.2f} → {effect.feature_ablated.max():.1g} "
      f"after ablation; all logits moved by {effect.mean_shift:+.2f} on average (removed before plotting)")
feature_plots.logit_effect_figure(
    effect, label, threshold=study.logit_threshold,
    title=f"Figure 4 (right) analogue: ablating feature {apostrophe_feature} (mean over {effect.n_examples} contexts)")

# %%
board.record("fig4-ablation-logits", *ablation_finding(apostrophe_feature, effect, tokenizer,
                                                       threshold=study.logit_threshold))

# %% [markdown]
# ## 5. Features that fire on a single token (Section 5)
#
# For each token class, the feature with the best balance (F1) of precision (share of its
# activation on the class) and recall (share of the class it fires on).

# %%
single = inspection.single
Markdown("| class | feature | precision (activation) | precision (firings) | recall | fires |\n|---|---:|---:|---:|---:|---:|\n"
         + "\n".join(f"| {name} | {f} | {s.mass_precision[f]:.0%} | {s.precision[f]:.0%} | {s.recall[f]:.0%} | "
                     f"{int(s.fire_counts[f]):,} |" for name, (f, s) in single.items() if f >= 0))

# %%
feature_plots.histogram_grid(
    [(f"{name}: feature {f}", token_histogram(feature_codes(dictionary, corpus.rows, f), corpus.tokens,
                                              n_bins=study.n_bins, n_named=5, label=label))
     for name, (f, _) in single.items() if f >= 0],
    title="Section 5: the best single-token feature for each class")

# %%
board.record("sec5-single-token-features", *case_seeded["sec5-single-token-features"][0],
             seeds=case_seeded["sec5-single-token-features"][1])

# %% [markdown]
# ### How these verdicts move with the SAE's training budget
#
# What decides Figure 4 (left) and the single-token features is how far the SAE was
# trained. The main SAE is retrained (same α, R, epochs and seed) on the first part of its
# training activations, and read from the cache at larger budgets when a larger profile
# (`long`) trained it; on the same inspected text, each budget's SAE goes through the same
# prompt search and class statistics as above (`sae_paper.chapters.case_budget`).
# The default profile measures its own budget only (`sae_budgets`): no claim reads the trend,
# and the random-model controls of notebook 02 took its time; `--profile long` measures it.

# %%
with prov.section("budget sensitivity: the SAE's training activations"):
    sae_points = case_budget.sae_sweep(
        study, [*study.sae_budgets, study.n_tokens], lambda n: Run(study.main_config().replace(n_tokens=n), progress=False),
        lambda sae: decide(study.inspect(model, SaeDecomposition(sae), corpus, classes)))
    for claim_id, trend in case_budget.trends(sae_points).items():
        if trend is not None:
            board.add_trend(claim_id, trend)
plots.budget_sensitivity(sae_points, unit=f"training activations of the {study.site} SAE", default=study.n_tokens,
                         title="Section 5's deciding numbers against the SAE's training budget", ylabel=WHAT)

# %% [markdown]
# ## 6. Figure 5: the causal tree of a closing-bracket feature
#
# ### Dictionaries of the tree's layers
#
# The tree needs an SAE at its target's layer and at each layer it descends to. The
# target's layer is our SAE's (layer 3 in the default profile; the paper used the last
# layer); the others are trained like it (same α, R, epochs) on fewer activations, each
# with its own seed: with one seed, every layer's SAE would start from the same random
# directions, and features that training barely moved would look alike across layers
# (and drive each other) only because of it.

# %%
closing_vocab = vocabulary_mask(tokenizer, model.cfg.d_vocab, is_closing_bracket)
tree_runs = {layer: Run(config, progress=False) for layer, config in study.tree_configs().items()}
with prov.section("Figure 5: the tree's SAEs"):
    others = [config for layer, config in study.tree_configs().items() if layer != study.layer]
    print("\n".join(prefetch_train(others, lambda: model)) or "activations cached")
    dictionaries = {layer: dictionary if layer == study.layer else SaeDecomposition(run.sae(), name=f"SAE {run.site}")
                    for layer, run in tree_runs.items()}
    layer_text = {layer: corpus if layer == study.layer else
                  cached_activations(lambda: model, run.harvest_spec("train"), run.site, tokenizer=tokenizer)
                  for layer, run in tree_runs.items()}
print(", ".join(f"layer {layer}: {d.n_features} features, {layer_text[layer].rows.shape[0]:,} activations"
                for layer, d in sorted(dictionaries.items())))

# %% [markdown]
# ### The target
#
# The paper picked its target by unembedding: reading a last-layer feature's direction
# through the unembedding gave closing-bracket variants as all top tokens. We do the same
# for every feature of the target layer's SAE (through the final norm's gain and the
# unembedding matrix) and take the one with the largest share of closing brackets among
# its top tokens; the table also shows how much of each candidate's activation falls on
# tokens that a closing bracket follows, which is what a closing-parenthesis feature should
# do.

# %%
target_layer = study.target_layer
target_text = layer_text[target_layer]
followed = (target_text.next_tokens >= 0) & closing_vocab[target_text.next_tokens.clamp(min=0)]
with prov.section("Figure 5: target"):
    followed_stats = multi_class_stats(dictionaries[target_layer], target_text.rows, {"followed": followed})["followed"]
    target = choose_closing_target(model, dictionaries[target_layer], followed_stats, tokenizer,
                                   k=study.unembed_k, min_fires=study.min_fires, seed=study.seed)
target_feature = target.feature
Markdown(target.markdown(tokenizer, min_fires=study.min_fires)
         + f"\nRandom unit directions: {target.random_share:.0%} closing brackets among their top {study.unembed_k} tokens.")

# %%
board.record("fig5-unembed-parens", *unembed_parens_finding(
    target_feature, target_layer, model.cfg.n_layers,
    [token_display(tokenizer, t) for t in target.top_tokens[target_feature].tolist()],
    float(target.scores[target_feature]), target.random_share, float(target.precedes[target_feature]),
    float(followed.float().mean())))

# %% [markdown]
# ### The tree
#
# $M$ is the target's largest activation over the text of its layer; we sample
# `tree_contexts` contexts (the paper: 20) where it reaches $[M/2, M]$. For each firing
# feature of the layer below we ablate it (at every position up to the target's) and
# measure how much the target's activation at its position drops, averaged over the
# contexts; the strongest parent (`tree_expand` of them) is expanded the same way one
# layer further down, where a node is measured by its activation summed over the positions
# up to the target's. To
# keep this affordable, each node ablates exactly only the features a first-order
# (gradient) estimate ranks highest (`tree_candidates`); the tree itself ranks by the
# exact drops.

# %%
target_activation = feature_codes(dictionaries[target_layer], target_text.rows, target_feature)
tree_sample = sample_contexts(target_text, target_activation, n=study.tree_contexts, seed=study.seed)
print(f"M = {tree_sample.max_activation:.2f}; {tree_sample.n_eligible} contexts reach [M/2, M]; "
      f"{len(tree_sample.positions)} sampled")
with prov.section("Figure 5: causal tree"):
    tree = causal_tree(model, dictionaries, target_layer, target_feature, tree_sample, depth=study.tree_depth,
                       branching=study.tree_branching, expand=study.tree_expand,
                       n_candidates=study.tree_candidates or None)

# %%
node_tokens = {}
for layer, text in layer_text.items():
    features = sorted({node.feature for node, _ in tree.walk() if node.layer == layer})
    if features:
        node_tokens.update({(layer, f): tokens for f, tokens in
                            top_tokens(dictionaries[layer], text, features, tokenizer, k=3).items()})


def node_label(node):
    return "\n".join(node_tokens.get((node.layer, node.feature), []))


feature_plots.causal_tree_figure(
    tree, node_label,
    title=f"Figure 5 analogue: what drives feature {target_feature} of layer {target_layer} "
          f"({len(tree_sample.positions)} contexts)\nnodes: top tokens; edges: drop of the upper feature when the "
          "lower one is ablated, and the cosine of their directions")

# %%
print("\n".join(tree.lines(lambda node: " ".join(node_tokens.get((node.layer, node.feature), [])))))

# %% [markdown]
# The target's top-activating contexts (the firing token boxed):

# %%
contexts_html(top_contexts(target_text, target_activation, k=8), tokenizer,
              title=f"feature {target_feature}: top-activating contexts")

# %% [markdown]
# The paper reads its tree by eye: the earlier features detect contexts that precede a
# closing parenthesis, and linked features often point in similar directions. We check
# both with numbers: the share of each feature's activation on tokens inside round
# brackets (a closing bracket is still to come) against the base rate, and the cosine of
# each edge against the mean |cosine| of random feature pairs of two adjacent layers.

# %%
shares = bracket_shares(tree, layer_text, dictionaries, tokenizer)
base_inside = float(inside_brackets(target_text.contexts, tokenizer).float().mean())
cosine_baseline = mean_abs_cosine(dictionaries[target_layer], dictionaries[target_layer - 1])
board.record("fig5-causal-tree", *causal_tree_finding(tree, shares, base_inside, cosine_baseline))

# %%
# the features picked above, for the book's feature browser (sae_paper.book.feature_browser)
feature_browser.save_picked(NOTEBOOK, "main", study.main_config(), [
    (apostrophe_feature, "the apostrophe feature (Figure 4)"),
    *[(f, f"the best single-token feature for {name}") for name, (f, _) in single.items()],
    *([(target_feature, "the causal tree's target (Figure 5)")] if target_layer == study.layer else [])])

# %% [markdown]
# ## Summary
#
# The claims this notebook tested, with the paper's statement, our numbers and the
# verdict (the note gives the rule). The [scoreboard](scoreboard.md) collects every
# notebook's.

# %%
board

# %% [markdown]
# ## Provenance

# %%
prov.save()
prov
