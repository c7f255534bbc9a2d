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
# # Training sparse autoencoders
#
# *Section 2, Section 6.2 and Appendices B and E of Cunningham et al. (2023),
# "Sparse Autoencoders Find Highly Interpretable Features in Language Models".*
#
# ## Overview
#
# The paper learns a dictionary of features for a language model's activations with a
# one-layer sparse autoencoder (SAE) and then studies the features. This notebook
# trains those autoencoders and checks what the paper says about training them:
#
# 1. **the main SAE** on the residual stream, its reconstruction error, sparsity and
#    dead features, and what it costs the language model to replace the residual stream
#    by its reconstruction (the paper: Pythia-70M's perplexity rises from 25 to 40, §6.2);
# 2. **Figure 6**: the trade-off between sparsity (mean number of active features, L0)
#    and reconstruction (fraction of variance unexplained, FVU) as the L1 coefficient α
#    varies, on MLP layer 0 as in the paper, and on the residual stream;
# 3. **Figure 7**: the same trade-off for different numbers of training epochs;
# 4. **Figure 16**: how many features stay alive as α and the dictionary ratio R vary,
#    residual stream against MLP, and tied against untied MLP dictionaries (Appendix C.3).
#
# Every number below is computed by the cells of this notebook from the parameters in
# the next cell (set by a profile of `sae-paper book`) and recorded on the
# [claims scoreboard](scoreboard.md) with a verdict computed from the numbers.
#
# ## Where our setting differs from the paper's
#
# | | paper | this book (`default` profile) |
# |---|---|---|
# | model | Pythia-70M-deduped (6 layers, d_model 512, GELU MLP of 2048) | SmolLM2-135M-Instruct (30 layers, d_model 576, gated SiLU MLP of 1536), dequantised from a 4-bit GGUF: the Pythia weights cannot be downloaded here |
# | text | the Pile | English Wikipedia (2015 dump), held-out documents for evaluation |
# | training activations | 5–50M per SAE, 1–3 epochs (Section 3: 10 epochs) | about 50k (residual, 4 epochs in steps of 128) and 8k (MLP, 1–3 epochs) per SAE, on 2 CPU cores |
# | residual site | layer 2 of 6 for the splice | layer 3 of 30 |
# | α (residual) | 8.6e-4 | 1e-2 by default: SmolLM2's residual stream has norms around 100 (Pythia-70M's a few), and the loss averages the squared error over dimensions, so the paper's α barely sparsifies it |
# | α (MLP) | 3.2e-4 | 3.2e-4 (SmolLM2's MLP activations are of order 0.1, like Pythia's) |
# | "alive" | fires more than 10 times in 10M activations | fires more than 10 times during the last training epoch (tens of thousands of activations): a much stricter test |
#
# With a few tens of thousands of activations our dictionaries are far less trained
# than the paper's, so absolute numbers (FVU, perplexity) are not the paper's; what can
# be compared is the shape of each result. The `paper` profile runs the paper's model,
# token counts and α on a machine that can download Pythia.

# %% [markdown]
# ## Parameters
#
# The book runner (`sae-paper book --profile NAME -p key=value`) replaces this cell's
# values; the defaults are the `default` profile. `sae_paper.chapters.training.TrainingStudy`
# documents each one and builds every SAE configuration from them.

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
resid_alphas = [3e-3, 1e-2, 3e-2]
resid_ratios = [1.0, 2.0, 4.0]
mlp_layer = 0
mlp_n_tokens = 8_192
mlp_ratio = 1.0
mlp_epochs = 2
mlp_batch_size = 128
mlp_alphas = [0.0, 1e-4, 3.2e-4, 6e-4]
mlp_alpha = None
mlp_ratios = [0.5, 1.0, 2.0]
epoch_list = [1, 2, 3]
fig7_alphas = [1e-4, 3.2e-4, 6e-4]
untied_alphas = [3.2e-4, 6e-4]

# %%
# %matplotlib inline
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets; we show no bars

from sae_paper.chapters.training import (
    NOTEBOOK,
    TrainingStudy,
    epochs_finding,
    hardware_phrase,
    mlp_dead_finding,
    resid_alive_finding,
    splice_finding,
    tradeoff_finding,
    train_runtime_finding,
    untied_finding,
)
from sae_paper.core import sweeps
from sae_paper.core.pipeline import Run
from sae_paper.core.sweeps import RecordTable
from sae_paper.report import claims, plots, provenance

study = TrainingStudy.from_namespace(globals())
prov = provenance.start(NOTEBOOK, profile=profile, parameters=study.parameters(), seed=study.seed)
board = claims.Scoreboard(NOTEBOOK)
main_config = study.main_config()
print(f"{len(study.all_configs())} SAEs in this notebook; main SAE: {main_config.model} "
      f"{main_config.site}.{main_config.layer}, R={main_config.ratio:g}, α={main_config.alpha:g}")

