"""Notebook 02's central claims at several seeds: Figures 2 (early layers, depth), 8 and 9.

These four verdicts rest on SAE-against-baseline margins of a few hundredths to a few tenths,
measured on 100 sampled features. A seed decides much of that sample: the SAE's
initialisation and the order it sees its activations, the random directions, ICA's start,
which features are drawn and which fragments are shown to the explainer and simulated. So
the notebook scores the same methods again at each further seed of :meth:`AutointerpStudy.seeds`
(:func:`reseeded_summaries`: same text, same fragment pool, same cached activations; PCA and
the residual basis draw nothing and are only rescored on the new sample), and decides each
claim by the seeds' majority (:func:`across_seeds`, :func:`sae_paper.report.seeds.combine_seeds`).
The deciding number per seed is the one the fragment-budget trend follows
(:func:`sae_paper.chapters.autointerp_budget.deciding_numbers`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from sae_paper.analysis.autointerp.scoring import MethodSummary
from sae_paper.chapters import autointerp_budget as budget
from sae_paper.chapters import autointerp_verdicts as V
from sae_paper.chapters.autointerp import BASELINES, AutointerpStudy, baselines, mark_weakened
from sae_paper.core.decompositions import SaeDecomposition
from sae_paper.core.pipeline import Run
from sae_paper.data.models import Site
from sae_paper.report.finding import Finding
from sae_paper.report.seeds import SeedRun, SeedSummary, combine_seeds

CLAIMS = budget.CLAIMS


def ratio_method(study: AutointerpStudy, ratio: float) -> str:
    """The method name Figure 8's SAE of ``ratio`` is scored under (the study's own ratio is Figure 2's ``sae``)."""
    return "sae" if ratio == study.ratio else f"sae-R{ratio:g}"


def reseeded_summaries(study: AutointerpStudy, seed: int, score: Callable[..., MethodSummary]) -> list[MethodSummary]:
    """The summaries the four verdicts read, at ``seed`` on the study's text and fragments.

    ``score(decomposition, site, method, study_at_seed)`` scores one decomposition with the
    notebook's explainer, simulator and fragments and ``study_at_seed.scoring()``'s sample.
    Every SAE is trained (or read from the cache) at ``seed`` on the activations already
    harvested; ICA and random directions are drawn at ``seed``.
    """
    at_seed = study.reseeded(seed)
    out = []
    for layer in study.layers:
        site = Site("resid_post", layer)
        run = Run(at_seed.sae_config(layer), progress=False)
        out.append(score(SaeDecomposition(run.sae()), site, "sae", at_seed))
        for method, decomposition in baselines(at_seed, layer, run.activations("train"), k=None).items():
            if method in BASELINES:
                out.append(score(decomposition, site, method, at_seed))
    main_site = Site("resid_post", study.main_layer)
    for ratio in study.fig8_ratios:
        if ratio != study.ratio:
            sae = Run(at_seed.sae_config(study.main_layer, ratio), progress=False).sae()
            out.append(score(SaeDecomposition(sae), main_site, ratio_method(study, ratio), at_seed))
    return out


def findings(summaries: Sequence[MethodSummary], study: AutointerpStudy, *, backend: str,
             n_layers: int) -> dict[str, Finding]:
    """The four claims' findings from one seed's summaries, by the rules of :mod:`autointerp_verdicts`."""
    main_site = f"resid_post.{study.main_layer}"
    by = {(s.site, s.method): s for s in summaries}
    by_ratio = {r: by[(main_site, ratio_method(study, r))] for r in study.fig8_ratios
                if (main_site, ratio_method(study, r)) in by}
    main_baselines = [s for s in summaries if s.site == main_site and s.method in BASELINES]
    return {"fig2-early-layers": V.early_layers_finding(summaries, study.layers, backend=backend),
            "fig2-depth": V.depth_finding(summaries, study.layers, backend=backend, n_layers=n_layers),
            "fig9-random-only": V.random_only_finding(summaries, study.layers, backend=backend),
            "fig8-ratio": V.ratio_finding(by_ratio, main_baselines, backend=backend)}


def deciding(summaries: Sequence[MethodSummary], study: AutointerpStudy) -> dict[str, float]:
    """Each claim's deciding number from one seed's summaries (its 95 % half-width dropped)."""
    ratio_methods = [ratio_method(study, r) for r in study.fig8_ratios if r != study.ratio]
    numbers = budget.deciding_numbers(summaries, study.layers, study.main_layer, ratio_methods)
    return {claim: value for claim, (value, _) in numbers.items()}


def across_seeds(per_seed: Mapping[int, Sequence[MethodSummary]], study: AutointerpStudy, *, backend: str,
                 n_layers: int, weakened: str = "") -> dict[str, tuple[Finding, SeedSummary]]:
    """Each claim's headline finding (the seeds' majority) and its :class:`SeedSummary`; ``per_seed`` starts with
    the notebook's own seed. ``weakened``: the ICA fits that stopped short of convergence (:func:`fit_report`), which
    marks every claim, since ICA is among the baselines each compares with."""
    runs: dict[str, list[SeedRun]] = {claim: [] for claim in CLAIMS}
    for seed, summaries in per_seed.items():
        found, numbers = findings(summaries, study, backend=backend, n_layers=n_layers), deciding(summaries, study)
        for claim in CLAIMS:
            runs[claim].append(SeedRun(seed, found[claim], numbers[claim]))
    out = {}
    for claim in CLAIMS:
        finding, summary = combine_seeds(runs[claim], what=budget.WHAT[claim])
        out[claim] = (mark_weakened(finding, weakened), summary)
    return out

