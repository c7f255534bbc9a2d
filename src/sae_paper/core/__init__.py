"""The core layer: the paper's sparse autoencoders, how they are trained and measured, the
baselines they are compared with, and the pipeline that caches each run.

- :mod:`.sae`: tied and untied ReLU+L1 SAEs (Section 2); :mod:`.kernels`: their fused and sparse
  training steps;
- :mod:`.config`: ``RunConfig``, the one run configuration of the CLI and the notebooks;
- :mod:`.train`: the one training loop, resumable; :mod:`.metrics`: FVU, L0, dead features and the
  CE loss of the spliced model;
- :mod:`.decompositions`: every method behind one interface (SAE, neurons, random directions, PCA,
  ICA, top-K);
- :mod:`.pipeline`: ``Run``: harvest → train → evaluate, each step cached; :mod:`.sweeps`: many runs.
- :mod:`.stability`: one dictionary's features matched in another's (seeds compared, Paulo & Belrose 2025);
- :mod:`.reference`: the reference scorer's conventions (OpenAI's ``neuron_explainer``) as pure functions.

It may import :mod:`sae_paper.data` and :mod:`sae_paper.errors`, nothing above.
"""
