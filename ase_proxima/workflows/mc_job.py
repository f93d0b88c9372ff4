"""One Monte Carlo run of a molecule written to a run directory: what ``ase-proxima mc`` and a
sweep task both do (the shape in :mod:`.job`).

The run directory gets ``mc.traj`` (every step), ``mc_state.json`` (where the walk is, written
with the calculator's checkpoint), ``store/`` (Proxima's training data, call log and state; not
for the baseline), ``run.png`` and ``stats.json`` (the report: inputs, MC observables over the
whole walk, Proxima's statistics, the GPU prediction).  Running the job again on the directory
(``ase-proxima mc --resume``) continues a killed walk from its last checkpoint.

``method='exact'`` samples the target's own distribution with an
:class:`~.exact_mc.ExactMonteCarlo` chain whose proposals a surrogate learned during the burn-in
screens (on the ``baseline`` calculator, when one is named); its report adds the chain's
statistics under ``exact``; its checkpoints carry the screen's training data, so a killed chain
resumes too (its screen refitted on them).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .job import Job

__all__ = ["MCJob"]

#: steps between checkpoints of the walk together with the calculator's state
CHECKPOINT_EVERY = 20


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
    inner_steps: int = 25  # method="exact": screen steps per target evaluation (1: delayed acceptance)
    burn_in: int | None = None  # method='exact': steps the screen learns for (None: the driver's default)

    extra_methods: ClassVar[tuple[str, ...]] = ("exact",)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.uncertainty not in ("posterior", "distance"):
            raise ValueError(f"uncertainty must be posterior or distance, got {self.uncertainty!r}")
        if self.steps < 1:
            raise ValueError("steps must be >= 1")
        if not (isinstance(self.inner_steps, int) and self.inner_steps >= 1):
            raise ValueError(f"inner_steps must be an integer >= 1, got {self.inner_steps!r}")
        if self.method == "exact":
            from .exact_mc import DEFAULT_BURN_IN

            burn_in = DEFAULT_BURN_IN if self.burn_in is None else self.burn_in
            if not (isinstance(burn_in, int) and 0 <= burn_in < self.steps):
                raise ValueError(f"an exact chain needs a burn-in from 0 to steps - 1 ({self.steps - 1}), got "
                                 f"{burn_in!r}{' (the default)' if self.burn_in is None else ''}: the burn-in "
                                 "steps are not samples")

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
                "train_properties": ("energy", "forces") if self.train_forces else None, "seed": self.seed,
                # the walk checkpoints the calculator with itself (see execute), never apart from it
                "checkpoint_every": 10**9}

    def title(self) -> str:
        return f"{self.molecule} MC, {self.target}, {self.temperature} K, bound {self.error_bound} eV"

    def execute(self, calc: Any, out: Path, progress: bool) -> dict[str, Any]:
        """The walk; one already in ``out`` (``mc_state.json``) is continued where its last
        checkpoint left it, with its trajectory and the calculator's store."""
        import time

        from ase.build import molecule

        from ..store import atomic_write
        from .mc import MonteCarlo, walk_summary

        traj, state_path = out / "mc.traj", out / "mc_state.json"
        atoms = molecule(self.molecule)
        atoms.calc = calc
        if self.method == "exact":
            return self._exact(atoms, traj, state_path, progress)
        resumed = state_path.exists()
        mc = MonteCarlo(atoms, temperature_K=self.temperature, step_size=self.step_size, rng=self.seed,
                        trajectory=traj, append_trajectory=resumed)
        wall_before = 0.0
        if resumed:
            saved = json.loads(state_path.read_text())
            mc.restore(saved["walk"])
            wall_before = float(saved["wall_time_s"])
            _keep_steps_before(traj, mc.nsteps)
        t0 = time.perf_counter()

        def checkpoint() -> None:  # the walk and the calculator's state together: one consistent point
            if hasattr(calc, "flush"):
                calc.flush()
            payload = {"walk": mc.state(), "wall_time_s": wall_before + time.perf_counter() - t0}
            atomic_write(state_path, json.dumps(payload).encode(), sync=False)

        mc.attach(checkpoint, interval=CHECKPOINT_EVERY)
        mc.run(max(self.steps - mc.nsteps, 0), progress=progress)
        checkpoint()
        summary = walk_summary(traj)
        return {"molecule": self.molecule, "steps": summary["steps"], "seed": self.seed,
                "temperature_K": self.temperature, "step_size_A": self.step_size, "resumed": resumed,
                "wall_time_s": wall_before + time.perf_counter() - t0,
                "target_time_s": summary["call_time_s"] if not self.uses_proxima else None,
                "acceptance_ratio": summary["acceptance_ratio"], "mean_rog_A": summary["mean_rog"],
                "rog_kind": "mass-weighted"}

    def _exact(self, atoms: Any, traj: Path, state_path: Path, progress: bool) -> dict[str, Any]:
        """The exact chain, checkpointed as the plain walk is; a killed one continues from its last
        checkpoint, its learned screen refitted on the training data saved with it."""
        import time

        from ..screens import LearnedScreen
        from ..store import atomic_write
        from .exact_mc import ExactMonteCarlo

        resumed = state_path.exists()
        mc = ExactMonteCarlo(atoms, temperature_K=self.temperature, step_size=self.step_size,
                             screen=LearnedScreen(baseline=self.make_baseline()), inner_steps=self.inner_steps,
                             burn_in=self.burn_in, rng=self.seed, trajectory=traj, append_trajectory=resumed)
        wall_before = 0.0
        if resumed:
            saved = json.loads(state_path.read_text())
            _keep_steps_before(traj, int(saved["walk"]["nsteps"]))
            mc.restore(saved["walk"], trajectory=traj)
            wall_before = float(saved["wall_time_s"])
        t0 = time.perf_counter()

        def checkpoint() -> None:
            payload = {"walk": mc.state(), "wall_time_s": wall_before + time.perf_counter() - t0}
            atomic_write(state_path, json.dumps(payload).encode(), sync=False)

        mc.attach(checkpoint, interval=CHECKPOINT_EVERY)
        mc.run(max(self.steps - mc.nsteps, 0), progress=progress)
        checkpoint()
        samples, stats = mc.samples(), mc.stats
        return {"molecule": self.molecule, "steps": stats["steps"], "seed": self.seed,
                "temperature_K": self.temperature, "step_size_A": self.step_size, "resumed": resumed,
                "wall_time_s": wall_before + time.perf_counter() - t0, "target_time_s": stats["time_target"],
                "acceptance_ratio": mc.acceptance_ratio, "mean_rog_A": float(samples["rog"].mean()),
                "mean_energy_eV": float(samples["energy"].mean()), "rog_kind": "mass-weighted", "exact": stats}

    def headline(self, report: dict[str, Any]) -> str:
        if self.method == "exact":
            e = report["exact"]
            return (f"exact chain, {self.steps} steps ({e['burn_in']} burn-in) at {self.temperature} K: "
                    f"{e['target_calls']} target calls, acceptance {e['first_stage_acceptance']:.2f} (screen) "
                    f"x {e['second_stage_acceptance']:.2f} (target), {e['target_calls_per_effective_sample']:.1f} "
                    f"target calls per effective sample, mean radius of gyration {report['mean_rog_A']:.4f} A")
        return (f"{self.steps} MC steps at {self.temperature} K: acceptance {report['acceptance_ratio']:.2f}, "
                f"mean radius of gyration {report['mean_rog_A']:.4f} A, wall {report['wall_time_s']:.1f} s")


def _keep_steps_before(trajectory: Path, steps: int) -> None:
    """Drop the trajectory's records of steps at or after ``steps`` (written after the checkpoint a
    killed run resumes from) and a torn last record, rewriting the file whole."""
    from ase.io.trajectory import Trajectory

    from ..store import atomic_write

    if not trajectory.exists():
        return
    kept = []
    try:
        with Trajectory(trajectory, "r") as frames:
            for i in range(len(frames)):
                frame = frames[i]
                if int(frame.info["step"]) >= steps:
                    break
                kept.append(frame)
    except Exception:  # a record torn by the kill: everything before it is kept
        pass
    tmp = trajectory.with_name(f".{trajectory.name}.keep")
    with Trajectory(tmp, "w") as out:
        for frame in kept:
            out.write(frame)
    atomic_write(trajectory, tmp.read_bytes(), sync=False)
    tmp.unlink()
