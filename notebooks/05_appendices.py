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
# # Appendix D: the residual basis and more learned features
#
# *Appendix D of Cunningham et al. (2023), "Sparse Autoencoders Find Highly Interpretable
# Features in Language Models".*
#
# ## Overview
#
# Appendix D backs up Section 5's case studies with more token histograms:
#
# 1. **Figure 11** (D.1): the residual-stream *dimension* that best matches the apostrophe
#    feature. The paper searched it as it searched the feature (D.3: the dimensions most
#    active on the prompt's final apostrophe, positive or negative, skipping outlier
#    dimensions) and found it polysemantic: apostrophes lead its highest activations, but
#    its middle and lower ranges are other tokens. We set it beside the SAE's apostrophe
#    feature, found the same way (as in [notebook 04](04_case_studies.ipynb)).
# 2. **Figures 12–15** (D.2): four more features: 'If' in code, a 'Dis' feature (the paper's
#    fires on the token after *dis*: *dis*CLAIM, *dis*closed), and two apostrophe features
#    that split contractions by context: "I'll"-like and "don't"-like.
#
# The other appendices are elsewhere in the book: Appendix B and E (Figures 6, 7 and 16,
# dead features, tied against untied MLP dictionaries of C.3) in
# [notebook 01](01_training.ipynb); Appendix D.3's search and Section 5 in
# [notebook 04](04_case_studies.ipynb).
#
# ## Where our setting differs from the paper's
#
# | | paper | this book (`default` profile) |
# |---|---|---|
# | model, SAE | Pythia-70M, residual SAE | SmolLM2-135M, notebook 01's main SAE (residual stream after block 3) |
# | text | the Pile (code included) | the SAE's Wikipedia text, 20 Newsgroups posts, the Python standard library's own sources (for code), and a few dozen held-out WebText/20 Newsgroups contexts chosen because they contain `'ll` (rare: a few per 10,000 tokens) |
# | tokens | GPT-NeoX: `I` `'` `ll`, `don` `'` `t`, `dis` `closed` | SmolLM2: `'ll`, `'t` are single tokens, and most *dis*- words are whole tokens (`' disordered'`), so each feature is searched by its token class: `'ll`, `'t`, words starting with *dis*, `if` in code |

# %% [markdown]
# ## Parameters
#
# Set by a profile of `sae-paper book`; the defaults are the `default` profile.
# `sae_paper.chapters.appendices.AppendixStudy` documents each one; the first block must match
# notebook 01's main SAE and notebook 04's text (both are then read from the cache).

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
code_source = "python-stdlib-code"
code_tokens = 16_384
rare_token_sources = ["webtext", "20news"]
rare_token = "'ll"
rare_contexts = 48

# %%
# %matplotlib inline
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")
warnings.filterwarnings("ignore", message="Glyph .* missing from font")  # a few tokens are CJK characters

import torch
from IPython.display import Markdown, display

from sae_paper.analysis.feature_contexts import contexts_html, top_contexts
from sae_paper.analysis.feature_stats import class_share_per_bin, multi_class_stats, token_histogram
from sae_paper.analysis.token_activations import (
    TokenActivations,
    collect_activations,
    feature_codes,
    has_apostrophe,
    token_label,
    token_mask,
)
from sae_paper.chapters.appendices import (
    APPENDIX_D_CLASSES,
    NOTEBOOK,
    AppendixStudy,
    appendix_d_finding,
    contexts_with_token,
    contraction,
    is_if,
    residual_polysemantic_finding,
    starts_with_dis,
)
from sae_paper.chapters.case_studies import find_by_prompt, load_corpus
from sae_paper.core.decompositions import SaeDecomposition, signed_neuron_basis
from sae_paper.core.pipeline import Run
from sae_paper.data.models import model_spec
from sae_paper.report import claims, feature_plots, provenance

study = AppendixStudy.from_namespace(globals())
prov = provenance.start(NOTEBOOK, profile=profile, parameters=study.parameters(), seed=study.seed)
board = claims.Scoreboard(NOTEBOOK)
torch.manual_seed(study.seed)
main = Run(study.main_config(), progress=False)
print(f"inspecting {study.model} {study.site}: tied SAE, R={study.ratio:g}, α={main.alpha:g} (notebook 01's main SAE)")

