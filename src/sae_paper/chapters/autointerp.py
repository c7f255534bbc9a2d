"""Notebook 02 (automated interpretability): its parameters, the decompositions it scores, its claim verdicts.

Section 3 and Appendices A, C, G of the paper. :class:`AutointerpStudy` is the notebook's
parameter set (the ``parameters`` cell, a profile's ``02_autointerp`` entry, ``-p`` overrides).
It builds every SAE :class:`~sae_paper.core.config.RunConfig` the notebook needs:

- one residual SAE per layer of ``layers`` (the ``main_layer`` one is notebook 01's main SAE, so
  it is reused from the cache; the others are trained on as many activations, ``n_tokens``, so the layers are
  compared on equal budgets);
- Figure 8: the main layer's SAE at each ratio of ``fig8_ratios`` (01's ratio sweep shares some);
- Appendix G: at each layer an SAE with R = ``topk_ratio`` whose mean L0 on the fragments is K;
- Appendix C.3: notebook 01's MLP SAE, against the MLP neurons.

and the baselines at each layer (:func:`baselines`): neurons (residual dimensions), random
directions, PCA and ICA fitted on the same training activations, top-K PCA and top-K ICA.
The verdict functions that turn the summaries into the scoreboard's (ours, verdict, note), each by the
:class:`~sae_paper.report.rules.Rule` beside it, are :mod:`sae_paper.chapters.autointerp_verdicts`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from sae_paper.analysis.autointerp.fragments import Fragments, FragmentSpec
from sae_paper.analysis.autointerp.scoring import ScoringConfig, score_decomposition
from sae_paper.chapters.study import SaeRunFields, check_n_seeds
from sae_paper.core.config import RunConfig
from sae_paper.core.decompositions import (
    LinearDecomposition,
    SaeDecomposition,
    TopK,
    fit_ica,
    fit_pca,
    neuron_basis,
    random_directions,
)
from sae_paper.core.pipeline import Run
from sae_paper.data import cache
from sae_paper.data.models import Site, model_spec
from sae_paper.data.paths import cache_dir
from sae_paper.errors import SaePaperError
from sae_paper.report.finding import Finding

NOTEBOOK = "02_autointerp"
METHODS = ("sae", "neurons", "random", "pca", "ica", "topk-pca", "topk-ica")
BASELINES = ("neurons", "random", "pca", "ica")
SCORING_WORDS = {
    "simulation": "**simulation**, as the paper: the simulator predicts the activation on every token from the "
                  "explanation, and the score is the correlation with the true activations (0 = chance), over top and "
                  "random fragments, and over the random ones alone (Figure 9)",
    "detection": "**detection** (Paulo et al. 2024): the simulator is shown activating and non-activating fragments "
                 "and says which fit the explanation; the score is the AUROC of its answers (0.5 = chance), beside the "
                 "balanced accuracy; there is no random-only score, so Figure 9 is not comparable",
    "fuzzing": "**fuzzing** (Paulo et al. 2024): the simulator is shown fragments with tokens highlighted and says "
               "whether the highlighted tokens are those the explanation describes; the score is the AUROC of its "
               "answers (0.5 = chance), beside the balanced accuracy; there is no random-only score, so Figure 9 is "
               "not comparable",
}
"""Each ``scoring`` in words, for the notebook to say which one ran."""
LABELS = {"sae": "SAE", "neurons": "residual basis", "random": "random directions", "pca": "PCA", "ica": "ICA",
          "topk-pca": "top-K PCA", "topk-ica": "top-K ICA", "mlp-sae": "MLP SAE", "mlp-neurons": "MLP neurons"}


@dataclass(frozen=True)
class AutointerpStudy(SaeRunFields):
    """Parameters of notebook 02. Defaults are the ``default`` profile (SmolLM2, token-list stand-in, 2 CPU cores)."""

    notebook = NOTEBOOK

    layers: tuple[int, ...] = (3, 9, 14)
    """Residual layers scored (Figure 2's x axis)."""
    main_layer: int = 3
    """Layer of Figure 8's ratio sweep: notebook 01's main SAE layer."""
    n_tokens: int = 49_152
    """Training activations of every residual SAE (equal at each layer and ratio) and PCA; 01's: its SAEs reused."""
    ratio: float = 2.0
    """Dictionary ratio R of Figure 2's SAEs (the paper's Section 3: R = 2)."""
    alpha: float | None = None
    """L1 coefficient (None: the model's residual default)."""
    epochs: int = 4
    """Training epochs of every residual SAE."""
    batch_size: int = 128
    """Activation vectors per step for residual SAEs."""
    fig8_ratios: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    """Figure 8: ratios R of the main layer's SAEs."""
    topk_ratio: float = 1.0
    """Appendix G: K = mean L0 of the R = topk_ratio SAE on that layer."""

    mlp_layer: int | None = 0
    """MLP layer of Appendix C.3 (notebook 01's MLP SAE); None skips it."""
    mlp_n_tokens: int = 8_192
    mlp_ratio: float = 1.0
    mlp_alpha: float | None = None
    mlp_epochs: int = 2
    mlp_batch_size: int = 128

    fragment_sources: tuple[str, ...] = ("webtext", "enwiki2015")
    """Fragment text: WebText openings (OpenWebText-like), topped up from Wikipedia if needed."""
    n_fragments: int = 2_000
    """Fragments (the paper: 50,000 lines of OpenWebText)."""
    fragment_length: int = 64
    """Tokens per fragment (the paper's 64)."""
    n_features: int = 100
    """Features scored per method and site (the paper: 150)."""
    fragment_budgets: tuple[int, ...] = (2_000, 8_000)
    """Pools at which Figures 2, 8 and 9's deciding numbers are recomputed (the scoreboard's trend): those up to
    ``n_fragments`` start the main pool, larger ones are read when ``long`` left them cached. Fewer than 3: no trend."""
    table1_layer: int = 9
    """Table 1: the layer whose dictionary's first features are listed (Pythia's layer 1 by depth)."""
    table1_features: int = 5
    min_fragments: int = 20
    """Skip features with fewer fragments of non-zero variance (the paper's 20)."""
    n_top: int = 20
    """Top fragments, split by the reference's fixed interleaved ranks (explain 0, 4, 8, …; simulate 2, 6, 10, …)."""
    n_explain: int = 5
    n_simulate_top: int = 5
    n_random: int = 5
    """Random fragments simulated: 1, 4, 7, … of the reference's random sample of 3 · (n_top // 4), drawn at ``seed``."""
    ica_rows: int = 4_096
    """Activations FastICA is fitted on (a subsample, as in the paper)."""
    ica_max_iter: int = 40
    """FastICA's iteration limit; it stops earlier when an iteration moves no unmixing row by more than 1e-4."""
    n_seeds: int = 3
    """Seeds Figures 2, 8 and 9 are decided at (``seed``, ``seed + 1``, …), the majority deciding: each retrains the
    SAEs, redraws ICA, the random directions, the features and random fragments (the top fragments' split is fixed)."""
    methods: tuple[str, ...] = METHODS
    """Methods scored at every layer."""
    controls: tuple[str, ...] = ("smollm2-135m-random", "smollm2-135m-reinit-blocks")
    """Random-weight models whose SAEs Figure 2 shows beside the trained model's (Heap et al. 2025), trained and
    scored as its at every layer and seed, α matching its L0 (:mod:`~sae_paper.chapters.autointerp_controls`)."""

    explainer: str = "token-list"
    """Explainer backend: token-list (stand-in), openai-compatible, local."""
    simulator: str = "token-list"
    explainer_model: str | None = None
    simulator_model: str | None = None
    base_url: str | None = None
    """openai-compatible: the server's base URL (…/v1)."""
    scoring: str = "simulation"
    """How an explanation is scored: ``simulation`` (the paper's: the correlation of simulated with true activations,
    0 = chance), ``detection`` or ``fuzzing`` (Paulo et al. 2024: the AUROC of the simulator's yes/no answers on
    activating and non-activating fragments, 0.5 = chance; no random-only score: Figure 9 not comparable)."""

    def __post_init__(self) -> None:
        for name in ("layers", "fig8_ratios", "fragment_sources", "methods", "fragment_budgets", "controls"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                raise SaePaperError(f"{NOTEBOOK} parameter {name}={value!r}: must be a list")
            object.__setattr__(self, name, tuple(value))
        if any(not isinstance(n, int) or n < self.min_fragments for n in self.fragment_budgets):
            raise SaePaperError(f"{NOTEBOOK} parameter fragment_budgets={list(self.fragment_budgets)!r}: integers >= "
                                f"min_fragments ({self.min_fragments})")
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown or "sae" not in self.methods:
            raise SaePaperError(f"{NOTEBOOK} parameter methods: must include sae; unknown {unknown} (known: {', '.join(METHODS)})")
        if not set(self.methods) & set(BASELINES):  # every verdict compares the SAE with a baseline
            raise SaePaperError(f"{NOTEBOOK} parameter methods={list(self.methods)}: no verdict without a baseline; "
                                f"add at least one of {', '.join(BASELINES)}")
        spec = model_spec(self.model)
        for layer in (*self.layers, self.main_layer, self.table1_layer):
            Site("resid_post", layer).check(spec)
        if self.main_layer not in self.layers or self.table1_layer not in self.layers:
            raise SaePaperError(f"{NOTEBOOK}: main_layer and table1_layer must be among layers {list(self.layers)}")
        if self.mlp_layer is not None:
            Site("mlp_post", self.mlp_layer).check(spec)
        check_n_seeds(self)
        from sae_paper.chapters.autointerp_controls import check_controls

        check_controls(self)
        if max(self.n_explain, self.n_simulate_top, self.n_random) > self.n_top // 4:  # the reference's 4 splits
            raise SaePaperError(f"{NOTEBOOK}: n_explain, n_simulate_top and n_random must not exceed n_top // 4")
        if not self.fig8_ratios:  # Figure 8's rule would find every ratio of none above the baselines
            raise SaePaperError(f"{NOTEBOOK} parameter fig8_ratios=[]: Figure 8 needs at least one ratio")
        if any(not r > 0 for r in (*self.fig8_ratios, self.ratio, self.topk_ratio)):
            raise SaePaperError(f"{NOTEBOOK}: ratios must be positive")
        from sae_paper.analysis.autointerp.classify import SCORINGS
        from sae_paper.analysis.autointerp.registry import BACKENDS

        if self.scoring not in SCORINGS:
            raise SaePaperError(f"{NOTEBOOK} parameter scoring={self.scoring!r}: must be one of {', '.join(SCORINGS)}")
        for name in (self.explainer, self.simulator):
            if name not in BACKENDS:
                raise SaePaperError(f"{NOTEBOOK}: unknown backend {name!r} (known: {', '.join(BACKENDS)})")
        for role, name, model in (("explainer", self.explainer, self.explainer_model),
                                  ("simulator", self.simulator, self.simulator_model)):
            if name == "openai-compatible" and not model:
                raise SaePaperError(f"{NOTEBOOK}: the openai-compatible {role} needs {role}_model (the model name the "
                                    "server knows, e.g. gpt-4)")

    # --- derived settings ---------------------------------------------------------------

    def scoring_config(self) -> ScoringConfig:
        """How each feature is scored (the fragments drawn at the study's ``seed``, by its ``scoring``)."""
        return ScoringConfig(self.n_top, self.n_explain, self.n_simulate_top, self.n_random, self.min_fragments, self.seed,
                             scoring=self.scoring)

    # --- the SAEs ----------------------------------------------------------------------

    def sae_config(self, layer: int, ratio: float | None = None) -> RunConfig:
        """The residual SAE at ``layer`` (R = ``ratio`` or the study's); the main layer's is notebook 01's."""
        spec = model_spec(self.model)
        return RunConfig(
            model=self.model, layer=layer, site="resid_post", source=self.source, n_tokens=self.n_tokens,
            context_length=self.context_length, harvest_batch_size=self.harvest_batch_size, dtype=self.dtype, sae="tied",
            ratio=float(self.ratio if ratio is None else ratio),
            alpha=float(self.alpha) if self.alpha is not None else spec.default_alpha("resid_post"), lr=self.lr,
            batch_size=self.batch_size, epochs=self.epochs, seed=self.seed, text_seed=self.text_order,
            eval_tokens=self.eval_tokens, alive_threshold=self.alive_threshold,
        )

    def mlp_config(self) -> RunConfig | None:
        if self.mlp_layer is None:
            return None
        spec = model_spec(self.model)
        return RunConfig(
            model=self.model, layer=self.mlp_layer, site="mlp_post", source=self.source, n_tokens=self.mlp_n_tokens,
            context_length=self.context_length, harvest_batch_size=self.harvest_batch_size, dtype=self.dtype, sae="tied",
            ratio=float(self.mlp_ratio),
            alpha=float(self.mlp_alpha) if self.mlp_alpha is not None else spec.default_alpha("mlp_post"), lr=self.lr,
            batch_size=self.mlp_batch_size, epochs=self.mlp_epochs, seed=self.seed, text_seed=self.text_order,
            eval_tokens=self.eval_tokens, alive_threshold=self.alive_threshold,
        )

    @property
    def uses_topk(self) -> bool:
        """Whether top-K PCA or ICA is scored (then an R = ``topk_ratio`` SAE per layer sets K)."""
        return any(m.startswith("topk") for m in self.methods)

    def topk_config(self, layer: int) -> RunConfig:
        return self.sae_config(layer, self.topk_ratio)

    def all_configs(self) -> list[RunConfig]:
        """Every SAE the notebook trains or reuses, each once."""
        configs = [self.sae_config(layer) for layer in self.layers]
        configs += [self.sae_config(self.main_layer, r) for r in self.fig8_ratios]
        if self.uses_topk:
            configs += [self.topk_config(layer) for layer in self.layers]
        if self.mlp_config() is not None:
            configs.append(self.mlp_config())
        return list(dict.fromkeys(configs))

    def control_configs(self) -> list[RunConfig]:
        """Each control's SAE settings per layer before its α is chosen: what the runner harvests for the controls."""
        return [self.sae_config(layer).replace(model=control) for control in self.controls for layer in self.layers]

    def sites(self) -> list[Site]:
        sites = [Site("resid_post", layer) for layer in self.layers]
        return sites + ([Site("mlp_post", self.mlp_layer)] if self.mlp_layer is not None else [])

    def fragment_spec(self, model: str | None = None) -> FragmentSpec:
        """The pool every method is scored on, run through ``model`` (None: the study's; a control: same documents)."""
        return FragmentSpec(model or self.model, self.n_fragments, self.fragment_length, self.fragment_sources,
                            self.text_order)

    def fragment_requests(self) -> list[tuple[FragmentSpec, list[Site]]]:
        """Every fragment pass the notebook reads (:func:`sae_paper.book.harvest.harvest_for_book` makes them first)."""
        resid = [Site("resid_post", layer) for layer in self.layers]
        return [(self.fragment_spec(), self.sites()), *((self.fragment_spec(control), resid) for control in self.controls)]

    def ratio_method(self, ratio: float) -> str:
        """The method Figure 8's SAE of ``ratio`` is scored under (the study's own ratio is Figure 2's ``sae``)."""
        return "sae" if ratio == self.ratio else f"sae-R{ratio:g}"

    def topk_ks(self, site_activations: Mapping[Site, torch.Tensor]) -> dict[int, int]:
        """Appendix G's K per layer: the mean L0 of the R = ``topk_ratio`` SAE on the fragments' activations (none when
        no top-K method is scored)."""
        if not self.uses_topk:
            return {}
        return {layer: max(1, round(mean_l0(SaeDecomposition(Run(self.topk_config(layer), progress=False).sae()),
                                            site_activations[Site("resid_post", layer)])))
                for layer in self.layers}

    def decompositions(self, seed: int | None = None, *, ks: Mapping[int, int] | None = None) -> dict[tuple[Site, str], Any]:
        """Every decomposition Figures 2, 8 and 9 score (and Figure 18's top-K PCA and ICA when ``ks`` gives K per
        layer), by (site, method), at ``seed`` (None: the study's own) on the study's text: per layer the SAE and the
        baselines (:func:`baselines`, PCA and ICA fitted on the SAE's training activations, cached), then the main
        layer's SAE at each further ratio of Figure 8 (:meth:`ratio_method`). SAEs come from the cache or are
        trained at ``seed`` on the activations already harvested; ICA and random directions are drawn at ``seed``."""
        at = self if seed is None or seed == self.seed else self.reseeded(seed)
        out: dict[tuple[Site, str], Any] = {}
        for layer in self.layers:
            site = Site("resid_post", layer)
            run = Run(at.sae_config(layer), progress=False)
            out[(site, "sae")] = SaeDecomposition(run.sae())
            for method, decomposition in baselines(at, layer, run.activations("train"), k=(ks or {}).get(layer)).items():
                out[(site, method)] = decomposition
        main_site = Site("resid_post", self.main_layer)
        for ratio in self.fig8_ratios:
            if ratio != self.ratio:
                sae = Run(at.sae_config(self.main_layer, ratio), progress=False).sae()
                out[(main_site, self.ratio_method(ratio))] = SaeDecomposition(sae)
        return out

    def layer_label(self, layer: int) -> str:
        """A figure's tick for ``layer``: the model's own layer and the share of its blocks done after it,
        ``(layer + 1) / n_layers``, the depth to compare with the paper's layers (Pythia-70M's layer 2 of 6: 50 %)."""
        return f"{layer} ({(layer + 1) / model_spec(self.model).n_layers:.0%} of depth)"


# --------------------------------------------------------------------------------------
# Baselines, cached on disk
# --------------------------------------------------------------------------------------


def _linear_cached(name: str, key: dict, fit) -> LinearDecomposition:
    from safetensors import safe_open
    from safetensors.torch import save_file

    depends = {**key, "computation": cache.version("baselines")}
    digest = hashlib.sha256(json.dumps(depends, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir("autointerp", "baselines") / f"{name}-{digest}.safetensors"
    if path.is_file():
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
            record = json.loads(metadata.get("computed", "null"))
            t = {name: handle.get_tensor(name) for name in ("encoder", "directions", "offset")}
        if cache.reusable("baselines", path, record):
            return LinearDecomposition(name.upper() if name in ("pca", "ica") else name, t["encoder"], t["directions"],
                                       t["offset"], fit=json.loads(metadata.get("fit", "{}")))
    decomposition = fit()
    tensors = {"encoder": decomposition.encoder.contiguous(), "directions": decomposition.directions.contiguous(),
               "offset": decomposition.offset.contiguous()}
    metadata = {"computed": json.dumps(cache.stamp("baselines", path)), "fit": json.dumps(decomposition.fit)}
    cache.atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    return decomposition


def baselines(study: AutointerpStudy, layer: int, activations, *, k: int | None) -> dict[str, Any]:
    """The baseline decompositions at one residual layer, PCA and ICA fitted on ``activations`` (cached)."""
    d = activations.d_in
    out: dict[str, Any] = {}
    # PCA does not draw random numbers: one fit serves every seed
    key = {"model": study.model, "layer": layer, "rows": activations.n_rows, "source": study.source,
           "text_seed": study.text_order}
    if "neurons" in study.methods:
        out["neurons"] = neuron_basis(d, name="residual basis")
    if "random" in study.methods:
        out["random"] = random_directions(d, seed=study.seed)
    if any(m in study.methods for m in ("pca", "topk-pca")):
        out["pca"] = _linear_cached("pca", key, lambda: fit_pca(activations))
    if any(m in study.methods for m in ("ica", "topk-ica")):
        ica_key = {**key, "seed": study.seed, "ica_rows": study.ica_rows, "max_iter": study.ica_max_iter}
        out["ica"] = _linear_cached("ica", ica_key, lambda: _fit_ica_one_thread(study, activations))
    if k is not None:
        for base in ("pca", "ica"):
            if f"topk-{base}" in study.methods:
                out[f"topk-{base}"] = TopK(out[base], k)
    return {m: out[m] for m in study.methods if m in out}


def fit_report(decompositions: Mapping[tuple[Site, str], Any]) -> tuple[str, str]:
    """(How PCA and ICA were fitted at each layer, in one phrase; the same for the ICA fits that did not converge,
    empty when all did). ``decompositions``: :meth:`AutointerpStudy.decompositions`' answer."""
    def one(layer: int, name: str, fit: Mapping[str, Any]) -> str:
        if name == "pca":
            return f"PCA at layer {layer} on {fit.get('rows', 0):,} rows"
        state = "converged" if fit.get("converged") else "not converged"
        return (f"ICA at layer {layer}: {fit.get('iterations', '?')} of at most {fit.get('max_iter', '?')} FastICA "
                f"iterations on {fit.get('rows', 0):,} rows, last change {fit.get('final_change', float('nan')):.2g} "
                f"against a tolerance of {fit.get('tol', float('nan')):g} ({state})")

    fits = [(site.layer, name, getattr(decomposition, "fit", {})) for (site, name), decomposition in decompositions.items()
            if name in ("pca", "ica")]
    everything = "; ".join(one(*f) for f in fits if f[2])
    weakened = "; ".join(one(*f) for f in fits if f[1] == "ica" and f[2] and not f[2].get("converged"))
    return everything, weakened


def mark_weakened(finding: Finding, weakened: str) -> Finding:
    """``finding`` marked ``weakened-baseline``, with the unconverged fit in its note (unchanged when ``weakened`` is
    empty: every ICA converged)."""
    if not weakened:
        return finding
    return finding._replace(marks=(*finding.marks, "weakened-baseline"), note=f"{finding.note}; weakened baseline: {weakened}")


def _fit_ica_one_thread(study: AutointerpStudy, activations) -> LinearDecomposition:
    """FastICA with BLAS on one thread: on a busy 2-core machine two OpenBLAS threads spin and run ~10x slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return fit_ica(activations, max_rows=study.ica_rows, seed=study.seed, max_iter=study.ica_max_iter)


def prefetch_train(study: AutointerpStudy, get_model) -> list[str]:
    """Harvest the training activations every SAE and baseline needs (no held-out split: nothing is evaluated here)."""
    from sae_paper.core.sweeps import prefetch

    return prefetch(study.all_configs(), model=get_model, splits=("train",))


@torch.no_grad()
def mean_l0(decomposition, activations: torch.Tensor) -> float:
    """Mean number of active (positive) codes per token over ``activations`` ``[..., d]``."""
    rows = activations.reshape(-1, activations.shape[-1])
    return float(torch.cat([(decomposition.encode(rows[i : i + 4096]) > 0).sum(1).float()
                            for i in range(0, len(rows), 4096)]).mean())



# --------------------------------------------------------------------------------------
# Running the study
# --------------------------------------------------------------------------------------


def make_backends(study: AutointerpStudy, cache=None):
    """(explainer, simulator), each a :class:`~sae_paper.analysis.autointerp.backends.Cached` backend from the study's names."""
    from sae_paper.analysis.autointerp.backends import Cached, CallCache
    from sae_paper.analysis.autointerp.registry import make_backend

    cache = cache if cache is not None else CallCache()

    def one(name: str, model: str | None):
        options: dict[str, Any] = {"model": model}
        if name == "openai-compatible":
            options["base_url"] = study.base_url
        return Cached(make_backend(name, **options), cache)

    explainer = one(study.explainer, study.explainer_model)
    if (study.simulator, study.simulator_model) == (study.explainer, study.explainer_model):
        return explainer, explainer  # one backend (one loaded model) for both roles
    return explainer, one(study.simulator, study.simulator_model)


def describe_backends(explainer, simulator) -> str:
    e, s = explainer.backend.label(), simulator.backend.label()
    return f"explainer {e}; simulator {s}" if e != s else f"explainer and simulator {e}"


def scorer(explainer, simulator, config, n_features: int) -> Callable[..., Any]:
    """``score(decomposition, activations, fragments, method=, site=, features=None)`` with the notebook's settings
    (``features``: score these features instead of a sample)."""
    def score(decomposition, activations, fragments, *, method: str, site: str, features=None):
        return score_decomposition(decomposition, activations, fragments, explainer, simulator, method=method, site=site,
                                   n_features=n_features, features=features, config=config)
    return score


def score_all(decompositions: Mapping[tuple[Site, str], Any], score: Callable[..., Any], fragments: Fragments,
              activations: Mapping[Site, Any]) -> dict[tuple[str, str], Any]:
    """Each decomposition scored by ``score`` (:func:`scorer`) on its site's fragment ``activations``, by
    (site name, method), in ``decompositions``' order."""
    return {(str(site), method): score(decomposition, activations[site], fragments, method=method, site=str(site))
            for (site, method), decomposition in decompositions.items()}
