"""A melting-point scan written to a run directory: what ``ase-proxima melt`` runs (the shape in
:mod:`.job`).

Besides the scan's own files (``melt.json``, ``start.traj``, ``batchNN/``, ``scan.json``,
``melting_point.png``; see :mod:`.melt`), the run directory gets ``store/`` (one learner for the
whole scan; not for the target alone), ``run.png`` and ``stats.json``.  Running it again on the
same directory continues the scan.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .job import Job
from .melt import ScanConfig
from .sluschi import CoexistenceConfig

__all__ = ["MeltJob"]

_CELL_DEFAULTS = {"size": (3, 3, 3), "run_steps": 1500, "extend_steps": 500, "max_extensions": 2}


@dataclass
class MeltJob(Job):
    """How forces are computed (``target``, ``method``: 'proxima' or 'baseline', the target
    alone; ``error_bound``, ``metric``), the scan (``scan``, a :class:`~.melt.ScanConfig`),
    the cell (``cell``, a :class:`~.sluschi.CoexistenceConfig`), and ``workers`` (processes for
    the target alone).  :meth:`from_params` takes both configs' fields flat; the half of the
    cell that starts liquid is melted at twice the guess unless ``melt_temperature`` is given."""

    target: str = "asap3"
    error_bound: float = 0.06
    metric: str = "forces_mean"
    workers: int = 1
    scan: ScanConfig = field(default_factory=lambda: ScanConfig(guess=900.0))
    cell: CoexistenceConfig = field(default_factory=lambda: CoexistenceConfig(**_CELL_DEFAULTS))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method == "fixed":
            raise ValueError("melt runs method 'proxima' or 'baseline' (the target alone)")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {self.workers!r}")
        if self.workers > 1 and self.method == "proxima":
            raise ValueError("a Proxima scan runs in one process, so one learner sees every run: use workers 1 "
                             "(workers > 1 runs the target alone on a pool)")

    @property
    def error_metric(self) -> str:  # type: ignore[override]
        return self.metric

    @classmethod
    def from_params(cls, **params: Any) -> MeltJob:
        own = {f.name for f in fields(cls)} - {"scan", "cell"}
        scan_keys = {f.name for f in fields(ScanConfig)}
        cell_keys = {f.name for f in fields(CoexistenceConfig)} - {"temperature", "runs", "seed"}
        unknown = sorted(set(params) - own - scan_keys - cell_keys)
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} of MeltJob; known: {sorted(own | scan_keys | cell_keys)}")
        if "guess" not in params:
            raise ValueError("melt needs a first guess of the melting point (guess, K)")
        cell = {**_CELL_DEFAULTS, **{k: v for k, v in params.items() if k in cell_keys and v is not None}}
        # the new half must melt whatever the element: twice the guess unless stated
        cell.setdefault("melt_temperature", 2.0 * params["guess"])
        cell["temperature"] = params["guess"]  # each batch sets its own; the guess is the first
        cell["size"] = tuple(cell["size"])
        return cls(**{k: v for k, v in params.items() if k in own},
                   scan=ScanConfig(**{k: v for k, v in params.items() if k in scan_keys}),
                   cell=CoexistenceConfig(**cell))

    def settings(self) -> dict[str, Any]:
        return {"seed": self.scan.seed}

    def title(self) -> str:
        return f"melting point of {self.cell.element}, {self.target}, {self.metric} bound {self.error_bound} eV/A"

    def execute(self, calc: Any, out: Path, progress: bool) -> dict[str, Any]:
        from ..targets import make_target
        from .melt import MeltingPoint

        if self.workers > 1:
            calc = functools.partial(make_target, self.target)
        t0 = time.perf_counter()
        summary = MeltingPoint(self.cell, self.scan, calc, out, workers=self.workers, progress=progress).run()
        fit = summary["fit"] or {}
        return {"metric": self.metric, "atoms": 8 * self.cell.size[0] * self.cell.size[1] * self.cell.size[2],
                "Tm": fit.get("Tm"), "Tm_se": fit.get("Tm_se"), "g": fit.get("g"), "runs": summary["runs"],
                "undecided": summary["undecided"], "temperatures": summary["temperatures"],
                "wall_time_s": time.perf_counter() - t0}

    def headline(self, report: dict[str, Any]) -> str:
        r = report
        per_t = ", ".join(f"{t['temperature']:g} K {t['liquid']}/{t['liquid'] + t['solid']}"
                          + (f" ({t['undecided']} undecided)" if t["undecided"] else "") for t in r["temperatures"])
        tm = "not determined (one phase only)" if r["Tm"] is None else f"{r['Tm']:.0f} +- {r['Tm_se']:.0f} K"
        return (f"melting point {tm} from {r['runs']} coexistence runs of {r['atoms']} atoms; liquid/decided: "
                f"{per_t}")
