"""A melting-point scan written to a run directory: what ``ase-proxima melt`` runs (the shape in
:mod:`.job`).

Besides the scan's own files (``melt.json``, ``start.traj``, ``batchNN/``, ``scan.json``,
``melting_point.png``; see :mod:`.melt`), the run directory gets ``stats.json`` and, with one
learner for the whole scan, ``store/`` and ``run.png`` (on a process pool the learners' stores are
in ``stores/``).  Running it again on the same directory continues the scan.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .job import Job
from .melt import ScanConfig
from .sluschi import CoexistenceConfig, RunOutcome, fcc_lattice_constant, read_crystal

__all__ = ["MeltJob", "WorkerLearner", "pooled_learners"]

_CELL_DEFAULTS = {"size": (3, 3, 3), "run_steps": 1500, "extend_steps": 500, "max_extensions": 2}


@dataclass
class MeltJob(Job):
    """How forces are computed (``target``, ``method``: 'proxima' or 'baseline', the target
    alone; ``error_bound``, ``metric``), the scan (``scan``, a :class:`~.melt.ScanConfig`),
    the cell (``cell``, a :class:`~.sluschi.CoexistenceConfig`: an fcc ``element`` or a crystal
    ``structure`` file), and ``workers`` (processes for the runs of a batch: with Proxima, every
    run's learner opens a store of its own under ``stores/`` and starts from the target results
    of the preparation and of every earlier batch).  :meth:`from_params` takes both configs'
    fields flat; an element's lattice constant, unless given, is the target's own
    (:func:`~.sluschi.fcc_lattice_constant`), and the half of the cell that starts liquid is
    melted at twice the guess unless ``melt_temperature`` is given."""

    target: str = "asap3"
    error_bound: float = 0.06
    metric: str = "forces_mean"
    workers: int = 1
    scan: ScanConfig = field(default_factory=lambda: ScanConfig(guess=900.0))
    cell: CoexistenceConfig = field(default_factory=lambda: CoexistenceConfig(**_CELL_DEFAULTS))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method == "fixed":
            raise ValueError("melt runs method 'proxima' or 'baseline' (the target alone)")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {self.workers!r}")

    @property
    def error_metric(self) -> str:  # type: ignore[override]
        return self.metric

    @classmethod
    def from_params(cls, **params: Any) -> MeltJob:
        own = {f.name for f in fields(cls)} - {"scan", "cell"}
        scan_keys = {f.name for f in fields(ScanConfig)}
        cell_keys = {f.name for f in fields(CoexistenceConfig)} - {"temperature", "runs", "seed"}
        unknown = sorted(set(params) - own - scan_keys - cell_keys)
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} of MeltJob; known: {sorted(own | scan_keys | cell_keys)}")
        if "guess" not in params:
            raise ValueError("melt needs a first guess of the melting point (guess, K)")
        cell = {**_CELL_DEFAULTS, **{k: v for k, v in params.items() if k in cell_keys and v is not None}}
        if cell.get("structure") is not None:
            given = [k for k in ("element", "lattice_constant") if k in cell]
            if given:
                raise ValueError(f"give a structure or an fcc element, not both ({', '.join(given)} with structure)")
            path = Path(cell["structure"]).resolve()
            cell["structure"] = str(path)
            cell["element"] = read_crystal(path).get_chemical_formula(mode="reduce")  # names the scan
        elif "lattice_constant" not in cell:  # the element's crystal as the target itself has it
            from ..targets import make_target

            target = params.get("target", next(f.default for f in fields(cls) if f.name == "target"))
            cell["lattice_constant"] = round(fcc_lattice_constant(cell.get("element", "Al"), make_target(target)), 4)
        # the new half must melt whatever the element: twice the guess unless stated
        cell.setdefault("melt_temperature", 2.0 * params["guess"])
        cell["temperature"] = params["guess"]  # each batch sets its own; the guess is the first
        cell["size"] = tuple(cell["size"])
        return cls(**{k: v for k, v in params.items() if k in own},
                   scan=ScanConfig(**{k: v for k, v in params.items() if k in scan_keys}),
                   cell=CoexistenceConfig(**cell))

    def settings(self) -> dict[str, Any]:
        return {"seed": self.scan.seed}

    @property
    def learns_here(self) -> bool:  # on a pool each worker builds its own learner
        return self.uses_proxima and self.workers == 1

    def title(self) -> str:
        return f"melting point of {self.cell.element}, {self.target}, {self.metric} bound {self.error_bound} eV/A"

    def execute(self, calc: Any, out: Path, progress: bool) -> dict[str, Any]:
        from ase.io import read

        from ..targets import make_target
        from .melt import MeltingPoint

        if self.workers > 1:
            calc = WorkerLearner(self) if self.uses_proxima else functools.partial(make_target, self.target)
        t0 = time.perf_counter()
        flow = MeltingPoint(self.cell, self.scan, calc, out, workers=self.workers, progress=progress)
        summary = flow.run()
        fit = summary["fit"] or {}
        report = {"metric": self.metric, "atoms": len(read(Path(out) / "start.traj")),
                  "Tm": fit.get("Tm"), "Tm_se": fit.get("Tm_se"), "g": fit.get("g"), "runs": summary["runs"],
                  "undecided": summary["undecided"], "temperatures": summary["temperatures"],
                  "certified": summary["certified"], "wall_time_s": time.perf_counter() - t0}
        if self.uses_proxima and not self.learns_here:
            report["learners"] = pooled_learners([o for b in flow.batches() for o in b["outcomes"]])
        return report

    def headline(self, report: dict[str, Any]) -> str:
        r = report
        per_t = ", ".join(f"{t['temperature']:g} K {t['liquid']}/{t['liquid'] + t['solid']}"
                          + (f" ({t['undecided']} undecided)" if t["undecided"] else "") for t in r["temperatures"])
        tm = "not determined (one phase only)" if r["Tm"] is None else f"{r['Tm']:.0f} +- {r['Tm_se']:.0f} K"
        lines = [f"melting point {tm} from {r['runs']} coexistence runs of {r['atoms']} atoms; liquid/decided: "
                 f"{per_t}"]
        if r.get("learners"):
            k = r["learners"]
            lines.append(f"learners (one per run, {self.workers} workers, learning from each other's stores): "
                         f"target {k['target_calls']} calls (audits {k['audits']}), surrogate {k['surrogate_calls']} "
                         f"({k['served_fraction']:.1%}) over the runs")
        c = r.get("certified")
        if c:
            scan = "" if c.get("scan_upper") is None else f"; over every run's answers {c['scan_upper']:.4g} eV/A"
            lines.append(f"per-run certified served error: worst {c['worst_upper']:.4g} eV/A at "
                         f"{c['confidence_level']:.0%} over {c['runs']} runs, {c['runs_over_bound']} above the bound "
                         f"{self.error_bound:g}{scan}")
        return "\n".join(lines)


def pooled_learners(outcomes: list[RunOutcome]) -> dict[str, Any]:
    """Calls, target calls, answers served, cache hits, audits and served share summed over runs
    that each had a learner of their own (a scan on a process pool; the cell's preparation not
    included)."""
    keys = ("calls", "target_calls", "surrogate_calls", "cache_hits", "audits")
    total = {k: int(sum(o.calc_stats.get(k, 0) for o in outcomes)) for k in keys}
    total["served_fraction"] = total["surrogate_calls"] / total["calls"] if total["calls"] else 0.0
    return total


@dataclass(frozen=True)
class WorkerLearner:
    """Builds a pool worker's learner: the job's ProximaCalculator over a new target, on the store
    the scan gives that run (picklable, so spawned workers can receive it).  Each learner draws
    its audit coins from fresh entropy, not the scan's seed: runs that read each other's data
    must not share coins, or neither their own certificates nor the pooled one would rest on
    coins the errors could not know."""

    job: MeltJob

    def __call__(self, store: Any) -> Any:
        from ..targets import make_target

        return self.job.learner(make_target(self.job.target), store, seed=None)
