"""lj_nn: pretrained network LJ against ASE's LennardJones and LAMMPS lj/cut; derivatives; images."""
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError, get_calculator_class
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.calculators.lj import LennardJones
from hypothesis import given, settings
from hypothesis import strategies as st

import lj_nn
from lj_nn import LennardJonesNN

EPS, SIG = 0.0104, 3.4  # argon, eV and Angstrom


def argon(repeat=3, rattle=0.15, seed=1):
    """A warm fcc argon cell (a = 5.26 A) with rattled positions."""
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(repeat)
    atoms.rattle(rattle, seed=seed)
    return atoms


def test_registered_with_ase_and_ships_the_paper_topologies():
    assert get_calculator_class("lj_nn") is LennardJonesNN
    assert {"1x3x1", "1x5x8x1"} <= set(lj_nn.available_topologies())


@pytest.mark.parametrize("topology, tol", [("1x3x1", 2e-3), ("1x5x8x1", 5e-4)])
def test_pretrained_weights_give_lj(topology, tol):
    """Reduced-unit weights serve argon's epsilon, sigma and rc without training."""
    atoms = argon()
    ref = atoms.copy()
    ref.calc = LennardJones(epsilon=EPS, sigma=SIG, rc=2.5 * SIG)
    atoms.calc = LennardJonesNN(epsilon=EPS, sigma=SIG, rc=2.5 * SIG, topology=topology)
    n = len(atoms)
    # energies per atom in units of epsilon, forces relative to their spread
    assert abs(atoms.get_potential_energy() - ref.get_potential_energy()) / n / EPS < tol * 10
    df = atoms.get_forces() - ref.get_forces()
    assert np.sqrt((df**2).mean()) < 0.05 * np.sqrt((ref.get_forces() ** 2).mean())
    assert np.abs(atoms.get_stress() - ref.get_stress()).max() < 0.05 * np.abs(ref.get_stress()).max()


def test_analytic_pair_mode_matches_ase_and_lammps():
    from ase_proxima.targets.lammps_lj import LammpsLJ

    atoms = argon()
    ase_lj, ours = atoms.copy(), atoms.copy()
    ase_lj.calc = LennardJones(epsilon=EPS, sigma=SIG, rc=8.0)
    ours.calc = LennardJonesNN(epsilon=EPS, sigma=SIG, rc=8.0, pair="analytic")
    assert ours.get_potential_energy() == pytest.approx(ase_lj.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(ours.get_forces(), ase_lj.get_forces(), atol=1e-10)
    np.testing.assert_allclose(ours.get_stress(), ase_lj.get_stress(), atol=1e-12)
    np.testing.assert_allclose(ours.get_potential_energies(), ase_lj.get_potential_energies(), atol=1e-10)
    lmp = atoms.copy()
    lmp.calc = LammpsLJ("Ar", EPS, SIG, rc=8.0, shift=True)
    assert lmp.get_potential_energy() == pytest.approx(ours.get_potential_energy(), abs=1e-8)
    np.testing.assert_allclose(lmp.get_forces(), ours.get_forces(), atol=1e-9)


@pytest.mark.parametrize("pbc", [True, False])
def test_forces_are_minus_the_numerical_gradient(pbc):
    atoms = argon(repeat=2, rattle=0.2, seed=4)
    atoms.pbc = pbc
    calc = LennardJonesNN(epsilon=EPS, sigma=SIG, rc=2.5 * SIG)
    atoms.calc = calc
    numeric = calculate_numerical_forces(atoms, eps=1e-5)
    np.testing.assert_allclose(atoms.get_forces(), numeric, atol=1e-8)


def test_stress_against_finite_differences():
    atoms = argon(repeat=2, rattle=0.2, seed=5)
    calc = LennardJonesNN(epsilon=EPS, sigma=SIG, rc=2.5 * SIG, topology="1x5x8x1")
    atoms.calc = calc
    np.testing.assert_allclose(atoms.get_stress(), calculate_numerical_stress(atoms, eps=1e-6), atol=1e-9)


def test_periodic_cell_and_its_replica_agree():
    atoms = argon(repeat=2, rattle=0.2, seed=6)
    big = atoms.repeat((2, 1, 2))
    atoms.calc = LennardJonesNN(epsilon=EPS, sigma=SIG, rc=2.5 * SIG)
    big.calc = LennardJonesNN(epsilon=EPS, sigma=SIG, rc=2.5 * SIG)
    assert big.get_potential_energy() == pytest.approx(4 * atoms.get_potential_energy(), rel=1e-12)
    np.testing.assert_allclose(big.get_forces()[: len(atoms)], atoms.get_forces(), atol=1e-12)
    np.testing.assert_allclose(big.get_stress(), atoms.get_stress(), atol=1e-14)


def test_small_cell_sees_its_own_images():
    """A one-atom fcc cell (cut-off far beyond the cell) equals a conventional supercell per atom."""
    prim = bulk("Ar", "fcc", a=5.26)
    conv = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)
    for a in (prim, conv):
        a.calc = LennardJonesNN(epsilon=EPS, sigma=SIG, rc=3 * SIG)
    assert prim.get_potential_energy() == pytest.approx(conv.get_potential_energy() / len(conv), rel=1e-12)


def test_free_cluster_has_no_stress():
    atoms = Atoms("Ar4", positions=[[0, 0, 0], [3.8, 0, 0], [0, 3.8, 0], [0, 0, 3.9]])
    atoms.calc = LennardJonesNN(epsilon=EPS, sigma=SIG)
    assert np.isfinite(atoms.get_potential_energy())
    assert np.abs(atoms.get_forces().sum(0)).max() < 1e-12
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()


