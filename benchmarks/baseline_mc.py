"""A cheap baseline under the surrogate, side by side: Monte Carlo with the target alone, with
Proxima learning the target, and with Proxima learning target minus GFN2-xTB.

The three walks start from the same structure with the same seed and advance in turns of 25
steps (which goes first rotating, so the host's drifting speed is shared), in one process;
speed-up is target-alone wall time over each Proxima walk's, every cost inside (the baseline's
calls on served and training structures, fits, audits).  Every served answer is checked
against an independent target instance afterwards (``--check`` caps how many, drawn at random,
where the target is slow), outside the timed part.

Cases (``--only``):

* ``methane``: methane HF/6-31G* at 0.02 A moves, 100, 300, 600 and 1000 K, bound 2 meV;
* ``ethanol``: ethanol HF/6-31G at 0.02 A moves, 500 and 1000 K, bound 2 meV.

Results go to ``<case>.json`` (``<case>_<bound>meV.json`` at another ``--bound``) and one plot of
every file there, ``baseline_mc.png``.

    .venv/bin/python benchmarks/baseline_mc.py --only methane              # about 4 minutes on 2 cores
    .venv/bin/python benchmarks/baseline_mc.py --only ethanol --steps 500 --bound 0.01
    .venv/bin/python benchmarks/baseline_mc.py --only methane --temperatures 1000 --seeds 4   # -> methane_4seeds.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from ase.build import molecule
from cost import _mc_walks, _served_errors, _warm

from ase_proxima import ProximaCalculator
from ase_proxima.baseline import make_baseline
from ase_proxima.targets import make_target

OUT = Path(__file__).resolve().parent / "results" / "baseline_mc"

CASES = {
    "methane": ("CH4", "pyscf:hf/6-31g*", (100.0, 300.0, 600.0, 1000.0)),
    "ethanol": ("CH3CH2OH", "pyscf:hf/6-31g", (500.0, 1000.0)),
}
SIDES = ("proxima", "proxima+xtb")


def run_case(name: str, formula: str, spec: str, temperature: float, steps: int, bound: float, step_size: float,
             check: int | None, seed: int = 1, settings: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The three walks side by side; one row per Proxima walk (``settings``: calculator settings)."""
    start = molecule(formula)
    settings = settings or {}
    calcs = {"proxima": ProximaCalculator(target=make_target(spec), error_bound=bound, seed=0, **settings),
             "proxima+xtb": ProximaCalculator(target=make_target(spec), error_bound=bound, seed=0,
                                              baseline=make_baseline("xtb:gfn2"), **settings)}
    times, served = _mc_walks(start, spec, calcs, steps, temperature, step_size, seed)
    rows = []
    for side, calc in calcs.items():
        kept = served[side]
        errors = _served_errors(kept, spec, check)
        s = calc.stats
        rows.append({"case": name, "molecule": formula, "target": spec, "temperature": temperature, "side": side,
                     "seed": seed,
                     "steps": steps, "bound": bound, "step_size": step_size,
                     "speedup": times["target"] / times[side], "t_target_alone": times["target"],
                     "t_proxima": times[side], "served_fraction": s["served_fraction"],
                     "target_calls": s["target_calls"], "audits": s["audits"], "fits": s["fits"],
                     "baseline_calls": s.get("baseline_calls", 0), "time_baseline": s["time_baseline"],
                     "time_target": s["time_target"], "time_training": s["time_training"],
                     "cost_target": s["cost_target"], "cost_surrogate": s["cost_surrogate"],
                     "served_error_estimate": s["served_error"], "served_error_upper": s["served_error_upper"],
                     "true_served_error": float(errors.mean()) if errors.size else math.nan,
                     "true_over_bound": float(errors.mean()) / bound if errors.size else math.nan,
                     "served_checked": int(errors.size), "served": len(kept), "settings": settings,
                     "economy": s["economy"], "idle_reason": s["idle_reason"], "idle_calls": s["idle_calls"],
                     "target_threads": s["target_threads"], "thread_switches": s["thread_switches"]})
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()
               if k in ("case", "temperature", "side", "speedup", "served_fraction", "target_calls",
                        "true_over_bound", "served_checked")}, file=sys.stderr)
    return rows


