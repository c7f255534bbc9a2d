"""The claims scoreboard: each of the paper's checkable claims, and what we found for it.

The claims live in the shared folder's ``paper/claims.yaml`` (26 entries, each with a
stable ``id``, ``where`` in the paper, what the ``paper`` reports and its ``kind``). A
notebook opens a :class:`Scoreboard` under its own name and records a verdict for each
claim it tests::

    board = Scoreboard("01_training")
    board.record("fig6-tradeoff", ours="L0 falls from 310 to 4 as FVU rises ...",
                 verdict="reproduced", note="MLP layer 0 of SmolLM2, 5 alphas")

Each record is written at once to ``<book output>/claims/<notebook>.json`` (see
:func:`sae_paper.data.paths.book_output_dir`); opening the scoreboard empties that notebook's
file, so a rerun replaces its records and never mixes two runs. :func:`sae_paper.report.scoreboard.render_scoreboard`
turns every notebook's records into the book's scoreboard page, listing the claims
nobody has recorded yet as "not yet run".

Verdicts are one of :data:`VERDICTS`: ``reproduced`` (the paper's statement holds in our
run), ``partly`` (part of it holds, or it holds with a caveat the note names), ``not``
(our numbers contradict it), ``not comparable`` (our setting cannot test it, e.g. a
different model for a number specific to Pythia-70M).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from pathlib import Path

from sae_paper.data.cache import atomic_write
from sae_paper.data.paths import book_output_dir, shared_file
from sae_paper.errors import SaePaperError
from sae_paper.report.budget import TRENDS, BudgetTrend
from sae_paper.report.claim_html import ClaimBadge
from sae_paper.report.finding import VERDICTS, Verdict
from sae_paper.report.markdown import table_cell
from sae_paper.report.seeds import SeedSummary

NOT_YET_RUN = "not yet run"
CLAIMS_FOLDER = "claims"


@dataclass(frozen=True)
class Claim:
    """One entry of ``claims.yaml``: what the paper says, where."""

    id: str
    where: str
    paper: str
    kind: str
    source: str = "paper"
    """``paper`` (one of the paper's 26, from the shared ``claims.yaml``) or ``control`` (a control beyond the paper
    that the field now asks for, from :data:`CONTROLS_FILE`): the scoreboard counts and lists the two apart."""


CONTROLS_FILE = Path(__file__).with_name("controls.yaml")
"""The controls beyond the paper (random-model SAEs, feature stability across seeds), in ``claims.yaml``'s format."""


def paper_claims(claims: Mapping[str, Claim]) -> dict[str, Claim]:
    """The paper's own claims among ``claims``, in order: what the scoreboard's counts are over."""
    return {claim_id: claim for claim_id, claim in claims.items() if claim.source == "paper"}


def control_claims(claims: Mapping[str, Claim]) -> dict[str, Claim]:
    """The controls beyond the paper among ``claims``, in order."""
    return {claim_id: claim for claim_id, claim in claims.items() if claim.source == "control"}


@dataclass(frozen=True)
class ClaimRecord:
    """Our result for one claim."""

    claim_id: str
    ours: str
    """What we measured, in words and numbers."""
    verdict: Verdict
    note: str
    """Why this verdict: the rule applied, and how our setting differs from the paper's."""
    notebook: str = ""
    """The notebook that recorded it (filled in by :class:`Scoreboard`)."""
    trend: str = ""
    """How the number that decides the verdict moves with more budget (one of :data:`TRENDS`; empty: not measured)."""
    trend_note: str = ""
    """The budget points behind ``trend``, in words."""
    trend_span: str = ""
    """The deciding number at the smallest and the largest budget, short (``+0.08 at 500 → +0.23 at 2,000``)."""
    marks: tuple[str, ...] = ()
    """What else decides the verdict, from :data:`MARKS` (e.g. ``stand-in``: the token-list scorer decided it)."""
    seeds: tuple[int, ...] = ()
    """The seeds the verdict was decided at (empty: one run at the notebook's seed); ``verdict`` is their majority."""
    seed_verdicts: tuple[str, ...] = ()
    """Each seed's verdict, in the order of ``seeds``."""
    seed_values: tuple[float, ...] = ()
    """Each seed's deciding number, in the order of ``seeds``."""
    seed_agreement: str = ""
    """``3/3 seeds agree`` or ``seed-dependent (…)`` (:class:`sae_paper.report.seeds.SeedSummary`)."""
    deciding: str = ""
    """What the deciding number is, in words."""
    deciding_spread: str = ""
    """The deciding number's mean and range over the seeds."""

    def _repr_markdown_(self) -> str:
        trend = f" With more budget: *{self.trend}* ({self.trend_note})." if self.trend else ""
        return f"**{self.claim_id}**: *{self.verdict}*. {self.ours}. ({self.note}){trend}"


