"""The lean GFN-xTB calculator the xtb baseline uses: the same answers as tblite's own ASE
calculator, across geometries, compositions, charges and cells."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.calculator import CalculationFailed, InputError

pytest.importorskip("tblite", reason="tblite is installed by scripts/setup.sh (extra 'xtb')")

from tblite.ase import TBLite  # noqa: E402

from ase_proxima.baseline import make_baseline  # noqa: E402
from ase_proxima.xtb import XTB  # noqa: E402


def _same(a: Atoms, mine: XTB, theirs: TBLite, stress: bool = False) -> None:
    assert mine.get_potential_energy(a) == pytest.approx(theirs.get_potential_energy(a), abs=1e-7)
    np.testing.assert_allclose(mine.get_forces(a), theirs.get_forces(a), atol=1e-6)
    if stress:
        np.testing.assert_allclose(mine.get_stress(a), theirs.get_stress(a), atol=1e-7)


@pytest.mark.parametrize("method", ["GFN2-xTB", "GFN1-xTB"])
def test_answers_equal_tblites_own_calculator_along_a_walk_and_across_molecules(method):
    mine, theirs = XTB(method=method), TBLite(method=method, verbosity=0)
    rng = np.random.default_rng(3)
    ch4 = molecule("CH4")
    for _ in range(4):  # the same molecule moved: the SCF restarts from the last result
        a = ch4.copy()
        a.positions += rng.normal(0.0, 0.05, a.positions.shape)
        _same(a, mine, theirs)
    for name in ("H2O", "CH3CH2OH", "CH4"):  # another composition: a new tblite structure
        _same(molecule(name), mine, theirs)


def test_charge_and_unpaired_electrons_come_from_the_atoms_as_tblite_reads_them():
    oh = Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]], charges=[-1.0, 0.0])
    _same(oh, XTB(), TBLite(verbosity=0))
    mine = XTB()
    e_anion = mine.get_potential_energy(oh)
    neutral = Atoms("OH", positions=oh.positions, magmoms=[1.0, 0.0])  # same geometry, a radical
    e_radical = mine.get_potential_energy(neutral)  # charges and spins changed: a new tblite structure
    assert e_radical == pytest.approx(TBLite(verbosity=0).get_potential_energy(neutral), abs=1e-7)
    assert abs(e_anion - e_radical) > 0.1


def test_a_periodic_cell_gives_stress_as_tblite_does():
    si = bulk("Si", "diamond", a=5.43)
    si.rattle(0.02, seed=1)
    _same(si, XTB(), TBLite(verbosity=0), stress=True)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="GFN2-xTB"):
        XTB(method="GFN7-xTB")
    with pytest.raises(InputError, match="86"):  # GFN2-xTB's parameters end at radon
        XTB().get_potential_energy(Atoms("U2", positions=[[0, 0, 0], [0, 0, 2.6]]))
    calc = XTB(max_iterations=1)
    with pytest.raises(CalculationFailed):
        calc.get_potential_energy(molecule("CH3CH2OH"))
    calc.set(max_iterations=250)  # a failed SCF leaves the calculator usable
    assert calc.get_potential_energy(molecule("CH3CH2OH")) == pytest.approx(
        TBLite(verbosity=0).get_potential_energy(molecule("CH3CH2OH")), abs=1e-7)


def test_the_xtb_baseline_spec_builds_it():
    assert isinstance(make_baseline("xtb:gfn2"), XTB)
    assert make_baseline("xtb:gfn1").parameters["method"] == "GFN1-xTB"
    assert make_baseline("xtb").parameters["method"] == "GFN2-xTB"
