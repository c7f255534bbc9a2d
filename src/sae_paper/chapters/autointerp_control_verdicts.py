"""The control row ``control-random-model``: the trained model's SAE against the random-weight models' SAEs.

Heap et al. 2025 (arXiv 2501.17727) find SAEs on randomly initialised transformers scoring close to SAEs on
trained ones. :mod:`sae_paper.chapters.autointerp_controls` trains and scores Figure 2's SAEs on such models;
this module decides, by :data:`CONTROL_RULE` and the same test as Figure 2's rules (non-overlapping 95 %
intervals, :func:`~sae_paper.chapters.autointerp_verdicts._gap`), whether the trained SAE is ahead of them. Its
decision (:func:`control_decisions`) is made at each seed and combined by
:func:`~sae_paper.report.seeds.decide_at_seeds`, like Figure 2's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sae_paper.analysis.autointerp.scoring import MethodSummary
from sae_paper.chapters.autointerp_controls import control_method, label
from sae_paper.chapters.autointerp_verdicts import (
    _backend_note,
    _failures,
    _gap,
    _half_width,
    _marks,
    _smallest,
    unmeasured,
)
from sae_paper.data.models import Site
from sae_paper.errors import SaePaperError
from sae_paper.report.finding import Decision, Finding
from sae_paper.report.rules import Rule

CONTROL_RULE = Rule(
    "control-random-model",
    paper="SAEs trained on randomly initialised transformers reach autointerpretability scores similar to those of "
          "SAEs on trained transformers, so a study should compare its SAE with the same SAE on a randomised model",
    rule="at every layer scored, the trained model's SAE against each control model's SAE (top-and-random score): the "
         "trained SAE's 95% CI above every control SAE's at every layer → reproduced; a control SAE's 95% CI above the "
         "trained SAE's at some layer → not; otherwise (the intervals overlap somewhere) partly",
    why="the same test the book's Figure 2 rules use for 'far more interpretable' (non-overlapping 95% intervals over "
        "the scored features), applied both ways, so a control that wins clearly counts as much as a trained SAE "
        "that wins clearly; every layer and both controls must agree for reproduced, since a lead that a random model "
        "matches anywhere is not shown to come from training; the controls' α matches the trained SAE's L0 by a "
        "search on training activations, so sparsity does not decide it",
    deciding=("the trained SAE against each control SAE at every layer scored",))

CONTROL_WHAT = {"control-random-model": "smallest gap, trained SAE's lower 95% bound − a control SAE's upper, any layer"}
"""What the control row's deciding number is, in words (the scoreboard's *deciding number*)."""


def random_model_finding(summaries: Sequence[MethodSummary], layers: Sequence[int], controls: Sequence[str], *,
                         backend: str) -> Decision:
    """``control-random-model`` (:data:`CONTROL_RULE`) from one seed's summaries, the trained model's and the
    controls' (:func:`score_controls`) together; deciding number: the smallest gap between the trained SAE's lower
    95 % bound and a control SAE's upper one over every layer and control, positive exactly when *reproduced*."""
    by = {(s.site, s.method): s for s in summaries}
    pairs = [(by.get((str(Site("resid_post", layer)), "sae")),
              by.get((str(Site("resid_post", layer)), control_method(control, "sae"))), layer, control)
             for layer in layers for control in controls]
    missing = [f"{control} at layer {layer}" for trained, other, layer, control in pairs if trained is None or other is None]
    if not pairs or missing:
        raise SaePaperError(f"control-random-model: no scores for {', '.join(missing) or 'any control'}")
    failed = unmeasured(CONTROL_RULE, [s for pair in pairs for s in pair[:2]], backend=backend)
    if failed:
        return Decision(failed, math.nan)
    gaps = [(_gap(trained, other), _half_width(trained, other)) for trained, other, _, _ in pairs]
    gap, ci = _smallest(gaps)
    behind = any(_gap(other, trained) > 0 for trained, other, _, _ in pairs)
    verdict = "reproduced" if gap > 0 else "not" if behind else "partly"
    by_layer: dict[int, list[str]] = {}
    for trained, other, layer, control in pairs:
        by_layer.setdefault(layer, [f"trained {trained.mean:.2f}±{trained.ci:.2f}"]).append(
            f"{label(control)} {other.mean:.2f}±{other.ci:.2f}")
    ours = "; ".join(f"layer {layer}: " + ", ".join(parts) for layer, parts in by_layer.items())
    note = CONTROL_RULE.note(f"{pairs[0][0].n_scored} features per method",
                             "controls: " + ", ".join(f"{c} ({label(c)})" for c in controls),
                             "each control SAE's α is where a short training on the control's training activations "
                             "reaches the trained SAE's held-out L0 (the full training's L0 is in the notebook's table)",
                             _backend_note(backend, pairs[0][0].scoring), _failures([s for p in pairs for s in p[:2]]))
    return Decision(Finding(ours, verdict, note, _marks(backend)), gap, ci)


def control_decisions(summaries: Sequence[MethodSummary], *, study, backend: str) -> dict[str, Decision]:
    """The control row's decision from one seed's summaries (what :func:`~sae_paper.report.seeds.decide_at_seeds`
    calls at each seed)."""
    return {"control-random-model": random_model_finding(summaries, study.layers, study.controls, backend=backend)}


RULES = (CONTROL_RULE,)
"""The control rows this module decides, one rule each."""
