"""Has the surrogate run out of capacity?  The uncertainty against the errors it should predict.

The gate serves calls whose uncertainty ``u`` is under a threshold, on the premise that a
smaller ``u`` means a smaller error.  A model that runs out of capacity breaks the premise
quietly: its posterior spread (the epistemic part) keeps falling as data arrive, while its error,
now set by what the model cannot represent, stays or rises (a hot cluster changing shape under a
linear SOAP model).  The threshold then selects nothing: the calls it lets through err as much as
the rest.  The controller and the audits still hold the bound, but late, from the errors of
calls already served.

:class:`CapacityWatch` sees every comparison (``u``, error) in order and measures the premise:

* ``drift``: the error per unit of uncertainty (median of ``e / u``) over the newest comparisons,
  over the same at the start of the run (the first comparisons).  It grows where errors rise while
  the uncertainty falls;
* ``floor``: the mean error of the most certain quarter of the newest comparisons, the calls the
  gate would serve first, with its standard error;
* ``rank``: how well ``u`` orders the newest errors (Spearman's rank correlation), reported.

The model has *lost capacity* for the bound when the error per unit of uncertainty has grown
``drift_limit``-fold or more and the floor is over the bound by more than its standard error: no
threshold can then pick calls under the bound.  The calculator says so (a warning once per
episode, ``stats['capacity_lost']``) and, with ``stop_on_capacity_loss``, stops serving (the log's
reason) until the floor is back under the bound by more than its standard error.  Stopping is not
the default: measured on hot clusters, the audits and the controller already held the run's served
error there, and stopping did not lower it.
Pure numerics, no ASE.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
from scipy.stats import spearmanr

__all__ = ["CapacityWatch"]


class CapacityWatch:
    """Calibration of the uncertainty against the errors (see the module doc).

    Parameters
    ----------
    newest:
        Comparisons in the newest stretch (and in the reference at the start).
    drift_limit:
        Growth of the error per unit of uncertainty that, with the floor over the bound, is a loss
        of capacity.
    every:
        Comparisons between assessments (each sorts ``newest`` numbers).
    """

    def __init__(self, newest: int = 50, drift_limit: float = 2.0, every: int = 5) -> None:
        if newest < 8 or drift_limit <= 1.0 or every < 1:
            raise ValueError("newest >= 8, drift_limit > 1 and every >= 1 are required")
        self.newest, self.drift_limit, self.every = int(newest), float(drift_limit), int(every)
        self.episodes = 0  # times capacity was lost
        self.rebase()

    def observe(self, u: float, error: float, bound: float) -> None:
        """One comparison: uncertainty ``u`` and the surrogate's error; ``bound`` the error bound
        the served answers are held to (``inf``: report only, never stop)."""
        if not (math.isfinite(u) and u > 0.0 and math.isfinite(error)):
            return
        pair = (float(u), abs(float(error)))
        if len(self._reference) < self.newest:
            self._reference.append(pair)
        self._recent.append(pair)
        self.seen += 1
        if self.seen % self.every == 0 or self.lost:
            self._assess(bound)

    def _assess(self, bound: float) -> None:
        if self.seen < 2 * self.newest:  # the newest stretch must lie after the reference
            return
        u, e = (np.array(x) for x in zip(*self._recent))
        ref_u, ref_e = (np.array(x) for x in zip(*self._reference))
        reference = float(np.median(ref_e / ref_u))  # zero for a surrogate exact at first: no scale
        self.drift = float(np.median(e / u)) / reference if reference > 0.0 else math.nan
        certain = e[u <= np.quantile(u, 0.25)]
        self.floor = float(certain.mean())
        self.floor_se = float(certain.std(ddof=1) / math.sqrt(len(certain))) if len(certain) > 1 else math.inf
        self.rank = float(spearmanr(u, e).statistic) if np.ptp(u) > 0 and np.ptp(e) > 0 else math.nan
        was = self.lost
        if was:  # back once the most certain calls are clearly under the bound again
            self.lost = self.floor + self.floor_se >= bound
        else:
            self.lost = self.drift >= self.drift_limit and self.floor - self.floor_se > bound
        self.episodes += self.lost and not was

    def rebase(self) -> None:
        """Start again from the next comparison (a new model: its uncertainty has another scale);
        the episodes counted so far are kept."""
        self._reference: list[tuple[float, float]] = []  # the first comparisons (of the run or the model)
        self._recent: deque[tuple[float, float]] = deque(maxlen=self.newest)
        self.seen, self.lost = 0, False
        self.drift = self.floor = self.floor_se = self.rank = math.nan

    def why_not(self, unit: str) -> str | None:
        """The gate's reason while capacity is lost (``None`` otherwise)."""
        if not self.lost:
            return None
        return (f"capacity: the error per unit of uncertainty grew {self.drift:.1f}x since the run began, and "
                f"the most certain recent calls err {self.floor:.3g} {unit}, over the bound: the surrogate "
                "cannot pick answers under the bound here")

    def summary(self) -> dict[str, Any]:
        return {"capacity_lost": self.lost, "capacity_episodes": self.episodes, "capacity_drift": self.drift,
                "capacity_floor": self.floor, "capacity_rank": self.rank}

    def state(self) -> dict[str, Any]:
        return {"reference": [list(p) for p in self._reference], "recent": [list(p) for p in self._recent],
                "seen": self.seen, "lost": self.lost, "episodes": self.episodes, "drift": self.drift,
                "floor": self.floor, "floor_se": self.floor_se, "rank": self.rank}

    def load_state(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self._reference = [tuple(p) for p in state["reference"]]
        self._recent = deque((tuple(p) for p in state["recent"]), maxlen=self.newest)
        self.seen, self.lost, self.episodes = int(state["seen"]), bool(state["lost"]), int(state["episodes"])
        self.drift, self.floor = float(state["drift"]), float(state["floor"])
        self.floor_se, self.rank = float(state["floor_se"]), float(state["rank"])
