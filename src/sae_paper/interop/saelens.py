"""Our SAEs in SAELens's format and back, and our CE under SAEBench's convention (issue 13).

Researchers hold SAEs in SAELens's format: SAEBench and sae-dashboard load them from it
and Neuronpedia publishes them in it. ``SAE.load_from_disk(folder)`` (SAELens 6.x) reads

- ``sae_weights.safetensors``: exactly ``W_enc`` [d_in, d_sae], ``W_dec`` [d_sae, d_in],
  ``b_enc`` [d_sae] and ``b_dec`` [d_in] (its loader fails on a missing or extra tensor);
- ``cfg.json``: ``architecture: "standard"``, ``d_in``, ``d_sae``, ``dtype``,
  ``apply_b_dec_to_input``, ``normalize_activations: "none"`` and a ``metadata`` mapping
  with ``sae_lens_version``, ``model_name``, ``hook_name``, ``context_size`` and
  ``prepend_bos`` (with a version present, these two names are read only from there).

Its standard SAE computes ``c = ReLU((x − b_dec·apply_b_dec_to_input) W_enc + b_enc)`` and
``x̂ = c W_dec + b_dec``. Ours (Section 2, Appendix C.3) is exactly that with
``b_dec = 0``: a tied SAE exports as ``W_enc = M̂ᵀ``, ``W_dec = M̂``, ``b_enc = b``; an
untied one as ``W_enc = M_eᵀ``, ``W_dec = M̂_d``. The matrices written are the effective
weights, normalisation applied, so SAELens's codes and reconstructions are ours.

``metadata`` also carries the model's hub name, the hook in TransformerLens's spelling, the
context size, the BOS policy, and under ``metadata.sae_paper`` our provenance: α, R, seed,
activations seen, held-out FVU and L0, the run config and the commit that exported it.

:func:`import_saelens` reads a SAELens standard SAE back as an
:class:`~sae_paper.core.sae.ImportedUntiedSAE`, so our metrics and case-study tools run on it,
and refuses, in one line, what our SAEs cannot represent without changing its function
(a non-zero ``b_dec``, decoder rows that are not unit-norm, another architecture,
normalised or reshaped activations). Export → import → export is byte-identical.

:func:`saebench_splice` gives, beside our CE recovered, the value under SAELens's and
SAEBench's convention (:func:`sae_paper.core.metrics.splice_metrics_all_positions`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from sae_paper.core.sae import ImportedUntiedSAE, SparseAutoencoder, load_sae
from sae_paper.data.cache import atomic_write, git_state, library_version
from sae_paper.errors import SaePaperError

SAELENS_VERSION = "6.54.12"
"""The SAELens release whose loader the slow tests check our exports against."""
CONFIG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
FORMATS = ("saelens",)
TENSORS = ("W_enc", "W_dec", "b_enc", "b_dec")
UNIT_NORM_TOLERANCE = 1e-5
"""How far from 1 an imported decoder row's norm may be (float32 rounding, not a different SAE)."""
BOS_POLICY = ("every context starts with <|endoftext|> (token 0) as BOS; the SAE was trained and evaluated only on "
              "the positions sae_paper.data.text.kept_positions keeps: not 0 (BOS), not 1 (the first token), not a "
              "separator <|endoftext|> (attention sinks of outlying norm)")
EXPORTS_FOLDER = "saelens"
"""Where the book runner writes its exports, under the book's generated output."""
_HOOK = re.compile(r"^blocks\.(\d+)\.(hook_resid_post|mlp\.hook_post)$")


# --------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------


@torch.no_grad()
def saelens_tensors(sae: SparseAutoencoder) -> dict[str, Tensor]:
    """The four SAELens tensors of ``sae``: its effective weights, each its own contiguous copy."""
    encoder, bias, decoder = sae.weights()
    tensors = {"W_enc": encoder.t(), "W_dec": decoder, "b_enc": bias, "b_dec": torch.zeros_like(decoder[0])}
    # safetensors refuses views and shared storage: a tied SAE's W_enc and W_dec are the same M̂
    return {name: tensor.detach().cpu().contiguous().clone() for name, tensor in tensors.items()}


