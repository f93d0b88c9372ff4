"""Does the bound hold?  Run a cheap plant through Proxima, check every served answer against
the target, and compare the true served error with the audited estimate.

The controller holds the audited window error plus ``confidence`` standard errors at the bound,
and ``stats['served_error']`` +- ``stats['served_error_se']`` estimates the served error.  If
both do their job, a run's true served error should exceed ``bound + se`` in at most about 16%
of runs (a one-sided one-sigma excursion of the estimate), and the true error should lie within
one / two standard errors of the estimate in about 68% / 95% of runs (``z`` = (true - estimate)
/ se); :func:`bound_check` measures both.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

__all__ = ["check_run", "bound_check"]


def check_run(seed: int, steps: int = 400, error_bound: float = 0.005, temperature_K: float = 500.0,
              step_size: float = 0.01, molecule: str = "CH4") -> dict[str, Any]:
    """One Metropolis run of ``molecule`` with ASE's EMT as the target; every served energy is
    recomputed with EMT to get the true served error.  EMT stands in for a costly target here:
    the cost rule, which would rightly keep so cheap a target to itself, is off."""
    from ase.build import molecule as build
    from ase.calculators.emt import EMT

    from .calculator import ProximaCalculator
    from .workflows.mc import MonteCarlo

    calc = ProximaCalculator(target=EMT(), error_bound=error_bound, seed=seed, cost_aware=False)
    truth = EMT()
    walker = build(molecule)
    walker.calc = calc
    mc = MonteCarlo(walker, temperature_K=temperature_K, step_size=step_size, rng=seed + 1000)
    served_errors: list[float] = []

    def check() -> None:
        if mc.nsteps > 0 and calc.log[-1]["kind"] == "surrogate":
            served_errors.append(abs(mc.trial_energy - truth.get_potential_energy(mc.trial)))

    mc.attach(check)
    mc.run(steps)
    s = calc.stats
    true = float(np.mean(served_errors)) if served_errors else math.nan
    return {"seed": seed, "steps": steps, "error_bound": error_bound, "served_calls": len(served_errors),
            "served_fraction": s["served_fraction"], "true_served_error": true,
            "estimate": s["served_error"], "estimate_se": s["served_error_se"], "audits": s["audits"],
            "exceeds_bound_plus_se": bool(true > error_bound + (s["served_error_se"]
                                                               if math.isfinite(s["served_error_se"]) else 0.0)),
            "exceeds_bound": bool(true > error_bound),
            "z": (true - s["served_error"]) / s["served_error_se"] if s["served_error_se"] > 0 else math.nan}


def bound_check(seeds: Sequence[int], **kw: Any) -> dict[str, Any]:
    """:func:`check_run` over ``seeds``: per-run rows and the fractions that matter."""
    rows = [check_run(s, **kw) for s in seeds]
    valid = [r for r in rows if math.isfinite(r["true_served_error"])]
    n = len(valid)
    return {"runs": rows, "runs_serving": n,
            "fraction_exceeding_bound_plus_se": sum(r["exceeds_bound_plus_se"] for r in valid) / n if n else math.nan,
            "fraction_exceeding_bound": sum(r["exceeds_bound"] for r in valid) / n if n else math.nan,
            "mean_true_over_bound": float(np.mean([r["true_served_error"] / r["error_bound"] for r in valid]))
            if n else math.nan,
            "promised_at_most": 0.16,
            # calibration of the estimate: a Gaussian estimate is within 1 / 2 sigma 68% / 95% of the time
            "within_1_se": _share([abs(r["z"]) <= 1 for r in valid if math.isfinite(r["z"])]),
            "within_2_se": _share([abs(r["z"]) <= 2 for r in valid if math.isfinite(r["z"])]),
            "mean_z": float(np.mean([r["z"] for r in valid if math.isfinite(r["z"])])) if n else math.nan}


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else math.nan
