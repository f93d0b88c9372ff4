"""Melting point of asap3-EMT aluminium from one SLUSCHI scan each: the target alone and Proxima.

    .venv/bin/python benchmarks/melt_al.py target      # the target alone
    .venv/bin/python benchmarks/melt_al.py proxima     # one ProximaCalculator for the whole scan
    .venv/bin/python benchmarks/melt_al.py summary     # the comparison: JSON and figure
    .venv/bin/python benchmarks/melt_al.py balance     # the learner's solid-liquid energy balance

Both scans use :class:`ase_proxima.workflows.melt.MeltingPoint` with the same cell, run length,
guess, temperature rule and seeds (each run's velocities come from the scan seed, the batch and
the run).  Proxima's scan has one calculator and one store for every run and temperature; its
served answers are checked against an independent asap3 target at the end of every MD step the
surrogate answered (the second of the two force calls ASE's Berendsen barostat makes per step:
a stated sample of half the calls).  Resumable: run the same command again after a kill, and
extended by running it again with more ``--temperatures``.  Cases of one's own: ``--element``
(another fcc metal) or ``--structure`` (a crystal cell file, e.g. ``benchmarks/data/cu3au_l12.cif``),
``--error-scale`` (the largest served error the certificates assume), with their own ``--out``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from ase.io import read  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ase_proxima import ProximaCalculator  # noqa: E402
from ase_proxima.targets import make_target  # noqa: E402
from ase_proxima.validation import RunForcesCheck, labelled, phase_balance  # noqa: E402
from ase_proxima.workflows.melt import MeltingPoint, ScanConfig, liquid_probability  # noqa: E402
from ase_proxima.workflows.sluschi import Coexistence, CoexistenceConfig, read_crystal  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "melt_al"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def configs(args: argparse.Namespace) -> tuple[CoexistenceConfig, ScanConfig]:
    structure = str(Path(args.structure).resolve()) if args.structure else None
    element = read_crystal(structure).get_chemical_formula(mode="reduce") if structure else args.element
    cell = CoexistenceConfig(element=element, lattice_constant=args.lattice_constant, size=tuple(args.size),
                             structure=structure,
                             melt_temperature=args.melt_temperature,
                             run_steps=args.run_steps, average_steps=args.average_steps,
                             extend_steps=args.extend_steps, max_extensions=args.max_extensions)
    scan = ScanConfig(guess=args.guess, runs=args.runs, temperatures=args.temperatures, step=args.step,
                      resolution=args.resolution, seed=args.seed)
    return cell, scan


def _truth_check(calc, out: Path) -> RunForcesCheck:
    """The served answer of every MD step's last force call against an independent target: its
    forces, and the pressure served with them (the barostat's input)."""
    return RunForcesCheck(calc, make_target("asap3"), out / "truth.jsonl", metrics=("forces_mean",), pressure=True)


def run_scan(args: argparse.Namespace) -> dict:
    out = Path(args.out) / args.method
    cell, scan = configs(args)
    start = out / "start.traj"
    if not start.exists():  # both scans start from one cell, prepared by the target
        shared = Path(args.out) / "start"
        MeltingPoint(cell, scan, make_target("asap3"), shared, progress=not args.quiet).prepare()
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared / "start.traj", start)
    t0 = time.perf_counter()
    check = None
    if args.method == "target" or args.report_only:  # a report reads the directory: no store is opened
        calc = make_target("asap3")
        flow = MeltingPoint(cell, scan, calc, out, progress=not args.quiet)
        check = _truth_check(calc, out) if args.method == "proxima" else None
    else:
        calc = ProximaCalculator(target=make_target("asap3"), error_bound=args.error_bound,
                                 error_scale=args.error_scale, error_metric="forces_mean", cost_aware=False,
                                 seed=args.seed, store=out / "store")
        check = _truth_check(calc, out)
        flow = MeltingPoint(cell, scan, calc, out, progress=not args.quiet, on_step=check.step, on_run=check.run)
    summary = flow.summary() if args.report_only else flow.run()
    wall = time.perf_counter() - t0
    outcomes = [o for b in flow.batches() for o in b["outcomes"]]
    runs = []
    prev = None
    truth = {}
    if check is not None:
        for r in RunForcesCheck.read(check.path):
            truth[(r["seed"], r["temperature"])] = r  # a redone run (after a kill) keeps its last record
    for o in outcomes:
        row = {"temperature": o.temperature, "run": o.run, "seed": o.seed, "verdict": o.verdict,
               "decided_by": o.decided_by, "movement_label": o.label, "structure_label": o.structure_label,
               "extensions": o.extensions, "steps": o.steps}
        s = o.calc_stats
        if s.get("calls") is not None:
            base = prev if prev is not None and s["calls"] > prev["calls"] else None
            calls = s["calls"] - (base["calls"] if base else 0)
            served = s["surrogate_calls"] - (base["surrogate_calls"] if base else 0)
            row.update(calls=calls, target_calls=s["target_calls"] - (base["target_calls"] if base else 0),
                       served_fraction=served / calls if calls else None)
            prev = s
        t = truth.get((o.seed, o.temperature))
        if t is not None and t["checked_steps"]:
            row.update(checked_steps=t["checked_steps"],
                       served_forces_mean_true=t["forces_mean_sum"] / t["checked_steps"],
                       worst_step_forces_mean=t["forces_mean_max"])
            if t.get("pressure_checked_steps"):  # records from before the pressure check have none
                row.update(served_pressure_error_GPa=t["pressure_error_GPa_sum"] / t["pressure_checked_steps"],
                           worst_step_pressure_error_GPa=t["pressure_error_GPa_abs_max"])
        if o.certificate:  # the run's own certified served error (every served call of the run)
            row.update(served_error_upper_run=o.certificate["served_error_upper"],
                       served_error_unbiased_run=o.certificate["served_error_unbiased"],
                       audits_run=o.certificate["audits"])
        runs.append(row)
    result = {"benchmark": "melt_al", "method": args.method, "date": _now(), "machine": platform.platform(),
              "cpus": os.cpu_count(), "command": " ".join(sys.argv), "target": "asap3",
              "atoms": len(read(out / "start.traj")), "cell": vars(args), "scan": summary, "runs": runs,
              "wall_s_this_process": wall}
    if check is not None:
        # the calculator's statistics as of the last finished run (a report on a scan still running
        # or killed reads them from that run's record)
        st = outcomes[-1].calc_stats if args.report_only else calc.stats
        result["stats"] = {k: st[k] for k in ("calls", "target_calls", "surrogate_calls", "audits", "served_fraction",
                                              "served_error", "served_error_se", "served_error_upper",
                                              "confidence_level", "error_bound", "time_target", "time_surrogate",
                                              "time_training", "time_uncertainty") if k in st}
        checked = [r for r in runs if r.get("checked_steps")]
        n = sum(r["checked_steps"] for r in checked)
        result["truth"] = {
            "sample": "the last force call of every MD step the surrogate answered, against a separate asap3 target",
            "checked_steps": n,
            "served_forces_mean_true": sum(r["served_forces_mean_true"] * r["checked_steps"] for r in checked) / n
            if n else None,
            "worst_run": max((r["served_forces_mean_true"] for r in checked), default=None),
            "runs_over_bound": sum(r["served_forces_mean_true"] > args.error_bound for r in checked),
            "runs_checked": len(checked),
            "runs_over_their_certificate": sum(r["served_forces_mean_true"] > r["served_error_upper_run"]
                                               for r in checked if r.get("served_error_upper_run") is not None)}
        with_p = [r for r in checked if r.get("served_pressure_error_GPa") is not None]
        if with_p:  # the served pressure, served minus true: what the barostat held the cell at
            result["truth"].update(
                pressure_runs_checked=len(with_p),
                served_pressure_error_GPa=sum(r["served_pressure_error_GPa"] * r["checked_steps"] for r in with_p)
                / sum(r["checked_steps"] for r in with_p),
                served_pressure_error_GPa_by_run={"min": min(r["served_pressure_error_GPa"] for r in with_p),
                                                  "max": max(r["served_pressure_error_GPa"] for r in with_p)})
        if not args.report_only:
            calc.close()
    out.mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"{args.method}.json").write_text(json.dumps(result, indent=1, default=float))
    return result


