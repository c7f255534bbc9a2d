"""SAELens export and import (sae_paper.interop.saelens), and the CE under SAEBench's convention.

Unit tests use hand-set SAEs whose SAELens tensors are known exactly; the slow tests
(``slow``) load our exports with SAELens itself and run SAEBench 0.6.0's core eval, in a
side virtualenv (``tests/side_venv.py``), because SAELens needs transformer-lens < 4.
"""

from __future__ import annotations

import json
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from sae_paper.book.exports import book_exports, export_book_saes
from sae_paper.cli import main
from sae_paper.core.config import RunConfig
from sae_paper.core.metrics import reconstruction_stats, splice_metrics_all_positions
from sae_paper.core.sae import ImportedUntiedSAE, make_sae
from sae_paper.data.models import Site
from sae_paper.errors import SaePaperError
from sae_paper.interop.saelens import (
    CONFIG_FILE,
    SAELENS_VERSION,
    WEIGHTS_FILE,
    export_sae,
    ignored_token_ids,
    import_saelens,
    saebench_splice,
    write_saelens,
)

META = {"model": "pythia-70m-deduped-random", "site": "resid_post", "layer": 2, "source": "enwiki2015",
        "config": {"context_length": 32, "seed": 7}}
M = [[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]]  # rows of norm 5, 2, 1: M̂ = [[.6, .8], [0, 1], [1, 0]]
M_HAT = [[0.6, 0.8], [0.0, 1.0], [1.0, 0.0]]
B = [0.1, -0.2, 0.3]
M_E = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]


def hand_set(kind: str, metadata=META):
    sae = make_sae(kind, 2, 3, alpha=0.25, metadata=metadata)
    with torch.no_grad():
        sae.b.copy_(torch.tensor(B))
        if kind == "tied":
            sae.M.copy_(torch.tensor(M))
        else:
            sae.M_e.copy_(torch.tensor(M_E))
            sae.M_d.copy_(torch.tensor(M))
    return sae


def random_sae(kind: str, d_in: int = 24, d_sae: int = 56):
    sae = make_sae(kind, d_in, d_sae, alpha=1e-3, seed=3, metadata=META)
    with torch.no_grad():
        sae.b.normal_(0, 0.3)
        for parameter in (sae.M,) if kind == "tied" else (sae.M_e, sae.M_d):
            parameter.mul_(4.0)  # far from unit norm, as after training
    return sae


def saelens_reference(tensors, x):
    """SAELens's standard SAE, written out: ReLU((x − b_dec·apply) W_enc + b_enc), then c W_dec + b_dec."""
    codes = torch.relu(x @ tensors["W_enc"] + tensors["b_enc"])
    return codes, codes @ tensors["W_dec"] + tensors["b_dec"]


# --------------------------------------------------------------------------------------
# Export: the known answer, the config, the formula
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "w_enc"), [("tied", M_HAT), ("untied", M_E)])
def test_export_writes_the_known_saelens_tensors(tmp_path, kind, w_enc):
    write_saelens(hand_set(kind), tmp_path / "out")
    tensors = load_file(str(tmp_path / "out" / WEIGHTS_FILE))
    assert list(tensors) == ["W_dec", "W_enc", "b_dec", "b_enc"]
    expected = {"W_enc": torch.tensor(w_enc).t(), "W_dec": torch.tensor(M_HAT), "b_enc": torch.tensor(B),
                "b_dec": torch.zeros(2)}
    for name, value in expected.items():
        torch.testing.assert_close(tensors[name], value, rtol=0, atol=0, msg=name)
        assert tensors[name].dtype == torch.float32


def test_export_config_has_what_saelens_needs_and_our_provenance(tmp_path):
    write_saelens(hand_set("tied"), tmp_path / "out", provenance={"alpha": 0.25, "seed": 7})
    config = json.loads((tmp_path / "out" / CONFIG_FILE).read_text())
    assert {k: config[k] for k in ("architecture", "d_in", "d_sae", "dtype", "apply_b_dec_to_input",
                                   "normalize_activations", "reshape_activations")} == {
        "architecture": "standard", "d_in": 2, "d_sae": 3, "dtype": "float32", "apply_b_dec_to_input": False,
        "normalize_activations": "none", "reshape_activations": "none"}
    meta = config["metadata"]
    assert meta["sae_lens_version"] == SAELENS_VERSION
    assert meta["model_name"] == "EleutherAI/pythia-70m-deduped"
    assert meta["hook_name"] == "blocks.2.hook_resid_post"
    assert (meta["context_size"], meta["prepend_bos"]) == (32, True)
    assert meta["sae_paper"] == {"alpha": 0.25, "seed": 7}
    assert "hook_name" not in config and "model_name" not in config  # SAELens 6 reads them from metadata only


