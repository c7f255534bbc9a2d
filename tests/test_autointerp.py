"""Automated interpretability (Section 3): fragments, rescaling, selection, scores and backends.

Unit tests use hand-set tensors; the known-answer tests plant a feature that fires exactly on
one token (``'s``) or on apostrophes in real WebText fragments (GPT-NeoX tokenizer, via
``pythia_random``) and score it with the ``token-list`` stand-in and with the ``openai-compatible`` client against a real HTTP
server on localhost (:mod:`sae_paper.analysis.autointerp.testserver`). The ``local`` backend's test
needs llama-cpp-python and the Qwen2.5-Coder GGUF and is skipped, saying why, without them.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from sae_paper.analysis.autointerp import (
    ActivationRecord,
    BackendFailure,
    Cached,
    CallCache,
    FragmentSpec,
    OpenAICompatibleBackend,
    TokenListBackend,
    correlation,
    fragment_activations,
    load_fragments,
    make_backend,
    rescale,
    score_decomposition,
    summarize,
)
from sae_paper.analysis.autointerp.backends import expected_value, normal_token, simulate_body, simulate_prefix
from sae_paper.analysis.autointerp.fragments import choose_features, moments, select_fragments
from sae_paper.analysis.autointerp.openai_compatible import _placeholder_offsets
from sae_paper.analysis.autointerp.testserver import OpenAITestServer
from sae_paper.core.decompositions import neuron_basis, random_directions
from sae_paper.data.models import Site
from sae_paper.errors import SaePaperError

# --------------------------------------------------------------------------------------
# Unit: rescaling, selection, skipping, correlation, moments
# --------------------------------------------------------------------------------------


def test_rescale_is_the_references_floor_of_ten_times_fraction_of_max():
    assert rescale(torch.tensor([0.0, 0.04, 0.05, 0.5, 1.0, 2.0, -1.0]), 1.0).tolist() == [0, 0, 0, 5, 10, 10, 0]
    # 0.96 → 9 and 0.15 → 1 (a round would give 10 and 2)
    assert rescale(torch.tensor([0.096, 0.015]), 0.1).tolist() == [9, 1]
    assert rescale(torch.tensor([0.0, 0.0]), 0.0).tolist() == [0, 0]


def test_rescale_is_floor_scale_over_a_tensor():
    """The scorer's fast path against core/reference.py's plain one, on values where floor and round part."""
    from sae_paper.core.reference import floor_scale

    values = torch.cat([torch.rand(500, generator=torch.Generator().manual_seed(0)) * 3 - 0.5,
                        torch.tensor([2.4, 0.24, 0.25, 2.5, 1.25])])
    for peak in (2.5, 1.0, 0.3):
        assert tuple(rescale(values, peak).tolist()) == floor_scale(values.tolist(), peak)


def test_selection_takes_top_fragments_and_random_ones_with_variance():
    codes = torch.zeros(40, 4)
    for i in range(30):  # fragments 0..29 vary; max grows with the index, so rank r is fragment 29 - r
        codes[i, 1] = i + 1
    selection = select_fragments(codes, n_top=20, n_explain=5, n_simulate_top=5, n_random=5, seed=0)
    assert selection.explain == (29, 25, 21, 17, 13)  # ranks 0, 4, 8, 12, 16
    assert selection.top == (27, 23, 19, 15, 11)  # ranks 2, 6, 10, 14, 18
    # the random sample: all 10 varying fragments outside the top 20 (fewer than the reference's 15), its valid
    # split's 1, 4, 7 first, then its others in order
    sample = torch.randperm(10, generator=torch.Generator().manual_seed(0)).tolist()
    assert selection.random == tuple(sample[i] for i in (1, 4, 7, 0, 2))
    again = select_fragments(codes, n_top=20, n_explain=3, n_simulate_top=2, n_random=2, seed=5)
    assert (again.explain, again.top) == ((29, 25, 21), (27, 23))  # the seed draws the random sample only
    with pytest.raises(SaePaperError, match="must not exceed n_top // 4"):
        select_fragments(codes, n_top=20, n_explain=6, n_simulate_top=5, n_random=5)


def test_features_with_too_few_varying_fragments_are_skipped_and_counted():
    counts = torch.tensor([25, 3, 20, 19, 40, 0])
    choice = choose_features(counts, 10, min_fragments=20, seed=0)
    assert sorted(choice.features) == [0, 2, 4] and choice.skipped == 3 and choice.skipped_total == 3


def test_correlation_and_moments_by_hand():
    assert correlation([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert correlation([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert correlation([1, 1, 1], [1, 2, 3]) is None
    m = moments(torch.tensor([0.0, 0.0, 0.0, 4.0]))  # centred -1,-1,-1,3: m2 = 3, m3 = 6, m4 = 21
    assert (m.mean, m.variance) == (1.0, 3.0)
    assert m.skew == pytest.approx(6 / 3**1.5) and m.kurtosis == pytest.approx(21 / 9 - 3)


def test_expected_value_renormalises_over_value_tokens_and_fails_without_them():
    assert expected_value({"0": math.log(0.5), " 10": math.log(0.25), "x": math.log(0.25)}) == pytest.approx(10 / 3)
    with pytest.raises(BackendFailure):
        expected_value({"the": 0.0})


def test_placeholders_are_found_only_in_the_fragment():
    prompt = simulate_prefix("years") + simulate_body(["a", "\tb", "unknown"])[0]
    offsets = _placeholder_offsets(prompt)
    assert len(offsets) == 3 and all(prompt[o : o + 7] == "unknown" and prompt[o - 1] == "\t" for o in offsets)


def test_token_list_explains_and_simulates_deterministically():
    backend = TokenListBackend()
    records = [ActivationRecord(("I", " don", "'t", " know"), (0, 0, 10, 0)), ActivationRecord(("it", "'s"), (0, 8))]
    explanation = backend.explain(backend.explain_request(records))
    assert explanation.startswith("tokens") and "'t" in explanation and "know" not in explanation
    assert backend.simulate(backend.simulate_request(explanation, ["you", "'T", "'s"]), 3) == [0.0, 10.0, 8.0]
    with pytest.raises(BackendFailure, match="free-text"):
        backend.simulate(backend.simulate_request("apostrophes", ["a"]), 1)
    assert "stand-in" in backend.label()


def test_unknown_backend_is_one_line():
    with pytest.raises(Exception, match="unknown autointerp backend 'gpt'"):
        make_backend("gpt")


# --------------------------------------------------------------------------------------
# Known answers: a planted apostrophe feature, a random direction
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def webtext_fragments(pythia_random):
    return load_fragments(pythia_random.tokenizer, n_fragments=300, length=64, sources=("webtext",))


def apostrophe_activations(fragments, noise_dims: int = 0) -> torch.Tensor:
    """[n, pos, 1 + noise_dims]: dimension 0 is 1 exactly on tokens with an apostrophe; the rest Gaussian noise."""
    marks = torch.tensor([[float("'" in t or "\u2019" in t) for t in row] for row in fragments.token_strings])
    noise = torch.randn(*marks.shape, noise_dims, generator=torch.Generator().manual_seed(1))
    return torch.cat([marks[..., None], noise], dim=-1)


def possessive_activations(fragments) -> torch.Tensor:
    """[n, pos, 1]: 1 exactly on the tokens ``'s`` (as the token list compares them), 0 elsewhere."""
    return torch.tensor([[float(normal_token(t) == "'s") for t in row] for row in fragments.token_strings])[..., None]


