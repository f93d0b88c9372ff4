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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from ase import Atoms

__all__ = ["IdentityCache", "identity"]


def identity(atoms: Atoms) -> bytes:
    """A digest of everything a target's answer depends on in ``atoms``."""
    arrays = atoms.arrays
    parts = [arrays["numbers"].tobytes(), np.ascontiguousarray(arrays["positions"]).tobytes(),
             np.ascontiguousarray(atoms.cell.array).tobytes(), atoms.pbc.tobytes()]
    for name in ("initial_magmoms", "initial_charges"):
        if name in arrays:
            parts += [name.encode(), np.ascontiguousarray(arrays[name]).tobytes()]
    return hashlib.sha1(b"".join(parts)).digest()


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
