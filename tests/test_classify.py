"""Detection and fuzzing (Paulo et al. 2024): example selection, AUROC and balanced accuracy by hand, the
token-list stand-in's answers, and the scores of a planted feature and of noise on real WebText fragments.
The ``local`` backend's test needs llama-cpp-python and the Qwen2.5-Coder GGUF and is skipped without them."""

from __future__ import annotations

import pytest
import torch
from test_autointerp import apostrophe_activations  # the planted feature, on the same fragments

from sae_paper.analysis.autointerp import Cached, CallCache, TokenListBackend, load_fragments, score_decomposition
from sae_paper.analysis.autointerp.backends import BackendFailure
from sae_paper.analysis.autointerp.classify import (
    ClassifyConfig,
    Example,
    NotEnoughFragments,
    auroc,
    balanced_accuracy,
    classify_prompt,
    parse_answers,
    select_examples,
)
from sae_paper.analysis.autointerp.scoring import ScoringConfig
from sae_paper.core.decompositions import neuron_basis, random_directions
from sae_paper.errors import SaePaperError


def test_auroc_and_balanced_accuracy_by_hand_and_against_scikit_learn():
    assert auroc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    assert auroc([1, 1, 1, 1], [True, False, True, False]) == 0.5  # ties count half
    # positives 0.9, 0.4; negatives 0.5, 0.1: pairs won 0.9>0.5, 0.9>0.1, 0.4>0.1 → 3 of 4
    assert auroc([0.9, 0.4, 0.5, 0.1], [True, True, False, False]) == 0.75
    assert balanced_accuracy([0.9, 0.4, 0.5, 0.1], [True, True, False, False]) == 0.5  # TPR 1/2, TNR 1/2
    assert balanced_accuracy([1, 1, 1, 0], [True, True, True, False]) == 1.0
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    g = torch.Generator().manual_seed(0)
    p = torch.rand(40, generator=g).round(decimals=1)  # with ties
    truth = torch.rand(40, generator=g) > 0.4
    assert auroc(p.tolist(), truth.tolist()) == pytest.approx(roc_auc_score(truth.numpy(), p.numpy()))
    assert balanced_accuracy(p.tolist(), truth.tolist()) == pytest.approx(
        balanced_accuracy_score(truth.numpy(), (p >= 0.5).numpy()))
    with pytest.raises(SaePaperError):
        auroc([0.5, 0.6], [True, True])


def test_prompt_numbers_examples_marks_tokens_and_answers_parse_back():
    examples = [Example(("I", " don", "'t")), Example(("a", "'s", " b"), (False, True, False))]
    prompt = classify_prompt("fuzzing", "apostrophes", examples)
    assert "Example 1: I don't\n" in prompt and "Example 2: a[['s]] b" in prompt and "Explanation: apostrophes" in prompt
    assert parse_answers("Sure: [1, 0]", 2) == [1.0, 0.0]
    assert parse_answers("[0.25,1]\n", 2) == [0.25, 1.0]
    for bad in ("1, 0", "[1, 0, 1]", "[1, two]", "[2, 0]", ""):
        with pytest.raises(BackendFailure):
            parse_answers(bad, 2)
    with pytest.raises(SaePaperError, match="unknown classification task"):
        classify_prompt("guessing", "x", examples)


def test_a_run_of_highlighted_tokens_is_one_pair_of_brackets_as_delphi_marks_it():
    """delphi wraps each run of active tokens in one pair of delimiters; a pair per token would cost a dense
    feature (a residual dimension, most of whose tokens fire) three prompt tokens for each of its own."""
    assert Example(("a", "b", "c", "d", "e"), (True, True, False, True, True)).text() == "[[ab]]c[[de]]"
    assert Example(("a", "b"), (False, True)).text() == "a[[b]]"
    assert Example(("a", "b"), (True, True)).text() == "[[ab]]"
    assert Example(("a", "b")).text() == "ab"


def _scaled() -> torch.Tensor:
    """40 fragments of 8 tokens: 0..19 activate (max = index // 2 + 1 on token index % 8), 20..39 are silent."""
    scaled = torch.zeros(40, 8, dtype=torch.long)
    for i in range(20):
        scaled[i, i % 8] = i // 2 + 1
        scaled[i, (i + 3) % 8] = 1
    return scaled


def test_detection_draws_activating_fragments_across_quantiles_and_silent_ones():
    scaled = _scaled()
    config = ClassifyConfig(n_activating=5, n_non_activating=4, n_quantiles=5)
    chosen = select_examples("detection", scaled, exclude=[18, 19], config=config, seed=0)
    positives = [i for i, p in zip(chosen.fragments, chosen.positive) if p]
    negatives = [i for i, p in zip(chosen.fragments, chosen.positive) if not p]
    assert len(positives) == 5 and len(negatives) == 4
    assert all(scaled[i].max() > 0 for i in positives) and all(scaled[i].max() == 0 for i in negatives)
    assert not {18, 19} & set(chosen.fragments)
    # 18 activating fragments left, by maximum (ties in index order) 16 17 14 15 | 12 13 10 11 | 8 9 6 7 | 4 5 2 | 3 0 1:
    # five bins of 4/4/4/3/3, one drawn from each
    bins = [set(range(14, 18)), set(range(10, 14)), set(range(6, 10)), {2, 4, 5}, {0, 1, 3}]
    assert all(len(set(positives) & b) == 1 for b in bins)
    assert select_examples("detection", scaled, [18, 19], config, seed=0) == chosen  # seeded
    with pytest.raises(NotEnoughFragments, match="lower-half"):
        select_examples("detection", scaled, [], ClassifyConfig(n_non_activating=21), seed=0)


