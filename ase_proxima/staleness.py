"""Has the run left the region the model was fitted on?  The uncertainty it is consulted at.

Refits cost time, so the schedule allows them only within a share of the target's time
(``refit_share``), and anyway once the data have doubled since the last fit.  With a cheap target
neither comes soon, and a run that moves away from where the model was fitted (a heating ramp,
melting, a reaction) is served by the old model until its errors, measured late by the audits,
push the served mean over the bound.  The uncertainty shows the move first: the calls the model
is consulted on lie further from its training data, call after call.

:class:`UncertaintyRise` keeps the median uncertainty of the first ``newest`` consulted calls after
each fit (the reference) and of the newest ``newest``; the model is stale when the newest median is
over ``factor`` times the reference.  A refit then resets the reference, so on a steady climb
refits come each time the uncertainty has grown ``factor``-fold: few, and only while the run
moves; never more than one per ``2 * newest`` consulted calls.  Calls whose uncertainty is not
finite (no model) are not counted.
Pure numerics, no ASE.
"""
from __future__ import annotations

import math
import statistics
from collections import deque
from typing import Any

__all__ = ["UncertaintyRise"]


class UncertaintyRise:
    """The consulted calls' uncertainty since the last fit (see the module doc).

    Parameters
    ----------
    newest:
        Consulted calls in the reference after a fit, and in the newest stretch.
    factor:
        Growth of the median uncertainty that makes the model stale.
    """

    def __init__(self, newest: int = 20, factor: float = 2.0) -> None:
        if newest < 3 or factor <= 1.0:
            raise ValueError("newest >= 3 and factor > 1 are required")
        self.newest, self.factor = int(newest), float(factor)
        self._reference: list[float] = []
        self._recent: deque[float] = deque(maxlen=self.newest)
        self._limit = math.inf  # factor times the reference's median, once it is full
        self._risen: bool | None = False  # None: to be judged again (a call was noted)
        self.refits = 0  # refits made while the model was stale by this measure

    def note(self, u: float) -> None:
        """The uncertainty of one consulted call."""
        if not math.isfinite(u):
            return
        if len(self._reference) < self.newest:
            self._reference.append(float(u))
            if len(self._reference) == self.newest:
                self._limit = self.factor * statistics.median(self._reference)
        else:
            self._recent.append(float(u))
            self._risen = None

    @property
    def risen(self) -> bool:
        """Has the median uncertainty grown ``factor``-fold since just after the last fit?"""
        if self._risen is None:  # asked on nearly every call: judged once per noted call
            self._risen = len(self._recent) == self.newest and statistics.median(self._recent) > self._limit
        return self._risen

    def refitted(self) -> None:
        """The model was refitted: counted if it was stale, and a new reference begins."""
        self.refits += self.risen
        self._reference, self._recent = [], deque(maxlen=self.newest)
        self._limit, self._risen = math.inf, False

    def summary(self) -> dict[str, Any]:
        return {"refits_on_risen_uncertainty": self.refits}

    def state(self) -> dict[str, Any]:
        return {"reference": list(self._reference), "recent": list(self._recent), "refits": self.refits}

    def load_state(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self._reference = [float(u) for u in state["reference"]]
        self._recent = deque((float(u) for u in state["recent"]), maxlen=self.newest)
        full = len(self._reference) == self.newest
        self._limit = self.factor * statistics.median(self._reference) if full else math.inf
        self._risen = None
        self.refits = int(state["refits"])
