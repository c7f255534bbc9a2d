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
# # Automated interpretability: SAE features against every baseline
#
# *Section 3 and Appendices A, C and G of Cunningham et al. (2023), "Sparse Autoencoders
# Find Highly Interpretable Features in Language Models".*
#
# ## Overview
#
# The paper's main evidence that dictionary features are interpretable is an automatic
# score (Bills et al. 2023): a language model **explains** a feature from its top-activating
# text, another **simulates** the feature's activation on new text from the explanation
# alone, and the **score** is the correlation between simulated and true activations. This
# notebook scores SAE features and the baselines the paper compares them with, and rebuilds
#
# 1. **Figure 2**: mean score per residual layer, SAE against the residual basis, random
#    directions, PCA and ICA, with 95 % confidence intervals;
# 2. **Figure 9** (Appendix C.2): the same with random-only scoring, the control;
# 3. **Figure 18** (Appendix G): Figure 2 with top-K PCA and top-K ICA added;
# 4. **Figure 8** (Appendix C.1): score against the dictionary ratio R;
# 5. **Table 1**: explanations and scores of the first five features of a dictionary;
# 6. **Table 2** (Appendix C.4): correlation of a feature's score with its activation moments;
# 7. **Appendix C.3**: MLP dictionary features against MLP neurons.
# 8. **Feature stability across seeds**, a control beyond the paper (Paulo & Belrose 2025): how
#    many of an SAE's features another seed's SAE finds again, against random directions.
#
# ## Where our setting differs from the paper's
#
# | | paper | this book (`default` profile) |
# |---|---|---|
# | explainer / simulator | GPT-4 / GPT-3.5 (logprobs) | **`token-list`: a deterministic stand-in, not a language model.** The "explanation" is the list of tokens that carry the activation in the 5 top fragments, with their mean activation; the "simulation" predicts that weight on those tokens and 0 elsewhere. It can only express token-level features, so it is a lower bound for features that are about a token, and blind to anything contextual. The `local-llm` profile uses a real LLM instead, Qwen2.5-Coder-1.5B-Instruct (4-bit, llama.cpp, about a thousandth of GPT-4's size), on SAE, residual basis and PCA at layers 3 and 9, 20 features each, showing it 3 explained and 2 top + 2 random simulated fragments of 32 tokens (CPU time). The budget page also scores SAE, random directions, PCA and the residual basis with that model by detection and fuzzing (Paulo et al. 2024), which need no logprobs: see its section *A real language model as scorer* |
# | model | Pythia-70M-deduped, 6 layers | SmolLM2-135M-Instruct, 30 layers |
# | layers | residual layers 0–5 | residual layers 3, 9, 14: 13 %, 33 % and 50 % of the blocks done ((L+1)/30), as Pythia-70M's layers 0, 1 and 2 are 17 %, 33 % and 50 % of its 6; deeper layers cost a longer forward pass on 2 CPU cores |
# | fragments | a random 64-token window of each OpenWebText document, 50,000 fragments, no BOS, windows with a token that decodes to U+FFFD dropped (the paper's code) | the same windows (seeded) of 2,000 WebText documents (the GPT-2 corpus, OpenWebText's original), U+FFFD windows dropped likewise; section 11 shows how the verdicts move with this number. **Run after a BOS**, where the paper's code has none: every SAE and baseline here was fitted on contexts that start with BOS, with the first two positions left out, since the model's attention sink sits there (`sae_paper.data.text`); without BOS the fragment's first token would become the sink, with a residual many times the usual norm on every fragment, a row no decomposition saw |
# | scoring conventions | OpenAI's `neuron_explainer` (Bills et al. 2023) | the same, read at openai/automated-interpretability e4aa21b (`sae_paper.core.reference`): the top 20 fragments split by fixed interleaved ranks (explain 0, 4, 8, 12, 16; simulate 2, 6, 10, 14, 18; the random fragments 1, 4, 7, 10, 13 of a random sample of 15); the explainer's 0–10 scale `floor(10·a/max)`, max over its own fragments; a correlation with a constant side is undefined, left out of the mean and counted (the table's *undefined* column says how many, and the note below it why). A seed redraws only what the reference draws at random: the random sample of fragments (and the features scored, the SAEs' training, ICA's start, the random directions) |
# | features per method | 150 | 100 (fewer when not enough features fire on 20 fragments) |
# | SAE training | 20M activations, 10 epochs, α = 8.6e-4 | 49,152 activations at every layer and ratio (equal budgets, so layers and ratios compare fairly; layer 3's are notebook 01's SAEs), 4 epochs in steps of 128, SmolLM2's default α (1e-2, see notebook 01); each verdict of Figures 2, 8 and 9 decided at 3 seeds |
# | random-model controls | none | Figure 2's SAEs and two baselines trained and scored again on two SmolLM2s that learned nothing (random weights; random blocks under the trained embedding), as Heap et al. (2025) ask of every such study, each control SAE's α matched to the trained SAE's L0: section 13 |
# | ICA | FastICA on ~4M activations | FastICA on 4,096 activations, at most 40 iterations: not converged (its last iteration still moves the unmixing by ~0.2, against FastICA's tolerance of 1e-4; 200 iterations leave 0.05), so a weaker ICA than the paper's. Section 3 prints each fit, and the scoreboard marks every verdict that compares with it *weakened baseline*. PCA is fitted on all 49,152 training activations of its layer |
#
# The `paper` profile runs the paper's model, layers and sizes with an
# `openai-compatible` explainer and simulator (GPT-4 and GPT-3.5 behind the OpenAI API,
# or any server speaking it); it needs the network and an API key.