# %% [markdown]
# ## 1. The dictionary, the residual basis and the text
#
# The text is notebook 04's (the SAE's training text and 20 Newsgroups posts, read from
# the cache) plus code and the contexts holding `'ll`. Position 0 of each context (the BOS
# token, an outlier of huge norm) is left out of every statistic.

# %%
with prov.section("SAE and model"):
    dictionary = SaeDecomposition(main.sae(), name=f"SAE {study.site}")
    model = main.model
    tokenizer = model.tokenizer
with prov.section("inspected text: harvest or load"):
    corpus = load_corpus(study.corpus_specs(), study.site, lambda: model, tokenizer)
    if study.rare_contexts:
        rare, found_in = contexts_with_token(
            study.rare_token_sources, tokenizer, contraction(study.rare_token), n=study.rare_contexts,
            context_length=study.context_length, bos_token_id=model_spec(study.model).bos_token_id,
            seed=study.text_order)
        corpus = TokenActivations.concat([corpus, collect_activations(
            model, study.site, rare, batch_size=study.harvest_batch_size, source=f"contexts holding {study.rare_token}")])
        print("contexts holding", repr(study.rare_token), "from:", ", ".join(f"{s} {n}" for s, n in found_in))


def label(token_id):
    return token_label(tokenizer, token_id)


print(f"{corpus.rows.shape[0]:,} token activations from "
      + ", ".join(f"{n} contexts of {name}" for name, n in corpus.sources))

# %%
code_rows = corpus.source_mask(study.code_source) if study.code_tokens else torch.zeros(len(corpus.rows), dtype=torch.bool)
classes = {
    "apostrophes": token_mask(tokenizer, corpus.tokens, has_apostrophe),
    "If in code (Figure 12)": token_mask(tokenizer, corpus.tokens, is_if) & code_rows,
    "Dis (Figure 13)": token_mask(tokenizer, corpus.tokens, starts_with_dis),
    "I'll-like apostrophe (Figure 14)": token_mask(tokenizer, corpus.tokens, contraction("'ll")),
    "don't-like apostrophe (Figure 15)": token_mask(tokenizer, corpus.tokens, contraction("'t")),
}
with prov.section("feature statistics"):
    stats = multi_class_stats(dictionary, corpus.rows, classes)
print("tokens per class: " + ", ".join(f"{name} {int(mask.sum()):,}" for name, mask in classes.items()))

# %% [markdown]
# ## 2. Figure 11: the most apostrophe-like residual dimension
#
# The residual stream takes both signs, so each dimension $i$ is looked at twice: its
# positive part ($+i$) and its negative part ($-i$), negative values counted as not firing,
# as the paper does for the residual basis. A few dimensions are large on every token
# ("outlier dimensions"); the paper skipped them by eye, we divide each dimension's value
# on the prompt's apostrophe by its root mean square over the text, so a dimension ranks
# high only if it is unusually large there. Among the top dimensions we then choose, as
# for the SAE, the one whose activation is most concentrated on apostrophes.

# %%
basis = signed_neuron_basis(dictionary.d_in)
rms = corpus.rows.pow(2).mean(dim=0).sqrt()
with prov.section("Figure 11: residual basis"):
    basis_stats = multi_class_stats(basis, corpus.rows, {"apostrophes": classes["apostrophes"]})["apostrophes"]
    dimension_search = find_by_prompt(model, study.site, basis, study.prompts, basis_stats, k=study.top_k,
                                      min_fires=study.min_fires, scale=torch.cat([rms, rms]))
feature_search = find_by_prompt(model, study.site, dictionary, study.prompts, stats["apostrophes"], k=study.top_k,
                                min_fires=study.min_fires)


def dimension_name(index):
    d = dictionary.d_in
    return f"{'+' if index < d else '−'}dim {index % d}"


