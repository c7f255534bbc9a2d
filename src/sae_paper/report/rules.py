"""How each claim's verdict is decided: one :class:`Rule` per claim of ``claims.yaml``.

A verdict convinces a sceptic only if its rule was written down before the numbers came in,
quotes what the paper says, names its thresholds and why they are those, and is symmetric:
a quantity this setting measures is judged *reproduced*, *partly* or *not* whichever way it
falls, with the difference of setting stated; *not comparable* is kept for a quantity this
setting cannot measure at all (Table 1's feature indices, arbitrary in another model's
dictionary). And a part of a claim that holds for every method, baselines included, shows
nothing about SAEs, so it cannot lift a verdict on its own.

Each chapter defines the rule of each claim it decides beside the verdict function, which
reads its thresholds from it (no second copy of a number); :func:`rule_registry` collects
rules by claim id, refusing two rules for one claim and a claim ``claims.yaml`` does not know.
:mod:`sae_paper.chapters.rulebook` is the registry of every chapter's rules, and the book's
page *How verdicts are decided* is made from it (:mod:`sae_paper.book.rules_page`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sae_paper.errors import SaePaperError
from sae_paper.report.claims import Claim, load_claims


@dataclass(frozen=True)
class Rule:
    """The rule that turns our numbers for one claim into a verdict."""

    claim_id: str
    """The claim's id in ``claims.yaml``."""
    paper: str
    """The paper's words, quoted verbatim from ``PAPER.md`` (the digest of the paper in the shared folder)."""
    rule: str
    """Our rule in words. ``{name}`` or ``{name:spec}`` stands for a threshold, filled in by :attr:`words`."""
    why: str
    """Why these thresholds, and how our setting differs from the paper's where that bears on the rule."""
    deciding: tuple[str, ...]
    """The parts of the claim that decide the verdict (the rest is reported, not judged)."""
    thresholds: Mapping[str, float] = field(default_factory=dict)
    """Each threshold by name; the verdict function reads them from here."""
    not_comparable: bool = False
    """The verdict is *not comparable* by construction: this setting cannot measure the quantity."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "thresholds", MappingProxyType(dict(self.thresholds)))
        object.__setattr__(self, "deciding", tuple(self.deciding))
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in self.thresholds.values()):
            raise SaePaperError(f"rule for {self.claim_id}: thresholds must be numbers, got {dict(self.thresholds)!r}")
        empty = [name for name in ("claim_id", "paper", "rule", "why") if not str(getattr(self, name)).strip()]
        if empty or not self.deciding:
            raise SaePaperError(f"rule for {self.claim_id or '?'}: {', '.join(empty) or 'deciding'} must not be empty")
        try:
            self.rule.format(**self.thresholds)
        except (KeyError, IndexError, ValueError) as error:
            raise SaePaperError(f"rule for {self.claim_id}: its words name a threshold it does not have "
                                f"({error})") from None

    @property
    def words(self) -> str:
        """The rule in words with its thresholds filled in."""
        return self.rule.format(**self.thresholds)

    def note(self, *details: str) -> str:
        """A verdict's note: a link to the rule on the book's rules page and its thresholds, then what this run adds
        (``details``). The link is relative to ``book/generated``, where the notebooks and the scoreboard are."""
        values = ", ".join(f"{name} = {number_text(value)}" for name, value in self.thresholds.items())
        head = f"[rule {self.claim_id}](../{RULES_PAGE}.html#{rule_anchor(self.claim_id)})"
        head += f": {values}" if values else ""
        return "; ".join([head, *(d for d in details if d)])


RULES_PAGE = "rules"
"""The book page (``book/rules.md``) that includes the rules generated from the registry."""


def rule_anchor(claim_id: str) -> str:
    """The HTML id of ``claim_id``'s rule on the rules page."""
    return f"rule-{claim_id}"


def number_text(value: float) -> str:
    """A threshold as written: whole numbers with thousands separators, others as short as exact."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:.3g}"


def rule_registry(rules: Iterable[Rule], claims: Mapping[str, Claim] | None = None) -> dict[str, Rule]:
    """``rules`` by claim id, in ``claims.yaml``'s order; two rules for one claim or a claim ``claims.yaml`` (or
    ``claims``) does not know is a one-line error."""
    known = load_claims() if claims is None else claims
    by_id: dict[str, Rule] = {}
    for rule in rules:
        if rule.claim_id not in known:
            raise SaePaperError(f"a rule for unknown claim id {rule.claim_id!r}; the ids are those of claims.yaml")
        if rule.claim_id in by_id:
            raise SaePaperError(f"two rules for claim {rule.claim_id}: each claim has exactly one")
        by_id[rule.claim_id] = rule
    return {claim_id: by_id[claim_id] for claim_id in known if claim_id in by_id}
