"""What float rounding alone does to the book's verdicts: the recorded check behind the scoreboard's rounding marks.

Why
---
A verdict that flips when the same computation is rounded differently is not decided by the
science at the book's budget. Training amplifies a one-ulp difference (an SAE's decoder moves
by a few percent after a thousand steps), and a verdict whose deciding number sits next to a
threshold can land on either side. The scoreboard marks such claims *within rounding noise*;
the mark must come from a check anyone can rerun on the current code, not from prose, and it
must be redone whenever the rules, the budgets or the seeds change.

How
---
``sae-paper check-rounding --profile NAME`` (:func:`check_rounding`):

1. builds the book as usual (a rebuild reuses every notebook whose inputs are unchanged): the
   *reference*;
2. copies every cached activation the profile reads (training and held-out rows, every site
   and text) into a scratch cache, each value multiplied by ``1 + ε`` of its dtype (float32:
   ``1 + 2⁻²³``, so each value moves by one or two units in its last place): the same text,
   the same model, the same code, one rounding step apart (:func:`perturbed_copy`);
3. executes every notebook again on that cache, in a scratch book folder (the reference's
   pages and caches are not touched; the converted model is shared): the *one-ulp* build;
4. compares the two builds' claims (:func:`rounding_flips`): the headline verdict, each seed's
   verdict and the trend; every claim where one differs is written, with what moved, to the
   book's ``checks/rounding.yaml`` (:data:`~sae_paper.book.runner.ROUNDING_CHECK`), with the
   commit, the machine and the number of records whose numbers moved at all; the reference's
   scoreboard is rendered again with the new marks.

The scratch cache is removed at the end (``--keep-scratch`` keeps it); an interrupted check
resumes there, with the SAEs it already trained.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sae_paper.book.execute import environment
from sae_paper.book.harvest import book_harvest_requests
from sae_paper.book.lanes import threads_per_lane
from sae_paper.book.profiles import BookError, profile_path
from sae_paper.book.progress import load_timings, write_timings
from sae_paper.book.runner import GENERATED, ROUNDING_CHECK, SCOREBOARD_JSON, BookLayout, run_book, write_scoreboard
from sae_paper.data import cache
from sae_paper.data.activations import MANIFEST
from sae_paper.data.paths import BOOK_ENV, CACHE_ENV, MODEL_CACHE_ENV, cache_dir, model_cache_dir

SCRATCH = "rounding-check"
"""The scratch folder under the cache root: the perturbed activations, the one-ulp build's caches and book."""

HEADER = """\
# What float rounding alone does to the book: the recorded check behind the scoreboard's
# "within rounding noise" marks (sae_paper.report.scoreboard.load_rounding_check).
# Written by `sae-paper check-rounding --profile {profile}` (sae_paper.book.rounding_check); run it again
# instead of editing this file. `flips` lists every claim whose verdict, a seed's verdict or trend differed
# between the two builds; every claim not listed was the same in both.
"""


def perturbed_copy(source: Path, target: Path) -> int:
    """Copy one site's activation cache from ``source`` to ``target`` with every stored value multiplied by
    ``1 + ε`` of its dtype, the manifest's checksums written for the new shards; the number of rows copied.

    Each normal value moves by one or two units in its last place; zeros, and the rare subnormals (whose step is
    larger than themselves times ε), stay as they are."""
    from safetensors.torch import load_file, save_file

    manifest_path = Path(source) / MANIFEST
    if not manifest_path.is_file():
        raise BookError(f"no harvested activations in {source}: build the book with this profile first")
    manifest = json.loads(manifest_path.read_text())
    target = Path(target)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    rows = 0
    for shard in manifest["shards"]:
        tensors = load_file(Path(source) / shard["file"])
        values = tensors["activations"]
        factor = 1 + torch.finfo(values.dtype).eps
        tensors["activations"] = values * torch.tensor(factor, dtype=values.dtype)
        save_file(tensors, target / shard["file"])
        shard["sha256"] = cache.sha256_file(target / shard["file"])
        rows += len(values)
    cache.write_json_atomic(target / MANIFEST, manifest)
    return rows


