"""What a ProximaCalculator does when its target or surrogate misbehaves.

* The target raises: its exception reaches the user unchanged, after ``retries`` further
  attempts if the user asked for them; nothing from the failed call is stored or logged.
* The target returns NaN or inf: :class:`TargetError` (never stored, never returned).
* The target hangs: with a timeout, :class:`TargetTimeout` after that many seconds.  It uses
  ``SIGALRM``, so it needs the main thread, and it interrupts Python code only: a C extension
  inside one long call is interrupted when it returns to Python.
* The surrogate predicts NaN, inf, or energies or forces far outside what it was trained on:
  the call goes to the target and ``stats['refusals']`` counts it (see
  :func:`implausible`).
"""
from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

__all__ = ["TargetError", "TargetTimeout", "call_with_timeout", "non_finite", "TrainingRange", "implausible",
           "FaultInjector"]

T = TypeVar("T")


class TargetError(RuntimeError):
    """The target gave no usable answer (non-finite results, a timeout)."""


class TargetTimeout(TargetError, TimeoutError):
    """The target did not answer within the calculator's ``target_timeout``."""


def call_with_timeout(fn: Callable[[], T], seconds: float | None) -> T:
    """``fn()``, interrupted with :class:`TargetTimeout` after ``seconds`` (None: no limit)."""
    if seconds is None:
        return fn()
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("target_timeout works in the main thread only (it uses SIGALRM)")

    def expire(signum, frame):
        raise TargetTimeout(f"the target did not answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def non_finite(results: Mapping[str, Any], names: Sequence[str] | None = None) -> list[str]:
    """Names of the numeric results (of ``names``, default all) holding NaN or inf."""
    bad = []
    for k in names if names is not None else list(results):
        if k not in results:
            continue
        try:
            values = np.asarray(results[k], float)
        except (TypeError, ValueError):
            continue  # not numeric
        if not np.all(np.isfinite(values)):
            bad.append(k)
    return bad


class TrainingRange:
    """Per-atom energies and force magnitudes seen in training, to refuse absurd predictions."""

    def __init__(self) -> None:
        self.e_min = math.inf
        self.e_max = -math.inf
        self.f_max = 0.0
        self.count = 0

    def add(self, results: Mapping[str, Any], natoms: int) -> None:
        if "energy" in results and natoms:
            e = float(results["energy"]) / natoms
            self.e_min, self.e_max = min(self.e_min, e), max(self.e_max, e)
        if "forces" in results:
            f = np.asarray(results["forces"], float)
            if f.size:
                self.f_max = max(self.f_max, float(np.sqrt((f ** 2).sum(axis=1)).max()))
        self.count += 1


#: how far outside the training range a prediction may go, in units of that range (with floors
#: of 0.1 eV per atom and 1 eV/A so that a narrow early training set does not refuse everything)
PLAUSIBLE_MARGIN = 1.0


def implausible(results: Mapping[str, Any], natoms: int, seen: TrainingRange) -> str | None:
    """Why a surrogate answer is implausible, or ``None``: an energy per atom beyond the training
    range by more than one training spread (at least 0.1 eV), or a force larger than three
    times the largest trained force (and 1 eV/A more)."""
    if seen.count == 0 or not natoms:
        return None
    if "energy" in results and math.isfinite(seen.e_min):
        e = float(results["energy"]) / natoms
        margin = max(PLAUSIBLE_MARGIN * (seen.e_max - seen.e_min), 0.1)
        if not seen.e_min - margin <= e <= seen.e_max + margin:
            return (f"energy {e:.4g} eV/atom outside the trained {seen.e_min:.4g} .. {seen.e_max:.4g} "
                    f"(+- {margin:.3g})")
    if "forces" in results and seen.f_max > 0:
        f = np.asarray(results["forces"], float)
        if f.size:
            fmax = float(np.sqrt((f ** 2).sum(axis=1)).max())
            limit = 3.0 * seen.f_max + 1.0
            if fmax > limit:
                return f"force {fmax:.3g} eV/A above {limit:.3g} (3x the largest trained, plus 1)"
    return None


class FaultInjector(Calculator):
    """An ASE calculator that passes every call to ``target`` and, on chosen or random calls,
    fails the way real targets do: raises (an SCF that does not converge), returns NaN, or hangs.

    For testing a run's resilience (the project's soak benchmark uses it).  ``rate``: chance per
    call of a fault, drawn among ``kinds``; ``on_calls``: ``{call number (1-based): kind}``.
    ``injected`` counts the faults of each kind.
    """

    KINDS = ("raise", "nan", "hang")

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
            if "forces" in self.results:
                self.results["forces"] = np.full_like(self.results["forces"], math.nan)
