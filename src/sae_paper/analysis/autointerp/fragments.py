"""Fragments of text, each feature's activation on every token, and the fragments autointerp shows.

Section 3 of the paper, step 1 and 5 (after Bills et al. 2023), with the conventions of the
paper's code and of OpenAI's ``neuron_explainer`` (:mod:`sae_paper.core.reference`):

- **fragments**: one random 64-token window of each document (seeded), as the paper's code
  takes them (the paper took the first 50,000 lines of OpenWebText; here the WebText document
  openings of the shared folder, topped up from Wikipedia when a profile asks for more than
  WebText has); a window with a token that decodes to U+FFFD (a split UTF-8 character) is
  dropped, as the paper's code drops it. Unlike the paper's code, each fragment is run as
  ``[BOS] + 64 tokens``: every SAE and baseline here was fitted on contexts that start with BOS,
  and without it the fragment's first token would sit at the model's attention sink, a position
  no decomposition saw (:mod:`sae_paper.data.text`). The activation of every feature is read on
  the 64 tokens.
- **rescaling**: the explainer sees a feature's activations as integers 0..10,
  ``floor(10 · a / a_max)`` capped at 10, with ``a_max`` the largest activation over the
  explainer's own fragments (the reference's ``normalize_activations`` and
  ``calculate_max_activation``; negatives are already 0:
  :func:`~sae_paper.core.decompositions.interpretable_codes`).
- **selection**: the 20 fragments with the highest maximum activation are the *top* fragments,
  split by the reference's fixed interleaved ranks (:func:`~sae_paper.core.reference.interleaved_split`):
  ranks 0, 4, 8, 12, 16 for the explainer, 2, 6, 10, 14, 18 for the simulator, so the top
  fragment is always explained and the explainer's maximum is the feature's. The *random*
  fragments are the reference's random sample: 15 fragments drawn (seeded) among those where the
  feature's activation has non-zero variance (outside the top 20 when there are enough), of which
  those at 1, 4, 7, 10, 13 are simulated. A feature with fewer than ``min_fragments`` (20)
  fragments of non-zero variance is **skipped** and counted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from jaxtyping import Float, Int
from torch import Tensor

from sae_paper.core.decompositions import Decomposition, interpretable_codes
from sae_paper.core.reference import interleaved_split
from sae_paper.data import cache
from sae_paper.data.models import Site, model_spec
from sae_paper.data.paths import cache_dir
from sae_paper.errors import SaePaperError


@dataclass(frozen=True)
class Fragments:
    """Token fragments ``[n_fragments, length]`` (BOS not included) and each token's text."""

    tokens: Int[Tensor, "n_fragments pos"]
    token_strings: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        if self.tokens.ndim != 2 or len(self.token_strings) != len(self.tokens):
            raise SaePaperError(f"fragments: tokens {tuple(self.tokens.shape)} and {len(self.token_strings)} strings disagree")

    @property
    def n_fragments(self) -> int:
        return self.tokens.shape[0]

    @property
    def length(self) -> int:
        return self.tokens.shape[1]

    @classmethod
    def from_token_ids(cls, tokens: Tensor, tokenizer) -> "Fragments":
        strings = tuple(tuple(tokenizer.decode([int(t)]) for t in row) for row in tokens)
        return cls(tokens.long(), strings)


REPLACEMENT_CHARACTER = "\ufffd"
"""What a token that holds part of a UTF-8 character decodes to on its own; the paper's code drops such fragments."""


def load_fragments(tokenizer, *, n_fragments: int, length: int = 64, sources: Sequence[str] = ("webtext", "enwiki2015"),
                   seed: int = 0) -> Fragments:
    """One random ``length``-token window of each document long enough, from ``sources`` in order (train split),
    dropping a window with a token that decodes to U+FFFD (the paper's code: ``interpret.py``,
    ``make_feature_activation_dataset``). ``seed`` orders the documents and draws each window's start, every start
    of the document equally likely (one draw per document long enough, a dropped window included)."""
    from sae_paper.data.text import iter_documents

    generator = torch.Generator().manual_seed(seed)
    rows: list[list[int]] = []
    strings: list[tuple[str, ...]] = []
    for source in sources:
        for text in iter_documents(source, split="train", seed=seed):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) < length:
                continue
            start = int(torch.randint(len(ids) - length + 1, (1,), generator=generator))
            window = ids[start : start + length]
            decoded = tuple(tokenizer.decode([t]) for t in window)
            if any(REPLACEMENT_CHARACTER in token for token in decoded):
                continue
            rows.append(window)
            strings.append(decoded)
            if len(rows) == n_fragments:
                return Fragments(torch.tensor(rows, dtype=torch.long), tuple(strings))
    raise SaePaperError(f"sources {', '.join(sources)} give only {len(rows)} fragments of {length} tokens; {n_fragments} asked for")


