"""The real-LLM scorer measurement's page: which layers the SAE is ahead at, and the section written from a record
(or the note when there is none)."""

from __future__ import annotations

import json

from sae_paper.book.costs_page import write_llm_scorer_page
from sae_paper.chapters.autointerp_llm import budget_section, separates


def _row(site, method, task, mean, ci):
    return {"site": site, "layer": int(site.split(".")[1]), "method": method, "task": task, "mean": mean, "ci": ci,
            "balanced_mean": mean, "n_scored": 30, "n_failed": 0, "n_skipped": 0, "stand_in": {"mean": 0.6},
            "spearman_same_task": 0.25, "spearman_simulation": None}


RECORD = {"model": "local:qwen", "study": {"n_explain": 3, "fragment_length": 32},
          "classify": {"n_activating": 3, "n_non_activating": 3}, "machine": {"cpu_model": "AMD EPYC"},
          "prompt_tokens_per_second": 50.0, "matmul_gflops_fp32": 180.0, "model_gflop_per_token": 3.6,
          "call_timings": {"explain": {"calls": 10, "timed": 4, "mean_seconds": 4.0, "seconds": 16.0},
                           "detection": {"calls": 10, "timed": 10, "mean_seconds": 6.0, "seconds": 60.0},
                           "fuzzing": {"calls": 6, "timed": 0, "mean_seconds": None, "seconds": 0.0}},
          "rows": [_row("resid_post.3", "sae", "detection", 0.80, 0.05), _row("resid_post.3", "pca", "detection", 0.70, 0.04),
                   _row("resid_post.9", "sae", "detection", 0.75, 0.05), _row("resid_post.9", "pca", "detection", 0.72, 0.05),
                   _row("resid_post.3", "sae", "fuzzing", 0.60, 0.05)]}


def test_the_sae_is_ahead_only_where_its_interval_clears_every_baseline():
    # layer 3: 0.75 > 0.74; layer 9: 0.70 < 0.77; fuzzing has no baseline, so no layer is decided
    assert separates(RECORD["rows"], "detection") == {"resid_post.3": True, "resid_post.9": False}
    assert separates(RECORD["rows"], "fuzzing") == {}


def test_the_section_shows_every_row_and_the_layers_the_sae_is_ahead_at(tmp_path):
    text = budget_section(RECORD)
    assert "| 3 | SAE | detection | 0.800 ± 0.050 | 0.800 | 30 / 0 / 0 | 0.600 | +0.25 / – |" in text
    assert "at 1 of 2 layers (resid_post.3: yes, resid_post.9: no)" in text
    assert "Under fuzzing" not in text  # no baseline was scored under fuzzing: nothing to say
    # cost from the timed calls alone (fuzzing has none): 4 + 6 s a feature; 10 × 4 + 10 × 6 s in all
    assert ("explain 4.0 s (4 of 10 calls timed), detection 6.0 s (10 of 10 calls timed); no fuzzing call was timed. "
            "A feature explained and scored by detection costs 10 s; the 20 calls of these kinds, 2 min.") in text
    assert "llama.cpp evaluates 50 prompt tokens/s" in text and "a dense fp32 ceiling of 50 tokens/s at 3.6 GFLOP a token." in text
    assert "llama.cpp is above it" in budget_section({**RECORD, "prompt_tokens_per_second": 75.0})
    assert "This run" not in text  # a record without its run's span says nothing of it
    whole = budget_section({**RECORD, "run": {"seconds": 3000.0, "calls_made": 26, "calls_stored_before": 0}})
    assert "This run started from an empty call cache and made all 26 calls: 50 min from start to end" in whole
    resumed = budget_section({**RECORD, "run": {"seconds": 600.0, "calls_made": 6, "calls_stored_before": 20}})
    assert "This run found 20 calls stored by earlier runs and made 6 (10 min)." in resumed
    record = tmp_path / "record.json"
    assert "No measurement in this checkout" in write_llm_scorer_page(tmp_path, record).read_text()
    record.write_text(json.dumps(RECORD))
    assert write_llm_scorer_page(tmp_path, record).read_text() == text