# %% [markdown]
# ## Parameters
#
# The book runner (`sae-paper book --profile NAME -p key=value`) replaces this cell's
# values; the defaults are the `default` profile. `sae_paper.chapters.autointerp.AutointerpStudy`
# documents each one.

# %% tags=["parameters"]
profile = "notebook"
model = "smollm2-135m"
source = "enwiki2015"
seed = 0
text_seed = None
context_length = 128
harvest_batch_size = 32
dtype = "float32"
lr = 1e-3
eval_tokens = 2048
alive_threshold = 10
layers = [3, 9, 14]
main_layer = 3
n_tokens = 49_152
ratio = 2.0
alpha = None
epochs = 4
batch_size = 128
fig8_ratios = [0.5, 1.0, 2.0, 4.0, 8.0]
topk_ratio = 1.0
mlp_layer = 0
mlp_n_tokens = 8_192
mlp_ratio = 1.0
mlp_alpha = None
mlp_epochs = 2
mlp_batch_size = 128
fragment_sources = ["webtext", "enwiki2015"]
n_fragments = 2000
fragment_length = 64
n_features = 100
fragment_budgets = [2000, 8000]
table1_layer = 9
table1_features = 5
min_fragments = 20
n_top = 20
n_explain = 5
n_simulate_top = 5
n_random = 5
ica_rows = 4_096
ica_max_iter = 40
n_seeds = 3
methods = ["sae", "neurons", "random", "pca", "ica", "topk-pca", "topk-ica"]
controls = ["smollm2-135m-random", "smollm2-135m-reinit-blocks"]
explainer = "token-list"
simulator = "token-list"
explainer_model = None
simulator_model = None
base_url = None
scoring = "simulation"

# %%
# %matplotlib inline
import functools
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")
warnings.filterwarnings("ignore", category=FutureWarning)

from IPython.display import Markdown, display

from sae_paper.analysis.autointerp import fragment_activations, summary_table
from sae_paper.analysis.token_activations import tokens_display
from sae_paper.book import feature_browser
from sae_paper.chapters import autointerp_budget, autointerp_control_verdicts, autointerp_controls, seed_stability
from sae_paper.chapters.autointerp import (
    BASELINES,
    NOTEBOOK,
    SCORING_WORDS,
    AutointerpStudy,
    describe_backends,
    fit_report,
    make_backends,
    mark_weakened,
    prefetch_train,
    score_all,
    scorer,
)
from sae_paper.chapters.autointerp_plots import score_name, scores_by_layer, scores_by_ratio, scores_with_controls
from sae_paper.chapters.autointerp_verdicts import (
    PAPER_TABLE1,
    PAPER_TABLE2,
    WHAT,
    decisions,
    mlp_finding,
    moments_correlations,
    moments_finding,
    table1_finding,
    topk_finding,
)
from sae_paper.core.decompositions import SaeDecomposition, neuron_basis
from sae_paper.core.pipeline import Run
from sae_paper.data.models import Site, load_model, load_tokenizer, model_spec
from sae_paper.report import plots, provenance
from sae_paper.report.claims import Scoreboard
from sae_paper.report.markdown import code_span
from sae_paper.report.seeds import decide_at_seeds, seed_table

