"""Small-cell solid-liquid coexistence (Hong & van de Walle's SLUSCHI method) on ASE.

The method, in the order :class:`Coexistence` runs it:

1. a crystal (``size`` cubic fcc cells of ``element``, or ``size`` repeats of the cell in the
   file ``structure``: another close-packed crystal, an ordered alloy) is equilibrated near the
   guess temperature under an isotropic Berendsen barostat;
2. the cell is doubled along z; the original half is held by ``FixAtoms``
   while the new half is melted by Langevin dynamics at ``melt_temperature``;
3. the constraint is dropped and ``runs`` independent coexistence runs start
   from that half-molten cell at the guess temperature, each with its own
   Maxwell-Boltzmann velocities, under an anisotropic Berendsen barostat
   (``Inhomogeneous_NPTBerendsen``: the ASE barostats that also take
   constraints are deprecated, and the MTK ones refuse constraints);
4. a small cell cannot keep an interface: each run ends all solid or all
   liquid.  Each run is judged twice at its end:

   * **movement** (SLUSCHI's own criterion, so results compare with its
     code): positions are averaged over blocks of ``average_steps``; the mean
     displacement between the last two block averages, minimum image, is
     taken separately over the atoms that started in each half.  Below
     ``solid_movement`` (0.5 A) a half is solid, above ``liquid_movement``
     (1.0 A) liquid; the run is solid or liquid when both halves agree.  An
     undecided run is extended by ``extend_steps``, up to ``max_extensions``
     times, and judged again on its last two blocks (SLUSCHI extends too);
   * **structure**: the fraction of solid-like atoms from the ten Wolde-Frenkel
     bond-order criterion (freud's ``SolidLiquid``: an atom with at least
     ``solid_bonds`` neighbours whose normalised q6 vectors overlap by more
     than 0.7 is solid-like).  It is chosen over plain Steinhardt Q6 because
     it counts *correlated* local order, which thermal noise in a hot crystal
     does not destroy and a liquid does not have; it needs no reference
     structure, unlike common neighbour analysis.

   The run's ``verdict`` is the movement label when that decided it, else
   the structure label when that is 'solid' or 'liquid' (``decided_by``
   says which), else 'undecided'.

The liquid ratio over runs and, from ratios at several temperatures, the
melting point by SLUSCHI's logistic likelihood (:func:`fit_melting_point`) are
the outcome.  A calculator that certifies its answers (``ProximaCalculator.certified``)
gives every run its own certified served error (``RunOutcome.certificate``), also where
one calculator answers a whole scan.  Every finished run is appended to ``runs.jsonl`` in the run
directory at once, so a crash loses at most the run in progress.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.constraints import FixAtoms
from ase.geometry import find_mic
from ase.io import read, write
from ase.md.langevin import Langevin
from ase.md.nptberendsen import Inhomogeneous_NPTBerendsen, NPTBerendsen
from ase.md.velocitydistribution import Stationary, thermalize_momenta

from ..store import atomic_write

__all__ = [
    "CoexistenceConfig",
    "CellNotMelted",
    "RunOutcome",
    "read_crystal",
    "Coexistence",
    "solid_like_fraction",
    "classify_structure",
    "movement_label",
    "final_verdict",
    "liquid_ratio",
    "fit_melting_point",
]

# 1 / bulk modulus of fcc Al (about 76 GPa), in 1/(eV/A^3) as ASE's Berendsen barostats take it
_AL_COMPRESSIBILITY = 1.0 / (76.0 * units.GPa)


MELTED_AT_MOST = 0.5  # solid-like share of the melted half (a liquid has about 0.1, a crystal over 0.9)


class CellNotMelted(RuntimeError):
    """The half of the coexistence cell meant to be liquid is still crystalline after the melt."""


@dataclass
class CoexistenceConfig:
    """Everything that defines a coexistence study; saved as ``config.json`` in the run directory.

    Lengths in Angstrom, temperatures in K, times in fs, pressure in GPa.  The
    defaults are the thesis's aluminium study: 4x4x4 fcc cells (256 atoms,
    512 after doubling) near ASE EMT's melting region.
    """

    element: str = "Al"
    lattice_constant: float = 3.994  # ASE EMT's equilibrium fcc Al
    # a file (any format ASE reads) with the crystal's periodic cell, repeated ``size`` times
    # instead of fcc ``element``; read once, when the cell is prepared
    structure: str | None = None
    size: tuple[int, int, int] = (4, 4, 4)
    temperature: float = 950.0
    melt_temperature: float = 2000.0
    timestep: float = 4.0
    equilibrate_steps: int = 500
    melt_steps: int = 1000
    run_steps: int = 3000
    runs: int = 20
    average_steps: int = 250
    pressure: float = 0.0
    taut: float = 100.0
    taup: float = 1000.0
    friction: float = 0.01  # 1/fs, Langevin melt
    compressibility: float = _AL_COMPRESSIBILITY
    solid_movement: float = 0.5
    liquid_movement: float = 1.0
    solid_bonds: int = 6
    extend_steps: int = 0
    max_extensions: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        self.size = tuple(int(n) for n in self.size)
        if len(self.size) != 3 or min(self.size) < 1:
            raise ValueError(f"size must be three positive integers, got {self.size!r}")
        for name in ("lattice_constant", "temperature", "melt_temperature", "timestep", "taut", "taup",
                     "friction", "compressibility"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        for name in ("equilibrate_steps", "melt_steps", "run_steps", "runs", "average_steps", "extend_steps",
                     "max_extensions"):
            v = getattr(self, name)
            if int(v) != v or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
        if self.runs < 1 or self.run_steps < 2 * self.average_steps or self.average_steps < 1:
            raise ValueError("need runs >= 1 and run_steps >= 2 * average_steps >= 2 (two blocks to compare)")
        if self.max_extensions and (self.extend_steps < self.average_steps or self.extend_steps % self.average_steps):
            raise ValueError("extend_steps must be a positive multiple of average_steps when max_extensions > 0")
        if not 0 < self.solid_movement <= self.liquid_movement:
            raise ValueError("need 0 < solid_movement <= liquid_movement")
        if self.melt_temperature <= self.temperature:
            raise ValueError("melt_temperature must be above temperature")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CoexistenceConfig:
        return cls(**{k: (tuple(v) if k == "size" else v) for k, v in d.items()})


@dataclass
class RunOutcome:
    """How one coexistence run ended."""

    run: int
    seed: int
    label: str  # movement criterion: 'solid', 'liquid' or 'undecided'
    structure_label: str  # bond-order criterion: 'solid', 'liquid' or 'coexisting'
    movement: tuple[float, float]  # mean block displacement of the two starting halves, A
    solid_fraction: float  # solid-like atoms at the end
    mean_temperature: float
    final_volume_per_atom: float
    steps: int
    wall_time: float
    calc_stats: dict[str, Any] = field(default_factory=dict)
    extensions: int = 0  # times the run was extended while movement left it undecided
    verdict: str = ""  # the run's phase by the stated rule: movement, else structure, else 'undecided'
    decided_by: str = ""  # 'movement', 'structure' or 'none'
    temperature: float = math.nan  # the thermostat's, K
    certificate: dict[str, Any] = field(default_factory=dict)  # the run's own certified served error (Proxima)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunOutcome:
        return cls(**{**d, "movement": tuple(d["movement"])})

    def __post_init__(self) -> None:
        if not self.verdict:  # records written before the rule existed
            self.verdict, self.decided_by = final_verdict(self.label, self.structure_label)


# ----------------------------------------------------------- classification
def read_crystal(path: str | os.PathLike) -> Atoms:
    """The crystal cell in ``path`` (any format ASE reads; the last image of a trajectory),
    checked to be periodic in every direction; constraints and calculator dropped."""
    try:
        atoms = read(path)
    except FileNotFoundError:
        raise ValueError(f"no structure file {path}") from None
    except Exception as err:  # ASE raises many kinds for a file it cannot parse
        raise ValueError(f"cannot read a structure from {path}: {err}") from None
    if not atoms.pbc.all() or atoms.cell.volume <= 0 or len(atoms) == 0:
        raise ValueError(f"the structure in {path} must be a crystal: atoms in a cell periodic in x, y and z")
    return Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)


def fcc_lattice_constant(element: str, calc: Any) -> float:
    """The calculator's own lattice constant of fcc ``element`` at zero temperature and pressure (A),
    so that a crystal starts unstrained under whatever target is used: a Birch-Murnaghan fit of the
    cubic cell's energy at nine lattice constants 5% either side of a guess (the fcc cell of the
    element's reference atomic volume in ASE), moved while the minimum lies outside them, then
    refined 1.5% either side of it."""
    from ase.data import atomic_numbers, reference_states
    from ase.eos import EquationOfState

    z = atomic_numbers.get(element)
    if z is None:
        raise ValueError(f"unknown element {element!r}")
    try:
        reference = bulk(element)
    except Exception as err:  # ASE has no crystal for this element
        raise ValueError(f"ASE has no reference crystal for {element} ({err}): give its lattice constant") from None
    symmetry = (reference_states[z] or {}).get("symmetry")
    a = reference_states[z]["a"] if symmetry == "fcc" else (4.0 * reference.get_volume() / len(reference)) ** (1 / 3)
    width = 0.05
    for _ in range(8):
        scales = np.linspace(1.0 - width, 1.0 + width, 9)
        volumes, energies = [], []
        for f in scales:
            atoms = bulk(element, "fcc", a=a * f, cubic=True)
            atoms.calc = calc
            try:
                energies.append(atoms.get_potential_energy())
            except Exception as err:  # e.g. an EMT without parameters for this element
                raise ValueError(f"the target cannot compute fcc {element} ({type(err).__name__}: {err})") from None
            volumes.append(atoms.get_volume())
        lowest = int(np.argmin(energies))
        if lowest in (0, len(scales) - 1):  # the minimum lies further out: move to the lowest edge
            a *= scales[lowest]
            continue
        v0, _, _ = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
        a = float(v0 ** (1 / 3))
        if width < 0.05:
            return a
        width = 0.015
    raise ValueError(f"no energy minimum of fcc {element} found under this calculator: give its lattice constant")


def solid_like_fraction(atoms: Atoms, solid_bonds: int = 6, neighbours: int = 12) -> np.ndarray:
    """Per-atom solid-like flags from the ten Wolde-Frenkel q6 bond criterion (freud).

    Neighbours are the ``neighbours`` nearest atoms (12: the fcc shell), so the
    criterion does not depend on a density-dependent cut-off.
    """
    import freud

    box, points = freud.box.Box.from_matrix(atoms.cell.array.T), _centred_positions(atoms)
    sl = freud.order.SolidLiquid(l=6, q_threshold=0.7, solid_threshold=solid_bonds, normalize_q=True)
    sl.compute((box, points), neighbors={"num_neighbors": neighbours, "exclude_ii": True})
    return np.asarray(sl.num_connections >= solid_bonds)


def _centred_positions(atoms: Atoms) -> np.ndarray:
    """Wrapped positions shifted to freud's box convention (origin at the cell centre)."""
    frac = atoms.get_scaled_positions(wrap=True) - 0.5
    return np.ascontiguousarray(frac @ atoms.cell.array, dtype=np.float32)


