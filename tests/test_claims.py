"""The claims scoreboard: validation, per-notebook files, the rendered table."""

from __future__ import annotations

import json
import re

import pytest

from sae_paper.errors import SaePaperError
from sae_paper.report.claims import (
    NOT_YET_RUN,
    Claim,
    Scoreboard,
    control_claims,
    load_claims,
    paper_claims,
    read_records,
    record,
    render_table,
)
from sae_paper.report.scoreboard import load_rounding_check, render_scoreboard, scoreboard_rows

CLAIMS = {
    "a-number": Claim("a-number", "Section 1", "the answer is 42", "number"),
    "b-order": Claim("b-order", "Figure 2", "x beats y | always", "ordering"),
    "c-later": Claim("c-later", "Table 3", "not tested here", "qualitative"),
}


def test_the_shared_claims_file_has_the_ids_notebook_01_records():
    claims = paper_claims(load_claims())
    assert len(claims) == 26
    for claim_id in ("train-runtime", "splice-perplexity", "fig6-tradeoff", "fig7-epochs", "fig16-resid-alive",
                     "fig16-mlp-dead", "c3-untied-alive"):
        assert claim_id in claims and claims[claim_id].paper


def test_unknown_id_and_bad_verdict_are_one_line_errors():
    with pytest.raises(SaePaperError, match="unknown claim id 'fig99'"):
        record("fig99", "1", "reproduced", claims=CLAIMS)
    with pytest.raises(SaePaperError, match="verdict 'yes' is not one of reproduced, partly, not, not comparable"):
        record("a-number", "42", "yes", claims=CLAIMS)
    with pytest.raises(SaePaperError, match="must say what we found"):
        record("a-number", "  ", "partly", claims=CLAIMS)
    with pytest.raises(SaePaperError, match="unknown claim id"):
        record("no-such-claim", "x", "not")  # against the real claims.yaml


def test_scoreboard_writes_one_file_per_notebook_and_a_rerun_replaces_it(tmp_path):
    board = Scoreboard("nb1", folder=tmp_path, claims=CLAIMS)
    board.record("a-number", "41.5", "partly", "close")
    board.record("b-order", "x > y in 3/4", "partly")
    board.record("b-order", "x > y in 4/4", "reproduced")  # same id again: replaced, not duplicated
    saved = json.loads((tmp_path / "nb1.json").read_text())
    assert [r["claim_id"] for r in saved["records"]] == ["a-number", "b-order"]
    assert saved["records"][1]["verdict"] == "reproduced" and saved["records"][1]["notebook"] == "nb1"

    Scoreboard("nb2", folder=tmp_path, claims=CLAIMS).record("c-later", "done", "not")
    rerun = Scoreboard("nb1", folder=tmp_path, claims=CLAIMS)  # opening it again empties nb1's records
    assert rerun.records == {}
    assert [r.claim_id for r in read_records(tmp_path)] == ["c-later"]


def test_table_has_every_claim_in_order_with_not_yet_run_and_escaped_pipes(tmp_path):
    board = Scoreboard("nb1", folder=tmp_path, claims=CLAIMS)
    board.record("b-order", "x | y", "not comparable", "different model")
    lines = render_table(read_records(tmp_path), CLAIMS).splitlines()
    assert lines[0] == "| id | where | paper | ours | verdict | with more budget | note | notebook |"
    rows = lines[2:]
    assert [row.split(" | ")[0].strip("| ") for row in rows] == ["a-number", "b-order", "c-later"]
    assert NOT_YET_RUN in rows[0] and NOT_YET_RUN in rows[2]
    assert "| **not comparable** | not measured | different model | nb1 |" in rows[1]
    assert "x beats y \\| always" in rows[1] and "x \\| y" in rows[1]
    assert all(row.count(" | ") == 7 for row in rows)  # escaped pipes do not add columns
    assert "b-order" in board.markdown() and "a-number" not in board.markdown()


def test_scoreboard_page_counts_verdicts_and_rejects_unknown_ids(tmp_path):
    board = Scoreboard("nb1", folder=tmp_path, claims=CLAIMS)
    board.record("a-number", "42", "reproduced")
    page = render_scoreboard(tmp_path, CLAIMS)
    assert page.startswith("# Claims scoreboard")
    assert "**1 reproduced, 2 not yet run.**" in page
    (tmp_path / "nb2.json").write_text(json.dumps({"notebook": "nb2", "records": [
        {"claim_id": "zzz", "ours": "1", "verdict": "not", "note": "", "notebook": "nb2"}]}))
    with pytest.raises(SaePaperError, match="notebook nb2 has unknown claim id 'zzz'"):
        render_scoreboard(tmp_path, CLAIMS)


