"""Melting point of EMT aluminium from SLUSCHI coexistence runs at several temperatures.

    .venv/bin/python benchmarks/sluschi_melting_point.py            # asap3 target, 5 temperatures

For each temperature: one half-molten start cell, then ``--runs`` coexistence runs
with the target alone; the liquid counts are fitted with SLUSCHI's logistic
likelihood (:func:`ase_proxima.workflows.sluschi.fit_melting_point`).  No published
melting point exists for ASE's or ASAP's EMT aluminium: this is our own figure, for
this cell size and run length.  Writes ``summary.json`` and ``liquid_fraction.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from ase import units  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ase_proxima.targets import make_target  # noqa: E402
from ase_proxima.workflows.sluschi import (  # noqa: E402
    Coexistence,
    CoexistenceConfig,
    fit_melting_point,
    liquid_ratio,
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sluschi_melting_point"))
    p.add_argument("--target", default="asap3")
    p.add_argument("--temperatures", type=float, nargs="+", default=[890.0, 910.0, 930.0, 950.0, 970.0])
    p.add_argument("--size", type=int, nargs=3, default=(3, 3, 3))
    p.add_argument("--run-steps", type=int, default=1500)
    p.add_argument("--runs", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out)
    counts = []
    for temp in args.temperatures:
        config = CoexistenceConfig(size=tuple(args.size), temperature=temp, run_steps=args.run_steps, runs=args.runs,
                                   seed=args.seed)
        outcomes = Coexistence(config, make_target(args.target), out / f"T{temp:g}").run()
        labels = [o.label for o in outcomes]
        ratio, ratio_se = liquid_ratio(labels)
        counts.append({"temperature": temp, "runs": len(labels), "liquid": labels.count("liquid"),
                       "liquid_ratio": ratio, "liquid_ratio_se": ratio_se,
                       "solid": labels.count("solid"), "undecided": labels.count("undecided"),
                       "structure_liquid": sum(o.structure_label == "liquid" for o in outcomes)})
        print(counts[-1], flush=True)
    decided = [c for c in counts if c["liquid"] + c["solid"] > 0]
    fit = fit_melting_point([c["temperature"] for c in decided], [c["liquid"] for c in decided],
                            [c["liquid"] + c["solid"] for c in decided])
    summary = {"benchmark": "sluschi_melting_point", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": platform.platform(), "command": " ".join(sys.argv), "target": args.target,
               "atoms": 2 * 4 * int(np.prod(args.size)), "run_steps": args.run_steps, "counts": counts, "fit": fit,
               "note": "our own figure for this cell and run length; no published EMT-Al melting point exists"}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(fit, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.array([c["temperature"] for c in counts])
    frac = np.array([c["liquid_ratio"] for c in counts])
    err = np.array([c["liquid_ratio_se"] for c in counts])
    grid = np.linspace(t.min() - 20, t.max() + 20, 200)
    model = 1 / (1 + np.exp(fit["g"] * (fit["Tm"] - grid) / (2 * units.kB * grid * fit["Tm"])))
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.errorbar(t, frac, yerr=err, fmt="o", color="k", label=f"{args.target} EMT, {len(counts)} temperatures")
    ax.plot(grid, model, color="tab:red", label=f"logistic fit: Tm = {fit['Tm']:.0f} +- {fit['Tm_se']:.0f} K")
    if math.isfinite(fit["Tm"]):
        ax.axvline(fit["Tm"], color="tab:red", ls=":")
    ax.set_xlabel("coexistence temperature (K)")
    ax.set_ylabel("fraction of runs ending liquid")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=8)
    fig.savefig(out / "liquid_fraction.png", dpi=110)
    plt.close(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
