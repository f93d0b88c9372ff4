"""One SLUSCHI coexistence study written to a run directory: what ``ase-proxima sluschi`` and a
sweep task both do (the shape in :mod:`.job`).

Besides the study's own files (``config.json``, ``runs.jsonl``, ``summary.json``; see
:mod:`.sluschi`), the run directory gets ``store/`` (not for the baseline), ``run.png`` and
``stats.json`` (inputs, the liquid ratio, Proxima's statistics).  Running it again on the same
directory continues the runs already there.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .job import Job
from .sluschi import CoexistenceConfig

__all__ = ["SluschiJob"]


@dataclass
class SluschiJob(Job):
    """How forces are computed (``target``, ``method``, ``error_bound``, ``metric``,
    ``threshold``, ``audit_fraction``) and the study (``config``, a
    :class:`~ase_proxima.workflows.sluschi.CoexistenceConfig`).  :meth:`from_params` takes the
    config's fields flat (``temperature``, ``size``, ``runs``, ``seed``, ...)."""

    target: str = "emt"
    error_bound: float = 0.05
    metric: str = "forces_mean"
    config: CoexistenceConfig = field(default_factory=CoexistenceConfig)

    @property
    def error_metric(self) -> str:  # type: ignore[override]
        return self.metric

    @classmethod
    def from_params(cls, **params: Any) -> SluschiJob:
        own = {f.name for f in fields(cls)} - {"config"}
        config = {k: v for k, v in params.items() if k not in own}
        known = {f.name for f in fields(CoexistenceConfig)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} of SluschiJob; known: {sorted(own | known)}")
        if "size" in config:
            config["size"] = tuple(config["size"])
        return cls(**{k: v for k, v in params.items() if k in own}, config=CoexistenceConfig(**config))

    def settings(self) -> dict[str, Any]:
        return {"seed": self.config.seed}

    def title(self) -> str:
        return (f"SLUSCHI {self.config.element}, {self.target}, {self.config.temperature} K, "
                f"{self.metric} bound {self.error_bound} eV/A")

    def execute(self, calc: Any, out: Path, progress: bool) -> dict[str, Any]:
        from .sluschi import Coexistence

        flow = Coexistence(self.config, calc, out, progress=progress)
        t0 = time.perf_counter()
        outcomes = flow.run()
        summary = json.loads((out / "summary.json").read_text())
        return {"metric": self.metric, "config": asdict(self.config), "temperature_K": self.config.temperature,
                "seed": self.config.seed, "atoms": 2 * len(flow.crystal()), "runs": len(outcomes),
                "wall_time_s": time.perf_counter() - t0,
                **{k: summary[k] for k in ("liquid", "solid", "undecided", "liquid_ratio", "liquid_ratio_se",
                                           "structure_liquid_ratio")}}

    def headline(self, report: dict[str, Any]) -> str:
        r = report
        return (f"{r['runs']} coexistence runs at {r['temperature_K']} K ({r['atoms']} atoms): {r['liquid']} liquid, "
                f"{r['solid']} solid, {r['undecided']} undecided; liquid ratio {r['liquid_ratio']:.2f} +- "
                f"{r['liquid_ratio_se']:.2f} (structure: {r['structure_liquid_ratio']:.2f}); "
                f"wall {r['wall_time_s']:.0f} s")
