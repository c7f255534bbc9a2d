"""The language-model cost of splicing a reconstruction into the forward pass."""

from __future__ import annotations

import math

import pytest
import torch

from sae_paper.data import load_contexts
from sae_paper.metrics import SpliceMetrics, splice_metrics
from sae_paper.models import Site


@pytest.fixture(scope="module")
def tokens(pythia_random):
    return load_contexts("webtext", pythia_random.tokenizer, n_contexts=6, context_length=24, bos_token_id=0)


def test_identity_reconstruction_leaves_ce_unchanged(pythia_random, tokens):
    metrics = splice_metrics(pythia_random, Site("resid_post", 2), lambda x: x.clone(), tokens, batch_size=4)
    assert metrics.ce_spliced == pytest.approx(metrics.ce_clean, rel=1e-6)
    assert metrics.ce_zero != pytest.approx(metrics.ce_clean, rel=1e-3)
    assert metrics.ce_recovered == pytest.approx(1.0, abs=1e-5)
    assert metrics.n_tokens == 6 * 22


def test_zero_reconstruction_recovers_nothing(pythia_random, tokens):
    metrics = splice_metrics(pythia_random, Site("mlp_post", 1), torch.zeros_like, tokens, batch_size=6)
    assert metrics.ce_recovered == pytest.approx(0.0, abs=1e-6)


def test_clean_ce_matches_the_models_own_loss(pythia_random, tokens):
    metrics = splice_metrics(pythia_random, Site("resid_post", 0), lambda x: x, tokens)
    per_token = pythia_random(tokens, return_type="loss", loss_per_token=True)[:, 1:]
    assert metrics.ce_clean == pytest.approx(per_token.mean().item(), rel=1e-6)


def test_perplexity_and_recovered_formulae():
    metrics = SpliceMetrics(ce_clean=2.0, ce_spliced=2.5, ce_zero=4.0, n_tokens=10)
    assert metrics.perplexity_spliced == pytest.approx(math.exp(2.5))
    assert metrics.ce_recovered == pytest.approx(0.75)
