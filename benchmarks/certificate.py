"""The certified served error (``stats['served_error_upper']``), checked against the truth.

Two parts, JSON and ``certificate.png`` in ``benchmarks/results/certificate/``:

* ``adversaries``: simulated runs against error sequences built to break the bound (errors at
  their scale, bursts that start when audits stop, errors hidden on the least-audited calls,
  drifting errors with an audit rate chasing them; :data:`ase_proxima.validation.ADVERSARIES`).
  For each, the share of runs in which the true mean served error exceeded the certificate at
  *any* call (anytime validity), with its binomial standard error; at most 1 - level is promised.
* ``methane``: real runs (methane Metropolis Monte Carlo with ASE's EMT as the target, every
  served energy recomputed by an independent EMT): the certificate at the end of each run, and
  whether the truth ever exceeded it at a served call, against run length and audit fraction.

    .venv/bin/python benchmarks/certificate.py            # about 10 minutes on 2 cores
    .venv/bin/python benchmarks/certificate.py --quick
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ase_proxima.validation import ADVERSARIES, check_run, miscoverage

OUT = Path(__file__).resolve().parent / "results" / "certificate"


def adversaries(quick: bool) -> list[dict[str, Any]]:
    runs, calls = (200, 120) if quick else (600, 200)
    rows = []
    for name, make in ADVERSARIES.items():
        for p in (0.05, 0.1, 0.4):
            miss = miscoverage(make(p), runs, calls, seed=0)
            rows.append({"adversary": name, "audit_p": p, "calls": calls, "runs": runs, "miscoverage": miss,
                         "miscoverage_se": math.sqrt(max(miss * (1 - miss), 0.05 * 0.95) / runs)})
            print(rows[-1], file=sys.stderr)
    return rows


def methane(quick: bool) -> list[dict[str, Any]]:
    settings = [(300, 0.05, range(10 if quick else 20)), (2000, 0.05, range(2 if quick else 4)),
                (2000, 0.2, range(2 if quick else 4))]
    rows = []
    for steps, fraction, seeds in settings:
        for seed in seeds:
            r = check_run(seed, steps=steps, error_bound=0.0015, audit_fraction=fraction)
            rows.append({k: r[k] for k in ("seed", "steps", "error_bound", "served_calls", "audits",
                                           "true_served_error", "estimate", "served_error_upper",
                                           "certificate_missed")} | {"audit_fraction": fraction})
            print(rows[-1], file=sys.stderr)
    return rows


def plot(data: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    adv = data["adversaries"]
    x = np.arange(len(adv))
    axes[0].bar(x, [r["miscoverage"] for r in adv], yerr=[r["miscoverage_se"] for r in adv], capsize=2)
    axes[0].axhline(0.05, color="C3", lw=1, label="promised at most (1 - 0.95)")
    axes[0].set_xticks(x, [f"{r['adversary']}\np={r['audit_p']}" for r in adv], rotation=90, fontsize=7)
    axes[0].set_ylabel("share of runs the bound ever failed")
    axes[0].set_title("anytime validity against adversarial errors")
    axes[0].legend(fontsize=8)
    runs = [r for r in data["methane"] if r["served_calls"]]
    for (steps, frac), marker in zip(sorted({(r["steps"], r["audit_fraction"]) for r in runs}), "osd^v"):
        sel = [r for r in runs if (r["steps"], r["audit_fraction"]) == (steps, frac)]
        axes[1].scatter([1000 * r["true_served_error"] for r in sel], [1000 * r["served_error_upper"] for r in sel],
                        marker=marker, label=f"{steps} steps, audit_fraction {frac}")
    top = max(1000 * r["served_error_upper"] for r in runs) if runs else 1.0
    axes[1].plot([0, top], [0, top], "k--", lw=0.8, label="certificate = truth")
    axes[1].axvline(1.5, color="C3", lw=0.8, label="bound 1.5 meV")
    axes[1].set_xlabel("true mean served error (meV)")
    axes[1].set_ylabel("served_error_upper at the end (meV)")
    axes[1].set_title("methane MC, EMT target: the certificate against the truth")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer and shorter runs")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t = time.perf_counter()
    data = {"adversaries": adversaries(args.quick), "methane": methane(args.quick)}
    summary = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                           "python": platform.python_version()},
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
               "seconds": time.perf_counter() - t, **data,
               "worst_miscoverage": max(r["miscoverage"] for r in data["adversaries"]),
               "methane_runs_missed": sum(r["certificate_missed"] for r in data["methane"]),
               "methane_runs": len(data["methane"])}
    (args.out / "certificate.json").write_text(json.dumps(summary, indent=1, default=float))
    plot(data, args.out / "certificate.png")
    print(json.dumps({k: v for k, v in summary.items() if k not in data}, indent=1))


if __name__ == "__main__":
    main()
