"""The scorer follows the reference's conventions (OpenAI's neuron_explainer at e4aa21b, core/reference.py), through
its own path: score_feature, score_decomposition, summarize and the verdicts, not only the pure functions.

Every answer here is worked by hand from the reference's definitions: the fixed interleaved split
(``get_slices_for_splits``), the floor scale of the explainer's own maximum (``normalize_activations``,
``calculate_max_activation``), and a correlation that is NaN, i.e. undefined, where a side is constant.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import pytest
import torch

from sae_paper.analysis.autointerp import Cached, TokenListBackend, score_decomposition, score_feature
from sae_paper.analysis.autointerp.backends import ActivationRecord, Backend
from sae_paper.analysis.autointerp.fragments import Fragments, load_fragments
from sae_paper.analysis.autointerp.scoring import MethodSummary, ScoringConfig, simulation_scores, summary_table
from sae_paper.core.decompositions import neuron_basis
from sae_paper.core.reference import explainer_max, floor_scale


def hand_fragments(rows: Sequence[Sequence[str]]) -> Fragments:
    """Fragments whose token strings are given (ids are placeholders: the scorer reads the strings)."""
    return Fragments(torch.zeros(len(rows), len(rows[0]), dtype=torch.long), tuple(tuple(r) for r in rows))


class Recording(Backend):
    """Writes down which fragments the explainer and the simulator get; predicts the token's position (varying)."""

    name, model = "recording", "v1"

    def __init__(self):
        self.explained: list[ActivationRecord] = []
        self.simulated: list[tuple[str, ...]] = []

    def explain_request(self, records):
        self.explained = list(records)
        return json.dumps([list(r.tokens) for r in records])

    def explain(self, prompt):
        return "an explanation"

    def simulate_request(self, explanation, tokens):
        self.simulated.append(tuple(tokens))
        return json.dumps(list(tokens))

    def simulate(self, prompt, n_tokens):
        return [float(i % 10) for i in range(n_tokens)]


# --------------------------------------------------------------------------------------
# The split and the scale, through score_feature
# --------------------------------------------------------------------------------------


def ranked_codes() -> torch.Tensor:
    """40 fragments of 8 tokens: fragment r of 0..19 is rank r (maximum 2.5 − 0.05 r at token 0), 20..39 vary a
    little (0.1 at token 0); a few tokens where floor and round part: 0.24 / 2.5 → 0.96, 2.4 / 2.5 → 9.6."""
    codes = torch.zeros(40, 8)
    codes[:20, 0] = torch.tensor([2.5 - 0.05 * r for r in range(20)])
    codes[20:, 0] = 0.1
    codes[0, 1], codes[0, 2], codes[4, 1] = 0.24, 2.4, 1.25
    return codes


@pytest.mark.parametrize("seed", [0, 7])
def test_the_explainer_and_simulator_get_the_references_interleaved_ranks_at_any_seed(seed):
    codes = ranked_codes()
    fragments = hand_fragments([[f"f{i}t{j}" for j in range(8)] for i in range(40)])
    backend = Recording()
    result = score_feature(codes, fragments, Cached(backend, None), Cached(backend, None), method="m", site="s",
                           feature=3, config=ScoringConfig(seed=seed))
    explained = [int(r.tokens[0][1:].split("t")[0]) for r in backend.explained]
    simulated = [int(tokens[0][1:].split("t")[0]) for tokens in backend.simulated]
    assert explained == [0, 4, 8, 12, 16]  # get_slices_for_splits' train split of the top 20
    assert simulated[:5] == [2, 6, 10, 14, 18]  # its valid split
    assert len(simulated) == 10 and set(simulated[5:]) <= set(range(20, 40))  # 5 of the random sample, outside the top
    assert result.score is not None and result.undefined is None