study = AutointerpStudy.from_namespace(globals())
prov = provenance.start(NOTEBOOK, profile=profile, parameters=study.parameters(), seed=study.seed)
board = Scoreboard(NOTEBOOK)
explain_with, simulate_with = make_backends(study)
BACKEND = describe_backends(explain_with, simulate_with)
get_model = functools.cache(lambda: load_model(study.model))  # loaded only if something must be harvested
print(f"{len(study.all_configs())} SAEs, {len(study.layers)} residual layers {list(study.layers)}; {BACKEND}")

# %% [markdown]
# ## 1. SAEs and training activations
#
# One residual SAE per layer (R = 2, as the paper's Section 3), the main layer's at every
# ratio of Figure 8, an R = 1 SAE per layer whose mean number of active features sets K
# for top-K PCA and ICA (Appendix G), and notebook 01's MLP SAE. SAEs that notebook 01
# trained (same configuration) come from the cache.

# %%
with prov.section("harvest training activations"):
    print("\n".join(prefetch_train(study, get_model)) or "all activation caches were on disk")
with prov.section("train SAEs"):
    saes = {c: Run(c, progress=False).sae() for c in study.all_configs()}

# %% [markdown]
# ## 2. Fragments and feature activations
#
# Each fragment is `[BOS] + 64 tokens`, a random window (seeded) of a WebText document; a
# window with a token that decodes to U+FFFD (part of a UTF-8 character) is dropped, as the
# paper's code drops it. Every site's activations on the 64 tokens come from one forward
# pass, cached. The 20 fragments with the highest maximum are a feature's top fragments, split
# as the reference splits them: ranks 0, 4, 8, 12, 16 are shown to the explainer, 2, 6, 10, 14,
# 18 simulated; 5 random fragments with non-zero variance (1, 4, 7, 10, 13 of a random sample
# of 15) are simulated too. The explainer sees the activations as integers 0–10,
# `floor(10·a/max)` with the largest activation over its own 5 fragments (the top one among
# them). A feature with fewer than 20 fragments of non-zero variance is skipped and counted.

# %%
with prov.section("fragment activations"):
    frag_spec = study.fragment_spec()
    fragments, site_acts = fragment_activations(None, frag_spec, study.sites(), get_model=get_model)
print(f"{fragments.n_fragments} fragments of {fragments.length} tokens; e.g. "
      f"{tokens_display(load_tokenizer(study.model), fragments.tokens[0][:24])!r}")

# %% [markdown]
# ## 3. Explain, simulate, score
#
# Every method at every layer, the same number of features each, drawn at random (seeded)
# among the features that are not skipped. Negative activations of the residual basis,
# random directions, PCA and ICA are set to 0, as the paper did.
#
# The `scoring` parameter chooses how an explanation is scored: `simulation` (the paper's,
# described above), or `detection` and `fuzzing` (Paulo et al. 2024), which ask the simulator
# a yes or no per fragment and score the AUROC of its answers, 0.5 at chance rather than
# the correlation's 0. Every figure and verdict below uses the scoring this build ran:

# %%
display(Markdown(f"This build scores by {SCORING_WORDS[study.scoring]}."))
score = scorer(explain_with, simulate_with, study.scoring_config(), study.n_features)
with prov.section("fit baselines (PCA, ICA)"):
    ks = study.topk_ks(site_acts)
    scored = study.decompositions(ks=ks)
baseline_fits, weakened = fit_report(scored)
print(baseline_fits)
with prov.section("autointerp: Figures 2, 8, 9, 18"):
    results = score_all(scored, score, fragments, site_acts)
summaries = [result.summary() for result in results.values()]
main_site = Site("resid_post", study.main_layer)
by_ratio = {r: results[(str(main_site), study.ratio_method(r))].summary() for r in study.fig8_ratios}
main_baselines = [s for s in summaries if s.site == str(main_site) and s.method in BASELINES]
if ks:
    print("K for top-K PCA/ICA (mean L0 of the R=1 SAE on the fragments): "
          + ", ".join(f"layer {layer}: {k}" for layer, k in ks.items()))
Markdown(summary_table(summaries))

