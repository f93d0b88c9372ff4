"""Parameter sweeps (temperature x seed x bound x method) on any ``concurrent.futures.Executor``.

One sweep at a time per directory: a sweep holds ``ROOT/lock`` (a second one is refused with
the holder's PID, before it touches anything).  Each task runs one workflow job into its own run
directory ``ROOT/<task key>/`` and, when it
finishes, writes ``result.json`` there (atomically).  The sweep gathers every ``result.json``
into ``ROOT/results.csv`` after each completion, so finished tasks survive a failing or killed
sweep; running the sweep again skips tasks whose ``result.json`` exists and reruns the rest
from a clean directory.  A task that raises writes ``error.json`` (with the traceback) instead
and the sweep goes on.

Executors: a local process pool by default (:func:`local_executor`); Parsl's
``ParslPoolExecutor`` over a ``HighThroughputExecutor`` for clusters (:func:`parsl_executor`,
local workers by default, any Parsl provider -- Slurm, PBS -- for a cluster).
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
import shutil
import sys
import time
import traceback
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from ..locking import DirectoryLock
from ..store import atomic_write

__all__ = ["SweepTask", "grid", "make_job", "run_task", "run_sweep", "sweep_lock", "gather", "local_executor",
           "parsl_executor", "RESULT_COLUMNS"]

WORKFLOWS = ("mc", "sluschi")
#: columns of results.csv after the task parameters
RESULT_COLUMNS = ("status", "temperature_K", "acceptance_ratio", "mean_rog_A", "liquid_ratio", "liquid_ratio_se",
                  "served_fraction", "calls", "target_calls",
                  "surrogate_calls", "audits", "served_error", "served_error_se", "wall_time_s", "target_time_s",
                  "finished", "pid", "error")


@dataclass(frozen=True)
class SweepTask:
    """One grid point: a workflow name and its job parameters."""

    workflow: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.workflow not in WORKFLOWS:
            raise ValueError(f"unknown workflow {self.workflow!r}; known: {WORKFLOWS}")

    @property
    def key(self) -> str:
        """A directory name that says what the task is (sorted ``name=value`` pairs)."""
        parts = [self.workflow] + [f"{k}={_fmt(v)}" for k, v in sorted(self.params.items())]
        return re.sub(r"[^A-Za-z0-9._=+-]", "-", "_".join(parts))


def _fmt(v: Any) -> str:
    if isinstance(v, (tuple, list)):
        return "x".join(_fmt(x) for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


def grid(workflow: str = "mc", **axes: Any) -> list[SweepTask]:
    """The Cartesian product of the list- or tuple-valued ``axes`` (scalars are fixed for every
    task; wrap a tuple-valued parameter in a list: ``size=[(2, 2, 2)]``)::

        grid("mc", temperature=[300, 500], seed=[0, 1], target="emt", steps=200)
    """
    names = sorted(axes)
    values = [v if isinstance(v, (list, tuple)) else [v] for v in (axes[n] for n in names)]
    if any(len(v) == 0 for v in values):
        raise ValueError("every swept axis needs at least one value")
    tasks = [SweepTask(workflow, dict(zip(names, combo))) for combo in itertools.product(*values)]
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise ValueError("the grid repeats a task")
    return tasks


def make_job(task: SweepTask):
    """The task's job object (:class:`.mc_job.MCJob` or :class:`.sluschi_job.SluschiJob`);
    raises ``ValueError`` for bad parameters."""
    if task.workflow == "sluschi":
        from .sluschi_job import SluschiJob

        return SluschiJob.from_params(**task.params)
    from .mc_job import MCJob

    return MCJob.from_params(**task.params)


_HELD: dict[Path, DirectoryLock] = {}


@contextmanager
def sweep_lock(root: str | os.PathLike) -> Iterator[None]:
    """Hold the sweep directory ``root`` (made if needed) for this process; re-entrant within it.
    Another process holding it raises :class:`~ase_proxima.locking.DirectoryInUse`."""
    root = Path(root).resolve()
    if root in _HELD:
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    _HELD[root] = DirectoryLock(root, "sweep directory")
    try:
        yield
    finally:
        _HELD.pop(root).release()


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    atomic_write(path, json.dumps(payload, indent=1, default=float).encode())


def _summary(report: Mapping[str, Any]) -> dict[str, Any]:
    stats = report.get("stats", {})
    row = {k: report.get(k) for k in ("temperature_K", "acceptance_ratio", "mean_rog_A", "liquid_ratio",
                                      "liquid_ratio_se", "wall_time_s", "target_time_s")}
    for k in ("served_fraction", "calls", "target_calls", "surrogate_calls", "audits", "served_error",
              "served_error_se"):
        row[k] = stats.get(k)
    if "error_bound" in stats:  # also when the task kept the job's default bound
        row["error_bound"] = stats["error_bound"]
    return row


def run_task(workflow: str, params: Mapping[str, Any], root: str) -> dict[str, Any]:
    """Run one task into ``root/<key>`` unless its ``result.json`` exists; returns its result row.

    A module-level function of plain arguments, so process pools and Parsl can ship it."""
    task = SweepTask(workflow, dict(params))
    out = Path(root) / task.key
    done = out / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    if out.exists():  # a task killed half way: start it again from nothing
        shutil.rmtree(out)
    out.mkdir(parents=True)
    row: dict[str, Any] = {"key": task.key, "workflow": workflow, **task.params}
    try:
        report = make_job(task).run(out, progress=False)
    except Exception as err:  # the sweep goes on; the error is kept with the task
        _write_json(out / "error.json", {**row, "error": repr(err), "traceback": traceback.format_exc()})
        return {**row, "status": "failed", "error": repr(err)}
    row.update(_summary(report), status="ok", finished=time.time(), pid=os.getpid())
    _write_json(done, row)
    return row


def _task_row(task_dir: Path) -> dict[str, Any] | None:
    """A task directory's result row (``result.json``, or ``error.json`` marked failed), if any."""
    for name in ("result.json", "error.json"):
        f = task_dir / name
        if f.exists():
            r = json.loads(f.read_text())
            r.pop("traceback", None)
            if name == "error.json":
                r["status"] = "failed"
            return r
    return None