@dataclass(frozen=True)
class ClaimOutcome:
    """What a build concluded about one claim: the parts a rounding check compares."""

    verdict: str
    trend: str
    seed_verdicts: tuple[str, ...]
    seeds: tuple[int, ...]
    ours: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "ClaimOutcome":
        """From a row of ``scoreboard.json``."""
        return cls(row.get("verdict") or "", row.get("trend") or "", tuple(row.get("seed_verdicts") or ()),
                   tuple(row.get("seeds") or ()), row.get("ours") or "")


def read_outcomes(generated: Path, notebooks: Sequence[str] | None = None) -> dict[str, ClaimOutcome]:
    """Claim id → outcome, for every claim a build recorded (its ``scoreboard.json``), or those of ``notebooks``."""
    path = Path(generated) / SCOREBOARD_JSON
    if not path.is_file():
        raise BookError(f"no {SCOREBOARD_JSON} in {generated}: build the book first")
    rows = json.loads(path.read_text())["claims"]
    return {row["id"]: ClaimOutcome.from_row(row) for row in rows
            if row.get("verdict") and (notebooks is None or row.get("notebook") in notebooks)}


def rounding_flips(reference: Mapping[str, ClaimOutcome], perturbed: Mapping[str, ClaimOutcome],
                   *, names: tuple[str, str] = ("reference", "one-ulp")) -> dict[str, str]:
    """Claim id → what differed between two builds, in words: the headline verdict, a seed's verdict or the
    trend. Claims whose three agree are left out, whatever their numbers did (a claim only one build recorded
    is an error: the builds did not run the same notebooks)."""
    missing = sorted(set(reference) ^ set(perturbed))
    if missing:
        raise BookError(f"the two builds recorded different claims ({', '.join(missing)}): compare builds of the same notebooks")
    a, b = names
    flips: dict[str, str] = {}
    for claim, before in reference.items():
        after = perturbed[claim]
        parts = []
        if before.verdict != after.verdict:
            parts.append(f"verdict: {before.verdict} in the {a} build, {after.verdict} in the {b} build")
        if before.seed_verdicts != after.seed_verdicts:
            moved = [f"seed {s}: {x} → {y}" for s, x, y in zip(before.seeds, before.seed_verdicts, after.seed_verdicts)
                     if x != y]
            held = "" if before.verdict != after.verdict else f"; the majority, {before.verdict}, holds"
            parts.append(f"seed verdicts ({a} → {b}): {', '.join(moved)}{held}")
        if before.trend != after.trend:
            held = "" if before.verdict != after.verdict else f"; the verdict, {before.verdict}, holds"
            parts.append(f"trend: {before.trend or 'none'} in the {a} build, {after.trend or 'none'} in the {b} build{held}")
        if parts:
            flips[claim] = "; ".join(parts)
    return flips


def write_check(path: Path, flips: Mapping[str, str], *, profile: str, notebooks: Sequence[str], commit: str,
                machine: str, compared: int, moved: int, seconds: float) -> Path:
    """``checks/rounding.yaml``: the flips (what :func:`~sae_paper.report.scoreboard.load_rounding_check` reads) and
    how they were measured."""
    import yaml

    body = {
        "check": "one-ulp",
        "profile": profile,
        "notebooks": list(notebooks),
        "commit": commit,
        "recorded": time.strftime("%Y-%m-%d"),
        "machine": machine,
        "builds": ["reference", "one-ulp"],
        "perturbation": "every cached activation the book reads (training and held-out rows, every site and text) "
                        "multiplied by 1 + the epsilon of its dtype (float32: 1 + 2^-23), the same text, model and code",
        "compared": compared,
        "records_with_moved_numbers": moved,
        "one_ulp_build_seconds": round(seconds),
        "flips": dict(flips),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = HEADER.format(profile=profile) + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=100)
    path.write_text(text)
    return path


@dataclass(frozen=True)
class RoundingCheck:
    """What :func:`check_rounding` found and where it wrote it."""

    path: Path
    flips: dict[str, str]
    compared: int
    moved: int


