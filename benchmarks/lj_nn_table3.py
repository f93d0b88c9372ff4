"""The paper's Table III (the LJ pair term replaced by small networks), plus NVE drift and throughput.

Phases (each writes into ``--out``; ``summary.json`` gathers them with machine and date):

1. **Table III.**  Every topology of the paper, trained on the pair energy as a function of
   ``sigma / r`` (reduced units), for two versions of the region:
   ``branch``: LAMMPS ``lj/cut``'s region with its cut-off branch (zero at r >= 2.5 sigma), inputs
   drawn uniformly in volume from 0.85 to 2.8 sigma (cut-off plus the 0.3 sigma skin: the pairs
   the loop visits); ``smooth``: the branch-free term ``lj_nn`` ships (0.85-3.0 sigma; the cut-off
   is applied by the neighbour list).  Columns as in the paper: training time, steps, L2 loss,
   learning rate, inference time per pair (numpy), average absolute error (in epsilon) on 20,000
   held-out pairs.  Steps and learning rates are the paper's (10,000; 0.005 for one hidden layer,
   0.01 for two); we add an L-BFGS polish, stated in the JSON.
2. **NVE drift.**  in.melt's system: 4000 atoms, fcc at reduced density 0.8442, velocities at
   T* = 3.0, rc = 2.5 sigma, skin 0.3 sigma, dt = 0.005 tau, ASE ``VelocityVerlet``, with the
   shipped 1x3x1 network and with the analytic term in the same compiled loop.  Drift is the
   slope of total energy per atom (epsilon / tau) after the first tenth of the run.
3. **Throughput** on that system, side by side: ``lj_nn`` network and analytic in ASE MD,
   ASE's ``LennardJones`` (a few steps: it is slow), and LAMMPS ``lj/cut`` running in.melt natively.

Run: ``.venv/bin/python benchmarks/lj_nn_table3.py`` (``--quick`` for a smoke run).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from ase import units
from ase.build import bulk
from ase.calculators.lj import LennardJones
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet

from nnapprox import approximate
from ase_proxima.lammps_support import load_lammps, quiet_stderr
from lj_nn import LennardJonesNN
from lj_nn.pretrain import PAPER_TOPOLOGIES
from lj_nn.reference import lj_pair_energy, lj_pair_energy_cut, sample_pair_distances

ROOT = Path(__file__).resolve().parents[1]
EPS, SIG, MASS = 0.0104, 3.4, 39.948  # argon: eV, Angstrom, amu
TAU = SIG * np.sqrt(MASS / EPS)  # ASE time units
PAPER = {"1x3x1": 0.00261, "1x5x1": 0.0036, "1x8x1": 0.0023, "1x3x2x1": 0.0028, "1x3x5x1": 0.0022,
         "1x5x8x1": 0.0015}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------- Table III
def table3(n_train: int, steps: int, refine: int, restarts: int) -> dict:
    regions = {
        "branch": (lambda x: lj_pair_energy_cut(1.0 / x[:, 0], 2.5), (0.85, 2.8)),
        "smooth": (lambda x: lj_pair_energy(1.0 / x[:, 0]), (0.85, 3.0)),
    }
    out = {}
    for name, (region, (lo, hi)) in regions.items():
        rows = []
        for topo in PAPER_TOPOLOGIES:
            lr = 0.005 if topo.count("x") == 2 else 0.01
            row = approximate(region, lambda rng, n: 1.0 / sample_pair_distances(rng, n, lo, hi)[:, None], [topo],
                              n_train=n_train, n_test=20_000, steps=steps, learning_rate=lr, refine_steps=refine,
                              restarts=restarts)[0]
            rows.append({"topology": topo, "train_time_s": row.train_time_s, "steps": row.steps,
                         "l2_loss": row.l2_loss, "learning_rate": row.learning_rate,
                         "network_ns_per_pair": row.network_s_per_eval * 1e9,
                         "original_ns_per_pair": row.original_s_per_eval * 1e9,
                         "mean_abs_error": row.mean_abs_error, "paper_mean_abs_error": PAPER[topo]})
            print(f"table3 {name} {topo}: mean abs error {row.mean_abs_error:.5f} (paper {PAPER[topo]}), "
                  f"{row.train_time_s:.0f} s", flush=True)
        out[name] = {"r_range_sigma": [lo, hi], "rows": rows}
    out["protocol"] = {"input": "sigma / r", "sampling": "uniform in volume", "n_train": n_train,
                       "n_test": 20_000, "adam_steps": steps, "lbfgs_refine_steps": refine, "restarts": restarts}
    return out


# ------------------------------------------------------------- the in.melt system
def melt_system(cells: int, seed: int = 0):
    a = (4.0 / 0.8442) ** (1.0 / 3.0) * SIG
    atoms = bulk("Ar", "fcc", a=a, cubic=True).repeat(cells)
    atoms.set_masses([MASS] * len(atoms))
    thermalize_momenta(atoms, temperature_K=3.0 * EPS / units.kB, rng=np.random.default_rng(seed))
    Stationary(atoms)
    return atoms


def nve(atoms, calc, steps: int, record_every: int = 10) -> dict:
    atoms = atoms.copy()
    atoms.calc = calc
    md = VelocityVerlet(atoms, timestep=0.005 * TAU)
    t, e = [], []

    def rec():
        t.append(md.nsteps * 0.005)
        e.append(atoms.get_total_energy() / len(atoms) / EPS)

    md.attach(rec, interval=record_every)
    t0 = time.perf_counter()
    md.run(steps)
    wall = time.perf_counter() - t0
    t, e = np.array(t), np.array(e)
    keep = t >= 0.1 * t[-1]
    coef, cov = np.polyfit(t[keep], e[keep], 1, cov=True)
    slope = float(coef[0])
    return {"steps": steps, "wall_s": wall, "atom_steps_per_s": len(atoms) * steps / wall,
            "drift_eps_per_tau": slope, "drift_se": float(np.sqrt(cov[0, 0])), "abs_drift_eps_per_tau": abs(slope),
            "energy_std_eps": float(e[keep].std()), "final_T_reduced": atoms.get_temperature() * units.kB / EPS,
            "list_builds": calc.neighbours.builds if hasattr(calc, "neighbours") else None,
            "t_tau": t.tolist(), "e_eps": e.tolist()}


def lammps_melt(cells: int, steps: int) -> dict:
    """in.melt itself in LAMMPS (reduced units), timed over ``steps`` after a warm-up."""
    lammps = load_lammps()
    with quiet_stderr():
        lmp = lammps.lammps(cmdargs=["-screen", "none", "-log", "none", "-nocite"])
    for cmd in ["units lj", "atom_style atomic", "lattice fcc 0.8442", f"region box block 0 {cells} 0 {cells} 0 {cells}",
                "create_box 1 box", "create_atoms 1 box", "mass 1 1.0", "velocity all create 3.0 87287 loop geom",
                "pair_style lj/cut 2.5", "pair_coeff 1 1 1.0 1.0 2.5", "neighbor 0.3 bin",
                "neigh_modify every 20 delay 0 check no", "fix 1 all nve", "timestep 0.005", "run 100"]:
        lmp.command(cmd)
    n = lmp.get_natoms()
    t0 = time.perf_counter()
    lmp.command(f"run {steps}")
    wall = time.perf_counter() - t0
    lmp.close()
    return {"atoms": n, "steps": steps, "wall_s": wall, "atom_steps_per_s": n * steps / wall}


def ase_lj_rate(atoms, steps: int) -> dict:
    atoms = atoms.copy()
    atoms.calc = LennardJones(epsilon=EPS, sigma=SIG, rc=2.5 * SIG)
    md = VelocityVerlet(atoms, timestep=0.005 * TAU)
    md.run(1)
    t0 = time.perf_counter()
    md.run(steps)
    wall = time.perf_counter() - t0
    return {"steps": steps, "wall_s": wall, "atom_steps_per_s": len(atoms) * steps / wall}


def plot_drift(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, r in results.items():
        e = np.array(r["e_eps"])
        ax.plot(r["t_tau"], e - e[0], label=f"{name}: drift {r['drift_eps_per_tau']:.1e} eps/tau")
    ax.set_xlabel("time (tau)")
    ax.set_ylabel("E_total - E_0 (epsilon per atom)")
    ax.set_title("NVE, 4000-atom LJ liquid (in.melt), dt = 0.005 tau")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "lj_nn"))
    p.add_argument("--cells", type=int, default=10, help="fcc cells per side (10: 4000 atoms)")
    p.add_argument("--nve-steps", type=int, default=2000)
    p.add_argument("--lammps-steps", type=int, default=2000)
    p.add_argument("--ase-lj-steps", type=int, default=3)
    p.add_argument("--train", type=int, default=20_000)
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--refine", type=int, default=2_000)
    p.add_argument("--restarts", type=int, default=3)
    p.add_argument("--skip-table", action="store_true")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.cells, args.nve_steps, args.lammps_steps, args.ase_lj_steps = 5, 200, 200, 1
        args.train, args.steps, args.refine, args.restarts = 4000, 500, 100, 1
        args.out = str(ROOT / "benchmarks" / "results" / "lj_nn_quick")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"command": " ".join(sys.argv), "machine": platform.platform(), "cpu": platform.processor(),
               "cpus": os.cpu_count(), "date": _now()}
    table_path = out / "table3.json"
    if not args.skip_table or not table_path.exists():
        table_path.write_text(json.dumps(table3(args.train, args.steps, args.refine, args.restarts), indent=1))
    summary["table3"] = json.loads(table_path.read_text())

    atoms = melt_system(args.cells)
    summary["atoms"] = len(atoms)
    # warm the compiled loops before anything is timed
    for pair in ("network", "analytic"):
        w = atoms.copy()
        w.calc = LennardJonesNN(EPS, SIG, rc=2.5 * SIG, pair=pair)
        w.get_forces()
    runs = {}
    for name, pair in (("lj_nn 1x3x1", "network"), ("analytic, same loop", "analytic")):
        runs[name] = nve(atoms, LennardJonesNN(EPS, SIG, rc=2.5 * SIG, pair=pair), args.nve_steps)
        print(f"{name}: drift {runs[name]['drift_eps_per_tau']:.2e} +- {runs[name]['drift_se']:.1e} eps/tau, "
              f"{runs[name]['atom_steps_per_s']:.3g} atom-steps/s", flush=True)
    plot_drift(runs, out / "nve_drift.png")
    lmp = lammps_melt(args.cells, args.lammps_steps)
    ase = ase_lj_rate(atoms, args.ase_lj_steps)
    net, ana = runs["lj_nn 1x3x1"], runs["analytic, same loop"]
    summary["nve"] = {k: {kk: vv for kk, vv in v.items() if kk not in ("t_tau", "e_eps")} for k, v in runs.items()}
    summary["throughput_atom_steps_per_s"] = {"lj_nn 1x3x1 (ASE VelocityVerlet)": net["atom_steps_per_s"],
                                              "analytic, same loop (ASE VelocityVerlet)": ana["atom_steps_per_s"],
                                              "ASE LennardJones (ASE VelocityVerlet)": ase["atom_steps_per_s"],
                                              "LAMMPS lj/cut (in.melt, native)": lmp["atom_steps_per_s"]}
    summary["ratios"] = {
        "lj_nn_vs_ase_lennardjones": net["atom_steps_per_s"] / ase["atom_steps_per_s"],
        "lj_nn_vs_lammps": net["atom_steps_per_s"] / lmp["atom_steps_per_s"],
        "network_vs_analytic_same_engine_speed": net["atom_steps_per_s"] / ana["atom_steps_per_s"],
        "drift_network_over_analytic": net["abs_drift_eps_per_tau"] / max(ana["abs_drift_eps_per_tau"], 1e-300),
        "energy_fluctuation_network_over_analytic": net["energy_std_eps"] / ana["energy_std_eps"],
    }
    # drift slopes of a conserving integrator are noise around zero: say whether they differ at all
    summary["drift_difference_in_se"] = abs(net["drift_eps_per_tau"] - ana["drift_eps_per_tau"]) / float(
        np.hypot(net["drift_se"], ana["drift_se"]))
    summary["lammps"] = lmp
    summary["ase_lennardjones"] = ase
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary["ratios"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
