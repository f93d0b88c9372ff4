"""Predicted time of a run's GPU-able parts on devices it did not run on.

The parts are the surrogate's per-call work (SNAP ensemble force contraction, SOAP features and
the Bayesian posterior, deepmd inference) and an ``lj_nn`` target's pair loop.  For each part and
device the annotation gives the roofline time (a lower bound), the expected time (the host
overhead and roofline slowdown this code shows on the measured CPU, applied to the device's
ceilings), the bound type, and the run's total for that part.  Every number is a prediction.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from ase import Atoms

from ..surrogates.base import WorkloadSize
from . import costs
from .calibrate import Efficiency
from .costs import Cost
from .devices import get_device
from .roofline import roofline

EFFICIENCY_FILE = Path(__file__).parent / "data" / "efficiency_cpu-1t.json"
DEFAULT_DEVICES = ("cpu", "A100", "H100", "H200")
NOTE = ("PREDICTION, not a measurement: roofline time from the cost model and vendor peaks; expected time adds "
        "the host overhead and roofline slowdown measured for this code on the CPU (benchmarks/perf_collect.py)")


def load_efficiencies(path: str | os.PathLike = EFFICIENCY_FILE) -> dict[str, Efficiency]:
    """Per-workload host overhead and slowdown fitted on measured CPU profiles (shipped file)."""
    p = Path(path)
    if not p.exists():
        return {}
    data = json.loads(p.read_text())
    return {w: Efficiency(w, e["overhead_s"], e["slowdown"], data["device"], e["n_points"])
            for w, e in data["workloads"].items()}


def _deepmd(n_atoms: int, sel: int, neuron: list[int], axis_neuron: int, fitting: list[int], cell: Any,
            cutoff: float, members: int) -> Cost:
    return costs.deepmd_se_e2_a(n_atoms, sel, neuron, axis_neuron, fitting, costs.extended_atoms(n_atoms, cell, cutoff),
                                members=members)


#: cost function of each workload a surrogate's ``call_cost`` may name
WORKLOADS = {"ensemble_forces": costs.ensemble_forces, "bayesian_posterior": costs.bayesian_ridge_predict,
             "soap": costs.soap_features, "deepmd": _deepmd, "lj_nn_pairs": costs.lj_nn_pairs}


def price(part: WorkloadSize) -> Cost:
    """The cost of one workload a surrogate described (:meth:`~ase_proxima.surrogates.Surrogate.call_cost`)."""
    try:
        fn = WORKLOADS[part.workload]
    except KeyError:
        raise ValueError(f"no cost model for workload {part.workload!r}; known: {sorted(WORKLOADS)}") from None
    return fn(**part.sizes)


def parts_of(surrogate: Any, atoms: Atoms, target: Any = None) -> dict[str, tuple[str, Cost]]:
    """The GPU-able parts of one call with this surrogate (and target) on ``atoms``: name ->
    (workload, cost)."""
    parts: dict[str, tuple[str, Cost]] = {}
    if surrogate is not None:
        for part in surrogate.call_cost(atoms):
            parts[f"surrogate: {part.part}"] = (part.workload, price(part))
    from lj_nn import LennardJonesNN

    if isinstance(target, LennardJonesNN) and target.net is not None:
        i, _, _ = target.neighbours.pairs(atoms)
        cut = target.neighbours.count_within_cutoff(atoms.positions)
        parts["target: lj_nn pair network"] = (
            "lj_nn_pairs", costs.lj_nn_pairs(len(atoms), len(i), cut, int(target.net.topology[1])))
    return parts


def annotate_parts(parts: Mapping[str, tuple[str, Cost]], calls: Mapping[str, int],
                   devices: Iterable[str] = DEFAULT_DEVICES,
                   efficiencies: Mapping[str, Efficiency] | None = None) -> dict[str, Any]:
    """Per part and device: roofline and expected seconds per call, bound, calls per second,
    and the run's total for ``calls[part]`` calls."""
    effs = load_efficiencies() if efficiencies is None else efficiencies
    out: dict[str, Any] = {"note": NOTE, "parts": {}}
    for name, (workload, cost) in parts.items():
        entry: dict[str, Any] = {"workload": workload, "flops_per_call": cost.flops, "bytes_per_call": cost.bytes,
                                 "calls": int(calls.get(name, 0)), "devices": {}}
        for dname in devices:
            dev = get_device(dname)
            est = roofline(cost, dev)
            d: dict[str, Any] = {"roofline_s": est.time_s, "bound": est.bound}
            if workload in effs:
                expected = effs[workload].predict(cost, dev)
                d.update(expected_s=expected, expected_calls_per_s=1.0 / expected,
                         range_s=[est.time_s + effs[workload].overhead_s, expected])
            per_call = d.get("expected_s", est.time_s)
            d["run_total_s"] = per_call * entry["calls"]
            entry["devices"][dev.name] = d
        out["parts"][name] = entry
    return out