def harmonic(values: list[float]) -> float:
    return len(values) / sum(1.0 / v for v in values) if values and all(v > 0 for v in values) else math.nan


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for r in rows:  # one panel row per case, bound, walk length and settings: never mixed in a median
        r["panel"] = (f"{r['case']}: {r['molecule']} {r['target']}, {r['step_size']} A, {r['bound'] * 1000:g} meV, "
                      f"{r['steps']} steps" + (f", {json.dumps(r['settings'])}" if r.get("settings") else ""))
    cases = sorted({r["panel"] for r in rows})
    fig, axes = plt.subplots(len(cases), 3, figsize=(14, 4 * len(cases)), squeeze=False)
    for row_axes, case in zip(axes, cases):
        for side, style in zip(SIDES, ("o--", "s-")):
            mine = [r for r in rows if r["panel"] == case and r["side"] == side]
            t = sorted({r["temperature"] for r in mine})
            for ax, key in zip(row_axes, ("speedup", "served_fraction", "true_over_bound")):
                line = ax.plot(t, [np.median([r[key] for r in mine if r["temperature"] == x]) for x in t], style,
                               label=side)[0]
                if len(mine) > len(t):  # several walks per temperature: each one, the line their median
                    ax.plot([r["temperature"] for r in mine], [r[key] for r in mine], ".", color=line.get_color(),
                            alpha=0.5)
        row_axes[0].axhline(1.0, color="k", lw=0.8)
        row_axes[0].set_ylabel("speed-up over the target alone")
        row_axes[1].set_ylabel("served share")
        row_axes[2].axhline(1.0, color="C3", lw=0.8)
        row_axes[2].set_ylabel("true served error / bound")
        for ax in row_axes:
            ax.set_xlabel("temperature (K)")
            ax.set_title(case, fontsize=8)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", choices=sorted(CASES), help="cases to run (default all)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--bound", type=float, default=0.002, help="eV")
    ap.add_argument("--step-size", type=float, default=0.02, help="A")
    ap.add_argument("--temperatures", type=float, nargs="*", help="K (default: each case's own)")
    ap.add_argument("--check", type=int, default=None,
                    help="served answers checked per walk, at random (default: every one for methane, 200 else)")
    ap.add_argument("--seeds", type=int, default=1,
                    help="walks per temperature, seeds 1..N (the Monte Carlo walk's; a hot walk's served share "
                         "depends on where it goes)")
    ap.add_argument("--settings", default="{}", help="JSON of calculator settings for both Proxima walks")
    ap.add_argument("--tag", default="", help="added to the result file's name")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    settings = json.loads(args.settings)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or list(CASES):
        formula, spec, temps = CASES[name]
        _warm(spec, molecule(formula))
        check = args.check if args.check is not None else (None if name == "methane" else 200)
        rows = []
        for t in args.temperatures or temps:
            for seed in range(1, args.seeds + 1):
                rows.extend(run_case(name, formula, spec, t, args.steps, args.bound, args.step_size, check,
                                     seed=seed, settings=settings))
        summary = {side: {"harmonic_mean_speedup": harmonic([r["speedup"] for r in rows if r["side"] == side]),
                          "worst_true_over_bound": max(r["true_over_bound"] for r in rows if r["side"] == side),
                          "speedup_by_temperature": {
                              str(t): [r["speedup"] for r in rows if r["side"] == side and r["temperature"] == t]
                              for t in sorted({r["temperature"] for r in rows})}}
                   for side in SIDES}
        report = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                              "cpus": os.cpu_count(), "python": platform.python_version()},
                  "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
                  "thread_settings": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
                  "summary": summary, "rows": rows}
        stem = (name if args.bound == 0.002 else f"{name}_{args.bound * 1000:g}meV") + args.tag
        stem += f"_{args.seeds}seeds" if args.seeds > 1 else ""
        (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1, default=float))
        print(name, json.dumps(summary), file=sys.stderr)
    plot_all(args.out)


def plot_all(out: Path) -> None:
    """``baseline_mc.png`` from the current result files in ``out`` (each case, bound and setting;
    the runs of older code, kept as ``*_before_*`` or dated files, are left out)."""
    every = []
    for f in sorted(out.glob("*.json")):
        if re.search(r"before|\d{4}-\d\d-\d\d|consulting|without", f.stem):
            continue
        for r in json.loads(f.read_text()).get("rows", []):
            every.append({**r, "case": f.stem.replace("_", " ")})
    plot(every, out / "baseline_mc.png")


if __name__ == "__main__":
    main()