# %% [markdown]
# ## 1. The method (Section 2)
#
# For activations $x \in \mathbb{R}^{d_{in}}$ at one site of the model (the residual
# stream after a block, or the MLP's hidden layer), the SAE has $d_{hid} = R \cdot d_{in}$
# features. With **tied** weights,
#
# $$c = \mathrm{ReLU}(\hat M x + b), \qquad \hat x = \hat M^\top c,$$
#
# where $\hat M$ is $M$ with each row normalised to unit length, so each row is a
# dictionary feature $f_i$. The **untied** variant (Appendix C.3) encodes with a free
# matrix $M_e$ and decodes with the normalised $\hat M_d$. The loss is reconstruction
# plus an L1 penalty on the codes, $L = \lVert x - \hat x \rVert^2 + \alpha \lVert c \rVert_1$;
# as in the authors' code, the squared error is averaged over the $d_{in}$ dimensions and
# the L1 norm summed over features, which is what the paper's α values refer to.
# Training is Adam with learning rate $10^{-3}$ (Appendix B).
#
# We measure each SAE on held-out activations:
# **FVU** $= \sum \lVert x - \hat x\rVert^2 / \sum \lVert x - \bar x\rVert^2$,
# **L0** = mean number of non-zero codes per token, and **alive features** = features
# that fired more than 10 times (Figure 16's definition; we count over the last training
# epoch).
#
# ## 2. Activations
#
# All SAEs below are trained on activations harvested once and cached on disk; sites
# that share a text split are harvested in one forward pass. On a rerun this cell
# finds everything cached and does not even load the model.

# %%
main = Run(main_config, progress=False)
with prov.section("harvest activations"):
    harvested = sweeps.prefetch(study.all_configs(), model=lambda: main.model)
print("\n".join(harvested) or "all activation caches were already on disk")

# %% [markdown]
# ## 3. The main SAE
#
# A tied SAE with R = 2 on the residual stream. Besides FVU, L0 and alive features we
# splice it into the model: the residual stream at this layer is replaced by its
# reconstruction on every token but the first (BOS), and we measure the next-token
# cross-entropy on held-out text, against the clean model and against zeroing the site
# (the "CE recovered" is how much of the zero-ablation loss the SAE avoids). This is the
# analogue of Section 6.2, where the paper reports Pythia-70M's Pile perplexity rising
# from 25 to 40 when layer 2's residual stream is replaced by the SAE's reconstruction.

# %%
with prov.section("main SAE: train"):
    main.sae()
with prov.section("main SAE: evaluate and splice"):
    evaluation = main.evaluate(splice=True)
    main_record = sweeps.evaluate_config(main_config)
print(f"{main_config.model} {main.site}, {main_config.sae} SAE, R={main_config.ratio:g}, α={main.alpha:g}, "
      f"{main_config.n_tokens:,} activations × {main_config.epochs} epochs")
print("\n".join(evaluation.lines()))
print(f"alive (fired > {main_config.alive_threshold}× in the last training epoch): "
      f"{main_record.alive} / {main_record.d_sae}; training took {main_record.train_seconds:.0f} s")

# %%
plots.splice_perplexity(evaluation.splice, label=f"{main_config.model} {main.site}")

# %% [markdown]
# The paper's number is for a different model, text and training budget, so we compare
# the *relative* rise of perplexity (25 → 40 is ×1.6), which we measure in any setting, so it
# is judged either way: inside the rule's band it is *partly* here (another model), outside
# it *not*, with how far outside in the note. Expect ours to be larger: the
# dictionary saw tens of thousands of activations, not millions, and a reconstruction
# error that looks small in FVU still moves the next-token distribution a lot (the
# zero-ablated model shows how much the rest of the network depends on this site).
# The training time is compared with Appendix B's "under an hour on one A40" by
# extrapolating our throughput to the paper's run sizes.

# %%
board.record("train-runtime", *train_runtime_finding(
    main_record.train_seconds, main_record.activations_per_s, main_config.n_tokens * main_config.epochs,
    hardware=hardware_phrase(prov.hardware)))
board.record("splice-perplexity", *splice_finding(evaluation.splice, model=main_config.model, site=str(main.site)))
board

