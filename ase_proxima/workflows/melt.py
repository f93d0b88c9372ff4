"""The melting point from small-cell coexistence runs, end to end: SLUSCHI's temperature scan.

:class:`MeltingPoint` prepares one half-molten cell (:class:`~.sluschi.Coexistence`) at the
guess and runs batches of coexistence runs, one temperature per batch, each temperature chosen
from the batches before it (:func:`next_temperature`):

* while the liquid ratio of every temperature run so far is under 1/2, the next batch is
  above the highest: ``step`` K above it when nothing there melted, ``step / 2`` when some
  runs did; over 1/2 everywhere, below the lowest in the same way;
* once a ratio of 1/2 is bracketed (one temperature at or under it, one at or over it),
  SLUSCHI's logistic likelihood is fitted to the pooled counts
  (:func:`~.sluschi.fit_melting_point`) and the next batches sample around the fitted Tm: at
  Tm, then Tm - w, then Tm + w, and so on, where w is the distance from a liquid probability
  of 1/2 to 3/4 under the fit (kept between twice ``resolution`` and ``step``), so the
  location and the sharpness of the curve are both pinned down.  Temperatures are rounded to
  ``resolution`` K, and batches at the same temperature pool their counts.

The scan ends after ``temperatures`` batches, or as soon as Tm's standard error is at most
``target_se``.  Every run is judged by the rule of :mod:`.sluschi` (movement after up to
``max_extensions`` extensions, else structure); undecided runs are reported per temperature and
left out of the fit.

One calculator answers every run of the scan, in one process: a ProximaCalculator then learns
from all temperatures at once and keeps what it learnt from one run for the next (one
start-up per scan, not per run), and certifies each run's served answers on their own
(``RunOutcome.certificate``, :func:`run_certificates` in ``scan.json``) besides the scan's
whole record in its ``stats``.  On a process pool (``workers > 1``) each run's
calculator comes from a factory: the target alone, or a learner (a factory with a ``store``
argument) whose every run opens a store of its own under ``stores/`` and starts from the target
results of every store there (the preparation and the runs before it).

The run directory holds ``melt.json`` (the inputs), ``start.traj``, one ``batchNN/``
per temperature (the coexistence runs' records, :mod:`.sluschi`), ``scan.json`` (the batches
and the fit so far, rewritten after every run) and, at the end, ``melting_point.png``.  A
killed scan continues where it stopped: finished runs are kept, temperatures already chosen are
read back, the one run in progress is redone.  A scan run again with more ``temperatures`` (or
another ``target_se``) goes on from its last batch: they say when a scan stops, not what any of
its runs does, and its batches so far are the ones the longer scan would have begun with.
"""
from __future__ import annotations

import inspect
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units

from ..store import atomic_write
from .sluschi import Coexistence, CoexistenceConfig, RunOutcome, fit_melting_point

__all__ = ["ScanConfig", "MeltingPoint", "next_temperature", "pooled_counts", "logistic_width",
           "liquid_probability", "plot_melting_point", "run_certificates"]


