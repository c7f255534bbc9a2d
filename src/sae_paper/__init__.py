"""sae_paper: an executable replication of Cunningham et al. (2023),
*Sparse Autoencoders Find Highly Interpretable Features in Language Models*.

The package is cut into layers, one folder each, and imports only go down them
(``tests/test_layers.py`` enforces it; ``docs/architecture.md`` draws the arrows and says
where a new chapter, baseline, scorer or model goes):

- :mod:`sae_paper.data`: paths, models, text, activations and the disk cache;
- :mod:`sae_paper.core`: the SAEs, their training, metrics, baselines and the run pipeline;
- :mod:`sae_paper.analysis`: autointerp, IOI patching, ablation, the causal tree, feature inspection;
- :mod:`sae_paper.interop`: SAELens's format, both ways;
- :mod:`sae_paper.report`: claims and their verdicts' records, plots, provenance;
- :mod:`sae_paper.chapters`: one study module per notebook, with its verdicts;
- :mod:`sae_paper.book`: the book runner, its generated pages, the feature browser.

The names a user needs first are importable from here (``from sae_paper import make_sae``);
they load their layer on first use, so ``import sae_paper`` stays cheap.
"""

from importlib import import_module

from sae_paper.errors import SaePaperError

__version__ = "0.1.0"

_PUBLIC = {
    "RunConfig": "sae_paper.core.config",
    "make_sae": "sae_paper.core.sae",
    "load_sae": "sae_paper.core.sae",
    "train_sae": "sae_paper.core.train",
    "load_model": "sae_paper.data.models",
    "harvest": "sae_paper.data.activations",
    "export_sae": "sae_paper.interop.saelens",
}

__all__ = ["SaePaperError", "__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sae_paper' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