def test_the_explainer_sees_the_floor_scale_of_its_own_maximum():
    codes = ranked_codes()
    fragments = hand_fragments([[f"f{i}t{j}" for j in range(8)] for i in range(40)])
    backend = Recording()
    score_feature(codes, fragments, Cached(backend, None), Cached(backend, None), method="m", site="s", feature=0)
    # max over the explained fragments 0, 4, 8, 12, 16: 2.5 (fragment 0, the top one). Token 0 of each:
    # 10·2.5/2.5 = 10; 10·2.3/2.5 = 9.2 → 9; 8.4 → 8; 7.6 → 7 (round: 8); 6.8 → 6 (round: 7).
    # Fragment 0's tokens 1 and 2: 0.96 → 0 (round: 1), 9.6 → 9 (round: 10); fragment 4's token 1: 1.25 → 5.
    assert [r.activations for r in backend.explained] == [
        (10, 0, 9, 0, 0, 0, 0, 0), (9, 5, 0, 0, 0, 0, 0, 0), (8,) + (0,) * 7, (7,) + (0,) * 7, (6,) + (0,) * 7]
    explained = [codes[i].tolist() for i in (0, 4, 8, 12, 16)]
    assert [r.activations for r in backend.explained] == [floor_scale(r, explainer_max(explained)) for r in explained]


# --------------------------------------------------------------------------------------
# Undefined correlations: counted with the reason, left out of the mean
# --------------------------------------------------------------------------------------


def silent_on_random_fragments() -> tuple[Fragments, torch.Tensor]:
    """40 fragments of 16 tokens, two features (``neuron_basis(2)``'s codes are the activations):

    - 0 fires on the token ``x`` (position 0) of fragments 0..19 and faintly on ``y`` of 20..39: the token list
      explains it as ``x``, which no random fragment holds, so its random-only simulation is a constant 0;
    - 1 fires once per fragment on ``a``, the token of all 15 other positions: ``a``'s mean on the 0–10 scale over
      the explained fragments is below 1, so nothing is listed and every simulation is a constant 0."""
    rows, acts = [], torch.zeros(40, 16, 2)
    for i in range(40):
        rows.append(["x" if i < 20 else "y"] + ["a"] * 15)
        acts[i, 0, 0] = 5.0 - 0.1 * i if i < 20 else 0.2
        acts[i, 1 + i % 15, 1] = 4.0 - 0.05 * i
    return hand_fragments(rows), acts


def test_a_constant_simulation_is_undefined_counted_and_left_out_of_the_mean():
    fragments, acts = silent_on_random_fragments()
    token_list = Cached(TokenListBackend(), None)
    result = score_decomposition(neuron_basis(2), acts, fragments, token_list, token_list, method="sae",
                                 site="resid_post.0", n_features=2)
    by = {f.feature: f for f in result.features}
    assert by[0].score > 0.9 and by[0].undefined is None  # x predicted where it fires: defined, high
    assert (by[0].random_score, by[0].random_undefined) == (None, "constant simulation")  # not 0
    assert (by[1].score, by[1].undefined, by[1].random_undefined) == (None, "constant simulation", "constant simulation")
    summary = result.summary()
    assert (summary.n_scored, summary.n_undefined, summary.undefined) == (1, 1, (("constant simulation", 1),))
    assert summary.mean == by[0].score  # feature 1 is not averaged in as 0
    assert (summary.n_random_scored, summary.random_undefined) == (0, (("constant simulation", 2),))
    assert math.isnan(summary.random_mean)
    assert summary.row().endswith("| 1 / 2 |")
    assert "resid_post.0 sae, random-only: 2 undefined (constant simulation 2)" in summary_table([summary])


def test_a_method_with_no_defined_random_only_score_is_a_failed_measurement_not_a_crash():
    from sae_paper.chapters import autointerp_verdicts as V

    fragments, acts = silent_on_random_fragments()
    token_list = Cached(TokenListBackend(), None)
    sae = score_decomposition(neuron_basis(2), acts, fragments, token_list, token_list, method="sae",
                              site="resid_post.0", n_features=2).summary()
    neurons = MethodSummary("neurons", "resid_post.0", 50, 0, 0, 0, 0.3, 0.05, 0.1, 0.05)
    finding = V.random_only_finding([sae, neurons], [0], backend="token-list").finding
    assert finding.verdict == "not comparable" and V.MEASUREMENT_FAILED in finding.marks
    assert "no defined random-only score for SAE at resid_post.0" in finding.ours
    assert "SAE 2 undefined (constant simulation 2)" in finding.note
    nothing = MethodSummary("sae", "resid_post.0", 0, 0, 0, 20, math.nan, math.nan, math.nan, math.nan,
                            undefined=(("constant simulation", 20),), n_random=0)
    early = V.early_layers_finding([nothing, neurons], [0], backend="token-list").finding
    assert early.verdict == "not comparable" and V.MEASUREMENT_FAILED in early.marks and "20 undefined" in early.ours


