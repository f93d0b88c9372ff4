"""Proxima in the ASE workflows people run, each against the target alone, side by side.

Every workflow runs twice in one process with the same seeds and starting structures: with ASE's
EMT alone, and with ``ProximaCalculator(target=EMT())``.  Reported per workflow: the fraction of
calls the surrogate answered, the true error of the served answers (an independent EMT on every
served call, against the bound), target calls against the target-only run, and the wall-time
ratio (target alone / Proxima, every overhead included).  EMT is cheap, so the wall-time ratio
is the pessimistic end: the target calls saved are what a DFT target would gain.  EMT stands in
for such a target here, so the cost rule (which would rightly keep so cheap a target to itself,
see ``benchmarks/cost.py``) is off: ``cost_aware=False``.

Workflows: Langevin MD of a binary alloy; Langevin MD of a molecule in a periodic box; FIRE and
BFGS relaxations of an adsorbate on a metal slab over rattled starts (the final true fmax
against the requested one); a ``FrechetCellFilter`` relaxation of an ordered alloy; NEB of an
adatom hop with a shared calculator and with one per image (target calls against distinct
structures); ``Vibrations`` of a cluster (frequencies against target-only); Monte Carlo with the
project's driver; NVE energy drift with served forces against target-only.

Writes ``benchmarks/results/ase_workflows/<workflow>.json``, ``summary.json`` and ``ase_workflows.png``.

    .venv/bin/python benchmarks/ase_workflows.py [--only alloy_md slab_relax ...] [--starts 10]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
from ase import Atoms
from ase.build import add_adsorbate, bulk, fcc100, fcc111, molecule
from ase.calculators.emt import EMT
from ase.cluster import Icosahedron
from ase.constraints import FixAtoms
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet
from ase.units import fs

from ase_proxima import ProximaCalculator
from ase_proxima.metrics import compute_error, free_atoms

OUT = Path(__file__).resolve().parent / "results" / "ase_workflows"


class CountingEMT(EMT):
    """ASE's EMT, counting the calculations it really does."""

    def __init__(self) -> None:
        super().__init__()
        self.ncalls = 0

    def calculate(self, *args: Any, **kwargs: Any) -> None:
        self.ncalls += 1
        super().calculate(*args, **kwargs)


def _proxima(bound: float, metric: str, seed: int = 0, **kw: Any) -> ProximaCalculator:
    return ProximaCalculator(target=CountingEMT(), error_bound=bound, error_metric=metric, seed=seed,
                             cost_aware=False, **kw)


class Truth:
    """Errors of served answers against an independent EMT, on every served call."""

    def __init__(self, calc: ProximaCalculator, metric: str) -> None:
        self.calc, self.metric, self.reference, self.errors = calc, metric, EMT(), []
        self.seconds = 0.0  # spent checking, taken out of the run's wall time

    def check(self, atoms: Atoms) -> None:
        t = time.perf_counter()
        self._check(atoms)
        self.seconds += time.perf_counter() - t

    def _check(self, atoms: Atoms) -> None:
        if self.calc.answer == "surrogate":
            if self.metric.startswith("forces"):
                exact = {"forces": self.reference.get_forces(atoms)}
                served = {"forces": atoms.get_forces()}
            else:
                exact = {"energy": self.reference.get_potential_energy(atoms)}
                served = {"energy": atoms.get_potential_energy()}
            self.errors.append(compute_error(self.metric, served, exact, len(atoms), free_atoms(atoms)))

    @property
    def mean(self) -> float:
        return float(np.mean(self.errors)) if self.errors else math.nan


def _row(name: str, calc: ProximaCalculator, truth: Truth | None, bound: float, t_target: float, t_proxima: float,
         target_only_calls: int, **extra: Any) -> dict[str, Any]:
    s = calc.stats
    t_proxima -= truth.seconds if truth is not None else 0.0
    return {"workflow": name, "bound": bound, "metric": calc.parameters["error_metric"],
            "served_fraction": s["served_fraction"], "calls": s["calls"], "target_calls": s["target_calls"],
            "target_only_calls": target_only_calls, "target_calls_ratio": s["target_calls"] / max(target_only_calls, 1),
            "true_served_error": truth.mean if truth is not None else math.nan,
            "true_over_bound": truth.mean / bound if truth is not None and truth.errors else math.nan,
            "served_checked": len(truth.errors) if truth is not None else 0,
            "audited_served_error": s["served_error"], "wall_ratio_target_over_proxima": t_target / t_proxima,
            "cache_hits": s["cache_hits"], **extra}


