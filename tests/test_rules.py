"""The verdict rules: one per claim, quoting the paper, symmetric, every outcome reachable, and the page made from them.

Each verdict function reads its thresholds from its :class:`~sae_paper.report.rules.Rule`; the tests here give it
small hand-made inputs with known answers. ``EXAMPLES`` holds, for every claim, inputs that give each verdict its rule
can reach (reproduced, partly and not; *not comparable* only for a rule that is so by construction), so a rule whose
favourable or unfavourable branch became unreachable fails here.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from sae_paper.analysis.ablation import LogitEffect
from sae_paper.analysis.autointerp.scoring import MethodSummary
from sae_paper.analysis.causal_tree import TreeNode
from sae_paper.analysis.feature_stats import ClassStats, token_histogram
from sae_paper.analysis.patching_curves import CurvePoint, PatchingCurve
from sae_paper.chapters import (
    appendices,
    autointerp_control_verdicts,
    autointerp_controls,
    autointerp_verdicts,
    case_verdicts,
    ioi_verdicts,
    seed_stability,
    training,
)
from sae_paper.chapters.rulebook import all_rules
from sae_paper.core.metrics import SpliceMetrics
from sae_paper.core.sweeps import SweepRecord
from sae_paper.data.paths import shared_file
from sae_paper.errors import SaePaperError
from sae_paper.report.claims import Claim, load_claims, paper_claims
from sae_paper.report.finding import Decision
from sae_paper.report.rules import Rule, rule_anchor, rule_registry

# --------------------------------------------------------------------------------------
# Small inputs, built by hand
# --------------------------------------------------------------------------------------


def rec(alpha=1e-3, *, site="mlp_post.0", kind="tied", ratio=1.0, epochs=2, fvu=0.5, l0=10.0, alive=100, d_sae=100):
    return SweepRecord(model="m", site=site, kind=kind, ratio=ratio, alpha=alpha, epochs=epochs, n_tokens=1000,
                       d_sae=d_sae, fvu=fvu, mean_l0=l0, alive_eval=alive, n_eval=100, alive=alive,
                       alive_threshold=10, train_seconds=1.0, activations_per_s=2000.0)


def splice(ratio: float) -> SpliceMetrics:
    """Splice metrics whose spliced/clean perplexity ratio is ``ratio`` (clean perplexity 25)."""
    return SpliceMetrics(ce_clean=math.log(25), ce_spliced=math.log(25 * ratio), ce_zero=7.0, n_tokens=100)


def summary(site, method, mean, ci=0.05, random_mean=0.1, random_ci=0.05) -> MethodSummary:
    return MethodSummary(method, site, 50, 0, 0, 0, mean, ci, random_mean, random_ci)


def curve(name: str, points: list[tuple[int, float, float]], *, layer: int = 12) -> PatchingCurve:
    """A patching curve from (features patched, KL, mean edit) points."""
    ordered = tuple(sorted((CurvePoint(n, kl, edit, None) for n, kl, edit in points), key=lambda p: p.n_features))
    return PatchingCurve(name=name, layer=layer, points=ordered, n_features=1000, n_active=ordered[-1].n_features,
                         kl_base=ordered[0].kl, kl_all=ordered[-1].kl, n_evaluations=len(ordered), seconds=0.0,
                         ordering="independent", order=(1, 2, 3))


LEAN = [(0, 4.0, 0.0), (2, 1.0, 3.0), (5, 0.2, 5.0), (30, 0.08, 9.0)]
"""A curve that reaches low KL with few features and small edits; :func:`costly` gives the same KLs at 10× the
features and 3× the edit."""


def costly(points):
    return [(10 * n, kl, 3 * edit) for n, kl, edit in points]


SPARSE, DENSE, PCA = ioi_verdicts.dictionary_name(1e-2), ioi_verdicts.dictionary_name(0.0), "PCA"


def figure3(outcome: str, layer: int = 12) -> list[PatchingCurve]:
    """Curves where the sparse SAE beats both baselines ('reproduced'), one of them ('partly': it ties the other at
    every level) or neither ('not')."""
    sparse = costly(LEAN) if outcome == "not" else LEAN
    dense = LEAN if outcome == "not" else costly(LEAN)
    pca = costly(LEAN) if outcome == "reproduced" else LEAN
    return [curve(SPARSE, sparse, layer=layer), curve(DENSE, dense, layer=layer), curve(PCA, pca, layer=layer)]


def floors(*values: float) -> list[PatchingCurve]:
    """Dictionaries at α = 0, 1e-2, 1e-1 whose all-patched KL (their floor) is ``values``."""
    return [curve(ioi_verdicts.dictionary_name(alpha), [(0, 4.0, 0.0), (10, 1.0, 2.0), (100, floor, 5.0)])
            for alpha, floor in zip((0.0, 1e-2, 1e-1), values)]


class ListTokenizer:
    """decode([i]) → a fixed vocabulary's i-th string."""

    def __init__(self, vocab):
        self.vocab = list(vocab)

    def decode(self, ids):
        return "".join(self.vocab[i] for i in ids)


