"""Section 5's central claims at several seeds (notebook 04): Figure 4 (left) and the single-token features.

Both verdicts are read off one SAE: which of its features the prompt search picks, and how
much of each class's best feature's activation falls on the class. A seed decides that SAE
(its initialisation and the order it sees its activations), so the main SAE is trained again
at each further seed of :meth:`CaseStudy.seeds` on the same cached activations, and each goes
through the same prompt search and class statistics on the same inspected text. Each seed's
deciding number is the one the training-budget trend follows
(:func:`sae_paper.chapters.case_budget.deciding_numbers`); the majority decides
(:func:`sae_paper.report.seeds.combine_seeds`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sae_paper.analysis.feature_stats import multi_class_stats
from sae_paper.analysis.token_activations import feature_codes
from sae_paper.chapters.case_budget import WHAT, deciding_numbers
from sae_paper.chapters.case_studies import find_by_prompt
from sae_paper.chapters.case_verdicts import SINGLE_TOKEN_CLASSES, apostrophe_histogram_finding, single_token_finding
from sae_paper.core.decompositions import SaeDecomposition
from sae_paper.report.finding import Finding
from sae_paper.report.seeds import SeedRun, SeedSummary, combine_seeds

CLAIMS = ("fig4-apostrophe-hist", "sec5-single-token-features")


def findings(study, model, dictionary: SaeDecomposition, corpus, classes: Mapping[str, Any]) -> dict[str, Finding]:
    """Both claims' findings for one SAE, by the notebook's procedure: the prompt search's feature for Figure 4, the
    best feature per token class for Section 5."""
    stats = multi_class_stats(dictionary, corpus.rows, classes)
    search = find_by_prompt(model, study.site, dictionary, study.prompts, stats["apostrophes"], k=study.top_k,
                            min_fires=study.min_fires)
    if search.chosen >= 0:
        activation = feature_codes(dictionary, corpus.rows, search.chosen)
        apostrophe = apostrophe_histogram_finding(search.chosen, activation, corpus.tokens, model.tokenizer,
                                                  n_bins=study.n_bins)
    else:
        apostrophe = Finding("no feature among the prompt's top features fires often enough on the inspected text",
                             "not", "the prompt search found no candidate apostrophe feature")
    single = {}
    for name in SINGLE_TOKEN_CLASSES:
        best = stats[name].best(1, min_fires=study.min_fires, by_mass=True)
        single[name] = (best[0] if best else -1, stats[name])
    return {"fig4-apostrophe-hist": apostrophe, "sec5-single-token-features": single_token_finding(single)}


def seed_runs(seed: int, study, model, dictionary: SaeDecomposition, corpus,
              classes: Mapping[str, Any]) -> dict[str, SeedRun]:
    """Each claim's :class:`SeedRun` for the SAE ``dictionary`` trained at ``seed``."""
    found = findings(study, model, dictionary, corpus, classes)
    numbers = deciding_numbers(study, model, dictionary, corpus, classes)
    return {claim: SeedRun(seed, found[claim], numbers[claim]) for claim in CLAIMS}


def across_seeds(study, model, dictionary: SaeDecomposition, corpus,
                 classes: Mapping[str, Any]) -> dict[str, tuple[Finding, SeedSummary]]:
    """Both claims at every seed of ``study.seeds()`` (``dictionary`` is the study's own seed's SAE; the others are
    trained or read from the cache): each claim's majority finding and :class:`SeedSummary`."""
    from sae_paper.core.pipeline import Run

    runs: dict[str, list[SeedRun]] = {claim: [] for claim in CLAIMS}
    for seed in study.seeds():
        at_seed = dictionary if seed == study.seed else SaeDecomposition(
            Run(study.reseeded(seed).main_config(), progress=False).sae(), name=dictionary.name)
        for claim, run in seed_runs(seed, study, model, at_seed, corpus, classes).items():
            runs[claim].append(run)
    return {claim: combine_seeds(claim_runs, what=WHAT[claim]) for claim, claim_runs in runs.items()}
