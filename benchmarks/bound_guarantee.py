"""Does the bound hold across seeds?  Methane Metropolis MC with ASE's EMT as the target (a cheap
plant), 20 seeds per bound, every served energy checked against EMT (``ase_proxima.validation``).

Writes ``--out``/``bound_guarantee.json``: per run the true served error, the audited estimate and
its standard error; per bound the share of runs whose true served error exceeds the bound by more
than the reported standard error (the promise: at most about 16%), and the calibration of the
estimate (share of runs within one and two standard errors; a calibrated estimate gives 68% and 95%).

Run: ``.venv/bin/python benchmarks/bound_guarantee.py`` (about 5 minutes).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from ase_proxima.validation import bound_check

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bound_guarantee"))
    p.add_argument("--bounds", type=float, nargs="+", default=[0.0015, 0.005], help="eV")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--steps", type=int, default=1000)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"command": " ".join(sys.argv), "machine": platform.platform(), "cpus": os.cpu_count(),
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "steps": args.steps,
               "plant": "CH4 Metropolis MC at 500 K, step 0.01 A, ASE EMT target, SOAP + BayesianRidge surrogate",
               "bounds": {}}
    for b in tqdm(args.bounds, desc="bounds"):
        r = bound_check(range(args.seeds), steps=args.steps, error_bound=b)
        summary["bounds"][str(b)] = r
        print(f"bound {b}: exceeding bound + se {r['fraction_exceeding_bound_plus_se']:.2f} (promise <= 0.16), "
              f"exceeding bound {r['fraction_exceeding_bound']:.2f}, true / bound {r['mean_true_over_bound']:.2f}, "
              f"within 1 se {r['within_1_se']:.2f}, within 2 se {r['within_2_se']:.2f}, mean z {r['mean_z']:.2f}",
              flush=True)
    (out / "bound_guarantee.json").write_text(json.dumps(summary, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