APOSTROPHES = ListTokenizer(["'", "'s", ".", ",", "the", "his"])
APOSTROPHE_TOKENS = torch.tensor([0, 1, 0, 2, 3, 2, 4, 5])
HISTOGRAMS = {  # activations on APOSTROPHE_TOKENS
    "reproduced": torch.tensor([9.0, 10.0, 8.0, 1.0, 1.0, 2.0, 0.0, 0.0]),  # apostrophes on top, punctuation below
    "partly": torch.tensor([9.0, 10.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0]),  # apostrophes on top, words below
    "not": torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 9.0, 10.0]),
}


def effect_with(diff):
    return LogitEffect(torch.as_tensor(diff, dtype=torch.float32), 0.0, 2, torch.ones(2), torch.zeros(2))


def stats_for(precision, recall=0.5, fires=100):
    in_class = int(fires * precision)
    return ClassStats(torch.tensor([fires]), torch.tensor([in_class]), torch.tensor([5.0]), torch.tensor([10.0]),
                      torch.tensor([10.0 * precision], dtype=torch.float64), int(in_class / recall), 1000)


def tree():
    child = TreeNode(2, 5, 10.0, effect=2.0, relative_effect=0.5, cosine=0.6)
    other = TreeNode(2, 6, 10.0, effect=1.0, relative_effect=0.25, cosine=0.01)
    return TreeNode(3, 1, 4.0, children=(child, other))


def polysemantic(share, dimension_precision):
    hist = token_histogram(torch.tensor([1.0, 2.0, 3.0, 4.0, 9.0, 10.0]), torch.tensor([1, 2, 3, 3, 0, 0]), n_bins=4,
                           label=lambda t: f"t{t}")
    return appendices.residual_polysemantic_finding("−dim 7", hist, torch.tensor(share), dimension_precision, 3, 0.4)


def stable(shared: float, *, other: int) -> seed_stability.PairStability:
    """Seed 0's 1,000 features of one SAE, ``shared`` of them found again at seed ``other``; random directions share
    none (chance bound 0.4 %)."""
    counts = torch.zeros(40, dtype=torch.int64)
    return seed_stability.PairStability("layer 3", 0, other, 1000, shared, 0.5, 0.0, 0.14, counts, counts,
                                        torch.linspace(-1, 1, 41))


A = autointerp_verdicts
L3, L9 = "resid_post.3", "resid_post.9"
TOKEN = "token-list"


def control(trained: list[float], random_model: list[float]) -> Decision:
    """control-random-model at layers 3 and 9: the trained SAE's means, one control SAE's (CI ±0.05 each)."""
    name = autointerp_controls.control_method("smollm2-135m-random", "sae")
    summaries = [summary(site, method, mean) for site, t, c in zip((L3, L9), trained, random_model)
                 for method, mean in (("sae", t), (name, c))]
    return autointerp_control_verdicts.random_model_finding(summaries, [3, 9], ["smollm2-135m-random"], backend=TOKEN)
SINGLE = ("apostrophes", "periods", '" the"', "newlines")
GOOD_SWEEP = [rec(1e-4, fvu=0.1, l0=50), rec(3e-4, fvu=0.2, l0=20), rec(1e-3, fvu=0.4, l0=5)]
ONE_EPOCH = [rec(1e-4, epochs=1, fvu=0.3, l0=40), rec(3e-4, epochs=1, fvu=0.5, l0=20)]
TWO_EPOCHS = [rec(1e-4, epochs=2, fvu=0.25, l0=40), rec(3e-4, epochs=2, fvu=0.45, l0=18)]


