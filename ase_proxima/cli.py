"""The ``ase-proxima`` command.

``ase-proxima demo``: a short real run -- Langevin molecular dynamics of a
13-atom copper cluster with ASE's EMT as the target, through
ProximaCalculator under a force error bound -- written to a run directory
(store, stats JSON, plot), with the served error checked against the target on
every served step.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from ase.calculators.emt import EMT
    from ase.cluster import Icosahedron
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.units import fs
    from tqdm import tqdm

    from .calculator import ProximaCalculator
    from .plots import plot_run

    out = Path(args.out)
    if (out / "store").exists():
        if not args.overwrite:
            print(f"error: {out}/store exists; pass --overwrite or choose another --out", file=sys.stderr)
            return 2
        shutil.rmtree(out / "store")
    out.mkdir(parents=True, exist_ok=True)
    atoms = Icosahedron("Cu", noshells=2, latticeconstant=3.61)
    calc = ProximaCalculator(
        target=EMT(),
        error_bound=args.error_bound,
        error_metric=args.metric,
        store=out / "store",
        seed=args.seed,
    )
    atoms.calc = calc
    thermalize_momenta(atoms, temperature_K=args.temperature, rng=np.random.default_rng(args.seed))
    dyn = Langevin(
        atoms, args.timestep * fs, temperature_K=args.temperature, friction=0.02, fixcm=False,
        rng=np.random.default_rng(args.seed + 1),
    )
    reference = EMT()
    true_errors: list[float] = []
    bar = tqdm(total=args.steps, desc="MD (Cu13, EMT target)", unit="step", disable=args.quiet)

    def after_step() -> None:
        if calc.log[-1]["kind"] == "surrogate":
            diff = atoms.get_forces() - reference.get_forces(atoms)
            if args.metric == "forces_max":
                true_errors.append(float(np.max(np.linalg.norm(diff, axis=1))))
            else:
                true_errors.append(float(np.mean(np.abs(diff))))
        s = calc.stats
        bar.set_postfix(served=f"{s['served_fraction']:.0%}", T=f"{s['threshold']:.3g}")
        bar.update(1)

    dyn.attach(after_step, interval=1)
    t0 = time.perf_counter()
    dyn.run(args.steps)
    wall = time.perf_counter() - t0
    bar.close()

    stats = calc.stats
    true_mae = float(np.mean(true_errors)) if true_errors else math.nan
    report = {
        "command": " ".join(sys.argv),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "wall_time_s": wall,
        "served_error_true": true_mae,
        "served_steps_checked": len(true_errors),
        "stats": stats,
    }
    (out / "stats.json").write_text(json.dumps(report, indent=2, default=float))
    plot_run(calc.log, args.error_bound, out / "run.png",
             title=f"Cu13 Langevin MD, {args.metric} bound {args.error_bound} eV/A")
    print(
        f"{stats['calls']} calls: target {stats['target_calls']} (audits {stats['audits']}), "
        f"surrogate {stats['surrogate_calls']} ({stats['served_fraction']:.1%})\n"
        f"served {args.metric} error: audited estimate {stats['served_error']:.4f} "
        f"+- {stats['served_error_se']:.4f}, measured on every served step {true_mae:.4f}, "
        f"bound {args.error_bound}\n"
        f"threshold {stats['threshold']:.4g}, alpha {stats['alpha']:.4g}, oscillations {stats['oscillations']}\n"
        f"wrote {out}/stats.json, {out}/run.png, {out}/store/"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ase-proxima", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="short real run: Cu13 Langevin MD with an EMT target")
    demo.add_argument("--steps", type=int, default=500)
    demo.add_argument("--temperature", type=float, default=300.0, help="K")
    demo.add_argument("--timestep", type=float, default=2.0, help="fs")
    demo.add_argument("--error-bound", type=float, default=0.2, help="eV/A")
    demo.add_argument("--metric", choices=("forces_max", "forces_mean"), default="forces_max")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--overwrite", action="store_true", help="replace an earlier demo run in --out")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "steps", 1) < 1:
        print("error: --steps must be >= 1", file=sys.stderr)
        return 2
    if getattr(args, "error_bound", 1.0) <= 0:
        print("error: --error-bound must be > 0", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