def summarise(args: argparse.Namespace) -> dict:
    """The comparison; a Proxima scan not yet finished (``--report-only``) is compared run by run
    with the target's runs of the same temperature and seed, and gets a fit once it has one."""
    res = {m: json.loads((Path(args.out) / f"{m}.json").read_text()) for m in ("target", "proxima")}
    fits = {m: r["scan"]["fit"] for m, r in res.items()}
    target_runs = {(r["temperature"], r["seed"]): r for r in res["target"]["runs"]}
    pairs = [(target_runs[(r["temperature"], r["seed"])]["verdict"], r["verdict"]) for r in res["proxima"]["runs"]
             if (r["temperature"], r["seed"]) in target_runs]
    st = res["proxima"]["stats"]
    overhead = st["time_surrogate"] + st["time_training"] + st["time_uncertainty"]
    dft = args.dft_seconds
    proxima_hours = (st["target_calls"] * dft + overhead) / 3600
    alone_hours = st["calls"] * dft / 3600
    served = [r["served_fraction"] for r in res["proxima"]["runs"] if r.get("served_fraction") is not None]
    # the target-only scan calls its target bare, uncounted: two force calls a step (ASE's Berendsen
    # barostat) and one at the start, as the Proxima runs counted theirs
    extra = {r["calls"] - 2 * r["steps"] for r in res["proxima"]["runs"] if r.get("calls") is not None}
    target_calls = {"force_calls": sum(2 * r["steps"] + 1 for r in res["target"]["runs"]),
                    "counted_as": "2 per MD step + 1 per run, from each run's steps",
                    "proxima_runs_calls_minus_2_steps": sorted(extra)}
    summary = {
        "benchmark": "melt_al summary", "date": _now(), "machine": platform.platform(), "command": " ".join(sys.argv),
        "finished": {m: bool(r["scan"]["done"]) for m, r in res.items()},
        "runs": {m: len(r["runs"]) for m, r in res.items()},
        "Tm": {m: None if f is None else {k: f[k] for k in ("Tm", "Tm_se", "g")} for m, f in fits.items()},
        "paired_runs": {"pairs": len(pairs), "same_verdict": sum(a == b for a, b in pairs),
                        "target_liquid": sum(a == "liquid" for a, _ in pairs),
                        "proxima_liquid": sum(b == "liquid" for _, b in pairs)},
        "served_fraction_scan": st["served_fraction"],
        "served_fraction_per_run": {"min": min(served), "median": float(np.median(served)), "max": max(served)},
        "proxima_target_calls": st["target_calls"], "proxima_calls": st["calls"],
        "target_only_scan_calls": target_calls,
        "target_calls_ratio": target_calls["force_calls"] / st["target_calls"],
        "served_error_true": res["proxima"]["truth"],
        "served_error_audited": st["served_error"],
        "served_error_certified_upper": st["served_error_upper"], "error_bound": st["error_bound"],
        "per_run_certificate": res["proxima"]["scan"].get("certified"),
        "undecided_share": {m: {f"{t['temperature']:g}": t["undecided_share"] for t in r["scan"]["temperatures"]}
                            for m, r in res.items()},
        "projection": {"label": "projection, not a measurement", "dft_seconds_per_call_stated": dft,
                       "proxima_hours": proxima_hours, "same_trajectory_target_only_hours": alone_hours,
                       "speedup_same_trajectory": alone_hours / proxima_hours},
    }
    truth = res["proxima"]["truth"]
    acceptance = {
        "served_fraction_at_least_0.95": st["served_fraction"] >= 0.95,
        "every_run_true_served_error_under_bound": truth["runs_over_bound"] == 0
        and truth["runs_checked"] == len(res["proxima"]["runs"]),
        "undecided_at_most_0.1_everywhere": all(t["undecided_share"] is None or t["undecided_share"] <= 0.1
                                                for r in res.values() for t in r["scan"]["temperatures"]),
    }
    # Tm compares only where both fits have an error bar (perfectly separated counts have none)
    if all(f is not None and math.isfinite(f["Tm_se"]) for f in fits.values()):
        d = fits["proxima"]["Tm"] - fits["target"]["Tm"]
        se = math.hypot(fits["proxima"]["Tm_se"], fits["target"]["Tm_se"])
        summary.update(Tm_difference=d, combined_se=se, within_10K=abs(d) <= 10, within_2_combined_se=abs(d) <= 2 * se)
        acceptance.update(Tm_within_10K=abs(d) <= 10, Tm_within_2_combined_se=abs(d) <= 2 * se)
    else:
        acceptance.update(Tm_within_10K=None, Tm_within_2_combined_se=None)
    summary["acceptance"] = acceptance
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    plot(res, Path(args.out) / "melting_point.png")
    print(json.dumps(summary, indent=1, default=float))
    return summary


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (m, r), colour, shift in zip(res.items(), ("k", "C1"), (-1.0, 1.0)):
        rows = [t for t in r["scan"]["temperatures"] if t["liquid"] + t["solid"] > 0]
        t = np.array([x["temperature"] for x in rows]) + shift
        n = np.array([x["liquid"] + x["solid"] for x in rows], float)
        p = np.array([x["liquid"] for x in rows]) / n
        err = np.sqrt(np.maximum(p * (1 - p), 0.25 / n) / n)
        fit = r["scan"]["fit"]
        label = "target alone" if m == "target" else f"Proxima ({r['stats']['served_fraction']:.1%} served)"
        label += f", {len(r['runs'])} runs" + (f": Tm = {fit['Tm']:.0f} +- {fit['Tm_se']:.0f} K" if fit else "")
        ax.errorbar(t, p, yerr=err, fmt="o" if m == "target" else "s", color=colour, capsize=3, label=label)
        if fit:
            grid = np.linspace(min(t) - 30, max(t) + 30, 200)
            ax.plot(grid, liquid_probability(grid, fit["Tm"], fit["g"]), color=colour, lw=1)
    ax.set_xlabel("temperature (K)")
    ax.set_ylabel("liquid fraction of decided runs")
    cell = res["target"]["cell"]
    ax.set_title(f"asap3-EMT {cell.get('element', 'Al')}, {res['target']['atoms']} atoms: one SLUSCHI scan each",
                 fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_ylim(-0.05, 1.1)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def learner_balance(args: argparse.Namespace, per_phase: int = 12) -> dict:
    """Does the scan's learner keep the target's solid-liquid balance?  A SNAP ensemble (the
    calculator's default) fitted on every target result in the Proxima store, tested on the
    final cells of the target scan's runs that ended solid and that ended liquid (up to
    ``per_phase`` each, in batch order): energy bias per atom, force error and pressure bias
    per phase.  An energy bias that favours one phase by d meV/atom moves Tm by about d over the
    entropy of fusion (about 0.1 meV/K per atom here), so by about 10 K per meV/atom."""
    from ase_proxima.store import RunStore
    from ase_proxima.surrogates import SNAPEnsemble

    train = RunStore(Path(args.out) / "proxima" / "store", readonly=True).training()
    model = SNAPEnsemble(seed=args.seed)
    model.fit([a for a, _ in train], [r for _, r in train])
    cells: dict[str, list] = {"solid": [], "liquid": []}
    for b in sorted((Path(args.out) / "target").glob("batch*")):
        for o in Coexistence.read_outcomes(b):
            if o.verdict in cells and len(cells[o.verdict]) < per_phase:
                cells[o.verdict].append(read(b / f"run{o.run:03d}_final.traj"))
    target = make_target("asap3")
    res: dict = {"benchmark": "melt_al balance", "date": _now(), "command": " ".join(sys.argv),
                 "training_points": len(train)}
    res.update(phase_balance(lambda a: model.predict(a).results,
                             {phase: labelled(items, target) for phase, items in cells.items()}))
    (Path(args.out) / "balance.json").write_text(json.dumps(res, indent=1))
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("method", choices=("target", "proxima", "summary", "balance"))
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--element", default="Al", help="another fcc metal for a case of one's own")
    p.add_argument("--lattice-constant", type=float, default=3.994, help="A, of the element under the target")
    p.add_argument("--structure", default=None, help="a crystal cell file instead of fcc --element (an alloy)")
    p.add_argument("--melt-temperature", type=float, default=2000.0, help="K: the start cell's liquid half")
    p.add_argument("--size", type=int, nargs=3, default=(3, 3, 3))
    p.add_argument("--run-steps", type=int, default=1000)
    p.add_argument("--average-steps", type=int, default=250)
    p.add_argument("--extend-steps", type=int, default=500)
    p.add_argument("--max-extensions", type=int, default=2)
    p.add_argument("--guess", type=float, default=900.0)
    p.add_argument("--runs", type=int, default=6)
    p.add_argument("--temperatures", type=int, default=12)
    p.add_argument("--step", type=float, default=40.0)
    p.add_argument("--resolution", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--error-bound", type=float, default=0.06, help="forces_mean, eV/A")
    p.add_argument("--error-scale", type=float, default=None,
                   help="eV/A: the largest served error the certificates assume (default: ten times the bound)")
    p.add_argument("--dft-seconds", type=float, default=600.0, help="stated cost of one DFT-class call (projection)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--report-only", action="store_true",
                   help="write the method's JSON from the runs on disk, running nothing (a scan not yet finished)")
    args = p.parse_args()
    if args.method == "summary":
        summarise(args)
    elif args.method == "balance":
        print(json.dumps(learner_balance(args), indent=1))
    else:
        run_scan(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