def topk(plain: float, top: float) -> list[MethodSummary]:
    return [summary(L3, "sae", 0.6), summary(L3, "pca", plain), summary(L3, "topk-pca", top)]


EXAMPLES = {
    "train-runtime": {"reproduced": lambda: training.train_runtime_finding(10, 1e6, 10_000),
                      "partly": lambda: training.train_runtime_finding(10, 1e4, 10_000),
                      "not": lambda: training.train_runtime_finding(10, 1e3, 10_000)},
    "splice-perplexity": {"reproduced": lambda: training.splice_finding(splice(1.6), model="pythia-70m-deduped",
                                                                        site="resid_post.2"),
                          "partly": lambda: training.splice_finding(splice(1.6), model="smollm2-135m", site="resid_post.3"),
                          "not": lambda: training.splice_finding(splice(3.0), model="smollm2-135m", site="resid_post.3")},
    "fig6-tradeoff": {"reproduced": lambda: training.tradeoff_finding({"mlp_post.0": GOOD_SWEEP}),
                      "partly": lambda: training.tradeoff_finding({"mlp_post.0": [
                          *GOOD_SWEEP, rec(3e-3, fvu=0.39, l0=2), rec(1e-2, fvu=0.6, l0=1)]}),
                      "not": lambda: training.tradeoff_finding({"mlp_post.0": [
                          rec(1e-4, fvu=0.4, l0=5), rec(3e-4, fvu=0.2, l0=20), rec(1e-3, fvu=0.1, l0=50)]})},
    "fig7-epochs": {"reproduced": lambda: training.epochs_finding({1: ONE_EPOCH, 2: TWO_EPOCHS}),
                    "partly": lambda: training.epochs_finding({1: ONE_EPOCH, 2: [
                        rec(1e-4, epochs=2, fvu=0.25, l0=40), rec(3e-4, epochs=2, fvu=0.55, l0=18)]}),
                    "not": lambda: training.epochs_finding({1: TWO_EPOCHS, 2: ONE_EPOCH})},
    "fig16-resid-alive": {"reproduced": lambda: training.resid_alive_finding([rec(ratio=2, alive=95)]),
                          "partly": lambda: training.resid_alive_finding([rec(ratio=2, alive=60)]),
                          "not": lambda: training.resid_alive_finding([rec(ratio=2, alive=40)])},
    "fig16-mlp-dead": {"reproduced": lambda: training.mlp_dead_finding([rec(0.0, alive=80), rec(1e-3, alive=50)]),
                       "partly": lambda: training.mlp_dead_finding([rec(0.0, alive=100), rec(1e-3, alive=50)]),
                       "not": lambda: training.mlp_dead_finding([rec(0.0, alive=100), rec(1e-3, alive=95)])},
    "c3-untied-alive": {"reproduced": lambda: training.untied_finding([(rec(alive=90), rec(kind="untied", alive=95))]),
                        "partly": lambda: training.untied_finding([(rec(alive=90), rec(kind="untied", alive=95)),
                                                                   (rec(1e-2, alive=50), rec(1e-2, kind="untied", alive=40))]),
                        "not": lambda: training.untied_finding([(rec(alive=90), rec(kind="untied", alive=80))])},
    "control-random-model": {
        "reproduced": lambda: control([0.6, 0.5], [0.3, 0.35]),
        "partly": lambda: control([0.6, 0.5], [0.3, 0.48]),
        "not": lambda: control([0.6, 0.3], [0.3, 0.5])},
    "fig2-early-layers": {
        "reproduced": lambda: A.early_layers_finding([summary(L3, "sae", 0.6), summary(L3, "neurons", 0.3)], [3],
                                                     backend=TOKEN),
        "partly": lambda: A.early_layers_finding([summary(L3, "sae", 0.6), summary(L3, "neurons", 0.58)], [3],
                                                 backend=TOKEN),
        "not": lambda: A.early_layers_finding([summary(L3, "sae", 0.3), summary(L3, "neurons", 0.6)], [3], backend=TOKEN)},
    "fig2-depth": {
        "reproduced": lambda: A.depth_finding([summary(L3, "sae", 0.6), summary(L3, "pca", 0.3), summary(L9, "sae", 0.5),
                                               summary(L9, "pca", 0.45)], [3, 9], backend=TOKEN, n_layers=30),
        "partly": lambda: A.depth_finding([summary(L3, "sae", 0.6), summary(L3, "pca", 0.3), summary(L9, "sae", 0.5),
                                           summary(L9, "pca", 0.3)], [3, 9], backend=TOKEN, n_layers=30),
        "not": lambda: A.depth_finding([summary(L3, "sae", 0.6), summary(L3, "pca", 0.3), summary(L9, "sae", 0.7),
                                        summary(L9, "pca", 0.3)], [3, 9], backend=TOKEN, n_layers=30)},
    "fig9-random-only": {
        "reproduced": lambda: A.random_only_finding([summary(L3, "sae", 0.6, random_mean=0.4),
                                                     summary(L3, "pca", 0.3, random_mean=0.1)], [3], backend=TOKEN),
        "partly": lambda: A.random_only_finding([summary(L3, "sae", 0.6, random_mean=0.15),
                                                 summary(L3, "pca", 0.3, random_mean=0.1)], [3], backend=TOKEN),
        "not": lambda: A.random_only_finding([summary(L3, "sae", 0.6, random_mean=0.1),
                                              summary(L3, "pca", 0.3, random_mean=0.1)], [3], backend=TOKEN)},
    "fig8-ratio": {
        "reproduced": lambda: A.ratio_finding({0.5: summary(L3, "sae", 0.5), 2.0: summary(L3, "sae", 0.6)},
                                              [summary(L3, "pca", 0.3)], backend=TOKEN),
        "partly": lambda: A.ratio_finding({0.5: summary(L3, "sae", 0.32), 2.0: summary(L3, "sae", 0.6)},
                                          [summary(L3, "pca", 0.3)], backend=TOKEN),
        "not": lambda: A.ratio_finding({0.5: summary(L3, "sae", 0.1), 2.0: summary(L3, "sae", 0.32)},
                                       [summary(L3, "pca", 0.3)], backend=TOKEN)},
    "fig18-topk": {"reproduced": lambda: A.topk_finding(topk(0.2, 0.3), [3], {3: 10}, backend=TOKEN),  # closes 1/4
                   "partly": lambda: A.topk_finding(topk(0.2, 0.5), [3], {3: 10}, backend=TOKEN),  # closes 3/4
                   "not": lambda: A.topk_finding(topk(0.2, 0.7), [3], {3: 10}, backend=TOKEN)},  # above the SAE
    "table1-first-five": {"not comparable": lambda: A.table1_finding([(0, "surnames", 0.33), (1, None, None)], L3,
                                                                     backend=TOKEN)},
    "table2-moments": {
        "reproduced": lambda: A.moments_finding({"mean": -0.1, "variance": 0.0, "skew": 0.2, "kurtosis": 0.1}, 10,
                                                backend=TOKEN),
        "partly": lambda: A.moments_finding({"mean": -0.1, "variance": 0.0, "skew": 0.9, "kurtosis": 0.9}, 10,
                                            backend=TOKEN),
        "not": lambda: A.moments_finding({"mean": 0.9, "variance": 0.9, "skew": 0.9, "kurtosis": 0.9}, 10, backend=TOKEN)},
    "c3-mlp-interp": {
        "reproduced": lambda: A.mlp_finding(summary("mlp_post.3", "sae", 0.6), summary("mlp_post.3", "neurons", 0.3),
                                            backend=TOKEN),
        "partly": lambda: A.mlp_finding(summary("mlp_post.3", "sae", 0.6), summary("mlp_post.3", "neurons", 0.58),
                                        backend=TOKEN),
        "not": lambda: A.mlp_finding(summary("mlp_post.3", "sae", 0.3), summary("mlp_post.3", "neurons", 0.6),
                                     backend=TOKEN)},
    "fig3-fewer-features": {v: (lambda v=v: ioi_verdicts.fewer_features_finding(figure3(v), setting="toy"))
                            for v in ("reproduced", "partly", "not")},
    "fig3-smaller-edits": {v: (lambda v=v: ioi_verdicts.smaller_edits_finding(figure3(v), setting="toy"))
                           for v in ("reproduced", "partly", "not")},
    "fig3-alpha-floor": {"reproduced": lambda: ioi_verdicts.alpha_floor_finding(floors(0.01, 0.08, 0.2), {}, setting="toy"),
                         "partly": lambda: ioi_verdicts.alpha_floor_finding(floors(0.01, 0.08, 0.05), {}, setting="toy"),
                         "not": lambda: ioi_verdicts.alpha_floor_finding(floors(0.2, 0.08, 0.05), {}, setting="toy")},
    "fig17-layers": {
        "reproduced": lambda: ioi_verdicts.layers_finding({layer: figure3("reproduced", layer) for layer in (6, 12, 18)},
                                                          setting="toy"),
        "partly": lambda: ioi_verdicts.layers_finding({6: figure3("not", 6), 12: figure3("reproduced", 12),
                                                       18: figure3("reproduced", 18)}, setting="toy"),
        "not": lambda: ioi_verdicts.layers_finding({layer: figure3("not", layer) for layer in (6, 12, 18)},
                                                   setting="toy")},
    "fig4-apostrophe-hist": {v: (lambda v=v: case_verdicts.apostrophe_histogram_finding(
        7, HISTOGRAMS[v], APOSTROPHE_TOKENS, APOSTROPHES, n_bins=2)) for v in HISTOGRAMS},
    "fig4-ablation-logits": {
        "reproduced": lambda: case_verdicts.ablation_finding(1, effect_with([-3.0, -1, 0, 1, 2, 0, 0]), ListTokenizer(
            ["s", " t", " a", " b", " c", " d", " e"])),
        "partly": lambda: case_verdicts.ablation_finding(1, effect_with([-1.0, -3, 0, 1, 2, -2, 0]), ListTokenizer(
            ["s", " t", " a", " b", " c", " d", " e"])),
        "not": lambda: case_verdicts.ablation_finding(1, effect_with([3.0, -3, -2, -1, -0.5, -0.4, 0]), ListTokenizer(
            ["s", " t", " a", " b", " c", " d", " e"]))},
    "sec5-single-token-features": {
        "reproduced": lambda: case_verdicts.single_token_finding({name: (0, stats_for(0.9)) for name in SINGLE}),
        "partly": lambda: case_verdicts.single_token_finding({**{name: (0, stats_for(0.9)) for name in SINGLE},
                                                              "periods": (0, stats_for(0.3))}),
        "not": lambda: case_verdicts.single_token_finding({name: (0, stats_for(0.1)) for name in SINGLE})},
    "fig5-unembed-parens": {v: (lambda share=share: case_verdicts.unembed_parens_finding(
        1, 5, 6, [")"] * 10, share, 0.03, 0.2, 0.01)) for v, share in (("reproduced", 1.0), ("partly", 0.6), ("not", 0.2))},
    "fig5-causal-tree": {
        "reproduced": lambda: case_verdicts.causal_tree_finding(tree(), {(3, 1): 0.3, (2, 5): 0.3, (2, 6): 0.01}, 0.05,
                                                                0.03),
        "partly": lambda: case_verdicts.causal_tree_finding(tree(), {(2, 5): 0.0, (2, 6): 0.0}, 0.05, 0.03),
        "not": lambda: case_verdicts.causal_tree_finding(TreeNode(3, 1, 4.0), {}, 0.05, 0.03)},
    "fig11-residual-polysemantic": {"reproduced": lambda: polysemantic([0.0, 0.0, math.nan, 1.0], 0.05),
                                    "partly": lambda: polysemantic([0.0, 0.0, math.nan, 0.0], 0.05),
                                    "not": lambda: polysemantic([0.0, 0.0, math.nan, 1.0], 0.5)},
    "fig12-15-features": {
        "reproduced": lambda: appendices.appendix_d_finding(
            {name: (0, stats_for(0.8)) for name in appendices.APPENDIX_D_CLASSES}, code_share=0.9),
        "partly": lambda: appendices.appendix_d_finding(
            {**{name: (0, stats_for(0.8)) for name in appendices.APPENDIX_D_CLASSES},
             "Dis (Figure 13)": (0, stats_for(0.8, recall=0.1))}, code_share=0.9),
        "not": lambda: appendices.appendix_d_finding(
            {name: (0, stats_for(0.1)) for name in appendices.APPENDIX_D_CLASSES}, code_share=0.9)},
    "control-seed-stability": {v: (lambda shares=shares: seed_stability.seed_stability_finding(
        [stable(share, other=o) for o, share in enumerate(shares, start=1)]))
        for v, shares in (("reproduced", (0.4, 0.3)), ("partly", (0.4, 0.0)), ("not", (0.001, 0.0)))},
}


