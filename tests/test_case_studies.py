"""Section 5 case studies: less-than-rank-one ablation, feature inspection, the causal tree.

Unit tests use hand-set SAEs and tensors with hand-computed answers; integration tests
use the random-weight Pythia (``pythia_random``) and a two-layer toy model with a planted
parent feature; the SmolLM2 test is marked slow.
"""

from __future__ import annotations

import math

import pytest
import torch

from sae_paper.analysis.ablation import (
    ablate,
    ablate_feature,
    ablation_hook,
    feature_axis,
    feature_encoder,
    logit_effect,
    pre_activation,
)
from sae_paper.analysis.causal_tree import causal_tree, sample_contexts, unembedding_scores
from sae_paper.analysis.feature_contexts import context_text, contexts_html, features_on_token, top_contexts
from sae_paper.analysis.feature_stats import (
    class_share_per_bin,
    class_stats,
    token_histogram,
    top_tokens,
    unembed_direction,
)
from sae_paper.analysis.token_activations import (
    TokenActivations,
    cached_activations,
    collect_activations,
    feature_codes,
    has_apostrophe,
    is_closing_bracket,
    is_newline,
)
from sae_paper.core.decompositions import SaeDecomposition, TopK, neuron_basis, signed_neuron_basis
from sae_paper.core.sae import make_sae
from sae_paper.data.activations import HarvestSpec
from sae_paper.data.models import Site
from sae_paper.errors import SaePaperError


def hand_set_sae(kind: str, encoder: torch.Tensor, bias: torch.Tensor, directions: torch.Tensor | None = None):
    """An SAE whose effective weights are exactly the given (unit-norm) rows."""
    sae = make_sae(kind, encoder.shape[1], encoder.shape[0])
    with torch.no_grad():
        sae.b.copy_(bias)
        if kind == "tied":
            sae.M.copy_(encoder)
        else:
            sae.M_e.copy_(encoder)
            sae.M_d.copy_(directions)
    return SaeDecomposition(sae)


def unit(v):
    v = torch.as_tensor(v, dtype=torch.float32)
    return v / v.norm()


# --------------------------------------------------------------------------------------
# Less-than-rank-one ablation
# --------------------------------------------------------------------------------------


@pytest.fixture
def tied():
    rows = torch.stack([unit([1.0, 1.0, 0.0, 0.0]), unit([0.0, 1.0, 1.0, 0.0]), unit([0.0, 0.0, 0.0, 1.0])])
    return hand_set_sae("tied", rows, torch.tensor([-0.1, 0.2, -5.0]))


@pytest.fixture
def untied():
    encoder = torch.tensor([[2.0, 0.5, 0.0, 0.0], [0.0, 1.0, -1.0, 0.5]])
    directions = torch.stack([unit([1.0, 0.0, 1.0, 0.0]), unit([0.0, 1.0, 0.0, 0.0])])
    return hand_set_sae("untied", encoder, torch.tensor([0.3, -0.2]), directions)


@pytest.mark.parametrize("which", ["tied", "untied"])
def test_ablation_moves_only_along_the_direction_and_switches_the_feature_off(which, tied, untied):
    decomposition = {"tied": tied, "untied": untied}[which]
    x = torch.tensor([[1.0, 2.0, -0.5, 0.3], [0.5, -0.2, 1.5, 2.0], [3.0, 0.1, 0.2, -1.0]])
    for feature in range(2):
        axis = feature_axis(decomposition, feature)
        moved = ablate(axis, x)
        # the feature no longer fires (code <= 1e-6) wherever it fired ...
        assert decomposition.encode(moved)[:, feature].max() <= 1e-6
        # ... the move is along f_i only: nothing changes orthogonally to it ...
        f = decomposition.feature_directions()[feature]
        change = moved - x
        orthogonal = change - (change @ f).unsqueeze(1) * f
        assert orthogonal.abs().max() <= 1e-6
        # ... and by exactly -pre / (e.f) where the feature fired, 0 elsewhere.
        pre = pre_activation(axis, x)
        expected = torch.where(pre > 0, -pre / axis.slope, torch.zeros_like(pre)).float()
        torch.testing.assert_close(change @ f, expected, rtol=1e-5, atol=1e-6)


def test_tied_ablation_subtracts_the_features_own_contribution(tied):
    x = torch.tensor([[1.0, 2.0, -0.5, 0.3]])
    codes = tied.encode(x)
    assert codes[0, 0] > 0
    expected = x - codes[:, :1] * tied.feature_directions()[0]
    torch.testing.assert_close(ablate_feature(tied, 0, x), expected, rtol=0, atol=1e-6)


def test_untied_ablation_uses_the_encoder_row_not_the_direction(untied):
    x = torch.tensor([[1.0, 0.0, 0.0, 0.0]])  # pre of feature 0 = 2.0 + 0.3
    axis = feature_axis(untied, 0)
    slope = float(torch.tensor([2.0, 0.5, 0.0, 0.0]) @ unit([1.0, 0.0, 1.0, 0.0]))
    assert axis.slope == pytest.approx(slope, rel=1e-6)
    moved = ablate(axis, x)
    torch.testing.assert_close(moved, x - (2.3 / slope) * unit([1.0, 0.0, 1.0, 0.0]), rtol=0, atol=1e-6)