# %% [markdown]
# ### The same at other seeds
#
# Figures 2, 8 and 9 are decided by margins of a few hundredths to a few tenths over 100
# sampled features, and a seed decides much of that: each SAE's initialisation and the order
# it sees its activations, ICA's start, the random directions, which features are drawn and
# which random fragments are simulated (which top fragments are explained and simulated is
# the reference's fixed split, the same at every seed). So the SAEs of Figures 2 and 8 are
# trained again at each further seed, on the same cached activations, and every method is scored
# again on a new sample of the same fragment pool. Each of the four claims gets a verdict per
# seed; the headline is the majority (a tie goes to the less favourable verdict), and the
# scoreboard shows whether the seeds agree and how the deciding number spreads.

# %%
decide = functools.partial(decisions, study=study, backend=study.explainer, n_layers=model_spec(study.model).n_layers,
                           weakened=weakened)
with prov.section("autointerp at other seeds"):
    per_seed = {study.seed: summaries}
    for other in study.seeds()[1:]:
        score_at = scorer(explain_with, simulate_with, study.reseeded(other).scoring_config(), study.n_features)
        per_seed[other] = [r.summary() for r in score_all(study.decompositions(other), score_at,
                                                                             fragments, site_acts).values()]
    seeded = decide_at_seeds(decide, per_seed, what=WHAT)
Markdown(seed_table(seeded))

# %% [markdown]
# ## 4. Figure 2: SAE features against the baselines, per layer
#
# The paper (Pythia-70M, GPT-4/GPT-3.5): SAE features score far higher than every baseline
# in the early layers; the margin shrinks with depth, to about ICA's at layer 4 and little
# gain at the last layer. Error bars are 95 % confidence intervals over features; the
# table above gives the number of features scored, skipped and failed for every point.
#
# Read it with the stand-in in mind: the token-list "explanation" can only say *which
# tokens* a feature fires on, so any direction whose activation is mostly a function of the
# current token scores well, whether or not it is a meaningful feature. Early in the
# residual stream, close to the token embedding, that includes random directions and the
# residual basis; contextual features (which an LLM could describe) score low.

# %%
fig2_methods = [m for m in ("sae", *BASELINES) if m in study.methods]
scores_by_layer(summaries, study.layers, fig2_methods, title=f"Figure 2 analogue: {score_name(study.scoring)} autointerp score",
                layer_label=study.layer_label, backend=BACKEND, scoring=study.scoring)

# %% [markdown]
# Section 13 scores the same SAEs and baselines on random-weight models, the control that
# says whether the SAE's lead comes from what the model learned.

# %%
board.record("fig2-early-layers", *seeded["fig2-early-layers"][0], seeds=seeded["fig2-early-layers"][1])
board.record("fig2-depth", *seeded["fig2-depth"][0], seeds=seeded["fig2-depth"][1])

# %% [markdown]
# ## 5. Figure 9: random-only scores (Appendix C.2)
#
# Scoring on the 5 random fragments only removes the easy contrast between a top fragment
# and the rest of the text. The paper: lower scores, the SAE still ahead, especially early.
# With the token-list stand-in, an explanation whose tokens do not occur in the random
# fragments predicts a constant 0 there: the correlation is then undefined, as in the
# reference scorer, so it is left out of the random-only mean rather than scored 0, and
# counted in the table's *undefined* column (the note below the table says why; the
# verdict's note gives the count per method).

# %%
scores_by_layer(summaries, study.layers, fig2_methods, title="Figure 9 analogue: random-only autointerp score",
                random_only=True, layer_label=study.layer_label, backend=BACKEND, scoring=study.scoring)

# %%
board.record("fig9-random-only", *seeded["fig9-random-only"][0], seeds=seeded["fig9-random-only"][1])

# %% [markdown]
# ## 6. Figure 18: top-K PCA and ICA (Appendix G)
#
# A sparse code alone might explain the SAE's advantage; top-K PCA and ICA keep only the K
# largest components of each token active, K the mean number of active features of an
# R = 1 dictionary on the same layer. The paper: top-K closes only a small part of the gap.

# %%
if study.uses_topk:
    fig18_methods = [m for m in ("sae", *BASELINES, "topk-pca", "topk-ica") if m in study.methods]
    display(scores_by_layer(summaries, study.layers, fig18_methods, title="Figure 18 analogue: with top-K PCA and ICA",
                            layer_label=study.layer_label, backend=BACKEND, scoring=study.scoring))
    board.record("fig18-topk", *mark_weakened(topk_finding(summaries, study.layers, ks, backend=study.explainer),
                                              weakened))