def test_a_feature_of_one_token_scores_exactly_1_with_token_list(webtext_fragments, tmp_path):
    # explained from its top fragments as that token alone, it is simulated as 10 × the truth on every fragment:
    # a correlation of 1, top-and-random and random-only
    acts = possessive_activations(webtext_fragments)
    backend = Cached(TokenListBackend(), CallCache(tmp_path / "calls.sqlite"))
    result = score_decomposition(neuron_basis(1), acts, webtext_fragments, backend, backend, method="planted",
                                 site="synthetic", n_features=1)
    (feature,) = result.features
    assert feature.explanation == 'tokens (weight 0-10): {"\'s": 10.0}'
    assert feature.score == pytest.approx(1.0, abs=1e-12) and feature.random_score == pytest.approx(1.0, abs=1e-12)
    assert feature.failure is None and feature.undefined is None


def test_the_apostrophe_feature_scores_what_its_listed_tokens_cover(webtext_fragments, tmp_path):
    # fires on every token with an apostrophe, but the token list names only those its 5 explained fragments hold
    # ('d, 's, 't): the others ('re, 'll, ’) are predicted 0, so the score is high but short of 1
    acts = apostrophe_activations(webtext_fragments)
    backend = Cached(TokenListBackend(), CallCache(tmp_path / "calls.sqlite"))
    (feature,) = score_decomposition(neuron_basis(1), acts, webtext_fragments, backend, backend, method="planted",
                                     site="synthetic", n_features=1).features
    listed = json.loads(feature.explanation.split(": ", 1)[1])
    assert listed and all("'" in token for token in listed)
    assert 0.5 < feature.score < 1.0, feature


