"""One methane 0.02 A Monte Carlo case, side by side (cost.py's harness), on the tree in PYTHONPATH."""
import json, sys
sys.path.insert(0, sys.argv[1] + "/benchmarks")
import cost
from ase.build import molecule
from ase_proxima import ProximaCalculator
from ase_proxima.targets import make_target
T, bound, reps = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
spec, ch4 = "pyscf:hf/6-31g*", molecule("CH4")
cost._warm(spec, ch4)
for r in range(reps):
    calc = ProximaCalculator(target=make_target(spec), error_bound=bound, seed=0)
    tt, tp, served, driver = cost._mc_side_by_side(ch4, spec, calc, 1000, T, 0.02, seed=1)
    s = calc.stats
    print(json.dumps({"tree": sys.argv[1], "T": T, "bound": bound, "speedup": round(tt / tp, 3),
                      "served": round(s["surrogate_calls"] / s["calls"], 3), "target_calls": s["target_calls"],
                      "fits": s["fits"], "idle_calls": s["idle_calls"], "threads": s["target_threads"],
                      "uref": s.get("refits_on_risen_uncertainty")}), flush=True)