def test_undefined_counts_over_several_layers_say_whose_they_are():
    """A verdict over several layers (fig2-depth, the random-model control) lists each layer's undefined counts with
    its site: two "SAE 2 undefined" side by side would not say which layer's is which."""
    from sae_paper.chapters import autointerp_verdicts as V

    def summary(site, n):
        return MethodSummary("sae", site, 50, 0, 0, n, 0.3, 0.05, 0.1, 0.05, undefined=(("constant simulation", n),))

    one_layer = V._failures([summary("resid_post.3", 2)])
    assert one_layer == "no failed calls; top-and-random correlations excluded from the means: SAE 2 undefined " \
                        "(constant simulation 2)"
    both = V._failures([summary("resid_post.3", 2), summary("resid_post.9", 1)])
    assert both.endswith("resid_post.3 SAE 2 undefined (constant simulation 2), resid_post.9 SAE 1 undefined "
                         "(constant simulation 1)")

def test_a_constant_truth_and_an_unrepresentable_variance_are_undefined_in_the_scorer():
    # no fragment the selection gives has a constant truth (top and random fragments vary), so these go in at the
    # scorer's correlation step: codes per fragment, predictions per fragment, the top and the random ones
    simulated = {0: [0.0, 1.0, 2.0], 1: [1.0, 0.0, 1.0]}
    flat = torch.full((2, 3), 2.0)
    both, random_only = simulation_scores(flat, simulated, [0], [1])
    assert (both.value, both.undefined, random_only.undefined) == (None, "constant truth", "constant truth")
    tiny = torch.tensor([[0.0, 1e-200, 3e-200], [0.0, 2e-200, 1e-200]], dtype=torch.float64)  # Σdx² < 5e-324
    both, random_only = simulation_scores(tiny, simulated, [0], [1])
    assert (both.undefined, random_only.undefined) == ("not representable", "not representable")
    varying_top = torch.tensor([[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]])  # the random fragment alone is constant
    both, random_only = simulation_scores(varying_top, simulated, [0], [1])
    # pooled: simulation 0, 1, 2, 1, 0, 1 against truth 0, 1, 3, 2, 2, 2: Σdxdy = 96/36, Σdx² = 102/36, Σdy² = 192/36
    assert both.value == pytest.approx(96 / math.sqrt(102 * 192), abs=1e-15) and random_only.undefined == "constant truth"


# --------------------------------------------------------------------------------------
# Fragments: a random window of each document, no U+FFFD
# --------------------------------------------------------------------------------------


def test_fragments_are_random_windows_of_their_documents_without_split_characters(pythia_random, monkeypatch):
    import sae_paper.data.text as text

    tokenizer = pythia_random.tokenizer
    documents = [" ".join(f"word{i}x{j}" for j in range(60)) for i in range(12)]
    documents.insert(3, "🤖🦀🧪" * 60)  # emoji split over byte tokens: every window holds a token decoding to U+FFFD
    monkeypatch.setattr(text, "iter_documents", lambda source, split="train", seed=0: iter(documents))
    ids = [tokenizer(d, add_special_tokens=False)["input_ids"] for d in documents]
    assert all(any("\ufffd" in tokenizer.decode([t]) for t in ids[3][s : s + 16]) for s in range(len(ids[3]) - 15))
    fragments = load_fragments(tokenizer, n_fragments=12, length=16, sources=("webtext",), seed=0)
    rows = fragments.tokens.tolist()
    for row, document in zip(rows, ids[:3] + ids[4:]):  # one window of each document, document 3 dropped
        starts = [s for s in range(len(document) - 15) if document[s : s + 16] == row]
        assert starts, "a fragment is not a window of its document"
    assert any(row != document[:16] for row, document in zip(rows, ids[:3] + ids[4:]))  # not all openings
    assert all("\ufffd" not in token for strings in fragments.token_strings for token in strings)
    again = load_fragments(tokenizer, n_fragments=12, length=16, sources=("webtext",), seed=0)
    other = load_fragments(tokenizer, n_fragments=12, length=16, sources=("webtext",), seed=1)
    assert again.tokens.equal(fragments.tokens) and not other.tokens.equal(fragments.tokens)
