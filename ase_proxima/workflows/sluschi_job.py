"""One SLUSCHI coexistence study written to a run directory: what ``ase-proxima sluschi`` and a
sweep task both do.

Besides the study's own files (``config.json``, ``runs.jsonl``, ``summary.json``; see
:mod:`.sluschi`), the run directory gets ``store/`` (not for the baseline), ``run.png`` and
``stats.json`` (inputs, the liquid ratio, Proxima's statistics).
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["SluschiJob"]


class SluschiJob:
    """Inputs of one coexistence study: how forces are computed (``target``, ``method``,
    ``error_bound``, ``metric``, ``threshold``, ``audit_fraction``) and any
    :class:`~ase_proxima.workflows.sluschi.CoexistenceConfig` field (``temperature``, ``size``,
    ``runs``, ``seed``, ...)."""

    def __init__(self, target: str = "emt", method: str = "proxima", error_bound: float = 0.05,
                 metric: str = "forces_mean", threshold: float | None = None, audit_fraction: float = 0.05,
                 **config: Any) -> None:
        from .sluschi import CoexistenceConfig

        if method not in ("proxima", "fixed", "baseline"):
            raise ValueError(f"method must be proxima, fixed or baseline, got {method!r}")
        if method == "fixed" and threshold is None:
            raise ValueError("method 'fixed' needs a threshold")
        if not error_bound > 0:
            raise ValueError(f"error_bound must be > 0, got {error_bound!r}")
        self.target, self.method, self.error_bound = target, method, float(error_bound)
        self.metric, self.threshold, self.audit_fraction = metric, threshold, float(audit_fraction)
        self.config = CoexistenceConfig(**config)

    def check(self):
        from ..targets import make_target

        return make_target(self.target)

    def run(self, out: str | os.PathLike, progress: bool = False) -> dict[str, Any]:
        """Run the study in ``out``, continuing the runs already there; returns the report
        written to stats.json."""
        from ..calculator import ProximaCalculator
        from ..plots import plot_run
        from .sluschi import Coexistence

        target = self.check()
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        if self.method == "baseline":
            calc = target
        else:
            calc = ProximaCalculator(target=target, error_bound=self.error_bound, error_metric=self.metric,
                                     threshold=self.threshold, adaptive=self.method == "proxima",
                                     audit_fraction=self.audit_fraction, store=out / "store", seed=self.config.seed)
        flow = Coexistence(self.config, calc, out, progress=progress)
        t0 = time.perf_counter()
        outcomes = flow.run()
        summary = json.loads((out / "summary.json").read_text())
        report: dict[str, Any] = {
            "command": " ".join(sys.argv),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.platform(),
            "target": self.target, "method": self.method, "error_bound": self.error_bound, "metric": self.metric,
            "config": asdict(self.config), "temperature_K": self.config.temperature, "seed": self.config.seed,
            "atoms": 2 * len(flow.crystal()), "runs": len(outcomes), "wall_time_s": time.perf_counter() - t0,
            **{k: summary[k] for k in ("liquid", "solid", "undecided", "liquid_ratio", "liquid_ratio_se",
                                       "structure_liquid_ratio")},
        }
        if self.method != "baseline":
            report["stats"] = calc.stats
            plot_run(calc.log, self.error_bound, out / "run.png",
                     title=f"SLUSCHI {self.config.element}, {self.target}, {self.config.temperature} K, "
                           f"{self.metric} bound {self.error_bound} eV/A")
        (out / "stats.json").write_text(json.dumps(report, indent=2, default=float))
        return report
