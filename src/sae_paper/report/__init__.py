"""The report layer: what turns analyses into something a reader checks.

- :mod:`.finding`: what a verdict function answers (a ``Finding``, and a ``Decision``: the finding with
  the number that decides it);
- :mod:`.claims`: the paper's claims by id (``../shared/paper/claims.yaml``), the records the
  notebooks write (with their marks), their validation and the scoreboard files;
- :mod:`.seeds`: a claim decided at several seeds (``decide_at_seeds``, the majority, ``SeedSummary``);
- :mod:`.budget`: how a deciding number moves with the budget of its deciding input (``budget_trend``);
- :mod:`.claim_html`, :mod:`.scoreboard`: a verdict's badge where it is computed, and the scoreboard
  page; :mod:`.markdown`: text safe in the notebooks' Markdown tables;
- :mod:`.rules`: what a verdict rule is (the paper's words, our rule, its thresholds and why) and the
  registry that keeps one per claim;
- :mod:`.plots`, :mod:`.feature_plots`: the figures shared by several chapters, drawn without
  pyplot's global state;
- :mod:`.provenance`: the commit, parameters, libraries, hardware and wall time behind each notebook.

It may import :mod:`sae_paper.analysis`, :mod:`sae_paper.interop`, :mod:`sae_paper.core`,
:mod:`sae_paper.data` and :mod:`sae_paper.errors`. It holds no chapter's rules: those live in
:mod:`sae_paper.chapters`, beside the verdict functions that read them.
"""