@dataclass(frozen=True)
class FragmentSpec:
    """What a fragment-activation cache holds; its folder is keyed by these fields."""

    model: str
    n_fragments: int
    length: int = 64
    sources: tuple[str, ...] = ("webtext", "enwiki2015")
    seed: int = 0

    def folder(self) -> Path:
        depends = {**asdict(self), "computation": cache.version("fragments")}
        key = hashlib.sha256(json.dumps(depends, sort_keys=True).encode()).hexdigest()[:12]
        return cache_dir("autointerp", "fragments", self.model, key)


def missing_sites(spec: FragmentSpec, sites: Sequence[Site]) -> list[Site]:
    """The sites of ``sites`` whose activations on ``spec``'s fragments are not cached (or were computed by an older
    version of the code), read from each file's record alone: what a forward pass would have to compute."""
    from safetensors import safe_open

    missing = []
    for site in sites:
        path, record = spec.folder() / f"{site}.safetensors", None
        if path.is_file():
            with safe_open(path, framework="pt") as handle:
                record = json.loads((handle.metadata() or {}).get("computed", "null"))
        if record is None or not cache.reusable("fragments", path, record):
            missing.append(site)
    return missing


def fragment_activations(model, spec: FragmentSpec, sites: Sequence[Site], *, batch_size: int = 32,
                         get_model=None) -> tuple[Fragments, dict[Site, Float[Tensor, "n_fragments pos d"]]]:
    """The fragments and each site's activations on them ``[n_fragments, length, d]``, cached on disk.

    Sites missing from the cache are computed in one forward pass per batch that stops at the
    deepest of them. ``model`` may be None when ``get_model`` (a zero-argument callable) gives it.
    """
    from safetensors import safe_open

    folder = spec.folder()
    fragments_file = folder / "fragments.json"
    missing = missing_sites(spec, sites)
    acts: dict[Site, Tensor] = {}
    for site in sites:
        if site not in missing:
            with safe_open(folder / f"{site}.safetensors", framework="pt") as handle:
                acts[site] = handle.get_tensor("activations")
    if fragments_file.is_file() and not missing:
        stored = json.loads(fragments_file.read_text())
        return Fragments(torch.tensor(stored["tokens"]), tuple(tuple(s) for s in stored["strings"])), acts
    model = model if model is not None else get_model()
    if fragments_file.is_file():
        stored = json.loads(fragments_file.read_text())
        fragments = Fragments(torch.tensor(stored["tokens"]), tuple(tuple(s) for s in stored["strings"]))
    else:
        fragments = load_fragments(model.tokenizer, n_fragments=spec.n_fragments, length=spec.length,
                                   sources=spec.sources, seed=spec.seed)
        cache.write_json_atomic(fragments_file, {"tokens": fragments.tokens.tolist(), "strings": fragments.token_strings,
                                                 "computed": cache.stamp("fragments", fragments_file)})
    if missing:
        bos = model_spec(spec.model).bos_token_id
        captured: dict[Site, list[Tensor]] = {site: [] for site in missing}

        def capture(site: Site):
            def hook(activation: Tensor, hook) -> Tensor:
                captured[site].append(activation[:, 1:].float().cpu().clone())
                return activation
            return hook

        hooks = [(site.hook_name, capture(site)) for site in missing]
        stop = max(site.layer for site in missing) + 1
        with torch.inference_mode():
            for start in range(0, fragments.n_fragments, batch_size):
                chunk = fragments.tokens[start : start + batch_size]
                tokens = torch.cat([torch.full((len(chunk), 1), bos, dtype=torch.long), chunk], dim=1)
                model.run_with_hooks(tokens, stop_at_layer=stop, fwd_hooks=hooks)
        for site in missing:
            acts[site] = torch.cat(captured[site])
            _store_activations(folder / f"{site}.safetensors", acts[site])
    return fragments, acts


