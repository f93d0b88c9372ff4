"""Exact Monte Carlo with a learned screen against the best-tuned target-only Metropolis chain.

Five parts, each writing JSON and a figure into ``benchmarks/results/exact_mc/``:

``exactness``
    A harmonic well whose distribution is known (each coordinate normal with variance
    kT / k), sampled by delayed-acceptance and nested chains screened by a deliberately wrong
    well (off-centre by half a standard deviation, 80% stiffer), and by a chain driven by that
    screen alone.  Kolmogorov-Smirnov p-values against the known distribution, on each chain
    thinned to about independent samples (every 2 tau).

``bounded``
    The same work (molecule, temperature, burn-in and steps) through a ProximaCalculator in its
    bounded-error mode at several step sizes, for the README's comparison.

``moments``
    Long delayed-acceptance chains of one atom in that well: mean and variance of each coordinate
    against the known values, in standard errors (no thinning needed).

``summary``
    Every result above in one table (``summary.json``) and one figure (``efficiency.png``).

``efficiency``
    Molecules with a quantum-chemistry target (methane HF/6-31G* at 500 K and 1000 K, ethanol at
    1000 K): a learned SOAP screen trained during one exact chain's burn-in, then, from the same
    equilibrated state, target-only chains at several step sizes and exact chains at several
    (step size, inner steps), all of the same length.  For each: target calls per effective
    sample (effective samples from the integrated autocorrelation time of the energy and of the
    radius of gyration, the smaller counting); the best of each kind compared, with and without
    the burn-in's target calls spread over the chain; the mean energy and radius of gyration of
    the two best chains compared within their standard errors.

Target calls, not seconds, are the measure: they are what a costly target (DFT, coupled
cluster) makes expensive, and they do not depend on the host's load.  The screen's own seconds
are reported beside them.

    python benchmarks/exact_mc.py exactness
    python benchmarks/exact_mc.py moments --seeds 6 --exactness-steps 100000
    python benchmarks/exact_mc.py efficiency --only methane_500 [--steps 3000]
    python benchmarks/exact_mc.py bounded --only methane_500 [--bound 0.002]   # after efficiency
    python benchmarks/exact_mc.py summary     # summary.json and efficiency.png of every result here
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.build import molecule
from ase.calculators.harmonic import HarmonicCalculator, HarmonicForceField
from ase.units import kB
from scipy import stats

from ase_proxima.targets import make_target
from ase_proxima.workflows.exact_mc import ExactMonteCarlo, effective_samples, tune
from ase_proxima.workflows.mc import MonteCarlo

OUT = Path(__file__).resolve().parent / "results" / "exact_mc"


def _meta() -> dict[str, Any]:
    return {"machine": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": " ".join(sys.argv),
            "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}


# ----------------------------------------------------------------------------- exactness
def _well(atoms: Atoms, shift: float, stiffness: float) -> HarmonicCalculator:
    ref = atoms.copy()
    ref.positions[:, 0] += shift
    return HarmonicCalculator(HarmonicForceField(ref_atoms=ref, ref_energy=0.0,
                                                 hessian_x=stiffness * np.eye(3 * len(atoms))))


def _ks(displacements: np.ndarray, sigma: float) -> tuple[float, int]:
    """KS p-value of every coordinate's displacement against N(0, sigma^2), the chain thinned every
    2 tau (tau of the slowest coordinate); and the number of thinned states."""
    flat = displacements.reshape(len(displacements), -1)
    tau = max(len(flat) / effective_samples(flat[:, i]) for i in range(flat.shape[1]))
    kept = flat[::max(1, math.ceil(2.0 * tau))]
    return float(stats.kstest(kept.ravel(), "norm", args=(0.0, sigma)).pvalue), len(kept)


def exactness(seeds: int, steps: int, temperature: float = 300.0, stiffness: float = 1.0, shift: float = 0.5,
              screen_stiffness: float = 1.8, step: float = 0.75) -> dict[str, Any]:
    """``shift`` (in standard deviations of the target's distribution), ``screen_stiffness`` (a
    multiple of ``stiffness``) and ``step`` (in standard deviations) define the experiment: in those
    units the chains do not depend on the temperature and stiffness themselves."""
    start = Atoms("Ar3", positions=[(0, 0, 0), (3, 0, 0), (0, 3, 0)])
    sigma = math.sqrt(kB * temperature / stiffness)
    step_size = step * sigma
    rows = []
    for kind, inner in (("delayed acceptance", 1), ("nested, 4 inner steps", 4), ("screen alone", 0),
                        ("target alone", 0)):
        for seed in range(seeds):
            a = start.copy()
            target, screen = _well(start, 0.0, stiffness), _well(start, shift * sigma, screen_stiffness * stiffness)
            if inner:
                a.calc = target
                mc = ExactMonteCarlo(a, temperature, step_size, screen=screen, inner_steps=inner, rng=seed)
            else:
                a.calc = screen if kind == "screen alone" else target
                mc = MonteCarlo(a, temperature, step_size, rng=seed)
            seen: list[np.ndarray] = []
            mc.attach(lambda mc=mc, seen=seen: seen.append(mc.atoms.positions - start.positions))
            mc.run(steps)
            p, n = _ks(np.array(seen[1:]), sigma)
            row = {"chain": kind, "seed": seed, "steps": steps, "ks_p": p, "independent_states": n}
            if inner:
                s = mc.stats
                row.update(target_calls=s["target_calls"], first_stage_acceptance=s["first_stage_acceptance"],
                           second_stage_acceptance=s["second_stage_acceptance"])
            rows.append(row)
            print(f"{kind:24s} seed {seed}: p = {p:.3g} ({n} thinned states)", flush=True)
    # an exact chain's p-values are uniform on (0, 1): a few under 0.01 in many seeds are expected,
    # and their uniformity is the sharper test
    verdict = {}
    for kind in dict.fromkeys(r["chain"] for r in rows):
        ps = [r["ks_p"] for r in rows if r["chain"] == kind]
        verdict[kind] = {"passed_p_over_0.01": sum(p > 0.01 for p in ps), "of": seeds, "median_p": float(np.median(ps)),
                         "uniformity_of_p_values_ks_p": float(stats.kstest(ps, "uniform").pvalue)}
    return {"system": "3 atoms in a harmonic well", "temperature_K": temperature, "stiffness_eV_A2": stiffness,
            "step_size_A": step_size, "screen": f"the well off-centre by {shift} sigma along x and {screen_stiffness}x "
            "as stiff", "rows": rows, "verdict": verdict}


def moments(seeds: int, steps: int, temperature: float = 300.0, stiffness: float = 1.0) -> dict[str, Any]:
    """Long delayed-acceptance chains of one atom in the well, screened as in :func:`exactness`,
    and target-only chains as the control: the mean and the variance of each coordinate against
    the known 0 and kT / k, in standard errors (from the effective sample size of each series); a
    test that needs no thinning."""
    sigma = math.sqrt(kB * temperature / stiffness)
    start = Atoms("Ar", positions=[(0.0, 0.0, 0.0)])
    rows = []
    for kind in ("delayed acceptance", "target alone"):
        for seed in range(seeds):
            a = start.copy()
            a.calc = _well(start, 0.0, stiffness)
            if kind == "target alone":
                mc = MonteCarlo(a, temperature, 1.5 * sigma, rng=seed)
            else:
                mc = ExactMonteCarlo(a, temperature, 1.5 * sigma, screen=_well(start, 0.5 * sigma, 1.8 * stiffness),
                                     inner_steps=1, rng=seed)
            seen: list[np.ndarray] = []
            mc.attach(lambda mc=mc, seen=seen: seen.append(mc.atoms.positions[0].copy()))
            mc.run(steps)
            x = np.array(seen[1:])
            z = {}
            for i, axis in enumerate("xyz"):
                for name, series, expected in ((f"mean_{axis}", x[:, i], 0.0),
                                               (f"variance_{axis}", x[:, i] ** 2, sigma**2)):
                    se = float(np.std(series) / math.sqrt(effective_samples(series)))
                    z[name] = float((np.mean(series) - expected) / se)
            rows.append({"chain": kind, "seed": seed, "steps": steps, "z": z})
            print(f"{kind} seed {seed}: " + " ".join(f"{k} {v:+.2f}" for k, v in z.items()), flush=True)
    summary = {}
    for kind in ("delayed acceptance", "target alone"):
        zs = {k: [r["z"][k] for r in rows if r["chain"] == kind] for k in rows[0]["z"]}
        summary[kind] = {"largest_abs_z": max(abs(v) for vs in zs.values() for v in vs),
                         "mean_z_of_means": float(np.mean([v for k, vs in zs.items() if k.startswith("mean") for v in vs])),
                         "mean_z_of_variances": float(np.mean([v for k, vs in zs.items() if k.startswith("var")
                                                                for v in vs]))}
    return {"system": "one atom in a harmonic well", "temperature_K": temperature,
            "screen": "the well off-centre by 0.5 sigma along x and 1.8x as stiff", "rows": rows, "summary": summary}


def plot_exactness(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(result["verdict"])
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for i, kind in enumerate(kinds):
        ps = [max(r["ks_p"], 1e-300) for r in result["rows"] if r["chain"] == kind]
        ax.scatter(np.full(len(ps), i) + np.linspace(-0.15, 0.15, len(ps)), ps, s=14)
    ax.axhline(0.01, color="k", lw=0.8, ls="--", label="p = 0.01")
    ax.set_yscale("log")
    ax.set_xticks(range(len(kinds)), kinds, fontsize=8)
    ax.set_ylabel("KS p-value against the known distribution")
    ax.set_title(f"{result['system']}, screen: {result['screen']}", fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


# ----------------------------------------------------------------------------- efficiency
CASES = {
    "methane_500": ("CH4", "pyscf:hf/6-31g*", 500.0),
    "methane_1000": ("CH4", "pyscf:hf/6-31g*", 1000.0),
    "ethanol_1000": ("CH3CH2OH", "pyscf:hf/6-31g*", 1000.0),
    # beyond the list: another molecule, temperature and basis
    "water_600": ("H2O", "pyscf:hf/sto-3g", 600.0),
}
TARGET_ONLY_STEPS = (0.02, 0.03, 0.05, 0.07, 0.1)
EXACT_SETTINGS = ((0.02, 1), (0.03, 10), (0.03, 25), (0.05, 10), (0.05, 25), (0.03, 50))
#: a smaller grid where a target call costs ten times more (ethanol: 9 atoms, smaller steps)
BOUNDED_STEPS = (0.005, 0.01, 0.02, 0.03, 0.05)
GRIDS = {"ethanol_1000": ((0.01, 0.02, 0.03), ((0.02, 25), (0.03, 25), (0.02, 50)))}


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    """Mean and its standard error, the larger of the two estimates: from the effective sample
    size, and from the means of ten consecutive batches (a short chain's autocorrelation time is
    easily underestimated, and then the first alone is too small)."""
    n_eff = effective_samples(x)
    by_ess = float(np.std(x, ddof=1) / math.sqrt(n_eff)) if n_eff > 1 else math.nan
    batches = np.array([b.mean() for b in np.array_split(x, 10)])
    return float(np.mean(x)), max(by_ess, float(batches.std(ddof=1) / math.sqrt(len(batches))))


def _equipartition(atoms: Atoms, temperature: float) -> dict[str, float]:
    """The target's minimum energy (BFGS from the given state) and the harmonic estimate of the mean
    potential energy above it, (3N - 6) kT / 2: an independent check of both chains' mean
    energy (anharmonicity adds a little at high temperature)."""
    from ase.optimize import BFGS

    a = atoms.copy()
    a.calc = atoms.calc
    BFGS(a, logfile=None).run(fmax=0.001, steps=200)
    return {"minimum_energy": float(a.get_potential_energy()),
            "harmonic_mean_above_minimum": (3 * len(a) - 6) * kB * temperature / 2.0}


def _observables(atoms: Atoms, temperature: float, step_size: float, inner: int, steps: int, screen: Any,
                 seed: int) -> dict[str, np.ndarray]:
    a = atoms.copy()
    a.calc = atoms.calc
    if inner == 0:
        r = MonteCarlo(a, temperature, step_size, rng=seed).run(steps)
        return {"energy": r.energies, "rog": r.rog}
    mc = ExactMonteCarlo(a, temperature, step_size, screen=screen, inner_steps=inner, burn_in=0, rng=seed)
    mc.run(steps)
    return mc.samples()


def efficiency(name: str, steps: int, burn_in: int, seed: int = 0, check_factor: int = 3) -> dict[str, Any]:
    formula, spec, temperature = CASES[name]
    atoms = molecule(formula)
    atoms.calc = make_target(spec)
    t = time.perf_counter()
    learner = ExactMonteCarlo(atoms, temperature, 0.02, inner_steps=10, burn_in=burn_in, rng=seed)
    learner.run(burn_in)
    learning = {k: learner.stats[k] for k in ("target_calls", "screen_fits", "screen_training", "screen_fit_seconds")}
    learning["seconds"] = time.perf_counter() - t
    print(f"{name}: screen learned from {learning['target_calls']} target calls", flush=True)
    alone_steps, exact_settings = GRIDS.get(name, (TARGET_ONLY_STEPS, EXACT_SETTINGS))
    settings = [(s, 0) for s in alone_steps] + list(exact_settings)
    rows = tune(atoms, temperature, settings, steps, screen=learner.screen, rng=seed + 1)
    keep = ("step_size", "inner_steps", "acceptance", "first_stage_acceptance", "second_stage_acceptance",
            "target_calls_sampling", "effective_samples_energy", "effective_samples_rog",
            "target_calls_per_effective_sample", "screen_calls", "screen_seconds", "time_target")
    rows = [{k: r.get(k) for k in keep} for r in rows]
    for r in rows:
        print(f"  step {r['step_size']:.3f} inner {r['inner_steps']:2d}: "
              f"{r['target_calls_per_effective_sample']:.2f} target calls per effective sample", flush=True)
    alone = min((r for r in rows if r["inner_steps"] == 0), key=lambda r: r["target_calls_per_effective_sample"])
    exact = min((r for r in rows if r["inner_steps"] > 0), key=lambda r: r["target_calls_per_effective_sample"])
    with_burn_in = ((exact["target_calls_sampling"] + learning["target_calls"])
                    / min(exact["effective_samples_energy"], exact["effective_samples_rog"]))
    # distributions: the two best settings rerun from the same state on another seed, compared; the
    # target-only chain ``check_factor`` times longer (its effective samples are few)
    check = {}
    for label, r in (("target_alone", alone), ("exact", exact)):
        n = steps * (check_factor if label == "target_alone" else 1)
        obs = _observables(atoms, temperature, r["step_size"], r["inner_steps"], n, learner.screen, seed + 2)
        check[label] = {k: _mean_se(v) for k, v in obs.items()}
        check[label]["histogram_energy"] = obs["energy"].tolist()
        check[label]["histogram_rog"] = obs["rog"].tolist()
    agree = {}
    for k in ("energy", "rog"):
        (m1, s1), (m2, s2) = check["target_alone"][k], check["exact"][k]
        z = abs(m1 - m2) / math.hypot(s1, s2)
        agree[k] = {"target_alone": [m1, s1], "exact": [m2, s2], "z": z, "within_2_se": bool(z <= 2.0)}
    reference = _equipartition(atoms, temperature)
    for label in ("target_alone", "exact"):
        m, se = check[label]["energy"]
        reference[f"{label}_above_minimum"] = [m - reference["minimum_energy"], se]
    return {"case": name, "molecule": formula, "target": spec, "temperature_K": temperature, "steps": steps,
            "burn_in": burn_in, "learning": learning, "rows": rows, "best_target_alone": alone, "best_exact": exact,
            "fewer_target_calls_per_effective_sample": (alone["target_calls_per_effective_sample"]
                                                        / exact["target_calls_per_effective_sample"]),
            "fewer_including_burn_in": alone["target_calls_per_effective_sample"] / with_burn_in,
            "check_steps": {"target_alone": steps * check_factor, "exact": steps},
            "distributions": agree, "equipartition": reference, "samples": {k: {h: v[h] for h in ("histogram_energy", "histogram_rog")}
                                                for k, v in check.items()}}


def check_efficiency(res: dict[str, Any]) -> dict[str, float]:
    """Target calls per effective sample of the two check chains (the target-only one several
    times longer than a tuning chain, so its effective samples are less noisy): from their stored
    series, with the exact chain's target calls per step taken from its tuning row."""
    out = {}
    for label, row in (("target_alone", res["best_target_alone"]), ("exact", res["best_exact"])):
        series = res["samples"][label]
        n = len(series["histogram_energy"])
        ess = min(effective_samples(series["histogram_energy"]), effective_samples(series["histogram_rog"]))
        per_step = row["target_calls_sampling"] / res["steps"]
        out[label] = per_step * n / ess
    out["fewer"] = out["target_alone"] / out["exact"]
    return out


