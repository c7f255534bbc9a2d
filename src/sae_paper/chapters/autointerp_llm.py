"""A real language model as scorer: detection and fuzzing with the ``local`` backend, beside the stand-in.

The default book decides Section 3 with the ``token-list`` stand-in. This measurement asks whether a
real LLM (Qwen2.5-Coder-1.5B-Instruct through llama.cpp, the ``local-llm`` profile's model) separates
the SAE from the baselines when it explains the features and then *classifies* fragments from the
explanations (detection, fuzzing: :mod:`sae_paper.analysis.autointerp.classify`). The same features
are scored by the stand-in under the same scoring and under simulation, and the per-feature rank
correlation says how far the stand-in's verdicts can stand for a real model's.

:func:`measure` writes one JSON record (scores with 95 % CIs per site, method and scoring, Spearman's
rank correlations, seconds per feature, llama.cpp's prompt tokens per second and the machine);
:func:`budget_section` turns a record into the budget page's section. ``benchmarks/local_llm_scorers.py``
runs it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from sae_paper.analysis.autointerp.backends import Cached, CallCache, TokenListBackend
from sae_paper.analysis.autointerp.classify import TASKS, ClassifyConfig
from sae_paper.analysis.autointerp.fragments import fragment_activations
from sae_paper.analysis.autointerp.scoring import MethodResult, score_decomposition
from sae_paper.chapters.autointerp import LABELS, AutointerpStudy
from sae_paper.data.cache import git_state
from sae_paper.data.models import load_model


def _spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(spearmanr(a, b).statistic)


def _scores(result: MethodResult) -> dict[int, float]:
    return {f.feature: f.score for f in result.features if f.score is not None}


def measure(study: AutointerpStudy, llm, out: Path, *, classify: ClassifyConfig, tasks: Sequence[str] = TASKS,
            progress=print) -> dict[str, Any]:
    """Score every (layer, method) of ``study`` with ``llm`` (a :class:`Cached` backend, explainer and classifier)
    under each of ``tasks``, and the same features with the token-list stand-in; write the record to ``out``."""
    fragments, acts = fragment_activations(None, study.fragment_spec(), study.sites(),
                                           get_model=lambda: load_model(study.model))
    stand_in = Cached(TokenListBackend(), CallCache(llm.cache.path.with_name("stand-in-calls.sqlite")))
    decompositions = {key: d for key, d in study.decompositions().items() if key[1] in study.methods}
    rows: list[dict[str, Any]] = []
    for (site, method), decomposition in decompositions.items():
        reference = None
        for task in tasks:
            config = replace(study.scoring_config(), scoring=task, classify=classify)
            evaluated, began = getattr(llm.backend, "tokens_evaluated", 0), time.perf_counter()
            result = score_decomposition(decomposition, acts[site], fragments, llm, llm, method=method, site=str(site),
                                         n_features=study.n_features, config=config)
            seconds = time.perf_counter() - began
            features = [f.feature for f in result.features]
            reference = reference or score_decomposition(decomposition, acts[site], fragments, stand_in, stand_in,
                                                         method=method, site=str(site), n_features=len(features),
                                                         features=features, config=study.scoring_config())
            same = score_decomposition(decomposition, acts[site], fragments, stand_in, stand_in, method=method,
                                       site=str(site), n_features=len(features), features=features, config=config)
            ours, theirs, simulated = _scores(result), _scores(same), _scores(reference)
            both = [f for f in ours if f in theirs]
            with_simulation = [f for f in ours if f in simulated]
            summary = result.summary()
            rows.append({
                "site": str(site), "layer": site.layer, "method": method, "task": task, **asdict(summary),
                "stand_in": asdict(same.summary()),
                "spearman_same_task": _spearman([ours[f] for f in both], [theirs[f] for f in both]),
                "spearman_simulation": _spearman([ours[f] for f in with_simulation],
                                                 [simulated[f] for f in with_simulation]),
                "seconds": seconds,
                "tokens_evaluated": getattr(llm.backend, "tokens_evaluated", 0) - evaluated,
                "calls_cached": llm.cache.hits,
            })
            progress(f"{site} {method:8s} {task:9s}: AUROC {summary.mean:.3f} ± {summary.ci:.3f} over "
                     f"{summary.n_scored} features ({summary.n_failed} failed, {summary.n_skipped} skipped), "
                     f"stand-in {rows[-1]['stand_in']['mean']:.3f}; {seconds:.0f} s")
    commit, dirty = git_state()
    record = {"model": llm.backend.label(), "commit": commit[:12] + ("+" if dirty else ""),
              "date": time.strftime("%Y-%m-%d"), "study": study.parameters(), "classify": asdict(classify),
              "rows": rows, "call_timings": llm.cache.timings(llm.backend), "machine": _machine()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, allow_nan=True) + "\n")
    return record


def _machine() -> dict[str, Any]:
    from sae_paper.report.provenance import hardware

    return hardware()


def separates(rows: Sequence[Mapping[str, Any]], task: str) -> dict[str, bool]:
    """Per layer: whether the SAE's 95 % interval lies above every baseline's (the book's ``_clearly_above`` rule:
    the SAE's lower bound above each baseline's upper bound) under ``task``."""
    out = {}
    for site in dict.fromkeys(r["site"] for r in rows):
        here = {r["method"]: r for r in rows if r["site"] == site and r["task"] == task}
        if "sae" not in here or len(here) < 2:
            continue
        sae = here["sae"]
        out[site] = all(sae["mean"] - sae["ci"] > r["mean"] + r["ci"] for m, r in here.items() if m != "sae")
    return out


def budget_section(record: Mapping[str, Any]) -> str:
    """The budget page's section on a real LLM scorer, from one :func:`measure` record."""
    rows = record["rows"]
    lines = [f"Scorer: {record['model']}, explaining each feature from {record['study']['n_explain']} top fragments "
             f"of {record['study']['fragment_length']} tokens, then classifying "
             f"{record['classify']['n_activating']} activating and {record['classify']['n_non_activating']} other "
             f"fragments per feature (detection) or {record['classify']['n_activating']} activating fragments, half "
             f"highlighted right (fuzzing). Measured on {record['machine'].get('cpu_model', '?')}"
             + (f", at commit `{record['commit']}` ({record['date']}): the fragments and the split as that commit drew "
                "them" if record.get("commit") else "") + ".", "",
             "| layer | method | scoring | AUROC (95 % CI) | balanced accuracy | scored / failed / skipped | stand-in AUROC "
             "| rank corr. with stand-in (same scoring / simulation) |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    def number(v):
        return "–" if v is None else f"{v:+.2f}"
    for r in rows:
        lines.append(f"| {r['layer']} | {LABELS.get(r['method'], r['method'])} | {r['task']} | {r['mean']:.3f} ± "
                     f"{r['ci']:.3f} | {r['balanced_mean']:.3f} | {r['n_scored']} / {r['n_failed']} / {r['n_skipped']} "
                     f"| {r['stand_in']['mean']:.3f} | {number(r['spearman_same_task'])} / "
                     f"{number(r['spearman_simulation'])} |")
    for task in dict.fromkeys(r["task"] for r in rows):
        verdicts = separates(rows, task)
        if not verdicts:
            continue
        lines += ["", f"Under {task}, the SAE's interval lies above every baseline's at "
                      f"{sum(verdicts.values())} of {len(verdicts)} layers ("
                  + ", ".join(f"{site}: {'yes' if v else 'no'}" for site, v in verdicts.items()) + ")."]
    cost = cost_sentence(record.get("call_timings", {}))
    if cost and record.get("prompt_tokens_per_second") and record.get("model_gflop_per_token"):
        ceiling = record["matmul_gflops_fp32"] / record["model_gflop_per_token"]
        cost += (f" llama.cpp evaluates {record['prompt_tokens_per_second']:.0f} prompt tokens/s here (best of 3 runs "
                 f"of 384 tokens); torch's fp32 matrix multiply reaches {record['matmul_gflops_fp32']:.0f} GFLOP/s, "
                 f"a dense fp32 ceiling of {ceiling:.0f} tokens/s at {record['model_gflop_per_token']:.1f} GFLOP a token"
                 + ("; llama.cpp is above it because it multiplies the 4-bit weights by 8-bit activations in integer "
                    "arithmetic, not in fp32." if record["prompt_tokens_per_second"] > ceiling else "."))
    run = record.get("run")
    if cost and run:
        cost += (f" This run started from an empty call cache and made all {run['calls_made']} calls: "
                 f"{run['seconds'] / 60:.0f} min from start to end, the SAEs, the fragment pass and the stand-in included."
                 if not run["calls_stored_before"] else
                 f" This run found {run['calls_stored_before']} calls stored by earlier runs and made "
                 f"{run['calls_made']} ({run['seconds'] / 60:.0f} min).")
    return "\n".join(lines + ([cost] if cost else [])) + "\n"


def cost_sentence(timings: Mapping[str, Mapping[str, float]]) -> str:
    """What a feature and the whole measurement cost, from the calls' own timings (:meth:`CallCache.timings`):
    the timed calls' mean seconds per kind, times every stored call of that kind (kinds with no timed call
    are named, and left out of the sums)."""
    timed = {kind: t for kind, t in timings.items() if t["timed"]}
    if not timed:
        return ""
    per_call = ", ".join(f"{kind} {t['mean_seconds']:.1f} s ({t['timed']} of {t['calls']} calls timed)"
                         for kind, t in timed.items())
    untimed = [kind for kind in timings if kind not in timed]
    per_feature = sum(t["mean_seconds"] for t in timed.values())
    total = sum(t["mean_seconds"] * t["calls"] for t in timed.values())
    return (f"\nCost, from the timed calls' means: {per_call}"
            + (f"; no {' or '.join(untimed)} call was timed" if untimed else "") + ". A feature explained and scored "
            f"by {' and '.join(k for k in timed if k != 'explain')} costs {per_feature:.0f} s; the "
            f"{sum(t['calls'] for t in timed.values())} calls of these kinds, {total / 60:.0f} min.")


def study_for(profile: Mapping[str, Any], *, methods: Sequence[str], n_features: int) -> AutointerpStudy:
    """The ``local-llm`` profile's notebook-02 study with these methods and features per method, at one seed."""
    return AutointerpStudy.from_params({**profile, "methods": list(methods), "n_features": n_features, "n_seeds": 1})
