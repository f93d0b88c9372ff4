"""The gate: why a call may not be served by the surrogate.

Pure functions of what they are given (no state, nothing counted): each returns a
reason, a short sentence that goes into the call log, or ``None`` when it has no
objection.  The calculator asks them in order:

1. :func:`why_not_ready`: no usable model yet, or a failed fit;
2. :func:`why_outside`: a property the model does not give, a structure outside its
   domain (species, periodicity, size), or no quantity the error metric compares;
3. :func:`why_refused`: a prediction that is non-finite or implausible (a *refusal*,
   counted in ``stats``: the model answered, and its answer was not believable);
4. :func:`why_unvalidated`: a composition (a size, a stoichiometry) on which the surrogate's
   error has not been measured ``window`` times yet: a model is never trusted on a system it
   was not checked on;
5. :func:`why_uncertain`: the controller's threshold (not started, or ``u >= T``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ase import Atoms

from .metrics import metric_properties
from .surrogates.base import Prediction
from .target_call import non_finite
from .training import PlausibleRange

__all__ = ["why_not_ready", "why_outside", "why_refused", "why_unvalidated", "why_uncertain", "is_finite"]


def why_not_ready(fit_error: str | None, points: int, min_training: int, surrogate_fitted: bool) -> str | None:
    """A failed last fit, or too few points / no fit yet (``'startup'``)."""
    if fit_error is not None:
        return f"surrogate fit failed ({fit_error})"
    if points < min_training or not surrogate_fitted:
        return "startup"
    return None


def why_outside(surrogate: Any, uncertainty: Any, atoms: Atoms, properties: Sequence[str],
                error_metric: str) -> str | None:
    """A property the surrogate does not give here, a structure outside its or the uncertainty's
    domain, or nothing the error metric could compare."""
    props = set(surrogate.properties_for(atoms))
    if "energy" in props:
        props.add("free_energy")
    missing = [p for p in properties if p not in props]
    if missing:
        return f"property {missing[0]} not served by the surrogate"
    for part in (surrogate, uncertainty):
        why = part.accepts(atoms)
        if why is not None:
            return f"outside the surrogate's domain: {why}"
    needed = metric_properties(error_metric)
    if not any(p in props for p in needed):
        return f"surrogate gives no {needed[0]} for this structure"
    return None


def is_finite(prediction: Prediction) -> bool:
    """Every number the prediction holds is finite (asked on every call: floats checked as floats)."""
    return not non_finite(prediction.results)


def why_refused(prediction: Prediction, u: float, natoms: int, plausible: PlausibleRange) -> str | None:
    """A prediction not to be believed: non-finite numbers or uncertainty, or values far outside
    what the model was trained on."""
    if not is_finite(prediction):
        return "non-finite surrogate prediction"
    if not math.isfinite(u):
        return "non-finite uncertainty"
    # with a baseline the range is that of the corrections the model learned
    why = plausible.implausible(prediction.results if prediction.learned is None else prediction.learned, natoms)
    if why is not None:
        return f"implausible surrogate prediction: {why}"
    return None


def why_unvalidated(composition: str, comparisons: int, needed: int, clearly_below: bool = False) -> str | None:
    """Too few measured errors on this composition for its answers to be served (fewer suffice
    when they are ``clearly_below`` the bound, as for the controller's early start)."""
    if comparisons < needed and not clearly_below:
        return f"composition {composition} not yet validated ({comparisons} of {needed} comparisons)"
    return None


def why_uncertain(controller: Any, u: float) -> str | None:
    """The controller has no threshold yet (``'startup'``) or ``u`` is not below it."""
    if not controller.ready:
        return "startup"
    if not controller.allows(u):
        return "uncertain"
    return None
