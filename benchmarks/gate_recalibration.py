"""Would a per-regime recalibration of the gate signal pick more accurate calls than the raw
uncertainty?  A replay on hot clusters where the SOAP model is at its floor.

The gate serves the calls whose uncertainty u is under a threshold the controller moves.  A
*global* recalibration of u (a conformal map from u to an error quantile) is a monotone map, so it
serves exactly the calls a moved threshold would: it cannot change which calls are picked.  Only a
recalibration that differs between regions of configuration space can.  This replay measures
whether one would: an EMT Langevin trajectory (the truth on every frame), a SOAP + Bayesian ridge
model refitted every ``--refit`` frames on the frames compared so far (the first 20, then every
``--every``-th, as target calls and audits would give it), and on every other frame u and the true
error.  Regimes are k-means clusters of an averaged SOAP vector over the compared frames; each
regime's factor is its mean log(error / u) over past comparisons, shrunk to the global mean.

Per 100-frame block: Spearman(u, error) raw and recalibrated, and the mean true error of the
most certain ``--keep`` share picked by each, against all frames and the oracle (the truly
smallest errors).  Writes ``recalibration.json`` and ``recalibration.png``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gate_recalibration.py [--seeds 2]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BLOCK = 100

# system -> (element, lattice constant, temperature K)
SYSTEMS = {"cu38_900K": ("Cu", 3.61, 900.0), "ni38_1000K": ("Ni", 3.52, 1000.0), "au38_800K": ("Au", 4.08, 800.0)}


def trajectory(system: str, steps: int, seed: int) -> list:
    """Frames of a Langevin run on EMT, each with its EMT forces."""
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.cluster import Octahedron
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.units import fs

    element, a, temperature = SYSTEMS[system]
    atoms = Octahedron(element, 4, cutoff=1, latticeconstant=a)
    atoms.calc = EMT()
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=np.random.default_rng(seed))
    md = Langevin(atoms, 2 * fs, temperature_K=temperature, friction=0.02, fixcm=False,
                  rng=np.random.default_rng(seed + 1000))
    frames = []

    def keep() -> None:
        frame = atoms.copy()
        frame.calc = SinglePointCalculator(frame, energy=atoms.get_potential_energy(), forces=atoms.get_forces())
        frames.append(frame)

    md.attach(keep)
    md.run(steps)
    return frames


def replay(frames: list, refit: int, every: int, regimes: int, shrink: float) -> dict[str, np.ndarray]:
    """u, true error and the recalibrated score of every frame not compared, in order."""
    from dscribe.descriptors import SOAP
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    from ase_proxima.metrics import compute_error
    from ase_proxima.surrogates import SOAPBayesianRidge
    from ase_proxima.uncertainty import EnsembleUncertainty

    species = sorted(set(frames[0].get_chemical_symbols()))
    soap = SOAP(species=species, r_cut=5.0, n_max=4, l_max=3, average="inner", periodic=False)
    features = np.asarray(soap.create(frames))
    score = EnsembleUncertainty("forces_mean").score
    compared: list[int] = list(range(20))
    comp_u: list[float] = []
    comp_e: list[float] = []
    out: dict[str, list[float]] = {"u": [], "error": [], "calibrated": [], "frame": []}
    model = None
    for t in range(20, len(frames)):
        if model is None or (t - 20) % refit == 0:
            model = SOAPBayesianRidge().fit([frames[i] for i in compared],
                                            [{"energy": frames[i].get_potential_energy(),
                                              "forces": frames[i].get_forces()} for i in compared])
            factors = None
            if len(comp_u) >= 2 * regimes:
                scaler = StandardScaler().fit(features[compared[20:]])
                km = KMeans(regimes, n_init=4, random_state=0).fit(scaler.transform(features[compared[20:]]))
                ratio = np.log(np.asarray(comp_e) / np.asarray(comp_u))
                labels = km.labels_
                overall = float(ratio.mean())
                factors = np.array([(ratio[labels == k].sum() + shrink * overall) / ((labels == k).sum() + shrink)
                                    for k in range(regimes)])
        frame = frames[t]
        prediction = model.predict(frame)
        u = score(frame, prediction)
        e = compute_error("forces_mean", prediction.results, {"forces": frame.get_forces()}, len(frame))
        if (t - 20) % every == 0:  # a comparison: measured before the model learns the frame
            comp_u.append(u)
            comp_e.append(max(e, 1e-12))
            compared.append(t)
            continue
        calibrated = u
        if factors is not None:
            k = int(km.predict(scaler.transform(features[t:t + 1]))[0])
            calibrated = u * float(np.exp(factors[k]))
        out["u"].append(u)
        out["error"].append(e)
        out["calibrated"].append(calibrated)
        out["frame"].append(t)
    return {k: np.asarray(v) for k, v in out.items()}


def block_scores(rows: dict[str, np.ndarray], keep: float) -> dict[str, Any]:
    """Per block: rank correlations and the mean error of the kept share under each ordering."""
    from scipy.stats import spearmanr

    blocks: dict[str, list[float]] = {k: [] for k in ("rho_raw", "rho_calibrated", "all", "raw", "calibrated", "oracle")}
    frames = rows["frame"]
    for start in range(int(frames.min()), int(frames.max()) + 1, BLOCK):
        sel = (frames >= start) & (frames < start + BLOCK)
        if sel.sum() < 20:
            continue
        u, e, c = rows["u"][sel], rows["error"][sel], rows["calibrated"][sel]
        n = max(1, int(round(keep * sel.sum())))
        blocks["rho_raw"].append(float(spearmanr(u, e)[0]))
        blocks["rho_calibrated"].append(float(spearmanr(c, e)[0]))
        blocks["all"].append(float(e.mean()))
        blocks["raw"].append(float(e[np.argsort(u)[:n]].mean()))
        blocks["calibrated"].append(float(e[np.argsort(c)[:n]].mean()))
        blocks["oracle"].append(float(np.sort(e)[:n].mean()))
    return {k: float(np.mean(v)) for k, v in blocks.items()} | {"blocks": len(blocks["all"])}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(result["cases"])
    arms = ("all", "raw", "calibrated", "oracle")
    labels = ("every frame", f"most certain {result['keep']:.0%} by u", "... by recalibrated u", "oracle")
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.2
    for j, (arm, label) in enumerate(zip(arms, labels)):
        ax.bar(np.arange(len(cases)) + (j - 1.5) * width, [result["cases"][c][arm] for c in cases], width, label=label)
    ax.set_xticks(np.arange(len(cases)), cases, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("mean true force error per 100-frame block (eV/A)")
    ax.set_title("Which frames would a gate pick: raw against per-regime recalibrated uncertainty")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--refit", type=int, default=50, help="frames between refits")
    ap.add_argument("--every", type=int, default=10, help="every n-th frame is compared and learned")
    ap.add_argument("--regimes", type=int, default=4)
    ap.add_argument("--shrink", type=float, default=10.0, help="pseudo-counts pulling a regime to the global factor")
    ap.add_argument("--keep", type=float, default=0.6, help="share of each block the gate would serve")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "capacity" / "recalibration"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cases: dict[str, Any] = {}
    for system in args.systems:
        for seed in range(args.seeds):
            rows = replay(trajectory(system, args.steps, seed), args.refit, args.every, args.regimes, args.shrink)
            cases[f"{system} seed {seed}"] = block_scores(rows, args.keep)
            print(f"{system} seed {seed}: " + ", ".join(f"{k} {v:.4g}" for k, v in cases[f'{system} seed {seed}'].items()),
                  flush=True)
    result = {"benchmark": "gate_recalibration", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"platform": platform.platform(), "cpus": __import__("os").cpu_count()},
              "settings": {k: v for k, v in vars(args).items() if k not in ("out", "systems")},
              "keep": args.keep, "cases": cases}
    (out / "recalibration.json").write_text(json.dumps(result, indent=1))
    plot(result, out / "recalibration.png")


if __name__ == "__main__":
    main()
