"""Own case for the uncertainty-rise refit: another element and range on the coverage harness's ramp."""
import json, sys
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
import served_coverage as sc
from ase.build import bulk
element, a, t0, t1, bound, rule = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6] == "on"
sc.RAMP_K = (t0, t1)
sc._md_atoms = lambda system: (bulk(element, "fcc", a=a, cubic=True).repeat((3, 3, 3)), t0)
if not rule:
    from ase_proxima.staleness import UncertaintyRise
    UncertaintyRise.risen = property(lambda self: False)
for seed in range(int(sys.argv[7])):
    r = sc.run_one("cu108_ramp", bound, seed)
    print(json.dumps({"element": element, "T": [t0, t1], "bound": bound, "rule": rule, "seed": seed,
                      "worst_block": r["worst_block_over_bound"], "true_over_bound": r["true_over_bound"],
                      "served_fraction": r["served_fraction"], "audit_share": r["audit_share"],
                      "target_calls": r["target_calls"], "over_upper": r["truth_above_upper_ever"]}), flush=True)
