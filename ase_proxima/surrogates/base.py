"""The small protocol every surrogate family implements.

A surrogate learns target results on the fly: ``fit`` on all training
structures so far, ``predict`` one structure.  ``predict`` returns the results
an ASE calculator would put in ``calc.results`` plus, per property, the
standard deviation the model attaches to it (an ensemble's spread or a
Bayesian posterior std); that spread is what :class:`EnsembleUncertainty`
turns into the gate signal.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms

__all__ = ["Prediction", "Surrogate"]


@dataclass
class Prediction:
    """A surrogate answer: ASE-style ``results`` and per-property standard deviations."""

    results: dict[str, Any]
    spread: dict[str, Any] = field(default_factory=dict)


class Surrogate(ABC):
    """Base class of on-the-fly surrogates (energies and, where possible, forces)."""

    #: properties the fitted model can return for a structure it accepts
    implemented_properties: tuple[str, ...] = ("energy",)

    @property
    @abstractmethod
    def is_fitted(self) -> bool:
        """True once ``fit`` has succeeded."""

    @abstractmethod
    def fit(self, images: Sequence[Atoms], results: Sequence[Mapping[str, Any]]) -> None:
        """(Re)train on every structure with its target results (energy, optionally forces)."""

    @abstractmethod
    def predict(self, atoms: Atoms, properties: Sequence[str] | None = None) -> Prediction:
        """Predict one structure the model :meth:`accepts`: ``properties`` (default all it can),
        so a caller needing energies only does not pay for forces."""

    def accepts(self, atoms: Atoms) -> str | None:
        """``None`` if ``atoms`` is inside what the model can describe, else the reason it is not."""
        return None

    def properties_for(self, atoms: Atoms) -> tuple[str, ...]:
        """Properties the model can return for this structure (default: all it implements)."""
        return self.implemented_properties


def check_training_set(images: Sequence[Atoms], results: Sequence[Mapping[str, Any]]) -> None:
    """Shared validation of ``fit`` arguments: equal lengths, an energy per structure."""
    if len(images) != len(results):
        raise ValueError(f"{len(images)} structures but {len(results)} result sets")
    if not images:
        raise ValueError("cannot fit a surrogate on an empty training set")
    for i, res in enumerate(results):
        if "energy" not in res or not np.isfinite(res["energy"]):
            raise ValueError(f"training result {i} has no finite energy")


def structure_key(atoms: Atoms) -> bytes:
    """Identity of a structure for descriptor caches (content, not object id)."""
    return b"".join(
        (atoms.numbers.tobytes(), atoms.positions.tobytes(), atoms.cell.array.tobytes(), atoms.pbc.tobytes())
    )
