"""What the run store costs: per call while a run goes on, and once when a run is reopened.

Side by side in one process, on the same work (a Metropolis walk of a Cu13 cluster with
ASE's EMT as the target, seeds fixed):

* **per call**: the calculator's own ``time_store`` (training rows, the log line, the state
  and model every ``checkpoint_every`` calls) over the calls, for several ``checkpoint_every``
  (1 is what earlier versions did: the state written and fsynced on every call), as a share
  of the calculator's whole time and against the target alone on the same structures;
* **reopening**: seconds to open a calculator on a store of N training rows (reading rows,
  state, model and log) and answer one call, against N; and the same for the stores of long
  runs (most calls served: a log much longer than the training set).

Writes ``benchmarks/results/store_cost/store_cost.json`` and ``store_cost.png``.

    .venv/bin/python benchmarks/store_cost.py [--calls 1000] [--rows 250 1000 1750 4000]

``--snap-refit 200 800`` measures only the first refit after reopening SNAP stores of that many
periodic cells, with the fit equations the store keeps and without them (``snap_refit.json``,
``snap_refit.png``).  ``--only-reopen`` runs the second part alone, with code that also runs on
earlier versions (to measure them the same way, run it with their tree first on ``PYTHONPATH``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from ase.calculators.emt import EMT
from ase.cluster import Icosahedron
from ase.units import kB

from ase_proxima import ProximaCalculator

OUT = Path(__file__).resolve().parent / "results" / "store_cost"


def walk(calc, calls: int, seed: int, step: float = 0.02, temperature: float = 300.0) -> list:
    """A Metropolis walk of Cu13 through ``calc``; returns the trial structures."""
    rng = np.random.default_rng(seed)
    current = Icosahedron("Cu", noshells=2, latticeconstant=3.61)
    current.calc = calc
    e_cur = current.get_potential_energy()
    trials = []
    for _ in range(calls - 1):
        trial = current.copy()
        trial.positions += rng.uniform(-step, step, trial.positions.shape)
        trial.calc = calc
        e = trial.get_potential_energy()
        trials.append(trial)
        if e <= e_cur or rng.random() < math.exp(-(e - e_cur) / (kB * temperature)):
            current, e_cur = trial, e
    return trials


def per_call(calls: int, every: list[int], seed: int) -> dict:
    rows = {}
    for k in every:
        folder = Path(tempfile.mkdtemp(prefix="proxima-store-cost-"))
        try:
            calc = ProximaCalculator(target=EMT(), error_bound=0.01, seed=seed, checkpoint_every=k,
                                     store=folder / "store")
            trials = walk(calc, calls, seed)
            calc.close()
            s = calc.stats
            target = EMT()
            t = time.perf_counter()
            for a in trials:
                target.get_potential_energy(a)
            target_alone = (time.perf_counter() - t) / len(trials)
            rows[k] = {"store_s_per_call": s["time_store"] / s["calls"], "total_s_per_call": s["time_total"] / s["calls"],
                       "store_share": s["time_store"] / s["time_total"], "target_alone_s_per_call": target_alone,
                       "store_over_target_alone": s["time_store"] / s["calls"] / target_alone,
                       "served_fraction": s["served_fraction"], "target_calls": s["target_calls"],
                       "state_size_bytes": (folder / "store" / "state.json").stat().st_size}
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return rows


def reopen(rows_wanted: list[int], seed: int) -> dict:
    """Seconds to reopen a store of N training rows and answer a call (a tight bound makes every
    call a target call, so N calls give N rows)."""
    out = {}
    for n in rows_wanted:
        folder = Path(tempfile.mkdtemp(prefix="proxima-reopen-"))
        try:
            calc = ProximaCalculator(target=EMT(), error_bound=1e-9, seed=seed, store=folder / "store")
            trials = walk(calc, n, seed)
            if hasattr(calc, "close"):
                calc.close()
            del calc
            t = time.perf_counter()
            again = ProximaCalculator(target=EMT(), error_bound=1e-9, seed=seed, store=folder / "store")
            opened = time.perf_counter() - t
            again.get_potential_energy(trials[-1])
            out[n] = {"rows": again.stats["training_size"], "open_s": opened,
                      "open_and_first_call_s": time.perf_counter() - t}
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return out


def reopen_long(calls_wanted: list[int], seed: int) -> dict:
    """Seconds to reopen the store of a long run (the default bound: most calls served, a log
    much longer than the training set) and answer a call."""
    out = {}
    for n in calls_wanted:
        folder = Path(tempfile.mkdtemp(prefix="proxima-reopen-long-"))
        try:
            calc = ProximaCalculator(target=EMT(), error_bound=0.01, seed=seed, store=folder / "store")
            trials = walk(calc, n, seed)
            if hasattr(calc, "close"):
                calc.close()
            del calc
            t = time.perf_counter()
            again = ProximaCalculator(target=EMT(), error_bound=0.01, seed=seed, store=folder / "store")
            opened = time.perf_counter() - t
            again.get_potential_energy(trials[-1])
            out[n] = {"calls": n, "rows": again.stats["training_size"], "open_s": opened,
                      "open_and_first_call_s": time.perf_counter() - t}
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return out


def snap_refit(rows_wanted: list[int], seed: int) -> dict:
    """The first refit after reopening a SNAP store of N periodic cells (108-atom Al, asap3
    target, a bound no answer meets so every call is a target call): the store as it is, whose
    kept fit equations are read back, against a copy without them (every structure described
    again, one LAMMPS pass each, as before they were kept)."""
    from ase.build import bulk
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.units import fs

    from ase_proxima.surrogates import SNAPEnsemble
    from ase_proxima.targets import make_target

    def calculator(store: Path) -> ProximaCalculator:
        return ProximaCalculator(target=make_target("asap3"), error_bound=1e-9, error_metric="forces_mean",
                                 surrogate=SNAPEnsemble(), cost_aware=False, seed=seed, store=store)

    out = {}
    for n in rows_wanted:
        folder = Path(tempfile.mkdtemp(prefix="proxima-snap-refit-"))
        try:
            atoms = bulk("Al", "fcc", a=3.9946, cubic=True).repeat((3, 3, 3))
            thermalize_momenta(atoms, temperature_K=1000, rng=np.random.default_rng(seed))
            calc = calculator(folder / "store")
            atoms.calc = calc
            Langevin(atoms, 2 * fs, temperature_K=1000, friction=0.02, fixcm=False,
                     rng=np.random.default_rng(seed + 1)).run(n - 1)
            calc.close()
            shutil.copytree(folder / "store", folder / "bare", ignore=shutil.ignore_patterns("equations"))
            row = {"atoms": len(atoms)}
            for label, path in (("kept_equations", folder / "store"), ("described_again", folder / "bare")):
                t = time.perf_counter()
                again = calculator(path)
                opened = time.perf_counter() - t
                again.training.fit(again.surrogate, again.uncertainty)  # the refit the run would make next
                row[label] = {"rows": again.training.total, "open_s": opened,
                              "open_and_refit_s": time.perf_counter() - t}
                again.close()
            row["ratio"] = row["described_again"]["open_and_refit_s"] / row["kept_equations"]["open_and_refit_s"]
            row["equations_bytes"] = sum(f.stat().st_size for f in (folder / "store" / "equations").iterdir())
            row["training_db_bytes"] = (folder / "store" / "training.db").stat().st_size
            out[n] = row
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return out


def plot_snap_refit(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = result["snap_refit"]
    n = sorted(data, key=int)
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for label, text in (("described_again", "every structure described again"),
                        ("kept_equations", "kept fit equations read back")):
        ax.plot([data[k][label]["rows"] for k in n], [data[k][label]["open_and_refit_s"] for k in n], marker="o",
                label=text)
    ax.set_xlabel("stored 108-atom Al cells (SNAP ensemble)")
    ax.set_ylabel("seconds to reopen and refit")
    ax.set_title("first refit after reopening a store (same machine)")
    ax.legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4), constrained_layout=True)
    per = result.get("per_call", {})
    if per:
        ks = sorted(per, key=int)
        axes[0].bar([str(k) for k in ks], [per[k]["store_over_target_alone"] for k in ks])
        axes[0].set_xlabel("checkpoint_every (calls between state writes)")
        axes[0].set_ylabel("store time per call / EMT call (Cu13)")
        axes[0].set_title("run store cost per call")
    for ax, key, xkey, xlabel in ((axes[1], "reopen", "rows", "training rows (every call a target call)"),
                                  (axes[2], "reopen_long_run", "calls", "calls of the run (most served)")):
        for label, data in (("this version", result.get(key)), ("earlier version", result.get(f"{key}_before"))):
            if data:
                n = sorted(data, key=int)
                ax.plot([int(x) for x in n], [data[x]["open_and_first_call_s"] for x in n], marker="o", label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds to reopen and answer one call")
        ax.set_title("reopening a store (same machine)")
        ax.legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--every", type=int, nargs="+", default=[1, 20, 100])
    ap.add_argument("--rows", type=int, nargs="+", default=[250, 1000, 1750, 4000])
    ap.add_argument("--long", type=int, nargs="+", default=[5000, 20000], help="calls of the long runs reopened")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only-reopen", action="store_true")
    ap.add_argument("--snap-refit", type=int, nargs="+", default=None, metavar="ROWS",
                    help="only measure the first SNAP refit after reopening stores of these many cells")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "store_cost", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "python": platform.python_version()},
              "command": " ".join(["benchmarks/store_cost.py", *os.sys.argv[1:]])}
    if args.snap_refit:
        result["snap_refit"] = snap_refit(args.snap_refit, args.seed)
        (out / "snap_refit.json").write_text(json.dumps(result, indent=1))
        plot_snap_refit(result, out / "snap_refit.png")
        print(json.dumps(result, indent=1))
        return
    if not args.only_reopen:
        result["per_call"] = per_call(args.calls, args.every, args.seed)
    result["reopen"] = reopen(args.rows, args.seed)
    result["reopen_long_run"] = reopen_long(args.long, args.seed)
    name = "reopen_only.json" if args.only_reopen else "store_cost.json"
    before = out / "reopen_before.json"
    if not args.only_reopen and before.exists():
        earlier = json.loads(before.read_text())
        result["reopen_before"] = earlier["reopen"]
        result["reopen_long_run_before"] = earlier.get("reopen_long_run")
    (out / name).write_text(json.dumps(result, indent=1))
    if not args.only_reopen:
        plot(result, out / "store_cost.png")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
