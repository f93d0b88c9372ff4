"""Faults: a target that raises, returns NaN, hangs or dies; absurd surrogate answers; a run
killed with SIGKILL mid-write.  Real calculators and real processes throughout (the faults are
injected around ASE's EMT by ``FaultInjector``, or are real: a killed Psi4 worker)."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.emt import EMT
from conftest import fixed_sequence

from ase_proxima import ProximaCalculator
from ase_proxima.faults import FaultInjector
from ase_proxima.store import RunStore
from ase_proxima.target_call import TargetError, TargetTimeout
from ase_proxima.training import PlausibleRange


def _frames(n, seed=0):
    return fixed_sequence(molecule("CH4"), n, amplitude=0.01, seed=seed)


def test_target_nan_is_never_stored_or_returned(tmp_path):
    target = FaultInjector(EMT(), on_calls={3: "nan"})
    calc = ProximaCalculator(target=target, error_bound=0.005, store=tmp_path / "s", seed=0)
    frames = _frames(4)
    for f in frames[:2]:
        calc.get_potential_energy(f)
    with pytest.raises(TargetError, match="non-finite energy"):
        calc.get_potential_energy(frames[2])
    assert calc.stats["target_failures"] == 1 and calc.stats["calls"] == 2
    assert RunStore(tmp_path / "s", readonly=True).training_count() == 2
    e = calc.get_potential_energy(frames[2])  # the next attempt is a fresh, finite answer
    assert math.isfinite(e) and e == pytest.approx(EMT().get_potential_energy(frames[2]))


@pytest.mark.parametrize("kind", ["raise", "nan"])
def test_retry_policy_recovers_and_counts(kind):
    target = FaultInjector(EMT(), on_calls={2: kind, 5: kind, 6: kind})
    calc = ProximaCalculator(target=target, error_bound=0.005, target_retries=1, seed=0)
    frames = _frames(5)
    for f in frames[:3]:
        calc.get_potential_energy(f)  # call 2 fails once and is retried
    assert calc.stats["target_failures"] == 1 and calc.stats["target_calls"] == 3
    with pytest.raises((RuntimeError, TargetError)):  # calls 5 and 6 fail: retries exhausted
        calc.get_potential_energy(frames[3])
    assert calc.stats["target_failures"] == 3 and calc.stats["calls"] == 3
    with pytest.raises(ValueError):
        ProximaCalculator(target=EMT(), error_bound=0.005, target_retries=-1)


def test_hanging_target_times_out():
    target = FaultInjector(EMT(), on_calls={2: "hang"}, hang_seconds=30)
    calc = ProximaCalculator(target=target, error_bound=0.005, target_timeout=0.5, seed=0)
    frames = _frames(3)
    calc.get_potential_energy(frames[0])
    t = time.perf_counter()
    with pytest.raises(TargetTimeout, match="0.5 s"):
        calc.get_potential_energy(frames[1])
    assert time.perf_counter() - t < 5
    assert math.isfinite(calc.get_potential_energy(frames[1]))  # and the run goes on
    with pytest.raises(ValueError):
        ProximaCalculator(target=EMT(), error_bound=0.005, target_timeout=0.0)


def test_implausible_surrogate_answers_are_refused():
    seen = PlausibleRange.of([-10.0, -10.2, -9.9], [np.sqrt(3.0)] * 3)
    assert seen.implausible({"energy": -10.1 * 5}, 5) is None
    assert "outside the trained" in seen.implausible({"energy": 40.0}, 5)
    assert "force" in seen.implausible({"energy": -50.0, "forces": np.full((5, 3), 20.0)}, 5)


def test_calculator_refuses_an_absurd_prediction_and_asks_the_target():
    """A surrogate that returns an energy far from anything trained is never served."""
    from ase_proxima.surrogates import SOAPBayesianRidge
    from ase_proxima.surrogates.base import Prediction

    class Absurd(SOAPBayesianRidge):
        def predict(self, atoms, properties=None):
            p = super().predict(atoms, properties)
            return Prediction({**p.results, "energy": p.results["energy"] + 1e4}, p.spread)

    # cost_aware off: beside EMT the economy may judge a SOAP answer too costly and never consult
    calc = ProximaCalculator(target=EMT(), error_bound=0.05, surrogate=Absurd(), threshold=1e9, seed=0,
                             audit_fraction=0.0, cost_aware=False)
    frames = _frames(30)
    for f in frames:
        e = calc.get_potential_energy(f)
        assert e == pytest.approx(EMT().get_potential_energy(f))
    s = calc.stats
    assert s["surrogate_calls"] == 0 and s["refusals"] > 0
    assert any("implausible" in (r.get("reason") or "") for r in calc.log)


def test_fault_injector_validates_and_counts():
    with pytest.raises(ValueError):
        FaultInjector(EMT(), rate=2.0)
    with pytest.raises(ValueError):
        FaultInjector(EMT(), kinds=("explode",))
    inj = FaultInjector(EMT(), rate=0.5, seed=1)
    a = molecule("CH4")
    a.calc = inj
    failures = 0
    for k in range(40):
        a.rattle(0.001, seed=k)
        try:
            if not math.isfinite(a.get_potential_energy()):
                failures += 1
        except RuntimeError:
            failures += 1
    assert failures == inj.injected["raise"] + inj.injected["nan"] > 5


def test_killed_psi4_worker_is_retried_through_proxima():
    """A real out-of-process target dies mid-run; one retry starts a fresh worker."""
    from ase_proxima.targets.psi4_bridge import Psi4Bridge, find_bridge_python

    if find_bridge_python() is None:
        pytest.skip("no Psi4 bridge interpreter: scripts/setup.sh builds .venv-psi4 on Debian")
    target = Psi4Bridge(method="hf", basis="sto-3g")
    try:
        calc = ProximaCalculator(target=target, error_bound=0.002, target_retries=1, seed=0)
        frames = _frames(3)
        calc.get_potential_energy(frames[0])
        os.kill(target.worker_pid, signal.SIGKILL)
        e = calc.get_potential_energy(frames[1])
        assert math.isfinite(e) and calc.stats["target_failures"] == 1 and calc.stats["target_calls"] == 2
    finally:
        target.close()


RUNNER = """
import sys
from ase.build import molecule
from ase.calculators.emt import EMT
from ase_proxima import ProximaCalculator
from ase_proxima.workflows import MonteCarlo