def summarise() -> dict[str, Any]:
    """Every efficiency (and bounded) result in the results folder in one table, and its figure."""
    cases, results = {}, []
    for name in CASES:
        path = OUT / f"{name}.json"
        if not path.exists():
            continue
        res = json.loads(path.read_text())
        results.append(res)
        checked = check_efficiency(res)
        row = {"tuning_chains": {"target_alone": res["best_target_alone"]["target_calls_per_effective_sample"],
                                 "exact": res["best_exact"]["target_calls_per_effective_sample"],
                                 "fewer": res["fewer_target_calls_per_effective_sample"],
                                 "fewer_including_burn_in": res["fewer_including_burn_in"]},
               "check_chains": checked,
               "best_settings": {"target_alone": res["best_target_alone"]["step_size"],
                                 "exact": [res["best_exact"]["step_size"], res["best_exact"]["inner_steps"]]},
               "second_stage_acceptance": res["best_exact"]["second_stage_acceptance"],
               "distributions_z": {k: v["z"] for k, v in res["distributions"].items()},
               "equipartition": res.get("equipartition")}
        bounded_path = OUT / f"{name}_bounded.json"
        if bounded_path.exists():
            b = json.loads(bounded_path.read_text())
            row["bounded"] = {"bound": b["bound"], "step_size": b["best"]["step_size"],
                              "served_fraction": b["best"]["served_fraction"],
                              "target_calls_per_effective_sample": b["best"]["target_calls_per_effective_sample"],
                              "distributions_z": {k: v["z"] for k, v in b["best"]["distributions"].items()}}
        cases[name] = row
    summary = {**_meta(), "cases": cases}
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2))
    if results:
        plot_efficiency(results, OUT / "efficiency.png")
    return summary