@dataclass
class ScanConfig:
    """How the temperatures of a scan are chosen (K) and how many runs each gets."""

    guess: float
    runs: int = 8  # coexistence runs per temperature
    temperatures: int = 5  # batches (temperatures, repeats counted) at most
    step: float = 50.0  # the move while only one phase has been seen, and the widest sampling offset
    resolution: float = 5.0  # temperatures are rounded to this, and the narrowest sampling offset
    target_se: float = 0.0  # stop once Tm's standard error is at most this (0: run every batch)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("guess", "step", "resolution"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0 (K), got {v!r}")
        for name in ("runs", "temperatures"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.resolution > self.step:
            raise ValueError(f"resolution ({self.resolution}) must not exceed step ({self.step})")
        if not (math.isfinite(self.target_se) and self.target_se >= 0):
            raise ValueError(f"target_se must be >= 0, got {self.target_se!r}")


# --------------------------------------------------------------- temperatures
def pooled_counts(batches: Sequence[dict[str, Any]]) -> list[tuple[float, int, int]]:
    """(temperature, liquid, decided) per distinct temperature, coolest first."""
    pool: dict[float, list[int]] = {}
    for b in batches:
        k = pool.setdefault(float(b["temperature"]), [0, 0])
        k[0] += int(b["liquid"])
        k[1] += int(b["liquid"]) + int(b["solid"])
    return [(t, k[0], k[1]) for t, k in sorted(pool.items())]


def liquid_probability(temperature: np.ndarray | float, tm: float, g: float) -> np.ndarray | float:
    """SLUSCHI's model of the chance a run ends liquid (``g`` in eV)."""
    from scipy.special import expit

    t = np.asarray(temperature, float)
    return expit(g * (t - tm) / (2 * units.kB * t * tm))


def logistic_width(tm: float, g: float) -> float:
    """K from a liquid probability of 1/2 (at Tm) to 3/4 under the fitted curve."""
    # solve g (T - Tm) / (2 kB T Tm) = ln 3 for T
    a = math.log(3.0) * 2 * units.kB * tm / g
    return a * tm / (1.0 - a) if a < 1.0 else math.inf


def fit_counts(counts: Sequence[tuple[float, int, int]]) -> dict[str, Any] | None:
    """The logistic fit of pooled counts, or ``None`` when it is not determined (fewer than two
    temperatures with decided runs, or only one phase seen)."""
    counts = [c for c in counts if c[2] > 0]
    liquid = sum(c[1] for c in counts)
    decided = sum(c[2] for c in counts)
    if len(counts) < 2 or liquid == 0 or liquid == decided:
        return None
    fit = fit_melting_point([c[0] for c in counts], [c[1] for c in counts], [c[2] for c in counts])
    # perfectly separated counts leave Tm anywhere between the phases (g without bound), and an
    # unbracketed crossing can put it far out: keep it among the temperatures run
    fit["Tm"] = float(min(max(fit["Tm"], counts[0][0]), counts[-1][0]))
    return fit


def run_certificates(outcomes: Sequence[RunOutcome]) -> dict[str, Any] | None:
    """Each run's own certified served error, summed up: how many runs were certified, the
    largest bound, the runs whose bound is above the calculator's ``error_bound``, and
    ``scan_upper``, the certificate of the mean error over every answer the runs served
    (their certificates pooled, :meth:`~ase_proxima.certificate.ServedErrorBound.pooled`;
    ``None`` where a run's record has no state).  ``None`` where no run served a certified
    answer (the target alone)."""
    from ..certificate import ServedErrorBound

    rows = [(o.certificate, o.calc_stats.get("error_bound")) for o in outcomes
            if o.certificate.get("served_error_upper") is not None]
    if not rows:
        return None
    level = rows[0][0]["confidence_level"]
    states = [o.certificate.get("state") for o in outcomes if o.certificate]  # runs that served nothing too
    pooled = None
    if all(states):
        pooled = ServedErrorBound.pooled([ServedErrorBound.from_state(s) for s in states]).upper(level)
    return {"runs": len(rows), "confidence_level": level,
            "worst_upper": max(c["served_error_upper"] for c, _ in rows),
            "runs_over_bound": sum(b is not None and c["served_error_upper"] > b for c, b in rows),
            "scan_upper": pooled}


def next_temperature(batches: Sequence[dict[str, Any]], guess: float, step: float, resolution: float) -> float:
    """The temperature of the next batch (see the module doc); ``batches`` are the finished
    ones in order, each with ``temperature``, ``liquid`` and ``solid``."""
    def rounded(t: float) -> float:
        return float(round(t / resolution) * resolution)

    if not batches:
        return rounded(guess)
    counts = [c for c in pooled_counts(batches) if c[2] > 0]
    if not counts:  # nothing decided yet: try the same temperature again
        return rounded(float(batches[-1]["temperature"]))
    ratios = [liq / dec for _, liq, dec in counts]
    if max(ratios) < 0.5:  # the crossing is above every temperature run
        return rounded(counts[-1][0] + (step if ratios[-1] == 0 else step / 2))
    if min(ratios) > 0.5:  # below every temperature run
        return rounded(counts[0][0] - (step if ratios[0] == 1 else step / 2))
    # the crossing is bracketed: the batches since then sample around the fit
    since = 0
    for i in range(len(batches)):
        seen = [liq / dec for _, liq, dec in pooled_counts(batches[:i + 1]) if dec > 0]
        if seen and min(seen) <= 0.5 <= max(seen):
            since = len(batches) - 1 - i
            break
    fit = fit_counts(counts)
    if fit is None:  # one temperature at a ratio of exactly 1/2: look on both sides of it
        return rounded(counts[0][0] + (step / 2 if since % 2 else -step / 2))
    width = min(max(logistic_width(fit["Tm"], fit["g"]), 2 * resolution), step)
    offset = (0.0, -width, width)[since % 3]
    return rounded(fit["Tm"] + offset)


# ----------------------------------------------------------------- the scan
def _pool_run(config: dict[str, Any], out: str, run: int, make_calc: Callable[..., Any], start: str,
              stores: str | None = None, name: str = "") -> dict:
    """One coexistence run in a worker process (its own calculator from ``make_calc``; with
    ``stores``, a learner in a new store there, named after ``name``, that learns from every
    other store there)."""
    from ase.io import read

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    calc = _build(make_calc, None if stores is None else Path(stores), name)
    try:
        if stores is None:
            _one_process(calc, 2)
        flow = Coexistence(CoexistenceConfig.from_dict(config), calc, out)
        return asdict(flow.coexistence_run(read(start), run))
    finally:
        if stores is not None:
            calc.close()


def _build(make_calc: Callable[..., Any], stores: Path | None, name: str) -> Any:
    """A calculator from the factory; with ``stores``, given a store of its own under it (a new
    directory each time: a run redone after a crash keeps the first try's data) whose peers are
    the other stores there but its batch-mates': it starts from every target result of the scan
    before its batch, and of its own earlier tries, whatever its batch-mates running beside it
    have written so far."""
    if stores is None:
        return make_calc()
    from uuid import uuid4

    from ..store import RunStore

    stores.mkdir(parents=True, exist_ok=True)
    own = stores / f"{name}-{uuid4().hex[:8]}"
    batch, sep, _ = name.partition("-r")  # "b03-r001"; the preparation's "prepare" has no batch-mates
    peers = sorted(p for p in stores.iterdir() if p.is_dir() and p != own
                   and not (sep and p.name.startswith(batch + sep) and not p.name.startswith(f"{name}-")))
    return make_calc(store=RunStore(own, peers=peers))


def _takes_store(factory: Any) -> bool:
    """Does a calculator factory take a ``store`` (then each run gets one: a learner)?"""
    try:
        return "store" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


#: ScanConfig fields that only say when the scan stops: a scan may be extended by changing them
_STOPPING_RULE = ("temperatures", "target_se")


def _without_stopping_rule(inputs: dict[str, Any]) -> dict[str, Any]:
    return {**inputs, "scan": {k: v for k, v in inputs.get("scan", {}).items() if k not in _STOPPING_RULE}}


def _one_process(calc: Any, workers: int) -> None:
    if workers > 1 and getattr(calc, "name", None) == "proxima":
        raise ValueError("a ProximaCalculator built without a store cannot learn across workers: give the "
                         "factory a 'store' argument (each run then learns from the scan's stores), or use workers=1")


class MeltingPoint:
    """A melting-point scan written to a run directory (see the module doc).

    Parameters
    ----------
    cell:
        The coexistence set-up (element, lattice, size, run length, barostat, extensions); its
        ``temperature`` and ``runs`` are set per batch by the scan, and ``seed`` per batch from
        the scan's seed, so two scans with the same seed give their runs the same velocities.
    scan:
        The guess and the temperature choice.
    calc:
        An ASE calculator that answers every run in this process, or (``workers > 1``) a
        picklable function that builds one in each worker.  A function with a ``store``
        argument builds a learner (a ProximaCalculator on that store): each run, and the cell's
        preparation, get a store of their own under ``<out>/stores``, read the others' target
        results when they open, and so start from everything the scan had learnt by then.  Give
        each learner coins of its own (``seed=None``): runs that read each other's data must not
        audit on the same random numbers.
    out:
        The run directory (created; an existing scan with other inputs is refused).
    workers:
        Processes for the runs of a batch.
    on_step, on_run:
        Called after every MD step with the atoms, and after every finished run with its
        :class:`~.sluschi.RunOutcome` (in this process only).
    """

    def __init__(self, cell: CoexistenceConfig, scan: ScanConfig, calc: Any, out: str | os.PathLike,
                 workers: int = 1, progress: bool = False, on_step: Callable[[Atoms], None] | None = None,
                 on_run: Callable[[RunOutcome], None] | None = None) -> None:
        if isinstance(workers, bool) or int(workers) != workers or workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
        if workers > 1:
            if hasattr(calc, "get_property"):
                raise ValueError("workers > 1 needs a function that builds the calculator in each worker, "
                                 "not a calculator instance")
            if on_step is not None:
                raise ValueError("on_step runs in this process only: use workers=1")
        elif not hasattr(calc, "get_property"):
            calc = calc()
        self.learns = workers > 1 and _takes_store(calc)
        if workers > 1 and not self.learns:
            # a lambda (which cannot reach a worker anyway) is looked into here; a picklable
            # factory is checked where the worker builds the calculator
            closure = getattr(calc, "__closure__", None) or ()
            for cell in closure:
                _one_process(cell.cell_contents, workers)
        self.cell, self.scan, self.calc = cell, scan, calc
        self.out = Path(out)
        self.workers = int(workers)
        self.progress = progress
        self.on_step, self.on_run = on_step, on_run
        self.out.mkdir(parents=True, exist_ok=True)
        self._claim()

    # ------------------------------------------------------------ records
    def _inputs(self) -> dict[str, Any]:
        cell = asdict(self.cell)
        for k in ("temperature", "runs", "seed"):
            cell.pop(k)
        if cell["structure"] is None:  # an fcc element's scan reads as it did before structures were taken
            cell.pop("structure")
        return {"cell": cell, "scan": asdict(self.scan)}

    def _claim(self) -> None:
        """Write ``melt.json``, or check that a scan already there has the same inputs (its
        stopping rule may differ: the scan is then extended, or ends sooner, and the file says so)."""
        path = self.out / "melt.json"
        mine = json.loads(json.dumps(self._inputs()))
        if path.exists():
            theirs = json.loads(path.read_text())
            if theirs == mine:
                return
            a, b = _without_stopping_rule(mine), _without_stopping_rule(theirs)
            if a != b:
                diff = sorted(f"{part}.{k}" for part in a for k in set(a[part]) | set(b.get(part, {}))
                              if a[part].get(k) != b.get(part, {}).get(k))
                raise ValueError(f"{self.out} holds a scan with other inputs ({', '.join(diff)}); "
                                 "choose another directory")
        atomic_write(path, json.dumps(mine, indent=1).encode())

    def batch_dir(self, index: int) -> Path:
        return self.out / f"batch{index:02d}"

    def batch_config(self, index: int, temperature: float) -> CoexistenceConfig:
        seed = int(np.random.SeedSequence([self.scan.seed, index]).generate_state(1)[0])
        return CoexistenceConfig(**{**asdict(self.cell), "temperature": temperature, "runs": self.scan.runs,
                                    "seed": seed})

    def batches(self) -> list[dict[str, Any]]:
        """The batches begun so far: temperature, verdict counts and every run's record."""
        out = []
        index = 0
        while (self.batch_dir(index) / "config.json").exists():
            d = self.batch_dir(index)
            config = CoexistenceConfig.from_dict(json.loads((d / "config.json").read_text()))
            outcomes = Coexistence.read_outcomes(d)
            verdicts = [o.verdict for o in outcomes]
            out.append({"batch": index, "temperature": config.temperature, "runs": len(outcomes),
                        "planned": config.runs, "liquid": verdicts.count("liquid"), "solid": verdicts.count("solid"),
                        "undecided": verdicts.count("undecided"),
                        "by_structure": sum(o.decided_by == "structure" for o in outcomes),
                        "extended": sum(o.extensions > 0 for o in outcomes), "outcomes": outcomes})
            index += 1
        return out

    def summary(self) -> dict[str, Any]:
        """The scan so far: batches, pooled counts, the fit (``None`` until determined)."""
        batches = self.batches()
        finished = [b for b in batches if b["runs"] >= b["planned"]]
        counts = pooled_counts(finished)
        fit = fit_counts(counts)
        per_t: dict[float, dict[str, int]] = {}
        for b in batches:
            row = per_t.setdefault(float(b["temperature"]), dict.fromkeys(
                ("runs", "liquid", "solid", "undecided", "by_structure", "extended"), 0))
            for k in row:
                row[k] += b[k]
        return {
            "batches": [{k: v for k, v in b.items() if k != "outcomes"} for b in batches],
            "temperatures": [{"temperature": t, **row, "undecided_share": row["undecided"] / row["runs"]
                              if row["runs"] else None} for t, row in sorted(per_t.items())],
            "runs": sum(b["runs"] for b in batches),
            "undecided": sum(b["undecided"] for b in batches),
            "fit": fit,
            "done": self._done(finished, fit) and len(finished) == len(batches),
            "certified": run_certificates([o for b in batches for o in b["outcomes"]]),
        }

    def _done(self, finished: list[dict[str, Any]], fit: dict[str, Any] | None) -> bool:
        if len(finished) >= self.scan.temperatures:
            return True
        return bool(self.scan.target_se and fit is not None and math.isfinite(fit["Tm_se"])
                    and fit["Tm_se"] <= self.scan.target_se)

    def _write_scan(self, s: dict[str, Any] | None = None) -> dict[str, Any]:
        s = self.summary() if s is None else s
        atomic_write(self.out / "scan.json", json.dumps(s, indent=1, default=_plain).encode())
        return s

    # ---------------------------------------------------------------- run
    def prepare(self) -> Atoms:
        """The half-molten start cell at the guess, made once for the whole scan."""
        config = CoexistenceConfig(**{**asdict(self.cell), "temperature": self.scan.guess, "runs": 1,
                                      "seed": self.scan.seed})
        if (self.out / "start.traj").exists():
            return Coexistence(config, None, self.out).prepare()
        calc = self.calc if self.workers == 1 else _build(self.calc, self.stores if self.learns else None, "prepare")
        try:
            return Coexistence(config, calc, self.out, progress=self.progress).prepare()
        finally:
            if self.learns:
                calc.close()

    @property
    def stores(self) -> Path:
        """Where the learners of a scan on a process pool keep their stores."""
        return self.out / "stores"

    def run(self) -> dict[str, Any]:
        """Run (or continue) the scan to its end; returns the final :meth:`summary`, also written
        to ``scan.json``, and draws ``melting_point.png``."""
        start = self.prepare()
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.scan.runs * self.scan.temperatures, desc="melting-point scan", unit="run")
        try:
            while True:
                now = self.summary()
                if now["done"]:
                    break
                batches = now["batches"]
                finished = [b for b in batches if b["runs"] >= b["planned"]]
                if bar is not None:
                    bar.n = sum(b["runs"] for b in batches)
                    bar.refresh()
                if batches and batches[-1]["runs"] < batches[-1]["planned"]:
                    index, temperature = len(batches) - 1, batches[-1]["temperature"]
                else:
                    index = len(batches)
                    temperature = next_temperature(finished, self.scan.guess, self.scan.step, self.scan.resolution)
                self._run_batch(index, temperature, start, bar)
        finally:
            if bar is not None:
                bar.close()
        summary = self._write_scan(now)
        plot_melting_point(summary, self.out / "melting_point.png",
                           title=f"{self.cell.element}: melting point from coexistence runs")
        return summary

    def _run_batch(self, index: int, temperature: float, start: Atoms, bar: Any) -> None:
        config = self.batch_config(index, temperature)
        d = self.batch_dir(index)
        if self.workers == 1:
            flow = Coexistence(config, self.calc, d, progress=self.progress, on_step=self.on_step,
                               on_run=self.on_run)
        else:
            flow = Coexistence(config, None, d, on_run=self.on_run)
        missing = [i for i in range(config.runs) if i not in {o.run for o in flow.outcomes()}]
        if self.workers == 1:
            for i in missing:
                flow.record(flow.coexistence_run(start, i))
                self._write_scan()
                if bar is not None:
                    bar.update(1)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            path = str(self.out / "start.traj")
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx) as pool:
                stores = str(self.stores) if self.learns else None
                jobs = [pool.submit(_pool_run, asdict(config), str(d), i, self.calc, path, stores,
                                    f"b{index:02d}-r{i:03d}") for i in missing]
                for job in as_completed(jobs):
                    flow.record(RunOutcome.from_dict(job.result()))
                    self._write_scan()
                    if bar is not None:
                        bar.update(1)


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, RunOutcome):
        return asdict(v)
    raise TypeError(f"not JSON: {type(v).__name__}")


