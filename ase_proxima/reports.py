"""``ase-proxima report``: a PNG and a small HTML page for a run directory or a sweep.

A run directory (``stats.json`` and ``store/`` of demo / mc / a sweep task) gets the run's
panels (threshold and alpha, error against the bound, surrogate usage, time breakdown) and its
statistics.  An exact Monte Carlo run (``mc --method exact``) gets its chain's energy and radius
of gyration per step, the burn-in shaded, and the chain's statistics.  A sweep directory
(``results.csv``) gets the thesis's figures: speed-up per temperature with the harmonic mean over
temperatures, achieved error over bound against the bound, and per method the radius of gyration
(Monte Carlo) or the liquid ratio (SLUSCHI) per temperature with error bars.
"""
from __future__ import annotations

import csv
import html
import json
import math
import os
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["report", "report_exact", "report_run", "report_store", "report_sweep", "store_stats"]


def report(path: str | os.PathLike) -> list[Path]:
    """Write the report of ``path`` (a run, a sweep, or a store made from Python); returns the
    files written."""
    path = Path(path)
    if (path / "results.csv").exists():
        return report_sweep(path)
    if (path / "stats.json").exists():
        return report_run(path)
    if (path / "calls.csv").exists() or (path / "store.json").exists():
        return report_store(path)
    raise FileNotFoundError(f"{path} holds neither a run (stats.json), a sweep (results.csv) nor a run store")


def store_stats(store_dir: str | os.PathLike) -> dict[str, Any]:
    """The statistics a calculator would show, read from a store's saved state (the store is
    only read; it may be in use)."""
    from .store import RunStore

    state = RunStore(store_dir, readonly=True).read_state()
    if state is None:
        raise ValueError(f"{store_dir} holds no run state yet")
    params = state.parameters
    return {**state.restore_tally().summary(), "target_calls": state.target.get("calls", 0),
            "target_failures": state.target.get("failures", 0), "training_total": state.training.get("total"),
            "fits": state.training.get("fits"), "fit_failures": state.training.get("fit_failures"),
            "error_bound": params.get("error_bound", math.nan), "error_metric": params.get("error_metric", "energy"),
            "threshold": state.controller.get("threshold"), "alpha": state.controller.get("alpha")}


def report_store(store_dir: str | os.PathLike) -> list[Path]:
    """``report.png`` and ``report.html`` beside a store a script wrote (``ProximaCalculator(store=...)``)."""
    from .plots import plot_run
    from .store import RunStore

    store_dir = Path(store_dir)
    stats = store_stats(store_dir)
    log = RunStore(store_dir, readonly=True).read_log()
    title = textwrap.fill(f"{store_dir.name}: {stats['calls']} calls, {stats['served_fraction']:.0%} served, "
                          f"bound {stats['error_bound']}", 100)
    png = store_dir / "report.png"
    plot_run(log, float(stats["error_bound"]), png, title=title, stats=stats)
    page = store_dir / "report.html"
    _html(page, title, png.name, [("", {f"stats.{k}": v for k, v in stats.items()})])
    return [png, page]


def _table(table: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
    if isinstance(table, Mapping):
        return "<table>" + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_cell(v))}</td></tr>"
                                   for k, v in table.items()) + "</table>"
    cols = list(table[0]) if table else []
    return ("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in cols) + "</tr>"
                      for r in table) + "</table>")


def _html(path: Path, title: str, image: str,
          sections: Sequence[tuple[str, Mapping[str, Any] | Sequence[Mapping[str, Any]]]]) -> None:
    body = "".join((f"<h2>{html.escape(h)}</h2>" if h else "") + _table(t) for h, t in sections)
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                    "<style>body{font-family:sans-serif;margin:2em} table{border-collapse:collapse;font-size:90%}"
                    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}</style></head><body>"
                    f"<h1>{html.escape(title)}</h1><img src='{html.escape(image)}' style='max-width:100%'>"
                    + body + "</body></html>")


