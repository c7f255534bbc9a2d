"""The one run configuration: what to harvest, what SAE to train, how to evaluate it.

``sae-paper harvest|train|evaluate`` and the notebooks all take a :class:`RunConfig`.
It is a frozen dataclass: each field has a docstring (shown by ``sae-paper --help-config``),
``__post_init__`` only validates, with one-line errors, and :func:`load_config` reads
it from YAML with unknown keys rejected by name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, cast, get_args

from sae_paper.data.device import check_device
from sae_paper.errors import SaePaperError

SiteKind = Literal["resid_post", "mlp_post"]
SaeKind = Literal["tied", "untied"]
DType = Literal["float16", "float32"]


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one harvest → train → evaluate run."""

    model: str = "smollm2-135m"
    """Model name, see ``sae_paper.data.models.MODELS`` (e.g. smollm2-135m, pythia-70m-deduped)."""

    layer: int = 3
    """Block index of the site (0-based, as in TransformerLens)."""

    site: SiteKind = "resid_post"
    """resid_post: residual stream after the block; mlp_post: MLP hidden layer after the nonlinearity."""

    source: str = "enwiki2015"
    """Text source, see ``sae_paper.data.text.SOURCES``."""

    n_tokens: int = 204_800
    """Activation vectors to harvest for training (BOS positions excluded)."""

    context_length: int = 128
    """Tokens per context, BOS included."""

    harvest_batch_size: int = 32
    """Contexts per forward pass when harvesting."""

    dtype: DType = "float32"
    """Storage dtype of the activation cache."""

    sae: SaeKind = "tied"
    """tied: x̂ = M̂ᵀc as in the paper's main runs; untied: separate encoder (Appendix C.3)."""

    ratio: float = 2.0
    """Dictionary ratio R = d_sae / d_in."""

    alpha: float | None = None
    """L1 coefficient α; None takes the model's documented default (``ModelSpec.default_alpha``)."""

    lr: float = 1e-3
    """Adam learning rate (the paper's)."""

    batch_size: int = 1024
    """Activation vectors per training step."""

    epochs: int = 2
    """Passes over the harvested activations."""

    seed: int = 0
    """Seed of the SAE's initialisation and of the order it sees the activations in. Reseeding reuses the
    harvested activations: the text is ``text_seed``'s."""

    text_seed: int = 0
    """Seed of the order documents are read in, i.e. which text is harvested (training and held-out). Kept apart
    from ``seed`` so that a run at another seed trains on the same cached activations."""

    checkpoint_every: int = 200
    """Training steps between checkpoints (0: only at the end)."""

    eval_tokens: int = 4096
    """Held-out tokens for FVU/L0 and for the language-model splice (CE) evaluation."""

    alive_threshold: int = 10
    """A feature is alive if it fires more than this many times over the evaluated activations (Figure 16)."""

    device: str = "auto"
    """Where to compute: auto (CUDA if available, else CPU), cpu, cuda or cuda:N; under torchrun, cuda is
    cuda:LOCAL_RANK. Says where, never what: no cache key and no saved record holds it."""

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> SaePaperError:
            return SaePaperError(f"config field {name}={getattr(self, name)!r}: {why}")

        for name, choices in (("site", SiteKind), ("sae", SaeKind), ("dtype", DType)):
            if getattr(self, name) not in get_args(choices):
                raise bad(name, f"must be one of {', '.join(get_args(choices))}")
        for name in ("n_tokens", "context_length", "harvest_batch_size", "batch_size", "epochs", "eval_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise bad(name, "must be a positive integer")
        if self.context_length < 2:
            raise bad("context_length", "must be at least 2 (BOS plus one token)")
        if not isinstance(self.layer, int) or self.layer < 0:
            raise bad("layer", "must be a non-negative integer")
        if not self.ratio > 0:
            raise bad("ratio", "must be positive")
        if self.alpha is not None and not self.alpha >= 0:
            raise bad("alpha", "must be non-negative (or null for the model's default)")
        if not self.lr > 0:
            raise bad("lr", "must be positive")
        if self.checkpoint_every < 0 or self.alive_threshold < 0:
            raise SaePaperError("config fields checkpoint_every and alive_threshold must be non-negative")
        try:
            check_device(self.device)
        except SaePaperError:
            raise bad("device", "must be auto, cpu, cuda or cuda:N") from None

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as saved beside results, ``device`` left out: where a result was computed does not
        change it, so a record written on a GPU box reads the same as one written on a laptop."""
        return {name: value for name, value in dataclasses.asdict(self).items() if name != "device"}

    def key(self, *names: str) -> str:
        """A short stable hash of the named fields: cache folders are keyed by what they depend on."""
        chosen = {name: getattr(self, name) for name in names}
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:12]


HARVEST_FIELDS = ("model", "layer", "site", "source", "n_tokens", "context_length", "dtype", "text_seed")
"""The fields an activation cache depends on (harvest_batch_size only changes speed)."""

TRAIN_FIELDS = HARVEST_FIELDS + ("sae", "ratio", "alpha", "lr", "batch_size", "epochs", "seed")
"""The fields a trained SAE depends on (checkpoint_every only changes how often it is saved)."""


def field_docs() -> dict[str, str]:
    """Field name → docstring, read from this file's source (used for ``--help-config``)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(RunConfig))
    body = cast(ast.ClassDef, tree.body[0]).body
    docs: dict[str, str] = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)):
            docs[node.target.id] = str(after.value.value)
    return docs


def load_config(path: str | Path | None = None, **overrides: Any) -> RunConfig:
    """A RunConfig from a YAML file (optional) with keyword overrides on top."""
    import yaml

    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise SaePaperError(f"config file not found: {path}")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise SaePaperError(f"config file {path} must hold a mapping of field: value")
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name: f for f in fields(RunConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise SaePaperError(f"unknown config field(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    for name, value in values.items():
        # YAML 1.1 reads "1e-3" (no dot) as a string; read such values of float fields as numbers.
        if isinstance(value, str) and "float" in str(known[name].type):
            try:
                values[name] = float(value)
            except ValueError:
                raise SaePaperError(f"config field {name}={value!r}: must be a number") from None
    return RunConfig(**values)