def test_ablation_leaves_non_firing_rows_and_masked_rows_alone(tied):
    axis = feature_axis(tied, 2)  # bias -5: never fires on these
    x = torch.randn(5, 4)
    assert torch.equal(ablate(axis, x), x)
    axis = feature_axis(tied, 1)
    x = torch.tensor([[0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0]])
    moved = ablate(axis, x, where=torch.tensor([False, True]))
    assert torch.equal(moved[0], x[0]) and not torch.equal(moved[1], x[1])


def test_ablation_hook_never_touches_bos(tied):
    x = torch.tensor([[[5.0, 5.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]])
    out = ablation_hook(feature_axis(tied, 0))(x)
    assert torch.equal(out[0, 0], x[0, 0])
    assert tied.encode(out[0, 1:])[:, 0].max() <= 1e-6


def test_ablating_a_residual_dimension_zeroes_its_positive_part():
    basis = neuron_basis(3)
    x = torch.tensor([[2.0, -1.0, 3.0], [-2.0, 1.0, 0.5]])
    moved = ablate_feature(basis, 0, x)
    assert moved.tolist() == [[0.0, -1.0, 3.0], [-2.0, 1.0, 0.5]]
    signed = signed_neuron_basis(3)  # feature 3 + 0 is "-dim 0"
    assert ablate_feature(signed, 3, x).tolist() == [[2.0, -1.0, 3.0], [0.0, 1.0, 0.5]]
    assert ablate_feature(TopK(neuron_basis(3), 1), 2, x).tolist() == [[2.0, -1.0, 0.0], [-2.0, 1.0, 0.0]]


def test_ablation_refuses_a_direction_orthogonal_to_its_encoder_row():
    decomposition = hand_set_sae("untied", torch.tensor([[1.0, 0.0]]), torch.zeros(1), torch.tensor([[0.0, 1.0]]))
    with pytest.raises(SaePaperError, match="orthogonal"):
        feature_axis(decomposition, 0)
    with pytest.raises(SaePaperError, match="out of range"):
        feature_axis(decomposition, 1)


def test_feature_encoder_of_a_linear_decomposition_includes_the_offset():
    from sae_paper.core.decompositions import LinearDecomposition

    linear = LinearDecomposition("t", torch.eye(2), torch.eye(2), offset=torch.tensor([1.0, -2.0]))
    encoder = feature_encoder(linear)
    x = torch.tensor([[3.0, 3.0]])
    torch.testing.assert_close(x @ encoder.encoder.T + encoder.bias, linear.encode(x))


def test_logit_effect_matches_a_manual_ablation(pythia_random):
    site = Site("resid_post", 2)
    sae = make_sae("tied", 512, 64, seed=1)
    decomposition = SaeDecomposition(sae)
    tokens = torch.randint(1, 1000, (3, 9))
    tokens[:, 0] = 0
    # make feature 5 fire everywhere: bias above any negative pre-activation
    with torch.no_grad():
        sae.b[5] = 50.0
    positions = torch.tensor([8, 4, 6])
    effect = logit_effect(pythia_random, site.hook_name, decomposition, 5, tokens, positions, batch_size=2)
    assert effect.n_examples == 3 and effect.diff.shape == (pythia_random.cfg.d_vocab,)
    assert (effect.feature_clean > 0).all() and effect.feature_ablated.max() <= 1e-4

    axis = feature_axis(decomposition, 5)
    clean = pythia_random(tokens)
    ablated = pythia_random.run_with_hooks(tokens, fwd_hooks=[(site.hook_name, ablation_hook(axis))])
    rows = torch.arange(3)
    change = ablated[rows, positions] - clean[rows, positions]
    expected = (change - change.mean(dim=1, keepdim=True)).mean(dim=0)
    torch.testing.assert_close(effect.diff, expected, rtol=1e-4, atol=1e-4)
    assert effect.mean_shift == pytest.approx(float(change.mean()), abs=1e-4)
    assert abs(float(effect.diff.mean())) < 1e-4  # centred
    suppressed = effect.most(3)
    assert [d for _, d in suppressed] == sorted(d for _, d in suppressed)
    assert suppressed[0][1] == pytest.approx(float(expected.min()), abs=1e-4)
    below, above = effect.n_beyond(0.0)
    assert below + above <= effect.diff.numel()


def test_logit_effect_of_a_silent_feature_is_zero(pythia_random):
    sae = make_sae("tied", 512, 16)
    with torch.no_grad():
        sae.b[3] = -1e4
    tokens = torch.randint(1, 1000, (2, 6))
    tokens[:, 0] = 0
    effect = logit_effect(pythia_random, "blocks.1.hook_resid_post", SaeDecomposition(sae), 3, tokens, torch.tensor([5, 5]))
    assert effect.diff.abs().max() == 0 and effect.mean_shift == 0
    with pytest.raises(SaePaperError, match="positions"):
        logit_effect(pythia_random, "blocks.1.hook_resid_post", SaeDecomposition(sae), 3, tokens, torch.tensor([0, 5]))


# --------------------------------------------------------------------------------------
# Token histograms, contexts, class statistics
# --------------------------------------------------------------------------------------


def test_histogram_counts_add_up_to_the_firing_tokens():
    activation = torch.tensor([0.0, 1.0, 2.0, 9.0, 10.0, 0.5, 0.0, 9.5, 3.0, 10.0])
    tokens = torch.tensor([7, 1, 1, 2, 2, 3, 2, 4, 1, 2])
    hist = token_histogram(activation, tokens, n_bins=2, n_named=2, label=lambda t: f"t{t}")
    assert hist.n_firing == int((activation > 0).sum()) == 8
    # bins [0, 5) and [5, 10]: the top bin is led by token 2, the low bin by token 1
    assert hist.token_ids == (2, 1) and hist.labels == ("t2", "t1", "other")
    assert hist.counts.tolist() == [[0, 3, 1], [3, 0, 1]]
    assert hist.edges.tolist() == [0.0, 5.0, 10.0]
    assert hist.top_per_bin(1) == [[("t1", 3)], [("t2", 3)]]
    share = class_share_per_bin(activation, tokens == 2, n_bins=2)
    assert share.tolist() == [0.0, 0.75]


def test_histogram_of_random_data_keeps_every_firing_token():
    generator = torch.Generator().manual_seed(0)
    activation = torch.relu(torch.randn(5000, generator=generator))
    tokens = torch.randint(0, 300, (5000,), generator=generator)
    hist = token_histogram(activation, tokens, n_bins=7, n_named=5)
    assert hist.counts.shape == (7, 6) and hist.n_firing == int((activation > 0).sum())
    with pytest.raises(SaePaperError, match="never fires"):
        token_histogram(torch.zeros(4), torch.arange(4))


def small_acts(n_ctx=3, ctx_len=5, d=4, seed=0) -> TokenActivations:
    generator = torch.Generator().manual_seed(seed)
    contexts = torch.randint(1, 50, (n_ctx, ctx_len), generator=generator)
    contexts[:, 0] = 0
    rows = torch.randn(n_ctx * (ctx_len - 1), d, generator=generator)
    return TokenActivations(contexts, rows, (("toy", n_ctx),))


def test_token_activations_layout_and_concat():
    acts = small_acts()
    assert acts.tokens.tolist() == acts.contexts[:, 1:].reshape(-1).tolist()
    context, position = acts.locate(torch.tensor([0, 5, 11]))
    assert context.tolist() == [0, 1, 2] and position.tolist() == [1, 2, 4]
    assert acts.previous_tokens[5] == acts.contexts[1, 1] and acts.next_tokens[5] == acts.contexts[1, 3]
    assert acts.next_tokens[3] == -1
    both = TokenActivations.concat([acts, small_acts(n_ctx=2, seed=1)])
    assert both.rows.shape == (20, 4) and both.source_mask("toy").all()
    with pytest.raises(SaePaperError, match="need"):
        TokenActivations(acts.contexts, acts.rows[:-1])


def test_top_contexts_rank_and_highlight():
    acts = small_acts()
    activation = torch.zeros(12)
    activation[[1, 2, 6, 9]] = torch.tensor([3.0, 5.0, 4.0, 1.0])
    examples = top_contexts(acts, activation, k=3, before=2, after=1)
    assert [e.activation for e in examples] == [5.0, 4.0, 1.0]  # row 1 shares context 0 with row 2
    first = examples[0]
    assert (first.context, first.position) == (0, 3)
    assert first.token_ids[first.focus] == acts.contexts[0, 3]
    assert first.activations[first.focus] == 5.0

    class Tok:
        def decode(self, ids):
            return f"<{ids[0]}>"

    assert f"⟦<{int(acts.contexts[0, 3])}>⟧" in context_text(first, Tok())
    assert "outline" in contexts_html(examples, Tok())


def test_class_stats_precision_and_recall():
    rows = torch.tensor([[1.0, 0.0], [2.0, 1.0], [0.0, 1.0], [3.0, -1.0]])
    in_class = torch.tensor([True, True, False, False])
    stats = class_stats(neuron_basis(2), rows, in_class)
    assert stats.fire_counts.tolist() == [3, 2] and stats.in_class.tolist() == [2, 1]
    assert stats.precision.tolist() == pytest.approx([2 / 3, 1 / 2])
    assert stats.recall.tolist() == pytest.approx([1.0, 0.5])
    assert stats.max_activation.tolist() == [3.0, 1.0]
    assert stats.mass_precision.tolist() == pytest.approx([3 / 6, 1 / 2])
    assert stats.best(2, by_mass=True) == [0, 1] and stats.best(2, min_precision=0.6, by_mass=True) == []
    assert stats.best(2) == [0, 1] and stats.best(2, min_precision=0.6) == [0]


def test_token_predicates():
    assert has_apostrophe("'s") and has_apostrophe('"\'') and has_apostrophe("\u2019") and not has_apostrophe("s")
    assert is_newline("\n") and is_newline("\n   ") and not is_newline(" ") and not is_newline(".\n")
    assert is_closing_bracket(")") and is_closing_bracket(" ),") and is_closing_bracket("]}")
    assert not is_closing_bracket("(") and not is_closing_bracket("a)")


def test_collected_activations_match_the_harvest_cache(pythia_random):
    site = Site("resid_post", 1)
    spec = HarvestSpec("pythia-70m-deduped-random", "pile-openings", "train", 40, 12, "float32", 0)
    cached = cached_activations(lambda: pythia_random, spec, site)
    # 40 kept rows (10 per context: no BOS, no first token, no separator here) -> 4 whole contexts, every position
    assert cached.contexts.shape == (4, 12) and cached.rows.shape == (44, 512)
    direct = collect_activations(pythia_random, site, cached.contexts, batch_size=2)
    torch.testing.assert_close(direct.rows, cached.rows, rtol=1e-5, atol=1e-5)
    assert (cached.contexts[:, 0] == 0).all()


def test_features_on_token_ranks_the_prompt_activation(pythia_random):
    site = Site("resid_post", 1)
    found = features_on_token(pythia_random, site, neuron_basis(512), " I don't know", k=5)
    ids = pythia_random.tokenizer(" I don't know", add_special_tokens=False)["input_ids"]
    assert found.token == " know" and len(found.prompt_tokens) == len(ids)
    _, cache = pythia_random.run_with_cache(torch.tensor([[0] + ids]))
    x = cache[site.hook_name][0, -1]
    assert list(found.features) == x.topk(5).indices.tolist()
    scaled = features_on_token(pythia_random, site, neuron_basis(512), " I don't know", k=5,
                               scale=torch.arange(1, 513).float())
    assert list(scaled.features) == (x.clamp(min=0) / torch.arange(1, 513)).topk(5).indices.tolist()
    assert all(math.isfinite(a) for a in found.activations)


def test_top_tokens_and_feature_codes():
    acts = small_acts(n_ctx=2, ctx_len=4, d=2)
    acts.rows[:] = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    codes = feature_codes(neuron_basis(2), acts.rows, [1, 0])
    assert codes[:, 0].tolist() == [0.0, 2.0, 0.0, 0.0, 1.0, 0.0]

    class Tok:
        def decode(self, ids):
            return str(ids[0])

    tokens = acts.tokens.tolist()
    labels = top_tokens(neuron_basis(2), acts, [0], Tok(), k=1)
    assert labels == {0: [f'"{tokens[2]}"']}


def test_unembed_direction_reads_through_the_final_layer_norm(pythia_random):
    direction = torch.randn(512)
    norm = pythia_random.ln_final._original_component
    expected = ((direction - direction.mean()) * norm.weight) @ pythia_random.W_U
    torch.testing.assert_close(unembed_direction(pythia_random, direction), expected, rtol=1e-4, atol=1e-4)
    batch = unembed_direction(pythia_random, torch.stack([direction, 2 * direction]))
    torch.testing.assert_close(batch[1], 2 * expected, rtol=1e-4, atol=1e-3)


# --------------------------------------------------------------------------------------
# The causal tree, on a toy two-layer model with planted parents
# --------------------------------------------------------------------------------------


class ToyTwoLayer:
    """resid_post.0 = embedding; resid_post.1 = x0 + g·(3 relu(a·x0[t]) + 0.5 relu(b·x0[t−1])).

    Token 1 embeds as 2a + 0.5c and token 2 as 1.5b (BOS and others: 0), with a, b, c, g
    the basis vectors e0, e1, e2, e5 of R^8. So the layer-1 feature g fires on token 1
    (through a, strongly) and after token 2 (through b, at the previous position, weakly);
    c and d never matter. Hooks are called as TransformerLens calls them.
    """

    d = 8

    def __init__(self):
        self.embedding = torch.zeros(10, self.d)
        self.embedding[1, 0], self.embedding[1, 2], self.embedding[2, 1] = 2.0, 0.5, 1.5
        self.tokenizer = None

    def run_with_hooks(self, tokens, fwd_hooks=(), stop_at_layer=None, **_):
        def apply(name, x):  # several hooks on one point run in order, as in TransformerLens
            for hook_name, hook in fwd_hooks:
                if hook_name == name:
                    x = hook(x, hook=None)
            return x

        x0 = apply("blocks.0.hook_resid_post", self.embedding[tokens])
        if stop_at_layer == 1:
            return None
        previous = torch.cat([torch.zeros_like(x0[:, :1]), x0[:, :-1]], dim=1)
        push = 3 * torch.relu(x0[..., 0]) + 0.5 * torch.relu(previous[..., 1])
        g = torch.zeros(self.d)
        g[5] = 1.0
        x1 = x0 + push.unsqueeze(-1) * g
        return apply("blocks.1.hook_resid_post", x1)


@pytest.fixture
def toy():
    model = ToyTwoLayer()
    layer0 = hand_set_sae("tied", torch.eye(8)[[0, 1, 2, 3]], torch.zeros(4))
    layer1 = hand_set_sae("tied", torch.eye(8)[[5, 6]], torch.tensor([0.0, -0.1]))
    generator = torch.Generator().manual_seed(0)
    contexts = torch.randint(1, 6, (12, 10), generator=generator)
    contexts[:, 0] = 0
    contexts[:, 6] = 2  # token 2 then token 1: both planted paths feed position 7
    contexts[:, 7] = 1
    return model, {0: layer0, 1: layer1}, contexts


def test_sample_contexts_draws_from_the_top_half(toy):
    model, decompositions, contexts = toy
    acts = collect_activations(model, Site("resid_post", 1), contexts)
    activation = feature_codes(decompositions[1], acts.rows, 0)
    sample = sample_contexts(acts, activation, n=5, seed=1)
    top = float(activation.max())
    assert sample.max_activation == top and len(sample.positions) == 5
    assert ((sample.target_activation >= top / 2) & (sample.target_activation <= top)).all()
    assert sample.tokens.shape[1] == int(sample.positions.max()) + 1
    assert len(set(sample.tokens[:, 0].tolist())) == 1  # BOS kept
    again = sample_contexts(acts, activation, n=5, seed=1)
    assert torch.equal(again.tokens, sample.tokens)


@pytest.mark.parametrize("n_candidates", [None, 2])
def test_causal_tree_puts_the_planted_parent_first(toy, n_candidates):
    model, decompositions, contexts = toy
    acts = collect_activations(model, Site("resid_post", 1), contexts)
    activation = feature_codes(decompositions[1], acts.rows, 0)
    sample = sample_contexts(acts, activation, n=8)
    tree = causal_tree(model, decompositions, 1, 0, sample, depth=1, branching=3, n_candidates=n_candidates)
    assert (tree.layer, tree.feature) == (1, 0)
    parents = [(child.layer, child.feature) for child in tree.children]
    assert parents[0] == (0, 0)  # the planted strong parent a
    # ablating a at the target position removes 3 * 2 = 6 of the target's activation
    strongest = tree.children[0]
    assert strongest.effect == pytest.approx(6.0, abs=1e-4)
    assert strongest.cosine == pytest.approx(0.0, abs=1e-6)
    if n_candidates is None:
        assert parents == [(0, 0), (0, 1)]  # c never matters
        weak = tree.children[1]
        target_clean = tree.clean
        after_two = sample.tokens[torch.arange(len(sample.positions)), sample.positions - 1] == 2
        assert weak.effect == pytest.approx(0.5 * 1.5 * float(after_two.float().mean()), abs=1e-4)
        assert weak.relative_effect == pytest.approx(weak.effect / target_clean)
    assert tree.lines()[0].startswith("L1 #0")


def test_causal_tree_needs_every_layers_dictionary(toy):
    model, decompositions, contexts = toy
    acts = collect_activations(model, Site("resid_post", 1), contexts)
    sample = sample_contexts(acts, feature_codes(decompositions[1], acts.rows, 0), n=4)
    with pytest.raises(SaePaperError, match="layers 0"):
        causal_tree(model, {1: decompositions[1]}, 1, 0, sample, depth=1)


def test_unembedding_scores_count_the_class_among_top_tokens(pythia_random):
    directions = torch.randn(3, 512)
    decomposition = hand_set_sae("tied", directions / directions.norm(dim=1, keepdim=True), torch.zeros(3))
    logits = unembed_direction(pythia_random, decomposition.feature_directions())
    in_class = torch.zeros(logits.shape[1], dtype=torch.bool)
    in_class[logits[0].topk(4).indices] = True
    scores, tops = unembedding_scores(pythia_random, decomposition, in_class, k=8)
    assert scores[0] == pytest.approx(0.5) and tops.shape == (3, 8)


@pytest.mark.slow
def test_smollm2_apostrophe_prompt_ends_on_an_apostrophe_token(smollm2):
    site = Site("resid_post", 3)
    found = features_on_token(smollm2, site, signed_neuron_basis(576), " I don't know about that. It is now up to Dave\"'", k=4)
    assert has_apostrophe(found.token)
    assert len(found.features) == 4 and found.activations[0] > 0


# --------------------------------------------------------------------------------------
# The notebooks' studies: parameters, configs and verdict rules
# --------------------------------------------------------------------------------------

from sae_paper.analysis.ablation import LogitEffect  # noqa: E402
from sae_paper.analysis.causal_tree import TreeNode  # noqa: E402
from sae_paper.analysis.feature_stats import ClassStats  # noqa: E402
from sae_paper.chapters.appendices import (  # noqa: E402
    AppendixStudy,
    appendix_d_finding,
    contexts_with_token,
    contraction,
    is_if,
    residual_polysemantic_finding,
    starts_with_dis,
)
from sae_paper.chapters.case_studies import CaseStudy, find_by_prompt, init_cosine  # noqa: E402
from sae_paper.chapters.case_verdicts import (  # noqa: E402
    ablation_finding,
    apostrophe_histogram_finding,
    causal_tree_finding,
    single_token_finding,
    unembed_parens_finding,
)


class ListTokenizer:
    """decode([i]) → a fixed vocabulary's i-th string."""

    def __init__(self, vocab):
        self.vocab = list(vocab)

    def decode(self, ids):
        return "".join(self.vocab[i] for i in ids)


SMOKE = dict(model="pythia-70m-deduped-random", context_length=32, n_tokens=1240, layer=2, batch_size=128,
             eval_tokens=248, harvest_batch_size=16)


@pytest.mark.parametrize("fields", [{}, SMOKE])
def test_case_studies_reuse_notebook_01s_main_sae(fields):
    from sae_paper.chapters.training import TrainingStudy

    expected = TrainingStudy(**fields).main_config()
    assert CaseStudy(**fields).main_config() == expected
    assert AppendixStudy(**fields).main_config() == expected


@pytest.mark.parametrize("profile", ["smoke", "default", "paper"])
def test_profiles_give_valid_studies_sharing_01s_sae(profile):
    import yaml

    from sae_paper.chapters.training import TrainingStudy
    from sae_paper.data.paths import repo_root

    entries = yaml.safe_load((repo_root() / "profiles" / f"{profile}.yaml").read_text())
    main = TrainingStudy.from_params(entries["01_training"]).main_config()
    case = CaseStudy.from_params(entries["04_case_studies"])
    appendix = AppendixStudy.from_params(entries["05_appendices"])
    assert case.main_config() == main and appendix.main_config() == main
    assert case.all_configs()[0] == main


def test_tree_configs_seed_each_layer_apart_and_reuse_the_main_sae():
    study = CaseStudy(**SMOKE, tree_depth=2, tree_n_tokens=100)
    configs = study.tree_configs()
    assert sorted(configs) == [0, 1, 2] and configs[2] == study.main_config()
    assert [configs[layer].seed for layer in (0, 1)] == [2, 1]
    assert {configs[layer].n_tokens for layer in (0, 1)} == {100}
    last = CaseStudy(**SMOKE, tree_layer=5, tree_depth=2).tree_configs()
    assert sorted(last) == [3, 4, 5] and [last[layer].seed for layer in (3, 4, 5)] == [2, 1, 0]
    with pytest.raises(SaePaperError, match="tree_depth"):
        CaseStudy(**SMOKE, tree_depth=3)
    with pytest.raises(SaePaperError, match="unknown 04_case_studies parameter"):
        CaseStudy.from_params({"tree_dept": 1})
    with pytest.raises(SaePaperError, match="prompts"):
        AppendixStudy(prompts=[])


def test_init_cosine_is_one_for_an_untrained_sae():
    sae = make_sae("tied", 8, 16, seed=3)
    assert torch.allclose(init_cosine(sae, 3), torch.ones(16), atol=1e-6)
    assert init_cosine(sae, 4).abs().max() < 0.999


def test_apostrophe_histogram_verdicts():
    tok = ListTokenizer(["'", "'s", ".", ",", "the", "his"])
    tokens = torch.tensor([0, 1, 0, 2, 3, 2, 4, 5])
    mostly = torch.tensor([9.0, 10.0, 8.0, 1.0, 1.0, 2.0, 0.0, 0.0])  # apostrophes on top, punctuation below
    assert apostrophe_histogram_finding(7, mostly, tokens, tok, n_bins=2).finding.verdict == "reproduced"
    top_only = torch.tensor([9.0, 10.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0])  # words below
    assert apostrophe_histogram_finding(7, top_only, tokens, tok, n_bins=2).finding.verdict == "partly"
    neither = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 9.0, 10.0])
    assert apostrophe_histogram_finding(7, neither, tokens, tok, n_bins=2).finding.verdict == "not"


