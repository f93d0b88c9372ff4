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

What changed since the target's last calculation is ASE's ``check_state``, a comparison of
every atom's position that costs about as much as a small classical target's whole answer.
When the caller already knows the changes (the structure before this one was the target's
last, and nothing else has used the target since), they are handed to the target as its own
``get_property`` would have found them; otherwise the target compares as usual.
"""
from __future__ import annotations

import math
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
        v = results[k]
        if isinstance(v, float):  # the common cases first: this runs on every target call
            finite = math.isfinite(v)
        elif isinstance(v, np.ndarray) and v.dtype.kind == "f":
            finite = bool(np.isfinite(v).all())
        else:
            try:
                finite = bool(np.isfinite(np.asarray(v, float)).all())
            except (TypeError, ValueError):
                continue  # not numeric
        if not finite:
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
        self._left: Any = None  # the target's own copy of the structure our last call left it with
        # a target whose get_property and check_state are ASE's: changes can be handed to it
        kind = type(target)
        self._plain = (isinstance(target, Calculator) and kind.get_property is Calculator.get_property
                       and kind.check_state is Calculator.check_state)

    def in_step(self) -> bool:
        """Has the target been left as our last call left it (nothing else used it since)?"""
        return self._left is not None and self.target.atoms is self._left

    def __call__(self, atoms: Atoms, properties: Sequence[str], extras: Iterable[str] = (),
                 changes: Sequence[str] | None = None, snapshot: bool = False) -> dict[str, Any]:
        """The target's results for ``properties`` (and, where it can, ``extras``) on ``atoms``;
        ``changes``: what changed since the structure of the target's last call, when known;
        ``snapshot``: ``atoms`` is a private copy no one changes (the target need not copy it)."""
        extras = [p for p in extras if p not in properties]
        known = list(changes) if changes is not None and self._plain and self.in_step() else None
        self._left = None
        attempt = 0
        while True:
            try:
                results = call_with_timeout(lambda: self._ask(atoms, properties, extras, known, snapshot), self.timeout)
                bad = non_finite(results)
                if bad:
                    raise TargetError(f"the target returned non-finite {', '.join(bad)}")
            except Exception:
                self.failures += 1
                known = None
                self.target.reset()
                if attempt >= self.retries:
                    raise
                attempt += 1
                continue
            self.calls += 1
            self._left = getattr(self.target, "atoms", None)
            return results

    def _ask(self, atoms: Atoms, properties: Sequence[str], extras: Sequence[str],
             known: list[str] | None, snapshot: bool = False) -> dict[str, Any]:
        pending = known  # the changes the next calculation is told of (none after the first)

        def get(name: str) -> None:
            nonlocal pending
            if pending is None:
                self.target.get_property(name, atoms)
            else:
                self._get(name, atoms, pending, snapshot)
                pending = []

        if known:  # as ASE's get_property does on a change
            self.target.atoms, self.target.results = None, {}
        for name in properties:
            get(name)
        for name in extras:
            if name not in self.target.results:
                try:
                    get(name)
                except PropertyNotImplementedError:
                    pass  # a training extra the target could not give this time
        return {k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in self.target.results.items()}

    def _get(self, name: str, atoms: Atoms, changes: list[str], snapshot: bool = False) -> None:
        """ASE's ``Calculator.get_property`` with the changes known instead of compared (and a
        private ``snapshot`` handed over as it is: ASE's calculate makes the target's own copy)."""
        t = self.target
        if name not in t.implemented_properties:
            raise PropertyNotImplementedError(f"{name} property not implemented")
        if name not in t.results:
            if t.use_cache:
                t.atoms = atoms if snapshot else atoms.copy()
            t.calculate(atoms, [name], changes)
            if name not in t.results:
                raise PropertyNotImplementedError(f"{name} not present in this calculation")
