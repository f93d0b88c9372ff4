"""Thread pools of a run, managed so that a user who sets nothing gets the fast case.

Two kinds of work share the cores: the target's (PySCF's OpenMP and BLAS pools, a C++
library's threads) and the surrogate's (small dense linear algebra, descriptors).  Left
alone they fight: a BLAS call in a prediction wakes a pool that then spins while the
target's OpenMP threads want the same cores, and a small molecule's SCF is often slower on
all cores than on one.  :class:`ThreadPlan` therefore

* runs the surrogate's numerics (fits, predictions, uncertainties) on one thread: its
  matrices are too small to gain from more, and no pool it wakes competes with the target.
  A family whose prediction is a few small products (``predicts_on_one_thread = False``, the
  SOAP ridge) predicts on the pools as they are: limiting them and setting them back costs
  several microseconds a call, more than such a prediction's threads were measured to cost
  a threaded target; its fits are limited all the same;
* gives the target the faster of its own default and one thread, measured: after two calls
  that set programs and pools up (not counted), its calls try the two in the order default,
  one, one, default, ... (``trial_calls`` of each; the mirrored order cancels a drift such as a
  slow warm-up) and one thread is kept only when its mean is faster by at least ``margin``
  (30%): switching pools on every call has a cost of its own, worth paying only for a clear
  gain (a small molecule's SCF on one thread against all cores), not for noise.  The mean, not
  the median: the run pays every call's time, and on a host whose cores other work shares,
  all-core calls are often quick at the median but now and then several times slower (their
  threads wait for a core), which only the mean counts;
* checks the choice as the run goes on, since a host's load changes and a few trial calls can
  mislead: now and then (after ``recheck_every`` calls, the interval doubling each time the
  check leaves the choice as it was, up to ``max_interval`` so a long run still notices a host
  whose load changed hours in) one call runs on the other setting, and the choice follows the
  means of each setting's newest calls (back to the default as soon as it is the faster: it
  costs no switching).

``target_threads``: ``'auto'`` (the above), an integer (the target always runs with that
many), or ``None`` (touch no thread pool, the surrogate's included).  A user who set
``OMP_NUM_THREADS`` (or a BLAS library's own variable) has chosen: ``'auto'`` then leaves the
target's pools as set.
"""
from __future__ import annotations

import os
import statistics
import sys
from collections import deque
from contextlib import nullcontext
from typing import Any

from threadpoolctl import ThreadpoolController

__all__ = ["ThreadPlan", "USER_THREAD_VARIABLES"]

USER_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")

_pools_seen: tuple[int, list[Any]] = (-1, [])


def _pools() -> list[Any]:
    """threadpoolctl's controller of every BLAS and OpenMP pool loaded in this process, looked up
    again when modules were imported since (a new import may have loaded a new pool)."""
    global _pools_seen
    if _pools_seen[0] != len(sys.modules):
        _pools_seen = (len(sys.modules), list(ThreadpoolController().lib_controllers))
    return _pools_seen[1]


