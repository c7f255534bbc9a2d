"""sae_paper: an executable replication of Cunningham et al. (2023),
*Sparse Autoencoders Find Highly Interpretable Features in Language Models*.

Modules, in the order the paper uses them:

- :mod:`sae_paper.paths`: where ``../shared`` and the cache live (settings, not paths).
- :mod:`sae_paper.config`: the one run configuration shared by the CLI and notebooks.
- :mod:`sae_paper.models`: ``load_model(name)`` returning a hooked ``TransformerBridge``.
- :mod:`sae_paper.data`: named text sources tokenised into fixed-length contexts.
- :mod:`sae_paper.activations`: harvest activations to a checksummed disk cache.
- :mod:`sae_paper.sae`: tied and untied ReLU+L1 sparse autoencoders (Section 2).
- :mod:`sae_paper.train`: the one training loop, resumable.
- :mod:`sae_paper.metrics`: FVU, L0, alive features, CE loss of the spliced model.
"""

__version__ = "0.1.0"


class SaePaperError(Exception):
    """A problem with the user's input or environment, explained in one line.

    The CLI prints these as ``error: <message>`` and exits with status 2;
    anything else is a bug and keeps its traceback.
    """