MARKS = {
    "stand-in": "decided by the token-list stand-in for GPT-4/GPT-3.5: its explanations are lists of tokens and its "
                "simulation a lookup, so a feature scores by how well its current token predicts it",
    "rounding-noise": "within rounding noise: a build that differed only in float rounding gave another verdict, "
                      "seed verdict or trend (sae-paper check-rounding; the recorded check is on the budget page)",
    "weakened-baseline": "a baseline it compares against was fitted short of convergence (ICA stopped at its iteration "
                         "limit): a stronger baseline could narrow the SAE's margin; the note gives the fit",
    "measurement-failed": "the measurement failed: a method the rule compares has no score (its calls to the explainer "
                          "or simulator failed, or every feature was skipped), so no rule decided it; the verdict is "
                          "not comparable, and ours says how many features were scored and the first failure",
}
"""Marks a record may carry, with what each says to the reader."""


def load_claims(path: str | Path | None = None) -> dict[str, Claim]:
    """The claims by id: the paper's, from ``claims.yaml`` in the shared folder, then the controls beyond the paper
    (:data:`CONTROLS_FILE`, ``source="control"``); with ``path``, that file's alone."""
    if path is not None:
        return dict(_load_claims(str(path)))
    paper = dict(_load_claims(str(shared_file("paper", "claims.yaml"))))
    controls = {claim_id: replace(claim, source="control") for claim_id, claim in _load_claims(str(CONTROLS_FILE))}
    clash = sorted(set(paper) & set(controls))
    if clash:
        raise SaePaperError(f"control id(s) {', '.join(clash)} clash with the paper's claims in claims.yaml")
    return {**paper, **controls}


@lru_cache(maxsize=4)
def _load_claims(path: str) -> tuple[tuple[str, Claim], ...]:
    import yaml

    entries = yaml.safe_load(Path(path).read_text())
    if not isinstance(entries, list):
        raise SaePaperError(f"{path} must hold a list of claims")
    claims = []
    for entry in entries:
        try:
            claim = Claim(str(entry["id"]), str(entry["where"]), str(entry["paper"]), str(entry.get("kind", "")))
        except (KeyError, TypeError):
            raise SaePaperError(f"{path}: every claim needs id, where and paper; got {entry!r}") from None
        claims.append((claim.id, claim))
    return tuple(claims)