dimension, apostrophe_feature = dimension_search.chosen, feature_search.chosen
Markdown(dimension_search.markdown(dimension_name))

# %%
dimension_activation = feature_codes(basis, corpus.rows, dimension)
feature_activation = feature_codes(dictionary, corpus.rows, apostrophe_feature)
dimension_hist = token_histogram(dimension_activation, corpus.tokens, n_bins=study.n_bins, n_named=study.n_named,
                                 label=label)
dimension_share = class_share_per_bin(dimension_activation, classes["apostrophes"], study.n_bins)
feature_plots.token_histogram_figure(
    dimension_hist, class_share=dimension_share.tolist(), class_name="apostrophe",
    title=f"Figure 11 analogue: residual {dimension_name(dimension)} after block {study.layer} "
          f"({dimension_hist.n_firing:,} tokens where it is {'positive' if dimension < dictionary.d_in else 'negative'})")

# %%
feature_share = class_share_per_bin(feature_activation, classes["apostrophes"], study.n_bins)
Markdown("| bin | residual dimension: top tokens | apostrophes | SAE feature: top tokens | apostrophes |\n"
         "|---:|---|---:|---|---:|\n" + "\n".join(
             f"| {i} | " + ", ".join(f"`{n}` {c:,}" for n, c in d_top) + f" | {dimension_share[i]:.0%} | "
             + ", ".join(f"`{n}` {c:,}" for n, c in f_top) + f" | {feature_share[i]:.0%} |"
             for i, (d_top, f_top) in enumerate(zip(
                 dimension_hist.top_per_bin(3),
                 token_histogram(feature_activation, corpus.tokens, n_bins=study.n_bins, label=label).top_per_bin(3)))))

# %%
board.record("fig11-residual-polysemantic", *residual_polysemantic_finding(
    dimension_name(dimension), dimension_hist, dimension_share, float(basis_stats.mass_precision[dimension]),
    apostrophe_feature, float(stats["apostrophes"].mass_precision[apostrophe_feature])))

# %% [markdown]
# ## 3. Figures 12–15: more features
#
# For each token class, the feature with the best balance (F1) of precision (share of its
# activation on the class) and recall (share of the class it fires on), its histogram and
# its top contexts. The 'If' class is `if` tokens in code only, so a feature for
# conditionals in prose does not count; the table says how much of the chosen feature's
# activation is on code at all.

# %%
appendix = {}
for name in APPENDIX_D_CLASSES:
    best = stats[name].best(1, min_fires=study.min_fires, by_mass=True) if int(classes[name].sum()) else []
    appendix[name] = (best[0] if best else -1, stats[name])
if_feature = appendix["If in code (Figure 12)"][0]
code_share = None
if if_feature >= 0 and study.code_tokens:
    values = feature_codes(dictionary, corpus.rows, if_feature)
    code_share = float(values[code_rows].sum() / values.sum().clamp(min=1e-12))
Markdown("| figure | feature | precision (activation) | recall | class tokens | fires |\n|---|---:|---:|---:|---:|---:|\n"
         + "\n".join(f"| {name} | {f} | {s.mass_precision[f]:.0%} | {s.recall[f]:.0%} | {s.class_size:,} | "
                     f"{int(s.fire_counts[f]):,} |" if f >= 0 else f"| {name} | none | | | {s.class_size:,} | |"
                     for name, (f, s) in appendix.items()))

# %%
shown = [(name, f) for name, (f, _) in appendix.items() if f >= 0]
feature_plots.histogram_grid(
    [(f"{name}: feature {f}", token_histogram(feature_codes(dictionary, corpus.rows, f), corpus.tokens,
                                              n_bins=study.n_bins, n_named=6, label=label)) for name, f in shown],
    title="Figures 12–15 analogue: token histograms of four features")

# %%
for name, f in shown:
    display(contexts_html(top_contexts(corpus, feature_codes(dictionary, corpus.rows, f), k=6), tokenizer,
                          title=f"{name}: feature {f}, top-activating contexts"))

# %%
board.record("fig12-15-features", *appendix_d_finding(appendix, code_share=code_share))

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