def _perf_rows(perf: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per (part, device) of a run's ``perf_prediction``."""
    rows = []
    for part, entry in perf.get("parts", {}).items():
        for dev, d in entry["devices"].items():
            rows.append({"part": part, "device": dev, "calls": entry["calls"], "roofline_s": d["roofline_s"],
                         "expected_s": d.get("expected_s"), "bound": d["bound"], "run_total_s": d["run_total_s"]})
    return rows


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else str(v)


def report_run(run: str | os.PathLike) -> list[Path]:
    """``report.png`` and ``report.html`` in the run directory."""
    from .calllog import CallLog
    from .plots import plot_run

    run = Path(run)
    rep = json.loads((run / "stats.json").read_text())
    if "exact" in rep:
        return report_exact(run, rep)
    stats = rep.get("stats")
    log_path = run / "store" / "calls.csv"
    if stats is None or not log_path.exists():
        raise ValueError(f"{run} has no Proxima statistics or call log (a baseline run has nothing to report)")
    log = CallLog.read_csv(log_path)
    title = textwrap.fill(f"{run.name}: {stats['calls']} calls, {stats['served_fraction']:.0%} served, "
                          f"bound {stats['error_bound']}", 100)
    png = run / "report.png"
    plot_run(log, float(stats["error_bound"]), png, title=title, stats=stats)
    page = run / "report.html"
    table = {k: v for k, v in rep.items() if k not in ("stats", "perf_prediction", "job", "config")}
    table.update({f"stats.{k}": v for k, v in stats.items()})
    sections: list[tuple[str, Any]] = [("", table)]
    perf = _perf_rows(rep.get("perf_prediction", {}))
    if perf:
        sections.append((f"Predicted time of the GPU-able parts: {rep['perf_prediction']['note']}", perf))
    _html(page, title, png.name, sections)
    return [png, page]


def report_exact(run: Path, rep: Mapping[str, Any]) -> list[Path]:
    """An exact Monte Carlo run: the state's energy and radius of gyration per step (the burn-in,
    during which the screen learned, shaded) and the chain's statistics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ase.io.trajectory import Trajectory

    from .workflows.mc import radius_of_gyration

    energy, rog, current = [], [], None
    with Trajectory(run / "mc.traj", "r") as frames:
        for i in range(len(frames)):
            rec = frames[i]
            if current is None or rec.info["accepted"]:
                current = rec
            energy.append(current.get_potential_energy())
            rog.append(radius_of_gyration(current))
    e = rep["exact"]
    title = textwrap.fill(f"{run.name}: exact chain, {e['steps']} steps, {e['target_calls']} target calls, "
                          f"{e['target_calls_per_effective_sample']:.3g} per effective sample", 100)
    fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    for ax, values, label in ((axes[0], energy, "energy (eV)"), (axes[1], rog, "radius of gyration (A)")):
        ax.plot(np.arange(len(values)) - 1, values, lw=0.7)
        ax.axvspan(-1, e["burn_in"], color="0.85", label="burn-in (the screen learns)")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    axes[1].set_xlabel("step")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    png = run / "report.png"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    page = run / "report.html"
    table = {k: v for k, v in rep.items() if k not in ("exact", "job")}
    _html(page, title, png.name, [("", table), ("Exact chain", dict(e))])
    return [png, page]


def _read_rows(root: Path) -> list[dict[str, Any]]:
    with open(root / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k, v in r.items():
            try:
                r[k] = float(v) if v not in ("", None) else None
            except ValueError:
                pass
    return [r for r in rows if r.get("status") == "ok"]


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    a = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
    if not a.size:
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def sweep_tables(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-temperature speed-ups, achieved/bound per bound and ROG per temperature and method."""
    rows = [{**r, "temperature": r.get("temperature") or r.get("temperature_K"), "seed": r.get("seed", 0)}
            for r in rows]
    baseline = {(r["temperature"], r["seed"]): r for r in rows if r.get("method") == "baseline"}
    speed = defaultdict(lambda: defaultdict(list))  # kind -> T -> values
    for r in rows:
        if r.get("method") == "baseline" or not r.get("target_calls"):
            continue
        speed["target calls saved (calls / target calls)"][r["temperature"]].append(r["calls"] / r["target_calls"])
        b = baseline.get((r["temperature"], r["seed"]))
        if b is not None and r.get("wall_time_s"):
            speed["wall time (baseline / this)"][r["temperature"]].append(b["wall_time_s"] / r["wall_time_s"])
    achieved = defaultdict(list)
    for r in rows:
        if r.get("method") != "baseline" and r.get("served_error") is not None and r.get("error_bound"):
            achieved[r["error_bound"]].append(r["served_error"] / r["error_bound"])
    rog = defaultdict(lambda: defaultdict(list))
    liquid = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.get("mean_rog_A") is not None:
            rog[r.get("method") or "proxima"][r["temperature"]].append(r["mean_rog_A"])
        if r.get("liquid_ratio") is not None:
            liquid[r.get("method") or "proxima"][r["temperature"]].append(r["liquid_ratio"])
    return {"speedup": speed, "achieved_over_bound": achieved, "rog": rog, "liquid_ratio": liquid}


def report_sweep(root: str | os.PathLike) -> list[Path]:
    """``report.png`` and ``report.html`` in the sweep directory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = Path(root)
    rows = _read_rows(root)
    if not rows:
        raise ValueError(f"{root}/results.csv has no finished task")
    t = sweep_tables(rows)
    observables = [(k, label) for k, label in (("rog", "mean radius of gyration (A)"),
                                                ("liquid_ratio", "liquid ratio (SLUSCHI runs ending liquid)"))
                   if t[k]]
    fig, axes = plt.subplots(1, 2 + len(observables), figsize=(5 * (2 + len(observables)), 4.5),
                             constrained_layout=True)
    ax = axes[0]
    for label, per_t in t["speedup"].items():
        temps = sorted(per_t)
        ms = [_mean_sd(per_t[x]) for x in temps]
        ax.errorbar(temps, [m for m, _ in ms], yerr=[s for _, s in ms], fmt="o-", capsize=3, label=label)
        means = [m for m, _ in ms if m > 0]
        if means:
            hm = len(means) / sum(1 / m for m in means)
            ax.axhline(hm, ls="--", lw=1, color=ax.lines[-1].get_color(), label=f"harmonic mean {hm:.2f}")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xlabel("temperature (K)")
    ax.set_ylabel("speed-up")
    ax.set_title("speed-up per temperature\n(mean +- sd over seeds)", fontsize=11)
    ax.legend(fontsize=8)
    ax = axes[1]
    bounds = sorted(t["achieved_over_bound"])
    for b in bounds:
        vals = t["achieved_over_bound"][b]
        ax.scatter([b] * len(vals), vals, s=12, color="tab:blue", alpha=0.6)
    if bounds:
        ms = [_mean_sd(t["achieved_over_bound"][b]) for b in bounds]
        ax.errorbar(bounds, [m for m, _ in ms], yerr=[s for _, s in ms], fmt="o-", color="tab:blue", capsize=3,
                    label="served error / bound (audited)")
        ax.set_xscale("log")
        ax.set_xlim(bounds[0] / 2, bounds[-1] * 2)
    ax.axhline(1.0, color="k", ls=":", label="bound")
    ax.set_xlabel("error bound")
    ax.set_ylabel("achieved / bound")
    ax.set_title("achieved error over bound")
    ax.legend(fontsize=8)
    for ax, (key, label) in zip(axes[2:], observables):
        for method, per_t in sorted(t[key].items()):
            temps = sorted(per_t)
            ms = [_mean_sd(per_t[x]) for x in temps]
            ax.errorbar(temps, [m for m, _ in ms], yerr=[s for _, s in ms], fmt="o-", capsize=3, label=method)
        ax.set_xlabel("temperature (K)")
        ax.set_ylabel(label)
        ax.set_title(f"{label.split(' (')[0]} per method\n(mean +- sd over seeds)", fontsize=11)
        if key == "liquid_ratio":
            ax.set_ylim(-0.05, 1.05)
        ax.legend(fontsize=8)
    fig.suptitle(f"{root.name}: {len(rows)} finished tasks")
    png = root / "report.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    page = root / "report.html"
    _html(page, f"sweep {root.name}", png.name, [("finished tasks", rows)])
    return [png, page]