else:
    print("top-K PCA and ICA are not among this profile's methods")

# %% [markdown]
# ## 7. Figure 8: score against the dictionary ratio R (Appendix C.1)
#
# SAEs with R ∈ {0.5, 1, 2, 4, 8} on the main layer; the baselines of that layer as dashed
# lines with their confidence bands. The paper: even R < 1 beats the baselines.

# %%
Markdown(summary_table([by_ratio[r] for r in sorted(by_ratio)]))

# %%
scores_by_ratio(by_ratio, main_baselines, title=f"Figure 8 analogue: layer {study.layer_label(study.main_layer)}", backend=BACKEND,
                scoring=study.scoring)

# %%
board.record("fig8-ratio", *seeded["fig8-ratio"][0], seeds=seeded["fig8-ratio"][1])

# %% [markdown]
# ## 8. Table 1: the first features of a dictionary
#
# The paper lists features 0–4 of its layer-1 residual dictionary with GPT-4's explanation
# and the score. Feature indices of a dictionary are arbitrary, so only the kind of
# explanation and the spread of scores can be compared; ours are of the layer at Pythia's
# layer-1 depth.

# %%
t1_site = Site("resid_post", study.table1_layer)
t1 = score(SaeDecomposition(saes[study.sae_config(study.table1_layer)]), site_acts[t1_site], fragments,
           method="sae-first", site=str(t1_site), features=list(range(study.table1_features)))
results[(str(t1_site), "sae-first")] = t1
by_feature = {f.feature: f for f in t1.features}
rows = [(i, (by_feature[i].explanation or "") if i in by_feature else None, by_feature[i].score if i in by_feature else None)
        for i in range(study.table1_features)]
lines = ["| feature | our explanation | our score | paper (Pythia-70M layer 1): explanation | paper score |", "|---|---|---:|---|---:|"]
for i, explanation, value in rows:
    ours = ("skipped (< 20 fragments with variance)" if i not in by_feature
            else explanation or f"failed: {by_feature[i].failure}")
    paper_text, paper_score = PAPER_TABLE1[i] if i < len(PAPER_TABLE1) else ("", "")
    undefined = by_feature[i].undefined if i in by_feature else None  # a constant side: no score, says why
    shown = f"undefined ({undefined})" if undefined else "" if value is None else f"{value:.2f}"
    lines.append(f"| {study.table1_layer}-{i:04d} | {code_span(ours[:120])} | {shown} "
                 f"| {paper_text} | {paper_score} |")
Markdown("\n".join(lines))

# %%
board.record("table1-first-five", *table1_finding(rows, str(t1_site), backend=study.explainer, scoring=study.scoring))

# %% [markdown]
# ## 9. Table 2: score against the feature's activation moments (Appendix C.4)
#
# Across every SAE feature scored above (all layers and ratios), the correlation between
# its top-and-random score and the mean, variance, skew and (excess) kurtosis of its
# activation over all fragment tokens. The paper: mean −0.09, variance 0.02, skew 0.20,
# kurtosis 0.15: the score is not explained by how often or how strongly a feature fires.

# %%
sae_scored = [r for (site, method), r in results.items() if method == "sae" or method.startswith("sae-R")]
sae_results = [f for r in sae_scored for f in r.features]
correlations = moments_correlations(sae_results)
Markdown("| moment | ours | paper |\n|---|---:|---:|\n" + "\n".join(
    f"| {k} | {v:+.2f} | {PAPER_TABLE2[k]:+.2f} |" for k, v in correlations.items()))

# %%
board.record("table2-moments", *moments_finding(correlations, len(sae_results), backend=study.explainer,
                                                summaries=[r.summary() for r in sae_scored]))

# %% [markdown]
# ## 10. MLP features against MLP neurons (Appendix C.3)
#
# Notebook 01's MLP SAE (layer 0, R = 1) against the MLP's own neurons (negative
# activations set to 0). The paper: MLP dictionary features are more interpretable than
# neurons, though many dictionary features are dead (skipped here: too few fragments).