def saelens_config(sae: SparseAutoencoder, provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``cfg.json`` of ``sae``: SAELens's fields, our provenance under ``metadata.sae_paper``.

    An imported SAE keeps the configuration it came with (so a re-export is byte-identical);
    otherwise the model and site come from ``sae.metadata`` (``model``, ``site``, ``layer``,
    ``config.context_length``), as :func:`~sae_paper.core.train.train_sae` records them.
    """
    if "saelens" in sae.metadata:
        config = dict(sae.metadata["saelens"])
        if (config.get("d_in"), config.get("d_sae")) != (sae.d_in, sae.d_sae):
            raise SaePaperError(f"the SAELens config kept with this SAE is for d_in={config.get('d_in')}, "
                                f"d_sae={config.get('d_sae')}, not {sae.d_in}, {sae.d_sae}")
        return config
    from sae_paper.data.models import Site, model_spec

    missing = [key for key in ("model", "site", "layer", "config") if key not in sae.metadata]
    if missing:
        raise SaePaperError(f"cannot export to SAELens: the SAE's metadata lacks {', '.join(missing)} "
                            "(SAELens needs the model and hook; SAEs trained by sae-paper record them)")
    spec = model_spec(sae.metadata["model"])
    site = Site(sae.metadata["site"], sae.metadata["layer"])
    return {
        "architecture": "standard",
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": str(sae.b.dtype).removeprefix("torch."),
        "device": "cpu",
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": SAELENS_VERSION,
            "sae_lens_training_version": None,
            "model_name": spec.hub_id,
            "hook_name": site.hook_name,
            "hook_head_index": None,
            "context_size": sae.metadata["config"]["context_length"],
            "prepend_bos": True,
            "seqpos_slice": [2, None],  # the positions it was trained on (less separators, see BOS_POLICY)
            "dataset_path": None,
            "model_from_pretrained_kwargs": {},
            "neuronpedia_id": None,
            "sae_paper": dict(provenance or {}),
        },
    }


def write_saelens(sae: SparseAutoencoder, out_dir: str | Path, *, provenance: Mapping[str, Any] | None = None,
                  force: bool = False) -> Path:
    """Write ``sae`` into ``out_dir`` in SAELens's layout; return the folder.

    ``provenance`` (``metadata.sae_paper``) defaults to :func:`sae_provenance` of the SAE alone.

    Refuses (nothing written) a non-empty ``out_dir`` unless ``force``; each file is
    written to a temporary name and renamed, so a reader never sees half a file.
    """
    out_dir = Path(out_dir)
    config = saelens_config(sae, sae_provenance(sae) if provenance is None else provenance)  # fails before writing
    tensors = saelens_tensors(sae)
    _check_out_dir(out_dir, force)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(config, indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write(out_dir / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp)))
    atomic_write(out_dir / CONFIG_FILE, lambda tmp: tmp.write_text(text))
    return out_dir


def export_sae(sae_dir: str | Path, out_dir: str | Path, *, format: str = "saelens", force: bool = False) -> Path:
    """``sae-paper export``: the SAE saved in ``sae_dir`` (``sae.json`` + ``sae.safetensors``)
    written to ``out_dir`` in ``format``, with the provenance found beside it."""
    if format not in FORMATS:
        raise SaePaperError(f"unknown export format {format!r} (known: {', '.join(FORMATS)})")
    sae_dir = Path(sae_dir)
    if Path(out_dir).resolve() == sae_dir.resolve():
        raise SaePaperError(f"export into the SAE's own folder {sae_dir}: choose another OUT_DIR")
    sae = load_sae(sae_dir)
    return write_saelens(sae, out_dir, provenance=sae_provenance(sae, sae_dir), force=force)


def sae_provenance(sae: SparseAutoencoder, sae_dir: Path | None = None) -> dict[str, Any]:
    """What ``metadata.sae_paper`` records: how the SAE was made and how good it is held out.

    Reads ``summary.json`` (activations seen) and the held-out evaluation kept beside the
    SAE, if any (``evaluation-*.json`` of :class:`~sae_paper.core.pipeline.Run`, the largest
    held-out set). ``commit`` is the checkout
    that wrote the export (a trained SAE does not record the commit that trained it).
    ``model_weights`` says what the hub name in ``model_name`` stands for: ``hub`` (those
    weights), ``gguf`` (SmolLM2's 4-bit GGUF, dequantised), ``random`` (its architecture
    with seeded random weights) or ``reinit-blocks`` (SmolLM2's embedding, random blocks).
    """
    from sae_paper.data.models import model_spec
    from sae_paper.data.text import POLICY_VERSION

    meta = sae.metadata
    config = meta.get("config") or {}
    try:
        spec = model_spec(str(meta.get("model")))
    except SaePaperError:  # an SAE of a model this version does not know: its weights unstated
        spec = None
    record: dict[str, Any] = {
        "library": f"sae-paper {library_version()}",
        "kind": sae.kind,
        "model": meta.get("model"),
        "model_weights": spec.weights if spec else None,
        "site": f"{meta.get('site')}.{meta.get('layer')}",
        "source": meta.get("source"),
        "alpha": sae.alpha,
        "ratio": sae.d_sae / sae.d_in,
        "seed": config.get("seed"),
        "train_activations": None,
        "epochs": None,
        "activations_seen": None,
        "held_out": None,
        "bos_policy": BOS_POLICY,
        "policy_version": POLICY_VERSION,
        "config": config,
    }
    if sae_dir is not None:
        summary_path = sae_dir / "summary.json"
        if summary_path.is_file():
            summary = json.loads(summary_path.read_text())
            record.update(train_activations=summary["n_rows"], epochs=summary["epochs"],
                          activations_seen=summary["n_rows"] * summary["epochs"])
        record["held_out"] = _held_out(sae_dir)
    commit, dirty = git_state()
    record.update(commit=commit, dirty=dirty)
    return record


def _held_out(sae_dir: Path) -> dict[str, Any] | None:
    from sae_paper.core.metrics import SpliceMetrics
    from sae_paper.core.pipeline import EVALUATION_FILE
    from sae_paper.data.cache import version

    evaluations = sorted(sae_dir.glob(EVALUATION_FILE.format(version=version("evaluation"), eval_tokens="*")),
                         key=lambda path: json.loads(path.read_text())["eval_tokens"])
    if not evaluations:
        return None
    evaluation = json.loads(evaluations[-1].read_text())["evaluation"]
    held = {"file": evaluations[-1].name, **{key: evaluation[key] for key in ("fvu", "mean_l0", "alive", "n_activations")}}
    if evaluation.get("splice"):
        splice = SpliceMetrics(**{k: evaluation["splice"][k] for k in ("ce_clean", "ce_spliced", "ce_zero", "n_tokens")})
        held.update(asdict(splice), ce_recovered=splice.ce_recovered)
    return held


def _check_out_dir(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise SaePaperError(f"OUT_DIR {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise SaePaperError(f"OUT_DIR {out_dir} is not empty; pass --force to overwrite its "
                            f"{CONFIG_FILE} and {WEIGHTS_FILE}")


# --------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------


def import_saelens(directory: str | Path) -> ImportedUntiedSAE:
    """The SAELens standard SAE saved in ``directory`` as our untied SAE, or one error line.

    Our SAEs have no decoder bias and unit-norm dictionary rows, so only such SAEs are
    taken; anything else would change the codes the SAE computes. The SAELens config is
    kept in ``metadata["saelens"]`` (a re-export writes it back unchanged), and ``model``,
    ``site`` and ``layer`` are filled in when the hub and hook names are ones we know.
    """
    directory = Path(directory)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise SaePaperError(f"no SAELens SAE in {directory}: missing {name}")
    try:
        config = json.loads((directory / CONFIG_FILE).read_text())
        d_in, d_sae = int(config["d_in"]), int(config["d_sae"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise SaePaperError(f"unreadable SAELens config {directory / CONFIG_FILE}: {error!r}") from None
    where = f"SAELens SAE in {directory}"
    for key, wanted in (("architecture", "standard"), ("normalize_activations", "none"),
                        ("reshape_activations", "none"), ("activation_fn", "relu")):
        value = config.get(key, wanted)
        if value != wanted:
            raise SaePaperError(f"{where} has {key}={value!r}; only {key}={wanted!r} SAEs can be imported")
    tensors = load_file(str(directory / WEIGHTS_FILE))
    shapes = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,)}
    if set(tensors) != set(shapes):
        raise SaePaperError(f"{where} has tensors {', '.join(sorted(tensors))}; a standard SAE has exactly "
                            f"{', '.join(TENSORS)}")
    for name, shape in shapes.items():
        if tuple(tensors[name].shape) != shape:
            raise SaePaperError(f"{where}: {name} has shape {tuple(tensors[name].shape)}, expected {shape} "
                                f"(d_in={d_in}, d_sae={d_sae})")
    if tensors["b_dec"].any():
        raise SaePaperError(f"{where} has a non-zero b_dec (max |b_dec| = {tensors['b_dec'].abs().max():.3g}); "
                            "our SAEs have no decoder bias")
    deviation = (tensors["W_dec"].double().norm(dim=1) - 1).abs().max().item()
    if deviation > UNIT_NORM_TOLERANCE:
        raise SaePaperError(f"{where} has decoder rows that are not unit-norm (max |norm − 1| = {deviation:.3g}); "
                            "our dictionaries' rows are unit vectors")
    metadata = {**_our_names(config.get("metadata") or {}), "saelens": config}
    ours = (config.get("metadata") or {}).get("sae_paper") or {}
    sae = ImportedUntiedSAE(d_in, d_sae, alpha=float(ours.get("alpha") or 0.0), metadata=metadata)
    sae.to(dtype=tensors["W_enc"].dtype)
    sae.load_state_dict({"M_e": tensors["W_enc"].t().contiguous(), "b": tensors["b_enc"], "M_d": tensors["W_dec"]})
    return sae


def _our_names(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``model``, ``site``, ``layer`` (our spelling) for a SAELens hub model and hook we know, else nothing."""
    from sae_paper.data.models import MODELS

    provenance = metadata.get("sae_paper") or {}
    model = provenance.get("model") or next(
        (spec.name for spec in MODELS.values() if spec.hub_id == metadata.get("model_name") and spec.weights in ("hub", "gguf")),
        None)
    match = _HOOK.match(str(metadata.get("hook_name")))
    if model is None or match is None:
        return {}
    return {"model": model, "site": "resid_post" if match[2] == "hook_resid_post" else "mlp_post", "layer": int(match[1])}



class Markdown(str):
    """Text a notebook shows as Markdown."""

    def _repr_markdown_(self) -> str:
        return str(self)



# --------------------------------------------------------------------------------------
# CE recovered under SAEBench's convention
# --------------------------------------------------------------------------------------


def saebench_splice(run):
    """``run``'s SAE spliced under SAELens's / SAEBench's convention, on the held-out contexts of
    :meth:`~sae_paper.core.pipeline.Run.splice` (``run.eval_contexts()``); kept beside the SAE (three
    forward passes).

    Predictions made from BOS, from the model's own special tokens and from our
    ``<|endoftext|>`` separators are left out (SAEBench leaves out the tokenizer's BOS,
    EOS and pad; for SmolLM2 those are not ``<|endoftext|>``, which we use as BOS).
    """
    from sae_paper.core.metrics import AllPositionsSpliceMetrics, splice_metrics_all_positions

    c = run.config
    path = run.sae_dir / f"saebench-splice-{c.eval_tokens}.json"
    if path.is_file():
        return AllPositionsSpliceMetrics(**json.loads(path.read_text())["splice"])
    sae = run.sae()
    with torch.no_grad():
        result = splice_metrics_all_positions(run.model, run.site, lambda x: sae(x).x_hat, run.eval_contexts(),
                                              ignored_token_ids(run), batch_size=c.harvest_batch_size)
    path.write_text(json.dumps({"eval_tokens": c.eval_tokens, "splice": asdict(result)}, indent=1))
    return result


def ignored_token_ids(run) -> set[int]:
    """The tokens whose predictions SAEBench's convention leaves out: our BOS and separator
    ``<|endoftext|>`` and the tokenizer's BOS, EOS and pad (those it has)."""
    tokenizer = run.model.tokenizer
    ids = {run.spec.bos_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    return {int(token) for token in ids if token is not None}


def ce_conventions(run) -> Markdown:
    """Our CE recovered beside SAEBench's ``ce_loss_score`` for ``run``'s SAE, as a Markdown table."""
    ours, theirs = run.evaluate(splice=True).splice, saebench_splice(run)
    rows = [("ours (this book)", "all but BOS, the first token and separators", "made from those positions", ours),
            ("SAELens / SAEBench `ce_loss_score`", "all, BOS included", "not made from BOS or separators", theirs)]
    lines = ["| convention | positions spliced or zeroed | predictions counted | CE clean | CE spliced | "
             "CE zero-ablated | CE recovered |", "|---|---|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {where} | {counted} ({m.n_tokens:,}) | {m.ce_clean:.3f} | {m.ce_spliced:.3f} | "
              f"{m.ce_zero:.3f} | {m.ce_recovered:.3f} |" for name, where, counted, m in rows]
    return Markdown("\n".join(lines))