class ThreadPlan:
    """Which thread counts the target and the surrogate run with (see the module doc)."""

    WARMUP_CALLS = 2  # the first calls set programs and pools up: not fair trials
    ORDER = ("default", "one", "one", "default")  # the trials' mirrored order, repeated

    def __init__(self, target_threads: str | int | None = "auto", trial_calls: int = 3, margin: float = 0.3,
                 recheck_every: int = 25, newest: int = 5, max_interval: int = 1600) -> None:
        self.target_threads = target_threads
        self.trial_calls, self.margin = int(trial_calls), float(margin)
        self.recheck_every, self.newest, self.max_interval = int(recheck_every), int(newest), int(max_interval)
        self.chosen: int | None = None  # threads the target runs with once decided (None: its default)
        self.auto = target_threads == "auto" and not any(v in os.environ for v in USER_THREAD_VARIABLES)
        self.decided = not self.auto
        if isinstance(target_threads, int) and not isinstance(target_threads, bool):
            self.chosen = target_threads
        self._trials: dict[str, list[float]] = {"default": [], "one": []}
        self._recent: dict[str, deque[float]] = {k: deque(maxlen=self.newest) for k in ("default", "one")}
        self._calls = 0
        self._pending: str | None = None
        self._next_check = 0  # the call count at which the other setting is tried again
        self._interval = self.recheck_every
        self.switches = 0

    # ---------------------------------------------------------------- contexts
    def surrogate(self) -> Any:
        """Context for the surrogate's numerics: one thread (nothing touched with ``None``)."""
        if self.target_threads is None:
            return nullcontext()
        return _limited(1)

    def target(self) -> Any:
        """Context for one target call: the chosen thread count, a trial, or a check."""
        if self.target_threads is None:
            return nullcontext()
        self._pending = None
        if not self.auto:
            return nullcontext() if self.chosen is None else _limited(self.chosen)
        self._calls += 1
        if not self.decided:
            if self._calls > self.WARMUP_CALLS:
                trial = self._calls - self.WARMUP_CALLS - 1
                self._pending = self.ORDER[trial % len(self.ORDER)]
        else:
            self._pending = self._arm(self.chosen)
            if self._calls >= self._next_check:
                self._pending = "default" if self.chosen == 1 else "one"
        return _limited(1) if self._pending == "one" else nullcontext()

    def timed(self, seconds: float) -> None:
        """The target call just made took ``seconds``: it counts towards the choice."""
        arm, self._pending = self._pending, None
        if arm is None:
            return
        self._recent[arm].append(seconds)
        if not self.decided:
            self._trials[arm].append(seconds)
            if min(len(v) for v in self._trials.values()) >= self.trial_calls:
                default, one = (statistics.fmean(self._trials[k]) for k in ("default", "one"))
                self.chosen = 1 if one < (1.0 - self.margin) * default else None
                self.decided = True
                self._next_check = self._calls + self._interval
        elif arm != self._arm(self.chosen):  # a check of the other setting
            default, one = (statistics.fmean(self._recent[k]) for k in ("default", "one"))
            means_say = self._better(default, one)
            if means_say != self.chosen:
                self.chosen, self.switches, self._interval = means_say, self.switches + 1, self.recheck_every
            elif self._better(*((seconds, one) if arm == "default" else (default, seconds))) == self.chosen:
                self._interval = min(2 * self._interval, self.max_interval)  # this call agrees too: less often
            else:  # this call disagrees though the means do not yet: check again soon
                self._interval = self.recheck_every
            self._next_check = self._calls + self._interval

    def _better(self, default: float, one: float) -> int | None:
        """The choice these mean times give, from the current one: one thread needs a clear gain,
        the default (no switching) only to be the faster."""
        if self.chosen == 1:
            return None if default <= one else 1
        return 1 if one < (1.0 - self.margin) * default else None

    @staticmethod
    def _arm(chosen: int | None) -> str:
        return "one" if chosen == 1 else "default"

    # ----------------------------------------------------------- reporting
    def summary(self) -> dict[str, Any]:
        trials = {k: statistics.fmean(v) for k, v in self._trials.items() if v}
        return {"target_threads": ("untouched" if self.target_threads is None else
                                   "deciding" if not self.decided else
                                   "default" if self.chosen is None else self.chosen),
                "thread_trials": trials, "thread_switches": self.switches}

    def state(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "decided": self.decided, "trials": self._trials, "calls": self._calls,
                "recent": {k: list(v) for k, v in self._recent.items()}, "next_check": self._next_check,
                "interval": self._interval, "switches": self.switches}

    def load_state(self, state: dict[str, Any]) -> None:
        if state and self.auto:
            self.chosen, self.decided = state["chosen"], bool(state["decided"])
            self._trials = {k: list(v) for k, v in state["trials"].items()}
            self._calls = int(state["calls"])
            for k, v in state.get("recent", self._trials).items():
                self._recent[k].extend(v)
            self._interval = int(state.get("interval", self.recheck_every))
            self._next_check = int(state.get("next_check", self._calls + self._interval))
            self.switches = int(state.get("switches", 0))


class _limited:
    """Every loaded BLAS and OpenMP pool (PySCF's included) at ``n`` threads, then back as it was
    (threadpoolctl's controllers driven directly, and a plain context manager: its ``limit``
    context costs ten times more, a generator-based one several microseconds on every call)."""

    __slots__ = ("n", "changed")

    def __init__(self, n: int) -> None:
        self.n = n
        self.changed: list[tuple[Any, int]] = []

    def __enter__(self) -> None:
        n = self.n
        for p in _pools():
            before = p.get_num_threads()
            if before is not None and before != n:  # resizing a pool is what costs
                p.set_num_threads(n)
                self.changed.append((p, before))

    def __exit__(self, *exc: Any) -> None:
        for p, before in self.changed:
            p.set_num_threads(before)
        self.changed = []
