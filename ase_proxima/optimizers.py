"""Which ASE optimiser is asking, and when its answer must come from the target.

An optimiser stops when the largest force is below its ``fmax``.  A served force carries an
error up to the bound, so a surrogate answer that looks converged may not be: FIRE on a
rattled Cu55 stopped at a served fmax of 0.05 eV/A while the true one was 0.098.  A served
answer whose largest force (over the free atoms) is below the criterion plus the error the
bound allows is therefore confirmed by the target (:func:`why_unconfirmed`), so an optimiser
only ever stops on target forces.  The criterion is the user's ``verify_fmax``, or, with
``'auto'``, the ``fmax`` of the ASE optimiser found up the call stack (``Optimizer.run``
records it on the optimiser).
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

__all__ = ["enclosing_fmax", "why_unconfirmed", "force_margin"]


def enclosing_fmax(max_depth: int = 40) -> float | None:
    """The ``fmax`` of the ASE optimiser whose step is asking for forces, if one is."""
    from ase.optimize.optimize import Optimizer

    frame = sys._getframe(1)
    for _ in range(max_depth):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if isinstance(owner, Optimizer):
            fmax = getattr(owner, "fmax", None)
            return float(fmax) if isinstance(fmax, (int, float)) else None
        frame = frame.f_back
    return None


def force_margin(metric: str, error_bound: float, criterion: float) -> float:
    """How far above the criterion a served largest force could still hide a true one below it:
    the bound itself for ``forces_max``, three times it for the component mean of
    ``forces_mean``, and the criterion again when the metric bounds energies only."""
    if metric == "forces_max":
        return error_bound
    if metric == "forces_mean":
        return 3.0 * error_bound
    return criterion


def why_unconfirmed(forces: Any, free: np.ndarray | None, criterion: float, margin: float) -> str | None:
    """A served answer that looks converged (largest force below ``criterion + margin``), or ``None``."""
    f = np.asarray(forces, float)
    if free is not None and free.any():
        f = f[free]
    largest = float(np.sqrt((f ** 2).sum(axis=1)).max()) if f.size else 0.0
    if largest < criterion + margin:
        return (f"converged-looking forces confirmed by the target (served fmax {largest:.3g} < criterion "
                f"{criterion:.3g} + margin {margin:.3g})")
    return None
