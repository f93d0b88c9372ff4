"""The paper's Table II: a Newton-Raphson root solver for quadratics replaced by small networks.

The region and its input distribution are in :mod:`nnapprox.regions` (coefficients
``a ~ U[0.5, 2]``, ``b ~ U[-4, 4]``, ``c ~ U[-4, 0]``; every solve starts at ``x0 = 10`` and so
converges to the larger root).  As in the paper: 102,400 training samples, 3,072 held-out
samples, 5,000 training steps, every topology of its table.  Columns: training time, steps, L2
loss, running time for 10,240 equations (the network's numpy forward pass against the vectorised
Newton-Raphson solve, which the paper's Figure 3 compares), and accuracy: the share of held-out
roots predicted within 5% (denominator at least 1, since roots near zero occur); the
``1 - mean relative error`` figure is reported beside it.

Run: ``.venv/bin/python benchmarks/newton_raphson_table2.py`` (``--quick`` for a smoke run).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from nnapprox import approximate, time_per_call
from nnapprox import newton_raphson_quadratic, root_scores, sample_quadratics

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGIES = ("3x3x1", "3x5x1", "3x8x1", "3x3x2x1", "3x5x3x1", "3x8x5x1", "3x5x3x2x1", "3x8x5x3x1", "3x11x8x5x1")
PAPER_ACCURACY = {"3x3x1": 0.51, "3x5x1": 0.54, "3x8x1": 0.73, "3x3x2x1": 0.69, "3x5x3x1": 0.89, "3x8x5x1": 0.93,
                  "3x5x3x2x1": 0.89, "3x8x5x3x1": 0.94, "3x11x8x5x1": 0.95}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "newton_raphson"))
    p.add_argument("--train", type=int, default=102_400)
    p.add_argument("--test", type=int, default=3_072)
    p.add_argument("--steps", type=int, default=5_000)
    p.add_argument("--learning-rate", type=float, default=0.01)
    p.add_argument("--refine", type=int, default=2_000)
    p.add_argument("--restarts", type=int, default=2)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.train, args.test, args.steps, args.refine, args.restarts = 4000, 1000, 500, 100, 1
        args.out = str(ROOT / "benchmarks" / "results" / "newton_raphson_quick")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    coeffs = sample_quadratics(np.random.default_rng(123), 10_240)
    solve_s = time_per_call(lambda: newton_raphson_quadratic(coeffs), 1)
    rows = []
    for topo in TOPOLOGIES:
        row = approximate(newton_raphson_quadratic, sample_quadratics, [topo], n_train=args.train, n_test=args.test,
                          steps=args.steps, learning_rate=args.learning_rate, refine_steps=args.refine,
                          restarts=args.restarts, score=root_scores)[0]
        net_s = time_per_call(lambda: row.weights(coeffs), 1)
        rows.append({"topology": topo, "train_time_s": row.train_time_s, "steps": row.steps, "l2_loss": row.l2_loss,
                     "learning_rate": row.learning_rate, "network_s_10240": net_s, "newton_raphson_s_10240": solve_s,
                     "speedup": solve_s / net_s, "mean_abs_error": row.mean_abs_error, **row.extra,
                     "paper_accuracy": PAPER_ACCURACY[topo]})
        print(f"{topo}: accuracy {row.extra['accuracy']:.3f} (paper {PAPER_ACCURACY[topo]}), "
              f"speed-up {solve_s / net_s:.2f}x, {row.train_time_s:.0f} s", flush=True)
    constant = root_scores(coeffs, newton_raphson_quadratic(coeffs),
                           np.full(len(coeffs), np.mean(newton_raphson_quadratic(sample_quadratics(
                               np.random.default_rng(7), args.train)))))
    summary = {"command": " ".join(sys.argv), "machine": platform.platform(), "cpus": os.cpu_count(),
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "protocol": {"n_train": args.train, "n_test": args.test, "adam_steps": args.steps,
                            "learning_rate": args.learning_rate, "lbfgs_refine_steps": args.refine,
                            "restarts": args.restarts, "activation": "tanh", "x0": 10.0, "tol": 1e-10,
                            "accuracy": "share of roots within 5% (denominator max(|root|, 1))"},
               "constant_baseline": constant, "rows": rows}
    (out / "table2.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
