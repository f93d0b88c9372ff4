"""Metropolis Monte Carlo as an ASE driver, and replay of a recorded run.

:class:`MonteCarlo` is an :class:`ase.optimize.optimize.BaseDynamics` (not ``Dynamics``,
whose ``irun`` asks for forces): it takes its calculator from ``atoms.calc``, moves the
user's atoms, and has ASE's ``attach``, ``run``/``irun``, ``nsteps`` and ``logfile``.  A move
displaces every atom by a vector drawn uniformly from the cube ``[-step_size, step_size]^3``
(Angstrom); it is accepted with probability ``min(1, exp(-dE / kT))``, kT in eV
(``ase.units.kB * temperature_K``).  The driver asks for energies only, so any ASE
calculator -- the target alone or a ProximaCalculator -- drives it unchanged.

Observers see each step whole: the trial structure (``mc.trial``), its energy
(``mc.trial_energy``), the decision (``mc.accepted``), the time the energy call took, and the
current state (``mc.atoms``, ``mc.energy``).  The trajectory records every trial (its energy,
step, decision and call time), appended to across ``run`` calls: :func:`replay` walks the
same trial structures and decisions with another calculator, the thesis's "reference data".
``state()`` / ``restore()`` carry what continues a killed run exactly (step, current
structure and energy, the random state).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.optimize.optimize import BaseDynamics
from ase.units import kB

__all__ = ["radius_of_gyration", "MonteCarlo", "MCResult", "replay", "ReplayResult", "walk_summary"]


def radius_of_gyration(atoms: Atoms) -> float:
    """Mass-weighted radius of gyration in Angstrom (as GROMACS ``gmx gyrate``): sqrt(tr(I) / 2M),
    computed as the mass-weighted mean squared distance from the centre of mass (no eigenvalues)."""
    m = atoms.get_masses()
    total = float(m.sum())
    d = atoms.positions - (m @ atoms.positions) / total
    return math.sqrt(float(np.einsum("i,ij,ij->", m, d, d)) / total)


@dataclass
class MCResult:
    """What a Monte Carlo driver has produced so far, per step and in summary."""

    energies: np.ndarray  # energy of the current (accepted) state after each step, eV
    trial_energies: np.ndarray  # energy of each step's trial structure, eV (NaN: the call failed)
    accepted: np.ndarray  # bool per step
    rog: np.ndarray  # radius of gyration of the current state after each step, A
    call_times: np.ndarray  # seconds the energy call of each trial took
    wall_time: float
    final: Atoms = field(repr=False)
    failed: int = 0  # trials whose energy call failed and were skipped (``skip_failed``)

    @property
    def acceptance_ratio(self) -> float:
        return float(np.mean(self.accepted)) if self.accepted.size else math.nan

    @property
    def mean_rog(self) -> float:
        return float(np.mean(self.rog)) if self.rog.size else math.nan


def _record(atoms: Atoms, energy: float, step: int, accepted: bool, call_time: float) -> Atoms:
    rec = atoms.copy()
    rec.calc = SinglePointCalculator(rec, energy=energy)
    rec.info = {**atoms.info, "step": step, "accepted": accepted, "call_time": call_time}
    return rec


class MonteCarlo(BaseDynamics):
    """Metropolis sampler of ``atoms`` with ``atoms.calc``.

    Parameters
    ----------
    atoms:
        The structure to sample; it is moved (accepted trials), and its calculator answers.
    temperature_K:
        Sampling temperature in K (at least 1 K: a value below is almost always kT in eV).
    step_size:
        Half-width of the uniform displacement per Cartesian component, Angstrom (> 0).
    rng:
        A ``numpy.random.Generator`` or a seed for the move and acceptance draws.
    logfile:
        File (or ``'-'``) for one line per step; ``None`` for none.
    trajectory:
        ASE ``.traj`` file recording every trial (for :func:`replay`).
    append_trajectory:
        Append to an existing trajectory file (a continued run) instead of starting it anew.
    loginterval:
        Steps between trajectory records.
    skip_failed:
        A trial whose energy call raises is counted (``failed``) and rejected, and the walk goes
        on; by default the exception reaches the caller.
    """

    def __init__(self, atoms: Atoms, temperature_K: float, step_size: float = 0.003,
                 rng: np.random.Generator | int | None = None, logfile: IO | str | None = None,
                 trajectory: str | Path | None = None, append_trajectory: bool = False, loginterval: int = 1,
                 skip_failed: bool = False) -> None:
        if atoms.calc is None:
            raise ValueError("MonteCarlo needs a calculator on the atoms (atoms.calc = ...)")
        if not (math.isfinite(temperature_K) and temperature_K >= 1.0):
            raise ValueError(f"temperature_K must be at least 1 K, got {temperature_K!r}"
                             + (f": is that kT in eV? {temperature_K} eV is {temperature_K / kB:.0f} K"
                                if 0 < temperature_K < 1.0 else ""))
        if not (math.isfinite(step_size) and step_size > 0):
            raise ValueError(f"step_size must be > 0 Angstrom, got {step_size!r}")
        if len(atoms) == 0:
            raise ValueError("cannot sample an empty Atoms object")
        super().__init__(atoms, logfile=logfile, trajectory=trajectory, append_trajectory=append_trajectory,
                         loginterval=loginterval)
        self.temperature_K = float(temperature_K)
        self.kT = kB * self.temperature_K
        self.step_size = float(step_size)
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.skip_failed = bool(skip_failed)
        self.energy: float | None = None
        self.trial: Atoms | None = None
        self.trial_energy = math.nan
        self.accepted = True
        self.call_time = 0.0
        self.failed = 0
        self._history: dict[str, list] = {k: [] for k in ("energies", "trials", "accepted", "rog", "times")}
        self._accepted_count = 0
        self._rog: float | None = None  # radius of gyration of the current state (None: not computed)
        self._no_log = logfile is None  # ASE opens os.devnull for it: no line is formatted for that
        self._wall = 0.0

    def todict(self) -> dict[str, Any]:
        return {"type": "monte-carlo", "mc-type": "metropolis", "temperature_K": self.temperature_K,
                "step_size": self.step_size}

    # --------------------------------------------------------------- steps
    def _evaluate(self, trial: Atoms) -> float:
        trial.calc = self.atoms.calc
        t = time.perf_counter()
        try:
            energy = float(trial.get_potential_energy())
        except Exception:
            self.call_time = time.perf_counter() - t
            if not self.skip_failed:
                raise
            self.failed += 1
            return math.nan
        self.call_time = time.perf_counter() - t
        return energy

    def step(self) -> None:
        """Propose a displaced copy, ask its energy, accept or reject it (moving ``self.atoms``)."""
        trial = self.atoms.copy()
        trial.positions += self.rng.uniform(-self.step_size, self.step_size, trial.positions.shape)
        self.trial = trial
        self.trial_energy = self._evaluate(trial)
        d_e = self.trial_energy - self.energy
        self.accepted = bool(math.isfinite(d_e) and (d_e <= 0.0 or self.rng.random() < math.exp(-d_e / self.kT)))
        if self.accepted:
            self.atoms.positions = trial.positions
            self.energy = self.trial_energy
        h = self._history
        h["energies"].append(self.energy)
        h["trials"].append(self.trial_energy)
        h["accepted"].append(self.accepted)
        self._accepted_count += self.accepted
        if self.accepted or self._rog is None:  # a rejected move leaves the state, and its radius, as it was
            self._rog = radius_of_gyration(self.atoms)
        h["rog"].append(self._rog)
        h["times"].append(self.call_time)

    def irun(self, steps: int = 100) -> Iterator[bool]:
        """Run ``steps`` Metropolis steps, yielding after each (``True`` when it was accepted)."""
        if steps < 0:
            raise ValueError("steps must be >= 0")
        self.max_steps = self.nsteps + steps
        self._rog = None  # the structure may have been moved between runs
        if self.energy is None:  # the starting state: its energy, its trajectory record
            self.trial = self.atoms.copy()
            self.energy = self.trial_energy = self._evaluate(self.trial)
            if not math.isfinite(self.energy):
                raise RuntimeError("the energy of the starting structure could not be computed")
            self.accepted = True
            if self.nsteps == 0:
                self.log()
                self.call_observers()
        t0 = time.perf_counter()
        try:
            while self.nsteps < self.max_steps:
                self.step()
                self.nsteps += 1
                self.log()
                self.call_observers()
                yield self.accepted
        finally:
            self._wall += time.perf_counter() - t0

    def run(self, steps: int = 100, progress: bool = False) -> MCResult:
        """Run ``steps`` steps (a progress bar with ``progress``); returns everything so far."""
        iterator = self.irun(steps)
        if progress:
            from tqdm import tqdm

            iterator = tqdm(iterator, total=steps, desc=f"MC {self.atoms.get_chemical_formula()}", unit="step")
        for _ in iterator:
            pass
        return self.result()

    def result(self) -> MCResult:
        h = self._history
        return MCResult(energies=np.array(h["energies"], float), trial_energies=np.array(h["trials"], float),
                        accepted=np.array(h["accepted"], bool), rog=np.array(h["rog"], float),
                        call_times=np.array(h["times"], float), wall_time=self._wall, final=self.atoms.copy(),
                        failed=self.failed)

    def log(self) -> None:
        if self.logfile is None or self._no_log:
            return
        n = len(self._history["accepted"])
        ratio = self._accepted_count / n if n else math.nan  # a running count: a mean of the list grows with n
        self.logfile.write(f"MonteCarlo: step {self.nsteps:6d}  trial {self.trial_energy:15.6f}  "
                           f"energy {self.energy:15.6f}  {'accepted' if self.accepted else 'rejected'}  "
                           f"acceptance {ratio:.3f}\n")

    def _traj_write_image(self, description: dict) -> None:
        """Record the step's trial (the starting structure at step 0), for :func:`replay`."""
        with self._opentraj() as traj:
            traj.set_description(self.todict() | description)
            traj.write(_record(self.trial, self.trial_energy, self.nsteps - 1, self.accepted, self.call_time))

    # ----------------------------------------------------------- resuming
    def state(self) -> dict[str, Any]:
        """What continues this walk exactly (plain JSON): step, current structure and energy,
        the random state."""
        return {"nsteps": self.nsteps, "energy": self.energy, "positions": self.atoms.positions.tolist(),
                "rng": self.rng.bit_generator.state, "failed": self.failed}

    def restore(self, state: dict[str, Any]) -> None:
        self.nsteps = int(state["nsteps"])
        self.energy = float(state["energy"])
        self.atoms.positions = np.array(state["positions"], float)
        self._rog = None
        self.rng.bit_generator.state = state["rng"]
        self.failed = int(state.get("failed", 0))
        self.trial = self.atoms.copy()


def walk_summary(trajectory: str | Path) -> dict[str, Any]:
    """Acceptance ratio, mean radius of gyration of the current state, summed call time and the
    number of steps, read from a :class:`MonteCarlo` trajectory (so a walk continued across
    processes is summarised whole)."""
    from ase.io.trajectory import Trajectory

    with Trajectory(trajectory, "r") as frames:
        records = [frames[i] for i in range(len(frames))]
    if not records:
        raise ValueError(f"{trajectory} holds no steps")
    current, rog, accepted, call_time = records[0], [], [], 0.0
    for rec in records:
        call_time += float(rec.info["call_time"])
        if int(rec.info["step"]) < 0:
            continue
        if rec.info["accepted"]:
            current = rec
        accepted.append(bool(rec.info["accepted"]))
        rog.append(radius_of_gyration(current))
    return {"steps": len(accepted), "acceptance_ratio": float(np.mean(accepted)) if accepted else math.nan,
            "mean_rog": float(np.mean(rog)) if rog else math.nan, "call_time_s": call_time}


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


def replay(trajectory: str | Path, calc, progress: bool = False) -> ReplayResult:
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
