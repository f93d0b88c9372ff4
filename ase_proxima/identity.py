"""Answers the target already gave, by structure: a structure is never sent to the target twice.

NEB images sharing one calculator, an optimiser's line search coming back to a point, ASE
asking again after ``calc.reset()``, a Monte Carlo walk rejecting a move and asking for the
current state: all repeat structures the target has answered.  :class:`IdentityCache` keys a
target answer by the structure's exact content (species, positions, cell, periodicity, and
the initial magnetic moments and charges a target may start from) and returns it when every
property asked for is in it.  It keeps the newest ``maxsize`` structures.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import all_changes

__all__ = ["IdentityCache", "identity", "refresh_copy", "system_changes"]

#: what ASE's ``compare_atoms`` looks at, and in its order: the cell and periodicity, then arrays
_ATTRIBUTES = ("cell", "pbc")
_ARRAYS = tuple(c for c in all_changes if c not in _ATTRIBUTES)


def identity(atoms: Atoms) -> bytes:
    """A digest of everything a target's answer depends on in ``atoms``."""
    arrays = atoms.arrays
    parts = [arrays["numbers"].tobytes(), np.ascontiguousarray(arrays["positions"]).tobytes(),
             np.ascontiguousarray(atoms.cell.array).tobytes(), atoms.pbc.tobytes()]
    for name in ("initial_magmoms", "initial_charges"):
        if name in arrays:
            parts += [name.encode(), np.ascontiguousarray(arrays[name]).tobytes()]
    return hashlib.sha1(b"".join(parts)).digest()


def _close(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    """``np.allclose(a, b, rtol=0, atol=tol)`` for same-shaped float arrays, at a fraction of its cost."""
    if a.shape != b.shape:
        return False
    if a.dtype == b.dtype and a.tobytes() == b.tobytes():  # the usual answer, found by a memcmp
        return True
    with np.errstate(invalid="ignore"):
        return bool((np.abs(a - b) <= tol).all())


def system_changes(old: Atoms | None, new: Atoms, tol: float = 1e-15,
                   excluded: Collection[str] = ()) -> list[str]:
    """What changed from ``old`` to ``new``, leaving out ``excluded``: the answer of ASE's
    ``compare_atoms`` (the same names, the same tolerance), computed without its general-purpose
    comparisons, which cost about as much as a small classical target's whole answer and run on
    every call."""
    if old is None:
        return list(all_changes)
    changes = []
    if "cell" not in excluded and not _close(old.cell.array, new.cell.array, tol):
        changes.append("cell")
    if "pbc" not in excluded and old.pbc.tobytes() != new.pbc.tobytes():
        changes.append("pbc")
    a, b = old.arrays, new.arrays
    names = [k for k in _ARRAYS if k not in excluded]
    changes += [k for k in names if (k in a) != (k in b)]
    changes += [k for k in names if k in a and k in b and not _close(np.asarray(a[k]), np.asarray(b[k]), tol)]
    return changes


def refresh_copy(kept: Atoms, atoms: Atoms) -> bool:
    """Make ``kept``, a copy of an earlier structure that no one else holds, a copy of ``atoms`` in
    place (what ``atoms.copy()`` would give: every per-atom array, the cell, periodicity, cell
    displacement and ``info``).  ``False``, with ``kept`` untouched, where that cannot be done
    exactly: either is not a plain :class:`~ase.Atoms`, either has constraints (a copy takes deep
    copies of them), or their arrays differ in name, shape or type.

    A calculator keeps a copy of the structure of every call for ASE's change check; along a
    trajectory the structure keeps its arrays' shapes, and refreshing the copy costs a fraction of
    building a new object."""
    if type(kept) is not Atoms or type(atoms) is not Atoms or kept.constraints or atoms.constraints:
        return False
    old, new = kept.arrays, atoms.arrays
    if old.keys() != new.keys():
        return False
    for name, a in new.items():
        b = old[name]
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
    for name, a in new.items():
        np.copyto(old[name], a)
    kept.cell.array[:] = atoms.cell.array
    kept.pbc[:] = atoms.pbc
    kept.set_celldisp(atoms.get_celldisp())
    kept.info = dict(atoms.info)
    return True


class IdentityCache:
    """The target's answers to the newest ``maxsize`` distinct structures."""

    def __init__(self, maxsize: int = 1000) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[bytes, dict[str, Any]] = OrderedDict()
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, atoms: Atoms) -> bool:
        return identity(atoms) in self._entries

    def holds(self, key: bytes) -> bool:
        """Is there an answer for the structure whose :func:`identity` is ``key``?"""
        return key in self._entries

    def lookup(self, atoms: Atoms, properties: Sequence[str], key: bytes | None = None) -> dict[str, Any] | None:
        """A copy of the target's answer for ``atoms`` if it holds every one of ``properties``
        (``key``: its :func:`identity`, when the caller has it already)."""
        key = identity(atoms) if key is None else key
        entry = self._entries.get(key)
        if entry is None or any(p not in entry for p in properties):
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return {k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in entry.items()}

    def remember(self, atoms: Atoms, results: Mapping[str, Any], key: bytes | None = None,
                 private: bool = False) -> None:
        """Keep the target's answer (merged with what was known of the structure); ``private``:
        its arrays are a copy no one else changes, kept as they are (a lookup copies them)."""
        key = identity(atoms) if key is None else key
        entry = self._entries.pop(key, {})
        entry.update(results if private else
                     {k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in results.items()})
        self._entries[key] = entry
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)