def classify_structure(atoms: Atoms, solid_bonds: int = 6, solid_above: float = 0.7,
                       liquid_below: float = 0.3) -> tuple[str, float]:
    """'solid', 'liquid' or 'coexisting' from the solid-like fraction; returns (label, fraction)."""
    frac = float(np.mean(solid_like_fraction(atoms, solid_bonds)))
    if frac >= solid_above:
        return "solid", frac
    if frac <= liquid_below:
        return "liquid", frac
    return "coexisting", frac


def movement_label(movement: Sequence[float], solid_below: float = 0.5, liquid_above: float = 1.0) -> str:
    """SLUSCHI's movement verdict from the two halves' block displacements."""
    if all(m < solid_below for m in movement):
        return "solid"
    if all(m > liquid_above for m in movement):
        return "liquid"
    return "undecided"


def final_verdict(movement: str, structure: str) -> tuple[str, str]:
    """A run's phase and what decided it: the movement label when it is 'solid' or 'liquid',
    else the structure label when it is, else ('undecided', 'none')."""
    if movement in ("solid", "liquid"):
        return movement, "movement"
    if structure in ("solid", "liquid"):
        return structure, "structure"
    return "undecided", "none"


# ------------------------------------------------------------------ statistics
def liquid_ratio(labels: Sequence[str]) -> tuple[float, float]:
    """Fraction of runs that ended liquid, and its binomial standard error."""
    n = len(labels)
    if n == 0:
        return math.nan, math.nan
    p = sum(lab == "liquid" for lab in labels) / n
    return p, math.sqrt(max(p * (1 - p), 0.25 / n) / n)


