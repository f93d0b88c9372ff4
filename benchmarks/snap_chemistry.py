"""Which multi-element SNAP: explicit chemistry (neighbours' species resolved) or weighted densities?

For binary alloys of EMT metals (32-atom fcc cells, random 50/50 occupation, Vegard lattice
constant) and a molecule in a periodic box, Langevin MD with ASE's EMT gives frames: one
trajectory trains the ensemble's all-data fit (40 frames), another one (different seed,
different occupation) tests it (20 frames).  For each variant (chemistry x band limit): force
and per-atom energy errors on the test frames, the design-matrix width, and the time of a
prediction relative to the default (atomic-number weights, 2J=8; same process).

Writes ``benchmarks/results/snap_chemistry/snap_chemistry.json`` and ``.png``.

    .venv/bin/python benchmarks/snap_chemistry.py [--frames 60]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.data import reference_states
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta
from ase.units import fs

from ase_proxima.surrogates import SNAPEnsemble

OUT = Path(__file__).resolve().parent / "results" / "snap_chemistry"
ALLOYS = (("Cu", "Ni"), ("Au", "Ag"), ("Pt", "Al"))
VARIANTS = {"explicit, 2J=6": dict(chemistry="explicit", twojmax=6),
            "explicit, 2J=8": dict(chemistry="explicit", twojmax=8),
            "equal weights, 2J=8": dict(chemistry="weighted", twojmax=8, equal=True),
            "Z weights, 2J=6": dict(chemistry="weighted", twojmax=6),
            "Z weights, 2J=8 (default)": dict(chemistry="weighted", twojmax=8)}


def alloy(a: str, b: str, seed: int) -> Atoms:
    lattice = 0.5 * (reference_states[bulk(a).numbers[0]]["a"] + reference_states[bulk(b).numbers[0]]["a"])
    cell = bulk(a, "fcc", a=lattice, cubic=True).repeat(2)
    rng = np.random.default_rng(seed)
    cell.symbols[rng.permutation(len(cell))[: len(cell) // 2]] = b
    return cell


def boxed_molecule(seed: int) -> Atoms:
    m = molecule("CH3OH")
    m.center(vacuum=4.0)
    m.pbc = True
    m.rattle(0.02, seed=seed)
    return m


def frames(start: Atoms, n: int, temperature: float, seed: int, every: int = 4) -> list[tuple[Atoms, dict]]:
    atoms = start.copy()
    atoms.calc = EMT()
    thermalize_momenta(atoms, temperature_K=temperature, rng=np.random.default_rng(seed))
    md = Langevin(atoms, 2 * fs, temperature_K=temperature, friction=0.02, fixcm=False, rng=np.random.default_rng(seed))
    out = []
    for _ in range(n):
        md.run(every)
        res = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        if atoms.pbc.all():
            res["stress"] = atoms.get_stress()
        out.append((atoms.copy(), res))
    return out


def score(model: SNAPEnsemble, test: list[tuple[Atoms, dict]]) -> dict:
    f_err, e_err, times = [], [], []
    for atoms, ref in test:
        t = time.perf_counter()
        pred = model.predict(atoms, ["energy", "forces"]).results
        times.append(time.perf_counter() - t)
        f_err.append(np.mean(np.abs(pred["forces"] - ref["forces"])))
        e_err.append(abs(pred["energy"] - ref["energy"]) / len(atoms))
    return {"forces_mae": float(np.mean(f_err)), "energy_mae_per_atom": float(np.mean(e_err)),
            "predict_s": float(np.median(times)),
            "force_scale": float(np.mean([np.mean(np.abs(r["forces"])) for _, r in test]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--temperature", type=float, default=800.0)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    systems = {f"{a}{b} alloy": (alloy(a, b, 0), alloy(a, b, 1)) for a, b in ALLOYS}
    systems["CH3OH in a box"] = (boxed_molecule(0), boxed_molecule(1))
    rows = {}
    for name, (train_start, test_start) in systems.items():
        temperature = args.temperature if "alloy" in name else 300.0
        train = frames(train_start, args.frames * 2 // 3, temperature, seed=0)
        test = frames(test_start, args.frames // 3, temperature, seed=1)
        rows[name] = {}
        elements = sorted(set(train_start.get_chemical_symbols()))
        for variant, kw in VARIANTS.items():
            kw = dict(kw)
            if kw.pop("equal", False):
                kw["element_weights"] = dict.fromkeys(elements, 1.0)
            model = SNAPEnsemble(members=4, seed=0, **kw)
            model.fit([a for a, _ in train], [r for _, r in train])
            rows[name][variant] = {**score(model, test), "columns": int(model.coef_.shape[0]),
                                   "cutoff": model.cutoff_}
            print(name, variant, rows[name][variant], flush=True)
    result = {"benchmark": "snap_chemistry", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
              "command": "benchmarks/snap_chemistry.py", "frames": args.frames, "results": rows}
    for name, by in rows.items():
        for variant in by:
            by[variant]["time_over_default"] = by[variant]["predict_s"] / by["Z weights, 2J=8 (default)"]["predict_s"]
    (out / "snap_chemistry.json").write_text(json.dumps(result, indent=1))
    plot(rows, out / "snap_chemistry.png")


def plot(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    variants = list(VARIANTS)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), constrained_layout=True)
    width = 0.8 / len(variants)
    for k, v in enumerate(variants):
        x = np.arange(len(names)) + k * width
        axes[0].bar(x, [rows[n][v]["forces_mae"] / rows[n][v]["force_scale"] for n in names], width, label=v)
        axes[1].bar(x, [1e3 * rows[n][v]["energy_mae_per_atom"] for n in names], width, label=v)
    for ax, label in ((axes[0], "force MAE / mean |force| (held-out MD)"), (axes[1], "energy MAE (meV/atom)")):
        ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names)
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.suptitle("Multi-element SNAP ensembles on EMT data: explicit chemistry vs weighted densities")
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