def effect_with(diff):
    diff = torch.as_tensor(diff, dtype=torch.float32)
    return LogitEffect(diff, 0.0, 2, torch.ones(2), torch.zeros(2))


def test_ablation_verdicts():
    tok = ListTokenizer(["s", " t", " a", " b", " c", " d", " e"])
    assert ablation_finding(1, effect_with([-3.0, -1, 0, 1, 2, 0, 0]), tok).verdict == "reproduced"
    assert ablation_finding(1, effect_with([-1.0, -3, 0, 1, 2, -2, 0]), tok).verdict == "partly"
    assert ablation_finding(1, effect_with([3.0, -3, -2, -1, -0.5, -0.4, 0]), tok).verdict == "not"


def stats_for(precision, recall=0.5, fires=100):
    in_class = int(fires * precision)
    return ClassStats(torch.tensor([fires]), torch.tensor([in_class]), torch.tensor([5.0]), torch.tensor([10.0]),
                      torch.tensor([10.0 * precision], dtype=torch.float64), int(in_class / recall), 1000)


def test_single_token_and_appendix_d_verdicts():
    all_four = {name: (0, stats_for(0.9)) for name in ("apostrophes", "periods", '" the"', "newlines")}
    assert single_token_finding(all_four).finding.verdict == "reproduced"
    some = {**all_four, "periods": (0, stats_for(0.3)), "newlines": (-1, stats_for(0.0))}
    assert single_token_finding(some).finding.verdict == "partly"
    assert single_token_finding({name: (0, stats_for(0.1)) for name in all_four}).finding.verdict == "not"

    from sae_paper.chapters.appendices import APPENDIX_D_CLASSES

    found = {name: (0, stats_for(0.8, recall=0.5)) for name in APPENDIX_D_CLASSES}
    assert appendix_d_finding(found, code_share=0.9).verdict == "reproduced"
    found["Dis (Figure 13)"] = (0, stats_for(0.8, recall=0.1))
    assert appendix_d_finding(found, code_share=0.9).verdict == "partly"


