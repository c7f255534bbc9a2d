"""The paper profile's rehearsal: every code path of ``profiles/paper.yaml``, every budget shrunk.

``sae-paper book --profile paper --rehearse`` runs the book on :func:`rehearsal_profile` of the
profile it reads, so the rehearsal is derived in code and cannot drift from ``paper.yaml``:

- each model becomes its random-weight twin (``pythia-410m-deduped`` → ``pythia-410m-deduped-random``,
  the same architecture built offline: :mod:`sae_paper.data.models`), and a random-model control that is now the
  model itself is taken at seed 1 (``pythia-70m-deduped-random-seed1``);
- every size in :data:`FLOORS` (token budgets, fragment and prompt counts, ACDC's exact features,
  thresholds, seeds) is multiplied by the one factor :data:`REHEARSAL_SCALE`, rounded up, and
  floored at the least its code path needs (a list of budgets keeps its proportions: its
  largest entry is floored, the others follow it);
- everything else is the paper's: the dtype (float16 harvest), the sites and layers
  (Pythia-410M's 24), the alpha, ratio and epoch sweeps, the ordering (``acdc``), the backends;
- an ``openai-compatible`` backend is pointed at a local OpenAI-speaking server on 127.0.0.1
  (:class:`~sae_paper.analysis.autointerp.testserver.OpenAITestServer`), started for the run by
  :func:`rehearsal_server`, instead of the network.

The numbers the rehearsal prints mean nothing; that it runs end to end is the point.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Any

REHEARSAL_SCALE = 1e-5
"""The one factor every budget of the profile is multiplied by (then floored: 10M activations → 620)."""

SUFFIX = "-rehearsal"
"""Appended to the profile's name: the rehearsal's timings and stored notebooks are its own."""

FLOORS: dict[str, int] = {
    # activation rows and text tokens
    "n_tokens": 620, "mlp_n_tokens": 620, "fig17_n_tokens": 620, "tree_n_tokens": 620, "news_tokens": 620,
    "code_tokens": 620, "eval_tokens": 62, "ica_rows": 1000, "token_budgets": 620, "sae_budgets": 620,
    "context_length": 32,
    # autointerp: the fragment pool must hold the largest budget, each budget at least min_fragments (20)
    "n_fragments": 80, "fragment_budgets": 80, "n_features": 6, "ica_max_iter": 20,
    # IOI patching: prompts, thresholds, ACDC's exactly patched features, attribution steps
    "n_prompts": 6, "n_thresholds": 4, "n_exact": 3, "attribution_steps": 1,
    # case studies and appendices
    "tree_contexts": 4, "ablation_examples": 3, "min_fires": 2, "rare_contexts": 3,
    "n_seeds": 2,
}
"""Each budget the rehearsal shrinks → the least its code path needs (for a list: its largest entry)."""

_URL_PLACEHOLDER = "rehearsal://local-server"
"""The ``base_url`` a rehearsal profile holds until :func:`rehearsal_server` puts the server's address in."""


def _shrink(value: Any, floor: int, scale: float) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return max(floor, math.ceil(round(value * scale, 6)))  # round first: 4e8 × 1e-5 is 4000.000…1
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        top = max(value)
        new_top = max(floor, math.ceil(round(top * scale, 6)))
        return [math.ceil(v * new_top / top) for v in value]
    return value


def rehearsal_entry(params: Mapping[str, Any], scale: float = REHEARSAL_SCALE) -> dict[str, Any]:
    """One notebook's profile entry, rehearsed (see the module docstring)."""
    from sae_paper.data.models import MODELS

    entry = {}
    for key, value in params.items():
        if key in FLOORS:
            value = _shrink(value, FLOORS[key], scale)
        elif key == "model" and isinstance(value, str) and value in MODELS and MODELS[value].weights == "hub":
            value = f"{value}-random"
        entry[key] = value
    if entry.get("model") in entry.get("controls", ()):  # the model became its random twin: the control is at seed 1
        from sae_paper.data.models import seeded_model_name

        entry["controls"] = [seeded_model_name(c, 1) if c == entry["model"] else c for c in entry["controls"]]
    if "openai-compatible" in (entry.get("explainer"), entry.get("simulator")):
        entry["base_url"] = _URL_PLACEHOLDER
    return entry


def rehearsal_profile(profile: Mapping[str, Mapping[str, Any]], scale: float = REHEARSAL_SCALE) -> dict[str, dict[str, Any]]:
    """A profile (notebook → parameters) rehearsed: :func:`rehearsal_entry` of each notebook's entry."""
    return {name: rehearsal_entry(params, scale) for name, params in profile.items()}


def needs_server(parameters: Mapping[str, Mapping[str, Any]]) -> bool:
    return any(values.get("base_url") == _URL_PLACEHOLDER for values in parameters.values())


@contextlib.contextmanager
def rehearsal_server(parameters: dict[str, dict[str, Any]]) -> Iterator[str | None]:
    """While open, a local OpenAI-speaking server on 127.0.0.1 serves the rehearsal's ``openai-compatible``
    backends, its address put in their ``base_url`` (in place, in ``parameters``); yields the address, or None when
    no notebook needs it."""
    if not needs_server(parameters):
        yield None
        return
    from sae_paper.analysis.autointerp.testserver import OpenAITestServer

    with OpenAITestServer() as server:
        for values in parameters.values():
            if values.get("base_url") == _URL_PLACEHOLDER:
                values["base_url"] = server.url
        yield server.url
