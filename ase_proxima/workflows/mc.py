"""Metropolis Monte Carlo on ASE atoms, and replay of a recorded run.

A move displaces every atom by a vector drawn uniformly from the cube
``[-step_size, step_size]^3`` (Angstrom); it is accepted with probability
``min(1, exp(-dE / kT))``, kT in eV (``ase.units.kB * temperature_K``).  The
driver asks the calculator for energies only, so any ASE calculator -- the
target alone or a ProximaCalculator -- drives it unchanged.

Every step is recorded (trial structure, its energy, accepted or not, the time
the energy call took) in an ASE trajectory file.  :func:`replay` walks exactly
the same trial structures and accept decisions with another calculator: the
thesis's "reference data", which lets methods be compared on identical
configurations, with the recorded per-step target time as the baseline cost.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.units import kB

__all__ = ["radius_of_gyration", "MonteCarlo", "MCResult", "replay", "ReplayResult"]


def radius_of_gyration(atoms: Atoms) -> float:
    """Mass-weighted radius of gyration in Angstrom (as GROMACS ``gmx gyrate``): sqrt(tr(I) / 2M)."""
    return math.sqrt(float(np.sum(atoms.get_moments_of_inertia())) / (2.0 * float(np.sum(atoms.get_masses()))))


@dataclass
class MCResult:
    """What a Monte Carlo run produced, per step and in summary."""

    energies: np.ndarray  # energy of the current (accepted) state after each step, eV
    trial_energies: np.ndarray  # energy of each step's trial structure, eV
    accepted: np.ndarray  # bool per step
    rog: np.ndarray  # radius of gyration of the current state after each step, A
    call_times: np.ndarray  # seconds the energy call of each trial took
    wall_time: float
    final: Atoms = field(repr=False)

    @property
    def acceptance_ratio(self) -> float:
        return float(np.mean(self.accepted)) if self.accepted.size else math.nan

    @property
    def mean_rog(self) -> float:
        return float(np.mean(self.rog)) if self.rog.size else math.nan


def _record(atoms: Atoms, energy: float, step: int, accepted: bool, call_time: float) -> Atoms:
    rec = atoms.copy()
    rec.calc = SinglePointCalculator(rec, energy=energy)
    rec.info = {"step": step, "accepted": accepted, "call_time": call_time}
    return rec


class MonteCarlo:
    """Metropolis sampler.

    Parameters
    ----------
    atoms:
        Starting structure (copied; the calculator is attached to the copies).
    calc:
        Any ASE calculator giving ``energy``.
    temperature_K:
        Sampling temperature in K (> 0).
    step_size:
        Half-width of the uniform displacement per Cartesian component, Angstrom (> 0).
    seed:
        Seed of the move and acceptance draws.
    trajectory:
        Optional path of an ASE ``.traj`` file recording every step (for :func:`replay`).
    observer:
        Optional ``f(step, atoms, energy, accepted)`` called after every step.
    """

    def __init__(
        self,
        atoms: Atoms,
        calc,
        temperature_K: float,
        step_size: float = 0.003,
        seed: int | None = None,
        trajectory: str | os.PathLike | None = None,
        observer: Callable[[int, Atoms, float, bool], Any] | None = None,
    ) -> None:
        if not (math.isfinite(temperature_K) and temperature_K > 0):
            raise ValueError(f"temperature_K must be > 0, got {temperature_K!r}")
        if not (math.isfinite(step_size) and step_size > 0):
            raise ValueError(f"step_size must be > 0 Angstrom, got {step_size!r}")
        if len(atoms) == 0:
            raise ValueError("cannot sample an empty Atoms object")
        self.atoms = atoms.copy()
        self.calc = calc
        self.kT = kB * float(temperature_K)
        self.step_size = float(step_size)
        self.rng = np.random.default_rng(seed)
        self.trajectory = trajectory
        self.observer = observer

    def _energy(self, atoms: Atoms) -> tuple[float, float]:
        atoms.calc = self.calc
        t = time.perf_counter()
        e = float(atoms.get_potential_energy())
        return e, time.perf_counter() - t

    def run(self, steps: int, progress: bool = False) -> MCResult:
        """Run ``steps`` Metropolis steps from the current state."""
        if steps < 1:
            raise ValueError("steps must be >= 1")
        from ase.io.trajectory import Trajectory

        current = self.atoms.copy()
        e_cur, dt0 = self._energy(current)
        writer = Trajectory(self.trajectory, "w") if self.trajectory is not None else None
        if writer is not None:  # the starting structure, so a replay knows where the walk began
            writer.write(_record(current, e_cur, -1, True, dt0))
        energies, trials, accepted, rog, times = [], [], [], [], []
        iterator = range(steps)
        if progress:
            from tqdm import tqdm

            iterator = tqdm(iterator, desc=f"MC {current.get_chemical_formula()}", unit="step")
        t0 = time.perf_counter()
        try:
            for step in iterator:
                trial = current.copy()
                trial.positions += self.rng.uniform(-self.step_size, self.step_size, trial.positions.shape)
                e_trial, dt = self._energy(trial)
                d_e = e_trial - e_cur
                ok = bool(d_e <= 0.0 or self.rng.random() < math.exp(-d_e / self.kT))
                if writer is not None:
                    writer.write(_record(trial, e_trial, step, ok, dt))
                if ok:
                    current, e_cur = trial, e_trial
                energies.append(e_cur)
                trials.append(e_trial)
                accepted.append(ok)
                rog.append(radius_of_gyration(current))
                times.append(dt)
                if self.observer is not None:
                    self.observer(step, current, e_cur, ok)
        finally:
            if writer is not None:
                writer.close()
        self.atoms = current.copy()
        return MCResult(
            energies=np.array(energies),
            trial_energies=np.array(trials),
            accepted=np.array(accepted, bool),
            rog=np.array(rog),
            call_times=np.array(times),
            wall_time=time.perf_counter() - t0,
            final=current.copy(),
        )


@dataclass
class ReplayResult:
    """A calculator evaluated on a recorded run's trial structures."""

    energies: np.ndarray  # what the calculator returned per step
    reference: np.ndarray  # the recorded (target) energies
    errors: np.ndarray  # |energies - reference|
    call_times: np.ndarray  # seconds per call with this calculator
    reference_times: np.ndarray  # recorded seconds per call
    accepted: np.ndarray
    rog: np.ndarray  # radius of gyration along the recorded path

    @property
    def speedup(self) -> float:
        return float(np.sum(self.reference_times) / np.sum(self.call_times))


