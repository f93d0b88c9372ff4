"""Ensemble of DeePMD models (deepmd-kit, PyTorch backend): the thesis's SLUSCHI surrogate.

``members`` Deep Potential models (``se_e2_a`` descriptor) differ only in
their random seeds.  They are trained together on the target results gathered
so far; their mean is the served answer and their standard deviation the
spread the gate compares with the threshold (the thesis's "model deviation").

Training runs out of process (``python -m ase_proxima.surrogates._deepmd_train``):
one interpreter imports torch once and trains every member, and deepmd-kit's
logging, threads and working-directory files stay out of the user's process.
A refit after the first warm-starts each member from its last checkpoint
(``init_model``) with ``refit_steps`` more steps, so online retraining costs
seconds, not minutes.  Prediction loads the checkpoints with
:class:`deepmd.infer.DeepPot` in process.

Needs the ``deepmd`` extra, which ``scripts/setup.sh`` installs: deepmd-kit
3.2.0 built against the local CPU torch 2.13.0 (its PyPI wheel is compiled for
another torch and refuses to load), ``e3nn`` and ``dpdata``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from .base import Prediction, Surrogate, check_training_set

__all__ = ["DeePMDEnsemble", "deepmd_available"]

# ASE's Voigt order of the stress: xx, yy, zz, yz, xz, xy
_VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def deepmd_available() -> str | None:
    """``None`` when deepmd-kit's PyTorch backend imports, else why not (install hint included)."""
    try:
        import dpdata  # noqa: F401
        from deepmd.infer import DeepPot  # noqa: F401
    except Exception as exc:  # ImportError, or deepmd's op library refusing a mismatched torch
        return (f"deepmd-kit is not usable ({type(exc).__name__}: {exc}); run scripts/setup.sh, which "
                "builds deepmd-kit 3.2.0 against torch 2.13.0")
    return None