# --------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------


def plain_words(text: str) -> str:
    """Text with Markdown emphasis removed and whitespace runs made one space, for comparing a quote with its source."""
    return " ".join(re.sub(r"\*{1,2}", "", text).split())


def test_the_registry_has_one_rule_for_each_claim_of_claims_yaml():
    """One rule per row, in the scoreboard's order: the paper's 26 claims, then each control beyond the paper."""
    rules, claims = all_rules(), load_claims()
    assert list(rules) == list(claims) and len(paper_claims(claims)) == 26
    assert all(rule.claim_id == claim_id for claim_id, rule in rules.items())


def test_every_rule_quotes_the_paper_verbatim():
    """A paper claim's rule quotes PAPER.md; a control's quotes what controls.yaml says its source reports."""
    paper, claims = plain_words(shared_file("paper", "PAPER.md").read_text()), load_claims()
    missing = [claim_id for claim_id, rule in all_rules().items()
               if plain_words(rule.paper) not in (paper if claims[claim_id].source == "paper"
                                                  else plain_words(claims[claim_id].paper))]
    assert not missing, f"rules whose quote is not in PAPER.md (or controls.yaml, for a control): {missing}"


def test_only_table1_is_not_comparable_by_construction():
    assert [claim_id for claim_id, rule in all_rules().items() if rule.not_comparable] == ["table1-first-five"]


