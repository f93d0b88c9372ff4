"""Per-call overhead of Proxima's decision and controller, against an EMT call on 13 atoms.

Measured side by side in one process:

* ``emt_call``       ASE EMT energy+forces of a 13-atom Cu cluster (new positions each call);
* ``controller``     ``observe`` + ``update`` of :class:`ThresholdController` (the law,
                     alpha regression, clipping, oscillation watch) -- the thesis reports ~10 us;
* ``gate``           ``note_uncertainty`` + ``allows`` (the decision itself);
* ``glue``           everything ProximaCalculator does per call besides target, surrogate,
                     uncertainty and training (ASE bookkeeping, metric, log), from a real MD run;
* ``uncertainty_*``  the two gate signals per call (posterior std comes with the prediction).

Writes ``benchmarks/results/controller_overhead.json`` (machine, date, microseconds, ratios).

    .venv/bin/python benchmarks/controller_overhead.py [--repeats 20000]
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

from ase_proxima import DistanceUncertainty, ProximaCalculator, ThresholdController


def _per_call(fn, n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=20000)
    ap.add_argument("--md-steps", type=int, default=400)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "controller_overhead.json"))
    args = ap.parse_args()
    rng = np.random.default_rng(0)

    cluster = Icosahedron("Cu", noshells=2, latticeconstant=3.61)
    frames = [cluster.copy() for _ in range(200)]
    for f in frames:
        f.positions += rng.normal(0, 0.05, f.positions.shape)
    emt = EMT()

    def emt_call(i: int) -> None:
        emt.get_forces(frames[i % len(frames)])
        emt.results.clear()
        emt.atoms = None

    t_emt = _per_call(emt_call, 400)

    ctrl = ThresholdController(error_bound=0.1, window=10)
    us = rng.uniform(0, 1, args.repeats)
    es = 0.2 * us + rng.normal(0, 0.01, args.repeats) ** 2

    def controller_step(i: int) -> None:
        ctrl.observe(us[i], es[i])
        ctrl.update()

    t_ctrl = _per_call(controller_step, args.repeats)

    def gate(i: int) -> None:
        ctrl.note_uncertainty(us[i])
        ctrl.allows(us[i])

    t_gate = _per_call(gate, args.repeats)

    atoms = cluster.copy()
    calc = ProximaCalculator(target=EMT(), error_bound=0.2, error_metric="forces_max", seed=0)
    atoms.calc = calc
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    Langevin(atoms, 2 * fs, temperature_K=300, friction=0.02, fixcm=False, rng=np.random.default_rng(1)).run(
        args.md_steps
    )
    s = calc.stats
    parts = ("time_target", "time_surrogate", "time_uncertainty", "time_training")
    t_glue = (s["time_total"] - sum(s[p] for p in parts)) / s["calls"]
    t_surrogate = s["time_surrogate"] / s["calls"]

    dist = DistanceUncertainty()
    train = frames[:100]
    dist.fit(train)
    t_dist = _per_call(lambda i: dist.score(frames[100 + i % 100]), 400)
    pred = calc.surrogate.predict(frames[0])
    t_post = _per_call(lambda i: calc.uncertainty.score(frames[0], pred), 4000)

    us_ = 1e6
    result = {
        "benchmark": "controller_overhead",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "emt_call_us": t_emt * us_,
        "controller_us": t_ctrl * us_,
        "gate_us": t_gate * us_,
        "glue_us": t_glue * us_,
        "surrogate_predict_us": t_surrogate * us_,
        "uncertainty_distance_us": t_dist * us_,
        "uncertainty_posterior_us": t_post * us_,
        "ratio_controller_to_emt": t_ctrl / t_emt,
        "ratio_decision_plus_controller_to_emt": (t_ctrl + t_gate) / t_emt,
        "ratio_glue_to_emt": t_glue / t_emt,
        "md_run": {"steps": args.md_steps, "calls": s["calls"], "served_fraction": s["served_fraction"]},
        "thesis_controller_us": 10.0,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