def test_controls_load_with_the_paper_claims_and_are_counted_apart(tmp_path):
    claims = load_claims()
    controls = control_claims(claims)
    assert list(controls) == ["control-random-model", "control-seed-stability"]
    assert list(claims)[-2:] == list(controls) and len(paper_claims(claims)) == 26
    mixed = {**CLAIMS, "z-control": Claim("z-control", "Someone 2025", "a control holds", "control", source="control")}
    board = Scoreboard("nb1", folder=tmp_path, claims=mixed)
    board.record("a-number", "42", "reproduced")
    board.record("z-control", "it holds", "not")
    page = render_scoreboard(tmp_path, mixed)
    head, controls_part = page.split("## Controls beyond the paper", 1)
    assert "**1 reproduced, 2 not yet run.**" in head and "The paper's 3 checkable claims" in head
    assert 'id="sb-z-control"' in controls_part and 'id="sb-z-control"' not in head
    assert 'aria-label="1 not"' in controls_part and '<span class="sb-who">source</span>' in controls_part
    assert "## Controls beyond the paper" not in render_scoreboard(tmp_path / "none", CLAIMS)


def test_scoreboard_page_has_one_compact_row_per_claim_linking_to_its_section(tmp_path):
    from sae_paper.report.budget import BudgetTrend
    from sae_paper.report.claims import claim_anchor

    board = Scoreboard("nb1", folder=tmp_path, claims=CLAIMS)
    board.record("a-number", "41.5 <script>x</script>, see `code`", "partly", "rule: within 5%",
                 trend=BudgetTrend("converging toward the paper", "0.1 → 0.3"))
    board.record("b-order", "x > y", "not comparable")
    page = render_scoreboard(tmp_path, CLAIMS, json_name="scoreboard.json")
    rows = [line for line in page.splitlines() if line.startswith('<details class="sb-claim"')]
    assert [re.search(r'id="sb-([^"]+)"', row).group(1) for row in rows] == list(CLAIMS)
    first, second, third = rows
    assert f'href="nb1.html#{claim_anchor("a-number")}"' in first and claim_anchor("a-number") == "claim-a-number"
    assert "&lt;script&gt;" in first and "<script>" not in page  # a record's text cannot inject HTML
    assert "<code>code</code>" in first  # its inline Markdown is kept
    assert 'sb-badge sb-v-partly">partly<' in first and "sb-t-converging" in first and "0.1 → 0.3" in first
    assert 'sb-v-not-comparable">not comparable<' in second and "not measured" in second
    assert "sb-v-not-yet-run" in third and "href=" not in third  # nothing to link to
    assert "\n\n" not in "\n".join(line for line in page.splitlines() if line.startswith("<details"))
    assert "{download}`scoreboard.json <scoreboard.json>`" in page
    assert 'class="sb-badge sb-v-partly">1 partly<' in page.split('<div class="sb-board">')[0]  # the counts on top
    data = scoreboard_rows(read_records(tmp_path), CLAIMS)
    assert [d["verdict"] for d in data] == ["partly", "not comparable", NOT_YET_RUN]
    assert data[0]["trend"] == "converging toward the paper" and data[0]["paper"] == "the answer is 42"


def test_budget_trend_by_hand():
    from sae_paper.report.budget import BudgetPoint as P
    from sae_paper.report.budget import budget_trend

    def trend(values, cis=(0, 0, 0), tolerance=0.05):
        points = [P(b, v, c) for b, v, c in zip((600, 1200, 2400), values, cis)]
        return budget_trend(points, what="margin", unit="fragments", tolerance=tolerance).trend

    assert trend((0.0, 0.1, 0.2)) == "converging toward the paper"
    assert trend((0.2, 0.1, 0.0)) == "moving away"
    assert trend((0.0, 0.3, 0.04)) == "flat"  # the ends decide; 0.04 < the 0.05 tolerance
    assert trend((0.0, 0.1, 0.2), cis=(0.15, 0.1, 0.15)) == "flat"  # √(0.15² + 0.15²) = 0.21 > 0.2
    assert trend((0.2, 0.0, 0.0), tolerance=0.0) == "moving away"
    with pytest.raises(SaePaperError, match="at least 3 budgets"):
        budget_trend([P(1, 0.0), P(2, 1.0)], what="m", unit="u", tolerance=0.0)