CLAIMS = {"a-number": Claim("a-number", "Section 1", "the answer is 42", "number")}


def test_registry_rejects_two_rules_for_a_claim_and_unknown_claims():
    rule = Rule("a-number", paper="42", rule="within {tolerance:g}", why="w", deciding=("the answer",),
                thresholds={"tolerance": 1})
    assert rule_registry([rule], CLAIMS) == {"a-number": rule}
    with pytest.raises(SaePaperError, match="two rules for claim a-number"):
        rule_registry([rule, rule], CLAIMS)
    with pytest.raises(SaePaperError, match="a rule for unknown claim id 'b-order'"):
        rule_registry([Rule("b-order", paper="x", rule="y", why="z", deciding=("x",))], CLAIMS)


def test_a_rule_names_only_thresholds_it_has_and_holds_numbers():
    with pytest.raises(SaePaperError, match="its words name a threshold it does not have"):
        Rule("a-number", paper="42", rule="within {tolerance:g}", why="w", deciding=("the answer",))
    with pytest.raises(SaePaperError, match="thresholds must be numbers"):
        Rule("a-number", paper="42", rule="r", why="w", deciding=("the answer",), thresholds={"t": "0.5"})
    with pytest.raises(SaePaperError, match="deciding must not be empty"):
        Rule("a-number", paper="42", rule="r", why="w", deciding=())
    rule = Rule("a-number", paper="42", rule="within {tolerance:.0%}", why="w", deciding=("x",),
                thresholds={"tolerance": 0.25, "count": 150_000_000})
    assert rule.words == "within 25%"
    assert rule.note("42 here") == ("[rule a-number](../rules.html#rule-a-number): tolerance = 0.25, "
                                    "count = 150,000,000; 42 here")


