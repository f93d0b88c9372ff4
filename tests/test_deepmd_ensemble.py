"""DeePMD ensemble (deepmd-kit, PyTorch backend) on a tiny EMT aluminium system.

deepmd-kit is installed by scripts/setup.sh (the test command), so these tests
run rather than skip: a broken build must fail here.
"""

from __future__ import annotations

import json
import os
import signal
import threading

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet
from ase import units

from ase_proxima import FitError, ProximaCalculator
from ase_proxima.surrogates.deepmd import DeePMDEnsemble, deepmd_available
from ase_proxima.surrogates.deepmd_worker import training_worker


def _frames(n: int, seed: int) -> list:
    out = []
    for i in range(n):
        a = bulk("Al", "fcc", a=4.05, cubic=True).repeat(2)
        a.rattle(0.1, seed=seed + i)
        a.calc = EMT()
        out.append((a, {"energy": a.get_potential_energy(), "forces": a.get_forces(), "stress": a.get_stress()}))
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    assert deepmd_available() is None, deepmd_available()
    train = _frames(10, 0)
    model = DeePMDEnsemble(members=2, train_steps=300, refit_steps=30, seed=0,
                           workdir=tmp_path_factory.mktemp("deepmd"))
    model.fit([a for a, _ in train], [r for _, r in train])
    return model, train


def test_ensemble_trains_and_predicts_energy_forces_stress(trained):
    model, _ = trained
    assert model.is_fitted and model.type_map_ == ["Al"] and model.sel_ >= 12
    assert model.type_map is None and model.sel is None  # constructor arguments stay as given
    held = _frames(4, 100)
    f_err, f_rms, e_err, s_err = [], [], [], []
    for a, ref in held:
        p = model.predict(a)
        assert p.results["forces"].shape == (32, 3) and p.results["stress"].shape == (6,)
        # two seeds give two different models: the spread is what the gate reads
        assert np.all(p.spread["forces"] >= 0) and np.mean(p.spread["forces"]) > 1e-4
        f_err.append(np.sqrt(np.mean((p.results["forces"] - ref["forces"]) ** 2)))
        f_rms.append(np.sqrt(np.mean(ref["forces"] ** 2)))
        e_err.append(abs(p.results["energy"] - ref["energy"]) / len(a))
        s_err.append(np.max(np.abs(p.results["stress"] - ref["stress"])))
    # 300 CPU steps on 10 frames: the models have learned (well under the force scale), units and
    # signs are right (an untrained model's stress is off by ~0.2 eV/A^3, a sign flip by 2x the stress)
    assert np.mean(f_err) < 0.8 * np.mean(f_rms)
    assert np.mean(e_err) < 0.03
    assert np.mean(s_err) < 0.01


def _restored(model: DeePMDEnsemble) -> DeePMDEnsemble:
    """A new ensemble made from the arrays and JSON of ``model``'s fitted state (no pickle)."""
    state = model.fitted_state()
    assert all(v.dtype != object for v in state.arrays.values())
    json.dumps(state.meta)
    copy = DeePMDEnsemble(**{**model.get_params(), "workdir": None})
    copy.restore_fitted_state(state)
    return copy


def test_fitted_state_round_trip_carries_the_checkpoints(trained):
    model, train = trained
    copy = _restored(model)
    assert copy.workdir_ != model.workdir_ and copy.is_fitted
    a = train[0][0]
    assert copy.predict(a).results["energy"] == pytest.approx(model.predict(a).results["energy"], abs=1e-10)


def test_refit_warm_starts_from_the_restored_checkpoints(trained):
    model, train = trained
    copy = _restored(model)
    a = train[0][0]
    before = copy.predict(a).results["forces"]
    more = train + _frames(3, 50)
    copy.fit([x for x, _ in more], [r for _, r in more])
    assert copy.fits_ == model.fits_ + 1
    assert not np.allclose(copy.predict(a).results["forces"], before)


def test_a_killed_training_worker_is_reported_then_replaced(trained):
    """The training worker outlives a fit; SIGKILLed in the middle of a refit, the fit fails
    with its exit status, and the next fit starts a fresh worker and succeeds."""
    model, train = trained
    copy = _restored(model)
    worker = training_worker()
    images, results = [x for x, _ in train], [r for _, r in train]
    copy.refit_steps = 100 * model.refit_steps  # a refit that surely outlasts the killer's second
    killer = threading.Timer(1.0, lambda: os.kill(worker.process.pid, signal.SIGKILL))
    killer.start()
    try:
        with pytest.raises(FitError, match=r"deepmd training failed \(exit -9\)"):
            copy.fit(images, results)
    finally:
        killer.cancel()
    assert not worker.alive()
    copy.refit_steps = model.refit_steps
    copy.fit(images, results)
    assert training_worker() is not worker and training_worker().alive() and copy.is_fitted


def test_bad_input_is_refused(trained):
    model, _ = trained
    with pytest.raises(ValueError, match="at least 2"):
        DeePMDEnsemble(members=1)
    with pytest.raises(ValueError, match="rcut_smth"):
        DeePMDEnsemble(rcut=3.0, rcut_smth=4.0)
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    assert "not in the model's type map" in model.accepts(cu)
    with pytest.raises(ValueError, match="type map"):
        model.predict(cu)
    a = bulk("Al", "fcc", a=4.05, cubic=True)
    a.calc = EMT()
    with pytest.raises(FitError, match="forces"):
        DeePMDEnsemble().fit([a], [{"energy": a.get_potential_energy()}])


def test_proxima_serves_md_steps_from_the_deepmd_ensemble(tmp_path):
    atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat(2)
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    surrogate = DeePMDEnsemble(members=2, train_steps=200, seed=0, workdir=tmp_path / "dp")
    # Fixed strategy with a wide threshold: every call after training is the ensemble's
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.3, error_metric="forces_mean", surrogate=surrogate,
                             min_training=5, window=2, retrain="never", audit_fraction=0.0, threshold=10.0,
                             adaptive=False, seed=0)
    atoms.calc = calc
    served = []

    def check():
        if calc.log[-1]["kind"] == "surrogate":
            served.append(np.abs(atoms.get_forces() - EMT().get_forces(atoms)).mean())

    md = VelocityVerlet(atoms, timestep=2 * units.fs)
    md.attach(check)
    md.run(15)
    # 5 results train it, 2 comparisons validate the composition, then every call is the ensemble's
    assert calc.stats["target_calls"] == 7 and len(served) >= 9
    assert np.mean(served) < 0.3