# ------------------------------------------------------------------ figure
def plot_melting_point(summary: dict[str, Any], path: str | os.PathLike, title: str = "") -> None:
    """Liquid fraction per temperature (binomial error bars, undecided runs marked) with the
    fitted curve and its one-sigma band from the fit's covariance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary["temperatures"] if r["liquid"] + r["solid"] > 0]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if rows:
        t = np.array([r["temperature"] for r in rows])
        n = np.array([r["liquid"] + r["solid"] for r in rows], float)
        p = np.array([r["liquid"] for r in rows]) / n
        err = np.sqrt(np.maximum(p * (1 - p), 0.25 / n) / n)
        ax.errorbar(t, p, yerr=err, fmt="o", color="k", capsize=3, label="liquid fraction (decided runs)")
        for r in summary["temperatures"]:
            if r["undecided"]:
                ax.annotate(f"{r['undecided']} undecided", (r["temperature"], 1.02), ha="center", fontsize=7)
    fit = summary.get("fit")
    if fit is not None and rows:
        lo, hi = min(t.min(), fit["Tm"]) - 30, max(t.max(), fit["Tm"]) + 30
        grid = np.linspace(lo, hi, 200)
        ax.plot(grid, liquid_probability(grid, fit["Tm"], fit["g"]), color="C0",
                label=f"fit: Tm = {fit['Tm']:.0f} +- {fit['Tm_se']:.0f} K")
        cov = fit.get("cov")
        if cov is not None and np.all(np.isfinite(cov)):
            rng = np.random.default_rng(0)
            draws = rng.multivariate_normal([fit["Tm"], math.log(fit["g"])], cov, size=400, check_valid="ignore")
            # a fit this loose (a few runs, ratios alike) draws sharpnesses beyond any float: clip
            curves = np.array([liquid_probability(grid, tm, math.exp(min(max(lg, -50.0), 50.0))) for tm, lg in draws])
            band = np.percentile(curves, [16, 84], axis=0)
            ax.fill_between(grid, band[0], band[1], color="C0", alpha=0.2, label="one-sigma band")
        ax.axvline(fit["Tm"], color="C0", ls=":", lw=1)
    ax.set_xlabel("temperature (K)")
    ax.set_ylabel("liquid fraction")
    ax.set_ylim(-0.05, 1.1)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