def annotate_calculator(calc: Any, atoms: Atoms | None = None, devices: Iterable[str] = DEFAULT_DEVICES) -> dict:
    """Annotation of a :class:`ase_proxima.ProximaCalculator` run so far (its last structure)."""
    atoms = atoms if atoms is not None else calc.atoms
    if atoms is None:
        raise ValueError("the calculator has not computed anything yet: no structure to annotate")
    parts = parts_of(calc.surrogate, atoms, calc.target)
    s = calc.stats
    # the surrogate predicts on served calls and, once fitted, on target calls too (for the gate)
    calls = {name: (s["calls"] if name.startswith("surrogate") else s["target_calls"]) for name in parts}
    return annotate_parts(parts, calls, devices)


def annotate_run(run: str | os.PathLike, devices: Iterable[str] = DEFAULT_DEVICES) -> dict:
    """Annotation of a finished run directory (``stats.json`` and ``store/`` of ``ase-proxima``
    demo / mc / sluschi): the stored model's work on the last stored structure.  The store is
    only read; its model is rebuilt from the settings it recorded (plain JSON), never unpickled."""
    from ase_proxima.store import RunStore
    from ase_proxima.surrogates import FAMILIES, default_surrogate

    run = Path(run)
    stats_path = run / "stats.json"
    if not stats_path.exists() or not (run / "store").is_dir():
        raise FileNotFoundError(f"{run} is not a run directory (needs stats.json and store/)")
    stats = json.loads(stats_path.read_text())
    stats = stats.get("stats", stats)
    store = RunStore(run / "store", readonly=True)
    training = store.training(newest=1)
    models = store.read_models()
    if not training:
        raise ValueError(f"{run}/store has no training data to annotate")
    family = models[0]["family"] if models is not None else store.fingerprint.get("surrogate")
    if models is not None and family in FAMILIES:
        # a path recorded in a store never chooses where this process writes
        params = {k: v for k, v in models[0]["params"].items() if k != "workdir"}
        surrogate = FAMILIES[family](**params)
        surrogate.restore_fitted_state(models[1])
    else:  # no model written (an older store): refit the default family on the newest data
        surrogate = FAMILIES[family]() if family in FAMILIES else default_surrogate(training[-1][0])
        surrogate.fit(*zip(*store.training(newest=50)))
    atoms = training[-1][0]
    parts = parts_of(surrogate, atoms)
    calls = {name: int(stats.get("calls", 0)) for name in parts}
    return annotate_parts(parts, calls, devices)


def format_annotation(ann: Mapping[str, Any]) -> str:
    """A plain-text table of an annotation."""
    lines = [ann["note"]]
    for name, entry in ann["parts"].items():
        lines.append(f"{name} ({entry['calls']} calls, {entry['flops_per_call']:.3g} FLOP, "
                     f"{entry['bytes_per_call']:.3g} B per call)")
        for dev, d in entry["devices"].items():
            exp = d.get("expected_s")
            lines.append(f"  {dev:8s} roofline {d['roofline_s'] * 1e6:10.2f} us ({d['bound']:7s})"
                         + (f"  expected {exp * 1e6:10.2f} us = {1 / exp:10.1f} calls/s" if exp else "")
                         + f"  run total {d['run_total_s']:.3g} s")
    return "\n".join(lines)
