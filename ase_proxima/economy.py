"""Do no harm: consult the surrogate only while it can pay for itself.

Every call's cost is compared with what the target alone would have cost for it (its
*baseline*: the target's measured time when the target answered, the running estimate of a
target call when the surrogate did).  The difference accumulates as the run's *debt*:
predictions, refits, audits, store writes and glue add to it, every served call pays some
back.  A run whose surrogate serves cheaply runs a negative debt.

The calculator consults the surrogate (predicts, refits, compares) on every call while the
economy is *consulting*.  It turns *idle*, sending calls straight to the target, when one of
these shows that serving does not pay:

* ``cost``: a surrogate answer costs at least ``max_cost_ratio`` of a target call of the
  same property set (a cheap target: EMT, a classical potential); known before any fit when the
  calculator timed the surrogate's descriptors on the first target calls;
* ``floor``: nothing served for ``patience`` consulted calls since the first fit (the bound is
  below what the surrogate reaches here), and consulting cost more than ``probe_share`` beyond
  the target's own time over those calls (beside a costly target, a few per cent buy the
  chance that the surrogate, still learning, serves again);
* ``spending``: the last ``patience`` consulted calls cost more than their baseline plus
  ``probe_share``, and so did the last ``memory`` of them (four times ``patience`` by default):
  a run whose answers paid for themselves over that longer stretch is not stopped by a spell of
  audits (a served error near the bound has every servable call checked for a while, each
  costing a target call and a prediction) that its serving has already paid for.  While the
  audited error is *promising* (under the bound by more than its standard error: the audits
  are certifying answers that will pay once the certificate is under the bound, as at a run's
  start), spending is judged only over the whole ``memory``.

While idle it *probes* on a geometric schedule in target time: the first once the debt, with
the probe's expected cost added, is at most ``probe_share`` of the baseline so far, each later
one after twice the target time of the gap before (at least the probe's own excess cost over
``probe_share``).  So the probes' share of the run falls towards zero and an idle run tends to
the target's cost plus its start-up.  What a probe does depends on the ``cause``: idle for
``cost``, it only measures a surrogate answer's cost again (no fit: a model cannot change what
its descriptors cost), and resumes consulting when that now pays; otherwise it consults on one
call, and resumes when the surrogate would answer it at a cost that pays.  Pure bookkeeping,
no ASE.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any

__all__ = ["Economy"]


class _Ledger:
    """The (cost, baseline) of the last ``size`` consulted calls and their sums, kept running
    (this runs on every call)."""

    def __init__(self, size: int, calls: Any = ()) -> None:
        self.calls: deque[tuple[float, float]] = deque((tuple(x) for x in calls), maxlen=size)
        self.spent, self.baseline = sum(c for c, _ in self.calls), sum(b for _, b in self.calls)

    def add(self, seconds: float, baseline: float) -> None:
        if len(self.calls) == self.calls.maxlen:
            self.spent -= self.calls[0][0]
            self.baseline -= self.calls[0][1]
        self.calls.append((seconds, baseline))
        self.spent += seconds
        self.baseline += baseline

    def over(self, share: float) -> bool:
        """Did these calls cost more than their baseline plus ``share`` of it?"""
        return self.spent > (1.0 + share) * self.baseline

    def __len__(self) -> int:
        return len(self.calls)


class Economy:
    """Whether to consult the surrogate on the next call (see the module doc).

    Parameters
    ----------
    patience:
        Consulted calls without a served answer (once a model exists), or costing more than
        their baseline, before the run turns idle.
    max_cost_ratio:
        A surrogate answer costing this share of a target call or more does not pay.
    probe_share:
        While idle, probe when the debt is at most this share of the baseline so far; while
        consulting, the excess cost over the target alone tolerated before turning idle.
    memory:
        Consulted calls whose cost must also exceed their baseline for ``spending`` (default
        four times ``patience``; at least ``patience``).
    """

    def __init__(self, patience: int = 50, max_cost_ratio: float = 0.6, probe_share: float = 0.05,
                 memory: int | None = None) -> None:
        memory = 4 * int(patience) if memory is None else int(memory)
        if patience < 1 or not 0 < max_cost_ratio or not 0 <= probe_share < 1 or memory < patience:
            raise ValueError("patience >= 1, max_cost_ratio > 0, 0 <= probe_share < 1 and memory >= patience "
                             "are required")
        self.patience, self.max_cost_ratio, self.probe_share = int(patience), float(max_cost_ratio), probe_share
        self.memory = memory
        self.idle = False
        self.reason: str | None = None
        self.cause: str | None = None  # "cost", "floor" or "spending" while idle
        self.debt = 0.0  # seconds spent beyond the target alone (negative: saved)
        self.baseline = 0.0  # seconds the target alone would have spent on the calls so far
        self.idle_calls = 0
        self.probes = 0
        self.idle_spells = 0
        self._quiet = 0  # consulted calls since the last served one (once a model exists)
        self._recent = _Ledger(self.patience)  # the last consulted calls
        self._long = _Ledger(self.memory)  # the same over ``memory`` calls
        self._gap = 0.0  # target seconds between probes (doubles after each probe that fails)
        self._next_probe = 0.0  # baseline at which the next probe may come

    # -------------------------------------------------------------- decisions
    def consult(self, expected: float = 0.0) -> bool:
        """Should the surrogate be consulted on the next call?  While idle: only as a probe, one
        that is due and whose ``expected`` extra seconds keep the debt within ``probe_share``."""
        return not self.idle or (self.baseline >= self._next_probe
                                 and self.debt + expected <= self.probe_share * self.baseline)

    def charge(self, seconds: float, baseline: float) -> None:
        """One finished call cost ``seconds``; the target alone would have cost ``baseline``."""
        if math.isfinite(seconds) and math.isfinite(baseline):
            self.debt += seconds - baseline
            self.baseline += baseline

    def record(self, consulted: bool, kind: str, seconds: float, baseline: float, fitted: bool,
               cost_ratio: float, promising: bool = False) -> None:
        """One finished call, charged to the ledger: ``kind`` its answer (surrogate, audit, target),
        ``seconds`` its whole cost, ``baseline`` the target-alone cost of it, ``fitted`` whether a
        surrogate model existed, ``cost_ratio`` the measured c_S / c_T of its property set (nan:
        not known yet), ``promising`` whether the audited error is under the bound by more than
        its standard error."""
        self.charge(seconds, baseline)
        if not consulted:
            self.idle_calls += 1
            return
        served = kind in ("surrogate", "audit")  # an audit is a call the surrogate would have answered
        pays = not (cost_ratio >= self.max_cost_ratio)
        if self.idle:  # a probe
            self.probes += 1
            if pays and (served or self.cause == "cost" and math.isfinite(cost_ratio)):
                self._wake()
            else:
                if self.cause == "cost" and not pays:  # measured now: say so
                    self.reason = f"a surrogate answer costs {cost_ratio:.0%} of a target call"
                excess = (seconds - baseline) / self.probe_share if self.probe_share > 0 else math.inf
                self._gap = max(2.0 * self._gap, excess)
                self._next_probe = self.baseline + self._gap
            return
        if not pays:  # known before any fit when the surrogate's descriptors were timed
            self._sleep(f"a surrogate answer costs {cost_ratio:.0%} of a target call", "cost")
            return
        if not fitted:
            return
        self._recent.add(seconds, baseline)
        self._long.add(seconds, baseline)
        self._quiet = 0 if served else self._quiet + 1
        if len(self._recent) < self.patience or not self._recent.over(self.probe_share):
            return  # consulting costs at most a few per cent more than the target alone
        if self._quiet >= self.patience:
            self._sleep(f"nothing served in {self._quiet} calls: the bound is below what the surrogate reaches here",
                        "floor")
        elif self._long.over(self.probe_share) and (not promising or len(self._long) == self.memory):
            self._sleep(f"the last {len(self._long)} calls cost more than the target alone", "spending")

    def defer(self, why: str) -> None:
        """Idle for ``cost`` now: whether a surrogate answer pays is open, and measuring it costs
        more than the run can spare yet (a probe measures it once the run can)."""
        if not self.idle:
            self._sleep(why, "cost")

    def wake(self) -> None:
        """Consult again from the next call (a setting changed what the surrogate can do)."""
        if self.idle:
            self._wake()

    def _sleep(self, why: str, cause: str) -> None:
        self.idle, self.reason, self.cause = True, why, cause
        self.idle_spells += 1
        self._gap, self._next_probe = 0.0, self.baseline

    def _wake(self) -> None:
        self.idle, self.reason, self.cause = False, None, None
        self._quiet = 0
        self._recent, self._long = _Ledger(self.patience), _Ledger(self.memory)

    # -------------------------------------------------------------- reporting
    def summary(self) -> dict[str, Any]:
        return {"economy": "idle" if self.idle else "consulting", "idle_reason": self.reason,
                "idle_calls": self.idle_calls, "probes": self.probes, "idle_spells": self.idle_spells,
                "overhead_share": self.debt / self.baseline if self.baseline > 0 else math.nan}

    def state(self) -> dict[str, Any]:
        return {"idle": self.idle, "reason": self.reason, "cause": self.cause, "debt": self.debt,
                "baseline": self.baseline, "idle_calls": self.idle_calls, "probes": self.probes, "idle_spells": self.idle_spells,
                "quiet": self._quiet, "recent": [list(x) for x in self._recent.calls], "long": [list(x) for x in self._long.calls],
                "gap": self._gap, "next_probe": self._next_probe}

    def load_state(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.idle, self.reason = bool(state["idle"]), state["reason"]
        self.cause = state.get("cause", "floor" if self.idle else None)
        self.debt, self.baseline = float(state["debt"]), float(state["baseline"])
        self.idle_calls, self.probes, self.idle_spells = state["idle_calls"], state["probes"], state["idle_spells"]
        self._quiet = int(state["quiet"])
        self._recent = _Ledger(self.patience, state["recent"])
        # a state saved before the longer memory was kept: the recent calls are all it knows
        self._long = _Ledger(self.memory, state.get("long", state["recent"]))
        self._gap, self._next_probe = float(state.get("gap", 0.0)), float(state.get("next_probe", 0.0))
