"""Notebook 03 (IOI feature patching): its parameters, the dictionaries it needs, its curves and verdicts.

Section 4 and Appendix F of the paper. :class:`IoiStudy` is the notebook's parameter set
(the ``parameters`` cell, a profile's ``03_ioi`` entry, ``-p`` overrides): one frozen
dataclass, validated on construction, that builds every :class:`RunConfig` the notebook
trains:

- at the **main layer** (Figure 3): one tied SAE per α in ``alphas``, which must include
  α = 0 (the non-sparse dictionary) and at least one α > 0; PCA is fitted on the same
  activations;
- at every other layer of ``layers`` (Figure 17): one SAE per α in ``fig17_alphas``, and PCA.

All sites share one text split, so their activations are harvested in one forward pass.
:func:`patching_curves` runs :func:`sae_paper.analysis.patching_curves.patching_curve` for each
decomposition of a layer and caches the curves on disk (keyed by everything they depend
on), so a rerun of the notebook redraws them without a forward pass. The verdict functions
(:mod:`sae_paper.chapters.ioi_verdicts`) turn curves into the scoreboard's (ours, verdict, note), each by the
:class:`~sae_paper.report.rules.Rule` beside it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from torch import Tensor

from sae_paper.analysis.patching_curves import CurvePoint, Ordering, PatchingCurve, log_thresholds
from sae_paper.chapters.ioi_verdicts import dictionary_name, fig3_decisions
from sae_paper.chapters.study import SaeRunFields, check_n_seeds
from sae_paper.core.config import RunConfig
from sae_paper.data import cache
from sae_paper.data.models import Site, model_spec
from sae_paper.errors import SaePaperError

NOTEBOOK = "03_ioi"
PCA_NAME = "PCA"


@dataclass(frozen=True)
class IoiStudy(SaeRunFields):
    """Parameters of notebook 03. Defaults are the ``default`` profile (real SmolLM2, 7.6 min cold on 2 CPU cores).

    ``model`` must do IOI (the notebook checks); ``source`` is the dictionaries' training text (the
    paper: the first 10,000 Pile documents); ``seed`` also sets ACDC's visiting order."""

    notebook = NOTEBOOK

    n_prompts: int = 50
    """IOI test prompts (the paper: 50)."""
    prompt_seed: int = 0
    """Seed of the IOI prompt generator (fixes the test set)."""
    layer: int = 12
    """Main residual-stream layer (Figure 3); the paper: 11 of Pythia-410M's 24."""
    layers: tuple[int, ...] = (6, 12, 18)
    """Layers of Figure 17 (the paper: 3, 7, 11, 15, 19, 23); must include ``layer``."""

    # --- the dictionaries ----------------------------------------------------------------
    alphas: tuple[float, ...] = (0.0, 1e-2, 2e-2)
    """α of the SAEs at the main layer: 0 (the non-sparse dictionary) and at least one α > 0."""
    fig17_alphas: tuple[float, ...] = (1e-2,)
    """α of the SAEs at the other layers of ``layers`` (PCA is always added)."""
    n_tokens: int = 98_304
    """Training activations of the main layer's dictionaries (the paper: ~7M): what decides Figure 3."""
    fig17_n_tokens: int | None = None
    """Training activations at the other layers of ``layers`` (None: ``n_tokens``)."""
    ratio: float = 2.0
    """Dictionary ratio R of every SAE."""
    epochs: int = 3
    batch_size: int = 256

    # --- patching and ordering -------------------------------------------------------------
    n_thresholds: int = 24
    """ACDC thresholds, log-spaced from 1e-5 to 1 (the paper: 50)."""
    ordering: str = "attribution"
    """attribution: thresholds on each feature's integrated-gradients share of the KL change (CPU);
    acdc: the paper's sequential ACDC over the ``n_exact`` features with the largest shares."""
    n_exact: int = 0
    """Features the sequential ACDC visits (ordering acdc only; ≥ the changing features: all of them, as the paper)."""
    attribution_steps: int = 2
    """Path points of the attribution (each a forward and a backward pass over the prompts)."""
    chunk: int = 4
    """Feature sets evaluated per forward pass (× n_prompts sequences)."""
    token_budgets: tuple[int, ...] = (98_304, 393_216)
    """Training activations at which the main layer's dictionaries are retrained and Figure 3's comparisons recomputed
    (the budget-sensitivity plot and the scoreboard's trend); budgets above ``n_tokens`` are used only when a larger
    profile (``long``) left their curves in the cache. Fewer than 3 usable: no trend."""
    n_seeds: int = 3
    """Seeds Figure 3's verdicts are decided at (``seed``, ``seed + 1``, …): each retrains the main layer's
    dictionaries and reorders ACDC's sweep on the same activations and prompts; the majority decides."""

    def __post_init__(self) -> None:
        check_n_seeds(self)
        for name in ("layers", "alphas", "fig17_alphas", "token_budgets"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                raise SaePaperError(f"{NOTEBOOK} parameter {name}={value!r}: must be a list")
            object.__setattr__(self, name, tuple(value))
        for name in ("alphas", "fig17_alphas"):
            if any(not isinstance(a, (int, float)) or isinstance(a, bool) or not a >= 0 for a in getattr(self, name)):
                raise SaePaperError(f"{NOTEBOOK} parameter {name}={getattr(self, name)!r}: alphas must be numbers >= 0")
        if 0 not in self.alphas or not any(a > 0 for a in self.alphas):
            raise SaePaperError(f"{NOTEBOOK} parameter alphas={list(self.alphas)!r}: needs 0 (the non-sparse dictionary) "
                                "and at least one alpha > 0")
        if self.layer not in self.layers:
            raise SaePaperError(f"{NOTEBOOK} parameter layers={list(self.layers)!r} must include the main layer {self.layer}")
        for name in ("n_prompts", "n_tokens", "epochs", "batch_size", "attribution_steps", "chunk", "eval_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise SaePaperError(f"{NOTEBOOK} parameter {name}={value!r}: must be a positive integer")
        if not isinstance(self.n_exact, int) or self.n_exact < 0:
            raise SaePaperError(f"{NOTEBOOK} parameter n_exact={self.n_exact!r}: must be a non-negative integer")
        if not isinstance(self.n_thresholds, int) or self.n_thresholds < 2:
            raise SaePaperError(f"{NOTEBOOK} parameter n_thresholds={self.n_thresholds!r}: must be at least 2")
        if self.fig17_n_tokens is not None and (not isinstance(self.fig17_n_tokens, int) or self.fig17_n_tokens <= 0):
            raise SaePaperError(f"{NOTEBOOK} parameter fig17_n_tokens={self.fig17_n_tokens!r}: a positive integer or null")
        if any(not isinstance(n, int) or n <= 0 for n in self.token_budgets):
            raise SaePaperError(f"{NOTEBOOK} parameter token_budgets={list(self.token_budgets)!r}: positive integers")
        if self.ordering not in Ordering.__args__:
            raise SaePaperError(f"{NOTEBOOK} parameter ordering={self.ordering!r}: one of {', '.join(Ordering.__args__)}")
        spec = model_spec(self.model)
        for layer in self.layers:
            Site("resid_post", layer).check(spec)

    # --- what the notebook trains and runs ------------------------------------------------

    def config(self, layer: int, alpha: float) -> RunConfig:
        """The tied SAE at ``layer`` with L1 coefficient ``alpha``."""
        return RunConfig(
            model=self.model, layer=layer, site="resid_post", source=self.source,
            n_tokens=self.n_tokens if layer == self.layer or self.fig17_n_tokens is None else self.fig17_n_tokens,
            context_length=self.context_length, harvest_batch_size=self.harvest_batch_size, dtype=self.dtype,
            sae="tied", ratio=self.ratio, alpha=float(alpha), lr=self.lr, batch_size=self.batch_size,
            epochs=self.epochs, seed=self.seed, text_seed=self.text_order,
            eval_tokens=self.eval_tokens, alive_threshold=self.alive_threshold,
        )

    def layer_alphas(self, layer: int) -> tuple[float, ...]:
        """The α values of the SAEs at ``layer``, in increasing order."""
        return tuple(sorted(set(self.alphas if layer == self.layer else self.fig17_alphas)))

    def layer_configs(self, layer: int) -> list[RunConfig]:
        return [self.config(layer, alpha) for alpha in self.layer_alphas(layer)]

    def all_configs(self) -> list[RunConfig]:
        """Every SAE the notebook trains, each once, main layer first."""
        ordered = [self.layer, *(layer for layer in self.layers if layer != self.layer)]
        return list(dict.fromkeys(config for layer in ordered for config in self.layer_configs(layer)))

    def thresholds(self) -> tuple[float, ...]:
        return log_thresholds(self.n_thresholds)

    def patching_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`sae_paper.analysis.patching_curves.patching_curve`."""
        return {"thresholds": self.thresholds(), "ordering": self.ordering, "n_exact": self.n_exact,
                "attribution_steps": self.attribution_steps, "seed": self.seed}

    def curve_key(self, layer: int, decomposition_id: str) -> str:
        """A stable key of everything a cached curve depends on.

        The seed enters only through sequential ACDC's visiting order, so it is part of the key only under
        ``ordering="acdc"``: with the attribution ordering a seed-free decomposition (PCA, fitted to the same
        activations at every seed) has one curve, computed once for all seeds.
        """
        depends = {"model": self.model, "n_prompts": self.n_prompts, "prompt_seed": self.prompt_seed, "layer": layer,
                   "decomposition": decomposition_id, "n_thresholds": self.n_thresholds, "ordering": self.ordering,
                   "n_exact": self.n_exact, "attribution_steps": self.attribution_steps,
                   "version": cache.version("ioi-curve")}
        if self.ordering == "acdc":
            depends["seed"] = self.seed
        return hashlib.sha256(json.dumps(depends, sort_keys=True).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------
# Curves, computed once and cached
# --------------------------------------------------------------------------------------


def curve_from_dict(stored: Mapping[str, Any]) -> PatchingCurve:
    points = tuple(CurvePoint(**p) for p in stored["points"])
    return PatchingCurve(**{**{k: v for k, v in stored.items() if k != "points"}, "points": points,
                            "order": tuple(stored.get("order", ()))})


def curve_to_dict(curve: PatchingCurve) -> dict[str, Any]:
    payload = asdict(curve)
    payload["order"] = list(curve.order)
    return payload


def patching_curves(study: IoiStudy, layer: int, decompositions: Mapping[str, Any], *, setup=None,
                    setup_factory=None) -> dict[str, PatchingCurve]:
    """One curve per decomposition at ``layer``, read from the cache when present.

    ``decompositions`` maps a stable id (what the decomposition was fitted from, e.g. the
    SAE's folder name) to a zero-argument callable giving the decomposition, so nothing is
    loaded for a cached curve. ``setup_factory()`` builds the layer's
    :class:`~sae_paper.analysis.patching.PatchingSetup` (model forward passes) only if some curve
    must be computed.
    """
    from sae_paper.analysis.patching import FeaturePatching
    from sae_paper.analysis.patching_curves import patching_curve
    from sae_paper.data.paths import cache_dir

    folder = cache_dir("ioi", study.model)
    curves: dict[str, PatchingCurve] = {}
    for decomposition_id, make in decompositions.items():
        path = folder / f"layer{layer}-{study.curve_key(layer, decomposition_id)}.json"
        stored = cache.read_json(path, "cached IOI curve") if path.is_file() else None
        if stored is not None and cache.reusable("ioi-curve", path, stored.pop("computed", None)):
            curve = curve_from_dict(stored)
        else:
            if setup is None:
                setup = setup_factory()
            decomposition = make()
            curve = patching_curve(FeaturePatching(setup, decomposition, chunk=study.chunk), **study.patching_options())
            cache.write_json_atomic(path, {**curve_to_dict(curve), "computed": cache.stamp("ioi-curve", path)})
        curves[curve.name] = curve
    return curves


def exact_pca(rows: Tensor, name: str = PCA_NAME):
    """All principal components of ``rows`` from the float64 covariance (what the authors' BatchedPCA
    computes), as a lossless :class:`~sae_paper.core.decompositions.LinearDecomposition`."""
    import torch

    from sae_paper.core.decompositions import LinearDecomposition

    x = rows.double()
    mean = x.mean(dim=0)
    centred = x - mean
    _, vectors = torch.linalg.eigh(centred.T @ centred / len(x))
    components = vectors.flip(dims=[1]).T.float().contiguous()  # [n_components, d_in], largest variance first
    return LinearDecomposition(name, components, components, mean.float())


@dataclass(frozen=True)
class DictionaryRecord:
    """One dictionary of the notebook and how well it reconstructs held-out activations."""

    layer: int
    alpha: float
    d_sae: int
    fvu: float
    """Fraction of variance unexplained on held-out activations."""
    mean_l0: float
    alive: int
    """Features firing more than ``alive_threshold`` times on the held-out activations."""
    n_train: int
    train_seconds: float | None


def record_table(records: Iterable[DictionaryRecord]) -> str:
    lines = ["| layer | dictionary | d_sae | FVU (held-out) | mean L0 | alive (held-out) | trained on | train s |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        seconds = f"{r.train_seconds:.0f}" if r.train_seconds is not None else "?"
        lines.append(f"| {r.layer} | {dictionary_name(r.alpha)} | {r.d_sae} | {r.fvu:.3f} | {r.mean_l0:.1f} | {r.alive} | "
                     f"{r.n_train:,} | {seconds} |")
    return "\n".join(lines) + "\n"


class RecordTable(list):
    """A list of :class:`DictionaryRecord` that shows itself as a Markdown table in a notebook."""

    def _repr_markdown_(self) -> str:
        return record_table(self)


class LayerDictionaries:
    """The dictionaries of one layer: SAEs per α (the library's one pipeline, :class:`~sae_paper.core.pipeline.Run`,
    trained and cached like every other SAE) and PCA on the same activations.

    The activations follow the separator-row policy of the harvest
    (:func:`sae_paper.data.text.kept_positions`): from about layer 10 on, SmolLM2's separators and
    first tokens are attention sinks 40-170× the median norm that would otherwise hold most
    of the variance. Harvest them first (e.g. with :func:`sae_paper.core.sweeps.prefetch`).
    """

    def __init__(self, study: IoiStudy, layer: int):
        from sae_paper.core.pipeline import Run

        self.study, self.layer = study, layer
        self.runs = {alpha: Run(study.config(layer, alpha), progress=False) for alpha in study.layer_alphas(layer)}
        self.run = next(iter(self.runs.values()))
        self._rows: dict[str, Tensor] = {}

    def rows(self, split: str = "train") -> Tensor:
        """The activations of the split, read once."""
        if split not in self._rows:
            self._rows[split] = self.run.activations(split).read_all()
        return self._rows[split]

    def sae(self, alpha: float):
        """The tied SAE with L1 coefficient ``alpha``, trained on first use."""
        return self.runs[alpha].sae()

    def record(self, alpha: float) -> DictionaryRecord:
        """Held-out FVU, L0 and alive features of the α SAE (cached beside it by the pipeline)."""
        from sae_paper.core.train import SUMMARY_FILE

        run = self.runs[alpha]
        evaluation = run.evaluate(splice=False)
        summary = json.loads((run.sae_dir / SUMMARY_FILE).read_text())
        return DictionaryRecord(self.layer, float(alpha), evaluation.d_sae, evaluation.fvu, evaluation.mean_l0,
                                evaluation.alive, run.config.n_tokens, summary.get("wall_time_s"))

    def records(self) -> list[DictionaryRecord]:
        return [self.record(alpha) for alpha in self.study.layer_alphas(self.layer)]

    def pca(self):
        return exact_pca(self.rows("train"))

    def decompositions(self) -> dict[str, Any]:
        """Stable id → zero-argument callable giving each decomposition (nothing is loaded for a cached curve)."""
        from sae_paper.core.decompositions import SaeDecomposition

        made: dict[str, Any] = {
            run.sae_dir.name: (lambda alpha=alpha: SaeDecomposition(self.sae(alpha), name=dictionary_name(alpha)))
            for alpha, run in self.runs.items()
        }
        spec = self.run.harvest_spec("train")
        made[f"pca-{spec.folder().name}-{self.run.site}-n{spec.n_tokens}"] = self.pca
        return made


def curve_table(curves: Iterable[PatchingCurve]) -> str:
    """A Markdown table: per decomposition, its features, the KL at both ends, and the cost."""
    lines = ["| layer | decomposition | features | changing | KL none | KL all (floor) | points | passes | time (s) |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c in curves:
        lines.append(f"| {c.layer} | {c.name} | {c.n_features} | {c.n_active} | {c.kl_base:.3f} | {c.kl_all:.2e} | "
                     f"{len(c.points)} | {c.n_evaluations} | {c.seconds:.0f} |")
    return "\n".join(lines) + "\n"


class CurveTable(list):
    """A list of curves that shows itself as a Markdown table in a notebook."""

    def _repr_markdown_(self) -> str:
        return curve_table(self)


# --------------------------------------------------------------------------------------
# Budget sensitivity: Figure 3 against the dictionaries' training activations
# --------------------------------------------------------------------------------------


def curves_cached(study: IoiStudy, layer: int, decompositions: Mapping[str, Any]) -> bool:
    """Whether every curve of ``decompositions`` at ``layer`` is on disk (nothing would be trained or run)."""
    from sae_paper.data.paths import cache_dir

    folder = cache_dir("ioi", study.model)
    return all((folder / f"layer{layer}-{study.curve_key(layer, d)}.json").is_file() for d in decompositions)


def reseeded_curves(study: IoiStudy, seed: int, setup_factory) -> list[PatchingCurve]:
    """Figure 3's curves at the main layer at ``seed``: its dictionaries retrained at that seed on the same
    activations, ACDC's order drawn from it, the prompts unchanged (cached like every curve)."""
    at_seed = study.reseeded(seed)
    dictionaries = LayerDictionaries(at_seed, study.layer).decompositions()
    return list(patching_curves(at_seed, study.layer, dictionaries, setup_factory=setup_factory).values())


def token_sweep(study: IoiStudy, setup_factory, *, main_curves: Sequence[PatchingCurve]) -> dict[str, list]:
    """Figure 3's deciding numbers at each of ``study.token_budgets`` (and ``n_tokens``, whose ``main_curves`` are
    given): the share of (KL level, sparse SAE, baseline) comparisons the sparse SAEs win on the number of features
    (fig3-fewer-features) and on the edit (fig3-smaller-edits). Smaller budgets are trained and patched here; larger
    ones only read from the cache."""
    from dataclasses import replace

    from sae_paper.report.budget import BudgetPoint

    points: dict[str, list] = {"fig3-fewer-features": [], "fig3-smaller-edits": []}
    for n in sorted(set(study.token_budgets) | {study.n_tokens}):
        if n == study.n_tokens:
            curves = list(main_curves)
        else:
            at_n = replace(study, n_tokens=n)
            dictionaries = LayerDictionaries(at_n, study.layer).decompositions()
            if n > study.n_tokens and not curves_cached(at_n, study.layer, dictionaries):
                continue
            curves = list(patching_curves(at_n, study.layer, dictionaries, setup_factory=setup_factory).values())
        for claim, decision in fig3_decisions(curves, setting="").items():
            points[claim].append(BudgetPoint(n, decision.deciding))
    return points


TREND_TOLERANCE = 0.1
"""A change in the share of comparisons won smaller than this (about one KL level of eight) is *flat*."""


def token_trends(points: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    from sae_paper.report.budget import budget_trends

    return budget_trends(points, what="share of comparisons the sparse SAEs win", unit="training activations",
                         tolerance=TREND_TOLERANCE)