def test_a_dense_feature_gets_its_weakest_half_as_negatives():
    scaled = torch.arange(1, 41)[:, None].expand(40, 8)  # every fragment active, maxima 1..40
    chosen = select_examples("detection", scaled, [], ClassifyConfig(n_activating=6, n_non_activating=6), seed=0)
    for i, positive in zip(chosen.fragments, chosen.positive):
        assert (i >= 20) == positive  # fragments 20..39 have the larger maxima


def test_fuzzing_marks_the_active_tokens_or_as_many_quiet_ones():
    scaled = _scaled()
    chosen = select_examples("fuzzing", scaled, exclude=[], config=ClassifyConfig(n_activating=4, n_non_activating=4),
                             seed=1)
    assert len(chosen.fragments) == 8 and sum(chosen.positive) == 4
    for i, positive, marks in zip(chosen.fragments, chosen.positive, chosen.marked):
        active = (scaled[i] > 0).tolist()
        assert scaled[i].max() > 0
        if positive:
            assert list(marks) == active
        else:
            assert sum(marks) == sum(active) and not any(m and a for m, a in zip(marks, active))


# --------------------------------------------------------------------------------------
# Known answers on real fragments, with the token-list stand-in
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def webtext_fragments(pythia_random):
    return load_fragments(pythia_random.tokenizer, n_fragments=300, length=32, sources=("webtext",))


@pytest.mark.parametrize("task", ["detection", "fuzzing"])
def test_planted_feature_is_classified_perfectly_and_noise_near_chance(task, webtext_fragments, tmp_path):
    backend = Cached(TokenListBackend(), CallCache(tmp_path / "calls.sqlite"))
    config = ScoringConfig(scoring=task, classify=ClassifyConfig(n_activating=10, n_non_activating=10))
    planted = score_decomposition(neuron_basis(1), apostrophe_activations(webtext_fragments), webtext_fragments, backend, backend,
                                  method="planted", site="synthetic", n_features=1, config=config)
    (feature,) = planted.features
    assert feature.failure is None and feature.skipped is None
    assert feature.score == 1.0 and feature.balanced_accuracy == 1.0 and feature.random_score is None
    assert backend.cache.misses > 0  # every classification went through the call cache

    noise = apostrophe_activations(webtext_fragments, noise_dims=16)[..., 1:]
    result = score_decomposition(random_directions(16, seed=3), noise, webtext_fragments, backend, backend,
                                 method="random", site="synthetic", n_features=8, config=config)
    summary = result.summary()
    assert summary.scoring == task and summary.n_scored + summary.n_skipped == 8 and summary.n_failed == 0
    if summary.n_scored >= 3:
        assert abs(summary.mean - 0.5) < 0.2, summary


def test_a_backend_that_cannot_classify_is_a_counted_failure_not_a_zero(webtext_fragments, tmp_path):
    from sae_paper.analysis.autointerp.backends import Backend

    class Mute(Backend):
        name, model = "mute", "none"

        def explain(self, prompt):
            return "apostrophes"

        def simulate(self, prompt, n_tokens):
            raise BackendFailure("no")

    mute = Cached(Mute(), CallCache(tmp_path / "calls.sqlite"))
    result = score_decomposition(neuron_basis(1), apostrophe_activations(webtext_fragments), webtext_fragments, mute, mute,
                                 method="planted", site="synthetic", n_features=1,
                                 config=ScoringConfig(scoring="detection"))
    summary = result.summary()
    assert (summary.n_scored, summary.n_failed) == (0, 1) and "cannot classify" in summary.first_failure


def test_scoring_config_refuses_an_unknown_scoring_and_keeps_simulation_keys():
    with pytest.raises(SaePaperError, match="unknown scoring 'guessing'"):
        ScoringConfig(scoring="guessing")
    assert set(ScoringConfig().key()) == {"n_top", "n_explain", "n_simulate_top", "n_random", "min_fragments", "seed"}
    assert ScoringConfig(scoring="fuzzing").key()["classify"]["n_activating"] == 10


def test_local_backend_classifies_with_probabilities():
    from sae_paper.analysis.autointerp import local

    missing = local.missing()
    if missing:
        pytest.skip(f"local backend not installed: {missing} (optional: scripts/setup.sh --with-local-llm)")
    backend = local.LocalBackend(n_ctx=2048)
    examples = [Example(("I", " don", "'t", " know", ".")), Example(("The", " cat", " sat", "."))]
    answers = backend.classify(backend.classify_request("detection", "apostrophes in contractions", examples), 2)
    assert len(answers) == 2 and all(0 <= a <= 1 for a in answers)
    assert answers[0] > answers[1]
