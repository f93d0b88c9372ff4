"""Learning curves with and without a GFN2-xTB baseline: training structures needed for 1 meV.

For each molecule a sample of structures comes from a Metropolis walk at 1000 K with 0.02 A
moves driven by GFN2-xTB itself (cheap, and as broad as the hot Monte Carlo runs of
``baseline_mc.py``), thinned evenly; the target labels every structure once; the same nested
random training subsets and the same held-out structures are learned as the target itself and
as target minus GFN2-xTB (:func:`ase_proxima.learning_curve.learning_curve`), with the default
SOAP model (which also weighs the baseline's own energy) and with its SOAP terms only.

    .venv/bin/python benchmarks/learning_curves.py            # methane and ethanol (a few minutes)
    .venv/bin/python benchmarks/learning_curves.py --only methane --forces
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

from ase.build import molecule

from ase_proxima.baseline import make_baseline
from ase_proxima.learning_curve import label, learning_curve, plot_learning_curves
from ase_proxima.surrogates.soap_ridge import SOAPBayesianRidge
from ase_proxima.targets import make_target
from ase_proxima.workflows.mc import MonteCarlo

OUT = Path(__file__).resolve().parent / "results" / "learning_curves"
CASES = {"methane": ("CH4", "pyscf:hf/6-31g*"), "ethanol": ("CH3CH2OH", "pyscf:hf/6-31g")}


def sample(formula: str, n: int, temperature: float, steps: int, seed: int = 0) -> list:
    """``n`` structures, evenly thinned from every trial of a GFN2-xTB Metropolis walk."""
    atoms = molecule(formula)
    atoms.calc = make_baseline("xtb:gfn2")
    trials = []
    mc = MonteCarlo(atoms, temperature_K=temperature, step_size=0.02, rng=seed)
    mc.attach(lambda: trials.append(mc.trial.copy()))
    mc.run(steps)
    stride = max(1, len(trials) // n)
    return trials[::stride][:n]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", choices=sorted(CASES))
    ap.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20, 40, 80, 160])
    ap.add_argument("--held-out", type=int, default=50)
    ap.add_argument("--temperature", type=float, default=1000.0)
    ap.add_argument("--walk", type=int, default=3000, help="steps of the xTB walk the sample is thinned from")
    ap.add_argument("--mae", type=float, default=0.001, help="held-out energy MAE to reach, eV")
    ap.add_argument("--forces", action="store_true", help="learn and score forces too")
    ap.add_argument("--seeds", type=int, default=3, help="random training/held-out splits per curve")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
              "energy_mae_goal": args.mae, "cases": {}}
    for name in args.only or list(CASES):
        formula, spec = CASES[name]
        images = sample(formula, max(args.sizes) + args.held_out, args.temperature, args.walk)
        props = ("energy", "forces") if args.forces else ("energy",)
        truth = label(make_target(spec), images, props, progress=True)
        base = make_baseline("xtb:gfn2")
        base_results = label(base, images, props)
        curves, out = {}, {}
        for seed in range(args.seeds):
            plain = learning_curve(images, truth, args.sizes, args.held_out, seed=seed)
            delta = learning_curve(images, truth, args.sizes, args.held_out, seed=seed, baseline=base,
                                   baseline_results=base_results)
            soap_only = learning_curve(images, truth, args.sizes, args.held_out, seed=seed, baseline=base,
                                       baseline_results=base_results,
                                       surrogate=SOAPBayesianRidge(baseline_feature=False))
            for key, c in (("target", plain), ("target - GFN2-xTB", delta),
                           ("target - GFN2-xTB, SOAP terms only", soap_only)):
                out.setdefault(key, []).append({**c.todict(), "structures_needed": c.structures_needed(args.mae)})
                if seed == 0:
                    curves[f"{spec} ({key})"] = c
        report["cases"][name] = {"target": spec, "structures": len(images), "curves": out}
        for key, runs in out.items():
            print(name, key, "needed", [r["structures_needed"] for r in runs],
                  "MAE meV at largest", [round(r["energy_mae"][-1] * 1000, 3) for r in runs], file=sys.stderr)
        plot_learning_curves(curves, args.out / f"{name}.png", title=f"{formula} {spec}, sample at "
                             f"{args.temperature:g} K", target_mae=args.mae)
    (args.out / "learning_curves.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