def test_tree_and_unembedding_verdicts():
    child = TreeNode(2, 5, 10.0, effect=2.0, relative_effect=0.5, cosine=0.6)
    other = TreeNode(2, 6, 10.0, effect=1.0, relative_effect=0.25, cosine=0.01)
    tree = TreeNode(3, 1, 4.0, children=(child, other))
    shares = {(3, 1): 0.3, (2, 5): 0.3, (2, 6): 0.01}
    assert causal_tree_finding(tree, shares, 0.05, 0.03).verdict == "reproduced"
    assert causal_tree_finding(tree, {(2, 5): 0.0, (2, 6): 0.0}, 0.05, 0.03).verdict == "partly"
    assert causal_tree_finding(TreeNode(3, 1, 4.0), shares, 0.05, 0.03).verdict == "not"
    assert unembed_parens_finding(1, 5, 6, [")"] * 10, 1.0, 0.03, 0.2, 0.01).verdict == "reproduced"
    assert unembed_parens_finding(1, 3, 30, [")"] * 6 + ["a"] * 4, 0.6, 0.03, 0.01, 0.01).verdict == "partly"


def test_residual_polysemantic_verdict():
    hist = token_histogram(torch.tensor([1.0, 2.0, 3.0, 4.0, 9.0, 10.0]), torch.tensor([1, 2, 3, 3, 0, 0]), n_bins=4,
                           label=lambda t: f"t{t}")
    share = torch.tensor([0.0, 0.0, float("nan"), 1.0])
    assert residual_polysemantic_finding("−dim 7", hist, share, 0.05, 3, 0.4).verdict == "reproduced"
    assert residual_polysemantic_finding("−dim 7", hist, torch.tensor([0.0, 0.0, float("nan"), 0.0]), 0.05, 3,
                                         0.4).verdict == "partly"
    assert residual_polysemantic_finding("−dim 7", hist, share, 0.5, 3, 0.4).verdict == "not"