def _store_activations(path: Path, activations: Tensor) -> None:
    """One site's activations on the fragments, atomically, with the record of the code that computed them."""
    from safetensors.torch import save_file

    metadata = {"computed": json.dumps(cache.stamp("fragments", path))}
    cache.atomic_write(path, lambda tmp: save_file({"activations": activations.contiguous()}, tmp, metadata=metadata))


# --------------------------------------------------------------------------------------
# Feature activations on the fragments
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureChoice:
    """Which features of a decomposition were scored, and how many were skipped."""

    features: tuple[int, ...]
    """The scored features, in the seeded order they were drawn."""
    skipped: int
    """Features drawn and skipped (fewer than ``min_fragments`` fragments of non-zero variance) before ``features`` was full."""
    skipped_total: int
    """Features of the whole decomposition that would be skipped."""
    n_features: int


@torch.no_grad()
def feature_codes(decomposition: Decomposition, activations: Float[Tensor, "n_fragments pos d"], features: Sequence[int] | None = None,
                  *, chunk: int = 4096) -> Float[Tensor, "n_fragments pos n_chosen"]:
    """``interpretable_codes`` of every token, for the chosen features (all by default)."""
    n, length, d = activations.shape
    rows = activations.reshape(-1, d)
    index = None if features is None else torch.as_tensor(list(features), dtype=torch.long)
    out = []
    for start in range(0, len(rows), chunk):
        codes = interpretable_codes(decomposition, rows[start : start + chunk])
        out.append(codes if index is None else codes[:, index])
    return torch.cat(out).reshape(n, length, -1)


@torch.no_grad()
def varying_fragment_counts(decomposition: Decomposition, activations: Float[Tensor, "n_fragments pos d"],
                            keep: Sequence[int] = (), *, fragments_per_chunk: int = 64
                            ) -> tuple[Int[Tensor, "n_features"], Float[Tensor, "n_fragments pos n_keep"]]:  # noqa: F821 (a jaxtyping dimension)
    """For each feature, the number of fragments on which its activation has non-zero variance; and the
    codes of the features ``keep``, read from the same pass (encoding the fragments is most of scoring's cost)."""
    counts = torch.zeros(decomposition.n_features, dtype=torch.long)
    index = torch.as_tensor(list(keep), dtype=torch.long)
    kept = []
    for start in range(0, activations.shape[0], fragments_per_chunk):
        codes = feature_codes(decomposition, activations[start : start + fragments_per_chunk])
        counts += (codes.amax(1) > codes.amin(1)).sum(0)
        kept.append(codes[..., index])
    return counts, torch.cat(kept) if kept else activations.new_zeros(0, activations.shape[1], len(index))


def feature_order(n_features: int, seed: int) -> list[int]:
    """The seeded random order in which :func:`choose_features` draws features."""
    return torch.randperm(n_features, generator=torch.Generator().manual_seed(seed)).tolist()


def choose_features(counts: Tensor, n_features: int, *, min_fragments: int = 20, seed: int = 0) -> FeatureChoice:
    """Up to ``n_features`` features drawn in a seeded random order, skipping those below ``min_fragments``."""
    chosen, skipped = [], 0
    for feature in feature_order(len(counts), seed):
        if len(chosen) == n_features:
            break
        if counts[feature] >= min_fragments:
            chosen.append(feature)
        else:
            skipped += 1
    return FeatureChoice(tuple(chosen), skipped, int((counts < min_fragments).sum()), len(counts))


def first_features(counts: Tensor, n: int, *, min_fragments: int = 20) -> FeatureChoice:
    """Features ``0..n-1`` in dictionary order (Table 1), with those below ``min_fragments`` skipped."""
    chosen = tuple(f for f in range(min(n, len(counts))) if counts[f] >= min_fragments)
    return FeatureChoice(chosen, min(n, len(counts)) - len(chosen), int((counts < min_fragments).sum()), len(counts))


