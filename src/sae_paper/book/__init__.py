"""The book layer: everything that turns the notebooks into the Jupyter Book.

- :mod:`.profiles`: profiles and ``-p`` overrides, checked against each chapter's study before
  anything runs;
- :mod:`.runner`: ``sae-paper book``: harvest once, execute each notebook with papermill, install
  the results, build the HTML;
- :mod:`.allocator`: the book's processes keep the memory they free for their next tensors (glibc's
  thresholds), instead of faulting in fresh pages at every step;
- :mod:`.reuse`: executed notebooks and the feature browser kept by their inputs, so a rebuild runs
  only what changed;
- :mod:`.progress`: a notebook's progress on the terminal and in the log;
- :mod:`.pages`: what the runner does to pages (claim anchors, parameters shown once, wide notebook pages,
  the chapter list); :mod:`.costs_page`: what this build cost, on which machine; :mod:`.rules_page`: how
  each verdict is decided, from the rules registry;
- :mod:`.feature_browser`, :mod:`.feature_pages`: a card per feature, from the chapters' cached results (its
  histogram images: :mod:`.histogram_images`, drawn once per content, in parallel);
- :mod:`.exports`: the SAEs the book exports in SAELens's format;
- :mod:`.offline_math`, :mod:`.no_thebe`: Sphinx extensions: MathJax served from the book's own
  ``_static``, and no Thebe or Binder configuration in the pages.

It is the top library layer: it may import every layer below it, and only the CLI imports it.
"""