def test_token_classes_of_appendix_d():
    assert is_if("if") and is_if(" If") and not is_if(" iff")
    assert starts_with_dis(" disordered") and starts_with_dis("Dis") and not starts_with_dis(" dis-") and not starts_with_dis("is")
    assert contraction("'ll")("'ll") and contraction("'ll")("\u2019ll") and not contraction("'ll")("'t")


def test_find_by_prompt_prefers_the_feature_concentrated_on_the_class(pythia_random):
    site = Site("resid_post", 1)
    basis = neuron_basis(512)
    found = features_on_token(pythia_random, site, basis, " I don't", k=3)
    fires = torch.full((512,), 100)
    in_class = torch.zeros(512, dtype=torch.long)
    in_class[found.features[2]] = 90  # the third-ranked dimension is the most class-specific
    stats = ClassStats(fires, in_class, torch.ones(512), torch.full((512,), 100.0, dtype=torch.float64),
                       in_class.double(), 200, 10_000)
    search = find_by_prompt(pythia_random, site, basis, [" I don't"], stats, k=3)
    assert search.chosen == found.features[2]
    assert "**chosen**" in search.markdown()
    rare = ClassStats(torch.zeros(512, dtype=torch.long), in_class, torch.ones(512), torch.ones(512, dtype=torch.float64),
                      in_class.double(), 200, 10_000)
    assert find_by_prompt(pythia_random, site, basis, [" I don't"], rare, k=3, min_fires=1).chosen == -1


