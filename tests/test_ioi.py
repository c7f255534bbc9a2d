"""IOI prompts (single-token words, one differing token, padding, seeds), the model check, and
notebook 03's study: parameters, dictionaries, cached curves, verdicts."""

from __future__ import annotations

import pytest
import torch

from sae_paper.analysis.ioi_prompts import (
    NAMES,
    OBJECTS,
    PLACES,
    TEMPLATES,
    check_model,
    generate_prompts,
    ioi_check,
    make_ioi_dataset,
    single_token_words,
)
from sae_paper.analysis.patching_curves import CurvePoint, PatchingCurve
from sae_paper.chapters.ioi import IoiStudy, curve_from_dict, curve_to_dict
from sae_paper.chapters.ioi_verdicts import (
    alpha_floor_finding,
    dictionary_name,
    fewer_features_finding,
    layers_finding,
    smaller_edits_finding,
)
from sae_paper.errors import SaePaperError


class _WordTokenizer:
    """A toy tokenizer: each space-separated word is one token, except words listed as 'long'."""

    def __init__(self, long: set[str] = frozenset()):
        self.vocab: dict[str, int] = {}
        self.long = long

    def _ids(self, text: str) -> list[int]:
        ids = []
        for word in text.replace(",", " ,").replace(".", " .").split():
            pieces = [word[:2], word[2:]] if word in self.long else [word]
            ids += [self.vocab.setdefault(piece, len(self.vocab) + 1) for piece in pieces]
        return ids

    def __call__(self, text, add_special_tokens=False):
        if isinstance(text, list):
            return {"input_ids": [self._ids(t) for t in text]}
        return {"input_ids": self._ids(text)}


def test_single_token_words_keeps_order_and_reports_the_dropped():
    kept, dropped = single_token_words(_WordTokenizer(long={"Vanessa", "Bob"}), ["Alice", "Bob", "Vanessa", "Mary"])
    assert kept == ("Alice", "Mary") and dropped == ("Bob", "Vanessa")


def test_prompts_alternate_orders_cycle_templates_and_use_three_distinct_names():
    prompts = generate_prompts(20, names=NAMES, places=PLACES, objects=OBJECTS, seed=3)
    assert [p.order for p in prompts[:4]] == ["ABBA", "BABA", "ABBA", "BABA"]
    assert {p.template for p in prompts} == set(range(len(TEMPLATES)))
    for p in prompts:
        assert len({p.io, p.subject, p.counterfactual_io}) == 3
        assert p.target == p.base.replace(f" {p.io} ", f" {p.counterfactual_io} ", 1)
        assert p.base.endswith(" to")
        names_said = [w.strip(",.") for w in p.base.split()]
        first = names_said.index(p.io) < names_said.index(p.subject)
        assert first == (p.order == "ABBA")
        assert names_said.count(p.subject) == 2 and names_said.count(p.io) == 1
    assert generate_prompts(20, names=NAMES, places=PLACES, objects=OBJECTS, seed=3) == prompts
    assert generate_prompts(20, names=NAMES, places=PLACES, objects=OBJECTS, seed=4) != prompts


def test_the_paper_example_is_template_zero_in_abba_order():
    filled = TEMPLATES[0].format(A="Alice", B="Bob", S="Alice", PLACE="store", OBJECT="snack")
    assert filled == "Then, Alice and Bob went to the store. Alice gave a snack to"


def test_too_few_names_is_a_one_line_error():
    with pytest.raises(SaePaperError, match="at least 3 distinct single-token names"):
        generate_prompts(5, names=("Alice", "Bob"), places=PLACES, objects=OBJECTS)


def test_dataset_with_the_pythia_tokenizer(pythia_random):
    tokenizer = pythia_random.tokenizer
    data = make_ioi_dataset(tokenizer, 50, seed=0)
    assert len(data) == 50 and data.base_tokens.shape == data.target_tokens.shape
    assert (data.base_tokens[:, 0] == 0).all()
    for b, prompt in enumerate(data.prompts):
        n = int(data.lengths[b])
        assert tokenizer.decode(data.base_tokens[b, 1:n].tolist()) == prompt.base
        assert tokenizer.decode(data.target_tokens[b, 1:n].tolist()) == prompt.target
        differs = (data.base_tokens[b] != data.target_tokens[b]).nonzero().flatten().tolist()
        assert len(differs) == 1
        assert data.base_tokens[b, differs[0]] == data.io_ids[b]
        assert data.target_tokens[b, differs[0]] == data.counterfactual_ids[b]
    # every name, place and object used is a single token for this tokenizer
    used = {p.io for p in data.prompts} | {p.subject for p in data.prompts} | {p.counterfactual_io for p in data.prompts}
    for word in used:
        assert len(tokenizer(" " + word, add_special_tokens=False)["input_ids"]) == 1
    assert set(data.dropped) == {"names", "places", "objects"}
    assert not used & set(data.dropped["names"])


