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


@dataclass(frozen=True)
class SaeRunFields(NotebookParameters):
    """The :class:`~sae_paper.core.config.RunConfig` settings every notebook's SAEs share. Equal values across
    notebooks mean the same cache keys, so a later notebook reuses an earlier one's activations and SAEs."""

    model: str = "smollm2-135m"
    """Model name (``sae_paper.data.models.MODELS``)."""
    source: str = "enwiki2015"
    """Text the training activations are harvested from (``sae_paper.data.text.SOURCES``)."""
    seed: int = 0
    """Seed for the text order, SAE initialisation, batch order and every sample a notebook draws."""
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
