"""Methane 1000 K walks side by side: the target alone, Proxima ('auto' threads), Proxima (None)."""
import sys, json
sys.path.insert(0, "/work/main/benchmarks")
import cost
from ase.build import molecule
from ase_proxima import ProximaCalculator
from ase_proxima.targets import make_target
spec, ch4 = "pyscf:hf/6-31g*", molecule("CH4")
cost._warm(spec, ch4)
steps = int(sys.argv[1]); T = float(sys.argv[2])
for rep in range(int(sys.argv[3])):
    calcs = {k: ProximaCalculator(target=make_target(spec), error_bound=0.002, seed=0, target_threads=v)
             for k, v in (("auto", "auto"), ("none", None))}
    times, served = cost._mc_walks(ch4, spec, calcs, steps, T, 0.02, seed=1)
    out = {"rep": rep, "alone_per_step_ms": 1000 * (times["target"] - times["driver"]) / steps}
    for k, c in calcs.items():
        s = c.stats
        out[k] = {"speedup": round(times["target"] / times[k], 3), "served": s["surrogate_calls"],
                  "target_calls": s["target_calls"], "ms_per_target_call": round(1000 * s["time_target"] / s["target_calls"], 2),
                  "threads": s["target_threads"]}
    print(json.dumps(out), flush=True)