# %% [markdown]
# ### The same CE recovered under SAELens's and SAEBench's convention, and this SAE in SAELens's format
#
# SAELens and SAEBench (`ce_loss_score`) splice and zero-ablate **every** position, BOS
# included, and leave out of the mean the predictions made *from* BOS and from
# end-of-text separators. We leave BOS, the first token and the separators untouched,
# because their activations are attention-sink outliers the SAE never saw. The two
# conventions differ most in the zero-ablation baseline: zeroing BOS too takes away the
# attention sink, and a model without biases such as SmolLM2 then outputs logits of
# exactly 0, a CE of ln 49,152 = 10.8 nats, far below the ~17 nats of zeroing the other
# positions only, so for SmolLM2 the same SAE gets a lower CE recovered under SAEBench's
# convention. The paper's number (Section 6.2: Pythia-70M's Pile perplexity 25 → 40 with
# layer 2's residual stream replaced) follows neither: it reports the clean and spliced
# perplexities only, with no zero-ablation baseline and no CE recovered, and does not say
# whether BOS was replaced; compare it with the *CE clean* and *CE spliced*
# columns. `tests/test_saelens.py` checks that the second row equals SAEBench 0.6.0's own
# core eval of our SAELens export within 1 %.

# %%
from sae_paper.book import exports

with prov.section("main SAE: SAEBench's CE convention"):
    note = exports.notebook_note(NOTEBOOK, study.parameters(), run=main)
note

# %% [markdown]
# ## 4. Figure 6: sparsity against reconstruction
#
# One SAE per α, everything else fixed. Larger α buys sparsity (fewer active features
# per token) with reconstruction error. The paper finds a smooth trade-off with no
# knee, so no α is obviously best, and chose α by looking at the features. We sweep α
# on MLP layer 0 (the paper's Figure 6) and on the residual stream of the main SAE. The
# MLP sweep includes α = 0 (no sparsity penalty), needed for Figure 16.

# %%
with prov.section("Figure 6: alpha sweeps"):
    alpha_sweeps = sweeps.run_by_site(study.alpha_sweep(site_kind) for site_kind in ("mlp_post", "resid_post"))
RecordTable.joined(alpha_sweeps.values())

# %%
plots.fig6_tradeoff(alpha_sweeps)

# %%
board.record("fig6-tradeoff", *tradeoff_finding(alpha_sweeps))

# %% [markdown]
# ## 5. Figure 7: the trade-off per number of epochs
#
# The MLP sweep again, trained for different numbers of epochs over the same
# activations (the paper used 1–3 epochs for these dictionaries, 10 for Section 3's).
# Curves closer to the lower left are better: less error at the same sparsity.

# %%
with prov.section("Figure 7: epochs"):
    by_epochs = {epochs: RecordTable(sweeps.run_sweep(configs)) for epochs, configs in study.epoch_sweep().items()}
RecordTable.joined(by_epochs.values())

# %%
plots.fig7_epochs(by_epochs)

# %%
board.record("fig7-epochs", *epochs_finding(by_epochs))

# %% [markdown]
# ## 6. Figure 16: dead and alive features
#
# A feature that never fires is wasted capacity. The paper counts a feature as alive if
# it fires more than 10 times in 10M activations and finds that residual-stream
# dictionaries keep (almost) all features alive up to about 4× overcomplete, while MLP
# dictionaries have many dead features, even with no sparsity penalty (α = 0), which is
# why the paper tried untied weights for MLPs (Appendix C.3). Our count covers only the
# last training epoch (tens of thousands of activations), so "dead" here includes
# features that fire rarely but would pass the paper's 10-in-10M test.

# %%
with prov.section("Figure 16: ratio sweeps and untied SAEs"):
    ratio_sweeps = sweeps.run_by_site(study.ratio_sweep(site_kind) for site_kind in ("resid_post", "mlp_post"))
    untied_pairs = [tuple(sweeps.run_sweep(pair)) for pair in study.untied_pairs()]
RecordTable.joined([*ratio_sweeps.values(), *untied_pairs])

# %%
plots.fig16_alive(alpha_sweeps, ratio_sweeps, untied_pairs)

# %%
resid_records = sweeps.collect([main_record], ratio_sweeps, site_kind="resid_post")  # at the main α
mlp_records = sweeps.collect(alpha_sweeps, ratio_sweeps, site_kind="mlp_post")
board.record("fig16-resid-alive", *resid_alive_finding(resid_records))
board.record("fig16-mlp-dead", *mlp_dead_finding(mlp_records, resid_records))
if untied_pairs:
    board.record("c3-untied-alive", *untied_finding(untied_pairs))

# %% [markdown]
# ## Summary
#
# The claims this notebook tested, with the paper's statement, our numbers and the
# verdict (the note gives the rule). The [scoreboard](scoreboard.md) collects them with
# every other notebook's.

# %%
board

# %% [markdown]
# ## Provenance
#
# The commit, parameters, library versions and hardware behind every number above, and
# where the wall time went (cached SAEs and activations take no time on a rerun), and the commits that computed the cached results
# this run reused, those older than the current commit flagged.

# %%
prov.save()
prov