def fit_melting_point(temperatures: Sequence[float], n_liquid: Sequence[int], n_runs: Sequence[int]
                      ) -> dict[str, float]:
    """Maximum-likelihood melting point from liquid counts at several temperatures.

    SLUSCHI's model: P(liquid | T) = 1 / (1 + exp(g (Tm - T) / (2 kB T Tm))), g in eV
    (a latent-heat-like sharpness).  Returns Tm, g and Tm's standard error from
    the inverse Hessian of the negative log-likelihood (``cov``: that inverse, over Tm and
    log g; ``None`` where it is not positive definite).
    """
    from scipy.optimize import minimize

    t = np.asarray(temperatures, float)
    k = np.asarray(n_liquid, float)
    n = np.asarray(n_runs, float)
    if t.size < 2 or np.any(n <= 0) or np.any(k < 0) or np.any(k > n):
        raise ValueError("need counts at >= 2 temperatures with 0 <= n_liquid <= n_runs, n_runs > 0")

    def nll(x: np.ndarray) -> float:
        tm, log_g = x
        if not tm > 0 or log_g > 700:  # outside the model (the simplex may step there)
            return math.inf
        z = np.exp(log_g) * (tm - t) / (2 * units.kB * t * tm)
        # log P(liquid) = -log(1 + e^z), log P(solid) = z - log(1 + e^z)
        return float(np.sum(k * np.logaddexp(0, z) + (n - k) * (np.logaddexp(0, z) - z)))

    best = None
    for tm0 in np.linspace(t.min(), t.max(), 7):
        for g0 in (0.05, 0.2, 1.0):
            r = minimize(nll, [tm0, math.log(g0)], method="Nelder-Mead",
                         options={"xatol": 1e-4, "fatol": 1e-9, "maxiter": 4000})
            if best is None or r.fun < best.fun:
                best = r
    tm, log_g = best.x
    h = _numeric_hessian(nll, best.x)
    cov = None
    try:
        inv = np.linalg.inv(h)
        se = math.sqrt(inv[0, 0]) if inv[0, 0] > 0 else math.nan
        if np.all(np.isfinite(inv)) and np.all(np.linalg.eigvalsh((inv + inv.T) / 2) > 0):
            cov = ((inv + inv.T) / 2).tolist()
    except np.linalg.LinAlgError:
        se = math.nan
    return {"Tm": float(tm), "g": float(math.exp(log_g)), "Tm_se": se, "neg_log_likelihood": float(best.fun),
            "cov": cov}


