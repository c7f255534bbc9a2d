"""The book's SAELens exports: which SAEs each notebook exports, written under
``book/generated/saelens/<notebook>/`` after a build, and the note a notebook shows about them.

The format itself is :mod:`sae_paper.interop.saelens`; this module knows the chapters' studies,
so it lives with the runner.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sae_paper.interop.saelens import EXPORTS_FOLDER, Markdown, ce_conventions, export_sae

# --------------------------------------------------------------------------------------
# The book's exports
# --------------------------------------------------------------------------------------


def book_exports(notebook: str, parameters: Mapping[str, Any]) -> dict[str, Path]:
    """Export name → SAE folder for the SAEs of ``notebook`` that the book exports: notebook
    01's main SAE and notebook 03's IOI dictionaries (every layer and α); none for the others."""
    from sae_paper.chapters import ioi as ioi_study
    from sae_paper.chapters import training as training_study
    from sae_paper.core.pipeline import Run

    if notebook == training_study.NOTEBOOK:
        configs = [training_study.TrainingStudy.from_params(parameters).main_config()]
    elif notebook == ioi_study.NOTEBOOK:
        study = ioi_study.IoiStudy.from_params(parameters)
        configs = [study.config(layer, alpha) for layer in study.layers for alpha in study.layer_alphas(layer)]
    else:
        return {}
    runs = [Run(config, progress=False) for config in configs]
    return {f"{run.config.model}-{run.site}-{run.config.sae}-R{run.config.ratio:g}-a{run.alpha:.3g}": run.sae_dir
            for run in runs}


def export_book_saes(generated: Path, parameters: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Write the SAELens exports of :func:`book_exports` under ``generated/saelens/<notebook>/``
    (replacing that notebook's previous exports, which may be of other parameters); return one
    line per export (written, or skipped because its notebook trained nothing there)."""
    lines = []
    for notebook, params in parameters.items():
        exports = book_exports(notebook, params)
        if exports:
            shutil.rmtree(generated / EXPORTS_FOLDER / notebook, ignore_errors=True)
        for name, sae_dir in exports.items():
            out = generated / EXPORTS_FOLDER / notebook / name
            if not (sae_dir / "sae.json").is_file():
                lines.append(f"SAELens export {notebook}/{name} skipped: no trained SAE in {sae_dir}")
                continue
            export_sae(sae_dir, out, force=True)
            lines.append(f"SAELens export: {out}")
    return lines



def notebook_note(notebook: str, parameters: Mapping[str, Any], run=None) -> Markdown:
    """What a notebook shows about its SAELens exports: where the book runner writes them and
    how to load them; with ``run`` (notebook 01's main SAE), also the CE conventions table."""
    names = list(book_exports(notebook, parameters))
    folder = f"book/generated/{EXPORTS_FOLDER}/{notebook}"
    lines = []
    if run is not None:
        lines += [ce_conventions(run), ""]
    lines += [f"`sae-paper book` writes {'this SAE' if len(names) == 1 else f'these {len(names)} SAEs'} in "
              f"SAELens's format into `{folder}/`: " + ", ".join(f"`{name}`" for name in names) + ". "
              "Load one with SAELens 6.x (it needs transformer-lens < 4, so use an environment of its own):",
              "", "```python", "from sae_lens import SAE", "",
              f'sae = SAE.load_from_disk("{folder}/{names[0] if names else "NAME"}")',
              "codes = sae.encode(activations)  # activations at sae.cfg.metadata.hook_name", "```", "",
              "`cfg.json` names the model on the hub and the hook in TransformerLens's spelling; "
              "`metadata.sae_paper` holds α, R, seed, activations seen, held-out FVU and L0 and the commit. "
              "Any SAE of the library exports the same way: `sae-paper export SAE_DIR OUT_DIR`."]
    return Markdown("\n".join(lines) + "\n")
