"""The contract every surrogate family keeps, so the calculator can treat them alike.

A surrogate learns target results on the fly: ``fit`` on the training structures so
far, ``predict`` one structure.  ``predict`` returns the results an ASE calculator
would put in ``calc.results`` plus, per property, the standard deviation the model
attaches to it (an ensemble's spread or a Bayesian posterior std); that spread is
what :class:`~ase_proxima.uncertainty.EnsembleUncertainty` turns into the gate signal.

The contract, in scikit-learn's shape:

* ``fit`` returns ``self``; *any* failure inside it (singular data, LAMMPS, a
  training subprocess that dies or times out) reaches the caller as a
  :class:`FitError`, which the calculator turns into a target fallback.  Families
  implement ``_fit``; the public ``fit`` wraps it.
* Constructor arguments are stored untouched (``get_params`` reads them back);
  what a fit learns carries a trailing underscore (``species_``, ``cutoff_``).
* ``fitted_state`` / ``restore_fitted_state``: the fitted model as numpy arrays
  plus JSON-able metadata, so a run store can persist it without pickle.  A family
  that returns ``None`` is refitted from the training data on reopening.
* ``call_cost``: what one prediction computes, as named workloads with their sizes,
  for the performance model (``ase_proxima.perf``) to price.
* Under a baseline the results a family learns are corrections (target minus
  baseline).  A family that also reads the baseline's own answers (``uses_baseline``)
  gets them in ``fit(..., baselines=)`` and ``predict(..., baseline=)``; callers go
  through ``predict_on``, and the others never see them.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from sklearn.base import BaseEstimator

__all__ = ["FitError", "Prediction", "Surrogate", "FittedState", "WorkloadSize", "check_training_set",
           "structure_key", "isolated_copy"]


class FitError(RuntimeError):
    """A surrogate (or uncertainty) fit failed; the calculator falls back to the target."""


@dataclass
class Prediction:
    """A surrogate answer: ASE-style ``results`` and per-property standard deviations; ``learned``
    the part the model itself predicted where a baseline carries the rest (``None``: all of it)."""

    results: dict[str, Any]
    spread: dict[str, Any] = field(default_factory=dict)
    learned: dict[str, Any] | None = None


@dataclass
class FittedState:
    """A fitted model without code: named arrays and JSON-able metadata."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


@dataclass(frozen=True)
class WorkloadSize:
    """One part of a prediction's work: a label for people, the workload's name in
    :mod:`ase_proxima.perf.costs`, and the keyword sizes its cost function takes."""

    part: str
    workload: str
    sizes: dict[str, Any]


