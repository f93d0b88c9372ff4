"""One Monte Carlo run of a molecule written to a run directory: what ``ase-proxima mc`` and a
sweep task both do (the shape in :mod:`.job`).

The run directory gets ``mc.traj`` (every step), ``store/`` (Proxima's training data, call log
and state; not for the baseline), ``run.png`` and ``stats.json`` (the report: inputs, MC
observables, Proxima's statistics, the GPU prediction).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .job import Job

__all__ = ["MCJob"]


@dataclass
class MCJob(Job):
    """Inputs of one MC run (the CLI's ``mc`` options)."""

    molecule: str = "CH4"
    target: str = "pyscf:hf/6-31g*"
    temperature: float = 500.0
    steps: int = 1000
    step_size: float = 0.003
    error_bound: float = 0.002
    retrain: int | None = None
    uncertainty: str = "posterior"  # posterior | distance
    train_forces: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.uncertainty not in ("posterior", "distance"):
            raise ValueError(f"uncertainty must be posterior or distance, got {self.uncertainty!r}")
        if self.steps < 1:
            raise ValueError("steps must be >= 1")

    def check(self):
        """The target, after checking the molecule's name (``ValueError`` for either)."""
        from ase.build import molecule

        try:
            molecule(self.molecule)
        except KeyError:
            raise ValueError(f"unknown molecule {self.molecule!r} (any name of ase.build.molecule)") from None
        return super().check()

    def settings(self) -> dict[str, Any]:
        from ..uncertainty import DistanceUncertainty

        return {"uncertainty": DistanceUncertainty() if self.uncertainty == "distance" else None,
                "retrain": self.retrain if self.retrain is not None else "lazy",
                "train_properties": ("energy", "forces") if self.train_forces else None, "seed": self.seed}

    def title(self) -> str:
        return f"{self.molecule} MC, {self.target}, {self.temperature} K, bound {self.error_bound} eV"

    def execute(self, calc: Any, out: Path, progress: bool) -> dict[str, Any]:
        from ase.build import molecule

        from .mc import MonteCarlo

        mc = MonteCarlo(molecule(self.molecule), calc, temperature_K=self.temperature, step_size=self.step_size,
                        seed=self.seed, trajectory=out / "mc.traj")
        result = mc.run(self.steps, progress=progress)
        return {"molecule": self.molecule, "steps": self.steps, "seed": self.seed,
                "temperature_K": self.temperature, "step_size_A": self.step_size, "wall_time_s": result.wall_time,
                "target_time_s": float(result.call_times.sum()) if self.method == "baseline" else None,
                "acceptance_ratio": result.acceptance_ratio, "mean_rog_A": result.mean_rog,
                "rog_kind": "mass-weighted"}

    def headline(self, report: dict[str, Any]) -> str:
        return (f"{self.steps} MC steps at {self.temperature} K: acceptance {report['acceptance_ratio']:.2f}, "
                f"mean radius of gyration {report['mean_rog_A']:.4f} A, wall {report['wall_time_s']:.1f} s")
