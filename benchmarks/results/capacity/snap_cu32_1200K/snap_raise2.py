"""Periodic Cu32 at 1200 K (SNAP ensemble, EMT target, forces_mean bound), with and without raise_capacity;
true served error from an independent EMT on every served call."""
import warnings, numpy as np, sys, json, time
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.units import fs
from ase_proxima import ProximaCalculator
from ase_proxima.metrics import compute_error
from ase_proxima.validation import ServedTruth
bound, steps, T, raise_ = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
calc = atoms.calc = ProximaCalculator(target=EMT(), error_bound=bound, error_metric="forces_mean", seed=0,
                                      cost_aware=False, raise_capacity=raise_)
ref = EMT()
MaxwellBoltzmannDistribution(atoms, temperature_K=T, rng=np.random.default_rng(0))
md = Langevin(atoms, 2 * fs, temperature_K=T, friction=0.02, fixcm=False, rng=np.random.default_rng(1))
truth = ServedTruth(calc, lambda: compute_error("forces_mean", {"forces": atoms.get_forces()}, {"forces": ref.get_forces(atoms)}, len(atoms)))
md.attach(truth)
t = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    md.run(steps)
s = calc.stats
e = np.array(truth.errors)
print(json.dumps({"raise": raise_, "T": T, "bound": bound, "served": s["surrogate_calls"] / s["calls"], "raises": s["capacity_raises"],
                  "episodes": s["capacity_episodes"], "true_over_bound": float(e.mean() / bound) if e.size else None,
                  "worst_block": max(float(e[i:i + 100].mean()) for i in range(0, max(e.size - 50, 1), 100)) / bound if e.size else None,
                  "upper_over_bound": s["served_error_upper"] / bound, "wall_s": time.perf_counter() - t}))
