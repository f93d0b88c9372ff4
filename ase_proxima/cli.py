"""The ``ase-proxima`` command.

``ase-proxima demo``: a short real run -- Langevin molecular dynamics of a
13-atom copper cluster with ASE's EMT as the target, through
ProximaCalculator under a force error bound -- written to a run directory
(store, stats JSON, plot), with the served error checked against the target on
every served step.

``ase-proxima mc``: Metropolis Monte Carlo of a molecule with any target
(``emt``, ``pyscf:hf/6-31g*``, ...), as the target alone (``--method
baseline``), with a fixed threshold (``fixed``) or under Proxima's controller
(``proxima``), written to a run directory (trajectory, call log, stats, plot); ``--resume``
continues a killed walk; ``--baseline xtb:gfn2`` puts a cheap model under the surrogate.

``ase-proxima sluschi``: the small-cell solid-liquid coexistence workflow for
an fcc metal (aluminium by default) with an EMT target, as the target alone,
with a fixed threshold or under Proxima, written to a run directory (start
cell, one line per finished run, summary, plot); ``--resume`` continues an
interrupted study.

``ase-proxima melt``: the melting point of an fcc metal (or of a close-packed crystal given as a
structure file) with its standard error, from a first guess: SLUSCHI's scan of coexistence
runs (temperatures chosen toward a liquid ratio of one half, then around the fitted melting
point), as the target alone (``--method baseline``) or with Proxima: one learner for the whole
scan, or with ``--workers`` processes a learner per run that starts from every target result of
the scan so far; resumable, and extended by running it again with more ``--temperatures``.

``ase-proxima learn-curve``: held-out error against training size on a trajectory's
structures, learning the target and (``--baseline``) target minus a baseline: what a
baseline buys, seen before a long run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main"]


def _run_job(job_class: type, params: dict, out: str, overwrite: bool, resume: bool, quiet: bool) -> int:
    """Check the inputs, prepare the run directory, run the job, print its summary."""
    from .baseline import BaselineError
    from .locking import DirectoryInUse
    from .workflows.job import prepare_run_dir
    from .workflows.sluschi import CellNotMelted

    try:
        job = job_class.from_params(**params)
        job.check()  # refuse a bad molecule or target before touching the run directory
        if not resume:
            prepare_run_dir(out, overwrite)
        report = job.run(out, progress=not quiet)
    except (ValueError, FileExistsError, DirectoryInUse, BaselineError, CellNotMelted) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(job.summary(report, out))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .workflows.demo_job import DemoJob

    params = dict(error_bound=args.error_bound, metric=args.metric, steps=args.steps, temperature=args.temperature,
                  timestep=args.timestep, seed=args.seed, threads=args.threads, cost_aware=args.cost_aware)
    return _run_job(DemoJob, params, args.out, args.overwrite, False, args.quiet)


def _perf(args: argparse.Namespace) -> int:
    from .perf.annotate import annotate_run, format_annotation

    devices = args.device or ["cpu", "A100", "H100", "H200"]
    try:
        ann = annotate_run(args.run, devices)
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(ann, indent=1, default=float) if args.json else format_annotation(ann))
    return 0


_ERROR_SCALE_HELP = ("eV/A (eV for energy): the largest error a served answer may have, which the certified bound "
                     "assumes (default: ten times the bound)")

_SWEEP_DEFAULTS = {"mc": {"temperature": [300.0, 500.0], "error_bound": [0.002], "target": "pyscf:hf/6-31g*"},
                   "sluschi": {"temperature": [950.0], "error_bound": [0.05], "target": "emt"}}


def _parse_setting(text: str) -> tuple[str, object]:
    """``key=value`` of ``sweep --set``: an int, a float, a comma-separated tuple of ints, or text."""
    if "=" not in text:
        raise ValueError(f"--set needs KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    for cast in (int, float):
        try:
            return key.replace("-", "_"), cast(value)
        except ValueError:
            pass
    if "," in value:
        try:
            return key.replace("-", "_"), [tuple(int(v) for v in value.split(","))]
        except ValueError:
            pass
    return key.replace("-", "_"), value


def _sweep(args: argparse.Namespace) -> int:
    from .locking import DirectoryInUse
    from .workflows.sweep import grid, local_executor, make_job, parsl_executor, run_sweep, sweep_lock

    defaults = _SWEEP_DEFAULTS[args.workflow]
    axes = {"temperature": args.temperature or defaults["temperature"], "seed": args.seed, "method": args.method,
            "error_bound": args.error_bound or defaults["error_bound"], "target": args.target or defaults["target"]}
    if args.workflow == "mc":
        axes.update(molecule=args.molecule, steps=args.steps, step_size=args.step_size)
    if args.threshold is not None:
        axes["threshold"] = args.threshold
    if args.threads != 1:
        axes["threads"] = args.threads
    try:
        axes.update(dict(_parse_setting(t) for t in args.set))
        tasks = grid(args.workflow, **axes)
        for t in tasks:
            make_job(t)  # refuse bad parameters before anything runs
        make_job(tasks[0]).check()
    except (ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        with sweep_lock(out):  # before any worker starts: a second sweep here stops at once
            executor = (parsl_executor(args.workers, run_dir=out / "parsl") if args.executor == "parsl"
                        else local_executor(args.workers))
            with executor:
                rows = run_sweep(tasks, out, executor=executor, progress=not args.quiet)
    except DirectoryInUse as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    failed = [r for r in rows if r.get("status") != "ok"]
    print(f"{len(rows) - len(failed)} of {len(tasks)} tasks finished, {len(failed)} failed; "
          f"table {out / 'results.csv'}")
    for r in failed:
        print(f"  failed: {r['key']}: {r.get('error')}", file=sys.stderr)
    return 1 if failed else 0


def _report(args: argparse.Namespace) -> int:
    from .reports import report

    code = 0
    for run in args.dirs:
        try:
            files = report(run)
        except (FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            code = 2
            continue
        print("wrote " + ", ".join(str(f) for f in files))
    return code


def _mc(args: argparse.Namespace) -> int:
    from .workflows.mc_job import MCJob

    params = dict(molecule=args.molecule, target=args.target, method=args.method, temperature=args.temperature,
                  steps=args.steps, step_size=args.step_size, error_bound=args.error_bound, threshold=args.threshold,
                  retrain=args.retrain, uncertainty=args.uncertainty, audit_fraction=args.audit_fraction,
                  error_scale=args.error_scale, train_forces=args.train_forces, seed=args.seed, threads=args.threads,
                  cost_aware=args.cost_aware, baseline=args.baseline, inner_steps=args.inner_steps,
                  burn_in=args.burn_in)
    return _run_job(MCJob, params, args.out, args.overwrite, args.resume, args.quiet)


def _sluschi(args: argparse.Namespace) -> int:
    from .workflows.sluschi_job import SluschiJob

    params = dict(target=args.target, method=args.method, error_bound=args.error_bound, metric=args.metric,
                  threshold=args.threshold, audit_fraction=args.audit_fraction, error_scale=args.error_scale,
                  element=args.element, lattice_constant=args.lattice_constant, size=tuple(args.size),
                  temperature=args.temperature,
                  melt_temperature=args.melt_temperature, timestep=args.timestep,
                  equilibrate_steps=args.equilibrate_steps, melt_steps=args.melt_steps, run_steps=args.run_steps,
                  runs=args.runs, average_steps=args.average_steps, seed=args.seed, threads=args.threads,
                  cost_aware=args.cost_aware, baseline=args.baseline)
    return _run_job(SluschiJob, params, args.out, args.overwrite, args.resume, args.quiet)


def _melt(args: argparse.Namespace) -> int:
    from .workflows.melt_job import MeltJob

    params = dict(target=args.target, method=args.method, error_bound=args.error_bound, metric=args.metric,
                  audit_fraction=args.audit_fraction, error_scale=args.error_scale, workers=args.workers,
                  guess=args.guess, runs=args.runs, temperatures=args.temperatures, step=args.step,
                  resolution=args.resolution,
                  target_se=args.target_se, seed=args.seed, element=args.element, structure=args.structure,
                  lattice_constant=args.lattice_constant, size=tuple(args.size), timestep=args.timestep,
                  melt_temperature=args.melt_temperature, melt_steps=args.melt_steps,
                  run_steps=args.run_steps, average_steps=args.average_steps, extend_steps=args.extend_steps,
                  max_extensions=args.max_extensions, threads=args.threads, cost_aware=args.cost_aware)
    return _run_job(MeltJob, params, args.out, args.overwrite, args.resume, args.quiet)


def _learn_curve(args: argparse.Namespace) -> int:
    """Held-out error against training size on a trajectory's structures, as the target itself and
    (with ``--baseline``) as target minus the baseline."""
    from ase.io import read

    from .baseline import make_baseline
    from .learning_curve import label, learning_curve, plot_learning_curves
    from .store import atomic_write
    from .targets import make_target

    try:
        images = read(args.trajectory, index=":")
        target = make_target(args.target)
        baseline = make_baseline(args.baseline) if args.baseline else None
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    step = max(1, len(images) // (max(args.sizes) + args.held_out))
    images = images[::step]
    if len(images) < max(args.sizes) + args.held_out:
        print(f"error: {args.trajectory} holds {len(images)} structures, fewer than the largest size "
              f"({max(args.sizes)}) plus --held-out ({args.held_out})", file=sys.stderr)
        return 2
    properties = ("energy", "forces") if args.forces else ("energy",)
    truth = label(target, images, properties, progress=not args.quiet)
    curves = {args.target: learning_curve(images, truth, args.sizes, args.held_out, progress=not args.quiet)}
    if baseline is not None:
        curves[f"{args.target} - {args.baseline}"] = learning_curve(images, truth, args.sizes, args.held_out,
                                                                    baseline=baseline, progress=not args.quiet)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"command": " ".join(sys.argv), "trajectory": str(args.trajectory), "structures": len(images),
              "target": args.target, "baseline": args.baseline, "energy_mae_goal": args.mae,
              "curves": {k: {**c.todict(), "structures_needed": c.structures_needed(args.mae)}
                         for k, c in curves.items()}}
    atomic_write(out / "learning_curve.json", json.dumps(report, indent=1).encode())
    plot_learning_curves(curves, out / "learning_curve.png", title=Path(args.trajectory).name, target_mae=args.mae)
    for name, c in curves.items():
        need = c.structures_needed(args.mae)
        print(f"{name}: held-out energy MAE {', '.join(f'{n}: {e * 1000:.3g}' for n, e in zip(c.sizes, c.energy_mae))}"
              f" meV; {args.mae * 1000:g} meV reached with "
              + (f"{need} structures" if need is not None else f"none of the sizes up to {max(args.sizes)}"))
    print(f"wrote {out}/learning_curve.json, learning_curve.png")
    return 0


_HELP = argparse.ArgumentDefaultsHelpFormatter


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="ase-proxima", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"ase-proxima {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", formatter_class=_HELP, help="short real run: Cu13 Langevin MD with an EMT target")
    demo.add_argument("--steps", type=int, default=500)
    demo.add_argument("--temperature", type=float, default=300.0, help="K")
    demo.add_argument("--timestep", type=float, default=2.0, help="fs")
    demo.add_argument("--error-bound", type=float, default=0.2, help="eV/A")
    demo.add_argument("--metric", choices=("forces_max", "forces_mean"), default="forces_max")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--threads", type=int, default=1, help="threads per process (BLAS, OpenMP, PySCF)")
    demo.add_argument("--cost-aware", action="store_true",
                      help="keep the cost rule on: against EMT (as fast as the surrogate) every call then goes to "
                           "the target; by default the demo lets EMT stand in for a costly target")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--overwrite", action="store_true", help="replace an earlier demo run in --out")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_demo)

    mc = sub.add_parser("mc", formatter_class=_HELP, help="Metropolis Monte Carlo of a molecule, target alone or through Proxima")
    mc.add_argument("--molecule", default="CH4", help="a name of ase.build.molecule")
    mc.add_argument("--target", default="pyscf:hf/6-31g*", help="emt | pyscf:hf/BASIS | pyscf:dft/XC/BASIS")
    mc.add_argument("--method", choices=("proxima", "fixed", "baseline", "exact"), default="proxima",
                    help="proxima: bounded-error answers; fixed: a fixed threshold; baseline: the target alone; "
                         "exact: the target's own distribution, proposals screened by a surrogate it learns")
    mc.add_argument("--inner-steps", type=int, default=25,
                    help="exact: surrogate steps per target evaluation (1: delayed acceptance, more: a nested chain, "
                         "whose larger moves per target call pay where the surrogate is good)")
    mc.add_argument("--burn-in", type=int, default=None,
                    help="exact: steps the surrogate learns for, then frozen (default 300, not samples)")
    mc.add_argument("--temperature", type=float, default=500.0, help="K")
    mc.add_argument("--steps", type=int, default=1000)
    mc.add_argument("--step-size", type=float, default=0.003, help="largest displacement per component, A")
    mc.add_argument("--error-bound", type=float, default=0.002, help="eV")
    mc.add_argument("--threshold", type=float, default=None, help="initial T (proxima) or the fixed T")
    mc.add_argument("--retrain", type=int, default=None, help="refit every k new points (default lazy)")
    mc.add_argument("--uncertainty", choices=("posterior", "distance"), default="posterior")
    mc.add_argument("--audit-fraction", type=float, default=0.05)
    mc.add_argument("--error-scale", type=float, default=None, help=_ERROR_SCALE_HELP)
    mc.add_argument("--train-forces", action="store_true",
                    help="also ask the target for forces on its calls, for training (costs about 2x per HF call)")
    mc.add_argument("--seed", type=int, default=0)
    mc.add_argument("--threads", type=int, default=1, help="threads per process (BLAS, OpenMP, PySCF)")
    mc.add_argument("--no-cost-aware", dest="cost_aware", action="store_false",
                    help="serve whatever the target costs (a cheap target standing in for a costly one); by "
                         "default calls go straight to the target while serving cannot pay")
    mc.add_argument("--baseline", default=None, metavar="SPEC",
                    help="a cheap model under the surrogate, which then learns target minus baseline: xtb:gfn2, "
                         "xtb:gfn1 (tblite) or a target spec (not --method baseline, the target alone)")
    mc.add_argument("--out", default="runs/mc")
    mc.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    mc.add_argument("--resume", action="store_true", help="continue the walk in --out (after a kill) to --steps")
    mc.add_argument("--quiet", action="store_true", help="no progress bar")
    mc.set_defaults(func=_mc)

    sl = sub.add_parser("sluschi", formatter_class=_HELP, help="solid-liquid coexistence runs of an fcc metal (SLUSCHI method)")
    sl.add_argument("--element", default="Al")
    sl.add_argument("--lattice-constant", type=float, default=3.994, help="A (ASE EMT's Al)")
    sl.add_argument("--size", type=int, nargs=3, default=(4, 4, 4), help="fcc cells before doubling along z")
    sl.add_argument("--target", default="emt", help="emt (ASE) | asap3 (ASAP's EMT: not the same numbers)")
    sl.add_argument("--method", choices=("proxima", "fixed", "baseline"), default="proxima")
    sl.add_argument("--temperature", type=float, default=950.0, help="coexistence temperature, K")
    sl.add_argument("--melt-temperature", type=float, default=2000.0, help="K")
    sl.add_argument("--timestep", type=float, default=4.0, help="fs")
    sl.add_argument("--equilibrate-steps", type=int, default=500)
    sl.add_argument("--melt-steps", type=int, default=1000)
    sl.add_argument("--run-steps", type=int, default=3000)
    sl.add_argument("--average-steps", type=int, default=250, help="steps per averaged snapshot")
    sl.add_argument("--runs", type=int, default=20)
    sl.add_argument("--error-bound", type=float, default=0.05,
                    help="eV/A (the SNAP ensemble's mean force error on coexisting Al is about 0.03)")
    sl.add_argument("--metric", choices=("forces_mean", "forces_max"), default="forces_mean")
    sl.add_argument("--threshold", type=float, default=None, help="initial T (proxima) or the fixed T, eV/A")
    sl.add_argument("--audit-fraction", type=float, default=0.05)
    sl.add_argument("--error-scale", type=float, default=None, help=_ERROR_SCALE_HELP)
    sl.add_argument("--seed", type=int, default=0)
    sl.add_argument("--threads", type=int, default=1, help="threads per process (BLAS, OpenMP, PySCF)")
    sl.add_argument("--no-cost-aware", dest="cost_aware", action="store_false",
                    help="serve whatever the target costs (a cheap target standing in for a costly one); by "
                         "default calls go straight to the target while serving cannot pay")
    sl.add_argument("--baseline", default=None, metavar="SPEC",
                    help="a cheap model under the surrogate, which then learns target minus baseline: a target "
                         "spec or xtb:gfn2 (not --method baseline, the target alone)")
    sl.add_argument("--out", default="runs/sluschi")
    sl.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    sl.add_argument("--resume", action="store_true", help="continue the runs already in --out")
    sl.add_argument("--quiet", action="store_true", help="no progress bars")
    sl.set_defaults(func=_sluschi)

    me = sub.add_parser("melt", formatter_class=_HELP,
                        help="the melting point of an fcc metal or a close-packed crystal from a scan of "
                             "coexistence runs (SLUSCHI), with its standard error")
    me.add_argument("--element", default=None, help="an fcc metal (default Al)")
    me.add_argument("--lattice-constant", type=float, default=None,
                    help="A (default: the target's own at zero pressure, from an energy-volume fit)")
    me.add_argument("--structure", default=None,
                    help="a file with a crystal's cell (any ASE format) instead of --element: another "
                         "close-packed crystal or an ordered alloy, repeated --size times")
    me.add_argument("--guess", type=float, required=True, help="first guess of the melting point, K")
    me.add_argument("--target", default="asap3", help="asap3 (ASAP's EMT) | emt (ASE's) | a LAMMPS target spec")
    me.add_argument("--method", choices=("proxima", "baseline"), default="proxima",
                    help="baseline: the target alone")
    me.add_argument("--error-bound", type=float, default=0.06, help="eV/A, on the served forces")
    me.add_argument("--metric", choices=("forces_mean", "forces_max"), default="forces_mean")
    me.add_argument("--audit-fraction", type=float, default=0.05)
    me.add_argument("--error-scale", type=float, default=None, help=_ERROR_SCALE_HELP)
    me.add_argument("--size", type=int, nargs=3, default=(3, 3, 3), help="fcc cells before doubling along z")
    me.add_argument("--runs", type=int, default=8, help="coexistence runs per temperature")
    me.add_argument("--temperatures", type=int, default=5, help="temperatures (batches of runs) at most")
    me.add_argument("--step", type=float, default=50.0, help="K: the move while the crossing is not bracketed")
    me.add_argument("--resolution", type=float, default=5.0, help="K: temperatures are rounded to this")
    me.add_argument("--target-se", type=float, default=0.0, help="K: stop once Tm's standard error is this small")
    me.add_argument("--timestep", type=float, default=4.0, help="fs")
    me.add_argument("--melt-temperature", type=float, default=None,
                    help="K: the new half of the cell is melted at this (default: twice the guess)")
    me.add_argument("--melt-steps", type=int, default=1000)
    me.add_argument("--run-steps", type=int, default=1500)
    me.add_argument("--average-steps", type=int, default=250, help="steps per averaged snapshot")
    me.add_argument("--extend-steps", type=int, default=500, help="steps added to a run the movement left undecided")
    me.add_argument("--max-extensions", type=int, default=2, help="after these, the structure decides")
    me.add_argument("--workers", type=int, default=1,
                    help="processes for a batch's runs (with Proxima, a learner per run, each starting from the "
                         "scan's target results so far)")
    me.add_argument("--seed", type=int, default=0)
    me.add_argument("--threads", type=int, default=1, help="threads per process (BLAS, OpenMP)")
    me.add_argument("--no-cost-aware", dest="cost_aware", action="store_false",
                    help="serve whatever the target costs (a cheap target standing in for a costly one)")
    me.add_argument("--out", default="runs/melt")
    me.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    me.add_argument("--resume", action="store_true", help="continue the scan already in --out")
    me.add_argument("--quiet", action="store_true", help="no progress bars")
    me.set_defaults(func=_melt)

    sw = sub.add_parser("sweep", formatter_class=_HELP, help="a grid of MC or SLUSCHI runs (temperatures x seeds x methods x bounds) on "
                                      "a process pool or Parsl; re-running skips finished tasks")
    sw.add_argument("workflow", choices=("mc", "sluschi"))
    sw.add_argument("--temperature", type=float, nargs="+", help="K (default: mc 300 500, sluschi 950)")
    sw.add_argument("--seed", type=int, nargs="+", default=[0, 1])
    sw.add_argument("--threads", type=int, default=1, help="threads per task process (BLAS, OpenMP, PySCF)")
    sw.add_argument("--method", nargs="+", choices=("proxima", "fixed", "baseline"), default=["proxima"])
    sw.add_argument("--error-bound", type=float, nargs="+", help="eV (mc, default 0.002) or eV/A (sluschi, 0.05)")
    sw.add_argument("--threshold", type=float, default=None, help="the fixed T (method fixed) or initial T")
    sw.add_argument("--target", help="default: mc pyscf:hf/6-31g*, sluschi emt")
    sw.add_argument("--molecule", default="CH4", help="mc only")
    sw.add_argument("--steps", type=int, default=1000, help="mc only")
    sw.add_argument("--step-size", type=float, default=0.003, help="A, mc only")
    sw.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="any other job parameter, fixed for every task (repeatable), e.g. runs=20 "
                         "size=4,4,4 run_steps=3000 audit_fraction=0.1")
    sw.add_argument("--executor", choices=("local", "parsl"), default="local",
                    help="local process pool, or Parsl's HighThroughputExecutor (local workers)")
    sw.add_argument("--workers", type=int, default=2)
    sw.add_argument("--out", default="runs/sweep")
    sw.add_argument("--quiet", action="store_true", help="no progress bar")
    sw.set_defaults(func=_sweep)

    lc = sub.add_parser("learn-curve", formatter_class=_HELP,
                        help="held-out error against training size on a trajectory, with and without a baseline")
    lc.add_argument("trajectory", help="any file ase.io.read reads (structures are thinned evenly to what is needed)")
    lc.add_argument("--target", default="pyscf:hf/6-31g*", help="a target spec (see mc --target)")
    lc.add_argument("--baseline", default=None, metavar="SPEC", help="xtb:gfn2, xtb:gfn1 or a target spec")
    lc.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20, 40, 80], help="training-set sizes")
    lc.add_argument("--held-out", type=int, default=50, help="structures the errors are measured on")
    lc.add_argument("--forces", action="store_true", help="learn and score forces too (the target computes them)")
    lc.add_argument("--mae", type=float, default=0.001, help="held-out energy MAE to reach, eV")
    lc.add_argument("--out", default="runs/learn-curve")
    lc.add_argument("--quiet", action="store_true", help="no progress bars")
    lc.set_defaults(func=_learn_curve)

    rep = sub.add_parser("report", formatter_class=_HELP, help="report.png and report.html for run or sweep directories")
    rep.add_argument("dirs", nargs="+", metavar="DIR", help="run directories (stats.json, store/) or sweep directories (results.csv)")
    rep.set_defaults(func=_report)

    perf = sub.add_parser("perf", formatter_class=_HELP, help="performance prediction for a finished run")
    perf_sub = perf.add_subparsers(dest="perf_command", required=True)
    ann = perf_sub.add_parser("annotate", formatter_class=_HELP, help="predicted time of a run's GPU-able parts on other devices")
    ann.add_argument("run", help="a run directory written by demo, mc or sluschi (stats.json and store/)")
    ann.add_argument("--device", action="append",
                     help="P100, V100, A100, H100, H200, cpu or cpu-<N>t (repeatable; default cpu A100 H100 H200)")
    ann.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ann.set_defaults(func=_perf)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "steps", 1) < 1 or getattr(args, "runs", 1) < 1:
        print("error: --steps and --runs must be >= 1", file=sys.stderr)
        return 2
    bounds = getattr(args, "error_bound", 1.0)
    if any(b is not None and b <= 0 for b in (bounds if isinstance(bounds, list) else [bounds])):
        print("error: --error-bound must be > 0", file=sys.stderr)
        return 2
    methods = getattr(args, "method", None)
    if "fixed" in (methods if isinstance(methods, list) else [methods]) and args.threshold is None:
        print("error: --method fixed needs --threshold", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
