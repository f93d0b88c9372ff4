"""LAMMPS lj/cut behind ASE's calculator interface, and as a ProximaCalculator target."""
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.lj import LennardJones

from ase_proxima import ProximaCalculator
from ase_proxima.targets import make_target
from ase_proxima.targets.lammps_lj import LammpsLJ

EPS, SIG = 0.0104, 3.4


def argon():
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(3)
    atoms.rattle(0.1, seed=2)
    return atoms


@pytest.mark.parametrize("shift", [False, True])
def test_matches_ase_lennardjones(shift):
    atoms, ref = argon(), argon()
    atoms.calc = make_target(f"lammps-lj:Ar/{EPS}/{SIG}/8.5") if not shift else LammpsLJ("Ar", EPS, SIG, 8.5, shift=True)
    ref.calc = LennardJones(epsilon=EPS, sigma=SIG, rc=8.5)
    np.testing.assert_allclose(atoms.get_forces(), ref.get_forces(), atol=1e-10)
    np.testing.assert_allclose(atoms.get_stress(), ref.get_stress(), atol=1e-12)
    # ASE shifts every pair inside rc to zero at rc; LAMMPS does so only with shift=True
    if shift:
        assert atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-9)
    else:
        assert atoms.get_potential_energy() < ref.get_potential_energy()


def test_bad_parameters_and_specs_are_refused():
    with pytest.raises(ValueError):
        LammpsLJ("Ar", -1.0, SIG)
    with pytest.raises(ValueError):
        make_target("lammps-lj:Ar/0.01")


def test_lammps_lj_drives_proxima():
    calc = ProximaCalculator(cost_aware=False, target=LammpsLJ("Ar", EPS, SIG, 8.5), error_bound=0.002, error_metric="forces_mean",
                             seed=0)
    rng = np.random.default_rng(0)
    base = argon()
    for _ in range(40):
        a = base.copy()
        a.positions += rng.normal(0, 0.03, a.positions.shape)
        f = calc.get_forces(a)
        assert np.isfinite(f).all()
    assert calc.stats["target_calls"] >= 10 and calc.surrogate.is_fitted
