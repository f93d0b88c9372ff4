"""Uncertainty signals for the gate: a number u that grows with the expected error.

Two families (DESIGN section 1):

* :class:`DistanceUncertainty` -- the thesis's signal: distance from the
  structure to its nearest training structure in a cheap, permutation-invariant
  descriptor (Coulomb-matrix eigenspectrum for molecules, sine-matrix
  eigenspectrum for periodic cells), robust-scaled, via scikit-learn's
  ``NearestNeighbors``.  Needs no surrogate prediction.
* :class:`EnsembleUncertainty` -- the spread the surrogate attaches to its own
  prediction (ensemble std, or the Bayesian posterior std of
  :class:`~ase_proxima.surrogates.SOAPBayesianRidge`), reduced in the same way
  as the error metric so u and the error share units.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from ase import Atoms
from dscribe.descriptors import CoulombMatrix, SineMatrix
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import RobustScaler

from .metrics import free_atoms, metric_properties, reduce_spread
from .surrogates.base import FitError, Prediction

__all__ = ["Uncertainty", "DistanceUncertainty", "EnsembleUncertainty"]


class Uncertainty(ABC):
    """Protocol of gate signals."""

    #: True when :meth:`score` reads the surrogate's prediction (so it is made first)
    needs_prediction: bool = False
    #: are the thread pools limited to one thread around :meth:`score` (see the surrogates')?
    scores_on_one_thread: bool = True

    def fit(self, images: Sequence[Atoms]) -> Uncertainty:
        """Refresh whatever the signal keeps of the training set (called with every refit);
        any failure reaches the caller as a :class:`~ase_proxima.surrogates.FitError`."""
        try:
            self._fit(images)
        except FitError:
            raise
        except Exception as err:
            raise FitError(f"{type(self).__name__} fit failed: {type(err).__name__}: {err}") from err
        return self

    def _fit(self, images: Sequence[Atoms]) -> None:
        """What a signal keeps of the training set (nothing by default)."""

    def accepts(self, atoms: Atoms) -> str | None:
        """``None`` if the signal is defined for ``atoms``, else why not."""
        return None

    @abstractmethod
    def score(self, atoms: Atoms, prediction: Prediction | None) -> float:
        """The uncertainty u of one structure (finite, >= 0)."""


class DistanceUncertainty(Uncertainty):
    """1-nearest-neighbour distance to the training set in a scaled matrix-eigenspectrum space."""

    def __init__(self, n_atoms_max: int | None = None) -> None:
        self.n_atoms_max = n_atoms_max
        self._periodic: bool | None = None
        self._desc = None
        self._scaler: RobustScaler | None = None
        self._nn: NearestNeighbors | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_desc"] = None  # dscribe's object is rebuilt from the stored settings
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._nn is not None:
            self._desc = self._make_descriptor()

    def _make_descriptor(self):
        cls = SineMatrix if self._periodic else CoulombMatrix
        return cls(n_atoms_max=self._n_max, permutation="eigenspectrum")

    def _describe(self, images: Sequence[Atoms]) -> np.ndarray:
        return np.atleast_2d(np.asarray(self._desc.create(list(images)), float))

    def _fit(self, images: Sequence[Atoms]) -> None:
        if not images:
            raise ValueError("cannot fit DistanceUncertainty on no structures")
        periodic = {bool(a.pbc.any()) for a in images}
        if len(periodic) != 1:
            raise ValueError("training set mixes periodic and non-periodic structures")
        self._periodic = periodic.pop()
        n_max = max(len(a) for a in images)
        if self.n_atoms_max is not None:
            if n_max > self.n_atoms_max:
                raise ValueError(f"training structure with {n_max} atoms exceeds n_atoms_max={self.n_atoms_max}")
            n_max = self.n_atoms_max
        self._n_max = n_max
        self._desc = self._make_descriptor()
        X = self._describe(images)
        self._scaler = RobustScaler().fit(X)
        self._nn = NearestNeighbors(n_neighbors=1).fit(self._scaler.transform(X))

    def accepts(self, atoms: Atoms) -> str | None:
        if self._nn is None:
            return "distance index not fitted"
        if len(atoms) > self._n_max:
            return f"{len(atoms)} atoms exceed the {self._n_max} the descriptor was built for"
        if bool(atoms.pbc.any()) != self._periodic:
            return "periodicity differs from the training data"
        return None

    def score(self, atoms: Atoms, prediction: Prediction | None = None) -> float:
        if self._nn is None:
            raise RuntimeError("DistanceUncertainty.score called before fit")
        x = self._scaler.transform(self._describe([atoms]))
        dist, _ = self._nn.kneighbors(x)
        return float(dist[0, 0])


class EnsembleUncertainty(Uncertainty):
    """The surrogate's own spread (ensemble std or posterior std), reduced like the error metric."""

    needs_prediction = True
    scores_on_one_thread = False  # it reduces the prediction's spread: no linear algebra

    def __init__(self, metric: str = "energy") -> None:
        metric_properties(metric)
        self.metric = metric

    def score(self, atoms: Atoms, prediction: Prediction | None) -> float:
        if prediction is None:
            raise ValueError("EnsembleUncertainty needs the surrogate's prediction")
        return reduce_spread(self.metric, prediction.spread, len(atoms), free_atoms(atoms))
