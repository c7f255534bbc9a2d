"""What the book harvests before any notebook starts: every activation the notebooks will read, then the
fragment passes notebook 02 scores, each text read once and every core at work.

Why here and not in the notebooks: the notebooks run in lanes of one thread each (:mod:`sae_paper.book.lanes`),
so a forward pass in a notebook gets one core while this step, which runs before the lanes, gets all of them;
and a text that several notebooks read is read once, every site any of them needs in the same pass. The
notebooks then find everything cached; one executed outside the runner computes what it misses itself.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sae_paper.book.profiles import study_classes


def book_harvest_requests(parameters: Mapping[str, Mapping[str, Any]]) -> list[tuple[Any, Any]]:
    """(HarvestSpec, Site) of every activation the notebooks of ``parameters`` will read: each registered
    notebook's run configs, its random-model controls' (``control_configs``) and the extra texts a study reads (its
    ``corpus_specs``)."""
    from sae_paper.core.sweeps import harvest_requests

    studies = study_classes()
    requests = []
    for name, values in parameters.items():
        if name not in studies:
            continue
        study = studies[name].from_params(values)
        requests += harvest_requests(study.all_configs())
        if hasattr(study, "control_configs"):  # the random-model controls' SAEs, trained once their α is searched
            requests += harvest_requests(study.control_configs())
        if hasattr(study, "corpus_specs"):
            requests += [(spec, study.site) for spec in study.corpus_specs()]
    return requests


def book_fragment_requests(parameters: Mapping[str, Mapping[str, Any]]) -> list[tuple[Any, list[Any]]]:
    """(FragmentSpec, sites) of every fragment pass the notebooks of ``parameters`` will read (a study's
    ``fragment_requests``: notebook 02's pool through its model and each random-model control)."""
    studies = study_classes()
    requests = []
    for name, values in parameters.items():
        if name in studies and hasattr(studies[name], "fragment_requests"):
            requests += studies[name].from_params(values).fragment_requests()
    return requests


def harvest_for_book(parameters: Mapping[str, Mapping[str, Any]], here=None) -> list[str]:
    """Harvest, before any notebook runs, every activation the selected notebooks will read
    (:func:`book_harvest_requests`), then the fragment passes they score (:func:`book_fragment_requests`).

    Requests for one text (model, source, split, ...) from every notebook are merged, so each
    text is read in one forward pass that writes every site any notebook needs, up to the
    largest number of rows any asks for (:func:`sae_paper.data.rank_harvest.harvest_all`); the
    notebooks then find their activations cached (a smaller request reads the start of the
    cache). The fragment passes are here too, not in the notebook that reads them, because here they run on every
    core while a notebook's lane has one; they are computed by the code the notebook would call
    (:func:`~sae_paper.analysis.autointerp.fragments.fragment_activations`, float32 as there), on the first rank only.
    A model is loaded only if something is missing. ``here``: this torchrun rank
    (:class:`sae_paper.data.distributed.World`) when the ranks share the harvest. One line per harvest done.
    """
    from sae_paper.data.device import harvest_dtype
    from sae_paper.data.models import load_model
    from sae_paper.data.rank_harvest import harvest_all

    requests, models = book_harvest_requests(parameters), {}

    def loaded(model_name: str, dtype: str | None):
        if (model_name, dtype) not in models:
            models[model_name, dtype] = load_model(model_name, dtype=dtype)
        return models[model_name, dtype]

    lines = []
    for model_name in dict.fromkeys(spec.model for spec, _ in requests):
        stored = {spec.dtype for spec, _ in requests if spec.model == model_name}
        # one precision for every request of this model, else float32
        dtype = harvest_dtype("auto", next(iter(stored))) if len(stored) == 1 else None
        batch = next(values.get("harvest_batch_size", 32) for values in parameters.values())
        lines += harvest_all([r for r in requests if r[0].model == model_name],
                             lambda model_name=model_name, dtype=dtype: loaded(model_name, dtype), batch_size=batch,
                             progress=sys.stderr.isatty(), here=here)
    if here is None or here.rank == 0:
        lines += _fragment_passes(book_fragment_requests(parameters), lambda name: loaded(name, None))
    return lines


def _fragment_passes(requests: Sequence[tuple[Any, list[Any]]], get_model: Callable[[str], Any]) -> list[str]:
    """Each request's missing fragment activations, one line per pass made."""
    from sae_paper.analysis.autointerp.fragments import fragment_activations, missing_sites

    lines = []
    for spec, sites in requests:
        missing = missing_sites(spec, sites)
        if missing:
            began = time.perf_counter()
            fragment_activations(None, spec, missing, get_model=lambda name=spec.model: get_model(name))
            lines.append(f"fragments of {spec.model}: {spec.n_fragments:,} × {spec.length} tokens, "
                         f"{', '.join(map(str, missing))}; {time.perf_counter() - began:.0f} s")
    return lines
