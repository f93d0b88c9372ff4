"""How close real code comes to the roofline: per workload, fit measured times as
``t = overhead + slowdown * roofline_time`` (non-negative least squares on relative errors).

``overhead`` is the per-call host cost (Python, library dispatch) that no device removes;
``slowdown`` (>= 1 for code that cannot beat its roofline) is how far the code sits below the
ceiling on the measured device.  Both come from measurements, never from assumptions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
from scipy.optimize import nnls

from .costs import Cost
from .devices import DeviceSpec
from .roofline import roofline


@dataclass(frozen=True)
class Efficiency:
    """Per-call host overhead (s) and roofline slowdown of one workload on one device."""

    workload: str
    overhead_s: float
    slowdown: float
    device: str
    n_points: int

    def predict(self, cost: Cost, device: DeviceSpec) -> float:
        """Seconds per call on ``device``: host overhead, launches, and the roofline body slowed
        as on the measured device."""
        est = roofline(cost, device)
        return self.overhead_s + est.launch_s + self.slowdown * (est.time_s - est.launch_s)


def fit_efficiency(workload: str, costs: Iterable[Cost], times: Iterable[float], device: DeviceSpec) -> Efficiency:
    """Fit ``overhead`` and ``slowdown`` to measured ``times`` of calls with these ``costs``."""
    body = np.array([roofline(c, device).time_s for c in costs])
    t = np.asarray(list(times), float)
    if len(t) != len(body) or len(t) < 2:
        raise ValueError("need at least two (cost, time) points of equal number")
    a = np.column_stack([np.ones_like(t), body]) / t[:, None]
    (overhead, slowdown), _ = nnls(a, np.ones_like(t))
    return Efficiency(workload, float(overhead), float(slowdown), device.name, len(t))


def fit_all(rows: Iterable[Mapping], device: DeviceSpec) -> dict[str, Efficiency]:
    """One :class:`Efficiency` per workload from dataset rows measured on ``device``."""
    groups: dict[str, list[Mapping]] = {}
    for r in rows:
        if r["device"] == device.name:
            groups.setdefault(r["workload"], []).append(r)
    return {w: fit_efficiency(w, [row_cost(r) for r in rs], [r["time_s"] for r in rs], device)
            for w, rs in groups.items() if len(rs) >= 2}


def row_cost(row: Mapping) -> Cost:
    return Cost(row["flops"], row["bytes"], row["kernels"], row["precision"], row["dense"])
