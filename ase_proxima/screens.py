"""Cheap energies that screen Monte Carlo proposals before the target sees them.

An exact Monte Carlo driver (:class:`~ase_proxima.workflows.exact_mc.ExactMonteCarlo`) asks a
*screen* for an energy of every proposal and only asks the target about those the screen lets
through; a second acceptance step corrects for the screen, so the chain samples the target's
Boltzmann distribution whatever the screen's errors.  For that the screen must be one fixed
function of the structure while the exact chain runs: it may learn only while it is told to
(:meth:`Screen.learn` during the driver's burn-in), and :meth:`Screen.freeze` ends that.

Two screens:

* :class:`CalculatorScreen`: any ASE calculator (a tight-binding or force-field baseline, a
  pretrained potential, a deliberately wrong model in a test); fixed from the start.
* :class:`LearnedScreen`: the project's surrogate families learning the target's energies (on
  top of a baseline calculator, optionally), refitted on a geometric schedule while it learns.
  :meth:`LearnedScreen.from_proxima` takes a :class:`~ase_proxima.ProximaCalculator`'s surrogate,
  baseline and training data, so a model trained in a bounded-error run screens an exact one.
"""

from __future__ import annotations

import math
import time
from typing import Any, Protocol, runtime_checkable

from ase import Atoms
from ase.calculators.calculator import Calculator
from sklearn.base import clone

from .baseline import Baseline
from .surrogates.base import Surrogate
from .surrogates.defaults import default_surrogate

__all__ = ["Screen", "CalculatorScreen", "LearnedScreen", "as_screen"]


@runtime_checkable
class Screen(Protocol):
    """What an exact driver needs of a screen."""

    #: changes whenever the screen's energy function changes (a refit): the driver then
    #: re-evaluates the current state's screen energy, so both ends of a ratio use one function
    version: int

    @property
    def ready(self) -> bool:
        """Can it screen now (a learned screen before its first fit cannot)?"""

    def energy(self, atoms: Atoms) -> float:
        """Its energy of ``atoms`` in eV."""

    def learn(self, atoms: Atoms, energy: float) -> None:
        """A target energy the driver computed (ignored once frozen, or by a fixed screen)."""

    def freeze(self) -> None:
        """Stop learning: from now on ``energy`` is one fixed function."""

    def summary(self) -> dict[str, Any]:
        """Calls, seconds and fits, for the driver's statistics."""

    def state(self) -> dict[str, Any]:
        """Plain JSON that :meth:`restore` rebuilds the screen from (a checkpoint of the chain)."""

    def restore(self, state: dict[str, Any]) -> None:
        """Rebuild from :meth:`state`."""