# %%
if study.mlp_layer is not None:
    mlp_site = Site("mlp_post", study.mlp_layer)
    with prov.section("autointerp: MLP"):
        results.update(score_all(
            {(mlp_site, "mlp-sae"): SaeDecomposition(saes[study.mlp_config()]),
             (mlp_site, "mlp-neurons"): neuron_basis(mlp_site.width(model_spec(study.model)))}, score, fragments, site_acts))
        mlp_sae, mlp_neurons = (results[(str(mlp_site), m)].summary() for m in ("mlp-sae", "mlp-neurons"))
    board.record("c3-mlp-interp", *mlp_finding(mlp_sae, mlp_neurons, backend=study.explainer))
    display(Markdown(summary_table([mlp_sae, mlp_neurons])))

# %% [markdown]
# ## 11. How the verdicts move with the fragment budget
#
# The number of fragments decides Figures 2, 8 and 9: a feature must fire on at least 20
# fragments to be scored and the explainer and simulator need varied top and random
# fragments, so with a small pool every method sinks toward the same floor. Here each
# claim's deciding number (the SAE's margin over the best baseline; for depth, how much it
# shrinks from the first to the last layer; for Figure 8 the smallest margin of any R) is
# recomputed on smaller pools, which are the start of this notebook's pool, and on larger
# ones when a larger profile (`long`) left their activations in the cache. Above 0 the SAE
# is ahead; the scoreboard's *with more budget* column comes from the ends of each curve
# (`sae_paper.report.budget.budget_trend`). The default profile measures its own budget only
# (`fragment_budgets`): no claim reads the trend, and section 13's random-model controls took its
# time; `--profile long` measures it.

# %%
with prov.section("budget sensitivity: fragments"):
    frag_budgets = autointerp_budget.budgets(study, frag_spec)
    pool = autointerp_budget.pools(frag_spec, fragments, site_acts, study.sites(), get_model)
    budget_points = autointerp_budget.fragment_sweep(frag_budgets, pool, scored, score,
                                                     decide, known={study.n_fragments: summaries})
    budget_trends = autointerp_budget.trends(budget_points)
print(f"pools of {', '.join(f'{n:,}' for n in frag_budgets)} fragments")
plots.budget_sensitivity(budget_points, unit="fragments in the pool", default=study.n_fragments,
                         title=f"Deciding numbers against the fragment budget ({BACKEND})", ylabel=WHAT)

# %%
for claim_id in autointerp_budget.CLAIMS:
    if budget_trends[claim_id] is not None and claim_id in board.records:
        board.add_trend(claim_id, budget_trends[claim_id])
Markdown("\n".join(f"- **{claim_id}**: " + (f"*{t.trend}*: {t.note}" if t else "fewer than 3 budgets measured")
                   for claim_id, t in budget_trends.items()))

# %%
# what the book's feature browser shows of the main and MLP SAEs (sae_paper.book.feature_browser)
feature_browser.save_scored(
    NOTEBOOK, scorer=BACKEND, stand_in=explain_with.backend.stand_in, fragments=frag_spec,
    saes={"main": (study.sae_config(study.main_layer), results.get((str(main_site), "sae"))),
          "mlp": (study.mlp_config(),
                  results.get((str(mlp_site), "mlp-sae")) if study.mlp_layer is not None else None)})

# %% [markdown]
# ## 12. Feature stability across seeds (a control)
#
# Paulo & Belrose (2025, arXiv 2501.16615) find that SAEs trained on the same data with
# different seeds learn different features: in large TopK SAEs only about 30 % of the features
# have a match of decoder cosine ≥ 0.7 in the other SAE, ReLU + L1 SAEs (as here) more. Every
# SAE of Figures 2 and 8 was trained above at each seed; here each seed's features are matched
# in the other seeds' SAE of the same layer and ratio, beside two sets of random directions of
# the same shape: the level two dictionaries that share nothing reach by chance. The table
# gives each pair of seeds both ways, the figure the histograms of best-match cosines.

# %%
with prov.section("feature stability across seeds"):
    stability = seed_stability.stability_pairs(seed_stability.seeded_saes(study, seed_stability.autointerp_saes))
    stability_seeded = decide_at_seeds(seed_stability.decisions,
                                       seed_stability.stability_inputs(stability, study.seeds()),
                                       what=seed_stability.WHAT)
Markdown(seed_stability.stability_table(stability))

