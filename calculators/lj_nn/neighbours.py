"""A Verlet neighbour list (cut-off plus skin), reused while atoms move little."""
from __future__ import annotations

import numpy as np
from ase import Atoms
from matscipy.neighbours import neighbour_list

from .cells import bins_for, cell_list_pairs


class VerletList:
    """Half list (each pair once) with fixed image offsets, rebuilt when any atom moved > skin / 2.

    Built by a compiled cell list where the periodic cell is at least three bins wide, by
    matscipy otherwise (small cells, free and slab systems).

    Also rebuilt when the atom count, periodicity or cell changes.  Between builds the caller
    recomputes distances as ``pos[j] - pos[i] + offset`` from the current positions.
    """

    def __init__(self, cutoff: float, skin: float) -> None:
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.builds = 0
        self._ref: np.ndarray | None = None
        self._cell: np.ndarray | None = None
        self._pbc: np.ndarray | None = None

    def pairs(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._stale(atoms):
            self._build(atoms)
        return self.i, self.j, self.offsets

    def count_within_cutoff(self, positions: np.ndarray) -> int:
        """How many list pairs are closer than the cut-off (the pairs a force call evaluates)."""
        d = positions[self.j] - positions[self.i] + self.offsets
        return int((np.einsum("ij,ij->i", d, d) < self.cutoff * self.cutoff).sum())

    def _stale(self, atoms: Atoms) -> bool:
        if self._ref is None or len(atoms) != len(self._ref):
            return True
        if not np.array_equal(atoms.pbc, self._pbc) or not np.array_equal(atoms.cell.array, self._cell):
            return True
        if not len(atoms):
            return False
        moved = np.einsum("ij,ij->i", atoms.positions - self._ref, atoms.positions - self._ref).max()
        return bool(moved > (0.5 * self.skin) ** 2)

    def _build(self, atoms: Atoms) -> None:
        reach = self.cutoff + self.skin
        nb = bins_for(atoms.cell.array, reach) if atoms.pbc.all() and atoms.cell.rank == 3 else None
        if nb is not None:
            self._store(atoms, *cell_list_pairs(atoms.positions, atoms.cell.array, reach, nb))
            return
        if atoms.pbc.any():
            if atoms.cell.rank < 3:
                raise ValueError("a partly periodic system needs three cell vectors (add vacuum along the open ones)")
            i, j, shifts = neighbour_list("ijS", atoms, reach)
        else:
            # free cluster: a box around the atoms with room to spare (any cell shape the atoms carry is ignored)
            pos = atoms.positions
            lo = pos.min(axis=0) - reach if len(atoms) else np.zeros(3)
            extent = (np.ptp(pos, axis=0) if len(atoms) else np.zeros(3)) + 2 * reach
            i, j, shifts = neighbour_list("ijS", positions=pos, cutoff=reach, cell=np.diag(extent),
                                          cell_origin=lo, pbc=[False] * 3)
        offsets = shifts @ atoms.cell.array if atoms.pbc.any() else np.zeros((len(i), 3))
        # keep each pair once: i < j, or a self-image with its first non-zero shift positive
        keep = i < j
        same = i == j
        if same.any():
            s = shifts[same]
            first = np.where(s[:, 0] != 0, s[:, 0], np.where(s[:, 1] != 0, s[:, 1], s[:, 2]))
            keep[np.flatnonzero(same)] = first > 0
        self._store(atoms, i[keep], j[keep], offsets[keep])

    def _store(self, atoms: Atoms, i: np.ndarray, j: np.ndarray, offsets: np.ndarray) -> None:
        self.i = np.ascontiguousarray(i, dtype=np.int64)
        self.j = np.ascontiguousarray(j, dtype=np.int64)
        self.offsets = np.ascontiguousarray(offsets, dtype=float)
        self._ref = atoms.positions.copy()
        self._cell = atoms.cell.array.copy()
        self._pbc = atoms.pbc.copy()
        self.builds += 1