def test_contexts_with_token_finds_contractions(pythia_random):
    contexts, counts = contexts_with_token(["webtext"], pythia_random.tokenizer, contraction("'ll"), n=2,
                                           context_length=32, bos_token_id=0)
    assert contexts.shape == (2, 32) and counts == [("webtext", 2)]
    for context in contexts:
        assert any(pythia_random.tokenizer.decode([t]).strip() == "'ll" for t in context.tolist())


def test_feature_figures_render(tied):
    import io

    from sae_paper.report import feature_plots

    hist = token_histogram(torch.tensor([1.0, 2.0, 5.0, 0.0]), torch.tensor([1, 2, 1, 3]), n_bins=3, label=str)
    figures = [
        feature_plots.token_histogram_figure(hist, title="t", class_share=[0.5, float("nan"), 1.0], class_name="x"),
        feature_plots.histogram_grid([("a", hist), ("b", hist), ("c", hist)], title="grid"),
        feature_plots.logit_effect_figure(effect_with([-1.0, 0.5, 0.05, 2.0]), str, title="t", k=2),
        # a token drawn by the random Pythia in the paper rehearsal: its "$" is text, not the start of mathtext
        feature_plots.logit_effect_figure(effect_with([-1.0, 0.5, 0.05, 2.0]), lambda t: "},$$" if t else "$x", title="t", k=2),
        feature_plots.causal_tree_figure(
            TreeNode(3, 1, 4.0, children=(TreeNode(2, 5, 9.0, 2.0, 0.5, 0.6, (TreeNode(1, 2, 3.0, 1.0, 0.1, 0.2),)),
                                          TreeNode(2, 6, 9.0, 1.0, 0.25, 0.0))),
            lambda node: f'"{node.feature}"', title="tree"),
    ]
    for figure in figures:
        figure.savefig(io.BytesIO(), format="png")