def _numeric_hessian(f: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, float)
    h = np.empty((x.size, x.size))
    steps = np.maximum(np.abs(x) * 1e-3, 1e-3)
    for i in range(x.size):
        for j in range(x.size):
            ei, ej = np.eye(x.size)[i] * steps[i], np.eye(x.size)[j] * steps[j]
            h[i, j] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * steps[i] * steps[j])
    return h


# ------------------------------------------------------------------- workflow
class Coexistence:
    """Prepare a half-molten cell and run coexistence runs with any ASE calculator.

    ``calc`` answers every step (the target alone, or a ProximaCalculator that
    keeps learning across runs); ``out`` is the run directory (created).
    ``on_step(atoms)`` is called after every MD step, ``on_run(outcome)`` after
    each finished run has been appended to ``runs.jsonl``.
    """

    def __init__(self, config: CoexistenceConfig, calc, out: str | os.PathLike,
                 progress: bool = False, on_step: Callable[[Atoms], None] | None = None,
                 on_run: Callable[[RunOutcome], None] | None = None) -> None:
        self.config = config
        self.calc = calc
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self.on_step = on_step
        self.on_run = on_run
        self._bar = None
        atomic_write(self.out / "config.json", json.dumps(asdict(self.config), indent=1).encode(), sync=False)

    # ----------------------------------------------------------- preparation
    def crystal(self) -> Atoms:
        c = self.config
        cell = read_crystal(c.structure) if c.structure else bulk(c.element, "fcc", a=c.lattice_constant, cubic=True)
        return cell.repeat(c.size)

    def prepare(self) -> Atoms:
        """Steps 1-2: equilibrate the crystal, double it along z, melt the new half.

        The result is written to ``start.traj``; an existing one is reused, so
        every method of a comparison starts its runs from the same cell.  A new half
        that the melt left mostly solid-like (over ``MELTED_AT_MOST`` by the bond-order
        criterion) raises :class:`CellNotMelted`: ``melt_temperature`` is too low for
        this element under this calculator.
        """
        path = self.out / "start.traj"
        if path.exists():
            return read(path)
        c = self.config
        rng = np.random.default_rng(c.seed)
        atoms = self.crystal()
        atoms.calc = self.calc
        thermalize_momenta(atoms, temperature_K=c.temperature, rng=rng)
        Stationary(atoms)
        md = NPTBerendsen(atoms, timestep=c.timestep * units.fs, temperature_K=c.temperature,
                          pressure_au=c.pressure * units.GPa, taut=c.taut * units.fs, taup=c.taup * units.fs,
                          compressibility_au=c.compressibility)
        self._drive(md, c.equilibrate_steps, "equilibrate")

        n = len(atoms)
        doubled = atoms.repeat((1, 1, 2))
        doubled.calc = self.calc
        doubled.set_constraint(FixAtoms(indices=range(n)))
        md = Langevin(doubled, timestep=c.timestep * units.fs, temperature_K=c.melt_temperature,
                      friction=c.friction / units.fs, fixcm=False, rng=rng)
        self._drive(md, c.melt_steps, "melt half")
        doubled.set_constraint()
        left = float(solid_like_fraction(doubled, c.solid_bonds)[n:].mean())
        if left > MELTED_AT_MOST:
            raise CellNotMelted(
                f"the half to be melted is still {left:.0%} solid-like after {c.melt_steps} steps at "
                f"{c.melt_temperature:g} K: every run would start from a crystal.  Raise melt_temperature "
                f"or melt_steps (the half melts at the crystal's volume, which can take far more than "
                f"twice the melting point)")
        start = doubled.copy()
        start.info["solid_half"] = n
        write(path, start)
        return start

    # ------------------------------------------------------------- the runs
    def run(self, start: Atoms | None = None) -> list[RunOutcome]:
        """Step 3-4 for every run not yet in ``runs.jsonl``; returns all outcomes in order."""
        start = self.prepare() if start is None else start
        done = self.outcomes()
        for i in range(len(done), self.config.runs):
            done.append(self.record(self.coexistence_run(start, i)))
        self._write_summary(done)
        return done

    def record(self, outcome: RunOutcome) -> RunOutcome:
        """Append a finished run to ``runs.jsonl`` (one flushed line) and call ``on_run``."""
        with open(self.out / "runs.jsonl", "a") as fh:
            fh.write(json.dumps(asdict(outcome)) + "\n")
        if self.on_run is not None:
            self.on_run(outcome)
        return outcome

    def outcomes(self) -> list[RunOutcome]:
        """The runs recorded in ``runs.jsonl`` (a torn last line, left by a kill, is cut off)."""
        return self.read_outcomes(self.out, repair=True)

    @staticmethod
    def read_outcomes(out: str | os.PathLike, repair: bool = False) -> list[RunOutcome]:
        """The runs recorded in ``out/runs.jsonl``; a torn last line (a run killed while writing
        its line: that run is redone) is skipped, and with ``repair`` cut off the file."""
        path = Path(out) / "runs.jsonl"
        if not path.exists():
            return []
        text = path.read_text()
        if text and not text.endswith("\n"):
            keep = text.rfind("\n") + 1
            if repair:
                warnings.warn(f"{path}: dropped a torn last line: {text[keep:][:60]!r}", stacklevel=2)
                with open(path, "r+") as fh:
                    fh.truncate(keep)
            text = text[:keep]
        return [RunOutcome.from_dict(json.loads(line)) for line in text.splitlines() if line.strip()]

    def coexistence_run(self, start: Atoms, run: int) -> RunOutcome:
        """One NPT run from the half-molten cell, judged by movement and by structure."""
        c = self.config
        seed = int(np.random.SeedSequence([c.seed, run + 1]).generate_state(1)[0])
        atoms = start.copy()
        atoms.set_constraint()
        half = int(start.info.get("solid_half", len(atoms) // 2))
        atoms.calc = self.calc
        thermalize_momenta(atoms, temperature_K=c.temperature, rng=np.random.default_rng(seed))
        Stationary(atoms)
        md = Inhomogeneous_NPTBerendsen(atoms, timestep=c.timestep * units.fs, temperature_K=c.temperature,
                                        pressure_au=c.pressure * units.GPa, taut=c.taut * units.fs,
                                        taup=c.taup * units.fs, compressibility_au=c.compressibility)
        blocks: list[np.ndarray] = []
        acc = np.zeros((len(atoms), 3))
        temps: list[float] = []
        count = 0
        prev = atoms.get_positions()
        unwrapped = prev.copy()

        def observe() -> None:
            nonlocal count, prev, unwrapped, acc
            pos = atoms.get_positions()
            unwrapped += find_mic(pos - prev, atoms.cell, pbc=True)[0]
            prev = pos
            acc += unwrapped
            count += 1
            temps.append(atoms.get_temperature())
            if count == c.average_steps:
                blocks.append(acc / count)
                acc[:] = 0.0
                count = 0

        md.attach(observe, interval=1)
        t0 = time.perf_counter()
        what = f"run {run + 1}/{c.runs}, {c.temperature:g} K"
        certified = getattr(self.calc, "certified", None)  # a calculator that certifies its answers
        with certified() if certified is not None else nullcontext() as cert:
            self._drive(md, c.run_steps, what)
            steps, extensions = c.run_steps, 0
            while True:
                disp = np.linalg.norm(blocks[-1] - blocks[-2], axis=1)
                movement = (float(disp[:half].mean()), float(disp[half:].mean()))
                label = movement_label(movement, c.solid_movement, c.liquid_movement)
                if label != "undecided" or extensions >= c.max_extensions:
                    break
                extensions += 1
                self._drive(md, c.extend_steps, f"{what}, extension {extensions}")
                steps += c.extend_steps
        wall = time.perf_counter() - t0
        level = getattr(self.calc, "parameters", {}).get("confidence_level", 0.95)
        # the state too, so the runs of a scan pool into one certificate (ServedErrorBound.pooled)
        certificate = {} if cert is None else {**_jsonable(cert.summary(level)), "state": cert.state()}
        s_label, frac = classify_structure(atoms, c.solid_bonds)
        verdict, decided_by = final_verdict(label, s_label)
        write(self.out / f"run{run:03d}_final.traj", atoms)
        stats = dict(getattr(self.calc, "stats", {}) or {})
        return RunOutcome(run=run, seed=seed, label=label, structure_label=s_label, movement=movement,
                          solid_fraction=frac, mean_temperature=float(np.mean(temps)),
                          final_volume_per_atom=float(atoms.get_volume() / len(atoms)), steps=steps,
                          wall_time=wall, calc_stats=_jsonable(stats), extensions=extensions, verdict=verdict,
                          decided_by=decided_by, temperature=c.temperature, certificate=certificate)

    # -------------------------------------------------------------- helpers
    def _drive(self, md, steps: int, what: str) -> None:
        """Run ``steps`` MD steps with the progress bar and the user's per-step hook attached
        (attached once per dynamics object, so an extended run calls the hook once a step)."""
        if steps <= 0:
            return
        if not getattr(md, "_coexistence_hooks", False):
            md._coexistence_hooks = True
            if self.on_step is not None:
                md.attach(lambda: self.on_step(md.atoms), interval=1)
            md.attach(lambda: self._bar.update(1) if self._bar is not None and md.nsteps > 0 else None, interval=1)
        if self.progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=steps, desc=what, unit="step", leave=False)
        try:
            md.run(steps)
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def _write_summary(self, outcomes: list[RunOutcome]) -> None:
        labels = [o.label for o in outcomes]
        ratio, se = liquid_ratio(labels)
        s_ratio, s_se = liquid_ratio([o.structure_label for o in outcomes])
        verdicts = [o.verdict for o in outcomes]
        summary = {
            "temperature": self.config.temperature,
            "runs": len(outcomes),
            "solid": labels.count("solid"),
            "liquid": labels.count("liquid"),
            "undecided": labels.count("undecided"),
            "liquid_ratio": ratio,
            "liquid_ratio_se": se,
            "structure_liquid_ratio": s_ratio,
            "structure_liquid_ratio_se": s_se,
            "agreement_movement_structure": float(np.mean([o.label == o.structure_label for o in outcomes])),
            "extended": sum(o.extensions > 0 for o in outcomes),
            "verdict": {"liquid": verdicts.count("liquid"), "solid": verdicts.count("solid"),
                        "undecided": verdicts.count("undecided"),
                        "by_structure": sum(o.decided_by == "structure" for o in outcomes)},
            "calc_stats": _jsonable(dict(getattr(self.calc, "stats", {}) or {})),
        }
        atomic_write(self.out / "summary.json", json.dumps(summary, indent=1).encode())


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, (np.floating, float)):
            out[k] = None if not math.isfinite(float(v)) else float(v)
        elif isinstance(v, (np.integer, int, str, bool)) or v is None:
            out[k] = v.item() if isinstance(v, np.generic) else v
    return out