def test_trend_is_recorded_and_shown(tmp_path):
    from sae_paper.report.budget import BudgetTrend

    board = Scoreboard("nb", folder=tmp_path, claims=CLAIMS)
    board.record("a-number", "41.5", "partly", "close", trend=BudgetTrend("moving away", "margin 0.2 → 0.0"))
    [stored] = read_records(tmp_path)
    assert (stored.trend, stored.trend_note) == ("moving away", "margin 0.2 → 0.0")
    assert "*moving away*: margin 0.2 → 0.0" in render_table([stored], CLAIMS)
    with pytest.raises(SaePaperError, match="trend 'better'"):
        board.record("a-number", "41.5", "partly", trend=BudgetTrend("better", ""))


def test_each_record_shows_its_badge_once_where_it_is_made(tmp_path):
    from sae_paper.report.budget import BudgetTrend

    shown = []
    board = Scoreboard("nb", folder=tmp_path, claims=CLAIMS, show=shown.append)
    assert board.record("a-number", "41 `x`", "partly", "rule: within 5%", ("stand-in",)) is None  # nothing to show twice
    [badge] = shown
    page = badge._repr_html_()
    assert 'data-claim="a-number"' in page and 'data-verdict="partly"' in page and "sb-v-partly" in page
    assert "stand-in scorer" in page and "<code>x</code>" in page and "the answer is 42" in page  # ours and the paper's
    assert repr(badge) == "a-number: partly (stand-in)"
    board.add_trend("a-number", BudgetTrend("flat", "margin 0.1 → 0.1", "+0.1 at 500 → +0.1 at 2,000 fragments"))
    [stored] = read_records(tmp_path)
    assert stored.marks == ("stand-in",) and stored.trend == "flat" and stored.trend_span.startswith("+0.1 at 500")
    assert len(shown) == 1  # a trend is no new verdict
    with pytest.raises(SaePaperError, match="unknown mark"):
        board.record("b-order", "x", "not", "", ("lucky",))
    with pytest.raises(SaePaperError, match="before its budget trend"):
        board.add_trend("c-later", BudgetTrend("flat", ""))


def test_scoreboard_rows_carry_marks_the_rounding_check_and_the_trend_span(tmp_path):
    from sae_paper.report.budget import BudgetPoint, budget_trend

    board = Scoreboard("nb", folder=tmp_path / "claims", claims=CLAIMS, show=lambda badge: None)
    trend = budget_trend([BudgetPoint(500, 0.08), BudgetPoint(1000, 0.18), BudgetPoint(2000, 0.23)], what="margin",
                         unit="fragments", tolerance=0.05)
    assert trend.span == "+0.08 at 500 → +0.23 at 2,000 fragments"
    board.record("a-number", "41", "partly", "", ("stand-in",), trend=trend)
    board.record("b-order", "x", "reproduced")
    check = tmp_path / "rounding.yaml"
    check.write_text("flips:\n  b-order: >-\n    verdict: partly in one build,\n    reproduced in two.\n")
    rounding = load_rounding_check(check)
    assert rounding == {"b-order": "verdict: partly in one build, reproduced in two."}
    assert load_rounding_check(tmp_path / "absent.yaml") == {}
    rows = scoreboard_rows(read_records(tmp_path / "claims"), CLAIMS, rounding)
    assert [r["marks"] for r in rows] == [["stand-in"], ["rounding-noise"], []]
    page = render_scoreboard(tmp_path / "claims", CLAIMS, rounding=rounding)
    first, second = [line for line in page.splitlines() if line.startswith('<details class="sb-claim"')][:2]
    summary = first.split("</summary>")[0]
    assert "stand-in scorer" in summary and "+0.08 at 500 → +0.23 at 2,000 fragments" in summary
    assert "within rounding noise" in second.split("</summary>")[0] and "reproduced in two" in second
    with pytest.raises(SaePaperError, match="unknown claim id"):
        scoreboard_rows([], CLAIMS, {"zzz": "x"})


@pytest.mark.parametrize("text", ["plain", "a|b", "`", "``x`", "x\ny", "", " "])
def test_a_token_in_a_table_cell_stays_in_its_cell(text):
    from markdown_it import MarkdownIt

    from sae_paper.report.markdown import code_span

    table = f"| a | b | c |\n|---|---|---|\n| 1 | {code_span(text)} | end |\n"
    rendered = MarkdownIt("gfm-like").render(table)
    cells = re.findall(r"<td>(.*?)</td>", rendered)
    assert len(cells) == 3 and cells[2] == "end", rendered
    assert "<code>" in cells[1]
