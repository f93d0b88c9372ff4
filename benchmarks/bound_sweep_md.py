"""Does the controller hold the bound?  Cu13 Langevin MD with an EMT target, over bounds and seeds.

For each (metric, bound, seed): ProximaCalculator runs the MD; on every step the
surrogate answered, the served forces are checked against EMT (ground truth,
not the calculator's own estimate).  Reported per run: target calls saved,
served fraction, true served error / bound, audited estimate and its standard
error.  Thesis analogue: figure 3.11 (achieved error / bound vs bound).

Writes ``benchmarks/results/bound_sweep_md.json`` and ``.png``.

    .venv/bin/python benchmarks/bound_sweep_md.py [--steps 1000] [--seeds 3]
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
from ase.calculators.emt import EMT
from ase.cluster import Icosahedron
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta
from ase.units import fs
from tqdm import tqdm

from ase_proxima import ProximaCalculator
from ase_proxima.metrics import compute_error
from ase_proxima.validation import ServedTruth

BOUNDS = {"forces_max": (0.05, 0.1, 0.2, 0.4), "forces_mean": (0.01, 0.02, 0.04, 0.08)}


def run_one(metric: str, bound: float, seed: int, steps: int, temperature: float) -> dict:
    atoms = Icosahedron("Cu", noshells=2, latticeconstant=3.61)
    calc = ProximaCalculator(target=EMT(), error_bound=bound, error_metric=metric, seed=seed)
    atoms.calc = calc
    thermalize_momenta(atoms, temperature_K=temperature, rng=np.random.default_rng(seed))
    dyn = Langevin(atoms, 2 * fs, temperature_K=temperature, friction=0.02, fixcm=False,
                   rng=np.random.default_rng(seed + 1000))
    reference = EMT()
    truth = ServedTruth(calc, lambda: compute_error(metric, {"forces": atoms.get_forces()},
                                                    {"forces": reference.get_forces(atoms)}, len(atoms)))
    dyn.attach(truth)
    t = time.perf_counter()
    dyn.run(steps)
    wall = time.perf_counter() - t
    s = calc.stats
    true_mae = truth.mean
    return {
        "metric": metric,
        "bound": bound,
        "seed": seed,
        "calls": s["calls"],
        "target_calls": s["target_calls"],
        "target_calls_saved_fraction": 1 - s["target_calls"] / s["calls"],
        "served_fraction": s["served_fraction"],
        "served_error_true": true_mae,
        "true_over_bound": true_mae / bound,
        "served_error_audit": s["served_error"],
        "served_error_audit_se": s["served_error_se"],
        "oscillations": s["oscillations"],
        "wall_s": wall,
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for metric, colour in (("forces_max", "tab:red"), ("forces_mean", "tab:blue")):
        sel = [r for r in rows if r["metric"] == metric]
        bounds = sorted({r["bound"] for r in sel})
        for ax, key in ((axes[0], "true_over_bound"), (axes[1], "served_fraction")):
            vals = [[r[key] for r in sel if r["bound"] == b and np.isfinite(r[key])] for b in bounds]
            keep = [i for i, v in enumerate(vals) if v]
            ax.errorbar([bounds[i] for i in keep], [np.mean(vals[i]) for i in keep],
                        yerr=[np.std(vals[i]) for i in keep], marker="o", color=colour, label=metric, capsize=3)
    axes[0].axhline(1.0, color="k", ls=":")
    axes[0].set_ylabel("served error (true) / bound")
    axes[1].set_ylabel("fraction of calls answered by the surrogate")
    all_bounds = sorted({r["bound"] for r in rows})
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(all_bounds, [f"{b:g}" for b in all_bounds], rotation=45)
        ax.minorticks_off()
        ax.set_xlabel("bound (eV/A)")
        ax.legend()
    fig.suptitle("Cu13 Langevin MD at 300 K, EMT target: mean over seeds, error bars = std")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--temperature", type=float, default=300.0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bound_sweep_md"))
    ap.add_argument("--plot-only", action="store_true", help="redraw the PNG from the JSON of an earlier run")
    args = ap.parse_args()
    out = Path(args.out)
    if args.plot_only:
        plot(json.loads(out.with_suffix(".json").read_text())["runs"], out.with_suffix(".png"))
        return
    jobs = [(m, b, s) for m, bs in BOUNDS.items() for b in bs for s in range(args.seeds)]
    rows = [run_one(m, b, s, args.steps, args.temperature) for m, b, s in tqdm(jobs, desc="runs")]
    result = {
        "benchmark": "bound_sweep_md",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "steps": args.steps,
        "temperature_K": args.temperature,
        "runs": rows,
        "bound_held_in_runs": sum(r["true_over_bound"] <= 1.0 for r in rows),
        "runs_with_no_served_step": sum(not np.isfinite(r["true_over_bound"]) for r in rows),
        "total_runs": len(rows),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    plot(rows, out.with_suffix(".png"))
    for r in rows:
        print(f"{r['metric']:11s} bound {r['bound']:<5} seed {r['seed']}: served {r['served_fraction']:.2f} "
              f"true/bound {r['true_over_bound']:.2f} audit {r['served_error_audit']:.4f}"
              f"+-{r['served_error_audit_se']:.4f}")
    print(f"bound held in {result['bound_held_in_runs']}/{result['total_runs']} runs "
          f"({result['runs_with_no_served_step']} runs served nothing: bound too tight for this surrogate)")


if __name__ == "__main__":
    main()
