"""Evaluate performance prediction on the measured dataset (``benchmarks/perf_collect.py``).

1. Cost models against this CPU: per workload, fit host overhead and roofline slowdown on half
   the sizes and predict the other half (ratio predicted / measured).
2. Cross-device prediction, source ``cpu-1t`` -> target ``cpu-2t`` (the only pair measured here;
   the thesis's case is P100 -> V100, ours on GPUs would be H100 -> H200): MAPE per workload of
   the random forest, the roofline, and "same as the source"; the memory-bound classifier's
   confusion matrix; active learning against random selection (plot).
3. Roofline predictions of our workloads at typical sizes on P100 ... H200 (no GPU measured).

Run: ``.venv/bin/python benchmarks/perf_predict.py``; writes ``--data``/``prediction.json`` and
``active_learning.png``.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ase_proxima.perf import costs
from ase_proxima.perf.annotate import EFFICIENCY_FILE
from ase_proxima.perf.calibrate import fit_efficiency, row_cost
from ase_proxima.perf.dataset import load_rows, pair_rows
from ase_proxima.perf.devices import DEVICES, DeviceSpec
from ase_proxima.perf.predictor import active_learning_curve, evaluate, features
from ase_proxima.perf.roofline import roofline

ROOT = Path(__file__).resolve().parents[1]


def cost_model_check(rows: list[dict], device: DeviceSpec) -> dict:
    """Fit on even-indexed sizes of each workload, predict odd ones."""
    out = {}
    for w in sorted({r["workload"] for r in rows}):
        rs = sorted((r for r in rows if r["workload"] == w and r["device"] == device.name), key=lambda r: r["flops"])
        fit, held = rs[::2], rs[1::2]
        eff = fit_efficiency(w, [row_cost(r) for r in fit], [r["time_s"] for r in fit], device)
        ratio = np.array([eff.predict(row_cost(r), device) / r["time_s"] for r in held])
        out[w] = {"overhead_us": eff.overhead_s * 1e6, "roofline_slowdown": eff.slowdown, "held_out": len(held),
                  "ratio_min": float(ratio.min()), "ratio_max": float(ratio.max()),
                  "within_2x": float(np.mean((ratio >= 0.5) & (ratio <= 2.0)))}
    return out


def gpu_table(cpu: DeviceSpec, efficiencies: dict) -> dict:
    """Predicted seconds per call of our workloads at typical sizes, per device."""
    typical = {
        "lj_nn_pairs (4000 atoms, in.melt)": ("lj_nn_pairs", costs.lj_nn_pairs(4000, 151_700, 110_000, 3)),
        "ensemble_forces (500 atoms, 55 coef, 8 members)": ("ensemble_forces", costs.ensemble_forces(500, 55, 8)),
        "bayesian_posterior (300 features)": ("bayesian_posterior", costs.bayesian_ridge_predict(300)),
        "soap (methane, n_max 4, l_max 3)": ("soap", costs.soap_features(5, 4, 4, 3, 2)),
        "deepmd se_e2_a (500 atoms, sel 60)": ("deepmd", costs.deepmd_se_e2_a(500, 60)),
    }
    table = {}
    for label, (w, c) in typical.items():
        row = {}
        for dev in [cpu, *DEVICES.values()]:
            est = roofline(c, dev)
            entry = {"roofline_s": est.time_s, "bound": est.bound}
            if w in efficiencies:
                entry["expected_s"] = efficiencies[w].predict(c, dev)
            row[dev.name] = entry
        table[label] = row
    return table


def plot_curve(curve: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, style in (("active", "o-"), ("random", "s--")):
        runs = np.array(curve[f"{key}_mape_runs"])
        ax.errorbar(curve["sizes"], runs.mean(0), yerr=runs.std(0), fmt=style, capsize=3,
                    label=f"{key} ({len(runs)} seeds)")
    ax.set_xlabel("training profiles")
    ax.set_ylabel("held-out throughput MAPE (%)")
    ax.set_yscale("log")
    ax.set_title(f"cpu-1t -> cpu-2t, batches of {curve['batch']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT / "benchmarks" / "results" / "perf"))
    p.add_argument("--source", default="cpu-1t")
    p.add_argument("--target", default="cpu-2t")
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--no-ship", action="store_true",
                   help="do not rewrite the package's fitted CPU efficiencies (ase_proxima/perf/data)")
    args = p.parse_args()
    data = Path(args.data)
    rows = load_rows(data / "profiles.jsonl")
    devices = {k: DeviceSpec(**v) for k, v in json.loads((data / "devices.json").read_text()).items()}
    source, target = devices[args.source], devices[args.target]
    summary = {"command": " ".join(sys.argv), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": platform.platform(), "rows": len(rows),
               "data_measured": sorted({r["date"] for r in rows})}
    summary["cost_models_vs_cpu"] = cost_model_check(rows, source)
    pairs = pair_rows(rows, args.source, args.target)
    summary["cross_device"] = evaluate(pairs, source, target)
    x = np.array([features(s, source) for s, _ in pairs])
    t_src = np.array([s["time_s"] for s, _ in pairs])
    t_dst = np.array([d["time_s"] for _, d in pairs])
    curve = active_learning_curve(x, t_src, t_dst, batch=args.batch)
    summary["active_learning"] = curve
    plot_curve(curve, data / "active_learning.png")
    effs = {w: fit_efficiency(w, [row_cost(r) for r in rows if r["workload"] == w and r["device"] == source.name],
                              [r["time_s"] for r in rows if r["workload"] == w and r["device"] == source.name], source)
            for w in {r["workload"] for r in rows}}
    summary["gpu_predictions_roofline_only"] = gpu_table(source, effs)
    if not args.no_ship:
        EFFICIENCY_FILE.write_text(json.dumps({
            "device": source.name, "device_spec": source.to_dict(), "fitted": summary["date"],
            "data": str((data / "profiles.jsonl").relative_to(ROOT)) if data.is_relative_to(ROOT) else str(data),
            "data_measured": summary["data_measured"], "command": summary["command"],
            "workloads": {w: {"overhead_s": e.overhead_s, "slowdown": e.slowdown, "n_points": e.n_points}
                          for w, e in sorted(effs.items())}}, indent=1))
    (data / "prediction.json").write_text(json.dumps(summary, indent=1))
    cd = summary["cross_device"]
    print("cost models (held-out sizes within 2x):",
          {w: round(v["within_2x"], 2) for w, v in summary["cost_models_vs_cpu"].items()})
    print("MAPE overall:", {k: round(v, 1) for k, v in cd["mape_overall"].items()})
    for w, v in cd["mape_per_workload"].items():
        print(f"  {w}: " + ", ".join(f"{k} {v[k]:.1f}" for k in ("forest", "roofline", "calibrated_roofline", "same_as_source")))
    print("memory-bound confusion:", cd["memory_bound"])
    print("active:", [round(v, 1) for v in curve["active_mape"]])
    print("random:", [round(v, 1) for v in curve["random_mape"]])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
