"""The language-model cost of splicing a reconstruction into the forward pass."""

from __future__ import annotations

import math

import pytest
import torch

from sae_paper.core.metrics import SpliceMetrics, replace_at, splice_metrics
from sae_paper.data.models import Site
from sae_paper.data.text import kept_positions, load_contexts


@pytest.fixture(scope="module")
def tokens(pythia_random):
    return load_contexts("webtext", pythia_random.tokenizer, n_contexts=6, context_length=24, bos_token_id=0)


def test_identity_reconstruction_leaves_ce_unchanged(pythia_random, tokens):
    metrics = splice_metrics(pythia_random, Site("resid_post", 2), lambda x: x.clone(), tokens, batch_size=4)
    assert metrics.ce_spliced == pytest.approx(metrics.ce_clean, rel=1e-6)
    assert metrics.ce_zero != pytest.approx(metrics.ce_clean, rel=1e-3)
    assert metrics.ce_recovered == pytest.approx(1.0, abs=1e-5)
    assert metrics.n_tokens == int(kept_positions(tokens, 0)[:, :-1].sum())  # predictions from kept positions
    assert metrics.n_tokens < 6 * 22  # the first token of each context (and any separator) is not counted


def test_zero_reconstruction_recovers_nothing(pythia_random, tokens):
    metrics = splice_metrics(pythia_random, Site("mlp_post", 1), torch.zeros_like, tokens, batch_size=6)
    assert metrics.ce_recovered == pytest.approx(0.0, abs=1e-6)


def test_clean_ce_matches_the_models_own_loss(pythia_random, tokens):
    metrics = splice_metrics(pythia_random, Site("resid_post", 0), lambda x: x, tokens)
    per_token = pythia_random(tokens, return_type="loss", loss_per_token=True)
    counted = kept_positions(tokens, 0)[:, :-1]
    assert metrics.ce_clean == pytest.approx(per_token[counted].mean().item(), rel=1e-6)


def test_splice_replaces_only_the_kept_positions(tokens):
    keep = kept_positions(tokens, 0)
    activation = torch.randn(*tokens.shape, 5)
    patched = replace_at(keep, lambda rows: rows + 1.0)(activation)
    assert torch.equal(patched - activation != 0, keep[..., None].expand_as(activation))
    assert (tokens[:, 2:] == 0).any() and not keep[tokens == 0].any()  # a separator in the text, left alone


def test_cached_reference_ce_equals_a_fresh_computation(pythia_random, monkeypatch):
    """The clean and zero-ablated CE are computed once per (model, site, held-out text) and reused by every SAE."""
    from sae_paper.core import metrics as metrics_module
    from sae_paper.core import pipeline
    from sae_paper.core.config import RunConfig
    from sae_paper.core.metrics import reference_ce

    monkeypatch.setattr(pipeline, "load_model", lambda name, device=None: pythia_random)
    config = RunConfig(model="pythia-70m-deduped-random", layer=1, source="webtext", n_tokens=300, eval_tokens=120,
                       context_length=24, harvest_batch_size=4, epochs=1, batch_size=64)
    run = pipeline.Run(config, progress=False)
    stored = run.reference_ce()
    fresh = reference_ce(pythia_random, run.site, run.eval_contexts(), batch_size=3)
    assert stored.n_tokens == fresh.n_tokens
    assert stored.ce_clean == pytest.approx(fresh.ce_clean, rel=1e-6) and stored.ce_zero == pytest.approx(fresh.ce_zero, rel=1e-6)

    def no_recompute(*args, **kwargs):
        raise AssertionError("the reference CE was recomputed")

    monkeypatch.setattr(pipeline, "reference_ce", no_recompute)
    other = pipeline.Run(config.replace(alpha=3e-3), progress=False)  # another SAE of the same site
    spliced = other.splice(lambda x: x)
    assert spliced.ce_clean == stored.ce_clean and spliced.ce_spliced == pytest.approx(stored.ce_clean, rel=1e-6)
    monkeypatch.setattr(pipeline, "reference_ce", metrics_module.reference_ce)


def test_perplexity_and_recovered_formulae():
    metrics = SpliceMetrics(ce_clean=2.0, ce_spliced=2.5, ce_zero=4.0, n_tokens=10)
    assert metrics.perplexity_spliced == pytest.approx(math.exp(2.5))
    assert metrics.ce_recovered == pytest.approx(0.75)