# ----------------------------------------------------------------------------------- MD
def _langevin(atoms: Atoms, calc: Any, steps: int, temperature: float, seed: int,
              truth: Truth | None = None) -> float:
    atoms.calc = calc
    thermalize_momenta(atoms, temperature_K=temperature, rng=np.random.default_rng(seed))
    md = Langevin(atoms, 2 * fs, temperature_K=temperature, friction=0.02, fixcm=False,
                  rng=np.random.default_rng(seed + 1))
    if truth is not None:
        md.attach(lambda: truth.check(atoms))
    t = time.perf_counter()
    md.run(steps)
    return time.perf_counter() - t


def md_workflow(name: str, start: Callable[[], Atoms], bound: float, steps: int, temperature: float) -> dict:
    target = CountingEMT()
    t_target = _langevin(start(), target, steps, temperature, seed=0)
    calc = _proxima(bound, "forces_mean")
    truth = Truth(calc, "forces_mean")
    t_proxima = _langevin(start(), calc, steps, temperature, seed=0, truth=truth)
    return _row(name, calc, truth, bound, t_target, t_proxima, target.ncalls, steps=steps, temperature_K=temperature,
                surrogate=type(calc.surrogate).__name__)


def alloy() -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)
    atoms.symbols[np.random.default_rng(0).permutation(len(atoms))[: len(atoms) // 2]] = "Ni"
    return atoms


def boxed_water() -> Atoms:
    atoms = molecule("H2O")
    atoms.center(vacuum=4.0)
    atoms.pbc = True
    return atoms


# ---------------------------------------------------------------------------- relaxations
def adsorbate_slab(seed: int) -> Atoms:
    slab = fcc111("Cu", size=(3, 3, 3), vacuum=7.0)
    add_adsorbate(slab, "O", 1.2, "fcc")
    slab.set_constraint(FixAtoms(indices=[a.index for a in slab if a.tag == 3]))
    slab.rattle(0.08, seed=seed)
    return slab


def true_fmax(atoms: Atoms) -> float:
    ref = atoms.copy()
    ref.calc = EMT()
    f = ref.get_forces()
    free = free_atoms(atoms)
    f = f if free is None else f[free]
    return float(np.sqrt((f ** 2).sum(axis=1)).max())


def relax_workflow(optimizer: str, starts: int, bound: float, fmax: float) -> dict:
    import ase.optimize

    opt_class = getattr(ase.optimize, optimizer)
    rows, t_target, t_proxima, calls_target, calls_proxima, served = [], 0.0, 0.0, 0, 0, 0
    checked: list[float] = []
    for seed in range(starts):
        a = adsorbate_slab(seed)
        target = CountingEMT()
        a.calc = target
        t = time.perf_counter()
        opt_class(a, logfile=None).run(fmax=fmax, steps=1000)
        t_target += time.perf_counter() - t
        b = adsorbate_slab(seed)
        calc = _proxima(bound, "forces_max", seed=seed)
        b.calc = calc
        truth = Truth(calc, "forces_max")
        opt = opt_class(b, logfile=None)
        opt.attach(lambda: truth.check(b))
        t = time.perf_counter()
        converged = opt.run(fmax=fmax, steps=1000)
        t_proxima += time.perf_counter() - t - truth.seconds
        checked.extend(truth.errors)
        calls_target += target.ncalls
        calls_proxima += calc.stats["target_calls"]
        served += calc.stats["surrogate_calls"]
        rows.append({"seed": seed, "converged": bool(converged), "final_true_fmax": true_fmax(b),
                     "energy_difference_eV": float(b.get_potential_energy() - a.get_potential_energy()),
                     "target_only_calls": target.ncalls, "target_calls": calc.stats["target_calls"],
                     "calls": calc.stats["calls"]})
    ok = sum(r["converged"] and r["final_true_fmax"] <= fmax for r in rows)
    return {"workflow": f"{optimizer} relaxation, O on Cu(111)", "bound": bound, "metric": "forces_max",
            "fmax": fmax, "starts": starts, "true_fmax_within_criterion": ok, "runs": rows,
            "served_fraction": served / sum(r["calls"] for r in rows), "target_calls": calls_proxima,
            "target_only_calls": calls_target, "target_calls_ratio": calls_proxima / calls_target,
            "true_served_error": float(np.mean(checked)) if checked else math.nan,
            "true_over_bound": float(np.mean(checked)) / bound if checked else math.nan,
            "served_checked": len(checked), "wall_ratio_target_over_proxima": t_target / t_proxima}


def cell_relax_workflow(bound: float, fmax: float) -> dict:
    import ase.optimize
    from ase.filters import FrechetCellFilter

    def start() -> Atoms:
        atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat(2)  # L1_2 Cu3Au, strained by 2%
        for i, atom in enumerate(atoms):
            if np.allclose(atom.position % 3.7, 0.0, atol=1e-6):
                atoms.symbols[i] = "Au"
        atoms.rattle(0.05, seed=3)
        return atoms

    a = start()
    target = CountingEMT()
    a.calc = target
    t = time.perf_counter()
    ase.optimize.FIRE(FrechetCellFilter(a), logfile=None).run(fmax=fmax, steps=1000)
    t_target = time.perf_counter() - t
    b = start()
    calc = _proxima(bound, "forces_max")
    b.calc = calc
    truth = Truth(calc, "forces_max")
    opt = ase.optimize.FIRE(FrechetCellFilter(b), logfile=None)
    opt.attach(lambda: truth.check(b))
    t = time.perf_counter()
    converged = opt.run(fmax=fmax, steps=1000)
    t_proxima = time.perf_counter() - t
    ref = b.copy()
    ref.calc = EMT()
    return _row("FrechetCellFilter relaxation, Cu3Au", calc, truth, bound, t_target, t_proxima, target.ncalls,
                converged=bool(converged), final_true_fmax=true_fmax(b),
                final_true_stress_GPa=float(np.abs(ref.get_stress()).max() / 0.006241509),
                volume_ratio_to_target_only=b.get_volume() / a.get_volume())


# ------------------------------------------------------------------------------------ NEB
def adatom_hop() -> tuple[Atoms, Atoms]:
    import ase.optimize

    initial = fcc100("Al", size=(2, 2, 3))
    add_adsorbate(initial, "Au", 1.7, "hollow")
    initial.center(axis=2, vacuum=4.0)
    initial.set_constraint(FixAtoms(mask=[atom.tag > 1 for atom in initial]))
    final = initial.copy()
    final.positions[-1, 0] += initial.cell[0, 0] / 2
    for end in (initial, final):
        end.calc = EMT()
        ase.optimize.BFGS(end, logfile=None).run(fmax=0.03)
    return initial, final


def neb_workflow(shared: bool, bound: float, fmax: float) -> dict:
    import ase.optimize
    from ase.mep import NEB

    from ase_proxima.identity import identity

    initial, final = adatom_hop()
    served_errors: list[float] = []

    def run(make_calc: Callable[[], Any]) -> tuple[float, list[Atoms], set, float]:
        images = [initial.copy() for _ in range(6)] + [final.copy()]
        shared_calc = make_calc() if shared else None
        for image in images:
            image.calc = shared_calc if shared else make_calc()
        neb = NEB(images, allow_shared_calculator=shared)
        neb.interpolate()
        asked: set = set()
        opt = ase.optimize.FIRE(neb, logfile=None)
        opt.attach(lambda: asked.update(identity(im) for im in images[1:-1]))
        reference = EMT()

        def check() -> None:  # each image says who answered it (atoms.info)
            nonlocal checking
            t0 = time.perf_counter()
            for im in images[1:-1]:
                if im.info.get("proxima_answer") == "surrogate":
                    free = free_atoms(im)
                    served_errors.append(compute_error("forces_mean", {"forces": im.get_forces()},
                                                       {"forces": reference.get_forces(im)}, len(im), free))
            checking += time.perf_counter() - t0

        checking = 0.0
        opt.attach(check)
        t = time.perf_counter()
        opt.run(fmax=fmax, steps=500)
        elapsed = time.perf_counter() - t - checking
        energies = []
        for im in images:
            ref = im.copy()
            ref.calc = EMT()
            energies.append(ref.get_potential_energy())
        return elapsed, images, asked, max(energies) - energies[0]

    targets: list[CountingEMT] = []

    def target_only() -> CountingEMT:
        targets.append(CountingEMT())
        return targets[-1]

    t_target, _, _, barrier_target = run(target_only)
    calcs: list[ProximaCalculator] = []

    def proxima() -> ProximaCalculator:
        calcs.append(_proxima(bound, "forces_mean"))
        return calcs[-1]

    t_proxima, _, asked, barrier_proxima = run(proxima)
    target_calls = sum(c.stats["target_calls"] for c in calcs)
    served = sum(c.stats["surrogate_calls"] for c in calcs)
    return {"workflow": f"NEB adatom hop, {'one shared calculator' if shared else 'one calculator per image'}",
            "bound": bound, "metric": "forces_mean", "fmax": fmax, "target_calls": target_calls,
            "target_only_calls": sum(t.ncalls for t in targets), "distinct_structures": len(asked),
            "target_calls_within_distinct": target_calls <= len(asked) + 2,
            "served_fraction": served / max(sum(c.stats["calls"] for c in calcs), 1),
            "target_calls_ratio": target_calls / max(sum(t.ncalls for t in targets), 1),
            "barrier_eV": barrier_proxima, "barrier_target_only_eV": barrier_target,
            "true_served_error": float(np.mean(served_errors)) if served_errors else math.nan,
            "true_over_bound": float(np.mean(served_errors)) / bound if served_errors else math.nan,
            "served_checked": len(served_errors),
            "wall_ratio_target_over_proxima": t_target / t_proxima}


# ------------------------------------------------------------------------- vibrations
def vibrations_workflow(bound: float, tmp: Path) -> dict:
    import ase.optimize
    from ase.vibrations import Vibrations

    cluster = Icosahedron("Pt", noshells=2, latticeconstant=3.92)
    cluster.calc = EMT()
    ase.optimize.BFGS(cluster, logfile=None).run(fmax=0.001)

    class CheckedVibrations(Vibrations):
        """Vibrations whose every displaced structure is checked against the target."""

        truth: Truth | None = None

        def calculate(self, atoms: Atoms, disp: Any) -> dict:
            results = super().calculate(atoms, disp)
            if self.truth is not None:
                self.truth.check(atoms)
            return results

    def frequencies(calc: Any, name: str, truth: Truth | None = None) -> tuple[np.ndarray, float]:
        atoms = cluster.copy()
        atoms.calc = calc
        vib = CheckedVibrations(atoms, name=str(tmp / name), delta=0.01)
        vib.truth = truth
        t = time.perf_counter()
        vib.run()
        freq = np.real(vib.get_frequencies())[6:]
        vib.clean()
        return freq, time.perf_counter() - t

    target = CountingEMT()
    ref, t_target = frequencies(target, "target")
    calc = _proxima(bound, "forces_max", min_training=5)
    truth = Truth(calc, "forces_max")
    got, t_proxima = frequencies(calc, "proxima", truth)
    return _row("Vibrations, Pt13", calc, truth, bound, t_target, t_proxima, target.ncalls,
                max_frequency_error_cm1=float(np.max(np.abs(got - ref))),
                mean_frequency_cm1=float(np.mean(ref)))


# ---------------------------------------------------------------------------------- MC
def mc_workflow(bound: float, steps: int) -> dict:
    from ase_proxima.workflows import MonteCarlo

    a = molecule("CH4")
    target = CountingEMT()
    a.calc = target
    t = time.perf_counter()
    MonteCarlo(a, 500.0, step_size=0.01, rng=0).run(steps)
    t_target = time.perf_counter() - t
    b = molecule("CH4")
    calc = _proxima(bound, "energy")
    b.calc = calc
    mc = MonteCarlo(b, 500.0, step_size=0.01, rng=0)
    truth = Truth(calc, "energy")
    mc.attach(lambda: truth.check(mc.trial) if mc.nsteps else None)
    t = time.perf_counter()
    mc.run(steps)
    t_proxima = time.perf_counter() - t
    return _row("Monte Carlo (MonteCarlo driver), CH4 500 K", calc, truth, bound, t_target, t_proxima, target.ncalls,
                steps=steps)


# --------------------------------------------------------------------------------- NVE
def nve_workflow(bound: float, steps: int) -> dict:
    """Energy conservation with served forces: the drift (slope of the total energy per atom), and
    the energy jumps where the answer changes hands (target, surrogate, a refitted surrogate).
    Variants: the default; ``blend=0.5`` (a cosine mix just over the threshold, audits returning
    the answer they check); refits and audits off after the start (served forces only)."""

    def run(calc: Any, truth: Truth | None = None) -> tuple[np.ndarray, np.ndarray, float]:
        atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat(2)
        atoms.calc = calc
        thermalize_momenta(atoms, temperature_K=600, rng=np.random.default_rng(0))
        md = VelocityVerlet(atoms, 2 * fs)
        if truth is not None:
            md.attach(lambda: truth.check(atoms))
        energies, kinds = [], []
        md.attach(lambda: (energies.append(atoms.get_total_energy() / len(atoms)),
                           kinds.append(getattr(calc, "answer", None))))
        t = time.perf_counter()
        md.run(steps)
        return np.array(energies), np.array(kinds, dtype=object), time.perf_counter() - t

    ps = np.arange(steps + 1) * 2e-3

    def measures(e: np.ndarray, kinds: np.ndarray) -> dict[str, float]:
        hand_over = np.flatnonzero(kinds[1:] != kinds[:-1])
        jumps = np.abs(np.diff(e)) * 1e3
        return {"drift_meV_per_atom_ps": float(np.polyfit(ps, e, 1)[0] * 1e3),
                "hand_over_jumps_meV_per_atom": float(jumps[hand_over].sum()), "hand_overs": int(len(hand_over)),
                "all_jumps_meV_per_atom": float(jumps.sum())}

    target = CountingEMT()
    e_target, k_target, t_target = run(target)
    calc = _proxima(bound, "forces_mean")
    truth = Truth(calc, "forces_mean")
    e_proxima, k_proxima, t_proxima = run(calc, truth)
    variants = {"target only": measures(e_target, k_target), "default": measures(e_proxima, k_proxima)}
    for name, settings in (("blend=0.5", {"blend": 0.5}), ("no refits or audits", {"retrain": "never",
                                                                                      "audit_fraction": 0.0})):
        e, k, _ = run(_proxima(bound, "forces_mean", **settings))
        variants[name] = measures(e, k)
    return _row("NVE energy drift, Al32 600 K", calc, truth, bound, t_target, t_proxima, target.ncalls, steps=steps,
                drift_meV_per_atom_ps=variants["default"]["drift_meV_per_atom_ps"],
                drift_target_only_meV_per_atom_ps=variants["target only"]["drift_meV_per_atom_ps"],
                variants=variants)


WORKFLOWS = ("alloy_md", "water_box_md", "slab_fire", "slab_bfgs", "cell_relax", "neb_shared", "neb_per_image",
             "vibrations", "mc", "nve")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=WORKFLOWS, default=list(WORKFLOWS))
    ap.add_argument("--starts", type=int, default=10, help="rattled starts per relaxation")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs: dict[str, Callable[[], dict]] = {
        "alloy_md": lambda: md_workflow("Langevin MD, CuNi alloy (108 atoms)", alloy, 0.05, 1000, 600.0),
        "water_box_md": lambda: md_workflow("Langevin MD, H2O in a periodic box", boxed_water, 0.1, 1000, 300.0),
        "slab_fire": lambda: relax_workflow("FIRE", args.starts, 0.1, 0.05),
        "slab_bfgs": lambda: relax_workflow("BFGS", args.starts, 0.1, 0.05),
        "cell_relax": lambda: cell_relax_workflow(0.1, 0.05),
        "neb_shared": lambda: neb_workflow(True, 0.05, 0.05),
        "neb_per_image": lambda: neb_workflow(False, 0.05, 0.05),
        "vibrations": lambda: vibrations_workflow(0.01, out),
        "mc": lambda: mc_workflow(0.005, 2000),
        "nve": lambda: nve_workflow(0.05, 2000),
    }
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "command": "benchmarks/ase_workflows.py " + " ".join(f"--only {w}" for w in args.only)}
    for name in args.only:
        row = {**jobs[name](), **meta}
        (out / f"{name}.json").write_text(json.dumps(row, indent=1, default=float))
        print(json.dumps({k: v for k, v in row.items() if k != "runs"}, default=float), flush=True)
    rows = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if p.stem in WORKFLOWS}
    (out / "summary.json").write_text(json.dumps(rows, indent=1, default=float))
    plot(rows, out / "ase_workflows.png")


def plot(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["workflow"] for r in rows.values()]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5), constrained_layout=True)
    y = np.arange(len(names))
    axes[0].barh(y, [r.get("served_fraction", 0.0) for r in rows.values()])
    axes[0].set_xlabel("calls answered by the surrogate")
    axes[1].barh(y, [r.get("target_calls_ratio", math.nan) for r in rows.values()], color="tab:red")
    axes[1].axvline(1.0, color="k", ls=":")
    axes[1].set_xlabel("target calls / target-only run")
    axes[2].barh(y, [r.get("true_over_bound", math.nan) for r in rows.values()], color="tab:green")
    axes[2].axvline(1.0, color="k", ls=":")
    axes[2].set_xlabel("true served error / bound (where checked)")
    for ax in axes:
        ax.set_yticks(y, names if ax is axes[0] else [""] * len(names))
        ax.invert_yaxis()
    fig.suptitle("ProximaCalculator(target=EMT()) in ASE workflows, against EMT alone")
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
