"""Harvesting to the disk cache: exact values, resumption, corruption, shuffled reading."""

from __future__ import annotations

import json

import pytest
import torch

from sae_paper.data import activations as activations_module
from sae_paper.data.activations import ActivationCache, HarvestSpec, InMemoryActivations, harvest, kept_rows
from sae_paper.data.models import Site
from sae_paper.data.rank_harvest import harvest_all
from sae_paper.data.text import kept_positions, load_contexts
from sae_paper.errors import SaePaperError

RESID, MLP = Site("resid_post", 1), Site("mlp_post", 0)


def small_spec(n_tokens=150, **changes) -> HarvestSpec:
    fields = dict(model="pythia-70m-deduped-random", source="pile-openings", split="train", n_tokens=n_tokens,
                  context_length=16, dtype="float32", seed=3)
    return HarvestSpec(**{**fields, **changes})


def direct_rows(model, spec, site, n_contexts):
    """What the harvest should store for ``site``: a plain forward pass over the same contexts,
    every position the separator-row policy keeps, in stream order."""
    tokens = load_contexts(spec.source, model.tokenizer, n_contexts=n_contexts, context_length=spec.context_length,
                           bos_token_id=0, seed=spec.seed, split=spec.split)
    _, cache = model.run_with_cache(tokens)
    return cache[site.hook_name][kept_positions(tokens, 0)], tokens


def test_harvest_matches_a_direct_forward_pass(pythia_random):
    spec = small_spec()
    caches = harvest(pythia_random, spec, [RESID, MLP], batch_size=4, shard_contexts=4, progress=False)
    rows = {site: cache.read_all() for site, cache in caches.items()}
    assert rows[RESID].shape == (150, 512) and rows[MLP].shape == (150, 2048)
    n_contexts = caches[RESID].n_contexts
    for site in (RESID, MLP):
        expected, tokens = direct_rows(pythia_random, spec, site, n_contexts)
        torch.testing.assert_close(rows[site], expected[:150], rtol=1e-5, atol=1e-5)
    assert kept_positions(tokens, 0)[:-1].sum() < 150 <= kept_positions(tokens, 0).sum()  # no context more than needed
    manifest = caches[RESID].manifest
    assert manifest["hook"] == "blocks.1.hook_resid_post"
    assert sum(s["kept"] for s in manifest["shards"]) >= 150 and manifest["shards"][0]["contexts"] == 4


def test_separator_policy_drops_exactly_the_documented_rows(pythia_random):
    """BOS (never stored), the first token after it, and every separator are dropped; nothing else."""
    spec = small_spec(n_tokens=400)
    cache = harvest(pythia_random, spec, [RESID], shard_contexts=4, progress=False)[RESID]
    rows, kept = cache.read_aligned()
    tokens = load_contexts(spec.source, pythia_random.tokenizer, n_contexts=cache.n_contexts, context_length=16,
                           bos_token_id=0, seed=3)
    body = tokens[:, 1:]  # the stored positions 1..15
    expected = (body != 0) & (torch.arange(1, 16) != 1)
    assert torch.equal(kept, expected.reshape(-1))
    assert (body == 0).any(), "the test text must hold a separator"
    assert int((~kept).sum()) == cache.n_contexts + int((body[:, 1:] == 0).sum())
    _, full = pythia_random.run_with_cache(tokens)
    torch.testing.assert_close(rows, full[RESID.hook_name][:, 1:].reshape(-1, 512), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cache.read_all(), rows[kept][:400], rtol=0, atol=0)


def test_one_pass_over_several_sites_equals_separate_passes(pythia_random, monkeypatch, tmp_path):
    together = harvest(pythia_random, small_spec(), [RESID, MLP], shard_contexts=4, progress=False)
    for site in (RESID, MLP):
        monkeypatch.setenv("SAE_PAPER_CACHE", str(tmp_path / f"alone-{site}"))
        alone = harvest(pythia_random, small_spec(), [site], shard_contexts=4, progress=False)[site]
        assert torch.equal(alone.read_all(), together[site].read_all())


def test_a_smaller_request_reads_the_start_of_a_larger_cache(pythia_random, monkeypatch, tmp_path):
    """One cache per text: 150 rows are the first 150 of a 400-row harvest, and extending 150 to 400 gives
    what a 400-row harvest gives; a second site added later is harvested alone."""
    big = harvest(pythia_random, small_spec(n_tokens=400), [RESID], shard_contexts=4, progress=False)[RESID]
    small = harvest(None, small_spec(n_tokens=150), [RESID], progress=False)[RESID]
    assert small.folder == big.folder and small.n_rows == 150
    assert torch.equal(small.read_all(), big.read_all()[:150])
    assert list(small.batches(64, seed=0, epoch=0))  # a view can be trained on

    monkeypatch.setenv("SAE_PAPER_CACHE", str(tmp_path / "grown"))
    harvest(pythia_random, small_spec(n_tokens=150), [RESID, MLP], shard_contexts=4, progress=False)
    grown = harvest(pythia_random, small_spec(n_tokens=400), [RESID], progress=False)[RESID]
    assert torch.equal(grown.read_all(), big.read_all())
    mlp = harvest(pythia_random, small_spec(n_tokens=400), [MLP], progress=False)[MLP]
    assert mlp.n_rows == 400


