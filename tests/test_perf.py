"""Performance prediction: roofline arithmetic, cost models against this CPU, the forest's
uncertainty, the memory-bound label, active learning, and annotation of a live run."""
import json
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from hypothesis import given, settings
from hypothesis import strategies as st

from ase_proxima.perf import Cost, get_device, roofline
from ase_proxima.perf import costs
from ase_proxima.perf.calibrate import fit_efficiency
from ase_proxima.perf.dataset import collect, load_rows, pair_rows
from ase_proxima.perf.devices import DEVICES, DeviceSpec, measure_cpu
from ase_proxima.perf.predictor import (ThroughputPredictor, active_learning_curve, evaluate, features, mape,
                                        memory_bound)
from ase_proxima.perf.workloads import ensemble_case, lj_nn_case, measure, posterior_case

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "results" / "perf"


def test_roofline_arithmetic_on_vendor_peaks():
    h100 = DEVICES["H100"]
    # compute bound: 1 TFLOP over 1 GB in fp64 on H100 (34 TFLOP/s, 3.35 TB/s), one launch
    est = roofline(Cost(1e12, 1e9), h100)
    assert est.bound == "compute"
    assert est.compute_s == pytest.approx(1e12 / 34e12) and est.memory_s == pytest.approx(1e9 / 3.35e12)
    assert est.time_s == pytest.approx(1e12 / 34e12 + 5e-6)
    # memory bound: a triad of 1e9 doubles moves 24 GB
    tri = roofline(costs.stream_triad(10 ** 9), DEVICES["H200"])
    assert tri.bound == "memory" and tri.time_s == pytest.approx(24e9 / 4.8e12 + 5e-6)
    # a tiny call is latency bound on a GPU, and never on a CPU (no launch)
    assert roofline(Cost(100, 100, kernels=3), h100).bound == "latency"
    cpu = DeviceSpec("cpu-test", "cpu", fp64=1e10, fp32=2e10, bandwidth=1e10)
    assert roofline(Cost(100, 100, kernels=3), cpu).time_s == pytest.approx(1e-8)


def test_tensor_cores_only_for_dense_work():
    h100, v100 = DEVICES["H100"], DEVICES["V100"]
    assert h100.peak_flops("fp32", dense=True) == pytest.approx(494.5e12)
    assert h100.peak_flops("fp32", dense=False) == pytest.approx(67e12)
    assert v100.peak_flops("fp32", dense=True) == v100.fp32  # its tensor cores are fp16 only
    assert all(d.source for d in DEVICES.values())
    with pytest.raises(ValueError):
        h100.peak_flops("fp16")


@settings(max_examples=50, deadline=None)
@given(flops=st.floats(0, 1e15), nbytes=st.floats(0, 1e12), kernels=st.integers(0, 100))
def test_roofline_is_the_larger_ceiling_plus_launches(flops, nbytes, kernels):
    for dev in DEVICES.values():
        est = roofline(Cost(flops, nbytes, kernels), dev)
        assert est.time_s == pytest.approx(max(flops / dev.fp64, nbytes / dev.bandwidth) + kernels * dev.launch_s)
        assert est.time_s >= est.launch_s >= 0


def test_bad_costs_and_devices_are_refused():
    with pytest.raises(ValueError):
        Cost(-1.0, 1.0)
    with pytest.raises(ValueError):
        Cost(1.0, 1.0, precision="fp16")
    with pytest.raises(KeyError, match="known"):
        get_device("TPUv4")
    with pytest.raises(ValueError):
        costs.lj_nn_pairs(10, 5, 6)
    assert get_device("h100") is DEVICES["H100"]


def test_local_cpu_measurement_is_plausible():
    cpu = measure_cpu(1, n=1 << 21, matmul_n=256, repeats=3)
    assert cpu.kind == "cpu" and cpu.name == "cpu-1t"
    assert 1e8 < cpu.fp64 < 1e12 and cpu.fp32 >= 0.8 * cpu.fp64
    assert 1e8 < cpu.bandwidth < 1e12


@pytest.mark.parametrize("builder, sizes", [
    (lambda s: lj_nn_case(s), (3, 5, 7)),
    (lambda s: ensemble_case(s, 55, 8), (64, 256, 1024)),
    (lambda s: posterior_case(s), (2500, 3500, 4500)),  # all larger than a 32 MiB last-level cache
])
def test_cost_models_predict_measured_cpu_time_within_2x(builder, sizes):
    """Host overhead and roofline slowdown fitted at two sizes predict a third within 2x."""
    cpu = measure_cpu(1, n=1 << 22, matmul_n=512, repeats=3)
    cases = [builder(s) for s in sizes]
    times = [measure(c, 1) for c in cases]
    eff = fit_efficiency(cases[0].workload, [cases[0].cost, cases[2].cost], [times[0], times[2]], cpu)
    ratio = eff.predict(cases[1].cost, cpu) / times[1]
    assert 0.5 < ratio < 2.0


