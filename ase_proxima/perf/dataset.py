"""Measured profiles: one row per (workload, size, device) with the cost model's counts, the
measured time, and where, when and how it was measured."""
from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from tqdm import tqdm

from .workloads import Case, measure


def collect(cases: Sequence[Case | Callable[[], Case]], threads: Sequence[int], command: str, progress: bool = True,
            out: str | os.PathLike | None = None) -> list[dict]:
    """Time every case (or case builder) at every thread count; rows are appended to ``out`` (JSON lines) as they
    are measured, so an interrupted collection keeps what it has."""
    rows = []
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    machine = f"{platform.platform()} / {platform.processor() or platform.machine()} / {os.cpu_count()} cores"
    bar = tqdm(total=len(cases) * len(threads), desc="profiling", unit="case", disable=not progress)
    for case in cases:
        if not isinstance(case, Case):
            case = case()
        for t in threads:
            c = case.cost
            row = {"workload": case.workload, "params": case.params, "device": f"cpu-{t}t", "threads": t,
                   "flops": c.flops, "bytes": c.bytes, "kernels": c.kernels, "precision": c.precision,
                   "dense": c.dense, "time_s": measure(case, t), "date": date, "machine": machine,
                   "command": command}
            rows.append(row)
            if out is not None:
                with open(out, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
            bar.update(1)
    bar.close()
    return rows


def load_rows(path: str | os.PathLike) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _key(row: Mapping) -> str:
    return row["workload"] + json.dumps(row["params"], sort_keys=True)


def pair_rows(rows: Iterable[Mapping], source: str, target: str) -> list[tuple[Mapping, Mapping]]:
    """Rows of the same workload and size measured on ``source`` and on ``target``."""
    src, dst = {}, {}
    for r in rows:
        if r["device"] == source:
            src[_key(r)] = r
        elif r["device"] == target:
            dst[_key(r)] = r
    return [(src[k], dst[k]) for k in src if k in dst]