def bounded(name: str, bound: float, step_sizes: tuple[float, ...], seed: int = 0) -> dict[str, Any]:
    """The same work in Proxima's bounded-error mode: for each step size a fresh ProximaCalculator
    (its defaults, the bound ``bound``) drives plain Metropolis for this case's burn-in plus steps;
    its target calls after the burn-in (audits and refusals included) per effective sample, and
    its mean energy (served answers) and radius of gyration against the long target-only chain's.
    The start-up's target calls are the burn-in's, as for the exact chain."""
    from ase_proxima import ProximaCalculator

    done = json.loads((OUT / f"{name}.json").read_text())
    formula, spec, temperature = CASES[name]
    steps, burn_in = done["steps"], done["burn_in"]
    rows = []
    for step in step_sizes:
        atoms = molecule(formula)
        calc = ProximaCalculator(target=make_target(spec), error_bound=bound, seed=seed)
        atoms.calc = calc
        mc = MonteCarlo(atoms, temperature, step, rng=seed)
        mc.run(burn_in)
        calls_before = calc.stats["target_calls"]
        r = mc.run(steps)
        energy, rog = r.energies[burn_in:], r.rog[burn_in:]
        ess = min(effective_samples(energy), effective_samples(rog))
        s = calc.stats
        row = {"step_size": step, "target_calls": s["target_calls"],
               "target_calls_sampling": s["target_calls"] - calls_before, "served_fraction": s["served_fraction"],
               "effective_samples": ess, "target_calls_per_effective_sample": (s["target_calls"] - calls_before) / ess,
               "distributions": {}}
        for k, series in (("energy", energy), ("rog", rog)):
            m, se = _mean_se(series)
            m0, se0 = done["distributions"][k]["target_alone"]
            row["distributions"][k] = {"bounded": [m, se], "target_alone": [m0, se0],
                                       "z": abs(m - m0) / math.hypot(se, se0)}
        rows.append(row)
        print(f"  bounded {bound} eV, step {step}: {row['served_fraction']:.0%} served, "
              f"{row['target_calls_per_effective_sample']:.2f} target calls per effective sample", flush=True)
    best = min(rows, key=lambda r: r["target_calls_per_effective_sample"])
    return {"case": name, "bound": bound, "steps": steps, "burn_in": burn_in, "rows": rows, "best": best,
            "best_exact_target_calls_per_effective_sample": done["best_exact"]["target_calls_per_effective_sample"],
            "best_target_alone_target_calls_per_effective_sample":
                done["best_target_alone"]["target_calls_per_effective_sample"]}