def test_random_direction_on_token_independent_activations_scores_near_zero(webtext_fragments, tmp_path):
    acts = apostrophe_activations(webtext_fragments, noise_dims=16)[..., 1:]  # noise only: no token information
    backend = Cached(TokenListBackend(), CallCache(tmp_path / "calls.sqlite"))
    result = score_decomposition(random_directions(16, seed=3), acts, webtext_fragments, backend, backend,
                                 method="random", site="synthetic", n_features=8)
    summary = result.summary()
    assert summary.n_scored == 8 and summary.n_failed == 0
    assert abs(summary.mean) < 0.1, summary
    assert all(abs(f.score) < 0.3 for f in result.features)


def test_vectorised_token_list_scoring_agrees_with_one_call_per_fragment(webtext_fragments, pythia_random, tmp_path):
    """The scorer's token-list lookups over all fragments at once (``vectorised``, the default) against
    the reference backend's one cached call per fragment, on a real model's activations on real text:
    the same features, explanations and scores."""
    from sae_paper.analysis.autointerp.token_list import TokenListScorer
    from sae_paper.core.decompositions import TopK, neuron_basis

    site = Site("resid_post", 1)
    spec = FragmentSpec("pythia-70m-deduped-random", n_fragments=120, length=64, sources=("webtext",))
    fragments, acts = fragment_activations(pythia_random, spec, [site])
    calls = Cached(TokenListBackend(), CallCache(tmp_path / "calls.sqlite"))
    for decomposition in (neuron_basis(512), random_directions(512, seed=1), TopK(random_directions(512, seed=2), 8)):
        fast = score_decomposition(decomposition, acts[site], fragments, Cached(TokenListBackend(), None),
                                   Cached(TokenListBackend(), None), method="m", site=str(site), n_features=12)
        reference = score_decomposition(decomposition, acts[site], fragments, calls, calls, method="m", site=str(site),
                                        n_features=12, vectorised=False)
        assert fast.choice == reference.choice and len(fast.features) == 12
        for a, b in zip(fast.features, reference.features):
            assert (a.feature, a.explanation, a.undefined, a.random_undefined, a.moments) == (
                b.feature, b.explanation, b.undefined, b.random_undefined, b.moments)
            for x, y in ((a.score, b.score), (a.random_score, b.random_score)):
                assert (x is None) == (y is None) and (x is None or x == pytest.approx(y, abs=1e-12))
    assert calls.cache.misses > 0  # the reference made one call per fragment

    # the symbol rule over many tokens: an entry of symbols only predicts its weight on every token containing it
    scorer = TokenListScorer(TokenListBackend(), fragments)
    explanation = 'tokens (weight 0-10): {"\'": 7.5, "the": 3.0}'
    predicted = scorer.simulate(explanation, range(fragments.n_fragments))
    reference = TokenListBackend().simulate(json.dumps({"explanation": explanation, "tokens": []}), 0)
    assert reference == []
    for row, strings in enumerate(fragments.token_strings):
        expected = TokenListBackend().simulate(TokenListBackend().simulate_request(explanation, strings), len(strings))
        assert predicted[row].tolist() == expected