# %%
seed_stability.stability_figure(stability, title=f"Best-match cosines across seeds ({len(study.seeds())} seeds, "
                                                       f"{model_spec(study.model).d_model}-wide residual stream)")

# %%
board.record("control-seed-stability", *stability_seeded[seed_stability.CLAIM][0],
             seeds=stability_seeded[seed_stability.CLAIM][1])
Markdown(seed_table(stability_seeded))

# %% [markdown]
# ## 13. Figure 2's random-model controls (Heap et al. 2025)
#
# SAEs trained on *randomly initialised* transformers reach autointerp scores close to
# those on trained ones (Heap et al. 2025), so Figure 2's lead could come from the scorer,
# the architecture or the token embedding rather than from what the model learned. Each
# control model (the `controls` parameter) gets Figure 2's SAE at every layer and seed,
# trained exactly as the trained model's (same text, number of activations, ratio, epochs,
# batch size, learning rate), and its residual basis and random directions, all scored by
# the same scorer on the same fragments with the control's activations. Only α differs: a
# random model's residual stream has another scale, so each control SAE's α is the one at
# which a short training on the control's *training activations* (the SAE's own epochs over
# at most 4,096 of them) reaches the trained SAE's mean L0 on held-out tokens, found by
# bisection in log α; scores are never read. The table gives each SAE's α and its FVU and L0
# on its own model's held-out tokens, and how the search ended. The full training sees more
# rows than the short one, so its L0 can land away from the target: the table's two L0
# columns show by how much, and the comparison is of SAEs that close in sparsity, not equal.

# %%
if study.controls:
    get_control = functools.cache(load_model)
    with prov.section("controls: harvest"):
        print("\n".join(autointerp_controls.prefetch_controls(study, get_control)) or "control activations were on disk")
        control_frags = autointerp_controls.control_fragments(study, get_control)
    with prov.section("controls: alpha search"):
        searches = autointerp_controls.alpha_searches(study)
    with prov.section("controls: train SAEs"):
        control_decs = {s: autointerp_controls.decompositions(study, searches, s, baselines=s == study.seed)
                        for s in study.seeds()}
    with prov.section("controls: autointerp"):
        control_scores = {s: autointerp_controls.score_controls(
            control_decs[s], score if s == study.seed else scorer(explain_with, simulate_with,
                                                                  study.reseeded(s).scoring_config(), study.n_features),
            control_frags) for s in study.seeds()}
    decide_controls = functools.partial(autointerp_control_verdicts.control_decisions, study=study, backend=study.explainer)
    seeded_controls = decide_at_seeds(decide_controls, {s: [*per_seed[s], *control_scores[s]] for s in study.seeds()},
                                      what=autointerp_control_verdicts.CONTROL_WHAT)
    display(Markdown("Fragments: " + "; ".join(
        f"`{c}`: " + ("the trained model's tokens" if autointerp_controls.same_tokens(fragments, f.fragments)
                      else "the same documents in its own tokenizer") for c, f in control_frags.items()) + "."))
    display(scores_with_controls([*summaries, *control_scores[study.seed]], study, backend=BACKEND,
                                 title=f"Figure 2 with random-model controls: {score_name(study.scoring)} score"))
    display(Markdown(autointerp_controls.evaluation_table(study, searches)))
    display(Markdown(summary_table(control_scores[study.seed])))
    display(Markdown(seed_table(seeded_controls)))
    board.record("control-random-model", *seeded_controls["control-random-model"][0],
                 seeds=seeded_controls["control-random-model"][1])
else:
    print("this profile scores no random-model controls")

# %% [markdown]
# ## Summary
#
# The claims this notebook tested, with the paper's statement, our numbers and the verdict
# (the note gives the rule). Every number above comes from the explainer and simulator
# named at the top of each figure; with the `token-list` stand-in they measure how well a
# feature is described by *which tokens* it fires on, not by what an LLM can say about it.

# %%
board

# %% [markdown]
# ## Provenance

# %%
calls = explain_with.cache
print(f"model calls: {calls.hits} from the cache, {calls.misses} made (the token-list stand-in makes none); "
      f"methods scored: {calls.scores_missing}, their stored scores reused: {calls.scores_reused}; failures: "
      f"{sum(r.summary().n_failed for r in results.values())} of "
      f"{sum(r.summary().n_scored + r.summary().n_failed for r in results.values())} features")
prov.save()
prov
