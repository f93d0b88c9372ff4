"""Asking the target: retries, a timeout, and no non-finite number let through.

* The target raises: its exception reaches the caller unchanged, after ``retries`` further
  attempts if the user asked for them.
* The target returns NaN or inf in *any* property it computed (the one asked for, or one it
  computed on the side, such as EMT's forces on an energy call): :class:`TargetError`.  A
  non-finite side result would otherwise be stored for training and returned from ASE's cache.
* The target hangs: with a timeout, :class:`TargetTimeout` after that many seconds.  It uses
  ``SIGALRM``, so it needs the main thread, and it interrupts Python code only: a C extension
  inside one long call is interrupted when it returns to Python.

Every failed attempt is counted (``failures``); the target is reset after each, so no
half-computed result survives into the next attempt.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, CalculationFailed, PropertyNotImplementedError

__all__ = ["TargetCall", "TargetError", "TargetTimeout", "call_with_timeout", "non_finite"]

T = TypeVar("T")


class TargetError(CalculationFailed):
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


class TargetCall:
    """The target of a run, asked for a call's properties (and training extras) with the run's
    retry and timeout policy.  ``calls`` counts answered calls, ``failures`` failed attempts."""

    def __init__(self, target: Calculator, retries: int = 0, timeout: float | None = None) -> None:
        self.target = target
        self.retries = retries
        self.timeout = timeout
        self.calls = 0
        self.failures = 0

    def __call__(self, atoms: Atoms, properties: Sequence[str], extras: Iterable[str] = ()) -> dict[str, Any]:
        """The target's results for ``properties`` (and, where it can, ``extras``) on ``atoms``."""
        extras = [p for p in extras if p not in properties]
        attempt = 0
        while True:
            try:
                results = call_with_timeout(lambda: self._ask(atoms, properties, extras), self.timeout)
                bad = non_finite(results)
                if bad:
                    raise TargetError(f"the target returned non-finite {', '.join(bad)}")
            except Exception:
                self.failures += 1
                self.target.reset()
                if attempt >= self.retries:
                    raise
                attempt += 1
                continue
            self.calls += 1
            return results

    def _ask(self, atoms: Atoms, properties: Sequence[str], extras: Sequence[str]) -> dict[str, Any]:
        for name in properties:
            self.target.get_property(name, atoms)
        for name in extras:
            if name not in self.target.results:
                try:
                    self.target.get_property(name, atoms)
                except PropertyNotImplementedError:
                    pass  # a training extra the target could not give this time
        return {k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in self.target.results.items()}