def test_scores_done_are_not_redone_and_follow_what_they_are_computed_from(webtext_fragments, tmp_path):
    """A method's scores are stored beside the calls, keyed by the decomposition's weights, the activations,
    the fragments and the settings: asked again, the same result comes back without a call or an encode."""
    acts = apostrophe_activations(webtext_fragments, noise_dims=7)
    backend = Cached(TokenListBackend(), CallCache(tmp_path / "calls.sqlite"))

    def score(decomposition, activations=acts, **options):
        return score_decomposition(decomposition, activations, webtext_fragments, backend, backend, method="m",
                                   site="s", n_features=4, vectorised=False, **options)

    first = score(random_directions(8, seed=1))
    calls = backend.cache.misses + backend.cache.hits
    again = score(random_directions(8, seed=1))  # another object with the same weights
    assert again == first and backend.cache.misses + backend.cache.hits == calls
    assert (backend.cache.scores_reused, backend.cache.scores_missing) == (1, 1)
    other = score(random_directions(8, seed=2))  # other weights: computed
    assert backend.cache.misses + backend.cache.hits > calls and other != first
    calls = backend.cache.misses + backend.cache.hits
    assert score(random_directions(8, seed=1), activations=acts * 2).features[0].moments != first.features[0].moments
    assert score(random_directions(8, seed=1), features=[0, 1]).choice.features == (0, 1)
    assert backend.cache.misses + backend.cache.hits > calls


def test_fragment_activations_are_cached_per_site(pythia_random):
    spec = FragmentSpec("pythia-70m-deduped-random", n_fragments=12, length=16, sources=("webtext",))
    sites = [Site("resid_post", 1), Site("mlp_post", 0)]
    fragments, acts = fragment_activations(pythia_random, spec, sites, batch_size=8)
    assert fragments.tokens.shape == (12, 16) and len(fragments.token_strings[0]) == 16
    assert acts[sites[0]].shape == (12, 16, 512) and acts[sites[1]].shape == (12, 16, 2048)
    again, cached = fragment_activations(None, spec, sites)  # no model needed: everything is on disk
    assert torch.equal(again.tokens, fragments.tokens) and torch.equal(cached[sites[0]], acts[sites[0]])


# --------------------------------------------------------------------------------------
# openai-compatible against a real local HTTP server
# --------------------------------------------------------------------------------------


def test_openai_compatible_client_against_local_server_with_a_malformed_reply(webtext_fragments, tmp_path):
    acts = possessive_activations(webtext_fragments)
    with OpenAITestServer() as server:
        client = OpenAICompatibleBackend("test-model", server.url)
        cache = CallCache(tmp_path / "calls.sqlite")
        backend = Cached(client, cache)
        result = score_decomposition(neuron_basis(1), acts, webtext_fragments, backend, backend, method="planted",
                                     site="synthetic", n_features=1)
        (good,) = result.features
        assert good.failure is None and good.explanation == 'the tokens "\'s"', good
        assert good.score == pytest.approx(1.0, abs=1e-12), good  # one value on 's, another elsewhere: r = 1
        served = server.requests
        assert served == 12  # the convention probe, one explanation, ten simulated fragments

        # The same feature again: every call comes from the disk cache.
        score_decomposition(neuron_basis(1), acts, webtext_fragments, backend, backend, method="planted",
                            site="synthetic", n_features=1)
        assert server.requests == served

        # Malformed replies (one without logprobs, one not JSON) are failures, counted, never a zero.
        for broken in (1, 2):
            server.malformed = broken
            fresh = Cached(client, CallCache(tmp_path / f"fresh{broken}.sqlite"))
            bad = score_decomposition(neuron_basis(1), acts, webtext_fragments, fresh, fresh, method="planted",
                                      site="synthetic", n_features=1).features[0]
            assert bad.score is None and bad.failure is not None, bad
        summary = summarize("planted", "synthetic", [good, bad])
        assert summary.n_failed == 1 and summary.n_scored == 1 and summary.mean == pytest.approx(good.score)

    with pytest.raises(BackendFailure):  # the server is gone: a connection error is a failure too
        client.simulate(simulate_prefix("x") + simulate_body(["a"])[0], 1)


