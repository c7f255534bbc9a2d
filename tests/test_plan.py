"""The paper profile's rehearsal (derived from paper.yaml in code) and ``--plan`` (counts, hours, nothing computed).

``test_paper_rehearsal_end_to_end`` (slow) builds the rehearsal book on CPU, cold, into a scratch
cache and book folder: Pythia-70M and -410M with random weights, float16 harvest, ACDC, the
paper's sweeps at tiny sizes, the openai-compatible backend against a local server.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time

import pytest

from sae_paper.analysis.autointerp.openai_compatible import OpenAICompatibleBackend
from sae_paper.book.harvest import book_harvest_requests
from sae_paper.book.plan import plan_book
from sae_paper.book.profiles import BookError, load_profile, resolve_parameters, study_classes
from sae_paper.book.rehearsal import FLOORS, REHEARSAL_SCALE, rehearsal_profile, rehearsal_server
from sae_paper.book.runner import BookLayout, run_book
from sae_paper.cli import main
from sae_paper.data.models import MODELS
from sae_paper.data.paths import repo_root

ROOT = repo_root()
PAPER = load_profile(ROOT / "profiles" / "paper.yaml")


def test_the_rehearsal_is_paper_yaml_with_every_budget_shrunk_by_one_factor():
    rehearsal = rehearsal_profile(PAPER)
    assert set(rehearsal) == set(PAPER)
    for notebook, paper in PAPER.items():
        entry = rehearsal[notebook]
        assert set(entry) == set(paper), notebook
        for key, value in paper.items():
            if key in FLOORS and isinstance(value, int):
                assert entry[key] == max(FLOORS[key], math.ceil(value * REHEARSAL_SCALE)) <= value, (notebook, key)
            elif key in FLOORS and isinstance(value, list):  # a budget list keeps its proportions and its order
                assert entry[key] == sorted(entry[key]) and len(set(entry[key])) == len(value) and max(entry[key]) < max(value)
            elif key == "model":
                assert entry[key] == f"{value}-random" and MODELS[entry[key]].weights == "random"
            elif key == "base_url":
                assert entry[key] != value  # the network's address is replaced by the local server's, at run time
            elif key == "controls":  # the model became the random control itself: the control is its seed 1
                assert entry[key] == [f"{c}-seed1" if c == entry["model"] else c for c in value] != value
            else:
                assert entry[key] == value, (notebook, key)  # dtype, layers, sweeps, ordering, backends: the paper's
    assert rehearsal["03_ioi"]["layers"] == [3, 7, 11, 15, 19, 23] and rehearsal["03_ioi"]["ordering"] == "acdc"
    assert rehearsal["03_ioi"]["model"] == "pythia-410m-deduped-random" and rehearsal["01_training"]["dtype"] == "float16"
    assert rehearsal["01_training"]["n_tokens"] == 620 and rehearsal["04_case_studies"]["sae_budgets"] == [155, 310, 620]
    assert rehearsal["02_autointerp"]["fragment_budgets"] == [20, 40, 80]
    resolve_parameters(rehearsal, list(rehearsal))  # every study accepts it

    larger = {**PAPER, "01_training": {**PAPER["01_training"], "n_tokens": 400_000_000}}
    assert rehearsal_profile(larger)["01_training"]["n_tokens"] == 4000  # it follows paper.yaml: nothing to drift


def test_the_rehearsal_server_answers_the_openai_compatible_backend():
    parameters = resolve_parameters(rehearsal_profile(PAPER), ["02_autointerp"])
    with rehearsal_server(parameters) as url:
        assert url.startswith("http://127.0.0.1:") and parameters["02_autointerp"]["base_url"] == url
        backend = OpenAICompatibleBackend("gpt-4", url)
        assert backend.explain('Explanation of neuron 1 behavior: the main thing this neuron does is find')
    with rehearsal_server(resolve_parameters(PAPER, ["01_training"])) as url:
        assert url is None  # nothing to serve


def test_the_plan_counts_what_the_smoke_studies_configure_and_computes_nothing(scratch_cache, capsys):
    smoke = load_profile(ROOT / "profiles" / "smoke.yaml")
    parameters = resolve_parameters(smoke, list(smoke))
    plans = plan_book(parameters, book_harvest_requests)
    studies = study_classes()
    built = {name: studies[name].from_params(parameters[name]) for name in parameters}
    every_config = [c for study in built.values() for c in [*study.all_configs(), *getattr(study, "control_configs", list)()]]
    assert [c for plan in plans for c in plan.saes] == list(dict.fromkeys(every_config))  # each SAE once, first use
    autointerp = {plan.notebook: plan for plan in plans}["02_autointerp"]
    fragments = built["02_autointerp"].n_fragments * built["02_autointerp"].fragment_length
    assert all(autointerp.harvest_tokens[c] >= fragments for c in built["02_autointerp"].controls)  # the controls' too
    first = {plan.notebook: plan for plan in plans}["01_training"]
    assert len(first.saes) == len(set(studies["01_training"].from_params(parameters["01_training"]).all_configs()))
    assert first.sae_rows == sum(c.n_tokens * c.epochs for c in first.saes)
    rows = {site: n for (text, site), n in first.harvest.items() if '"split": "train"' in text}
    assert rows == {"resid_post.2": 1240, "mlp_post.0": 620}  # smoke.yaml's n_tokens and mlp_n_tokens
    assert first.harvest_bytes == 1240 * 512 * 4 + 620 * 2048 * 4 + 248 * (512 + 2048) * 4  # float32, eval 248 each
    wanted = {(json.dumps({"model": s.model, **s.text_key()}, sort_keys=True), str(site)) for s, site in book_harvest_requests(parameters)}
    assert {key for plan in plans for key in plan.harvest} == wanted
    assert all(plan.llm_calls == 0 for plan in plans)  # smoke scores with token-list: no language model

    started = time.perf_counter()
    lines = []
    run_book("smoke", log=lines.append, plan=True, plan_nproc=(1, 4))
    seconds = time.perf_counter() - started
    assert seconds < 90, f"--plan took {seconds:.0f} s"
    text = "\n".join(lines)
    assert "01_training:\n  harvest      2,356 rows at 4 (text, site) pairs" in text, text
    assert "1 × cpu" in text and "4 × cpu" in text and text.splitlines()[-1].startswith("total")
    assert not scratch_cache.exists() or not any(scratch_cache.rglob("*")), sorted(scratch_cache.rglob("*"))[:5]


def test_the_paper_plan_counts_the_llm_calls_of_its_scoring():
    parameters = resolve_parameters(PAPER, ["02_autointerp"])
    (plan,) = plan_book(parameters, book_harvest_requests)
    decompositions = 3 * (6 * 7 + 4) + 3 * 7  # seeds × (layers × methods + the other ratios) + budgets × methods
    assert plan.llm_calls == decompositions * 150 * (1 + 5 + 5)  # each feature: one explanation, ten simulations
    assert plan.prompt_tokens > plan.llm_calls * 64  # each prompt holds at least one 64-token fragment


def test_plan_refuses_validate_only_and_bad_device_counts(capsys):
    assert main(["book", "--profile", "smoke", "--plan", "--validate-only"]) == 2
    assert capsys.readouterr().err.strip() == "error: --plan and --validate-only: choose one (--plan validates too)"
    assert main(["book", "--profile", "smoke", "--plan", "--plan-gpus", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --plan-gpus takes positive integers, got 0"
    with pytest.raises(BookError, match="no profile 'papr'"):
        run_book("papr", rehearse=True, plan=True)


@pytest.mark.slow
def test_paper_rehearsal_end_to_end(tmp_path, scratch_cache, capsys):
    """Every code path of the paper profile, cold, on CPU: the book builds and every notebook records its claims."""
    from test_book import book_copy

    from sae_paper.book.distributed import launch_prepare

    book = book_copy(tmp_path)
    started = time.perf_counter()
    launch_prepare(2, ["--profile", "paper", "--rehearse"])  # the distributed stage: 2 gloo ranks harvest and train
    prepared = {path: path.stat().st_mtime_ns for path in scratch_cache.glob("saes/*/*/summary.json")}
    assert prepared, "the ranks trained no SAE"
    distributed = time.perf_counter() - started
    result = run_book("paper", rehearse=True, layout=BookLayout(ROOT / "notebooks", book, ROOT / "profiles"), log=print)
    seconds = time.perf_counter() - started
    print(f"paper rehearsal: {seconds:.0f} s ({distributed:.0f} s on 2 ranks), {result.seconds}")
    assert all(path.stat().st_mtime_ns == ns for path, ns in prepared.items())  # the notebooks only loaded those
    assert result.profile == "paper-rehearsal" and (result.html / "index.html").is_file()
    board = json.loads((book / "generated" / "scoreboard.json").read_text())["claims"]
    assert {row["notebook"] for row in board} >= set(PAPER)
    assert "the local test server at http://127.0.0.1:" in capsys.readouterr().out
    with sqlite3.connect(scratch_cache / "autointerp" / "calls.sqlite") as calls:  # the openai-compatible backend's calls
        (count,) = calls.execute("SELECT COUNT(*) FROM calls").fetchone()
    assert count > 0
    manifests = list((scratch_cache / "activations" / "pythia-410m-deduped-random").glob("*/resid_post.23/manifest.json"))
    assert manifests and '"dtype": "float16"' in manifests[0].parent.parent.joinpath("resid_post.23", "manifest.json").read_text()