def test_model_check_agrees_with_logits_computed_elsewhere(pythia_random):
    data = make_ioi_dataset(pythia_random.tokenizer, 6, seed=1)
    check = check_model(pythia_random, data)
    assert 0 <= check.io_beats_subject <= 1 and check.n_prompts == 6 and len(check.logit_diffs) == 6
    logits = pythia_random(data.base_tokens)
    rows = torch.arange(6)
    last = logits[rows, data.lengths - 1]
    expected = last[rows, data.io_ids] - last[rows, data.subject_ids]
    torch.testing.assert_close(torch.tensor(check.logit_diffs), expected, rtol=1e-5, atol=1e-5)
    # padding after a prompt's end changes nothing before it (causal model)
    again = ioi_check(data, last, pythia_random(data.target_tokens)[rows, data.lengths - 1])
    assert again.mean_logit_diff == pytest.approx(check.mean_logit_diff, abs=1e-5)
    assert "IO beats S on" in check.lines()[0]


@pytest.mark.slow
def test_smollm2_does_ioi(smollm2):
    data = make_ioi_dataset(smollm2.tokenizer, 50, seed=0)
    check = check_model(smollm2, data)
    assert check.io_beats_subject >= 0.8 and check.mean_logit_diff > 2.0
    assert check.target_beats_subject >= 0.8


# --------------------------------------------------------------------------------------
# The notebook's study: parameters, configs, cached curves, verdicts
# --------------------------------------------------------------------------------------


def test_study_builds_each_sae_once_and_rejects_bad_parameters():
    study = IoiStudy(model="pythia-70m-deduped-random", layer=2, layers=(1, 2), alphas=(0.0, 1e-3), fig17_alphas=(1e-3, 0.0),
                     n_thresholds=50)
    configs = study.all_configs()
    assert [(c.layer, c.alpha) for c in configs] == [(2, 0.0), (2, 1e-3), (1, 0.0), (1, 1e-3)]
    assert [c.n_tokens for c in configs] == [study.n_tokens] * 4  # by default every layer trains on as many
    smaller = IoiStudy(model="pythia-70m-deduped-random", layer=2, layers=(1, 2), fig17_n_tokens=1000)
    assert [c.n_tokens for c in smaller.all_configs()] == [smaller.n_tokens] * 3 + [1000]  # unless fig17_n_tokens says
    assert study.layer_alphas(1) == (0.0, 1e-3)
    assert len(study.thresholds()) == 50 and study.thresholds()[0] == pytest.approx(1e-5)
    assert IoiStudy.from_params(study.parameters()) == study
    with pytest.raises(SaePaperError, match="needs 0"):
        IoiStudy(model="pythia-70m-deduped-random", layer=2, layers=(2,), alphas=(1e-3,))
    with pytest.raises(SaePaperError, match="must include the main layer"):
        IoiStudy(model="pythia-70m-deduped-random", layer=2, layers=(1, 3))
    with pytest.raises(SaePaperError, match="layers 0..5"):
        IoiStudy(model="pythia-70m-deduped-random", layer=2, layers=(2, 6))
    with pytest.raises(SaePaperError, match="unknown 03_ioi parameter"):
        IoiStudy.from_params({"layr": 3})
    with pytest.raises(SaePaperError, match="ordering"):
        IoiStudy(model="pythia-70m-deduped-random", layer=2, layers=(2,), ordering="greedy")
    with pytest.raises(SaePaperError, match="fig17_n_tokens"):
        IoiStudy(model="pythia-70m-deduped-random", layer=2, layers=(2,), fig17_n_tokens=0)
    with pytest.raises(SaePaperError, match="token_budgets"):
        IoiStudy(model="pythia-70m-deduped-random", layer=2, layers=(2,), token_budgets=[100, -1])


def _curve(name: str, counts_kls: list[tuple[int, float, float]], *, layer: int = 12) -> PatchingCurve:
    points = tuple(CurvePoint(n, kl, edit, None) for n, kl, edit in counts_kls)
    ordered = tuple(sorted(points, key=lambda p: p.n_features))
    return PatchingCurve(name=name, layer=layer, points=ordered, n_features=100, n_active=ordered[-1].n_features,
                         kl_base=ordered[0].kl, kl_all=ordered[-1].kl, n_evaluations=len(points), seconds=0.0,
                         ordering="independent", order=(3, 1, 2))


