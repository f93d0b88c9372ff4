"""A calculator that fails the way real targets do, on purpose: for testing a run's resilience.

:class:`FaultInjector` wraps any ASE calculator and, on chosen or random calls, raises (an
SCF that does not converge), returns NaN (all of it, or only the forces), returns an absurd
but finite energy, or hangs.  How a ProximaCalculator copes with each is in
:mod:`ase_proxima.target_call` (the target's faults) and :mod:`ase_proxima.training`
(absurd answers); the project's soak benchmark and fault tests use this class.
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

__all__ = ["FaultInjector"]


class FaultInjector(Calculator):
    """An ASE calculator that passes every call to ``target`` and, on chosen or random calls,
    fails: ``'raise'``, ``'nan'`` (energy and forces), ``'nan_forces'`` (forces only, as a
    side result of an energy call), ``'absurd'`` (a finite energy of 1e30 eV) or ``'hang'``.

    ``rate``: chance per call of a fault, drawn among ``kinds``; ``on_calls``:
    ``{call number (1-based): kind}``.  ``injected`` counts the faults of each kind.  Its name
    and parameters are the target's, so a run store sees the target it stands for.
    """

    KINDS = ("raise", "nan", "nan_forces", "absurd", "hang")

    def __init__(self, target: Calculator, rate: float = 0.0, kinds: Sequence[str] = ("raise", "nan"),
                 on_calls: Mapping[int, str] | None = None, hang_seconds: float = 3600.0,
                 seed: int | None = None) -> None:
        super().__init__()
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate!r}")
        bad = [k for k in [*kinds, *(on_calls or {}).values()] if k not in self.KINDS]
        if bad:
            raise ValueError(f"unknown fault kinds {bad}; known: {self.KINDS}")
        self.target, self.rate, self.kinds = target, float(rate), tuple(kinds)
        self.on_calls = dict(on_calls or {})
        self.hang_seconds = float(hang_seconds)
        self.rng = np.random.default_rng(seed)
        self.implemented_properties = list(target.implemented_properties)
        self.calls = 0
        self.injected = dict.fromkeys(self.KINDS, 0)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        kind = self.on_calls.get(self.calls)
        if kind is None and self.rate and self.rng.random() < self.rate:
            kind = self.kinds[int(self.rng.integers(len(self.kinds)))]
        if kind is not None:
            self.injected[kind] += 1
        if kind == "raise":
            raise RuntimeError(f"injected fault: the target failed on call {self.calls}")
        if kind == "hang":
            time.sleep(self.hang_seconds)
        self.target.reset()
        for name in properties:
            self.target.get_property(name, self.atoms)
        self.results = {k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in self.target.results.items()}
        if kind == "nan":
            self.results["energy"] = math.nan
        if kind == "absurd":
            self.results["energy"] = 1e30
        if kind in ("nan", "absurd", "nan_forces") and "free_energy" in self.results:
            self.results["free_energy"] = self.results["energy"]
        if kind in ("nan", "nan_forces") and "forces" in self.results:
            self.results["forces"] = np.full_like(self.results["forces"], math.nan)

    def _get_name(self) -> str:
        return self.target.name

    def todict(self, skip_default: bool = True) -> dict:
        todict = getattr(self.target, "todict", None)
        if todict is None:
            return {}
        try:
            return todict(skip_default=skip_default)
        except TypeError:
            return todict()