class DeePMDEnsemble(Surrogate):
    """``members`` DeePMD models trained with different seeds; mean answer, std spread.

    Parameters
    ----------
    members:
        Models in the ensemble (the thesis used 4).
    type_map:
        Element symbols in type order; ``None`` takes the sorted symbols of the
        first training set.  Structures with other elements are refused.
    rcut, rcut_smth:
        Descriptor cutoff and the start of its smooth decay (Angstrom).
    sel:
        Largest neighbour count within ``rcut`` per type; ``None`` measures the
        first training set and adds 30% headroom.
    neuron, axis_neuron, fitting_neuron:
        Embedding-net widths, the descriptor's axis count and fitting-net
        widths: deepmd's se_e2_a settings, kept small so CPU training takes
        seconds per hundred steps.
    train_steps, refit_steps:
        Optimiser steps of the first fit and of each warm-started refit.
    start_lr, stop_lr:
        Exponentially decaying learning rate of each training.
    force_prefactor, virial_prefactor:
        Final loss weights of forces and virial relative to the energy
        (deepmd ramps them from ``(1000, 0.02, virial)`` at the start).
    workdir:
        Where data, inputs and checkpoints live; default a temporary directory
        removed with the object.
    seed:
        Member ``m`` uses seed ``seed + m``.
    timeout:
        Seconds one training (all members) may take before it is abandoned.
    """

    implemented_properties = ("energy", "forces", "stress")

    def __init__(self, members: int = 4, type_map: Sequence[str] | None = None, rcut: float = 5.0,
                 rcut_smth: float = 3.0, sel: int | None = None, neuron: Sequence[int] = (8, 16, 32),
                 axis_neuron: int = 4, fitting_neuron: Sequence[int] = (32, 32), train_steps: int = 400,
                 refit_steps: int = 100, start_lr: float = 1e-3, stop_lr: float = 3e-5,
                 force_prefactor: float = 1.0, virial_prefactor: float = 1.0,
                 workdir: str | os.PathLike | None = None, seed: int = 0, timeout: float = 3600.0) -> None:
        if members < 2:
            raise ValueError(f"an ensemble needs at least 2 members for a spread, got {members}")
        if not 0 < rcut_smth < rcut:
            raise ValueError(f"need 0 < rcut_smth < rcut, got {rcut_smth}, {rcut}")
        if train_steps < 1 or refit_steps < 1:
            raise ValueError("train_steps and refit_steps must be >= 1")
        if sel is not None and sel < 1:
            raise ValueError(f"sel must be >= 1, got {sel}")
        self.members, self.rcut, self.rcut_smth = int(members), float(rcut), float(rcut_smth)
        self.type_map = list(type_map) if type_map is not None else None
        self.sel = sel
        self.neuron, self.axis_neuron, self.fitting_neuron = list(neuron), int(axis_neuron), list(fitting_neuron)
        self.train_steps, self.refit_steps = int(train_steps), int(refit_steps)
        self.start_lr, self.stop_lr = float(start_lr), float(stop_lr)
        self.force_prefactor, self.virial_prefactor = float(force_prefactor), float(virial_prefactor)
        self.seed, self.timeout = int(seed), float(timeout)
        self._own_dir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="proxima-deepmd-") if workdir is None else workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.fits = 0
        self._models: list[Any] | None = None

    # ------------------------------------------------------------------ protocol
    @property
    def is_fitted(self) -> bool:
        return self.fits > 0 and all(self._checkpoint(m).exists() for m in range(self.members))

    def accepts(self, atoms: Atoms) -> str | None:
        if self.type_map is None:
            return None
        extra = sorted(set(atoms.get_chemical_symbols()) - set(self.type_map))
        return f"elements {extra} are not in the model's type map {self.type_map}" if extra else None

    def properties_for(self, atoms: Atoms) -> tuple[str, ...]:
        return self.implemented_properties if atoms.pbc.all() else ("energy", "forces")

    def fit(self, images: Sequence[Atoms], results: Sequence[Mapping[str, Any]]) -> None:
        """Train every member on all images (warm start from the last fit when there is one)."""
        check_training_set(images, results)
        why = deepmd_available()
        if why is not None:
            raise RuntimeError(why)
        if any("forces" not in r for r in results):
            raise ValueError("DeePMDEnsemble trains on forces: every training result needs 'forces'")
        if self.type_map is None:
            self.type_map = sorted(set(images[0].get_chemical_symbols()))
        for a in images:
            why = self.accepts(a)
            if why is not None:
                raise ValueError(why)
        if self.sel is None:
            self.sel = _neighbour_headroom(images, self.rcut)
        systems = self._write_data(images, results)
        warm = self.is_fitted
        jobs = []
        for m in range(self.members):
            mdir = self.workdir / f"member{m}"
            mdir.mkdir(exist_ok=True)
            (mdir / "input.json").write_text(json.dumps(self._input(systems, m, warm), indent=1))
            jobs.append({"dir": str(mdir), "init_model": str(self._checkpoint(m)) if warm else None})
        (self.workdir / "jobs.json").write_text(json.dumps(jobs))
        env = dict(os.environ, DP_BACKEND="pytorch")
        env.setdefault("OMP_NUM_THREADS", "1")
        proc = subprocess.run([sys.executable, "-m", "ase_proxima.surrogates._deepmd_train",
                               str(self.workdir / "jobs.json")], capture_output=True, text=True,
                              timeout=self.timeout, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"deepmd training failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        self.fits += 1
        self._models = None

    def predict(self, atoms: Atoms, properties: Sequence[str] | None = None) -> Prediction:
        if not self.is_fitted:
            raise RuntimeError("DeePMDEnsemble.predict before fit")
        why = self.accepts(atoms)
        if why is not None:
            raise ValueError(why)
        wanted = set(properties or self.properties_for(atoms))
        periodic = bool(atoms.pbc.all())
        coords = atoms.get_positions()[None]
        cells = atoms.cell.array.reshape(1, 9) if periodic else None
        types = [self.type_map.index(s) for s in atoms.get_chemical_symbols()]
        energies, forces, virials = [], [], []
        for model in self._load():
            e, f, v = model.eval(coords, cells, types)[:3]
            energies.append(float(np.ravel(e)[0]))
            forces.append(np.asarray(f, float).reshape(len(atoms), 3))
            virials.append(np.asarray(v, float).reshape(3, 3))
        e, f = np.array(energies), np.array(forces)
        results: dict[str, Any] = {"energy": float(e.mean())}
        spread: dict[str, Any] = {"energy": float(e.std())}
        if "forces" in wanted:
            results["forces"], spread["forces"] = f.mean(axis=0), f.std(axis=0)
        if "stress" in wanted and periodic:
            # ASE's stress is minus the virial over the volume
            s = np.array([[-v[a, b] for a, b in _VOIGT] for v in virials]) / atoms.get_volume()
            results["stress"], spread["stress"] = s.mean(axis=0), s.std(axis=0)
        return Prediction(results=results, spread=spread)

    # ------------------------------------------------------------------ helpers
    def _checkpoint(self, m: int) -> Path:
        return self.workdir / f"member{m}" / "model.ckpt.pt"

    def _load(self) -> list[Any]:
        if self._models is None:
            from deepmd.infer import DeepPot

            self._models = [DeepPot(str(self._checkpoint(m))) for m in range(self.members)]
        return self._models

    def _write_data(self, images: Sequence[Atoms], results: Sequence[Mapping[str, Any]]) -> list[str]:
        """The training set in deepmd's npy format (one system per composition and size), via dpdata."""
        import dpdata

        data = self.workdir / "data"
        if data.exists():
            shutil.rmtree(data)
        multi = dpdata.MultiSystems(type_map=self.type_map)
        for atoms, res in zip(images, results):
            a = atoms.copy()
            props = {k: res[k] for k in ("energy", "forces", "stress") if k in res}
            if not a.pbc.all():
                props.pop("stress", None)
            a.calc = SinglePointCalculator(a, **props)
            multi.append(dpdata.LabeledSystem(a, fmt="ase/structure", type_map=self.type_map))
        multi.to_deepmd_npy(str(data))
        return sorted(str(p) for p in data.iterdir() if p.is_dir())

    def _input(self, systems: list[str], m: int, warm: bool) -> dict[str, Any]:
        """deepmd-kit's training input for member ``m``."""
        steps = self.refit_steps if warm else self.train_steps
        seed = self.seed + m
        decay = max(1, steps // 20)
        return {
            "model": {
                "type_map": self.type_map,
                "descriptor": {"type": "se_e2_a", "sel": [self.sel] * len(self.type_map), "rcut": self.rcut,
                               "rcut_smth": self.rcut_smth, "neuron": self.neuron,
                               "axis_neuron": self.axis_neuron, "seed": seed},
                "fitting_net": {"neuron": self.fitting_neuron, "seed": seed},
            },
            "learning_rate": {"type": "exp", "start_lr": self.start_lr, "stop_lr": self.stop_lr,
                              "decay_steps": decay},
            "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1.0,
                     "start_pref_f": 1000.0, "limit_pref_f": self.force_prefactor,
                     "start_pref_v": self.virial_prefactor, "limit_pref_v": self.virial_prefactor},
            "training": {"training_data": {"systems": systems, "batch_size": 1}, "numb_steps": steps,
                         "seed": seed, "disp_file": "lcurve.out", "disp_freq": max(1, steps // 4),
                         "save_freq": steps, "save_ckpt": "model.ckpt"},
        }

    def __getstate__(self) -> dict:
        # the checkpoints travel inside the pickle (ProximaCalculator.save_state), torch modules do not
        state = dict(self.__dict__)
        state["_models"] = None
        state["_checkpoints"] = [self._checkpoint(m).read_bytes() if self._checkpoint(m).exists() else None
                                 for m in range(self.members)]
        return state

    def __setstate__(self, state: dict) -> None:
        checkpoints = state.pop("_checkpoints", [])
        self.__dict__.update(state)
        self._own_dir = True
        self.workdir = Path(tempfile.mkdtemp(prefix="proxima-deepmd-"))
        for m, blob in enumerate(checkpoints):
            if blob is not None:
                self._checkpoint(m).parent.mkdir(parents=True, exist_ok=True)
                self._checkpoint(m).write_bytes(blob)

    def __del__(self) -> None:
        if getattr(self, "_own_dir", False):
            shutil.rmtree(getattr(self, "workdir", ""), ignore_errors=True)


def _neighbour_headroom(images: Sequence[Atoms], rcut: float) -> int:
    """Largest neighbour count within ``rcut`` over ``images``, plus 30%, rounded up to a multiple of 4."""
    from ase.neighborlist import neighbor_list

    most = 1
    for a in images:
        i = neighbor_list("i", a, rcut)
        if i.size:
            most = max(most, int(np.bincount(i, minlength=len(a)).max()))
    return int(4 * np.ceil(1.3 * most / 4))
