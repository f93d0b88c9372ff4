"""The shape every job takes: one run of a workflow written to a run directory.

A job (:class:`~.demo_job.DemoJob`, :class:`~.mc_job.MCJob`,
:class:`~.sluschi_job.SluschiJob`) is a dataclass of its inputs.  :meth:`Job.check` builds
the target (or raises ``ValueError`` naming what is wrong) before anything is written;
:meth:`Job.run` makes the calculator (the target alone for ``method='baseline'``, else a
``ProximaCalculator`` whose store is ``<out>/store``), runs the workflow, and writes
``stats.json`` (inputs, the workflow's results, Proxima's statistics and the GPU
prediction) and ``run.png``.  The CLI and sweeps both run jobs this way;
:meth:`Job.summary` is what the CLI prints.
"""
from __future__ import annotations

import json
import math
import os
import platform
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from ..metrics import UNITS
from ..store import atomic_write

__all__ = ["Job", "describe_stats", "prepare_run_dir"]

METHODS = ("proxima", "fixed", "baseline")


def prepare_run_dir(out: str | os.PathLike, overwrite: bool) -> Path:
    """Create the run directory; refuse (``FileExistsError``) to mix with an earlier run unless
    told to replace it."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass --overwrite or choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


@contextmanager
def thread_limits(threads: int, pyscf: bool = False) -> Iterator[None]:
    """Run with ``threads`` threads in BLAS and OpenMP pools (and PySCF's), the ones loaded now
    and, through ``OMP_NUM_THREADS``, the ones loaded later."""
    from threadpoolctl import threadpool_limits

    env = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    previous = None
    if pyscf:
        from pyscf import lib

        previous = lib.num_threads()
        lib.num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        if previous is not None:
            from pyscf import lib

            lib.num_threads(previous)
        if env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env


def describe_stats(stats: dict[str, Any]) -> str:
    """One line on who answered and how good the served answers were (the CLI's summary)."""
    unit = UNITS[stats["error_metric"]]
    return (f"target {stats['target_calls']} calls (audits {stats['audits']}), surrogate "
            f"{stats['surrogate_calls']} ({stats['served_fraction']:.1%}); served {stats['error_metric']} error "
            f"(audited) {stats['served_error']:.4g} +- {stats['served_error_se']:.2g} {unit}, certified <= "
            f"{stats['served_error_upper']:.4g} {unit} at {stats['confidence_level']:.0%}, bound "
            f"{stats['error_bound']:g} {unit}")


@dataclass
class Job:
    """Inputs every job has: how answers are computed."""

    target: str = "emt"
    method: str = "proxima"  # proxima | fixed | baseline
    error_bound: float = 0.01
    threshold: float | None = None
    audit_fraction: float = 0.05
    # the largest error a served answer may have, as the certified bound assumes (None: ten times the bound)
    error_scale: float | None = None
    threads: int = 1  # per process: PySCF and BLAS otherwise take every core, and processes share them
    cost_aware: bool = True  # False: serve whatever the target costs (a cheap target standing in for a costly one)
    # a cheap model under the surrogate (``xtb:gfn2``; see ase_proxima.baseline), not to be confused with
    # method='baseline', the thesis's name for the target alone
    baseline: str | None = None

    #: the error metric of the run (a field in jobs that let the user choose)
    error_metric: ClassVar[str] = "energy"
    #: methods of this workflow beyond :data:`METHODS` (their calculator is the target itself)
    extra_methods: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS + self.extra_methods:
            raise ValueError(f"method must be one of {METHODS + self.extra_methods}, got {self.method!r}")
        if self.method == "fixed" and self.threshold is None:
            raise ValueError("method 'fixed' needs a threshold")
        if not self.error_bound > 0:
            raise ValueError(f"error_bound must be > 0, got {self.error_bound!r}")
        if self.error_scale is not None and not (math.isfinite(self.error_scale) and self.error_scale > 0):
            raise ValueError(f"error_scale must be a finite number > 0, got {self.error_scale!r}")
        if not (isinstance(self.threads, int) and self.threads >= 1):
            raise ValueError(f"threads must be an integer >= 1, got {self.threads!r}")

    @classmethod
    def from_params(cls, **params: Any) -> Job:
        """The job from flat parameters (a sweep task's, or the CLI's)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} of {cls.__name__}; known: {sorted(known)}")
        return cls(**params)

    # ------------------------------------------------------------- hooks
    def check(self):
        """The target calculator, or ``ValueError`` naming what is wrong (the baseline too)."""
        from ..targets import make_target

        if self.baseline is not None:
            self.make_baseline()
        return make_target(self.target)

    def make_baseline(self) -> Any:
        """The baseline calculator under the surrogate, or ``None``."""
        from ..baseline import make_baseline

        return None if self.baseline is None else make_baseline(self.baseline)

    def settings(self) -> dict[str, Any]:
        """ProximaCalculator settings beyond the common ones."""
        return {}

    def execute(self, calc: Any, out: Path, progress: bool) -> dict[str, Any]:
        """Run the workflow with ``calc`` into ``out``; returns the report's workflow fields."""
        raise NotImplementedError

    def title(self) -> str:
        return type(self).__name__

    def headline(self, report: dict[str, Any]) -> str:
        """The first line of :meth:`summary`: the workflow's own results."""
        return ""

    # -------------------------------------------------------------- run
    @property
    def uses_proxima(self) -> bool:
        """Does the workflow run through a ProximaCalculator (else with the target itself)?"""
        return self.method in ("proxima", "fixed")

    @property
    def learns_here(self) -> bool:
        """Does this process hold the run's one ProximaCalculator (not so for the target alone, or
        for a workflow whose worker processes build learners of their own)?"""
        return self.uses_proxima

    def learner(self, target: Any, store: Any, **settings: Any) -> Any:
        """A ProximaCalculator with this job's settings over ``target``, on ``store`` (a path or a
        :class:`~ase_proxima.store.RunStore`); ``settings`` replace or add to :meth:`settings`."""
        from ..calculator import ProximaCalculator

        return ProximaCalculator(target=target, error_bound=self.error_bound, error_metric=self.error_metric,
                                 threshold=self.threshold, adaptive=self.method == "proxima",
                                 audit_fraction=self.audit_fraction, error_scale=self.error_scale,
                                 cost_aware=self.cost_aware, store=store,
                                 baseline=self.make_baseline(), **{**self.settings(), **settings})

    def calculator(self, target: Any, out: Path) -> Any:
        return self.learner(target, out / "store") if self.learns_here else target

    def run(self, out: str | os.PathLike, progress: bool = False) -> dict[str, Any]:
        """Run into ``out`` (made if needed); returns the report written to ``stats.json``."""
        target = self.check()
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        calc = self.calculator(target, out)
        proxima = self.learns_here
        try:
            with thread_limits(self.threads, pyscf=self.target.startswith("pyscf")):
                fields_ = self.execute(calc, out, progress)
            stats = calc.stats if proxima else None
        finally:
            if proxima:
                calc.close()
        report: dict[str, Any] = {
            "command": " ".join(sys.argv),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.platform(),
            "job": asdict(self),
            "method": self.method,
            "target": self.target,
            "error_bound": self.error_bound,
            "threads": self.threads,
            **fields_,
        }
        if proxima:
            from ..perf.annotate import annotate_calculator
            from ..plots import plot_run
            from ..store import RunStore

            report["stats"] = stats
            try:
                report["perf_prediction"] = annotate_calculator(calc)
            except ValueError as err:  # nothing computed yet
                report["perf_prediction"] = {"note": str(err)}
            log = RunStore(out / "store", readonly=True).read_log()
            plot_run(log, self.error_bound, out / "run.png", title=self.title())
        atomic_write(out / "stats.json", json.dumps(report, indent=2, default=float).encode())
        return report

    def summary(self, report: dict[str, Any], out: str | os.PathLike) -> str:
        lines = [self.headline(report)]
        if "stats" in report:
            lines.append(describe_stats(report["stats"]))
        lines.append(f"wrote {out}/")
        return "\n".join(line for line in lines if line)