calc = ProximaCalculator(target=EMT(), error_bound=0.005, store=sys.argv[1], seed=0)
atoms = molecule("CH4")
atoms.calc = calc
MonteCarlo(atoms, temperature_K=500, step_size=0.01, rng=0).run(100000)
"""


def test_sigkill_mid_run_loses_at_most_one_checkpoint_interval(tmp_path):
    """A real process killed mid-run: the state is at most ``checkpoint_every`` calls old, every
    target result stored is kept as training data, and the log reads as one run afterwards."""
    store = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(store)])
    state = store / "state.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if json.loads(state.read_text())["step"] > 150:
                break
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    logged = len((store / "calls.csv").read_text().splitlines()) - 1
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.005, store=store, seed=0)
    s = calc.stats
    every = calc.parameters["checkpoint_every"]
    assert s["calls"] > 150
    assert logged - every <= s["calls"] <= logged  # at most one checkpoint interval of decisions lost
    rows = calc.store.training_count()
    assert 0 <= rows - s["target_calls"] <= every  # target results stored after the checkpoint are kept...
    assert s["training_total"] == rows  # ...and trained on
    frames = _frames(20, seed=3)
    for f in frames:
        assert math.isfinite(calc.get_potential_energy(f))
    assert calc.stats["calls"] == s["calls"] + 20
    calc.close()
    log = RunStore(store, readonly=True).read_log()
    assert [r["step"] for r in log] == list(range(s["calls"] + 20))


def test_non_finite_surrogate_prediction_is_never_served():
    from ase_proxima.surrogates import SOAPBayesianRidge
    from ase_proxima.surrogates.base import Prediction

    class Broken(SOAPBayesianRidge):
        def predict(self, atoms, properties=None):
            p = super().predict(atoms, properties)
            return Prediction({**p.results, "energy": math.nan}, p.spread)

    calc = ProximaCalculator(target=EMT(), error_bound=0.05, surrogate=Broken(), threshold=1e9, seed=0,
                             cost_aware=False)  # the gate is under test, not the economy
    for f in _frames(30):
        assert math.isfinite(calc.get_potential_energy(f))
    assert calc.stats["surrogate_calls"] == 0 and calc.stats["refusals"] > 0
    assert any(r.get("reason") == "non-finite surrogate prediction" for r in calc.log)


def test_changed_periodicity_goes_to_the_target_with_its_reason():
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.05, threshold=1e9, seed=0)
    for f in _frames(25):
        calc.get_potential_energy(f)
    boxed = _frames(1, seed=9)[0]
    boxed.center(vacuum=1.5)  # the molecule sees its images: a truly periodic structure
    boxed.pbc = True
    e = calc.get_potential_energy(boxed)
    assert e == pytest.approx(EMT().get_potential_energy(boxed))
    assert "periodicity differs" in calc.log[-1]["reason"]


def test_lammps_faults_reach_the_user_and_store_nothing(tmp_path):
    """Real LAMMPS (lj/cut through LAMMPSlib): coinciding atoms give inf/NaN, which Proxima
    refuses; a free cluster without a box gets a clear ValueError."""
    from ase import Atoms

    from ase_proxima.targets.lammps_lj import LammpsLJ

    calc = ProximaCalculator(target=LammpsLJ("Ar", 0.0104, 3.4, 8.5), error_bound=0.01, store=tmp_path / "s",
                             error_metric="energy", seed=0)
    ok = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 3.8]], cell=[20, 20, 20], pbc=True)
    calc.get_potential_energy(ok)
    twins = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 0]], cell=[20, 20, 20], pbc=True)
    with pytest.raises(TargetError, match="non-finite energy"):
        calc.get_potential_energy(twins)
    free = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 3.8]])
    with pytest.raises(ValueError, match="three cell vectors"):
        calc.get_potential_energy(free)
    assert calc.stats["target_failures"] == 2 and calc.store.training_count() == 1
    assert math.isfinite(calc.get_potential_energy(ok.copy()))
