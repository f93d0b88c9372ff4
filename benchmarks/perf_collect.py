"""Collect the performance dataset: our workloads over sizes, timed on this CPU with 1 and 2
threads, each row with its cost-model counts, device, date, machine and command.

Writes ``--out``/``devices.json`` (the measured CPU peaks and the vendor GPU table) and
``--out``/``profiles.jsonl`` (appended as rows are measured).  No GPU is used here: on a machine
with one, GPU rows are still to be collected (see the README's perf section).

Run: ``.venv/bin/python benchmarks/perf_collect.py`` (a few minutes; ``--quick`` for a smoke run).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ase_proxima.perf.dataset import collect
from ase_proxima.perf.devices import DEVICES, measure_cpu
from ase_proxima.perf.workloads import default_cases

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "perf"))
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    devices = {f"cpu-{t}t": measure_cpu(t).to_dict() for t in args.threads}
    devices.update({k: v.to_dict() for k, v in DEVICES.items()})
    (out / "devices.json").write_text(json.dumps(devices, indent=1))
    profiles = out / "profiles.jsonl"
    if profiles.exists():
        profiles.unlink()
    rows = collect(default_cases(quick=args.quick), args.threads, " ".join(sys.argv), out=profiles)
    print(f"{len(rows)} rows -> {profiles}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
