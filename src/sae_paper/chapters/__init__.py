"""The chapters layer: one study per notebook, each with its parameters, the runs it needs and
the rules that turn its numbers into verdicts.

- :mod:`.study`: what every notebook's parameter class shares (profile ⇄ dataclass);
- :mod:`.training` (notebook 01), :mod:`.autointerp` with :mod:`.autointerp_verdicts`,
  :mod:`.autointerp_budget` and :mod:`.autointerp_plots` (02), :mod:`.ioi` with
  :mod:`.ioi_verdicts` (03), :mod:`.case_studies` with :mod:`.case_verdicts` and
  :mod:`.case_budget` (04), :mod:`.appendices` (05);
- :mod:`.rulebook`: every chapter's verdict rules, one registry keyed by claim id.

A notebook in ``notebooks/`` imports its chapter module and draws; the logic stays here, where
it is tested. This layer may import every layer below it (report, analysis, interop, core,
data, errors) and is imported only by :mod:`sae_paper.book` and the CLI.
"""