def test_forest_variance_is_larger_off_the_training_distribution():
    """On the shipped measured profiles: a workload the forest never saw gets a larger
    infinitesimal-jackknife variance than held-out calls of the workloads it saw.  (Not for
    every workload: one with a near twin in the training set, fp64 beside fp32 matmul, does not.)"""
    rows = load_rows(DATA / "profiles.jsonl")
    devices = {k: DeviceSpec(**v) for k, v in json.loads((DATA / "devices.json").read_text()).items()}
    pairs = pair_rows(rows, "cpu-1t", "cpu-2t")
    x = np.array([features(s, devices["cpu-1t"]) for s, _ in pairs])
    ts, td = np.array([s["time_s"] for s, _ in pairs]), np.array([d["time_s"] for _, d in pairs])
    work = np.array([s["workload"] for s, _ in pairs])
    for unseen in ("bayesian_posterior", "lj_nn_pairs", "stream_triad"):
        seen = np.flatnonzero(work != unseen)
        np.random.default_rng(0).shuffle(seen)
        model = ThroughputPredictor().fit(x[seen[30:]], ts[seen[30:]], td[seen[30:]])
        inside = np.median(model.variance(x[seen[:30]]))
        outside = np.median(model.variance(x[work == unseen]))
        assert outside > 10 * inside


def test_forest_beats_the_baselines_on_measured_data():
    rows = load_rows(DATA / "profiles.jsonl")
    devices = {k: DeviceSpec(**v) for k, v in json.loads((DATA / "devices.json").read_text()).items()}
    res = evaluate(pair_rows(rows, "cpu-1t", "cpu-2t"), devices["cpu-1t"], devices["cpu-2t"])
    m = res["mape_overall"]
    assert m["forest"] < m["same_as_source"] and m["forest"] < m["roofline"] and m["forest"] < 10
    cm = np.array(res["memory_bound"]["confusion_matrix [[TN, FP], [FN, TP]]"])
    assert cm.sum() == res["n_test"]


def test_memory_bound_label_and_mape():
    dev = DeviceSpec("d", "cpu", fp64=1e10, fp32=1e10, bandwidth=100.0)
    assert memory_bound({"bytes": 80.0, "time_s": 1.0}, dev)
    assert not memory_bound({"bytes": 70.0, "time_s": 1.0}, dev)
    # throughput MAPE: predicting twice the time is a 50% throughput error
    assert mape(np.array([2.0]), np.array([1.0])) == pytest.approx(50.0)


def test_collect_and_active_learning_on_real_profiles(tmp_path):
    """A small real collection (1 and 2 threads), written as it goes, then an active-learning
    curve over it."""
    builders = [lambda n=n: posterior_case(n) for n in (50, 100, 200, 400, 800, 1200)]
    builders += [lambda n=n: ensemble_case(n, 30, 4) for n in (32, 64, 128, 256, 512, 1024)]
    out = tmp_path / "p.jsonl"
    rows = collect(builders, [1, 2], "pytest", progress=False, out=out)
    assert load_rows(out) == rows and len(rows) == 24
    assert all({"device", "date", "command", "machine", "time_s"} <= set(r) for r in rows)
    pairs = pair_rows(rows, "cpu-1t", "cpu-2t")
    cpu = measure_cpu(1, n=1 << 20, matmul_n=128, repeats=2)
    x = np.array([features(s, cpu) for s, _ in pairs])
    curve = active_learning_curve(x, [s["time_s"] for s, _ in pairs], [d["time_s"] for _, d in pairs],
                                  batch=3, seeds=(0,), n_estimators=30)
    assert curve["sizes"][0] == 3 and curve["sizes"][-1] == 9
    assert len(curve["active_mape"]) == len(curve["random_mape"]) == len(curve["sizes"])
    assert curve["active_mape"][0] == curve["random_mape"][0]  # same base set


def test_annotation_of_a_live_run_and_of_lj_nn():
    """A ProximaCalculator with the SNAP ensemble on bulk copper, and an lj_nn calculation."""
    from ase.calculators.emt import EMT

    from ase_proxima import ProximaCalculator
    from ase_proxima.perf.annotate import annotate_calculator, annotate_parts, parts_of
    from lj_nn import LennardJonesNN

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.5, seed=0)
    atoms.calc = calc
    with pytest.raises(ValueError):
        annotate_calculator(calc)
    for k in range(12):
        atoms.rattle(0.05, seed=k)
        atoms.get_forces()
    ann = annotate_calculator(calc, devices=("H100", "H200"))
    part = ann["parts"]["surrogate: SNAP ensemble forces"]
    assert part["calls"] == 12 and set(part["devices"]) == {"H100", "H200"}
    h100, h200 = part["devices"]["H100"], part["devices"]["H200"]
    assert h200["roofline_s"] <= h100["roofline_s"]  # same peaks, more bandwidth
    assert h100["bound"] in ("memory", "compute", "latency")

    ar = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(3)
    lj = LennardJonesNN(epsilon=0.0104, sigma=3.4, rc=8.5)
    ar.calc = lj
    ar.get_forces()
    parts = parts_of(None, ar, lj)
    cost = parts["target: lj_nn pair network"][1]
    assert cost.flops > 0 and cost.bytes > 0
    out = annotate_parts(parts, {"target: lj_nn pair network": 10}, devices=("A100",))
    assert out["parts"]["target: lj_nn pair network"]["devices"]["A100"]["run_total_s"] > 0
