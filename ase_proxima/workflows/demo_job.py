"""The demo: Langevin MD of a 13-atom copper cluster with ASE's EMT as the target, through
Proxima under a force bound, with the served forces checked against the target on every
served step (the ground truth the audited estimate is compared with).  EMT stands in for a
costly target: the cost rule, which would rightly keep EMT to itself, is off unless asked for.  The shape is
:mod:`.job`'s; ``ase-proxima demo`` runs it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .job import Job

__all__ = ["DemoJob"]


@dataclass
class DemoJob(Job):
    """Inputs of the demo (the CLI's ``demo`` options)."""

    error_bound: float = 0.2
    metric: str = "forces_max"
    steps: int = 500
    temperature: float = 300.0
    timestep: float = 2.0
    seed: int = 0
    # EMT answers Cu13 as fast as the surrogate: the demo lets it stand in for a costly target
    cost_aware: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.metric not in ("forces_max", "forces_mean"):
            raise ValueError(f"the demo bounds forces: metric forces_max or forces_mean, got {self.metric!r}")
        if self.steps < 1:
            raise ValueError("steps must be >= 1")

    @property
    def error_metric(self) -> str:  # type: ignore[override]
        return self.metric

    def settings(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def title(self) -> str:
        return f"Cu13 Langevin MD, {self.metric} bound {self.error_bound} eV/A"

    def execute(self, calc: Any, out: Path, progress: bool) -> dict[str, Any]:
        import time

        from ase.cluster import Icosahedron
        from ase.md.langevin import Langevin
        from ase.md.velocitydistribution import thermalize_momenta
        from ase.units import fs
        from tqdm import tqdm

        from ..metrics import compute_error
        from ..targets import make_target

        atoms = Icosahedron("Cu", noshells=2, latticeconstant=3.61)
        atoms.calc = calc
        thermalize_momenta(atoms, temperature_K=self.temperature, rng=np.random.default_rng(self.seed))
        dyn = Langevin(atoms, self.timestep * fs, temperature_K=self.temperature, friction=0.02, fixcm=False,
                       rng=np.random.default_rng(self.seed + 1))
        reference = make_target(self.target)  # an independent instance: the ground truth
        true_errors: list[float] = []
        bar = tqdm(total=self.steps, desc=f"MD (Cu13, {self.target} target)", unit="step", disable=not progress)

        def after_step() -> None:
            if getattr(calc, "log", None) is not None and calc.log[-1]["kind"] == "surrogate":
                exact = {"forces": reference.get_forces(atoms)}
                true_errors.append(compute_error(self.metric, {"forces": atoms.get_forces()}, exact, len(atoms)))
            bar.update(1)

        dyn.attach(after_step, interval=1)
        t0 = time.perf_counter()
        dyn.run(self.steps)
        bar.close()
        return {"steps": self.steps, "temperature_K": self.temperature, "seed": self.seed,
                "wall_time_s": time.perf_counter() - t0,
                "served_error_true": float(np.mean(true_errors)) if true_errors else math.nan,
                "served_steps_checked": len(true_errors)}

    def headline(self, report: dict[str, Any]) -> str:
        return (f"{self.steps} MD steps at {self.temperature} K; served {self.metric} error measured on every "
                f"served step {report['served_error_true']:.4f} eV/A ({report['served_steps_checked']} steps)")
