"""Psi4 through the worker bridge, for real: HF/STO-3G methane, a killed worker, a timeout."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from conftest import finite_difference_forces
from ase.build import molecule
from ase.calculators.calculator import CalculatorError

from ase_proxima.targets import make_target
from ase_proxima.targets.psi4_bridge import Psi4Bridge, find_bridge_python

pytestmark = pytest.mark.skipif(
    find_bridge_python() is None, reason="no Psi4 bridge interpreter: scripts/setup.sh builds .venv-psi4 on Debian"
)


@pytest.fixture(scope="module")
def bridge():
    calc = Psi4Bridge(method="hf", basis="sto-3g")
    yield calc
    calc.close()


@pytest.fixture(scope="module")
def ch4():
    a = molecule("CH4")
    a.rattle(0.02, seed=5)
    return a


def test_forces_match_finite_differences(bridge, ch4):
    forces = bridge.get_forces(ch4)
    np.testing.assert_allclose(forces, finite_difference_forces(bridge, ch4, h=2e-3), atol=3e-3)


def test_agrees_with_pyscf_on_forces(bridge, ch4):
    pytest.importorskip("pyscf")
    from ase_proxima.targets.pyscf_calc import PySCF

    # same method and basis in two codes: forces agree closely (energies differ by basis-set data constants)
    np.testing.assert_allclose(bridge.get_forces(ch4), PySCF(method="hf", basis="sto-3g").get_forces(ch4),
                               atol=2e-3)


def test_a_killed_worker_is_reported_then_replaced(ch4):
    calc = Psi4Bridge(method="hf", basis="sto-3g")
    e1 = calc.get_potential_energy(ch4)
    pid = calc.worker_pid
    os.kill(pid, signal.SIGKILL)
    moved = ch4.copy()
    moved.positions[0, 0] += 0.01
    with pytest.raises(CalculatorError, match="died"):
        calc.get_potential_energy(moved)
    assert calc.get_potential_energy(moved) != e1  # a fresh worker answers
    assert calc.worker_pid not in (None, pid)
    calc.close()


def test_timeout_stops_the_worker(ch4):
    calc = Psi4Bridge(method="hf", basis="cc-pvtz", timeout=0.05)
    with pytest.raises(CalculatorError, match="no answer"):
        calc.get_potential_energy(ch4)
    assert calc.worker_pid is None
    calc.timeout = None
    calc.parameters["basis"] = "sto-3g"
    assert np.isfinite(calc.get_potential_energy(ch4))
    calc.close()


def test_psi4_errors_reach_the_user(ch4):
    calc = Psi4Bridge(method="hf", basis="no-such-basis")
    with pytest.raises(CalculatorError, match="Psi4 failed"):
        calc.get_potential_energy(ch4)
    calc.close()


def test_spec_builds_the_bridge_here():
    calc = make_target("psi4:hf/6-31g")
    assert isinstance(calc, Psi4Bridge)  # psi4 does not import in the project's own interpreter
    assert calc.parameters["basis"] == "6-31g"
