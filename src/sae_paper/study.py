"""What every notebook's parameter class shares: the profile ⇄ dataclass round trip.

Each notebook keeps its parameters in one frozen dataclass (``TrainingStudy``,
``AutointerpStudy``, ``IoiStudy``, ``CaseStudy``, ``AppendixStudy``). The book runner
builds one from a profile entry (:meth:`from_params`, unknown names rejected by name),
the notebook rebuilds it from its ``parameters`` cell (:meth:`from_namespace`), and
provenance records it back as plain YAML-able values (:meth:`parameters`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, ClassVar

from sae_paper import SaePaperError


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
