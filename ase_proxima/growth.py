"""Raising the surrogate's capacity where the capacity watch says it has run out.

A model out of capacity errs, on the calls it is most certain of, over the bound (see
:mod:`.capacity`): no threshold then serves answers under it, and stopping only hands the calls
back to the target.  The other answer is a larger model of the same family: each family names
its next rung (:meth:`~ase_proxima.surrogates.base.Surrogate.more_capacity`: more SOAP channels,
quadratic SNAP), and the calculator fits it on every training point kept.  The larger model
serves only once that fit succeeds; until then, and where it fails, the model before it goes on.
Each rung costs more per prediction and per refit: that is why it is climbed only on evidence
that the model before it could not reach the bound.

The rungs climbed are part of the run's state, so a resumed run rebuilds the same model.
"""
from __future__ import annotations

from typing import Any

from sklearn.base import clone

__all__ = ["CapacityGrowth"]


class CapacityGrowth:
    """The rungs a run has climbed, and whether another may be tried."""

    def __init__(self) -> None:
        self.raised: list[dict[str, Any]] = []  # set_params of each rung climbed, in order
        self.failed: str | None = None  # why the last try failed: no further rung is tried

    def candidate(self, surrogate: Any) -> tuple[Any, dict[str, Any]] | None:
        """An unfitted copy of ``surrogate`` one rung larger, and the settings of that rung
        (``None``: the family offers none, or a larger fit already failed in this run)."""
        if self.failed is not None:
            return None
        rung = surrogate.more_capacity()
        if rung is None:
            return None
        return clone(surrogate).set_params(**rung), dict(rung)

    def adopted(self, rung: dict[str, Any]) -> None:
        self.raised.append(dict(rung))

    def refused(self, why: str) -> None:
        self.failed = why

    def rebuild(self, surrogate: Any) -> None:
        """Give a fresh ``surrogate`` (a resumed run's) the rungs this run climbed."""
        for rung in self.raised:
            surrogate.set_params(**rung)

    def summary(self) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        for rung in self.raised:
            settings.update(rung)
        return {"capacity_raises": len(self.raised), "capacity_settings": settings or None,
                "capacity_raise_failed": self.failed}

    def state(self) -> dict[str, Any]:
        return {"raised": [dict(r) for r in self.raised], "failed": self.failed}

    def load_state(self, state: dict[str, Any]) -> None:
        if state:
            self.raised = [dict(r) for r in state["raised"]]
            self.failed = state.get("failed")
