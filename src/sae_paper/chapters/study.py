"""What every notebook's parameter class shares: the profile ⇄ dataclass round trip.

Each notebook keeps its parameters in one frozen dataclass (``TrainingStudy``,
``AutointerpStudy``, ``IoiStudy``, ``CaseStudy``, ``AppendixStudy``), built on
:class:`SaeRunFields`, the run settings their SAEs share. The book runner
builds one from a profile entry (:meth:`from_params`, unknown names rejected by name),
the notebook rebuilds it from its ``parameters`` cell (:meth:`from_namespace`), and
provenance records it back as plain YAML-able values (:meth:`parameters`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from sae_paper.errors import SaePaperError


class NotebookParameters:
    """Mixin for a notebook's frozen parameter dataclass; subclasses set ``notebook``."""

    notebook: ClassVar[str]

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_params(cls, params: Mapping[str, Any]):
        """From a mapping (a profile entry); unknown names are rejected, by name."""
        unknown = sorted(set(params) - set(cls.names()))
        if unknown:
            raise SaePaperError(f"unknown {cls.notebook} parameter(s): {', '.join(unknown)} (known: {', '.join(cls.names())})")
        return cls(**params)

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any]):
        """From a notebook's globals: picks exactly this class's field names."""
        return cls(**{name: namespace[name] for name in cls.names() if name in namespace})

    def parameters(self) -> dict[str, Any]:
        """Field → value, tuples as lists (as a profile would write them)."""
        return {name: (list(v) if isinstance(v := getattr(self, name), tuple) else v) for name in self.names()}


def check_n_seeds(study) -> None:
    """A one-line error unless the study's ``n_seeds`` is a positive integer."""
    n = study.n_seeds
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise SaePaperError(f"{study.notebook} parameter n_seeds={n!r}: must be a positive integer")


@dataclass(frozen=True)
class SaeRunFields(NotebookParameters):
    """The :class:`~sae_paper.core.config.RunConfig` settings every notebook's SAEs share. Equal values across
    notebooks mean the same cache keys, so a later notebook reuses an earlier one's activations and SAEs."""

    model: str = "smollm2-135m"
    """Model name (``sae_paper.data.models.MODELS``)."""
    source: str = "enwiki2015"
    """Text the training activations are harvested from (``sae_paper.data.text.SOURCES``)."""
    seed: int = 0
    """Seed for the SAE initialisation, batch order and every sample a notebook draws (and the text order, unless
    ``text_seed`` is set)."""
    text_seed: int | None = None
    """Seed of the text order (which documents are harvested and made into fragments); None: ``seed``. A
    reseeded study (:meth:`reseeded`) keeps it, so it reads the same cached activations."""
    context_length: int = 128
    """Tokens per context, BOS included."""
    harvest_batch_size: int = 32
    """Contexts per forward pass when harvesting and in the splice CE."""
    dtype: str = "float32"
    """Storage dtype of the activation caches (float16 halves the disk for paper-sized runs)."""
    lr: float = 1e-3
    """Adam learning rate (the paper's)."""
    eval_tokens: int = 2048
    """Held-out tokens for FVU/L0 and the splice CE (part of every SAE's cache key)."""
    alive_threshold: int = 10
    """A feature is alive if it fires more than this many times over the last training epoch (Figure 16)."""

    @property
    def text_order(self) -> int:
        """The seed the text is read in: ``text_seed``, or ``seed`` when that is None."""
        return self.seed if self.text_seed is None else self.text_seed

    def reseeded(self, seed: int):
        """This study at another ``seed`` on the same text: its SAEs and samples change, its activations do not."""
        from dataclasses import replace

        return replace(self, seed=seed, text_seed=self.text_order)

    def seeds(self) -> tuple[int, ...]:
        """The seeds the central claims are decided at: ``seed``, ``seed + 1``, … (``n_seeds`` of them; one when the
        study has no ``n_seeds``)."""
        return tuple(range(self.seed, self.seed + getattr(self, "n_seeds", 1)))
