"""ASAP's EMT behind ASE's calculator interface, as a ProximaCalculator target."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

asap3 = pytest.importorskip("asap3", reason="asap3 is the 'asap' extra, installed by scripts/setup.sh")

from ase_proxima import ProximaCalculator  # noqa: E402
from ase_proxima.targets import make_target  # noqa: E402
from ase_proxima.targets.asap import AsapEMT  # noqa: E402


def test_adapter_matches_asap3_and_follows_ase_conventions():
    atoms = bulk("Al", "fcc", a=4.0, cubic=True).repeat((3, 3, 3))
    atoms.rattle(0.05, seed=0)
    direct = atoms.copy()
    direct.calc = asap3.EMT()
    calc = make_target("asap3")
    assert isinstance(calc, AsapEMT) and "stress" in calc.implemented_properties
    atoms.calc = calc
    assert atoms.get_potential_energy() == pytest.approx(direct.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), direct.get_forces(), atol=1e-10)
    np.testing.assert_allclose(atoms.get_stress(), direct.get_stress(), atol=1e-12)
    # a moved and strained structure is recomputed, on the same neighbour list object
    atoms.positions[0] += 0.1
    atoms.set_cell(atoms.cell * 1.01, scale_atoms=True)
    direct.positions[0] += 0.1
    direct.set_cell(direct.cell * 1.01, scale_atoms=True)
    assert atoms.get_potential_energy() == pytest.approx(direct.get_potential_energy(), abs=1e-10)
    # forces by finite differences of the energy
    h = 1e-4
    probe = atoms.copy()
    probe.calc = AsapEMT()
    probe.positions[3, 1] += h
    ep = probe.get_potential_energy()
    probe.positions[3, 1] -= 2 * h
    em = probe.get_potential_energy()
    assert atoms.get_forces()[3, 1] == pytest.approx(-(ep - em) / (2 * h), abs=1e-5)


def test_asap_target_drives_proxima():
    atoms = bulk("Al", "fcc", a=4.0, cubic=True).repeat((2, 2, 2))
    calc = ProximaCalculator(cost_aware=False, target=AsapEMT(), error_bound=0.05, error_metric="forces_mean", seed=0)
    rng = np.random.default_rng(0)
    for _ in range(40):
        a = atoms.copy()
        a.positions += rng.normal(0, 0.03, a.positions.shape)
        calc.get_forces(a)
    assert calc.stats["target_calls"] >= 10 and calc.surrogate.is_fitted