# --------------------------------------------------------------------------------------
# Every outcome of every rule is reachable
# --------------------------------------------------------------------------------------


def test_every_claim_has_examples_of_each_verdict_its_rule_can_give():
    rules = all_rules()
    assert set(EXAMPLES) == set(rules)
    for claim_id, rule in rules.items():
        expected = {"not comparable"} if rule.not_comparable else {"reproduced", "partly", "not"}
        assert set(EXAMPLES[claim_id]) == expected, claim_id


CENTRAL = (*autointerp_verdicts.CENTRAL, "control-random-model")
"""Claims whose deciding number is a margin: positive exactly when the verdict is reproduced."""


@pytest.mark.parametrize("claim_id, verdict", [(c, v) for c, examples in EXAMPLES.items() for v in examples])
def test_each_example_gives_its_verdict(claim_id, verdict):
    answer = EXAMPLES[claim_id][verdict]()
    finding = answer.finding if isinstance(answer, Decision) else answer
    assert finding.verdict == verdict
    if isinstance(answer, Decision) and claim_id in CENTRAL:  # the number the rule thresholds: it cannot contradict
        assert (answer.deciding > 0) == (verdict == "reproduced")
    assert f"#{rule_anchor(claim_id)})" in finding.note  # the note links to the rule that decided it