def test_causal_tree_on_a_transformer_matches_a_manual_ablation(pythia_random):
    torch.manual_seed(0)
    layer0, layer1 = (SaeDecomposition(make_sae("tied", 512, 32, seed=s)) for s in (1, 2))
    with torch.no_grad():  # make most features fire somewhere
        layer0.sae.b.fill_(0.5)
        layer1.sae.b.fill_(0.5)
    contexts = torch.randint(1, 5000, (6, 10))
    contexts[:, 0] = 0
    acts = collect_activations(pythia_random, Site("resid_post", 1), contexts)
    target = int(feature_codes(layer1, acts.rows, list(range(32))).sum(dim=0).argmax())
    sample = sample_contexts(acts, feature_codes(layer1, acts.rows, target), n=3, low=0.0)
    tree = causal_tree(pythia_random, {0: layer0, 1: layer1}, 1, target, sample, depth=1, branching=2, n_candidates=4)
    assert 1 <= len(tree.children) <= 2
    child = tree.children[0]
    drops = []
    for c in range(3):
        tokens = sample.tokens[c : c + 1, : int(sample.positions[c]) + 1]
        _, clean = pythia_random.run_with_cache(tokens, names_filter="blocks.1.hook_resid_post")
        ablated = {}
        pythia_random.run_with_hooks(tokens, fwd_hooks=[
            ("blocks.0.hook_resid_post", ablation_hook(feature_axis(layer0, child.feature))),
            ("blocks.1.hook_resid_post", lambda x, hook=None, ablated=ablated: ablated.setdefault("x", x))])
        before = layer1.encode(clean["blocks.1.hook_resid_post"][0, -1:])[0, target]
        after = layer1.encode(ablated["x"][0, -1:])[0, target]
        drops.append(float(before - after))
    assert child.effect == pytest.approx(sum(drops) / 3, rel=1e-3, abs=1e-4)
    assert tree.clean == pytest.approx(float(sample.target_activation.mean()), rel=1e-3)