def _figure3(sparse_better: bool, layer: int = 12) -> list[PatchingCurve]:
    """Hand-made curves: base KL 4; the sparse SAE reaches KL 0.2 with 5 features, PCA with 40 (or the reverse)."""
    good = [(0, 4.0, 0.0), (2, 1.0, 3.0), (5, 0.2, 5.0), (30, 0.08, 9.0)]
    bad = [(0, 4.0, 0.0), (10, 2.0, 8.0), (40, 0.2, 15.0), (500, 0.0, 30.0)]
    dense = [(0, 4.0, 0.0), (20, 1.5, 10.0), (60, 0.2, 20.0), (200, 0.01, 25.0)]
    sparse_points, pca_points = (good, bad) if sparse_better else (bad[:-1] + [(400, 0.08, 30.0)], good[:-1] + [(50, 0.0, 9.0)])
    return [_curve(dictionary_name(1e-2), sparse_points, layer=layer), _curve(dictionary_name(0.0), dense, layer=layer),
            _curve("PCA", pca_points, layer=layer)]


def test_verdicts_follow_the_numbers():
    curves = _figure3(sparse_better=True)
    assert fewer_features_finding(curves, setting="toy").finding.verdict == "reproduced"
    assert smaller_edits_finding(curves, setting="toy").finding.verdict == "reproduced"
    flipped = _figure3(sparse_better=False)
    assert fewer_features_finding(flipped, setting="toy").finding.verdict in ("partly", "not")
    floor = alpha_floor_finding(curves, {0.0: 0.1, 1e-2: 0.3}, setting="toy")
    assert floor.verdict == "reproduced" and "FVU 0.300" in floor.ours
    by_layer = {layer: _figure3(sparse_better=True, layer=layer) for layer in (6, 12, 18)}
    assert layers_finding(by_layer, setting="toy").verdict == "reproduced"
    by_layer[6] = _figure3(sparse_better=False, layer=6)
    assert layers_finding(by_layer, setting="toy").verdict in ("partly", "not")


def test_curves_survive_the_cache_round_trip():
    curve = _figure3(sparse_better=True)[0]
    assert curve_from_dict(curve_to_dict(curve)) == curve


def test_pca_is_exact():
    from sae_paper.chapters.ioi import exact_pca
    from sae_paper.core.decompositions import fit_pca
    from sae_paper.data.activations import InMemoryActivations

    generator = torch.Generator().manual_seed(0)
    kept = torch.randn(2000, 6, generator=generator) * torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5, 0.2]) + 1.0
    pca = exact_pca(kept)
    torch.testing.assert_close(pca.decode(pca.encode(kept)), kept, rtol=1e-4, atol=1e-4)
    reference = fit_pca(InMemoryActivations(kept), batch_size=500)
    cosines = (pca.feature_directions() * reference.feature_directions()).sum(dim=1).abs()
    assert cosines.min() > 0.999  # the same components, largest variance first (up to sign)


def test_study_end_to_end_on_the_random_pythia_with_cached_curves(pythia_random):
    from sae_paper.analysis.patching import PatchingSetup
    from sae_paper.chapters.ioi import LayerDictionaries, patching_curves
    from sae_paper.core import sweeps

    study = IoiStudy(model="pythia-70m-deduped-random", n_prompts=4, layer=1, layers=(1,), alphas=(0.0, 8.6e-4),
                     n_tokens=620, context_length=32, harvest_batch_size=16, epochs=1, batch_size=128, eval_tokens=124,
                     n_thresholds=4, attribution_steps=1)
    sweeps.prefetch(study.all_configs(), model=lambda: pythia_random)
    layer = LayerDictionaries(study, 1)
    records = layer.records()
    assert [r.alpha for r in records] == [0.0, 8.6e-4] and all(0 < r.fvu for r in records)
    data = make_ioi_dataset(pythia_random.tokenizer, 4, seed=0)
    made = []

    def setup():
        made.append(1)
        return PatchingSetup.from_model(pythia_random, data, 1)

    curves = patching_curves(study, 1, layer.decompositions(), setup_factory=setup)
    assert set(curves) == {"α=0 dictionary", "SAE α=0.00086", "PCA"} and made == [1]
    again = patching_curves(study, 1, layer.decompositions(), setup_factory=setup)
    assert again == curves and made == [1]  # read from the cache: no forward pass
    assert curves["PCA"].kl_all == pytest.approx(0.0, abs=1e-8)