# --------------------------------------------------------------------------------------
# local (llama-cpp-python + Qwen2.5-Coder-1.5B GGUF): skipped without them
# --------------------------------------------------------------------------------------


def test_local_backend_gives_one_prediction_in_0_10_per_token():
    from sae_paper.analysis.autointerp import local

    missing = local.missing()
    if missing:
        pytest.skip(f"local backend not installed: {missing} (optional: scripts/setup.sh --with-local-llm)")
    backend = local.LocalBackend(n_ctx=2048)
    tokens = ["I", " don", "'t", " think", " it", "'s", " true", "."]
    predictions = backend.simulate(backend.simulate_request('apostrophes, like "\'t" and "\'s"', tokens), len(tokens))
    assert len(predictions) == len(tokens) and all(0 <= p <= 10 for p in predictions)


def test_local_backend_prefix_reuse_across_features_gives_the_fresh_predictions():
    from sae_paper.analysis.autointerp import local

    missing = local.missing()
    if missing:
        pytest.skip(f"local backend not installed: {missing} (optional: scripts/setup.sh --with-local-llm)")
    tokens = [["I", " don", "'t", " know", "."], ["In", " 1999", ",", " it", " rained"]]
    explanations = ['apostrophes, like "\'t"', "years"]
    reused = local.LocalBackend(n_ctx=2048)
    fresh = local.LocalBackend(n_ctx=2048, prefix_reuse=False)
    order = [(0, 0), (0, 1), (1, 1), (1, 0), (0, 0)]  # same feature, next fragment; next feature; back again
    for e, t in order:
        prompt = reused.simulate_request(explanations[e], tokens[t])
        assert reused.simulate(prompt, len(tokens[t])) == pytest.approx(fresh.simulate(prompt, len(tokens[t])), abs=1e-4)
    assert reused.tokens_evaluated < fresh.tokens_evaluated / 2


# --------------------------------------------------------------------------------------
# Notebook 02's parameters and verdict rules
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["smoke", "default", "paper", "local-llm"])
def test_every_profile_validates_notebook_02(profile, capsys):
    from sae_paper.book.runner import run_book

    run_book(profile, notebooks=["02_autointerp"], validate_only=True)
    assert f"profile {profile}: valid for 02_autointerp" in capsys.readouterr().out


def test_study_rejects_unknown_methods_and_layers_outside_the_model():
    from sae_paper.chapters.autointerp import AutointerpStudy

    with pytest.raises(Exception, match="unknown"):
        AutointerpStudy(methods=["sae", "nmf"])
    with pytest.raises(Exception, match="layers 0..29"):
        AutointerpStudy(layers=[3, 30])
    with pytest.raises(Exception, match="must not exceed n_top // 4"):
        AutointerpStudy(n_explain=6)  # the reference splits the top 20 into 4 of 5


def summary(site, method, mean, ci=0.05, random_mean=0.1):
    from sae_paper.analysis.autointerp import MethodSummary

    return MethodSummary(method, site, 50, 0, 0, 0, mean, ci, random_mean, ci)


