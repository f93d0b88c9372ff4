"""The PySCF target, for real: HF/STO-3G methane against finite differences and PySCF itself."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import finite_difference_forces
from ase.build import bulk, molecule
from ase.calculators.calculator import SCFError
from ase.units import Hartree

pytest.importorskip("pyscf", reason="PySCF is installed by scripts/setup.sh (extra 'qc')")

from ase_proxima.targets import make_target  # noqa: E402
from ase_proxima.targets.pyscf_calc import PySCF  # noqa: E402


@pytest.fixture(scope="module")
def ch4():
    a = molecule("CH4")
    a.rattle(0.02, seed=3)
    return a


def test_energy_matches_pyscf_in_ev(ch4):
    from pyscf import gto, scf

    mol = gto.M(atom=[(s, tuple(p)) for s, p in zip(ch4.get_chemical_symbols(), ch4.positions)],
                basis="sto-3g", unit="Angstrom", verbose=0)
    e_ha = scf.RHF(mol).kernel()
    calc = PySCF(method="hf", basis="sto-3g")
    assert calc.get_potential_energy(ch4) == pytest.approx(e_ha * Hartree, abs=1e-6)


def test_forces_match_finite_differences(ch4):
    calc = PySCF(method="hf", basis="sto-3g")
    forces = calc.get_forces(ch4)
    np.testing.assert_allclose(forces, finite_difference_forces(calc, ch4, h=1e-3), atol=2e-3)
    assert np.abs(forces.sum(axis=0)).max() < 1e-4  # no net force on a free molecule


def test_energy_then_forces_is_one_scf(ch4):
    calc = PySCF(method="hf", basis="sto-3g")
    calc.get_potential_energy(ch4)
    calc.get_forces(ch4)
    assert len(calc.scf_cycles) == 1


def test_density_reuse_cuts_scf_cycles(ch4):
    calc = PySCF(method="hf", basis="sto-3g")
    calc.get_potential_energy(ch4)
    moved = ch4.copy()
    moved.positions[1, 0] += 0.003
    e_reuse = calc.get_potential_energy(moved)
    fresh = PySCF(method="hf", basis="sto-3g", reuse_density=False)
    assert e_reuse == pytest.approx(fresh.get_potential_energy(moved), abs=1e-6)
    assert calc.scf_cycles[1] < fresh.scf_cycles[0]


def test_open_shell_and_dft():
    ch3 = molecule("CH3")
    e_uhf = PySCF(method="hf", basis="sto-3g", spin=1).get_potential_energy(ch3)
    e_dft = PySCF(method="dft", xc="pbe", basis="sto-3g", spin=1).get_potential_energy(ch3)
    assert np.isfinite(e_uhf) and np.isfinite(e_dft) and e_uhf != e_dft


def test_errors_are_clear():
    with pytest.raises(SCFError, match="did not converge"):
        PySCF(method="hf", basis="6-31g", max_cycle=1, conv_tol=1e-14).get_potential_energy(molecule("CH4"))
    with pytest.raises(ValueError, match="molecules only"):
        PySCF().get_potential_energy(bulk("Si"))
    with pytest.raises(ValueError):
        PySCF(method="ccsd")
    with pytest.raises(ValueError):
        PySCF(method="dft")


def test_target_specs():
    calc = make_target("pyscf:hf/6-31g*")
    assert calc.parameters["basis"] == "6-31g*" and calc.parameters["method"] == "hf"
    assert make_target("pyscf:dft/pbe/def2-svp").parameters["xc"] == "pbe"
    assert make_target("emt").name == "emt"
    for bad in ("pyscf:ccsd", "gaussian:hf/sto-3g", "pyscf:"):
        with pytest.raises(ValueError):
            make_target(bad)


def test_proxima_over_hartree_fock_monte_carlo(tmp_path):
    """The product's purpose in miniature: HF/STO-3G methane MC under a 2 meV bound, checked by replay."""
    from ase_proxima import ProximaCalculator
    from ase_proxima.workflows import MonteCarlo, replay

    calc = ProximaCalculator(target=PySCF(method="hf", basis="sto-3g"), error_bound=0.002, seed=0)
    traj = tmp_path / "mc.traj"
    atoms = molecule("CH4")
    atoms.calc = calc
    result = MonteCarlo(atoms, temperature_K=500, step_size=0.003, rng=0, trajectory=traj).run(150)
    s = calc.stats
    assert s["calls"] == 151 and result.accepted.size == 150
    assert s["surrogate_calls"] > 30
    # ground truth: the target on every recorded structure, against what ProximaCalculator returned
    truth = replay(traj, PySCF(method="hf", basis="sto-3g"))
    kinds = calc.log.column("kind")
    served = truth.errors[kinds == "surrogate"]
    assert np.all(truth.errors[kinds != "surrogate"] < 1e-6)
    assert served.mean() <= 0.002


def test_no_checkpoint_file_is_written(ch4, tmp_path, monkeypatch):
    """PySCF's default checkpoint (an HDF5 file rewritten on every SCF cycle) is not written:
    nothing reads it, and it cost a third of a small-basis call."""
    from pyscf import lib

    monkeypatch.setattr(lib.param, "TMPDIR", str(tmp_path))
    calc = PySCF(method="hf", basis="sto-3g")
    calc.get_forces(ch4)
    assert all(f.stat().st_size == 0 for f in tmp_path.iterdir())
    assert calc.get_potential_energy(ch4) == pytest.approx(
        PySCF(method="hf", basis="sto-3g", reuse_density=False).get_potential_energy(ch4), abs=1e-6)
