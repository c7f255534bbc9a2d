"""The data layer: where things live, which models and texts there are, and the activations
harvested from them into a checksummed disk cache.

- :mod:`.paths`: ``../shared``, the cache and the book's output, each a setting with a default;
- :mod:`.models`: ``load_model(name)``, a hooked ``TransformerBridge`` (SmolLM2, Pythia), and the
  activation sites (``resid_post.3``, ``mlp_post.2``) by name;
- :mod:`.text`: named text sources tokenised into fixed-length contexts, and which positions count;
- :mod:`.device`: the one device setting (``RunConfig.device``), resolved in one place;
- :mod:`.distributed`: this process's rank and world under torchrun, and a gloo barrier;
- :mod:`.activations`: harvest a site's activations to sharded, resumable cache entries;
- :mod:`.rank_harvest`: many harvests at once, and one harvest shared out over torchrun's ranks;
- :mod:`.cache`: what every cache entry shares: a lock, a record of the commit that computed it,
  and a computation version in its key.

It may import only :mod:`sae_paper.errors`: nothing here knows about SAEs, analyses or the book.
"""