def test_harvest_all_merges_requests_for_one_text(pythia_random):
    lines = harvest_all([(small_spec(n_tokens=150), RESID), (small_spec(n_tokens=300), MLP)], lambda: pythia_random,
                        batch_size=4)
    assert len(lines) == 1 and "mlp_post.0 300 rows, resid_post.1 150 rows" in lines[0]  # one pass, each site's own need
    assert kept_rows(small_spec().folder() / str(RESID)) >= 150 and kept_rows(small_spec().folder() / str(MLP)) >= 300
    assert harvest_all([(small_spec(n_tokens=150), RESID), (small_spec(n_tokens=300), MLP)], lambda: None) == []  # cached


def test_interrupted_harvest_resumes_to_the_same_cache(pythia_random, monkeypatch, tmp_path):
    spec = small_spec()
    real_append = activations_module._append_shard
    calls = {"n": 0}

    def append_then_die(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the second shard of the first site: a crash mid-harvest
            raise KeyboardInterrupt
        return real_append(*args, **kwargs)

    monkeypatch.setattr(activations_module, "_append_shard", append_then_die)
    with pytest.raises(KeyboardInterrupt):
        harvest(pythia_random, spec, [RESID, MLP], batch_size=4, shard_contexts=4, progress=False)
    monkeypatch.setattr(activations_module, "_append_shard", real_append)
    resumed = harvest(pythia_random, spec, [RESID, MLP], batch_size=4, shard_contexts=4, progress=False)

    monkeypatch.setenv("SAE_PAPER_CACHE", str(tmp_path / "fresh"))
    fresh = harvest(pythia_random, spec, [RESID, MLP], batch_size=4, shard_contexts=4, progress=False)
    for site in (RESID, MLP):
        assert torch.equal(resumed[site].read_all(), fresh[site].read_all())


def test_complete_cache_is_reused_without_a_model(pythia_random):
    spec = small_spec()
    harvest(pythia_random, spec, [RESID], shard_contexts=4, progress=False)
    again = harvest(None, spec, [RESID], progress=False)
    assert again[RESID].n_rows == 150


def test_corrupted_shard_is_detected_and_kept(pythia_random):
    spec = small_spec()
    cache = harvest(pythia_random, spec, [RESID], shard_contexts=4, progress=False)[RESID]
    shard = cache.folder / "shard_00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(SaePaperError, match="shard_00001.*corrupt"):
        ActivationCache(cache.folder)
    with pytest.raises(SaePaperError, match="shard_00001.safetensors is corrupt \\(checksum mismatch\\)"):
        harvest(pythia_random, spec, [RESID], progress=False)  # the next harvest meets it too
    assert shard.read_bytes() == bytes(data)  # nothing deleted or rewritten behind the user's back


def test_mismatched_manifest_is_refused(pythia_random):
    spec = small_spec()
    cache = harvest(pythia_random, spec, [RESID], shard_contexts=4, progress=False)[RESID]
    manifest = json.loads((cache.folder / "manifest.json").read_text())
    manifest["d"] = 999
    (cache.folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SaePaperError, match="different settings \\(d\\)"):
        harvest(pythia_random, spec, [RESID], progress=False)


@pytest.mark.parametrize("source", [
    lambda rows, tmp: InMemoryActivations(rows),
    "disk",
])
def test_batches_visit_every_row_once_in_a_seeded_order(pythia_random, source):
    if source == "disk":
        store = harvest(pythia_random, small_spec(n_tokens=300), [RESID], shard_contexts=4, progress=False)[RESID]
        rows = store.read_all()
    else:
        rows = torch.randn(300, 8)
        store = source(rows, None)
    epoch0 = list(store.batches(64, seed=1, epoch=0))
    assert [len(b) for b in epoch0][:-1] == [64] * (len(epoch0) - 1)
    assert torch.equal(torch.cat(epoch0).sort(dim=0).values, rows.sort(dim=0).values)
    assert all(torch.equal(a, b) for a, b in zip(epoch0, store.batches(64, seed=1, epoch=0)))
    assert not torch.equal(epoch0[0], next(store.batches(64, seed=1, epoch=1)))


def test_in_memory_activations_refuse_wrong_shapes():
    with pytest.raises(SaePaperError, match="n_rows, d_in"):
        InMemoryActivations(torch.zeros(2, 3, 4))