class CalculatorScreen:
    """An ASE calculator's energies as the screen (fixed: it never learns)."""

    version = 0

    def __init__(self, calc: Calculator) -> None:
        if isinstance(calc, type):
            raise TypeError(f"the screen must be a calculator instance, not the class {calc.__name__}")
        if not hasattr(calc, "get_potential_energy"):
            raise TypeError(f"the screen must be an ASE calculator or a Screen, got {calc!r}")
        self.calc = calc
        self.calls, self.seconds = 0, 0.0

    @property
    def ready(self) -> bool:
        return True

    def energy(self, atoms: Atoms) -> float:
        t = time.perf_counter()
        try:
            return float(self.calc.get_potential_energy(atoms))
        finally:
            self.calls += 1
            self.seconds += time.perf_counter() - t

    def learn(self, atoms: Atoms, energy: float) -> None:
        return None

    def freeze(self) -> None:
        return None

    def state(self) -> dict[str, Any]:
        """Nothing to save: the calculator is the screen."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        return None

    def summary(self) -> dict[str, Any]:
        return {"screen": getattr(self.calc, "name", type(self.calc).__name__), "screen_calls": self.calls,
                "screen_seconds": self.seconds, "screen_fits": 0, "screen_training": 0, "screen_fit_seconds": 0.0}


class LearnedScreen:
    """A surrogate learning the target's energies (minus a baseline's, with one).

    Parameters
    ----------
    surrogate:
        A surrogate of :mod:`ase_proxima.surrogates`; ``None``: the default family for the first
        structure it sees (SOAP with Bayesian ridge for a molecule or cluster).
    baseline:
        An ASE calculator the surrogate learns a correction to (``None``: the surrogate learns the
        whole energy).
    min_training:
        Target energies before the first fit; until then it is not ``ready``.
    growth:
        Refit when the training set has grown by this factor since the last fit (a geometric
        schedule: the fits cost a bounded share of a run however long it learns).
    """

    def __init__(self, surrogate: Surrogate | None = None, baseline: Calculator | None = None,
                 min_training: int = 20, growth: float = 1.25) -> None:
        if min_training < 2:
            raise ValueError(f"min_training must be at least 2, got {min_training}")
        if not growth > 1.0:
            raise ValueError(f"growth must be > 1, got {growth}")
        self.surrogate = surrogate
        self.baseline = None if baseline is None else (baseline if isinstance(baseline, Baseline) else Baseline(baseline))
        self.min_training, self.growth = int(min_training), float(growth)
        self.frozen = False
        self.version = 0
        self._atoms: list[Atoms] = []
        self._results: list[dict[str, float]] = []
        self._bases: list[dict[str, float]] = []  # the baseline's energy of each, with a baseline
        self._fitted_on = 0
        self.calls, self.seconds, self.fits, self.fit_seconds = 0, 0.0, 0, 0.0

    @classmethod
    def from_proxima(cls, calc: Any, **kwargs: Any) -> LearnedScreen:
        """A screen of a ProximaCalculator's surrogate family, baseline and training data, refitted
        on those data at once when there are enough: a model trained by a bounded-error run
        screens an exact one from the first step.  The calculator's own surrogate is left as it
        was (the screen fits a clone)."""
        surrogate = None if calc.surrogate is None else clone(calc.surrogate)
        screen = cls(surrogate=surrogate, baseline=None if calc.baseline is None else calc.baseline.calc, **kwargs)
        images, results = calc.training.data()
        screen._atoms = [a.copy() for a in images]
        screen._results = [{"energy": float(r["energy"])} for r in results]
        screen._bases = [{"energy": float(b["energy"])} for b in calc.training.baselines() or []]
        if surrogate is not None and len(screen._atoms) >= screen.min_training:
            screen._fit()
        return screen

    @property
    def ready(self) -> bool:
        return self.surrogate is not None and self.surrogate.is_fitted

    @property
    def training_size(self) -> int:
        return len(self._atoms)

    def energy(self, atoms: Atoms) -> float:
        if not self.ready:
            raise RuntimeError("the learned screen has no fitted model yet (see ready)")
        t = time.perf_counter()
        try:
            if self.baseline is None:
                return float(self.surrogate.predict(atoms, ["energy"]).results["energy"])
            base = {"energy": float(self.baseline.results(atoms, ["energy"])["energy"])}
            return base["energy"] + float(self.surrogate.predict_on(atoms, ["energy"], base).results["energy"])
        finally:
            self.calls += 1
            self.seconds += time.perf_counter() - t

    def learn(self, atoms: Atoms, energy: float) -> None:
        if self.frozen or not math.isfinite(energy):
            return
        if self.surrogate is None:
            self.surrogate = default_surrogate(atoms)
        t = time.perf_counter()
        if self.baseline is not None:
            base = float(self.baseline.results(atoms, ["energy"])["energy"])
            self._bases.append({"energy": base})
            energy -= base
        self._atoms.append(atoms.copy())
        self._results.append({"energy": float(energy)})
        n = len(self._atoms)
        self.seconds += time.perf_counter() - t
        if n >= self.min_training and (self._fitted_on == 0 or n >= self.growth * self._fitted_on):
            self._fit()

    def freeze(self) -> None:
        """Fit on everything learned (when anything is new) and stop learning."""
        if not self.frozen and len(self._atoms) >= self.min_training and len(self._atoms) > self._fitted_on:
            self._fit()
        self.frozen = True

    def state(self) -> dict[str, Any]:
        """What rebuilds this screen (plain JSON): its training structures and energies (the
        corrections, with a baseline), how many its last fit used, and whether it is frozen.  No
        model is saved: :meth:`restore` refits on the same data."""
        first = self._atoms[0] if self._atoms else None
        return {"numbers": [] if first is None else first.numbers.tolist(),
                "cell": None if first is None else first.cell.array.tolist(),
                "pbc": None if first is None else first.pbc.tolist(),
                "positions": [a.positions.tolist() for a in self._atoms],
                "energies": [r["energy"] for r in self._results], "fitted_on": self._fitted_on,
                **({"baseline_energies": [b["energy"] for b in self._bases]} if self.baseline is not None else {}),
                "frozen": self.frozen, "fits": self.fits, "version": self.version}

    def restore(self, state: dict[str, Any]) -> None:
        """Rebuild from :meth:`state`: the same training data, refitted at once on what the last fit
        used.  The refit is close to the saved screen but not identical (fitted in one go, its
        evidence hyperparameters are optimised on all the data, where the running fits re-optimised
        them on a schedule); an exact chain needs only that its screen stays one fixed function
        from the resume on, not that it is the one it had before."""
        from ase import Atoms

        self._atoms = [Atoms(numbers=state["numbers"], positions=p, cell=state["cell"], pbc=state["pbc"])
                       for p in state["positions"]]
        self._results = [{"energy": float(e)} for e in state["energies"]]
        self._bases = ([] if self.baseline is None else  # computed again where a checkpoint lacks them
                       [{"energy": float(e)} for e in state["baseline_energies"]] if "baseline_energies" in state
                       else [{"energy": float(self.baseline.results(a, ["energy"])["energy"])} for a in self._atoms])
        n = int(state["fitted_on"])
        if n:
            if self.surrogate is None:
                self.surrogate = default_surrogate(self._atoms[0])
            t = time.perf_counter()
            self.surrogate.fit(self._atoms[:n], self._results[:n], baselines=self._baselines(n))
            self.fit_seconds += time.perf_counter() - t
        self._fitted_on, self.frozen = n, bool(state["frozen"])
        self.fits, self.version = int(state["fits"]), int(state["version"])

    def _baselines(self, n: int) -> list[dict[str, float]] | None:
        return None if self.baseline is None else self._bases[:n]

    def _fit(self) -> None:
        t = time.perf_counter()
        self.surrogate.fit(self._atoms, self._results, baselines=self._baselines(len(self._atoms)))
        self.fit_seconds += time.perf_counter() - t
        self.fits += 1
        self.version += 1
        self._fitted_on = len(self._atoms)

    def summary(self) -> dict[str, Any]:
        return {"screen": type(self.surrogate).__name__ if self.surrogate is not None else "none yet",
                "screen_baseline": None if self.baseline is None else self.baseline.name,
                "screen_calls": self.calls, "screen_seconds": self.seconds, "screen_fits": self.fits,
                "screen_training": len(self._atoms), "screen_fit_seconds": self.fit_seconds}


def as_screen(screen: Any) -> Screen:
    """A screen from what a user passes: a Screen as it is, a ProximaCalculator's surrogate
    (:meth:`LearnedScreen.from_proxima`), any other ASE calculator fixed, ``None`` a fresh
    :class:`LearnedScreen`."""
    from .calculator import ProximaCalculator

    if screen is None:
        return LearnedScreen()
    if isinstance(screen, ProximaCalculator):
        return LearnedScreen.from_proxima(screen)
    if isinstance(screen, (CalculatorScreen, LearnedScreen)):
        return screen
    if isinstance(screen, Calculator) or hasattr(screen, "get_potential_energy"):
        return CalculatorScreen(screen)
    if isinstance(screen, Screen):
        return screen
    raise TypeError(f"screen must be an ASE calculator, a ProximaCalculator or a Screen, got {screen!r}")
