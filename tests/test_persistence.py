"""Save/restore and the run store: a resumed run makes the same decisions as an uninterrupted one."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
from ase.calculators.emt import EMT
from conftest import fixed_sequence

from ase_proxima import ProximaCalculator, RunStore


def _drive(calc, frames):
    out = []
    for a in frames:
        e = calc.get_potential_energy(a)
        out.append((calc.log[-1]["kind"], e, calc.log[-1]["threshold"]))
    return out


@pytest.fixture
def frames(methane):
    return fixed_sequence(methane, 160, amplitude=0.006, seed=4)


def _new(**kw):
    # identical decisions need decisions that do not count measured time: the cost rule and the
    # refit budget are off (they are tested in test_costs.py)
    return ProximaCalculator(target=EMT(), error_bound=0.003, audit_fraction=0.2, seed=11, cost_aware=False,
                             refit_share=None, **kw)


@pytest.mark.parametrize("settings", [{}, {"bound_on": "all"}, {"stop_on_capacity_loss": True}],
                         ids=["served", "all", "capacity-stop"])
def test_save_state_then_load_continues_identically(frames, tmp_path, settings):
    """Also for the bound on every answer (its error budget and running sums travel with the state)
    and for the capacity watch (its reference and newest comparisons)."""
    straight = _new(**settings)
    ref = _drive(straight, frames)
    assert {k for k, _, _ in ref} >= {"target", "surrogate"}

    first = _new(**settings)
    head = _drive(first, frames[:90])
    first.save_state(tmp_path / "snapshot")
    resumed = _new(**settings)
    resumed.load_state(tmp_path / "snapshot")
    tail = _drive(resumed, frames[90:])

    got = head + tail
    assert [k for k, _, _ in got] == [k for k, _, _ in ref]
    np.testing.assert_allclose([e for _, e, _ in got], [e for _, e, _ in ref], rtol=0, atol=1e-12)
    np.testing.assert_allclose([t for _, _, t in got], [t for _, _, t in ref], rtol=0, atol=1e-15)
    s_ref, s_got = straight.stats, resumed.stats
    for key in ("calls", "target_calls", "surrogate_calls", "audits", "threshold", "alpha", "training_size",
                "served_error_upper", "certificate_exceeded"):
        assert s_got[key] == pytest.approx(s_ref[key], nan_ok=True), key
    assert resumed.tally.certificate == straight.tally.certificate  # the certificate goes on, not afresh
    # the controller (with the 'all' budget) and the capacity watch go on too; compared as JSON, where
    # NaN equals NaN
    assert json.dumps(asdict(resumed.controller.state())) == json.dumps(asdict(straight.controller.state()))
    assert json.dumps(resumed.capacity.state()) == json.dumps(straight.capacity.state())
    assert len(resumed.log) == len(straight.log)


def test_store_keeps_every_target_result_and_resumes(frames, tmp_path):
    store = tmp_path / "run"
    straight = _new()
    ref = _drive(straight, frames)

    first = _new(store=store)
    head = _drive(first, frames[:70])
    db = RunStore(store, readonly=True)  # a look at a store in use
    assert db.training_count() == first.stats["target_calls"]
    assert len(db.read_log()) == 70
    first.close()  # the process would end here: the state is written, the store released

    resumed = _new(store=store)
    assert resumed.stats["calls"] == 70
    tail = _drive(resumed, frames[70:])
    assert [k for k, _, _ in head + tail] == [k for k, _, _ in ref]
    np.testing.assert_allclose([e for _, e, _ in head + tail], [e for _, e, _ in ref], atol=1e-12)
    resumed.close()
    assert RunStore(store).training_count() == resumed.stats["target_calls"] == straight.stats["target_calls"]
    log = RunStore(store, readonly=True).read_log()
    assert len(log) == len(frames)
    assert [r["kind"] for r in log] == [k for k, _, _ in ref]


def test_store_with_training_data_only_warm_starts(frames, tmp_path):
    with RunStore(tmp_path / "shared") as store:
        ref = EMT()
        for a in frames[:30]:
            b = a.copy()
            b.calc = ref
            store.add_training(b, {"energy": b.get_potential_energy(), "forces": b.get_forces()}, step=-1,
                               kind="seed")
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.003, store=tmp_path / "shared", seed=0)
    assert calc.stats["training_size"] == 30 and calc.stats["calls"] == 0
    calc.get_potential_energy(frames[31])
    assert calc.surrogate.is_fitted
    assert calc.log[-1]["reason"] == "startup"  # the controller still needs its first window


def test_store_path_must_be_a_directory(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError):
        ProximaCalculator(target=EMT(), error_bound=0.01, store=f)


def test_a_refused_store_is_released_at_once(frames, tmp_path):
    """A run refused by a store (another target's data) does not keep it locked until the refused
    calculator is collected: the right run opens it straight after."""
    from ase.calculators.lj import LennardJones

    from ase_proxima.store import StoreMismatch

    first = _new(store=tmp_path / "run")
    _drive(first, frames[:15])
    first.close()
    with pytest.raises(StoreMismatch, match="target") as refused:
        ProximaCalculator(target=LennardJones(), error_bound=0.003, store=tmp_path / "run")
    assert refused.value is not None  # the refused calculator's frames are still alive here
    again = _new(store=tmp_path / "run")
    assert again.stats["calls"] == 15
    again.close()
