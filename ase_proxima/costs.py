"""What each part of a call costs, as the decisions need it.

A surrogate is worth consulting only when it answers for less than the target would: the
thesis's condition is that training must cost less than its use saves.  :class:`CostMeter`
keeps running estimates, in seconds, of

* ``target``: one target call, per property set asked (an energy-only Monte Carlo trial
  costs less than a force call);
* ``surrogate``: one prediction plus its uncertainty, per property set;
* ``refit``: one refit of surrogate and uncertainty;
* ``store``: the store writes of one call;

each the median of the newest ``memory`` measurements (one slow call, a first call that
sets a program up, does not move it).  From them it gives the ideal speed-up a run serving
a share ``s`` of its calls can reach, ``c_T / ((1 - s) c_T + s c_S)``, and whether serving
can pay at all (:meth:`CostMeter.known_ratio`).
"""
from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable
from typing import Any


__all__ = ["CostMeter", "property_key", "ideal_speedup"]

PARTS = ("target", "surrogate", "refit", "store")


def property_key(properties: Iterable[str]) -> str:
    """The property set of a call as one name: ``'energy'``, ``'energy+forces'``."""
    names = {"energy" if p == "free_energy" else p for p in properties}
    return "+".join(sorted(names)) or "energy"


def ideal_speedup(c_target: float, c_surrogate: float, served_share: float) -> float:
    """``c_T / ((1 - s) c_T + s c_S)``: the speed-up of a run that serves a share ``s`` of its calls
    when nothing but the target and the surrogate's own prediction cost anything."""
    if not (math.isfinite(c_target) and c_target > 0):
        return math.nan
    c_s = c_surrogate if math.isfinite(c_surrogate) else c_target
    spent = (1.0 - served_share) * c_target + served_share * c_s
    return c_target / spent if spent > 0 else math.inf


class CostMeter:
    """Running costs of a run's parts (see the module doc).

    Parameters
    ----------
    memory:
        Measurements kept per part and property set; the estimate is their median.
    """

    def __init__(self, memory: int = 25) -> None:
        if memory < 1:
            raise ValueError(f"memory must be >= 1, got {memory!r}")
        self.memory = int(memory)
        self._seen: dict[tuple[str, str], deque[float]] = {}
        self.counts: dict[str, int] = dict.fromkeys(PARTS, 0)
        self.totals: dict[str, float] = dict.fromkeys(PARTS, 0.0)
        self._medians: dict[tuple[str, str], float] = {}  # asked on every call: kept until a new sample

    def add(self, part: str, seconds: float, key: str = "") -> None:
        """One measurement of ``part`` (for the property set ``key``, where it matters)."""
        if part not in PARTS:
            raise ValueError(f"unknown cost part {part!r}; one of {PARTS}")
        if not math.isfinite(seconds) or seconds < 0:
            return
        self._seen.setdefault((part, key), deque(maxlen=self.memory)).append(float(seconds))
        self._medians.pop((part, key), None)
        self.counts[part] += 1
        self.totals[part] += float(seconds)

    def samples(self, part: str, key: str = "") -> int:
        return len(self._seen.get((part, key), ()))

    def cost(self, part: str, key: str = "") -> float:
        """Seconds per event of ``part`` for ``key`` (any key's when ``key`` has none; nan if none)."""
        seen = self._seen.get((part, key))
        if not seen:
            pooled = [x for (p, _), d in self._seen.items() if p == part for x in d]
            return float(statistics.median(pooled)) if pooled else math.nan
        median = self._medians.get((part, key))
        if median is None:
            median = self._medians[(part, key)] = float(statistics.median(seen))
        return median

    def ratio(self, key: str) -> float:
        """``c_S / c_T`` for the property set ``key`` (nan until both were measured)."""
        return self.cost("surrogate", key) / self.cost("target", key)

    def known_ratio(self, key: str, min_samples: int = 3) -> float:
        """``c_S / c_T`` for ``key`` once both have ``min_samples`` measurements, else nan."""
        if self.samples("surrogate", key) < min_samples or self.samples("target", key) < min_samples:
            return math.nan
        return self.ratio(key)

    def keys(self) -> list[str]:
        return sorted({k for (_, k) in self._seen if k})

    def summary(self, served_share: float) -> dict[str, Any]:
        """Estimates for ``stats``: each part's seconds per event (per property set for target and
        surrogate) and the ideal speed-up at ``served_share``."""
        out: dict[str, Any] = {"cost_refit": self.cost("refit"), "cost_store": self.cost("store")}
        per_key = {k: {"target": self.cost("target", k), "surrogate": self.cost("surrogate", k)}
                   for k in self.keys()}
        out["cost_per_call"] = per_key
        main = max(self.keys(), key=lambda k: self.samples("target", k) + self.samples("surrogate", k), default="")
        out["cost_target"] = self.cost("target", main)
        out["cost_surrogate"] = self.cost("surrogate", main)
        out["cost_limit"] = ideal_speedup(out["cost_target"], out["cost_surrogate"], served_share)
        return out

    # ------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        return {"memory": self.memory, "counts": dict(self.counts), "totals": dict(self.totals),
                "seen": [[p, k, list(d)] for (p, k), d in self._seen.items()]}

    def load_state(self, state: dict[str, Any]) -> None:
        self.counts = {**dict.fromkeys(PARTS, 0), **state.get("counts", {})}
        self.totals = {**dict.fromkeys(PARTS, 0.0), **state.get("totals", {})}
        self._seen = {(p, k): deque(v, maxlen=self.memory) for p, k, v in state.get("seen", [])}
        self._medians = {}
