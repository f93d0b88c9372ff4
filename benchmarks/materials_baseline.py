"""A universal machine-learned potential as the baseline for periodic cells: what does it buy?

CHGNet and SevenNet-0 (their weights ship in the ``chgnet`` and ``sevenn`` wheels) under the EMT
target of the SLUSCHI aluminium set-up and of a bulk alloy: the held-out force error of the SNAP
ensemble against training size, learning EMT itself and learning EMT minus the potential, on
structures thinned from an EMT Langevin run near the melting point; and the cost per call of
each.  The baseline is kept as a default only if it wins on measured cost at equal error.

    .venv/bin/pip install 'ase-proxima[materials]'    # not in the default install: see the README
    .venv/bin/python benchmarks/materials_baseline.py    # about 5 minutes a potential on 2 cores
    .venv/bin/python benchmarks/materials_baseline.py --potentials sevennet   # -> materials_baseline_sevennet.json
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
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.units import fs

from ase_proxima.learning_curve import label, learning_curve, plot_learning_curves
from ase_proxima.surrogates import SNAPEnsemble

OUT = Path(__file__).resolve().parent / "results" / "materials_baseline"


def cells() -> dict:
    al = bulk("Al", "fcc", a=4.05, cubic=True).repeat((3, 3, 3))  # the SLUSCHI lattice, 108 atoms
    alloy = bulk("Cu", "fcc", a=3.75, cubic=True).repeat((3, 3, 3))  # Cu3Au-like, 108 atoms
    alloy.symbols[::4] = "Au"
    return {"Al": (al, 950.0), "Cu3Au": (alloy, 900.0)}


def frames(start, temperature: float, n: int, seed: int = 0) -> list:
    atoms = start.copy()
    atoms.calc = EMT()
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=np.random.default_rng(seed))
    md = Langevin(atoms, 4 * fs, temperature_K=temperature, friction=0.02, rng=np.random.default_rng(seed + 1))
    out = []
    md.attach(lambda: out.append(atoms.copy()), interval=10)
    md.run(10 * n)
    return out[-n:]


def seconds_per_call(calc, atoms, calls: int = 3) -> float:
    a = atoms.copy()
    a.calc = calc
    a.get_forces()
    t = time.perf_counter()
    for i in range(calls):
        a.positions[0, 0] += 0.01
        a.get_forces()
    return (time.perf_counter() - t) / calls


def potential(name: str):
    """The universal potential ``name`` on the CPU, as an ASE calculator."""
    if name == "chgnet":
        from chgnet.model.dynamics import CHGNetCalculator

        return "CHGNet", CHGNetCalculator(use_device="cpu", verbose=False)
    from sevenn.calculator import SevenNetCalculator

    return "SevenNet-0", SevenNetCalculator(model="7net-0", device="cpu")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20, 40])
    ap.add_argument("--held-out", type=int, default=20)
    ap.add_argument("--potentials", nargs="+", choices=("chgnet", "sevennet"), default=["chgnet", "sevennet"])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    potentials = dict(potential(p) for p in args.potentials)
    report = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
              "thread_settings": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS",)}, "cases": {}}
    for name, (start, temperature) in cells().items():
        images = frames(start, temperature, max(args.sizes) + args.held_out)
        props = ("energy", "forces", "stress")
        truth = label(EMT(), images, props)
        curves = {"EMT (SNAP learns it)": learning_curve(images, truth, args.sizes, args.held_out,
                                                         surrogate=SNAPEnsemble())}
        costs = {"emt_s": seconds_per_call(EMT(), images[0])}
        for label_, calc in potentials.items():
            base = label(calc, images, props, progress=True)
            curves[f"EMT - {label_}"] = learning_curve(images, truth, args.sizes, args.held_out,
                                                       surrogate=SNAPEnsemble(), baseline=calc, baseline_results=base)
            costs[f"{label_}_s"] = seconds_per_call(calc, images[0])
        report["cases"][name] = {"atoms": len(start), "temperature": temperature,
                                 "curves": {k: c.todict() for k, c in curves.items()}, "cost_per_call": costs,
                                 **{f"{k}_over_emt": costs[f"{k}_s"] / costs["emt_s"] for k in potentials}}
        for k, c in curves.items():
            print(name, k, "force MAE", [round(f, 4) for f in c.forces_mae], file=sys.stderr)
        print(name, costs, file=sys.stderr)
        suffix = "" if sorted(args.potentials) == ["chgnet", "sevennet"] else "_" + "_".join(args.potentials)
        plot_learning_curves(curves, args.out / f"{name}{suffix}.png", title=f"{name} {len(start)} atoms, EMT MD at "
                             f"{temperature:g} K")
    both = sorted(args.potentials) == ["chgnet", "sevennet"]
    stem = "materials_baseline" if both else "materials_baseline_" + "_".join(args.potentials)
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
