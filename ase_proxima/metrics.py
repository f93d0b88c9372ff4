"""Error metrics between two ASE result dicts (surrogate vs target).

The controller holds one scalar error per comparison.  Which scalar matters is
the user's choice of ``error_metric``:

``energy``          |E_s - E_t| in eV (the thesis's Monte Carlo study)
``energy_per_atom`` |E_s - E_t| / N in eV/atom
``forces_max``      max over atoms of the per-atom L2 force error, eV/A (strict:
                    no atom may be off by more than the bound)
``forces_mean``     mean absolute element-wise force error, eV/A (lenient)

Force metrics compare the atoms that can move: atoms held by ``FixAtoms`` carry forces no
dynamics or optimiser uses, so an error there is not an error of the answer
(:func:`free_atoms`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["METRICS", "UNITS", "metric_properties", "compute_error", "reduce_spread", "free_atoms"]


def free_atoms(atoms: Any) -> np.ndarray | None:
    """Mask of the atoms no ``FixAtoms`` constraint holds (``None``: every atom is free)."""
    from ase.constraints import FixAtoms

    fixed = [c.index for c in getattr(atoms, "constraints", []) if isinstance(c, FixAtoms)]
    if not fixed:
        return None
    mask = np.ones(len(atoms), bool)
    for index in fixed:
        mask[index] = False
    return mask


def _moving(forces: Any, free: np.ndarray | None) -> np.ndarray:
    f = np.asarray(forces, float)
    return f if free is None or not free.any() else f[free]


def _energy(a: Mapping, b: Mapping, natoms: int, free: np.ndarray | None = None) -> float:
    return abs(float(a["energy"]) - float(b["energy"]))


def _energy_per_atom(a: Mapping, b: Mapping, natoms: int, free: np.ndarray | None = None) -> float:
    return _energy(a, b, natoms) / natoms


def _forces_max(a: Mapping, b: Mapping, natoms: int, free: np.ndarray | None = None) -> float:
    diff = _moving(a["forces"], free) - _moving(b["forces"], free)
    return float(np.max(np.linalg.norm(diff, axis=1)))


def _forces_mean(a: Mapping, b: Mapping, natoms: int, free: np.ndarray | None = None) -> float:
    diff = _moving(a["forces"], free) - _moving(b["forces"], free)
    return float(np.mean(np.abs(diff)))


METRICS: dict[str, Callable[..., float]] = {
    "energy": _energy,
    "energy_per_atom": _energy_per_atom,
    "forces_max": _forces_max,
    "forces_mean": _forces_mean,
}

#: the unit of each metric's error
UNITS = {"energy": "eV", "energy_per_atom": "eV/atom", "forces_max": "eV/A", "forces_mean": "eV/A"}

_NEEDS = {
    "energy": ("energy",),
    "energy_per_atom": ("energy",),
    "forces_max": ("forces",),
    "forces_mean": ("forces",),
}


def metric_properties(metric: str) -> tuple[str, ...]:
    """The result properties a metric compares (raises ValueError for unknown names)."""
    try:
        return _NEEDS[metric]
    except KeyError:
        raise ValueError(f"unknown error_metric {metric!r}; choose one of {sorted(METRICS)}") from None


def compute_error(metric: str, predicted: Mapping, reference: Mapping, natoms: int,
                  free: np.ndarray | None = None) -> float:
    """Scalar error of ``predicted`` against ``reference`` under ``metric`` (force metrics over
    the ``free`` atoms only, when given)."""
    metric_properties(metric)
    return METRICS[metric](predicted, reference, natoms, free)


def reduce_spread(metric: str, spread: Mapping, natoms: int, free: np.ndarray | None = None) -> float:
    """Reduce per-property standard deviations to one number in the metric's terms.

    ``spread`` holds the standard deviation of each predicted quantity (an
    ensemble's spread or a Bayesian posterior std): ``energy`` a float,
    ``forces`` an (N, 3) array.  The reduction mirrors the metric, so that the
    uncertainty and the error it forecasts are in the same units.
    """
    needed = metric_properties(metric)[0]
    if needed not in spread:
        raise KeyError(f"the surrogate gives no spread for {needed!r}, needed by error_metric {metric!r}")
    if metric == "energy":
        return float(spread["energy"])
    if metric == "energy_per_atom":
        return float(spread["energy"]) / natoms
    sf = _moving(spread["forces"], free)
    if metric == "forces_max":
        return float(np.max(np.linalg.norm(sf, axis=1)))
    return float(np.mean(np.abs(sf)))
