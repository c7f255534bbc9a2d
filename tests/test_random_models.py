"""The random-model controls of issue 30 (Heap et al. 2025): SmolLM2's architecture with seeded random
weights, and SmolLM2 with its trained embedding and re-initialised blocks.

Unit tier: names, seeds and cache keys (no model). Slow tier: the weights themselves, built from the
dequantised SmolLM2's config and trained weights (cached as safetensors after its first conversion)."""

from __future__ import annotations

import pytest
import torch

from sae_paper.core.config import RunConfig
from sae_paper.core.pipeline import Run
from sae_paper.data.models import model_spec, seeded_model_name
from sae_paper.errors import SaePaperError

CONTROLS = ("smollm2-135m-random", "smollm2-135m-reinit-blocks")


@pytest.mark.parametrize("name", CONTROLS)
def test_a_control_is_smollm2_shaped_and_seed_0_is_its_plain_name(name):
    spec = model_spec(name)
    assert (spec.family, spec.n_layers, spec.d_model, spec.seed) == ("smollm2", 30, 576, 0)
    assert seeded_model_name(name, 0) == name
    assert model_spec(seeded_model_name(name, 7)).seed == 7
    assert seeded_model_name(name, 7) == f"{name}-seed7"


@pytest.mark.parametrize("bad", ["smollm2-135m-random-seed0", "smollm2-135m-random-seed01", "smollm2-135m-seed1",
                                 "pythia-70m-deduped-seed2", "smollm2-135m-random-seed-1"])
def test_one_seed_has_one_name_and_trained_models_take_no_seed(bad):
    with pytest.raises(SaePaperError, match="unknown model"):
        model_spec(bad)


def test_seeded_model_name_rejects_a_trained_model_and_a_bad_seed():
    with pytest.raises(SaePaperError, match="takes no seed"):
        seeded_model_name("smollm2-135m", 1)
    with pytest.raises(SaePaperError, match="takes no seed"):
        seeded_model_name("smollm2-135m-random-seed2", 1)
    with pytest.raises(SaePaperError, match="non-negative integer"):
        seeded_model_name("smollm2-135m-random", -1)


def test_the_random_pythia_takes_seeds_too_and_seed_0_is_the_old_model():
    assert model_spec("pythia-70m-deduped-random").seed == 0
    assert model_spec("pythia-70m-deduped-random-seed3").seed == 3


@pytest.mark.parametrize("name", CONTROLS)
def test_two_seeds_never_share_a_cache_entry(name):
    runs = [Run(RunConfig(model=seeded_model_name(name, seed), layer=3, n_tokens=1000, eval_tokens=100), progress=False)
            for seed in (0, 1, 2)]
    for split in ("train", "eval"):
        assert len({run.harvest_spec(split).folder() for run in runs}) == 3
    assert len({run.sae_dir for run in runs}) == 3
    trained = Run(RunConfig(model="smollm2-135m", layer=3, n_tokens=1000, eval_tokens=100), progress=False)
    assert trained.harvest_spec("train").folder() not in {run.harvest_spec("train").folder() for run in runs}


# --- the weights (slow: they read the dequantised SmolLM2) ---


def _hf(name: str):
    from sae_paper.data.models import _LOADERS

    spec = model_spec(name)
    return _LOADERS[spec.family, spec.weights](spec)[0]


def _block_weights(model, layer: int) -> dict[str, torch.Tensor]:
    """A block's matrices (its RMSNorms are ones in every initialisation, so they say nothing about the seed)."""
    return {k: v for k, v in model.model.layers[layer].state_dict().items() if "norm" not in k}


@pytest.fixture(scope="module")
def built():
    return {name: _hf(name) for name in
            ("smollm2-135m", "smollm2-135m-random", "smollm2-135m-random-seed1", "smollm2-135m-reinit-blocks",
             "smollm2-135m-reinit-blocks-seed1")}


@pytest.mark.slow
@pytest.mark.parametrize("name", CONTROLS)
def test_the_same_seed_builds_the_same_weights_bitwise(built, name):
    again = _hf(name).state_dict()
    first = built[name].state_dict()
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)


@pytest.mark.slow
@pytest.mark.parametrize("name", CONTROLS)
def test_two_seeds_build_different_weights(built, name):
    zero, one = built[name], built[f"{name}-seed1"]
    for layer in range(30):
        a, b = _block_weights(zero, layer), _block_weights(one, layer)
        assert all(not torch.equal(a[k], b[k]) for k in a), f"block {layer}"
    if name == "smollm2-135m-random":
        assert not torch.equal(zero.model.embed_tokens.weight, one.model.embed_tokens.weight)


@pytest.mark.slow
def test_the_random_model_uses_the_architectures_own_initialisation(built):
    model = built["smollm2-135m-random"]
    std = model.config.initializer_range  # 0.02: transformers' normal init of linear and embedding weights
    assert abs(float(model.model.embed_tokens.weight.detach().std()) - std) < 1e-4
    assert abs(float(model.model.layers[5].mlp.down_proj.weight.detach().std()) - std) < 2e-4
    assert torch.equal(model.model.layers[5].input_layernorm.weight, torch.ones(576))
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # still tied


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_reinit_blocks_keeps_the_trained_embedding_and_changes_every_block(built, seed):
    trained = built["smollm2-135m"]
    control = built[seeded_model_name("smollm2-135m-reinit-blocks", seed)]
    assert torch.equal(control.model.embed_tokens.weight, trained.model.embed_tokens.weight)
    assert torch.equal(control.lm_head.weight, trained.lm_head.weight)  # tied: the unembedding is the embedding
    assert torch.equal(control.model.norm.weight, trained.model.norm.weight)
    random_model = built[seeded_model_name("smollm2-135m-random", seed)]
    for layer in range(30):
        new, old = control.model.layers[layer].state_dict(), trained.model.layers[layer].state_dict()
        assert all(not torch.equal(new[k], old[k]) for k in new), f"block {layer} kept a trained tensor"
        same = random_model.model.layers[layer].state_dict()
        assert all(torch.equal(new[k], same[k]) for k in new)  # the random model's blocks at the same seed


@pytest.mark.slow
def test_a_control_loads_as_a_hooked_model_without_moving_the_callers_rng():
    from sae_paper.data.models import load_model

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    model = load_model("smollm2-135m-random-seed1", device="cpu")
    assert torch.equal(torch.rand(3), expected)
    seen = {}

    def grab(activation, hook):
        seen["shape"] = tuple(activation.shape)
        return activation

    model.run_with_hooks(torch.tensor([[0, 100, 200, 300]]), stop_at_layer=4, fwd_hooks=[("blocks.3.hook_resid_post", grab)])
    assert seen["shape"] == (1, 4, 576)
