"""Models, sites and text contexts (integration tier: the random Pythia, real shared data)."""

from __future__ import annotations

import pytest
import torch

from sae_paper.data.models import MODELS, Site, load_model, model_spec
from sae_paper.data.text import SOURCES, iter_documents, load_contexts
from sae_paper.errors import SaePaperError


def test_unknown_model_names_the_known_ones():
    with pytest.raises(SaePaperError, match="unknown model 'gpt2'.*smollm2-135m"):
        load_model("gpt2")


def test_pythia_hub_model_offline_says_what_to_use_instead(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SaePaperError, match="pythia-70m-deduped-random"):
        load_model("pythia-70m-deduped")


def test_site_checks_layer_range():
    spec = model_spec("pythia-70m-deduped-random")
    with pytest.raises(SaePaperError, match="layers 0..5"):
        Site("resid_post", 6).check(spec)
    with pytest.raises(SaePaperError, match="unknown site"):
        Site("attn_out", 1)


@pytest.mark.parametrize("site,width", [(Site("resid_post", 2), 512), (Site("mlp_post", 2), 2048)])
def test_pythia_random_hooks_have_the_right_shapes(pythia_random, site, width):
    seen = {}

    def grab(activation, hook):
        seen["shape"] = tuple(activation.shape)
        return activation

    tokens = torch.randint(1, 50_000, (3, 7))
    logits = pythia_random.run_with_hooks(tokens, fwd_hooks=[(site.hook_name, grab)])
    assert seen["shape"] == (3, 7, width)
    assert tuple(logits.shape) == (3, 7, 50_304)
    assert site.width(MODELS["pythia-70m-deduped-random"]) == width


def test_pythia_random_is_the_same_model_every_time(pythia_random):
    again = load_model("pythia-70m-deduped-random", device="cpu")
    tokens = torch.randint(1, 50_000, (1, 5))
    torch.testing.assert_close(pythia_random(tokens), again(tokens), rtol=0, atol=0)


def test_contexts_start_with_bos_and_are_deterministic(pythia_random):
    tokenizer = pythia_random.tokenizer
    first = load_contexts("webtext", tokenizer, n_contexts=20, context_length=32, bos_token_id=0, seed=1)
    again = load_contexts("webtext", tokenizer, n_contexts=20, context_length=32, bos_token_id=0, seed=1)
    other = load_contexts("webtext", tokenizer, n_contexts=20, context_length=32, bos_token_id=0, seed=2)
    assert first.shape == (20, 32) and first.dtype == torch.long
    assert (first[:, 0] == 0).all()
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_contexts_pack_the_tokenised_text_in_order(pythia_random):
    tokenizer = pythia_random.tokenizer
    documents = [doc for _, doc in zip(range(3), iter_documents("pile-openings", seed=0))]
    expected = []
    for doc in documents:
        expected += tokenizer(doc, add_special_tokens=False)["input_ids"][:512] + [0]
    contexts = load_contexts("pile-openings", tokenizer, n_contexts=2, context_length=17, bos_token_id=0, seed=0)
    assert contexts[:, 1:].flatten().tolist() == expected[:32]


def test_train_and_eval_splits_share_no_document():
    train = set(doc for _, doc in zip(range(400), iter_documents("webtext", split="train")))
    held_out = set(doc for _, doc in zip(range(100), iter_documents("webtext", split="eval")))
    assert len(held_out) == 100 and not train & held_out


def test_stdlib_code_source_is_python():
    document = next(iter_documents("python-stdlib-code"))
    compile(document, "<stdlib>", "exec")  # it is real Python source
    assert "python-stdlib-code" in SOURCES


def test_unknown_source_and_missing_shared(monkeypatch, tmp_path):
    with pytest.raises(SaePaperError, match="unknown text source 'pile'"):
        next(iter_documents("pile"))
    monkeypatch.setenv("SAE_PAPER_SHARED", str(tmp_path / "nowhere"))
    with pytest.raises(SaePaperError, match="shared folder not found"):
        next(iter_documents("webtext"))


@pytest.mark.slow
def test_real_smollm2_harvest_of_a_few_sentences(smollm2):
    """The offline default model loads and gives sensible residual activations and loss."""
    text = "The cat sat on the mat. It was a sunny day, and the children played outside."
    tokens = torch.tensor([[0] + smollm2.tokenizer(text, add_special_tokens=False)["input_ids"]])
    seen = {}

    def grab(activation, hook):
        seen["resid"] = activation
        return activation

    smollm2.run_with_hooks(tokens, stop_at_layer=4, fwd_hooks=[(Site("resid_post", 3).hook_name, grab)])
    assert seen["resid"].shape == (1, tokens.shape[1], 576)
    assert torch.isfinite(seen["resid"]).all()
    loss = smollm2(tokens, return_type="loss").item()
    assert 1.0 < loss < 5.0  # a pretrained model on plain English (random weights give ~10.8)
