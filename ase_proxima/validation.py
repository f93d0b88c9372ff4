"""Does the bound hold?  Run a cheap plant through Proxima, check every served answer against
the target, and compare the true served error with the audited estimate.

The controller holds the audited window error plus ``confidence`` standard errors at the bound
(and the run's upper estimate, where it is higher), and ``stats['served_error']`` +-
``stats['served_error_se']`` estimates the served error.  If
both do their job, a run's true served error should exceed ``bound + se`` in at most about 16%
of runs (a one-sided one-sigma excursion of the estimate), and the true error should lie within
one / two standard errors of the estimate in about 68% / 95% of runs (``z`` = (true - estimate)
/ se); :func:`bound_check` measures both.  It also checks the certificate
(``stats['served_error_upper']``, :mod:`.certificate`) at every served call: the true mean of
the answers served so far must stay under it at every call, in all but about
``1 - confidence_level`` of runs.  :class:`RunForcesCheck` does the same check run by run for
the coexistence workflows, into a file a resumed study reads back, and :func:`phase_balance`
asks whether a model keeps the target's solid-liquid balance, which sets a melting point.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from time import perf_counter
from typing import Any, Sequence

import numpy as np
from ase import units

from .certificate import ServedErrorBound
from .metrics import compute_error

__all__ = ["ServedTruth", "RunForcesCheck", "phase_balance", "labelled", "check_run", "bound_check",
           "certificate_run", "miscoverage", "ADVERSARIES"]


class ServedTruth:
    """Attached to a driver (``driver.attach(truth)``) after the calculator has answered: on each
    call the surrogate answered, the true error from ``true_error()`` (an independent target), and
    whether the true mean so far was over the certificate reported at that moment."""

    def __init__(self, calc: Any, true_error: Callable[[], float]) -> None:
        self.calc, self.true_error = calc, true_error
        self.errors: list[float] = []
        self.served_at: list[int] = []  # the call count at each served answer
        self.misses: list[int] = []  # served answers (counted from one) with the truth over the certificate
        self.audits_before_first: int | None = None
        self._total = 0.0
        self._level = calc.parameters["confidence_level"]

    def __call__(self) -> None:
        calc = self.calc
        if not calc.log or calc.log[-1]["kind"] != "surrogate":
            return
        if not self.errors:
            self.audits_before_first = calc.tally.audits
        self.errors.append(self.true_error())
        self.served_at.append(calc.tally.calls)
        self._total += self.errors[-1]
        if self._total / len(self.errors) > calc.tally.certificate.upper(self._level):
            self.misses.append(len(self.errors))

    @property
    def mean(self) -> float:
        """The true mean error of the served answers (NaN before any)."""
        return float(np.mean(self.errors)) if self.errors else math.nan


class RunForcesCheck:
    """A workflow's served forces against an independent target, one record per finished run.

    ``step`` (the workflow's ``on_step``, after each MD step) checks the forces of a step whose last
    call the surrogate answered; ``run`` (its ``on_run``) appends the finished run's sums and
    largest error per metric as one line of ``path`` and starts the next run's, so a study
    resumed after a kill still has the check of every run it finished.  With ``pressure``, the
    pressure the surrogate served with those forces (a barostat's input, which a bound on forces
    does not bound) is checked too: the run's summed signed error, served minus true, in GPa.
    """

    def __init__(self, calc: Any, truth: Any, path: Any,
                 metrics: Sequence[str] = ("forces_mean", "forces_max"), pressure: bool = False) -> None:
        self.calc, self.truth, self.path, self.metrics = calc, truth, path, tuple(metrics)
        self.pressure = pressure
        self.errors: dict[str, list[float]] = {m: [] for m in self.metrics}
        self.pressure_errors: list[float] = []
        self.seconds = 0.0

    def step(self, atoms: Any) -> None:
        log = getattr(self.calc, "log", None)  # the target alone serves nothing
        if log is None or not len(log) or log[-1]["kind"] != "surrogate":
            return
        t = perf_counter()
        probe = atoms.copy()
        probe.calc = self.truth
        got, exact = {"forces": atoms.get_forces()}, {"forces": probe.get_forces()}
        for m in self.metrics:
            self.errors[m].append(compute_error(m, got, exact, len(atoms)))
        served_stress = self.calc.results.get("stress") if self.pressure else None
        if served_stress is not None:  # served with these forces: reading it calls nothing
            error = np.mean(probe.get_stress()[:3]) - np.mean(np.asarray(served_stress)[:3])
            self.pressure_errors.append(float(error) / units.GPa)
        self.seconds += perf_counter() - t

    def run(self, outcome: Any) -> dict[str, Any]:
        row: dict[str, Any] = {"run": outcome.run, "seed": outcome.seed, "temperature": outcome.temperature,
                               "checked_steps": len(self.errors[self.metrics[0]]), "check_s": self.seconds}
        for m, e in self.errors.items():
            row[f"{m}_sum"] = float(np.sum(e))
            row[f"{m}_max"] = float(np.max(e)) if e else None
        if self.pressure:
            row["pressure_checked_steps"] = len(self.pressure_errors)
            row["pressure_error_GPa_sum"] = float(np.sum(self.pressure_errors))
            row["pressure_error_GPa_abs_max"] = float(np.max(np.abs(self.pressure_errors))) \
                if self.pressure_errors else None
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        self.errors = {m: [] for m in self.metrics}
        self.pressure_errors = []
        self.seconds = 0.0
        return row

    @staticmethod
    def read(path: Any) -> list[dict[str, Any]]:
        """The records written so far (none where the file does not exist)."""
        path = Path(path)
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def labelled(cells: Sequence[Any], target: Any) -> list[tuple[Any, dict[str, Any]]]:
    """Each cell with the target's energy, forces and stress on it (copies: the cells keep their
    calculators)."""
    out = []
    for atoms in cells:
        a = atoms.copy()
        a.calc = target
        out.append((a, {"energy": a.get_potential_energy(), "forces": a.get_forces(), "stress": a.get_stress()}))
    return out


def phase_balance(predict: Callable[[Any], Mapping[str, Any]],
                  phases: Mapping[str, Sequence[tuple[Any, Mapping[str, Any]]]]) -> dict[str, Any]:
    """How a model's energy, forces and pressure err on each phase's cells (from :func:`labelled`):
    per phase the mean energy bias per atom (meV, prediction minus target) with its standard
    error, the mean absolute force error (eV/A) and the pressure bias (GPa).  A bias that favours
    one phase over the other by d meV/atom moves a coexistence melting point by about d over
    the entropy of fusion per atom; with both a ``solid`` and a ``liquid`` phase,
    ``solid_favoured_by_meV_per_atom`` is that difference (positive: the solid is too stable)."""
    res: dict[str, Any] = {}
    for phase, items in phases.items():
        e_bias, f_err, p_bias = [], [], []
        for atoms, exact in items:
            got = predict(atoms)
            e_bias.append(1000.0 * (got["energy"] - exact["energy"]) / len(atoms))
            f_err.append(float(np.mean(np.abs(np.asarray(got["forces"]) - exact["forces"]))))
            p_bias.append(-float(np.mean(np.asarray(got["stress"])[:3] - np.asarray(exact["stress"])[:3])) / units.GPa)
        res[phase] = {"cells": len(items),
                      "energy_bias_meV_per_atom": float(np.mean(e_bias)) if items else None,
                      "energy_bias_se": float(np.std(e_bias, ddof=1) / math.sqrt(len(e_bias)))
                      if len(e_bias) > 1 else None,
                      "forces_mean_error": float(np.mean(f_err)) if items else None,
                      "pressure_bias_GPa": float(np.mean(p_bias)) if items else None}
    solid, liquid = res.get("solid"), res.get("liquid")
    if solid and liquid and solid["cells"] and liquid["cells"]:
        res["solid_favoured_by_meV_per_atom"] = (liquid["energy_bias_meV_per_atom"]
                                                 - solid["energy_bias_meV_per_atom"])
    return res


def check_run(seed: int, steps: int = 400, error_bound: float = 0.005, temperature_K: float = 500.0,
              step_size: float = 0.01, molecule: str = "CH4", **settings: Any) -> dict[str, Any]:
    """One Metropolis run of ``molecule`` with ASE's EMT as the target; every served energy is
    recomputed with EMT to get the true served error.  EMT stands in for a costly target here:
    the cost rule, which would rightly keep so cheap a target to itself, is off.  ``settings``
    go to the calculator (``audit_fraction=0.2``, ...)."""
    from ase.build import molecule as build
    from ase.calculators.emt import EMT

    from .calculator import ProximaCalculator
    from .workflows.mc import MonteCarlo

    calc = ProximaCalculator(target=EMT(), error_bound=error_bound, seed=seed, **{"cost_aware": False, **settings})
    reference = EMT()
    walker = build(molecule)
    walker.calc = calc
    mc = MonteCarlo(walker, temperature_K=temperature_K, step_size=step_size, rng=seed + 1000)
    truth = ServedTruth(calc, lambda: abs(mc.trial_energy - reference.get_potential_energy(mc.trial)))
    mc.attach(truth)
    mc.run(steps)
    s = calc.stats
    true, served_errors, missed = truth.mean, truth.errors, truth.misses
    return {"seed": seed, "steps": steps, "error_bound": error_bound, "served_calls": len(served_errors),
            "served_fraction": s["served_fraction"], "true_served_error": true,
            "estimate": s["served_error"], "estimate_se": s["served_error_se"], "audits": s["audits"],
            "exceeds_bound_plus_se": bool(true > error_bound + (s["served_error_se"]
                                                               if math.isfinite(s["served_error_se"]) else 0.0)),
            "exceeds_bound": bool(true > error_bound),
            "served_error_upper": s["served_error_upper"], "certificate_missed": bool(missed),
            "certificate_missed_calls": len(missed),
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
            # the certificate: a run's true served mean above it at any served call
            "fraction_certificate_missed": _share([r["certificate_missed"] for r in valid]),
            # calibration of the estimate: a Gaussian estimate is within 1 / 2 sigma 68% / 95% of the time
            "within_1_se": _share([abs(r["z"]) <= 1 for r in valid if math.isfinite(r["z"])]),
            "within_2_se": _share([abs(r["z"]) <= 2 for r in valid if math.isfinite(r["z"])]),
            "mean_z": float(np.mean([r["z"] for r in valid if math.isfinite(r["z"])])) if n else math.nan}


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else math.nan


# ------------------------------------------------- the certificate against adversaries
#: an adversary: (call index, every past (audited, error)) -> (error, audit probability, scale)
Adversary = Callable[[int, list[tuple[bool, float]]], tuple[float, float, float]]


def certificate_run(adversary: Adversary, rng: np.random.Generator, calls: int, level: float = 0.95,
                    returned: bool = False) -> tuple[bool, ServedErrorBound, float]:
    """One simulated run of ``calls`` servable calls against ``adversary(t, history) -> (error, p,
    scale)``, which sees every past coin and error and may adapt to them.  Returns (whether the
    true mean served error ever exceeded the certificate, the certificate, the true mean)."""
    bound = ServedErrorBound()
    history: list[tuple[bool, float]] = []
    served_sum = 0.0
    answers = 0
    uncovered = False
    for t in range(calls):
        e, p, scale = adversary(t, history)
        audited = rng.random() < p
        if audited:
            bound.audit(e, p, scale, returned=returned)
            if returned:
                served_sum += e
                answers += 1
        else:
            bound.serve(p, scale)
            served_sum += e
            answers += 1
        history.append((audited, e))
        if answers and served_sum / answers > bound.upper(level) + 1e-12:
            uncovered = True
    return uncovered, bound, served_sum / answers if answers else math.nan


def miscoverage(adversary: Adversary, runs: int, calls: int, seed: int, **kw: Any) -> float:
    """The share of ``runs`` simulated runs in which the certificate failed at some call."""
    rng = np.random.default_rng(seed)
    return float(np.mean([certificate_run(adversary, rng, calls, **kw)[0] for _ in range(runs)]))


# ------------------------------------------------- adversaries of the certificate
def at_scale(p: float, scale: float = 1.0) -> Adversary:
    """Every error at its scale: the bound is nearly tight before the first audit."""
    return lambda t, h: (scale, p, scale)


def hide_after_audit(p: float, scale: float = 1.0) -> Adversary:
    """Errors at the scale on two calls in three, except just after an audit (when a watcher might
    look); the audit rate halved on every other call."""
    def adversary(t, h):
        recent_audit = bool(h) and h[-1][0]
        return (scale if not recent_audit and t % 3 else 0.05 * scale), (p if t % 2 else p / 2), scale
    return adversary


def drift(p: float, scale: float = 1.0) -> Adversary:
    """Errors drifting up from small to the scale; the audit rate chasing the last audited error."""
    def adversary(t, h):
        audited = [e for a, e in h if a]
        rate = p * (0.3 + 0.7 * (audited[-1] / scale if audited else 1.0))
        return min(scale, scale * (0.02 + t / 150.0)), rate, scale
    return adversary


def bursts(p: float, scale: float = 1.0) -> Adversary:
    """Errors at the scale in bursts that start whenever the last call was served."""
    def adversary(t, h):
        served_run = 0
        for a, _ in reversed(h):
            if a:
                break
            served_run += 1
        return (scale if 3 <= served_run % 20 <= 12 else 0.0), p, scale
    return adversary


def exploit_rare_audits(p: float, scale: float = 1.0) -> Adversary:
    """Errors at the scale exactly on the calls audited least (a tenth of the rate), none elsewhere."""
    return lambda t, h: ((scale, p / 10, scale) if t % 4 == 0 else (0.0, p, scale))


ADVERSARIES: dict[str, Callable[..., Adversary]] = {"at_scale": at_scale, "hide_after_audit": hide_after_audit,
                                                    "drift": drift, "bursts": bursts,
                                                    "exploit_rare_audits": exploit_rare_audits}