def plot_efficiency(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 3, figsize=(11, 3.2 * len(results)), squeeze=False)
    for row, res in zip(axes, results):
        labels = [f"{r['step_size']:.2f}/{r['inner_steps']}" for r in res["rows"]]
        colours = ["tab:grey" if r["inner_steps"] == 0 else "tab:blue" for r in res["rows"]]
        row[0].bar(range(len(labels)), [r["target_calls_per_effective_sample"] for r in res["rows"]], color=colours)
        row[0].set_xticks(range(len(labels)), labels, rotation=60, fontsize=7)
        row[0].set_yscale("log")
        row[0].set_ylabel("target calls / effective sample")
        row[0].set_title(f"{res['case']}: grey target alone, blue exact (step/inner)", fontsize=8)
        ref = res.get("equipartition")
        zero = ref["minimum_energy"] if ref else 0.0
        for ax, key, unit in ((row[1], "histogram_energy", "energy above the minimum (eV)" if ref else "energy (eV)"),
                              (row[2], "histogram_rog", "Rg (A)")):
            for label, colour in (("target_alone", "tab:grey"), ("exact", "tab:blue")):
                values = np.asarray(res["samples"][label][key]) - (zero if key == "histogram_energy" else 0.0)
                ax.hist(values, bins=40, density=True, histtype="step", color=colour, label=label.replace("_", " "))
            if ref and key == "histogram_energy":
                ax.axvline(ref["harmonic_mean_above_minimum"], color="k", lw=0.8, ls="--", label="(3N-6)kT/2")
            ax.set_xlabel(unit)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=("exactness", "moments", "efficiency", "bounded", "summary"))
    ap.add_argument("--bound", type=float, default=0.002, help="bounded: Proxima's error bound, eV")
    ap.add_argument("--only", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--steps", type=int, default=3000, help="efficiency: steps per chain")
    ap.add_argument("--burn-in", type=int, default=300, help="efficiency: steps the screen learns for")
    ap.add_argument("--seeds", type=int, default=10, help="exactness: chains per kind")
    ap.add_argument("--exactness-steps", type=int, default=20000)
    ap.add_argument("--temperature", type=float, default=300.0, help="exactness: K")
    ap.add_argument("--stiffness", type=float, default=1.0, help="exactness: the well's, eV/A^2")
    ap.add_argument("--screen-shift", type=float, default=0.5, help="exactness: the screen's offset, in sigma")
    ap.add_argument("--screen-stiffness", type=float, default=1.8, help="exactness: the screen's, a multiple")
    ap.add_argument("--step", type=float, default=0.75, help="exactness: step size, in sigma")
    ap.add_argument("--tag", default="", help="suffix of the output files")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    if args.part == "moments":
        result = {**_meta(), **moments(args.seeds, args.exactness_steps)}
        (OUT / "moments.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result["summary"], indent=1))
        return
    if args.part == "exactness":
        result = {**_meta(), **exactness(args.seeds, args.exactness_steps, args.temperature, args.stiffness,
                                             args.screen_shift, args.screen_stiffness, args.step)}
        name = f"exactness{'_' + args.tag if args.tag else ''}"
        (OUT / f"{name}.json").write_text(json.dumps(result, indent=2))
        plot_exactness(result, OUT / f"{name}.png")
        print(json.dumps(result["verdict"], indent=2))
        return
    if args.part == "summary":
        print(json.dumps(summarise()["cases"], indent=1))
        return
    if args.part == "bounded":
        for name in args.only:
            res = {**_meta(), **bounded(name, args.bound, BOUNDED_STEPS)}
            (OUT / f"{name}_bounded.json").write_text(json.dumps(res, indent=2))
            print(f"{name}: best bounded {res['best']['target_calls_per_effective_sample']:.2f} target calls per "
                  f"effective sample (step {res['best']['step_size']}), exact "
                  f"{res['best_exact_target_calls_per_effective_sample']:.2f}, target alone "
                  f"{res['best_target_alone_target_calls_per_effective_sample']:.2f}", flush=True)
        return
    results = []
    for name in args.only:
        res = {**_meta(), **efficiency(name, args.steps, args.burn_in)}
        (OUT / f"{name}.json").write_text(json.dumps(res, indent=2))
        results.append(res)
        print(f"{name}: {res['fewer_target_calls_per_effective_sample']:.2f}x fewer target calls per effective "
              f"sample ({res['fewer_including_burn_in']:.2f}x with the burn-in); distributions "
              f"{ {k: round(v['z'], 2) for k, v in res['distributions'].items()} }", flush=True)
    summarise()


if __name__ == "__main__":
    main()