# --------------------------------------------------------------------------------------
# The rules made symmetric, on both sides of each threshold
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio, paper_setting, other_setting", [
    (1.6, "reproduced", "partly"),
    (1.6 / 1.25 * 1.01, "reproduced", "partly"), (1.6 / 1.25 * 0.99, "not", "not"),  # the band's lower edge, ×1.28
    (1.6 * 1.25 * 0.99, "reproduced", "partly"), (1.6 * 1.25 * 1.01, "not", "not"),  # its upper edge, ×2.0
    (1.1, "not", "not"), (8.0, "not", "not"),
])
def test_splice_is_judged_on_the_same_band_in_every_setting(ratio, paper_setting, other_setting):
    ours = training.splice_finding(splice(ratio), model="pythia-70m-deduped", site="resid_post.2")
    other = training.splice_finding(splice(ratio), model="smollm2-135m", site="resid_post.3")
    assert (ours.verdict, other.verdict) == (paper_setting, other_setting)
    assert "a different setting: smollm2-135m resid_post.3" in other.note and "different setting" not in ours.note
    if other.verdict == "not":  # how far outside, either way
        factor = ratio / 1.6
        assert f"{max(factor, 1 / factor):.2f} times {'above' if factor > 1 else 'below'}" in other.note


def test_random_only_is_decided_by_the_sae_against_the_baselines():
    def verdict(sae_random, base_random, *, sae_top=0.6, base_top=0.3, ci=0.05):
        return A.random_only_finding([summary(L3, "sae", sae_top, random_mean=sae_random, random_ci=ci),
                                      summary(L3, "neurons", base_top, random_mean=base_random, random_ci=ci)],
                                     [3], backend=TOKEN).finding.verdict

    assert verdict(0.4, 0.1) == "reproduced"  # clearly ahead, and lower than its top-and-random
    assert verdict(0.21, 0.1) == "reproduced" and verdict(0.19, 0.1) == "partly"  # the CIs (±0.05) just apart / touching
    assert verdict(0.11, 0.1) == "partly" and verdict(0.09, 0.1) == "not"  # the mean just ahead / just behind
    assert verdict(0.1, 0.1) == "not"  # lower than top-and-random for every method: lifts nothing
    assert verdict(0.7, 0.1) == "partly"  # clearly ahead, but not lower than its top-and-random (0.6)


def test_a_sparse_dictionary_that_cannot_reach_the_kl_loses_and_one_that_can_wins():
    lossy = [(0, 4.0, 0.0), (5, 3.5, 5.0), (30, 3.0, 9.0)]  # floor 3.0: never reaches half the base KL
    lost = ioi_verdicts.fewer_features_finding([curve(SPARSE, lossy), curve(PCA, LEAN)], setting="toy").finding
    assert lost.verdict == "not" and "0/8" in lost.ours and "levels only PCA reaches" in lost.ours
    won = ioi_verdicts.smaller_edits_finding([curve(SPARSE, LEAN), curve(DENSE, lossy)], setting="toy").finding
    assert won.verdict == "reproduced" and "8/8" in won.ours
    neither = ioi_verdicts.fewer_features_finding([curve(SPARSE, lossy), curve(PCA, lossy)], setting="toy").finding
    assert neither.verdict == "not comparable" and "neither reaches half the base KL" in neither.ours
    assert ioi_verdicts.layers_finding({6: [curve(SPARSE, lossy, layer=6), curve(PCA, LEAN, layer=6)]},
                                       setting="toy").verdict == "not"


