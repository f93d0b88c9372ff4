"""One Monte Carlo run of a molecule written to a run directory: what ``ase-proxima mc`` and a
sweep task both do.

The run directory gets ``mc.traj`` (every step), ``store/`` (Proxima's training data, call log
and state; not for the baseline), ``run.png`` and ``stats.json`` (the report: inputs, MC
observables, Proxima's statistics, the GPU prediction).
"""
from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["MCJob"]


@dataclass
class MCJob:
    """Inputs of one MC run (the CLI's ``mc`` options)."""

    molecule: str = "CH4"
    target: str = "pyscf:hf/6-31g*"
    method: str = "proxima"  # proxima | fixed | baseline
    temperature: float = 500.0
    steps: int = 1000
    step_size: float = 0.003
    error_bound: float = 0.002
    threshold: float | None = None
    retrain: int | None = None
    uncertainty: str = "posterior"  # posterior | distance
    audit_fraction: float = 0.05
    train_forces: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("proxima", "fixed", "baseline"):
            raise ValueError(f"method must be proxima, fixed or baseline, got {self.method!r}")
        if self.method == "fixed" and self.threshold is None:
            raise ValueError("method 'fixed' needs a threshold")
        if self.uncertainty not in ("posterior", "distance"):
            raise ValueError(f"uncertainty must be posterior or distance, got {self.uncertainty!r}")
        if self.steps < 1 or not self.error_bound > 0:
            raise ValueError("steps must be >= 1 and error_bound > 0")

    def check(self):
        """The starting molecule and the target, or ``ValueError`` naming what is wrong."""
        from ase.build import molecule

        from ..targets import make_target

        try:
            atoms = molecule(self.molecule)
        except KeyError:
            raise ValueError(f"unknown molecule {self.molecule!r} (any name of ase.build.molecule)") from None
        return atoms, make_target(self.target)

    def run(self, out: str | os.PathLike, progress: bool = False) -> dict[str, Any]:
        """Run into the (empty or new) directory ``out``; returns the report written to stats.json."""
        from ..calculator import ProximaCalculator
        from ..perf.annotate import annotate_calculator
        from ..plots import plot_run
        from ..uncertainty import DistanceUncertainty
        from .mc import MonteCarlo

        atoms, target = self.check()
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        if self.method == "baseline":
            calc = target
        else:
            calc = ProximaCalculator(
                target=target,
                error_bound=self.error_bound,
                uncertainty=DistanceUncertainty() if self.uncertainty == "distance" else None,
                threshold=self.threshold,
                adaptive=self.method == "proxima",
                retrain=self.retrain if self.retrain is not None else "lazy",
                audit_fraction=self.audit_fraction,
                train_properties=("energy", "forces") if self.train_forces else None,
                store=out / "store",
                seed=self.seed,
            )
        mc = MonteCarlo(atoms, calc, temperature_K=self.temperature, step_size=self.step_size, seed=self.seed,
                        trajectory=out / "mc.traj")
        result = mc.run(self.steps, progress=progress)
        report: dict[str, Any] = {
            "command": " ".join(sys.argv),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.platform(),
            "job": asdict(self),
            **{k: getattr(self, k) for k in ("molecule", "target", "method", "steps", "seed")},
            "temperature_K": self.temperature,
            "step_size_A": self.step_size,
            "wall_time_s": result.wall_time,
            "target_time_s": float(result.call_times.sum()) if self.method == "baseline" else None,
            "acceptance_ratio": result.acceptance_ratio,
            "mean_rog_A": result.mean_rog,
            "rog_kind": "mass-weighted",
        }
        if self.method != "baseline":
            report["stats"] = calc.stats
            report["perf_prediction"] = annotate_calculator(calc)
            plot_run(calc.log, self.error_bound, out / "run.png",
                     title=f"{self.molecule} MC, {self.target}, {self.temperature} K, bound {self.error_bound} eV")
        (out / "stats.json").write_text(json.dumps(report, indent=2, default=float))
        return report