def test_mlp_site_and_smollm2_get_their_hub_and_hook_names(tmp_path):
    sae = make_sae("untied", 4, 8, metadata={**META, "model": "smollm2-135m", "site": "mlp_post", "layer": 0})
    write_saelens(sae, tmp_path / "out")
    meta = json.loads((tmp_path / "out" / CONFIG_FILE).read_text())["metadata"]
    assert (meta["model_name"], meta["hook_name"]) == ("HuggingFaceTB/SmolLM2-135M-Instruct", "blocks.0.mlp.hook_post")


@pytest.mark.parametrize("kind", ["tied", "untied"])
def test_saelens_formula_on_the_export_gives_our_codes_and_reconstructions(tmp_path, kind):
    sae = random_sae(kind)
    write_saelens(sae, tmp_path / "out")
    x = torch.randn(64, 24) * 2
    codes, recon = saelens_reference(load_file(str(tmp_path / "out" / WEIGHTS_FILE)), x)
    with torch.no_grad():
        torch.testing.assert_close(codes, sae.encode(x), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(recon, sae.decode(sae.encode(x)), rtol=1e-6, atol=1e-6)
    assert (codes > 0).any() and (codes == 0).any()


# --------------------------------------------------------------------------------------
# Import and the round trip
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tied", "untied"])
def test_export_import_export_is_byte_identical(tmp_path, kind):
    write_saelens(random_sae(kind), tmp_path / "a", provenance={"alpha": 1e-3, "model": "pythia-70m-deduped-random"})
    imported = import_saelens(tmp_path / "a")
    assert isinstance(imported, ImportedUntiedSAE) and imported.alpha == 1e-3
    assert (imported.metadata["model"], imported.metadata["site"], imported.metadata["layer"]) == (
        "pythia-70m-deduped-random", "resid_post", 2)
    write_saelens(imported, tmp_path / "b")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_imported_sae_computes_what_saelens_computes_and_saves_like_ours(tmp_path):
    write_saelens(random_sae("untied"), tmp_path / "a", provenance={})  # as if made by another library
    imported = import_saelens(tmp_path / "a")
    # without our provenance, the model is the one named on the hub (random weights are not a hub model)
    assert (imported.metadata["model"], imported.metadata["layer"], imported.alpha) == ("pythia-70m-deduped", 2, 0.0)
    x = torch.randn(32, 24)
    codes, recon = saelens_reference(load_file(str(tmp_path / "a" / WEIGHTS_FILE)), x)
    with torch.no_grad():
        torch.testing.assert_close(imported.encode(x), codes, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(imported.decode(codes), recon, rtol=0, atol=0)
    stats = reconstruction_stats(imported, [x])  # our metrics run on it
    assert 0 < stats.mean_l0 < 56 and stats.fvu > 0
    from sae_paper.core.sae import load_sae

    reloaded = load_sae(imported.save(tmp_path / "ours"))
    assert type(reloaded) is ImportedUntiedSAE
    write_saelens(reloaded, tmp_path / "c")
    assert (tmp_path / "a" / WEIGHTS_FILE).read_bytes() == (tmp_path / "c" / WEIGHTS_FILE).read_bytes()


def _saelens_folder(tmp_path, *, config_changes=None, tensor_changes=None, drop=None):
    folder = tmp_path / "foreign"
    write_saelens(random_sae("untied"), folder)
    config = json.loads((folder / CONFIG_FILE).read_text())
    config.update(config_changes or {})
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    tensors = load_file(str(folder / WEIGHTS_FILE))
    tensors.update(tensor_changes or {})
    if drop:
        del tensors[drop]
    save_file(tensors, str(folder / WEIGHTS_FILE))
    return folder


@pytest.mark.parametrize(("changes", "message"), [
    ({"config_changes": {"architecture": "jumprelu"}}, "architecture='jumprelu'; only architecture='standard'"),
    ({"config_changes": {"normalize_activations": "expected_average_only_in"}}, "normalize_activations="),
    ({"config_changes": {"reshape_activations": "hook_z"}}, "reshape_activations='hook_z'"),
    ({"tensor_changes": {"b_dec": torch.full((24,), 0.5)}}, "non-zero b_dec"),
    ({"tensor_changes": {"W_dec": torch.ones(56, 24)}}, "not unit-norm"),
    ({"tensor_changes": {"threshold": torch.zeros(56)}}, "a standard SAE has exactly W_enc, W_dec, b_enc, b_dec"),
    ({"drop": "b_dec"}, "a standard SAE has exactly"),
    ({"tensor_changes": {"b_enc": torch.zeros(55)}}, r"b_enc has shape \(55,\), expected \(56,\)"),
])
def test_import_refuses_what_our_saes_cannot_represent(tmp_path, changes, message):
    folder = _saelens_folder(tmp_path, **changes)
    with pytest.raises(SaePaperError, match=message) as caught:
        import_saelens(folder)
    assert "\n" not in str(caught.value)


def test_import_refuses_a_folder_without_an_saelens_sae(tmp_path):
    with pytest.raises(SaePaperError, match="no SAELens SAE in .*: missing cfg.json"):
        import_saelens(tmp_path)


def test_export_needs_the_model_and_site(tmp_path):
    with pytest.raises(SaePaperError, match="metadata lacks model, site, layer, config"):
        write_saelens(make_sae("tied", 2, 3), tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------
# The command line: a trained SAE, and each bad input
# --------------------------------------------------------------------------------------

SMALL = RunConfig(model="pythia-70m-deduped-random", layer=2, source="enwiki2015", n_tokens=1240, context_length=32,
                  harvest_batch_size=16, eval_tokens=248, epochs=2, batch_size=128)


def test_cli_exports_a_trained_sae_with_its_provenance(tmp_path, capsys):
    from sae_paper.core.pipeline import Run

    run = Run(SMALL, progress=False)
    run.sae()
    evaluation = run.evaluate(splice=False)
    assert main(["export", str(run.sae_dir), str(tmp_path / "out")]) == 0
    assert "cfg.json" in capsys.readouterr().out
    meta = json.loads((tmp_path / "out" / CONFIG_FILE).read_text())["metadata"]
    ours = meta["sae_paper"]
    assert (ours["alpha"], ours["ratio"], ours["seed"], ours["kind"]) == (run.alpha, 2.0, 0, "tied")
    assert ours["activations_seen"] == 2 * ours["train_activations"] > 0
    assert ours["held_out"]["fvu"] == pytest.approx(evaluation.fvu)
    assert ours["held_out"]["mean_l0"] == pytest.approx(evaluation.mean_l0)
    assert ours["model_weights"] == "random" and (ours["commit"] == "unknown" or len(ours["commit"]) == 40)
    assert meta["context_size"] == 32


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_cli_refuses_a_folder_that_is_not_a_saved_sae(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
    assert "no saved SAE in" in _one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_non_empty_out_dir_without_force_and_overwrites_with_it(tmp_path, capsys):
    hand_set("tied").save(tmp_path / "sae")
    out = tmp_path / "out"
    out.mkdir()
    (out / CONFIG_FILE).write_text("precious\n")
    assert main(["export", str(tmp_path / "sae"), str(out)]) == 2
    assert "is not empty; pass --force" in _one_error_line(capsys)
    assert (out / CONFIG_FILE).read_text() == "precious\n" and not (out / WEIGHTS_FILE).exists()
    assert main(["export", str(tmp_path / "sae"), str(out), "--force"]) == 0
    assert json.loads((out / CONFIG_FILE).read_text())["architecture"] == "standard"


def test_cli_refuses_an_unknown_format(tmp_path, capsys):
    hand_set("tied").save(tmp_path / "sae")
    assert main(["export", str(tmp_path / "sae"), str(tmp_path / "out"), "--format", "dictionary_learning"]) == 2
    assert "unknown export format 'dictionary_learning' (known: saelens)" in _one_error_line(capsys)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------
# The book's exports
# --------------------------------------------------------------------------------------


def test_book_exports_name_notebook_01s_main_sae_and_every_ioi_dictionary(tmp_path):
    from sae_paper.book.profiles import load_profile, resolve_parameters
    from sae_paper.book.runner import BookLayout
    from sae_paper.chapters.ioi import IoiStudy
    from sae_paper.chapters.training import TrainingStudy
    from sae_paper.core.pipeline import Run

    layout = BookLayout.default()
    profile = load_profile(layout.profiles_dir / "smoke.yaml")
    parameters = resolve_parameters(profile, ["01_training", "03_ioi", "04_case_studies"])
    main_sae = Run(TrainingStudy.from_params(parameters["01_training"]).main_config()).sae_dir
    assert list(book_exports("01_training", parameters["01_training"]).values()) == [main_sae]
    study = IoiStudy.from_params(parameters["03_ioi"])
    expected = [Run(study.config(layer, alpha)).sae_dir for layer in study.layers for alpha in study.layer_alphas(layer)]
    assert list(book_exports("03_ioi", parameters["03_ioi"]).values()) == expected and len(expected) == 3
    assert book_exports("04_case_studies", parameters["04_case_studies"]) == {}
    stale = tmp_path / "saelens" / "03_ioi" / "an-export-of-other-parameters"
    stale.mkdir(parents=True)
    lines = export_book_saes(tmp_path, parameters)  # nothing trained in this scratch cache
    assert len(lines) == 4 and all("skipped: no trained SAE" in line for line in lines)
    assert not stale.exists()


# --------------------------------------------------------------------------------------
# CE under SAEBench's convention
# --------------------------------------------------------------------------------------


def test_all_positions_splice_counts_predictions_not_made_from_ignored_tokens(pythia_random):
    tokens = torch.tensor([[0, 510, 3158, 0, 8516, 30013], [0, 689, 253, 22658, 4370, 15]])
    site = Site("resid_post", 1)
    identity = splice_metrics_all_positions(pythia_random, site, lambda x: x, tokens, {0, None})
    assert identity.n_tokens == 5 + 5 - 3  # predictions made from the two BOS and the separator are left out
    assert identity.ce_spliced == pytest.approx(identity.ce_clean, rel=1e-6)
    everything = splice_metrics_all_positions(pythia_random, site, lambda x: x, tokens, [])
    assert everything.n_tokens == 10
    losses = pythia_random(tokens, return_type="loss", loss_per_token=True)
    keep = torch.tensor([[False, True, True, False, True], [False, True, True, True, True]])
    assert identity.ce_clean == pytest.approx(losses[keep].mean().item(), rel=1e-6)
    zeroed = pythia_random.run_with_hooks(tokens, return_type="loss", loss_per_token=True,
                                          fwd_hooks=[(site.hook_name, lambda a, hook: torch.zeros_like(a))])
    assert identity.ce_zero == pytest.approx(zeroed[keep].mean().item(), rel=1e-6)


# --------------------------------------------------------------------------------------
# Checked by SAELens and SAEBench themselves (slow: a side virtualenv)
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_saelens_loads_our_exports_and_computes_our_codes(tmp_path):
    from side_venv import run_side

    x = torch.randn(256, 24) * 3
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    saes = {kind: random_sae(kind) for kind in ("tied", "untied")}
    for kind, sae in saes.items():
        write_saelens(sae, tmp_path / kind, provenance={"alpha": sae.alpha})
    job = {"saes": [{"dir": str(tmp_path / kind), "inputs": str(tmp_path / "x.safetensors")} for kind in saes],
           "out": str(tmp_path / "out.safetensors")}
    (tmp_path / "job.json").write_text(json.dumps(job))
    started = time.perf_counter()
    report = run_side("saelens_encode.py", str(tmp_path / "job.json"))
    print(f"SAELens {report['sae_lens']} check: {time.perf_counter() - started:.0f} s (side venv included)")
    assert report["sae_lens"] == SAELENS_VERSION
    theirs = load_file(job["out"])
    for i, (kind, sae) in enumerate(saes.items()):
        loaded = report["loaded"][i]
        assert (loaded["class"], loaded["d_in"], loaded["d_sae"], loaded["hook_name"], loaded["alpha"]) == (
            "StandardSAE", 24, 56, "blocks.2.hook_resid_post", 1e-3)
        with torch.no_grad():
            codes = sae.encode(x)
            recon = sae.decode(codes)
        code_diff = (theirs[f"{i}.codes"] - codes).abs().max().item()
        recon_diff = (theirs[f"{i}.recon"] - recon).abs().max().item()
        print(f"{kind}: max |codes − SAELens's| = {code_diff:.3g}, max |x̂ − SAELens's| = {recon_diff:.3g}")
        torch.testing.assert_close(theirs[f"{i}.codes"], codes, rtol=1e-6, atol=1e-5)
        torch.testing.assert_close(theirs[f"{i}.recon"], recon, rtol=1e-6, atol=1e-5)
        assert (codes > 0).float().mean() < 0.9 and (codes > 0).any()


@pytest.mark.slow
def test_saebench_core_eval_equals_our_numbers_under_its_convention(tmp_path):
    from side_venv import run_side

    from sae_paper.core.pipeline import Run
    from sae_paper.data.models import _load_random_pythia, model_spec

    run = Run(SMALL, progress=False)
    sae = run.sae()
    ours = saebench_splice(run)
    contexts = run.eval_contexts()
    ignored = ignored_token_ids(run)
    with torch.no_grad():  # L0 over the positions SAEBench counts: all whose token is not ignored
        _, cache = run.model.run_with_cache(contexts, names_filter=[run.site.hook_name])
    rows = cache[run.site.hook_name][~torch.isin(contexts, torch.tensor(sorted(ignored)))]
    l0 = reconstruction_stats(sae, [rows]).mean_l0

    export_sae(run.sae_dir, tmp_path / "export")
    spec = model_spec(SMALL.model)
    hf_model, tokenizer = _load_random_pythia(spec)  # the same random weights, for TransformerLens 3 there
    hf_model.save_pretrained(tmp_path / "hub" / spec.hub_id)
    tokenizer.save_pretrained(tmp_path / "hub" / spec.hub_id)
    save_file({"tokens": contexts.contiguous()}, str(tmp_path / "tokens.safetensors"))
    started = time.perf_counter()
    batch = max(b for b in range(1, 9) if len(contexts) % b == 0)  # SAEBench reads whole batches only
    report = run_side("saebench_core.py", str(tmp_path / "export"), str(tmp_path / "tokens.safetensors"), str(batch),
                      cwd=tmp_path / "hub")
    theirs = report["metrics"]
    ce = theirs["model_performance_preservation"]
    print(f"SAEBench {report['sae_bench']} core eval: {time.perf_counter() - started:.0f} s; ignored {report['ignore_tokens']}")
    print(f"ours:  CE clean {ours.ce_clean:.5f} spliced {ours.ce_spliced:.5f} zero {ours.ce_zero:.5f} "
          f"recovered {ours.ce_recovered:.5f} L0 {l0:.3f} ({ours.n_tokens} predictions)")
    print(f"SAEBench: CE clean {ce['ce_loss_without_sae']:.5f} spliced {ce['ce_loss_with_sae']:.5f} "
          f"zero {ce['ce_loss_with_ablation']:.5f} ce_loss_score {ce['ce_loss_score']:.5f} "
          f"L0 {theirs['sparsity']['l0']:.3f}")
    assert report["sae_bench"] == "0.6.0" and set(report["ignore_tokens"]) <= ignored
    assert ce["ce_loss_without_sae"] == pytest.approx(ours.ce_clean, rel=0.01)
    assert ce["ce_loss_with_sae"] == pytest.approx(ours.ce_spliced, rel=0.01)
    assert ce["ce_loss_with_ablation"] == pytest.approx(ours.ce_zero, rel=0.01)
    assert ce["ce_loss_score"] == pytest.approx(ours.ce_recovered, rel=0.01)
    assert theirs["sparsity"]["l0"] == pytest.approx(l0, rel=0.01)
