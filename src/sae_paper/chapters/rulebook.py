"""Every chapter's verdict rules in one registry, keyed by claim id.

Each rule is defined beside its verdict function, in the chapter that decides the claim
(:class:`~sae_paper.report.rules.Rule`); :data:`CHAPTER_RULES` names each chapter's rules under
its notebook, and :func:`all_rules` checks them into one registry (one rule per claim, every id
known to ``claims.yaml``). The book's page *How verdicts are decided* is made from it
(:mod:`sae_paper.book.rules_page`), and ``tests/test_rules.py`` holds it to all 26 claims.
"""

from __future__ import annotations

from collections.abc import Mapping

from sae_paper.chapters import (
    appendices,
    autointerp,
    autointerp_control_verdicts,
    autointerp_verdicts,
    case_studies,
    case_verdicts,
    ioi,
    ioi_verdicts,
    seed_stability,
    training,
)
from sae_paper.report.claims import Claim
from sae_paper.report.rules import Rule, rule_registry

CHAPTER_RULES: dict[str, tuple[Rule, ...]] = {
    training.NOTEBOOK: training.RULES,
    autointerp.NOTEBOOK: (*autointerp_verdicts.RULES, *autointerp_control_verdicts.RULES, *seed_stability.RULES),
    ioi.NOTEBOOK: ioi_verdicts.RULES,
    case_studies.NOTEBOOK: case_verdicts.RULES,
    appendices.NOTEBOOK: appendices.RULES,
}
"""Notebook → the rules of the claims it records, in the order it records them."""


def all_rules(claims: Mapping[str, Claim] | None = None) -> dict[str, Rule]:
    """Every chapter's rules by claim id, in ``claims.yaml``'s order (or ``claims``'), checked by
    :func:`~sae_paper.report.rules.rule_registry`."""
    return rule_registry([rule for rules in CHAPTER_RULES.values() for rule in rules], claims)


def notebook_of(claim_id: str) -> str:
    """The notebook whose chapter defines ``claim_id``'s rule (empty if none does)."""
    return next((notebook for notebook, rules in CHAPTER_RULES.items() if any(r.claim_id == claim_id for r in rules)), "")
