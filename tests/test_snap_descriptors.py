"""SNAP rows from LAMMPS: the force and stress rows are the derivatives of the energy row."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from ase_proxima.surrogates.snap_descriptors import SNAPDescriptor


@pytest.fixture(scope="module")
def descriptor() -> SNAPDescriptor:
    return SNAPDescriptor(["Al"], cutoff=5.0, twojmax=6)


def _triclinic_al() -> Atoms:
    atoms = bulk("Al", "fcc", a=4.05).repeat((3, 3, 3))  # primitive fcc cell: LAMMPS must rotate it
    atoms.rattle(0.1, seed=1)
    return atoms


def test_counts_match_lammps(descriptor):
    assert descriptor.n_per_element == 30  # twojmax 6, as the LAMMPS documentation lists
    assert descriptor.n_features == 31
    rows = descriptor.rows(_triclinic_al())
    assert rows.energy.shape == (31,) and rows.forces.shape == (27, 3, 31) and rows.stress.shape == (6, 31)
    assert rows.energy[0] == 27  # the constant column counts the atoms


def test_force_and_stress_rows_are_energy_derivatives(descriptor):
    atoms = _triclinic_al()
    rows = descriptor.rows(atoms)
    w = np.random.default_rng(0).normal(size=rows.energy.shape)
    h = 1e-4
    for i, c in ((3, 1), (10, 2)):
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[i, c] += h
        minus.positions[i, c] -= h
        fd = -(descriptor.rows(plus).energy @ w - descriptor.rows(minus).energy @ w) / (2 * h)
        assert rows.forces[i, c] @ w == pytest.approx(fd, rel=1e-5, abs=1e-6)
    for p, q, voigt in ((0, 0, 0), (1, 2, 3), (0, 1, 5)):
        def energy(e):
            strained = atoms.copy()
            f = np.eye(3)
            if p == q:
                f[p, p] += e
            else:
                f[p, q] += e / 2
                f[q, p] += e / 2
            strained.set_cell(atoms.cell.array @ f.T, scale_atoms=True)
            return descriptor.rows(strained).energy @ w

        fd = (energy(h) - energy(-h)) / (2 * h) / atoms.get_volume()
        assert rows.stress[voigt] @ w == pytest.approx(fd, rel=1e-5, abs=1e-6)


def test_open_cluster_and_rejections(descriptor):
    cluster = bulk("Al", "fcc", a=4.05, cubic=True)
    cluster.pbc = False
    cluster.center(vacuum=3.0)
    rows = descriptor.rows(cluster)
    assert rows.stress is None
    assert np.allclose(rows.forces.sum(axis=0), 0.0, atol=1e-8)  # no external force on a free cluster
    assert "Cu" in descriptor.accepts(bulk("Cu"))
    with pytest.raises(ValueError, match="Cu"):
        descriptor.rows(bulk("Cu"))
    with pytest.raises(ValueError):
        SNAPDescriptor(["Al"], twojmax=5)
    with pytest.raises(ValueError, match="chemistry"):
        SNAPDescriptor(["Al", "Cu"], chemistry="mixed")


def _force_rows_match_energy(desc, atoms, h=1e-5):
    w = np.random.default_rng(0).normal(size=desc.n_features)
    rows = desc.rows(atoms)
    numeric = np.zeros((len(atoms), 3))
    for i in range(len(atoms)):
        for k in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[i, k] += h
            minus.positions[i, k] -= h
            numeric[i, k] = -(desc.rows(plus).energy @ w - desc.rows(minus).energy @ w) / (2 * h)
    np.testing.assert_allclose(rows.forces @ w, numeric, rtol=1e-6, atol=1e-6 * np.abs(numeric).max())
    return rows


@pytest.mark.parametrize("chemistry", ["explicit", "weighted"])
def test_alloy_and_slab_rows_are_energy_derivatives(chemistry):
    """Several elements (LAMMPS's explicit chemistry or weighted densities) and cells open in
    one or two directions: the force rows are the energy row's derivatives."""
    from ase.build import add_adsorbate, fcc111

    alloy = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
    alloy.symbols[:4] = "Ni"
    alloy.rattle(0.05, seed=1)
    desc = SNAPDescriptor(["Cu", "Ni"], cutoff=4.0, twojmax=4, chemistry=chemistry, weights=[1.0, 0.8])
    k = SNAPDescriptor(["Cu"], cutoff=4.0, twojmax=4).n_per_element
    assert desc.n_per_element == (8 * k if chemistry == "explicit" else k)
    _force_rows_match_energy(desc, alloy)
    slab = fcc111("Al", size=(2, 2, 2), vacuum=5.0)
    add_adsorbate(slab, "Au", 1.7, "fcc")
    slab.rattle(0.05, seed=2)
    desc = SNAPDescriptor(["Al", "Au"], cutoff=4.0, twojmax=4, chemistry=chemistry)
    for pbc in ([True, True, False], [True, False, True], [False, False, True]):
        slab.pbc = pbc
        assert desc.accepts(slab) is None
        rows = _force_rows_match_energy(desc, slab)
        assert rows.stress is None
        assert np.allclose(rows.forces.sum(axis=0), 0.0, atol=1e-8)
    moved = slab.copy()
    moved.positions += slab.cell[2] * 0.3 + slab.cell[0] * 0.5  # a lattice-vector shift changes nothing
    np.testing.assert_allclose(desc.rows(moved).energy, desc.rows(slab).energy, atol=1e-10)


def test_quadratic_columns_and_their_force_rows():
    """Quadratic SNAP: k + k(k+1)/2 columns per element, force rows still the energy's derivative."""
    quad = SNAPDescriptor(["Al"], cutoff=4.5, twojmax=4, quadratic=True)
    k = SNAPDescriptor(["Al"], cutoff=4.5, twojmax=4).n_per_element
    assert quad.n_per_element == k + k * (k + 1) // 2
    atoms = _triclinic_al()
    rows = quad.rows(atoms)
    assert rows.energy.shape == (1 + quad.n_per_element,)
    w = np.random.default_rng(1).normal(size=rows.energy.shape)
    plus, minus = atoms.copy(), atoms.copy()
    plus.positions[5, 0] += 1e-4
    minus.positions[5, 0] -= 1e-4
    fd = -(quad.rows(plus).energy @ w - quad.rows(minus).energy @ w) / 2e-4
    assert rows.forces[5, 0] @ w == pytest.approx(fd, rel=1e-5, abs=1e-6)