class Surrogate(BaseEstimator, ABC):
    """Base class of on-the-fly surrogates (energies and, where possible, forces and stress)."""

    #: properties the fitted model can return for a structure it accepts
    implemented_properties: tuple[str, ...] = ("energy",)
    #: does the family read the baseline's answers (``fit(baselines=)``, ``predict(baseline=)``)?
    uses_baseline: bool = False
    #: are the thread pools limited to one thread around each prediction (as around every fit)?
    #: A family whose prediction is a few small products that do not slow a threaded target says
    #: ``False``: limiting the pools and setting them back on every call then costs more than it saves
    predicts_on_one_thread: bool = True

    @property
    @abstractmethod
    def is_fitted(self) -> bool:
        """True once ``fit`` has succeeded."""

    def fit(self, images: Sequence[Atoms], results: Sequence[Mapping[str, Any]],
            baselines: Sequence[Mapping[str, Any]] | None = None) -> Surrogate:
        """(Re)train on every structure with its target results; returns ``self``.

        ``baselines``: the baseline's answer on each structure, where ``results`` are corrections
        to it (read only by a family that :attr:`uses_baseline`).  Raises :class:`FitError`
        whatever went wrong inside (the original exception is its cause).
        """
        try:
            if baselines is not None and len(baselines) != len(images):
                raise ValueError(f"{len(images)} structures but {len(baselines)} baseline answers")
            if self.uses_baseline:
                self._fit(images, results, baselines=baselines)
            else:
                self._fit(images, results)
        except FitError:
            raise
        except Exception as err:
            raise FitError(f"{type(self).__name__} fit failed: {type(err).__name__}: {err}") from err
        return self

    @abstractmethod
    def _fit(self, images: Sequence[Atoms], results: Sequence[Mapping[str, Any]]) -> None:
        """The family's fit; may raise anything (``fit`` turns it into a :class:`FitError`)."""

    @abstractmethod
    def predict(self, atoms: Atoms, properties: Sequence[str] | None = None) -> Prediction:
        """Predict one structure the model :meth:`accepts`: ``properties`` (default all it can),
        so a caller needing energies only does not pay for forces."""

    def predict_on(self, atoms: Atoms, properties: Sequence[str] | None = None,
                   baseline: Mapping[str, Any] | None = None) -> Prediction:
        """:meth:`predict`, handing ``baseline`` (the baseline's answer on ``atoms``, where the model
        learned corrections to it) to a family that :attr:`uses_baseline`."""
        if baseline is not None and self.uses_baseline:
            return self.predict(atoms, properties, baseline=baseline)  # type: ignore[call-arg]
        return self.predict(atoms, properties)

    def accepts(self, atoms: Atoms) -> str | None:
        """``None`` if ``atoms`` is inside what the model can describe, else the reason it is not."""
        return None

    def describe(self, atoms: Atoms, properties: Sequence[str] | None = None) -> bool:
        """Compute, before any fit, what a prediction of ``properties`` on ``atoms`` computes first
        (its descriptors), keeping it where the family caches them for the fit: a caller can then
        time a prediction's main cost before paying for a fit.  ``False``: this family cannot."""
        return False

    def cost_bounds(self, atoms: Atoms, properties: Sequence[str] | None = None) -> tuple[float, float] | None:
        """Lower and upper bounds, in seconds, on what describing ``atoms`` for a prediction of
        ``properties`` costs, from a sample at a fraction of that price (one atomic environment):
        a caller beside a cheap target can then tell whether timing the whole is worth its price.
        ``None``: this family has no such sample."""
        return None

    def properties_for(self, atoms: Atoms) -> tuple[str, ...]:
        """Properties the model can return for this structure (default: all it implements)."""
        return self.implemented_properties

    def more_capacity(self) -> dict[str, Any] | None:
        """Settings (for ``set_params``) of the next larger model of this family, for a run whose
        model no longer picks answers under its bound (``None``: none larger is offered)."""
        return None

    def fitted_state(self) -> FittedState | None:
        """The fitted model as arrays plus metadata (``None``: refit from the data instead)."""
        return None

    def restore_fitted_state(self, state: FittedState) -> None:
        """Become the model :meth:`fitted_state` described (arrays are trusted to be plain data)."""
        raise NotImplementedError(f"{type(self).__name__} is refitted from its training data, not restored")

    def call_cost(self, atoms: Atoms) -> list[WorkloadSize]:
        """The workloads one prediction on ``atoms`` runs (empty when unknown)."""
        return []


def check_training_set(images: Sequence[Atoms], results: Sequence[Mapping[str, Any]], start: int = 0) -> None:
    """Shared validation of ``fit`` arguments: equal lengths, a finite energy per structure (from
    ``start`` on: a family that folds in new structures checks only those)."""
    if len(images) != len(results):
        raise ValueError(f"{len(images)} structures but {len(results)} result sets")
    if not images:
        raise ValueError("cannot fit a surrogate on an empty training set")
    for i in range(start, len(results)):
        res = results[i]
        if "energy" not in res or not np.isfinite(res["energy"]):
            raise ValueError(f"training result {i} has no finite energy")


def structure_key(atoms: Atoms) -> bytes:
    """Identity of a structure (content, not object id): a 20-byte digest of species,
    positions, cell and periodicity."""
    h = hashlib.sha1()
    for part in (atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc):
        h.update(np.ascontiguousarray(part).tobytes())
    return h.digest()


def mean_neighbours(atoms: Atoms, cutoff: float) -> float:
    """Mean number of neighbours within ``cutoff`` per atom (periodic images included)."""
    from ase.neighborlist import neighbor_list

    return len(neighbor_list("i", atoms, cutoff)) / max(len(atoms), 1)


def isolated_copy(atoms: Atoms, reach: float) -> Atoms | None:
    """A molecule in a box, as the free molecule it is for a descriptor of range ``reach``.

    ``atoms`` itself when it has no periodic direction; a free copy (``pbc`` off, the atoms made
    whole around the first one) when no atom comes within ``reach`` of a periodic image of the
    structure; else ``None`` (a bulk cell, a slab, a dense liquid)."""
    if not atoms.pbc.any():
        return atoms
    if len(atoms) == 0 or np.linalg.matrix_rank(atoms.cell.array) < 3:
        return None
    from ase.geometry import find_mic

    shift, _ = find_mic(atoms.positions - atoms.positions[0], atoms.cell, atoms.pbc)
    whole = atoms.positions[0] + shift
    normals = np.linalg.inv(atoms.cell.array).T  # row i: normal to the faces spanned by the other two vectors
    widths = 1.0 / np.linalg.norm(normals, axis=1)
    for i in np.flatnonzero(atoms.pbc):
        extent = np.ptp(whole @ (normals[i] * widths[i]))
        if extent + reach > widths[i]:
            return None
    free = atoms.copy()
    free.positions = whole
    free.pbc = False
    return free
