"""The float-rounding check: activations one rounding step apart, the comparison of two builds, the recorded file.

The end-to-end test builds the smoke profile's notebook 01 twice (reference and one-ulp, about a minute each on
2 CPU cores) into a scratch copy of the book.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from sae_paper.book.profiles import BookError
from sae_paper.book.rounding_check import (
    SCRATCH,
    ClaimOutcome,
    check_rounding,
    perturbed_copy,
    read_outcomes,
    rounding_flips,
    write_check,
)
from sae_paper.book.runner import ROUNDING_CHECK, BookLayout
from sae_paper.data.activations import ActivationCache, HarvestSpec, harvest
from sae_paper.data.models import Site
from sae_paper.data.paths import cache_dir, repo_root
from sae_paper.report.claims import load_claims
from sae_paper.report.scoreboard import load_rounding_check, scoreboard_rows

ROOT = repo_root()
SITE = Site("resid_post", 1)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_perturbed_copy_moves_every_value_one_rounding_step_and_stays_a_valid_cache(pythia_random, dtype):
    spec = HarvestSpec("pythia-70m-deduped-random", "pile-openings", "train", 150, 16, dtype, seed=3)
    harvested = harvest(pythia_random, spec, [SITE], batch_size=4, shard_contexts=4, progress=False)[SITE]
    source = ActivationCache(harvested.folder)  # every row harvested, not the 150 asked for
    target = source.folder.parent / "copy" / str(SITE)
    assert perturbed_copy(source.folder, target) == sum(shard["rows"] for shard in source.manifest["shards"])

    copy = ActivationCache(target)  # opened with its checksums verified
    assert copy.n_rows == source.n_rows and len(copy.shards) == len(source.shards) > 1
    before, after = source.read_aligned(), copy.read_aligned()
    assert torch.equal(before[1], after[1])  # the same rows kept
    stored = getattr(torch, dtype)
    x, y = before[0].to(stored), after[0].to(stored)
    normal = x.abs() >= torch.finfo(stored).tiny  # a subnormal's step is larger than itself times epsilon
    assert torch.equal(y[x == 0], x[x == 0]) and normal.float().mean() > 0.9
    assert (y[normal] != x[normal]).all()  # every normal value moved ...
    up = torch.nextafter(torch.nextafter(x.abs(), torch.tensor(float("inf"), dtype=stored)),
                         torch.tensor(float("inf"), dtype=stored))
    assert (y.abs() <= up).all() and (y.abs() >= x.abs()).all() and torch.equal(y.sign(), x.sign())  # ... by 1-2 ulps


def test_a_missing_reference_is_one_line_naming_what_to_build(tmp_path):
    with pytest.raises(BookError, match=r"no harvested activations in .*nowhere: build the book"):
        perturbed_copy(tmp_path / "nowhere", tmp_path / "copy")
    with pytest.raises(BookError, match="no scoreboard.json in .*: build the book first"):
        read_outcomes(tmp_path)


def outcome(verdict, trend="flat", seeds=(), ours="x"):
    return ClaimOutcome(verdict, trend, tuple(seeds), tuple(range(len(seeds))), ours)


def test_flips_name_the_verdict_the_seeds_and_the_trend_that_moved_and_nothing_else():
    reference = {"same": outcome("partly", ours="0.51"), "verdict": outcome("partly", seeds=("partly", "partly", "reproduced")),
                 "seed": outcome("not", seeds=("not", "not", "partly")), "trend": outcome("reproduced", "converging"),
                 "numbers-only": outcome("not", ours="SAE 0.31")}
    perturbed = {"same": outcome("partly", ours="0.51"), "verdict": outcome("reproduced", seeds=("partly", "reproduced", "reproduced")),
                 "seed": outcome("not", seeds=("not", "not", "not")), "trend": outcome("reproduced", "flat"),
                 "numbers-only": outcome("not", ours="SAE 0.32")}
    flips = rounding_flips(reference, perturbed)
    assert set(flips) == {"verdict", "seed", "trend"}
    assert flips["verdict"] == ("verdict: partly in the reference build, reproduced in the one-ulp build; "
                                "seed verdicts (reference → one-ulp): seed 1: partly → reproduced")
    assert flips["seed"] == "seed verdicts (reference → one-ulp): seed 2: partly → not; the majority, not, holds"
    assert flips["trend"] == ("trend: converging in the reference build, flat in the one-ulp build; "
                              "the verdict, reproduced, holds")
    assert rounding_flips(reference, reference) == {}
    with pytest.raises(BookError, match="recorded different claims"):
        rounding_flips(reference, {k: v for k, v in perturbed.items() if k != "numbers-only"})


def test_the_recorded_check_is_what_the_scoreboard_marks(tmp_path):
    flips = {"fig8-ratio": "verdict: partly in the reference build, reproduced in the one-ulp build"}
    path = write_check(tmp_path / "checks" / "rounding.yaml", flips, profile="default", notebooks=["02_autointerp"],
                       commit="abc123", machine="AMD EPYC (avx2), 2 usable cores", compared=26, moved=18, seconds=1234.4)
    text = path.read_text()
    assert text.startswith("# What float rounding alone does") and "sae-paper check-rounding --profile default" in text
    stored = yaml.safe_load(text)
    assert stored["commit"] == "abc123" and stored["compared"] == 26 and stored["one_ulp_build_seconds"] == 1234
    assert load_rounding_check(path) == flips
    claims = load_claims()
    rows = scoreboard_rows([], claims, load_rounding_check(path))
    assert next(row for row in rows if row["id"] == "fig8-ratio")["rounding_note"] == flips["fig8-ratio"]


@pytest.mark.slow
def test_the_check_builds_twice_one_rounding_step_apart_and_records_what_moved(tmp_path):
    """Notebook 01 of the smoke profile: the one-ulp build trains SAEs that differ from the reference's, but
    only a little; every claim of the notebook is compared and the file says so; the reference book keeps its
    records, and its scoreboard reads the new file."""
    book = tmp_path / "book"
    book.mkdir()
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / "book" / name, book / name)
    layout = BookLayout(ROOT / "notebooks", book, ROOT / "profiles")
    result = check_rounding("smoke", notebooks=["01_training"], layout=layout, keep_scratch=True, log=print)

    records = json.loads((book / "generated" / "claims" / "01_training.json").read_text())["records"]
    assert result.compared == len(records) > 5 and result.path == book / ROUNDING_CHECK
    stored = yaml.safe_load(result.path.read_text())
    assert stored["notebooks"] == ["01_training"] and stored["compared"] == len(records)
    assert (stored["flips"] or {}) == result.flips
    assert result.moved >= 1  # train-runtime's measured throughput, at least
    board = json.loads((book / "generated" / "scoreboard.json").read_text())["claims"]
    assert {row["id"] for row in board if "rounding-noise" in row["marks"]} == set(result.flips)

    def sae_weights(root: Path) -> dict[str, torch.Tensor]:
        """Each trained SAE's dictionary (tied: ``M``; untied: its decoder ``M_d``), by folder name."""
        from safetensors.torch import load_file

        weights = {path.parent.name: load_file(path) for path in sorted((root / "saes").rglob("sae.safetensors"))}
        return {name: tensors["M"] if "M" in tensors else tensors["M_d"] for name, tensors in weights.items()}

    reference, perturbed = sae_weights(cache_dir()), sae_weights(cache_dir(SCRATCH, "cache"))
    assert reference.keys() == perturbed.keys() and len(reference) >= 3
    for name in reference:
        assert not torch.equal(reference[name], perturbed[name]), name  # the one-ulp build trained on other bits
        assert torch.linalg.norm(reference[name] - perturbed[name]) < 0.2 * torch.linalg.norm(reference[name]), name
