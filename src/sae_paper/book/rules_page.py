"""The book's page *How verdicts are decided*, made from the rules registry when the book is built.

A verdict's note links to its rule; this page writes each rule out once, from the same
:class:`~sae_paper.report.rules.Rule` the verdict function reads its thresholds from, so the
page and the verdicts cannot disagree. ``book/rules.md`` (hand-written: what makes a rule
fair) includes the generated ``generated/rules.md``, which the runner writes beside the costs
page. Each claim's section carries the anchor its notes link to
(:func:`~sae_paper.report.rules.rule_anchor`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sae_paper.chapters.rulebook import all_rules, notebook_of
from sae_paper.report.claims import Claim, load_claims
from sae_paper.report.markdown import readable, table_cell
from sae_paper.report.rules import Rule, number_text, rule_anchor

RULES_MARKDOWN = "rules.md"
"""Under ``book/generated``; ``book/rules.md`` includes it."""


def rule_section(rule: Rule, claim: Claim, notebook: str) -> str:
    """One claim's rule: the paper's words, our rule and its thresholds, why, and what decides it."""
    lines = [f"({rule_anchor(rule.claim_id)})=", f"## {rule.claim_id}", "",
             f"*{readable(claim.where)}*, recorded by notebook `{notebook}`. The claim: {readable(claim.paper)}. "
             + ("The paper's words, as `PAPER.md` (its digest) gives them:" if claim.source == "paper" else
                "A control beyond the paper; what its source reports, as the book's `controls.yaml` gives it:"), "",
             f"> {readable(' '.join(rule.paper.split()))}", ""]
    if rule.not_comparable:
        lines += ["**Not comparable by construction**: this setting cannot measure the quantity.", ""]
    lines += [f"**Our rule:** {readable(rule.words)}.", ""]
    if rule.thresholds:
        lines += ["| threshold | value |", "|---|---:|",
                  *(f"| `{table_cell(name)}` | {number_text(value)} |" for name, value in rule.thresholds.items()), ""]
    lines += [f"**Why:** {readable(rule.why)}.", "",
              "**What decides it:** " + "; ".join(readable(part) for part in rule.deciding) + ".", ""]
    return "\n".join(lines)


def rules_markdown(rules: Mapping[str, Rule], claims: Mapping[str, Claim], notebooks: Mapping[str, str]) -> str:
    """Every rule's section, in ``claims.yaml``'s order, after one line that counts them and names the claims that are
    not comparable by construction. ``notebooks``: claim id → the notebook that records it."""
    fixed = [claim_id for claim_id, rule in rules.items() if rule.not_comparable]
    controls = sum(claims[claim_id].source == "control" for claim_id in rules)
    head = (f"{len(rules) - controls} rules, one per claim"
            + (f", and {controls} for the controls beyond the paper" if controls else "")
            + "; not comparable by construction: "
            + (", ".join(f"{{ref}}`{claim_id} <{rule_anchor(claim_id)}>`" for claim_id in fixed) or "none") + ".")
    return "\n".join([head, "", *(rule_section(rule, claims[claim_id], notebooks[claim_id])
                                  for claim_id, rule in rules.items())])


def write_rules_page(generated: Path) -> Path:
    """Write :func:`rules_markdown` of every chapter's rules to ``generated/rules.md``."""
    claims = load_claims()
    rules = all_rules(claims)
    path = generated / RULES_MARKDOWN
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rules_markdown(rules, claims, {claim_id: notebook_of(claim_id) for claim_id in rules}))
    return path