def test_verlet_list_is_reused_and_rebuilt():
    atoms = argon(repeat=3, rattle=0.05)
    calc = LennardJonesNN(epsilon=EPS, sigma=SIG, rc=2.5 * SIG, skin=1.0)
    atoms.calc = calc
    atoms.get_forces()
    atoms.positions[0, 0] += 0.3  # under skin / 2: the list stays, and the answer equals a fresh build
    f_reused = atoms.get_forces()
    assert calc.neighbours.builds == 1
    fresh = atoms.copy()
    fresh.calc = LennardJonesNN(epsilon=EPS, sigma=SIG, rc=2.5 * SIG, skin=1.0)
    np.testing.assert_allclose(f_reused, fresh.get_forces(), atol=1e-13)
    atoms.positions[1, 0] += 0.6
    atoms.get_forces()
    assert calc.neighbours.builds == 2


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        LennardJonesNN(epsilon=-1.0)
    with pytest.raises(ValueError):
        LennardJonesNN(sigma=1.0, rc=5.0)  # beyond the shipped networks' 3 sigma range
    with pytest.raises(FileNotFoundError):
        LennardJonesNN(topology="1x7x7x7x1")
    with pytest.raises(ValueError):
        LennardJonesNN(pair="spline")
    for pair in ("network", "analytic"):
        twins = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 0]])
        twins.calc = LennardJonesNN(pair=pair)
        with pytest.raises(ValueError, match="on top of each other"):
            twins.get_forces()


@settings(max_examples=200, deadline=None)
@given(z=st.floats(min_value=-60.0, max_value=60.0))
def test_vectorisable_exp_matches_numpy(z):
    """The kernel's exp (scaling and squaring) is exact to ~1e-13 where tanh still varies."""
    from lj_nn.kernel import _exp, _tanh

    ref = np.exp(np.clip(z, -40.0, 40.0))
    assert abs(_exp(z) / ref - 1.0) < 1e-13
    assert abs(_tanh(z / 2) - np.tanh(z / 2)) < 1e-13


@settings(max_examples=40, deadline=None)
@given(r=st.floats(min_value=0.9, max_value=2.95))
def test_dimer_energy_follows_lj_over_the_training_range(r):
    """Any distance in range: 1x3x1's pair energy within 0.02 epsilon of the exact shifted 12-6 term."""
    dimer = Atoms("Ar2", positions=[[0, 0, 0], [r * SIG, 0, 0]])
    dimer.calc = LennardJonesNN(epsilon=EPS, sigma=SIG, rc=3 * SIG)
    exact = 4 * (r**-12 - r**-6) - 4 * (3.0**-12 - 3.0**-6)
    assert dimer.get_potential_energy() / EPS == pytest.approx(exact, abs=0.02)


def test_readme_lj_nn_example_runs(capsys):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "LennardJonesNN" in b)
    exec(compile(block, "README.md", "exec"), {})  # noqa: S102 - our own documentation
    assert "energy drift" in capsys.readouterr().out


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), tilt=st.floats(-0.3, 0.3))
def test_cell_list_finds_the_same_pairs_as_matscipy(seed, tilt):
    """Triclinic cell, atoms outside the box: the compiled cell list equals matscipy's half list
    (each pair once; ours may store it either way round)."""
    from matscipy.neighbours import neighbour_list

    from lj_nn.cells import bins_for, cell_list_pairs

    rng = np.random.default_rng(seed)
    cell = np.diag([18.0, 17.0, 19.0])
    cell[1, 0] = tilt * 17.0
    cell[2, 1] = -tilt * 19.0
    atoms = Atoms("Ar300", scaled_positions=rng.uniform(-0.5, 1.5, (300, 3)), cell=cell, pbc=True)
    reach = 3.9
    nb = bins_for(cell, reach)
    assert nb is not None
    i, j, off = cell_list_pairs(atoms.positions, cell, reach, nb)
    ri, rj, rs = neighbour_list("ijS", atoms, reach)
    keep = ri < rj
    assert len(i) == keep.sum()
    ours = {(a, b, *np.round(o, 6)) if a < b else (b, a, *np.round(-o, 6)) for a, b, o in zip(i, j, off)}
    ref = {(a, b, *np.round(o, 6)) for a, b, o in zip(ri[keep], rj[keep], rs[keep] @ cell)}
    assert ours == ref


def test_slab_matches_ase_lennardjones():
    """Periodic in x and y only (matscipy's list): the analytic mode equals ASE's LennardJones."""
    from ase.build import fcc111

    slab = fcc111("Ar", size=(3, 3, 4), a=5.26, vacuum=8.0)
    slab.rattle(0.1, seed=3)
    assert list(slab.pbc) == [True, True, False]
    ref = slab.copy()
    ref.calc = LennardJones(epsilon=EPS, sigma=SIG, rc=8.0)
    slab.calc = LennardJonesNN(epsilon=EPS, sigma=SIG, rc=8.0, pair="analytic")
    assert slab.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(slab.get_forces(), ref.get_forces(), atol=1e-10)


def test_importing_lj_nn_does_not_load_the_proxima_stack():
    """lj_nn depends on nnapprox (the code-region study), ASE and numpy, not on ase_proxima."""
    import subprocess
    import sys

    code = ("import sys, lj_nn; heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('ase_proxima', 'dscribe', 'sklearn', 'lammps', 'torch')); print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