def test_dead_mlp_features_at_positive_alpha_lift_nothing_when_every_residual_sae_has_as_many():
    mlp = [rec(0.0, alive=100), rec(1e-3, alive=50)]  # none dead at α = 0, half at α > 0
    lively, dead = rec(site="resid_post.3", alive=91), rec(site="resid_post.3", alive=89)  # 9% and 11% dead
    assert training.mlp_dead_finding(mlp).verdict == "partly"
    assert training.mlp_dead_finding(mlp, [lively, dead]).verdict == "partly"  # one residual SAE stays alive
    assert training.mlp_dead_finding(mlp, [dead, dead]).verdict == "not"  # every residual SAE has many dead too
    assert training.mlp_dead_finding([rec(0.0, alive=80), *mlp[1:]], [dead]).verdict == "reproduced"  # even at α = 0


@pytest.mark.parametrize("shares, margin", [
    ((0.13, 1.0, 1.0), 0.13 - 0.5),  # the book's feature: the top bin full, apostrophes 13% of all firings
    ((0.5, 0.8, 0.51), 0.0), ((0.49, 0.8, 0.6), -0.01), ((0.6, 0.79, 0.6), -0.01), ((0.6, 0.9, 0.45), -0.05),
    ((0.9, 0.95, 0.8), 0.15),
])
def test_the_apostrophe_trend_follows_the_share_furthest_short_of_its_threshold(shares, margin):
    assert case_verdicts.reproduced_margin(*shares) == pytest.approx(margin)


def test_the_apostrophe_margin_is_not_negative_exactly_when_the_histogram_is_reproduced():
    from sae_paper.chapters.case_budget import trends
    from sae_paper.report.budget import BudgetPoint

    for verdict, activation in HISTOGRAMS.items():
        shares = case_verdicts.apostrophe_shares(activation, APOSTROPHE_TOKENS, APOSTROPHES, n_bins=2)
        assert (case_verdicts.reproduced_margin(*shares) >= 0) == (verdict == "reproduced")
    # the top bin stays full while apostrophes' share of all firings grows: the trend now sees it
    points = [BudgetPoint(n, case_verdicts.reproduced_margin(overall, 1.0, 0.9)) for n, overall in
              ((1000, 0.1), (2000, 0.2), (4000, 0.4))]
    found = trends({"fig4-apostrophe-hist": points, "sec5-single-token-features": points})
    assert found["fig4-apostrophe-hist"].trend == "converging toward the paper"


# --------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------


def test_the_rules_page_renders_every_claim(tmp_path):
    from sae_paper.book.rules_page import RULES_MARKDOWN, write_rules_page

    page = write_rules_page(tmp_path / "generated").read_text()
    assert (tmp_path / "generated" / RULES_MARKDOWN).is_file()
    claims = load_claims()
    sections = re.findall(r"^\((rule-[^)]+)\)=\n## (\S+)$", page, re.M)
    assert [claim_id for _, claim_id in sections] == list(all_rules()) == [c for c in claims if c in all_rules()]
    assert all(anchor == rule_anchor(claim_id) for anchor, claim_id in sections)
    for claim_id, rule in all_rules().items():
        section = page.split(f"## {claim_id}\n", 1)[1].split("\n## ", 1)[0]
        assert f"*{claims[claim_id].where}*" in section
        assert f"> {' '.join(rule.paper.split())}" in section
        assert rule.words in section and rule.why in section
        assert all(part in section for part in rule.deciding)
        assert all(f"| `{name}` |" in section for name in rule.thresholds)
    controls = sum(claims[claim_id].source == "control" for claim_id in all_rules())
    assert controls >= 2  # control-random-model's and control-seed-stability's rules, notebook 02's
    assert page.startswith(f"26 rules, one per claim, and {controls} for the controls beyond the paper; not comparable "
                           "by construction: {ref}`table1-first-five <rule-table1-first-five>`.")
    assert "| `band` | 1.25 |" in page and "| `largest_run` | 150,000,000 |" in page