def rescale(activations: Tensor, max_activation: float) -> Tensor:
    """Integers 0..10 as the explainer sees them: ``floor(10 · relu(a) / max)`` capped at 10, all zero when ``max ≤ 0``
    (the reference's ``normalize_activations``: :func:`~sae_paper.core.reference.floor_scale` over a tensor, the same
    float64 operations; ``max`` is :func:`~sae_paper.core.reference.explainer_max` over the explainer's fragments)."""
    if max_activation <= 0:
        return torch.zeros_like(activations, dtype=torch.long)
    return torch.floor(10 * activations.double().clamp(min=0) / max_activation).clamp(max=10).long()


@dataclass(frozen=True)
class Selection:
    """One feature's fragments for explain → simulate → score (indices into the fragments)."""

    explain: tuple[int, ...]
    """Top fragments shown to the explainer."""
    top: tuple[int, ...]
    """Other top fragments the simulator predicts."""
    random: tuple[int, ...]
    """Random fragments with non-zero variance the simulator predicts."""


def select_fragments(codes: Float[Tensor, "n_fragments pos"], *, n_top: int = 20, n_explain: int = 5, n_simulate_top: int = 5,
                     n_random: int = 5, seed: int = 0) -> Selection:
    """Top fragments by maximum activation, split by the reference's fixed interleaved ranks
    (:func:`~sae_paper.core.reference.interleaved_split` of ``n_top``: the first ``n_explain`` of its explain ranks, the
    first ``n_simulate_top`` of its simulate ranks), and the random fragments: the reference's random sample of
    ``3 · (n_top // 4)`` fragments drawn (``seed``) among those with non-zero variance, outside the top ``n_top``
    when there are enough, of which those at its valid split (1, 4, 7, …) are simulated. Only the random sample
    depends on ``seed``. A pool smaller than the sample gives the valid split's fragments it holds, then its others."""
    split = interleaved_split(n_top)
    per_split = len(split.explain)
    if max(n_explain, n_simulate_top, n_random) > per_split:
        raise SaePaperError(f"n_explain, n_simulate_top and n_random ({n_explain}, {n_simulate_top}, {n_random}) must not "
                            f"exceed n_top // 4 ({per_split}): the reference splits the top {n_top} into 4")
    maxima = codes.amax(1)
    order = maxima.argsort(descending=True, stable=True)[:n_top]
    top = order[maxima[order] > 0].tolist()
    explain = [top[rank] for rank in split.explain[:n_explain] if rank < len(top)]
    sim_top = [top[rank] for rank in split.simulate[:n_simulate_top] if rank < len(top)]
    varying = torch.nonzero(maxima > codes.amin(1)).flatten().tolist()
    in_top, shown = set(top), set(explain) | set(sim_top)
    outside = [i for i in varying if i not in in_top]
    pool = outside if len(outside) >= n_random else [i for i in varying if i not in shown]
    generator = torch.Generator().manual_seed(seed)
    sample = [pool[i] for i in torch.randperm(len(pool), generator=generator)[: 3 * per_split].tolist()]
    valid = [i for i in split.simulate_random[:n_random] if i < len(sample)]
    rest = [i for i in range(len(sample)) if i not in valid]
    return Selection(tuple(explain), tuple(sim_top), tuple(sample[i] for i in (valid + rest)[:n_random]))


@dataclass(frozen=True)
class Moments:
    """A feature's activation distribution over every fragment token (Table 2)."""

    mean: float
    variance: float
    skew: float
    kurtosis: float
    """Excess kurtosis (0 for a normal distribution)."""


def moments(values: Tensor) -> Moments:
    x = values.double().flatten()
    mean = x.mean()
    centred = x - mean
    var = centred.pow(2).mean()
    if var <= 0:
        return Moments(float(mean), 0.0, float("nan"), float("nan"))
    skew = centred.pow(3).mean() / var.pow(1.5)
    kurt = centred.pow(4).mean() / var.pow(2) - 3
    return Moments(float(mean), float(var), float(skew), float(kurt))