def test_causal_tree_expands_only_the_strongest_parents(pythia_random):
    saes = {layer: SaeDecomposition(make_sae("tied", 512, 16, seed=layer + 1)) for layer in range(3)}
    for decomposition in saes.values():
        with torch.no_grad():
            decomposition.sae.b.fill_(0.5)
    contexts = torch.randint(1, 5000, (4, 8))
    contexts[:, 0] = 0
    acts = collect_activations(pythia_random, Site("resid_post", 2), contexts)
    target = int(feature_codes(saes[2], acts.rows, list(range(16))).sum(dim=0).argmax())
    sample = sample_contexts(acts, feature_codes(saes[2], acts.rows, target), n=2, low=0.0)
    tree = causal_tree(pythia_random, saes, 2, target, sample, depth=2, branching=2, expand=1, n_candidates=3)
    assert len(tree.children) == 2
    assert len(tree.children[0].children) >= 1 and tree.children[1].children == ()
    assert {node.layer for node, _ in tree.walk()} == {0, 1, 2}
    assert all(child.effect > 0 for _, child in tree.edges())


@pytest.mark.slow
def test_case_study_notebooks_run_on_the_smoke_profile(tmp_path):
    """Notebooks 04 and 05 execute end to end (random Pythia, tiny sizes) and record their claims."""
    import json

    from sae_paper.book.runner import BookLayout, run_book
    from sae_paper.data.paths import repo_root

    root = repo_root()
    book = tmp_path / "book"
    book.mkdir()
    names = ["04_case_studies", "05_appendices"]
    result = run_book("smoke", notebooks=names, layout=BookLayout(root / "notebooks", book, root / "profiles"),
                      build=False, log=lambda line: None)
    assert result.notebooks == names
    recorded = {name: {r["claim_id"] for r in json.loads((book / "generated" / "claims" / f"{name}.json").read_text())["records"]}
                for name in names}
    assert recorded["04_case_studies"] == {"fig4-apostrophe-hist", "fig4-ablation-logits", "sec5-single-token-features",
                                           "fig5-unembed-parens", "fig5-causal-tree"}
    assert recorded["05_appendices"] == {"fig11-residual-polysemantic", "fig12-15-features"}
    for name in names:
        cells = json.loads((book / "generated" / f"{name}.ipynb").read_text())["cells"]
        images = [o for c in cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
        assert len(images) >= (4 if name == "04_case_studies" else 2)


def test_sae_budget_sweep_trains_smaller_and_reads_larger_only_when_cached(tmp_path):
    from types import SimpleNamespace

    from sae_paper.chapters.case_budget import sae_sweep, trends
    from sae_paper.core.train import SUMMARY_FILE
    from sae_paper.report.finding import Decision, Finding

    NOTHING = Finding("x", "not", "")

    study = SimpleNamespace(n_tokens=200)
    trained = []

    def run_for(n):
        folder = tmp_path / str(n)
        folder.mkdir(exist_ok=True)
        if n == 800:
            (folder / SUMMARY_FILE).write_text("{}")  # trained by a larger profile
        return SimpleNamespace(sae_dir=folder, sae=lambda: trained.append(n) or n)

    def decide(sae):
        return {"fig4-apostrophe-hist": Decision(NOTHING, sae / 1000), "sec5-single-token-features": Decision(NOTHING, 0.5)}

    points = sae_sweep(study, [50, 100, 200, 400, 800], run_for, decide)
    assert trained == [50, 100, 200, 800]  # 400 is above the profile's own budget and not cached: left out
    assert [p.budget for p in points["fig4-apostrophe-hist"]] == [50, 100, 200, 800]
    found = trends(points)
    assert found["fig4-apostrophe-hist"].trend == "converging toward the paper"
    assert found["sec5-single-token-features"].trend == "flat"


def test_a_token_holding_part_of_a_character_shows_its_bytes_never_a_replacement_character():
    from sae_paper.analysis.token_activations import token_bytes, token_display, token_label, token_text
    from sae_paper.data.models import _neox_tokenizer

    tokenizer = _neox_tokenizer()  # the real GPT-NeoX byte-level BPE, from the shared folder
    ids = tokenizer.encode("ʔə café 𝔘")
    shown = [token_display(tokenizer, t) for t in ids]
    assert all("\ufffd" not in text for text in shown) and "\ufffd" in "".join(token_text(tokenizer, t) for t in ids)
    assert b"".join(token_bytes(tokenizer, t) for t in ids).decode() == "ʔə café 𝔘"  # the bytes are exact
    assert shown[:2] == ["\\xca", "\\x94"] and " café" in shown  # whole characters stay as they are
    assert token_label(tokenizer, ids[0]) == '"\\\\xca"'
