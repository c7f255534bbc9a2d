"""The feature browser's histogram images: each drawn once per content, many at once in parallel.

Drawing the cards' histograms is most of the feature browser's time (~0.7 s an image on one core,
most of it matplotlib's constrained layout; the default book has ~200 cards), so:

- an image is kept in the cache (``book-browser/img/``) under a hash of its counts, labels and
  title, matplotlib's version and the plotting code (:mod:`sae_paper.report.feature_plots`), and
  copied when it is asked for again (a browser remade after a change of the library draws only
  the histograms that changed);
- when :data:`POOL_FROM` or more are missing they are drawn by one process per usable core
  (spawned, not forked: the runner's torch threads do not survive a fork). Each image is the
  same bytes whichever process draws it.
"""

from __future__ import annotations

import inspect
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from sae_paper.analysis.autointerp.fingerprints import fingerprint
from sae_paper.analysis.feature_stats import TokenHistogram
from sae_paper.data.cache import atomic_write
from sae_paper.data.paths import cache_dir

POOL_FROM = 24
"""Missing images from which a pool of processes pays for its start (a few seconds per process)."""
MAX_WORKERS = 8
DPI = 144
"""Sharp on a high-density screen, at the card's size."""


def _stored(histogram: TokenHistogram, title: str) -> Path:
    import matplotlib

    from sae_paper.report import feature_plots

    key = fingerprint([histogram, title, DPI, matplotlib.__version__, inspect.getsource(feature_plots)])
    return cache_dir("book-browser", "img") / f"{key[:24]}.png"


def _draw(histogram: TokenHistogram, title: str, stored: Path) -> None:
    """Draw one image into the cache (atomically: never half an image)."""
    from sae_paper.report.feature_plots import compact_histogram_figure

    figure = compact_histogram_figure(histogram, title=title)
    atomic_write(stored, lambda tmp: figure.savefig(tmp, dpi=DPI, format="png"))


def draw_histograms(jobs: Sequence[tuple[TokenHistogram, str, Path]]) -> int:
    """Write each job's histogram (with its title) as a PNG at its path; return how many had to be drawn."""
    stored = [_stored(histogram, title) for histogram, title, _ in jobs]
    missing = {where: (histogram, title) for where, (histogram, title, _) in zip(stored, jobs) if not where.is_file()}
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = min(usable, MAX_WORKERS, len(missing))
    if len(missing) >= POOL_FROM and workers > 1:
        histograms, titles = zip(*missing.values())
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            list(pool.map(_draw, histograms, titles, list(missing), chunksize=4))
    else:
        for where, (histogram, title) in missing.items():
            _draw(histogram, title, where)
    for where, (_, _, path) in zip(stored, jobs):
        shutil.copyfile(where, path)
    return len(missing)
