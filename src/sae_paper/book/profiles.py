"""Profiles and parameters: what the runner reads before it runs anything.

A profile (``profiles/NAME.yaml``) maps each notebook's name to its parameters; ``-p key=value``
overrides one. :func:`resolve_parameters` turns both into each notebook's parameters and checks
them against the notebook's study dataclass (:func:`study_classes`), so a typo or an impossible
layer fails before a notebook starts, in one line (:class:`BookError`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sae_paper.errors import SaePaperError


class BookError(SaePaperError):
    """The book could not be run or built; the message says which notebook/cell and why."""


def study_classes() -> dict[str, type]:
    """Notebook name → the dataclass its parameters must form (notebooks not listed take any)."""
    from sae_paper.chapters import appendices, autointerp, case_studies, ioi, training

    return {module.NOTEBOOK: study for module, study in (
        (training, training.TrainingStudy), (autointerp, autointerp.AutointerpStudy), (ioi, ioi.IoiStudy),
        (case_studies, case_studies.CaseStudy), (appendices, appendices.AppendixStudy))}


# --------------------------------------------------------------------------------------
# Profiles and parameters
# --------------------------------------------------------------------------------------


def _yaml_loader():
    """PyYAML's safe loader, also reading ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``)."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?[eE][-+]?[0-9]+$|^[-+]?[0-9][0-9_]*\.[0-9_]*$|^[-+]?\.[0-9_]+$"),
        list("-+0123456789."),
    )
    return Loader


def _read_yaml(text: str) -> Any:
    import yaml

    return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass


def profile_path(profile: str | Path, profiles_dir: Path) -> Path:
    """A profile name (``profiles/NAME.yaml``) or a path to a YAML file."""
    candidate = Path(profile)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    path = profiles_dir / f"{profile}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in profiles_dir.glob("*.yaml"))) or "none"
        raise BookError(f"no profile {profile!r} (looked for {path}; known: {known})")
    return path


def load_profile(path: Path) -> dict[str, dict[str, Any]]:
    """A profile: a mapping of notebook name → mapping of parameter → value."""
    import yaml

    try:
        loaded = _read_yaml(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise BookError(f"profile {path} is not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(loaded, dict) or not all(isinstance(v, dict) or v is None for v in loaded.values()):
        raise BookError(f"profile {path} must map each notebook name to a mapping of parameters")
    return {str(name): dict(params or {}) for name, params in loaded.items()}


def parse_overrides(pairs: Sequence[str]) -> list[tuple[str | None, str, Any]]:
    """``key=value`` or ``notebook.key=value`` (value parsed as YAML) → (notebook or None, key, value)."""
    import yaml

    parsed = []
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise BookError(f"-p takes key=value or notebook.key=value, got {pair!r}")
        notebook, dot, key = name.rpartition(".")
        try:
            value = _read_yaml(raw)
        except yaml.YAMLError:
            raise BookError(f"-p {name}: cannot read {raw!r} as a YAML value") from None
        parsed.append((notebook if dot else None, key, value))
    return parsed


def resolve_parameters(
    profile: Mapping[str, Mapping[str, Any]],
    notebooks: Sequence[str],
    overrides: Sequence[tuple[str | None, str, Any]] = (),
) -> dict[str, dict[str, Any]]:
    """Each selected notebook's parameters: its profile entry with the overrides applied, validated.

    A registered notebook's parameters are turned into its study dataclass, which checks
    them and builds every RunConfig (so the returned values are complete, defaults filled in).
    """
    studies = study_classes()
    missing = [name for name in notebooks if name not in profile]
    if missing:
        raise BookError(f"the profile has no entry for notebook(s) {', '.join(missing)}")
    resolved = {name: dict(profile[name]) for name in notebooks}
    for target, key, value in overrides:
        if target is not None:
            if target not in resolved:
                raise BookError(f"-p {target}.{key}: {target} is not a selected notebook ({', '.join(notebooks)})")
            resolved[target][key] = value
            continue
        takers = [name for name in notebooks
                  if key in (studies[name].names() if name in studies else resolved[name])]
        if not takers:
            raise BookError(f"-p {key}: no selected notebook has a parameter {key!r}")
        for name in takers:
            resolved[name][key] = value
    for name in notebooks:
        if name in studies:
            try:
                study = studies[name].from_params(resolved[name])
                study.all_configs()
            except SaePaperError as error:
                raise BookError(f"notebook {name}: {error}") from None
            except TypeError as error:
                raise BookError(f"notebook {name}: bad parameter value ({error})") from None
            resolved[name] = study.parameters()
    return resolved


def describe_configs(notebook: str, parameters: Mapping[str, Any]) -> list[str]:
    """One line per RunConfig a registered notebook will train (for ``--validate-only``)."""
    studies = study_classes()
    if notebook not in studies:
        return [f"{notebook}: {len(parameters)} parameter(s), no run configs to check"]
    configs = studies[notebook].from_params(parameters).all_configs()
    lines = [f"{notebook}: {len(configs)} SAE configs"]
    for c in configs:
        lines.append(f"  {c.model} {c.site}.{c.layer} {c.sae} R={c.ratio:g} alpha={c.alpha:g} epochs={c.epochs} "
                     f"n_tokens={c.n_tokens:,} batch={c.batch_size}")
    return lines
