"""Harvest → train → evaluate for one :class:`~sae_paper.core.config.RunConfig`, with every
artifact cached on disk under a key of the fields it depends on.

This is what ``sae-paper harvest|train|evaluate`` and the notebooks call. A rerun with the
same config reuses the activation cache and the trained SAE; changing, say, ``alpha``
retrains but reuses the activations. The model is loaded only when something must be
computed with it.

Every entry records the code that computed it and carries its computation version in its
key (:mod:`sae_paper.data.cache`). An SAE folder is complete when ``summary.json`` (written last)
lists the sha256 of ``sae.safetensors`` and ``sae.json`` and both files are there: a
missing file makes :meth:`Run.sae` train it again (resuming from the kept final checkpoint,
so the weights come back byte-identical), a file whose checksum differs is refused with
its name. Training holds the folder's lock, so two processes never train one SAE at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import torch
from torch import Tensor

from sae_paper.core.config import TRAIN_FIELDS, RunConfig
from sae_paper.core.metrics import ReferenceCE, SpliceMetrics, reconstruction_stats, reference_ce, splice_metrics
from sae_paper.core.sae import CONFIG_FILE, WEIGHTS_FILE, SparseAutoencoder, load_sae
from sae_paper.core.train import CHECKPOINT_FILE, SUMMARY_FILE, train_sae
from sae_paper.data import cache
from sae_paper.data.activations import ActivationCache, HarvestSpec, complete, harvest
from sae_paper.data.models import Site, load_model, model_spec
from sae_paper.data.paths import cache_dir, shared_dir
from sae_paper.data.text import POLICY_VERSION, Split, load_contexts, text_source
from sae_paper.errors import SaePaperError

EVALUATION_FILE = "evaluation-v{version}-{eval_tokens}.json"
"""One file per held-out size (and computation version), so evaluating an SAE on two sizes keeps both."""


@dataclass(frozen=True)
class Evaluation:
    """Held-out quality of one SAE (Section 2 and 6.2 of the paper)."""

    fvu: float
    """Fraction of variance unexplained on held-out activations."""
    mean_l0: float
    """Mean number of active features per activation vector."""
    alive: int
    """Features that fired more than ``alive_threshold`` times on the held-out activations."""
    d_sae: int
    n_activations: int
    splice: SpliceMetrics | None
    """Language-model cost of replacing the site by its reconstruction (None: not measured)."""

    @classmethod
    def from_dict(cls, stored: dict) -> "Evaluation":
        splice = SpliceMetrics(**stored["splice"]) if stored.get("splice") else None
        return cls(**{**stored, "splice": splice})

    def lines(self) -> list[str]:
        lines = [
            f"FVU            {self.fvu:.4f}   (held-out, {self.n_activations:,} activations)",
            f"mean L0        {self.mean_l0:.1f}",
            f"alive features {self.alive} / {self.d_sae}",
        ]
        if self.splice is None:
            return lines
        s = self.splice
        return lines + [
            f"CE clean       {s.ce_clean:.4f} nats (perplexity {s.perplexity_clean:.2f})",
            f"CE spliced     {s.ce_spliced:.4f} nats (perplexity {s.perplexity_spliced:.2f})",
            f"CE zero-ablate {s.ce_zero:.4f} nats (perplexity {s.perplexity_zero:.2f})",
            f"CE recovered   {s.ce_recovered:.3f}   ({s.n_tokens:,} held-out predictions; BOS, first tokens and separators untouched)",
        ]


class Run:
    """One config's artifacts: its activation caches, its SAE folder, its evaluation."""

    def __init__(self, config: RunConfig, *, progress: bool = True):
        self.config = config
        self.spec = model_spec(config.model)
        self.site = Site(config.site, config.layer).check(self.spec)
        if text_source(config.source).files:
            shared_dir()  # fail now, with one line, rather than after loading the model
        self.progress = progress
        self._model = None

    @property
    def model(self):
        """The language model, loaded on first use only."""
        if self._model is None:
            self._model = load_model(self.config.model, device=self.config.device)
        return self._model

    @cached_property
    def alpha(self) -> float:
        return self.config.alpha if self.config.alpha is not None else self.spec.default_alpha(self.config.site)

    def harvest_spec(self, split: Split) -> HarvestSpec:
        c = self.config
        n_tokens = c.n_tokens if split == "train" else c.eval_tokens
        return HarvestSpec(c.model, c.source, split, n_tokens, c.context_length, c.dtype, c.text_seed)

    def activations(self, split: Split = "train") -> ActivationCache:
        """The site's activations for a split (the first ``n_tokens`` or ``eval_tokens`` kept rows of the
        text's shared cache), harvested or extended on first use."""
        spec = self.harvest_spec(split)
        folder = spec.folder() / str(self.site)
        if complete(folder, spec.n_tokens):
            return ActivationCache(folder, n_rows=spec.n_tokens)
        caches = harvest(self.model, spec, [self.site], batch_size=self.config.harvest_batch_size, progress=self.progress)
        return caches[self.site]

    @property
    def sae_dir(self) -> Path:
        c = self.config
        # -p: the separator-row policy the training rows followed (sae_paper.data.text.POLICY_VERSION);
        # -v: the computation version of SAE training (sae_paper.data.cache.COMPUTATIONS)
        return cache_dir("saes", c.model) / (f"{self.site}-{c.sae}-R{c.ratio:g}-a{self.alpha:.3g}-p{POLICY_VERSION}-"
                                             f"v{cache.version('sae')}-{c.key(*TRAIN_FIELDS)}")

    def _sae_missing(self) -> list[str]:
        """What the SAE folder lacks to be complete (empty: load it), with no lock taken."""
        folder = self.sae_dir
        if not (folder / SUMMARY_FILE).is_file():
            return [SUMMARY_FILE]
        summary = cache.read_json(folder / SUMMARY_FILE, "SAE summary")
        missing = [name for name in (WEIGHTS_FILE, CONFIG_FILE) if not (folder / name).is_file()]
        if not missing and cache.stale("sae", summary.get("computed")):
            return ["a fresh training run (--recompute)"]
        return missing

    def sae_is_cached(self) -> bool:
        """Whether :meth:`sae` would load the SAE rather than train it (for pages made only from the cache)."""
        return not self._sae_missing()

    def _load_sae(self) -> SparseAutoencoder:
        """The complete SAE in :attr:`sae_dir`, each file checked against the sha256 its summary lists."""
        summary = cache.read_json(self.sae_dir / SUMMARY_FILE, "SAE summary")
        for name, digest in summary.get("files", {}).items():
            if cache.sha256_file(self.sae_dir / name) != digest:
                raise SaePaperError(f"SAE file {self.sae_dir / name} is corrupt (checksum differs from {SUMMARY_FILE}); "
                                    "move it away to train it again")
        cache.note_used("sae", self.sae_dir, summary.get("computed"))
        return load_sae(self.sae_dir)

    def sae(self) -> SparseAutoencoder:
        """The trained SAE, trained (or resumed, or rebuilt when a file is missing) on first use."""
        if not self._sae_missing():
            return self._load_sae()
        activations = self.activations("train")
        with cache.locked(self.sae_dir, f"the SAE {self.sae_dir.name}"):
            missing = self._sae_missing()
            if not missing:  # another process trained it while this one waited
                return self._load_sae()
            if missing != [SUMMARY_FILE]:
                if missing[0].startswith("a fresh"):
                    cache.notice(f"recomputing the SAE in {self.sae_dir}, as asked (--recompute): training from scratch")
                    (self.sae_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
                else:
                    cache.notice(f"SAE entry {self.sae_dir} is incomplete (missing {', '.join(missing)}): training it "
                                 "again" + (", from its final checkpoint" if (self.sae_dir / CHECKPOINT_FILE).is_file() else ""))
                (self.sae_dir / SUMMARY_FILE).unlink()  # incomplete until the new summary is written
            cache.notice(f"training the SAE in {self.sae_dir}")
            result = train_sae(activations, self.config, alpha=self.alpha, out_dir=self.sae_dir, progress=self.progress)
        return result.sae

    def evaluate(self, *, splice: bool = True) -> Evaluation:
        """FVU, L0 and alive features on held-out activations, and (``splice=True``) the
        language-model CE with the site spliced, which costs one full forward pass over
        ``eval_tokens`` tokens (the clean and zero-ablated CE are cached per site). Cached beside the SAE."""
        path = self.sae_dir / EVALUATION_FILE.format(version=cache.version("evaluation"), eval_tokens=self.config.eval_tokens)
        sae = self.sae()
        if path.is_file():
            stored = cache.read_json(path, "cached evaluation")
            if (stored["evaluation"]["splice"] or not splice) and cache.reusable("evaluation", path, stored.get("computed")):
                return Evaluation.from_dict(stored["evaluation"])
        held_out = self.activations("eval")
        stats = reconstruction_stats(sae, held_out.batches(4096, seed=0, epoch=0), alive_threshold=self.config.alive_threshold)
        splice_result = self.splice(lambda x: sae(x).x_hat) if splice else None
        evaluation = Evaluation(stats.fvu, stats.mean_l0, stats.alive, sae.d_sae, stats.n_rows, splice_result)
        cache.write_json_atomic(path, {"eval_tokens": self.config.eval_tokens, "evaluation": asdict(evaluation),
                                       "computed": cache.stamp("evaluation", path)})
        return evaluation

    def eval_contexts(self) -> Tensor:
        """The held-out contexts whose kept rows are the eval activations (BOS at position 0)."""
        c = self.config
        return load_contexts(
            c.source, self.model.tokenizer, n_contexts=self.activations("eval").n_contexts,
            context_length=c.context_length, bos_token_id=self.spec.bos_token_id, split="eval", seed=c.text_seed,
        )

    def reference_ce(self, contexts: Tensor | None = None) -> ReferenceCE:
        """Clean and zero-ablated CE of the held-out contexts at this site: computed once per (model, site,
        held-out text) and kept in that text's activation cache, so no SAE of a sweep recomputes them."""
        held_out = self.activations("eval")
        path = held_out.folder / f"reference-ce-v{cache.version('reference-ce')}-{held_out.n_contexts}.json"
        if path.is_file():
            stored = cache.read_json(path, "cached clean/zero-ablated CE")
            if cache.reusable("reference-ce", path, stored.get("computed")):
                return ReferenceCE(**stored["reference"])
        contexts = self.eval_contexts() if contexts is None else contexts
        with torch.no_grad():
            reference = reference_ce(self.model, self.site, contexts, separator_id=self.spec.bos_token_id,
                                     batch_size=self.config.harvest_batch_size, progress=self.progress)
        cache.write_json_atomic(path, {"reference": asdict(reference), "computed": cache.stamp("reference-ce", path)})
        return reference

    def splice(self, reconstruct) -> SpliceMetrics:
        """CE on the held-out contexts with this site replaced by ``reconstruct(x)`` (any decomposition)."""
        contexts = self.eval_contexts()
        with torch.no_grad():
            return splice_metrics(self.model, self.site, reconstruct, contexts, separator_id=self.spec.bos_token_id,
                                  batch_size=self.config.harvest_batch_size, progress=self.progress,
                                  reference=self.reference_ce(contexts))


def run_all(config: RunConfig, *, progress: bool = True) -> Evaluation:
    """Harvest, train and evaluate; what the README's first command runs."""
    run = Run(config, progress=progress)
    run.activations("train")
    run.sae()
    return run.evaluate()