def gather(root: str | os.PathLike, tasks: Iterable[SweepTask] | None = None) -> list[dict[str, Any]]:
    """Result rows of every finished (or failed) task under ``root``, written to ``results.csv``."""
    root = Path(root)
    dirs = [root / t.key for t in tasks] if tasks is not None else sorted(p for p in root.iterdir() if p.is_dir())
    rows = [r for r in map(_task_row, dirs) if r is not None]
    _write_csv(root / "results.csv", rows)
    return rows


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    params = sorted({k for r in rows for k in r} - set(RESULT_COLUMNS) - {"key", "workflow"})
    columns = ["key", "workflow", *params, *RESULT_COLUMNS]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    atomic_write(path, buf.getvalue().encode(), sync=False)


def run_sweep(tasks: Sequence[SweepTask], root: str | os.PathLike, executor: Executor | None = None,
              progress: bool = True) -> list[dict[str, Any]]:
    """Run the tasks not finished yet on ``executor`` (default: :func:`local_executor`) and return
    every task's row.  ``results.csv`` is rewritten after each completion.  Holds the directory
    (:func:`sweep_lock`) while it runs."""
    root = Path(root)
    with sweep_lock(root):
        return _run_sweep(tasks, root, executor, progress)


def _run_sweep(tasks: Sequence[SweepTask], root: Path, executor: Executor | None,
               progress: bool) -> list[dict[str, Any]]:
    atomic_write(root / "sweep.json", json.dumps(
        {"tasks": [{"workflow": t.workflow, "params": dict(t.params)} for t in tasks], "command": " ".join(sys.argv)},
        indent=1, default=float).encode(), sync=False)
    todo = [t for t in tasks if not (root / t.key / "result.json").exists()]
    own = executor is None
    if own:
        executor = local_executor()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc="sweep", unit="task")
    rows = {t.key: _task_row(root / t.key) for t in tasks}  # re-read only the task that finishes
    try:
        futures = {executor.submit(run_task, t.workflow, dict(t.params), str(root)): t for t in todo}
        for fut in as_completed(futures):
            task = futures[fut]
            try:
                fut.result()
            except Exception as err:  # the worker itself died (killed, out of memory)
                (root / task.key).mkdir(exist_ok=True)
                _write_json(root / task.key / "error.json",
                            {"key": task.key, "workflow": task.workflow, **task.params, "error": repr(err)})
            rows[task.key] = _task_row(root / task.key)
            _write_csv(root / "results.csv", [r for r in rows.values() if r is not None])
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if own:
            executor.shutdown()
    return gather(root, tasks)


def local_executor(max_workers: int | None = None) -> ProcessPoolExecutor:
    """A process pool on this machine (fresh interpreters: no inherited thread pools)."""
    import multiprocessing

    return ProcessPoolExecutor(max_workers=max_workers, mp_context=multiprocessing.get_context("spawn"))


def parsl_executor(max_workers: int = 2, provider: Any = None, run_dir: str | os.PathLike | None = None):
    """Parsl's ``ParslPoolExecutor`` on a ``HighThroughputExecutor``.

    ``provider`` defaults to a ``LocalProvider`` (workers on this machine, started from this
    Python's environment).  For a cluster pass e.g. ``parsl.providers.SlurmProvider(partition=...,
    nodes_per_block=1, worker_init="source /path/to/.venv/bin/activate")``.  Shut it down (or use
    it in a ``with`` block) to stop the workers."""
    from parsl.concurrent import ParslPoolExecutor
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    bindir = Path(sys.executable).parent  # Parsl's interchange and worker scripts live beside this Python
    if provider is None:
        provider = LocalProvider(init_blocks=1, max_blocks=1, min_blocks=0, worker_init=f"export PATH={bindir}:$PATH")
    extra = {}
    if (bindir / "interchange.py").exists():
        extra["interchange_launch_cmd"] = [sys.executable, str(bindir / "interchange.py")]
    config = Config(executors=[HighThroughputExecutor(label="proxima", max_workers_per_node=max_workers,
                                                      provider=provider, encrypted=False, **extra)],
                    run_dir=str(run_dir) if run_dir is not None else "runinfo", initialize_logging=False)
    return ParslPoolExecutor(config)