def replay(trajectory: str | os.PathLike, calc, progress: bool = False) -> ReplayResult:
    """Evaluate ``calc`` on every structure of a recorded run, following its accept decisions.

    The first frame is the starting structure, then one trial per step, so the
    arrays have ``steps + 1`` entries.  The walk is the recorded one whatever
    ``calc`` answers: two methods replayed on one file see identical
    configurations.
    """
    from ase.io.trajectory import Trajectory

    frames = Trajectory(trajectory, "r")
    n = len(frames)
    if n == 0:
        raise ValueError(f"{trajectory} holds no steps")
    energies, ref, times, ref_times, acc, rog = [], [], [], [], [], []
    current = None
    iterator = range(n)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="replay", unit="step")
    for i in iterator:
        rec = frames[i]
        ref.append(rec.get_potential_energy())
        info = rec.info
        ref_times.append(float(info["call_time"]))
        acc.append(bool(info["accepted"]))
        trial = rec.copy()
        trial.calc = calc
        t = time.perf_counter()
        energies.append(float(trial.get_potential_energy()))
        times.append(time.perf_counter() - t)
        if acc[-1]:
            current = rec
        rog.append(radius_of_gyration(current))
    e, r = np.array(energies), np.array(ref)
    return ReplayResult(
        energies=e,
        reference=r,
        errors=np.abs(e - r),
        call_times=np.array(times),
        reference_times=np.array(ref_times),
        accepted=np.array(acc, bool),
        rog=np.array(rog),
    )