def test_verdict_rules_by_hand():
    from sae_paper.chapters import autointerp_verdicts as S

    layers = [3, 9]
    rows = [summary("resid_post.3", "sae", 0.6), summary("resid_post.3", "neurons", 0.3), summary("resid_post.3", "pca", 0.2),
            summary("resid_post.9", "sae", 0.5), summary("resid_post.9", "neurons", 0.45), summary("resid_post.9", "pca", 0.2)]
    assert S.early_layers_finding(rows, layers, backend="token-list").finding.verdict == "reproduced"
    depth = S.depth_finding(rows, layers, backend="token-list", n_layers=30).finding
    assert depth.verdict == "reproduced" and "margin +0.30 → +0.05" in depth.ours
    close = [summary("resid_post.3", "sae", 0.6), summary("resid_post.3", "neurons", 0.58)]
    assert S.early_layers_finding(close, [3], backend="token-list").finding.verdict == "partly"
    # the local-llm run's shape: every score near 0, the SAE ahead by less than the CIs -> never "reproduced"
    noisy = [summary("resid_post.3", "sae", 0.045, random_mean=0.017), summary("resid_post.3", "pca", 0.020, random_mean=-0.018),
             summary("resid_post.9", "sae", 0.048, random_mean=0.015), summary("resid_post.9", "pca", 0.018, random_mean=0.037)]
    depth = S.depth_finding(noisy, layers, backend="local", n_layers=30).finding
    assert depth.verdict == "not" and "not above the best baseline beyond the 95% CIs" in depth.ours  # margin +0.025 -> +0.030 does not shrink
    assert S.depth_finding(noisy[:2] + [summary("resid_post.9", "sae", 0.03), noisy[3]], layers, backend="local",
                           n_layers=30).finding.verdict == "partly"
    assert S.random_only_finding(noisy, layers, backend="local").finding.verdict == "partly"
    # random-only 0.1 for every method: 'lower than top-and-random' holds for the baselines too, so it lifts nothing
    assert S.random_only_finding(rows, layers, backend="token-list").finding.verdict == "not"
    clear_random = [summary(r.site, r.method, r.mean, random_mean=0.4 if r.method == "sae" else 0.1) for r in rows]
    assert S.random_only_finding(clear_random, layers, backend="token-list").finding.verdict == "reproduced"
    baselines = [summary("resid_post.3", "pca", 0.2), summary("resid_post.3", "neurons", 0.3)]
    assert S.ratio_finding({0.5: summary("resid_post.3", "sae", 0.5), 2.0: summary("resid_post.3", "sae", 0.6)},
                           baselines, backend="token-list").finding.verdict == "reproduced"
    assert S.ratio_finding({0.5: summary("resid_post.3", "sae", 0.32), 2.0: summary("resid_post.3", "sae", 0.6)},
                           baselines, backend="token-list").finding.verdict == "partly"
    assert S.ratio_finding({0.5: summary("resid_post.3", "sae", 0.1), 2.0: summary("resid_post.3", "sae", 0.32)},
                           baselines, backend="token-list").finding.verdict == "not"
    assert S.moments_finding({"mean": -0.1, "variance": 0.0, "skew": 0.9, "kurtosis": 0.9}, 10,
                             backend="token-list").verdict == "partly"


def test_deciding_numbers_by_hand():
    """Each central claim's deciding number is the gap its rule thresholds: a lower 95 % bound minus an upper one."""
    from sae_paper.chapters.autointerp import AutointerpStudy
    from sae_paper.chapters.autointerp_verdicts import decisions

    study = AutointerpStudy(layers=(3, 9), main_layer=3, table1_layer=3, fig8_ratios=(0.5, 2.0))
    rows = [summary("resid_post.3", "sae", 0.6, ci=0.03, random_mean=0.3), summary("resid_post.3", "neurons", 0.3, ci=0.04),
            summary("resid_post.3", "pca", 0.2), summary("resid_post.9", "sae", 0.5),
            summary("resid_post.9", "neurons", 0.45), summary("resid_post.3", "sae-R0.5", 0.35)]
    found = decisions(rows, study, backend="token-list", n_layers=30)
    # 0.57 against the residual basis' 0.34 (the best baseline's bound; PCA's is 0.25): 0.23, ± √(0.03² + 0.04²)
    assert found["fig2-early-layers"].deciding == pytest.approx(0.23) and found["fig2-early-layers"].ci == pytest.approx(0.05)
    # the first layer is clear (0.23) but the last margin (0.05) is only 0.1 below half the first (0.15)
    assert found["fig2-depth"].deciding == pytest.approx(0.15 - 0.05)
    # random-only, against every baseline: 0.3 − 0.03 against PCA's 0.1 + 0.05 (the residual basis' bound is 0.14)
    assert found["fig9-random-only"].deciding == pytest.approx(0.27 - 0.15)
    assert found["fig8-ratio"].deciding == pytest.approx(0.30 - 0.34)  # the weakest ratio (R = 0.5) decides: not clear
    for claim, decision in found.items():  # the number never contradicts the verdict
        assert (decision.deciding > 0) == (decision.finding.verdict == "reproduced"), claim