def check_rounding(profile: str | Path, overrides: Sequence[str] = (), notebooks: Sequence[str] | None = None, *,
                   layout: BookLayout | None = None, lanes: int | None = None, keep_scratch: bool = False,
                   log: Callable[[str], None] = print) -> RoundingCheck:
    """Build the book (the reference), build it again on activations one rounding step apart, and record in the
    book's ``checks/rounding.yaml`` every claim whose verdict, seed verdicts or trend differ (see the module).

    ``notebooks``: check only these (their claims alone are compared and recorded: the file then describes them,
    and the scoreboard marks no other claim)."""
    from sae_paper.book.costs_page import machine_line
    from sae_paper.data.cache import git_state
    from sae_paper.report.provenance import hardware

    layout = layout or BookLayout.default()
    profile_name = profile_path(profile, layout.profiles_dir).stem
    earlier = {name: load_timings(profile_name, name) for name in notebooks or layout.notebooks()}
    log("rounding check: the reference build")
    reference_result = run_book(profile, overrides, notebooks, layout=layout, build=False, lanes=lanes, log=log)
    reference_generated = layout.book_dir / GENERATED
    reference = read_outcomes(reference_generated, reference_result.notebooks)

    root = cache_dir()
    scratch = cache_dir(SCRATCH)
    scratch_cache, scratch_book = scratch / "cache", scratch / "book"
    requests = book_harvest_requests(reference_result.parameters)
    folders = sorted({spec.folder() / str(site) for spec, site in requests})
    started = time.perf_counter()
    rows = sum(perturbed_copy(folder, scratch_cache / folder.relative_to(root)) for folder in folders)
    log(f"rounding check: {len(folders)} activation caches ({rows:,} rows) copied one rounding step apart "
        f"in {time.perf_counter() - started:.0f} s")

    # The lanes start the notebooks expected to take longest first; the one-ulp build computes everything again, so
    # it is expected to take what the slower of the reference and the run before it took (a warm reference is quick).
    expected = {name: max(earlier.get(name) or [], load_timings(profile_name, name) or [], key=sum)
                for name in reference_result.notebooks}
    started = time.perf_counter()
    scratch_book.mkdir(parents=True, exist_ok=True)
    with environment(**{CACHE_ENV: str(scratch_cache), MODEL_CACHE_ENV: str(model_cache_dir()), BOOK_ENV: str(scratch_book)}):
        for name, cells in expected.items():
            if cells:
                write_timings(profile_name, name, cells)
        log("rounding check: the one-ulp build")
        one_ulp = run_book(profile, overrides, notebooks, layout=BookLayout(layout.notebooks_dir, scratch_book,
                                                                             layout.profiles_dir),
                           build=False, lanes=lanes, log=log)
    seconds = time.perf_counter() - started
    perturbed = read_outcomes(scratch_book / GENERATED, reference_result.notebooks)

    flips = rounding_flips(reference, perturbed)
    moved = sum(reference[claim].ours != perturbed[claim].ours for claim in reference)
    commit, dirty = git_state()
    machine_hardware = hardware()
    threads = threads_per_lane(one_ulp.lanes) if one_ulp.lanes > 1 else machine_hardware["torch_threads"]
    machine = machine_line({**machine_hardware, "torch_threads": threads}) + (
        f" in each of {one_ulp.lanes} lanes side by side" if one_ulp.lanes > 1 else "")
    path = write_check(layout.book_dir / ROUNDING_CHECK, flips, profile=reference_result.profile,
                       notebooks=reference_result.notebooks,
                       commit=commit + (" (with uncommitted changes)" if dirty else ""),
                       machine=machine, compared=len(reference), moved=moved, seconds=seconds)
    write_scoreboard(reference_generated)
    if not keep_scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    log(f"rounding check: {len(flips)} of {len(reference)} claims flipped ({', '.join(flips) or 'none'}); "
        f"{moved} records' numbers moved; written to {path} (sae-paper book renders the pages with it)")
    return RoundingCheck(path, flips, len(reference), moved)