def record(claim_id: str, ours: str, verdict: str, note: str = "", marks: Sequence[str] = (), *, notebook: str = "",
           claims: Mapping[str, Claim] | None = None, trend: BudgetTrend | None = None,
           seeds: SeedSummary | None = None) -> ClaimRecord:
    """A validated :class:`ClaimRecord`: ``claim_id`` must be in claims.yaml, ``verdict`` in :data:`VERDICTS`, every
    mark in :data:`MARKS`, and ``verdict`` the majority of ``seeds`` when the claim was decided at several."""
    known = load_claims() if claims is None else claims
    if claim_id not in known:
        raise SaePaperError(f"unknown claim id {claim_id!r}; the ids are those of claims.yaml ({len(known)} claims)")
    if verdict not in VERDICTS:
        raise SaePaperError(f"claim {claim_id}: verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    if not str(ours).strip():
        raise SaePaperError(f"claim {claim_id}: 'ours' must say what we found")
    if trend is not None and trend.trend not in TRENDS:
        raise SaePaperError(f"claim {claim_id}: trend {trend.trend!r} is not one of {', '.join(TRENDS)}")
    unknown = [mark for mark in marks if mark not in MARKS]
    if unknown:
        raise SaePaperError(f"claim {claim_id}: unknown mark(s) {', '.join(unknown)} (known: {', '.join(MARKS)})")
    if seeds is not None and seeds.verdict != verdict:
        raise SaePaperError(f"claim {claim_id}: verdict {verdict!r} is not the seeds' majority {seeds.verdict!r}")
    trend = trend or BudgetTrend("", "", "")
    seed_fields = {} if seeds is None else {
        "seeds": tuple(seeds.seeds), "seed_verdicts": tuple(seeds.verdicts), "seed_values": tuple(seeds.values),
        "seed_agreement": seeds.agreement, "deciding": seeds.what, "deciding_spread": seeds.spread}
    return ClaimRecord(claim_id, str(ours), verdict, str(note), notebook, trend.trend, trend.note, trend.span,
                       tuple(dict.fromkeys(marks)), **seed_fields)


def _display_in_notebook(badge: ClaimBadge) -> None:
    """Show ``badge`` as the output of the running cell when a Jupyter kernel runs this code; elsewhere nothing."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return
    if get_ipython() is not None:
        display(badge)


class Scoreboard:
    """One notebook's claim records, kept in ``<book output>/claims/<notebook>.json``.

    Creating it empties that file (a rerun replaces the notebook's records); each
    :meth:`record` rewrites it atomically, so a notebook that fails half-way leaves the
    records it made before failing. Each record is shown where it is made, as a
    :class:`ClaimBadge` (``show``; in a notebook, the cell's output), so the section that
    computes a verdict states it, and the scoreboard's link to that section lands on it.
    """

    def __init__(self, notebook: str, *, folder: str | Path | None = None, claims: Mapping[str, Claim] | None = None,
                 show: Callable[[ClaimBadge], None] = _display_in_notebook):
        if not notebook or "/" in notebook:
            raise SaePaperError(f"scoreboard notebook name must be a plain name, got {notebook!r}")
        self.notebook = notebook
        self.claims = dict(load_claims() if claims is None else claims)
        self.path = Path(folder) if folder is not None else book_output_dir(CLAIMS_FOLDER)
        self.path.mkdir(parents=True, exist_ok=True)
        self.path = self.path / f"{notebook}.json"
        self.records: dict[str, ClaimRecord] = {}
        self.show = show
        self._write()

    def record(self, claim_id: str, ours: str, verdict: str, note: str = "", marks: Sequence[str] = (), *,
               trend: BudgetTrend | None = None, seeds: SeedSummary | None = None) -> None:
        """Record (or replace) our result for ``claim_id`` (with how it moves with budget, and over seeds, when
        measured), save it, and show its badge. Returns nothing, so a cell ending in ``board.record(...)`` shows the
        badge once."""
        entry = record(claim_id, ours, verdict, note, marks, notebook=self.notebook, claims=self.claims, trend=trend,
                       seeds=seeds)
        self.records[claim_id] = entry
        self._write()
        self.show(ClaimBadge(entry, self.claims[claim_id], MARKS))

    def add_trend(self, claim_id: str, trend: BudgetTrend) -> None:
        """Add how ``claim_id``'s deciding number moves with budget to its record, keeping everything else; save."""
        if claim_id not in self.records:
            raise SaePaperError(f"claim {claim_id}: record its verdict before its budget trend")
        if trend.trend not in TRENDS:
            raise SaePaperError(f"claim {claim_id}: trend {trend.trend!r} is not one of {', '.join(TRENDS)}")
        self.records[claim_id] = replace(self.records[claim_id], trend=trend.trend, trend_note=trend.note,
                                         trend_span=trend.span)
        self._write()

    def _write(self) -> None:
        payload = {"notebook": self.notebook, "records": [asdict(r) for r in self.records.values()]}
        text = json.dumps(payload, indent=1, ensure_ascii=False) + "\n"
        atomic_write(self.path, lambda tmp: tmp.write_text(text))

    def markdown(self) -> str:
        """This notebook's records as a Markdown table (the paper's statement beside ours)."""
        return render_table(self.records.values(), self.claims, only_recorded=True)

    def _repr_markdown_(self) -> str:
        return self.markdown()


_TUPLE_FIELDS = tuple(f.name for f in fields(ClaimRecord) if str(f.type).startswith("tuple"))


def read_records(folder: str | Path) -> list[ClaimRecord]:
    """Every record saved under ``folder`` (one JSON file per notebook), in file-name order."""
    records = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            payload = json.loads(path.read_text())
            records.extend(ClaimRecord(**{**entry, **{name: tuple(entry[name]) for name in _TUPLE_FIELDS if name in entry}})
                           for entry in payload["records"])
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise SaePaperError(f"unreadable claim records {path}: {error!r}; rerun that notebook") from None
    return records




def render_table(records: Iterable[ClaimRecord], claims: Mapping[str, Claim], *, only_recorded: bool = False) -> str:
    """A Markdown table with one row per claim: id, where, paper, ours, verdict, note, notebook.

    Claims are listed in claims.yaml order; without ``only_recorded``, claims with no
    record appear with verdict "not yet run". A record for an id claims.yaml does not
    know is an error (the scoreboard would silently drop it otherwise).
    """
    by_id: dict[str, ClaimRecord] = {}
    for entry in records:
        if entry.claim_id not in claims:
            raise SaePaperError(f"a record from notebook {entry.notebook or '?'} has unknown claim id {entry.claim_id!r}")
        by_id[entry.claim_id] = entry
    lines = ["| id | where | paper | ours | verdict | with more budget | note | notebook |",
             "|---|---|---|---|---|---|---|---|"]
    for claim in claims.values():
        entry = by_id.get(claim.id)
        if entry is None and only_recorded:
            continue
        if entry is None:
            row = [claim.id, claim.where, claim.paper, "", NOT_YET_RUN, "", "", ""]
        else:
            trend = f"*{entry.trend}*: {entry.trend_note}" if entry.trend else "not measured"
            row = [claim.id, claim.where, claim.paper, entry.ours, f"**{entry.verdict}**", trend, entry.note,
                   entry.notebook]
        lines.append("| " + " | ".join(table_cell(value) for value in row) + " |")
    return "\n".join(lines) + "\n"


def verdict_counts(records: Iterable[ClaimRecord], claims: Mapping[str, Claim]) -> dict[str, int]:
    """How many claims have each verdict (and how many are not yet run), over the claims of ``claims``; the
    scoreboard counts the paper's claims (:func:`paper_claims`) and the controls apart."""
    counts = {verdict: 0 for verdict in (*VERDICTS, NOT_YET_RUN)}
    recorded = {entry.claim_id: entry.verdict for entry in records}
    for claim_id in claims:
        counts[recorded.get(claim_id, NOT_YET_RUN)] += 1
    return counts


CLAIM_ANCHOR_PREFIX = "claim-"


def claim_anchor(claim_id: str) -> str:
    """The HTML id the book runner puts on the notebook section that records ``claim_id``."""
    return CLAIM_ANCHOR_PREFIX + claim_id