def test_budget_sweep_reads_smaller_pools_off_the_main_one():
    """Pools are prefixes of the main pool; a budget with known summaries is not rescored."""
    import functools

    from sae_paper.analysis.autointerp.fragments import Fragments
    from sae_paper.chapters import autointerp_budget as budget
    from sae_paper.chapters.autointerp import AutointerpStudy
    from sae_paper.chapters.autointerp_verdicts import decisions

    fragments = Fragments(torch.arange(40).reshape(10, 4), tuple(tuple(str(t) for t in range(4)) for _ in range(10)))
    site = Site("resid_post", 3)
    small, acts = budget.prefix(fragments, {site: torch.randn(10, 4, 2)}, 6)
    assert small.n_fragments == 6 and acts[site].shape == (6, 4, 2) and torch.equal(small.tokens, fragments.tokens[:6])

    scored = []

    class Result:
        def __init__(self, method, n):
            self.method, self.n = method, n

        def summary(self):
            means = {"sae": 0.2 + 0.01 * self.n, "neurons": 0.2}
            return summary("resid_post.3", self.method, means[self.method])

    def score(decomposition, activations, fragments, *, method, site):
        scored.append((method, fragments.n_fragments))
        return Result(method, fragments.n_fragments)

    pools = {n: budget.prefix(fragments, {site: torch.zeros(10, 4, 2)}, n) for n in (4, 6, 10)}
    known = {10: [summary("resid_post.3", "sae", 0.5), summary("resid_post.3", "neurons", 0.2)]}
    study = AutointerpStudy(layers=(3,), main_layer=3, table1_layer=3, fig8_ratios=(2.0,))
    decide = functools.partial(decisions, study=study, backend="token-list", n_layers=30)
    points = budget.fragment_sweep([4, 6, 10], pools.__getitem__, {(site, "sae"): None, (site, "neurons"): None}, score,
                                   decide, known=known)
    assert sorted(scored) == [("neurons", 4), ("neurons", 6), ("sae", 4), ("sae", 6)]
    # the SAE's lower bound (mean − 0.05) against the residual basis' upper one (0.2 + 0.05)
    assert [p.value for p in points["fig2-early-layers"]] == pytest.approx([-0.06, -0.04, 0.2])
    assert budget.trends(points)["fig2-early-layers"].trend == "converging toward the paper"


def test_baseline_fits_survive_the_cache_and_are_reported():
    """A cached baseline keeps how it was fitted; an unconverged ICA is named in the weakened report."""
    from sae_paper.chapters.autointerp import _linear_cached, fit_report
    from sae_paper.core.decompositions import LinearDecomposition

    fit = {"rows": 4096, "iterations": 40, "max_iter": 40, "tol": 1e-4, "final_change": 0.23, "converged": False}
    calls = []

    def make():
        calls.append(1)
        return LinearDecomposition("ICA", torch.eye(3), torch.eye(3), fit=fit)

    first = _linear_cached("ica", {"test": "fits"}, make)
    again = _linear_cached("ica", {"test": "fits"}, make)
    assert calls == [1] and again.fit == first.fit == fit
    pca = LinearDecomposition("PCA", torch.eye(3), torch.eye(3), fit={"rows": 49152})
    everything, weakened = fit_report({(Site("resid_post", 3), "pca"): pca, (Site("resid_post", 3), "ica"): again})
    assert "PCA at layer 3 on 49,152 rows" in everything and "ICA at layer 3: 40 of at most 40" in everything
    assert weakened == ("ICA at layer 3: 40 of at most 40 FastICA iterations on 4,096 rows, last change 0.23 against "
                        "a tolerance of 0.0001 (not converged)")
    converged = LinearDecomposition("ICA", torch.eye(3), torch.eye(3), fit={**fit, "converged": True, "final_change": 1e-5})
    assert fit_report({(Site("resid_post", 3), "ica"): converged})[1] == ""
