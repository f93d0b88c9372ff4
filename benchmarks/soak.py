"""Soak run: 100,000 calls of ASE's EMT on a 13-atom copper cluster through ProximaCalculator,
with faults injected into 1% of target calls (the target raises, or returns NaN).

Pass criteria (written to ``--out``/``soak.json`` with machine and date): the run finishes, no
served or returned value is NaN, the store's training rows equal the target calls that
succeeded (failed calls store nothing), and the process's resident memory grows by less than
10 MB after warm-up (the first fifth of the calls: the training window, the in-memory log view
and the caches fill up in it).  The per-call cost of the store (training rows, the log line,
the state every ``checkpoint_every`` calls) is the calculator's own ``store_seconds_per_call``,
reported beside the per-call total.  The driver is the project's Metropolis ``MonteCarlo``;
the calculator retries a failed target call twice (``target_retries=2``), and a call whose
retries all fail is counted and skipped by the driver (``skip_failed``).  The surrogate refits
every 200 new target results on the newest 1000
(with lazy refits every 10 new points on up to 2000 structures, a first attempt fell to a
quarter of its starting rate by 8,000 calls, with another benchmark on the second core).

Run: ``.venv/bin/python benchmarks/soak.py`` (``--calls 2000`` for a short check).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from ase.calculators.emt import EMT
from ase.cluster import Icosahedron
from tqdm import tqdm

from ase_proxima import ProximaCalculator
from ase_proxima.faults import FaultInjector
from ase_proxima.workflows import MonteCarlo
from ase_proxima.store import RunStore

ROOT = Path(__file__).resolve().parents[1]


def resident_mb() -> float:
    """Resident memory of this process (Linux ``/proc``), in MB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def plot_memory(memory: list[tuple[int, float]], warm: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    calls, mb = zip(*memory)
    fig, ax = plt.subplots(figsize=(7, 3.5), constrained_layout=True)
    ax.plot(calls, mb, marker=".")
    ax.axvline(warm, color="k", ls=":", label="end of warm-up")
    ax.set_xlabel("calls")
    ax.set_ylabel("resident memory (MB)")
    ax.set_title("Soak run: memory of the process over 100,000 calls")
    ax.legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "soak"))
    p.add_argument("--calls", type=int, default=100_000)
    p.add_argument("--fault-rate", type=float, default=0.01)
    p.add_argument("--error-bound", type=float, default=0.01, help="eV")
    p.add_argument("--temperature", type=float, default=300.0)
    p.add_argument("--step-size", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out)
    store_dir = out / "store"
    if store_dir.exists():
        shutil.rmtree(store_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = FaultInjector(EMT(), rate=args.fault_rate, kinds=("raise", "nan"), seed=args.seed)
    calc = ProximaCalculator(target=target, error_bound=args.error_bound, store=store_dir, seed=args.seed,
                             target_retries=2, max_training=1000, retrain=200)
    walker = Icosahedron("Cu", noshells=2, latticeconstant=3.61)
    walker.calc = calc
    mc = MonteCarlo(walker, temperature_K=args.temperature, step_size=args.step_size, rng=args.seed,
                    skip_failed=True)  # a trial whose retries all failed is skipped
    memory: list[tuple[int, float]] = []  # (call, resident MB)
    warm = args.calls // 5

    def observe() -> None:
        if mc.nsteps % max(args.calls // 50, 1) == 0 or mc.nsteps == warm:
            memory.append((mc.nsteps, resident_mb()))

    mc.attach(observe)
    t0 = time.perf_counter()
    for _ in tqdm(mc.irun(args.calls - 1), total=args.calls - 1, desc="soak", unit="call", mininterval=5):
        pass
    unanswered = mc.failed
    non_finite = int(np.sum(~np.isfinite(mc.result().trial_energies))) - unanswered  # returned, not skipped
    wall = time.perf_counter() - t0
    memory.append((args.calls, resident_mb()))
    s = calc.stats
    calc.close()
    rows = RunStore(store_dir, readonly=True).training_count()
    at_warm = next(mb for call, mb in memory if call >= warm)
    growth = max(mb for call, mb in memory if call >= warm) - at_warm
    result = {
        "command": " ".join(sys.argv), "machine": platform.platform(), "cpus": os.cpu_count(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "wall_s": wall,
        "calls_attempted": args.calls, "calls_answered": s["calls"], "unanswered_after_retries": unanswered,
        "non_finite_returned": non_finite, "faults_injected": target.injected,
        "target_failures": s["target_failures"], "target_calls": s["target_calls"],
        "surrogate_calls": s["surrogate_calls"], "served_fraction": s["served_fraction"],
        "served_error": s["served_error"], "served_error_se": s["served_error_se"],
        "error_bound": args.error_bound, "refusals": s["refusals"], "store_training_rows": rows,
        "store_seconds_per_call": s["store_seconds_per_call"], "total_seconds_per_call": s["time_total"] / s["calls"],
        "store_share_of_calculator_time": s["time_store"] / s["time_total"],
        "checkpoint_every": calc.parameters["checkpoint_every"], "log_view_records": len(calc.log),
        "warm_up_calls": warm, "resident_mb_after_warm_up": at_warm, "resident_mb_growth_after_warm_up": growth,
        "resident_mb": memory,
        "pass": bool(non_finite == 0 and rows == s["target_calls"]
                     and s["calls"] + unanswered == args.calls and growth < 10.0),
    }
    (out / "soak.json").write_text(json.dumps(result, indent=1, default=float))
    plot_memory(memory, warm, out / "soak_memory.png")
    shutil.rmtree(store_dir)  # tens of MB of rows; the JSON keeps the counts
    print(json.dumps(result, indent=1, default=float))
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
