"""Ensemble of DeePMD models (deepmd-kit, PyTorch backend): the thesis's SLUSCHI surrogate.

``members`` Deep Potential models (``se_e2_a`` descriptor) differ only in
their random seeds.  They are trained together on the target results gathered
so far; their mean is the served answer and their standard deviation the
spread the gate compares with the threshold (the thesis's "model deviation").

Training runs out of process, in a worker that stays up between trainings
(:mod:`.deepmd_worker`): it imports torch and deepmd-kit once and trains every
member, and deepmd-kit's logging, threads and working-directory files stay out
of the user's process.
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
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from .base import FittedState, Prediction, Surrogate, WorkloadSize, check_training_set, mean_neighbours
from .deepmd_worker import training_worker

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
        first training set (``type_map_``).  Structures with other elements are refused.
    rcut, rcut_smth:
        Descriptor cutoff and the start of its smooth decay (Angstrom).
    sel:
        Largest neighbour count within ``rcut`` per type; ``None`` measures the
        first training set and adds 30% headroom (``sel_``).
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
        Where data, inputs and checkpoints live (``workdir_``); default a temporary
        directory made at the first fit and removed with the object.
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
        self.members, self.rcut, self.rcut_smth = members, rcut, rcut_smth
        self.type_map = type_map
        self.sel = sel
        self.neuron, self.axis_neuron, self.fitting_neuron = neuron, axis_neuron, fitting_neuron
        self.train_steps, self.refit_steps = train_steps, refit_steps
        self.start_lr, self.stop_lr = start_lr, stop_lr
        self.force_prefactor, self.virial_prefactor = force_prefactor, virial_prefactor
        self.seed, self.timeout = seed, timeout
        self.workdir = workdir
        self.type_map_: list[str] | None = None
        self.sel_: int | None = None
        self.workdir_: Path | None = None
        self.fits_ = 0
        self._own_dir = False
        self._models: list[Any] | None = None

    # ------------------------------------------------------------------ protocol
    @property
    def is_fitted(self) -> bool:
        return self.fits_ > 0 and all(self._checkpoint(m).exists() for m in range(int(self.members)))

    def accepts(self, atoms: Atoms) -> str | None:
        type_map = self.type_map_ or self.type_map
        if type_map is None:
            return None
        extra = sorted(set(atoms.get_chemical_symbols()) - set(type_map))
        return f"elements {extra} are not in the model's type map {list(type_map)}" if extra else None

    def properties_for(self, atoms: Atoms) -> tuple[str, ...]:
        return self.implemented_properties if atoms.pbc.all() else ("energy", "forces")

    def _fit(self, images: Sequence[Atoms], results: Sequence[Mapping[str, Any]]) -> None:
        """Train every member on all images (warm start from the last fit when there is one)."""
        check_training_set(images, results)
        why = deepmd_available()
        if why is not None:
            raise RuntimeError(why)
        if any("forces" not in r for r in results):
            raise ValueError("DeePMDEnsemble trains on forces: every training result needs 'forces'")
        if self.type_map_ is None:
            self.type_map_ = list(self.type_map or sorted(set(images[0].get_chemical_symbols())))
        for a in images:
            why = self.accepts(a)
            if why is not None:
                raise ValueError(why)
        if self.sel_ is None:
            self.sel_ = int(self.sel) if self.sel is not None else _neighbour_headroom(images, float(self.rcut))
        systems = self._write_data(images, results)
        warm = self.is_fitted
        jobs = []
        for m in range(int(self.members)):
            mdir = self._dir() / f"member{m}"
            mdir.mkdir(exist_ok=True)
            (mdir / "input.json").write_text(json.dumps(self._input(systems, m, warm), indent=1))
            jobs.append({"dir": str(mdir), "init_model": str(self._checkpoint(m)) if warm else None})
        (self._dir() / "jobs.json").write_text(json.dumps(jobs))
        training_worker().train(self._dir() / "jobs.json", float(self.timeout))
        self.fits_ += 1
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
        types = [self.type_map_.index(s) for s in atoms.get_chemical_symbols()]
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
    def _dir(self) -> Path:
        """The working directory, made on first use (a temporary one unless ``workdir`` was given)."""
        if self.workdir_ is None:
            self._own_dir = self.workdir is None
            self.workdir_ = Path(tempfile.mkdtemp(prefix="proxima-deepmd-") if self.workdir is None else self.workdir)
            self.workdir_.mkdir(parents=True, exist_ok=True)
        return self.workdir_

    def _checkpoint(self, m: int) -> Path:
        return self._dir() / f"member{m}" / "model.ckpt.pt"

    def _load(self) -> list[Any]:
        if self._models is None:
            from deepmd.infer import DeepPot

            self._models = [DeepPot(str(self._checkpoint(m))) for m in range(int(self.members))]
        return self._models

    def _write_data(self, images: Sequence[Atoms], results: Sequence[Mapping[str, Any]]) -> list[str]:
        """The training set in deepmd's npy format (one system per composition and size), via dpdata."""
        import dpdata

        data = self._dir() / "data"
        if data.exists():
            shutil.rmtree(data)
        multi = dpdata.MultiSystems(type_map=self.type_map_)
        for atoms, res in zip(images, results):
            a = atoms.copy()
            props = {k: res[k] for k in ("energy", "forces", "stress") if k in res}
            if not a.pbc.all():
                props.pop("stress", None)
            a.calc = SinglePointCalculator(a, **props)
            multi.append(dpdata.LabeledSystem(a, fmt="ase/structure", type_map=self.type_map_))
        multi.to_deepmd_npy(str(data))
        return sorted(str(p) for p in data.iterdir() if p.is_dir())

    def _input(self, systems: list[str], m: int, warm: bool) -> dict[str, Any]:
        """deepmd-kit's training input for member ``m``."""
        steps = int(self.refit_steps if warm else self.train_steps)
        seed = int(self.seed) + m
        decay = max(1, steps // 20)
        return {
            "model": {
                "type_map": self.type_map_,
                "descriptor": {"type": "se_e2_a", "sel": [self.sel_] * len(self.type_map_), "rcut": float(self.rcut),
                               "rcut_smth": float(self.rcut_smth), "neuron": list(self.neuron),
                               "axis_neuron": int(self.axis_neuron), "seed": seed},
                "fitting_net": {"neuron": list(self.fitting_neuron), "seed": seed},
            },
            "learning_rate": {"type": "exp", "start_lr": float(self.start_lr), "stop_lr": float(self.stop_lr),
                              "decay_steps": decay},
            "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1.0,
                     "start_pref_f": 1000.0, "limit_pref_f": float(self.force_prefactor),
                     "start_pref_v": float(self.virial_prefactor), "limit_pref_v": float(self.virial_prefactor)},
            "training": {"training_data": {"systems": systems, "batch_size": 1}, "numb_steps": steps,
                         "seed": seed, "disp_file": "lcurve.out", "disp_freq": max(1, steps // 4),
                         "save_freq": steps, "save_ckpt": "model.ckpt"},
        }

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_models"] = None  # torch modules are loaded again from the checkpoints
        state["_own_dir"] = False  # a copy never deletes the original's directory
        return state

    def __del__(self) -> None:
        if getattr(self, "_own_dir", False) and getattr(self, "workdir_", None) is not None:
            shutil.rmtree(self.workdir_, ignore_errors=True)

    # ------------------------------------------------------------ persistence
    def fitted_state(self) -> FittedState | None:
        """The members' checkpoints (weights, optimiser state, model settings) as arrays plus JSON.
        deepmd-kit loads checkpoints with ``weights_only``; restoring writes them back from these,
        so a reopened run predicts and warm-starts its next refit exactly as the original."""
        if not self.is_fitted:
            return None
        import torch

        arrays: dict[str, np.ndarray] = {}
        skeletons = [_flatten(torch.load(self._checkpoint(m), map_location="cpu", weights_only=True), f"m{m}",
                              arrays) for m in range(int(self.members))]
        meta = {"type_map": self.type_map_, "sel": self.sel_, "fits": self.fits_, "checkpoints": skeletons}
        return FittedState(arrays, meta)

    def restore_fitted_state(self, state: FittedState) -> None:
        import torch

        for m, skeleton in enumerate(state.meta["checkpoints"]):
            self._checkpoint(m).parent.mkdir(parents=True, exist_ok=True)
            torch.save(_unflatten(skeleton, state.arrays), self._checkpoint(m))
        self.type_map_, self.sel_ = list(state.meta["type_map"]), int(state.meta["sel"])
        self.fits_ = int(state.meta["fits"])
        self._models = None

    def call_cost(self, atoms: Atoms) -> list[WorkloadSize]:
        sel = self.sel_ or self.sel or int(np.ceil(mean_neighbours(atoms, float(self.rcut)) * 1.2))
        return [WorkloadSize("deepmd ensemble inference", "deepmd",
                             {"n_atoms": len(atoms), "sel": int(sel), "neuron": list(self.neuron),
                              "axis_neuron": int(self.axis_neuron), "fitting": list(self.fitting_neuron),
                              "cell": atoms.cell.array.tolist() if atoms.pbc.all() else None,
                              "cutoff": float(self.rcut), "members": int(self.members)})]


def _flatten(obj: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    """A checkpoint (nested dicts and lists of tensors, numbers, strings) as a JSON skeleton whose
    tensors are moved into ``arrays`` (named by their path)."""
    import torch

    if isinstance(obj, torch.Tensor):
        arrays[key] = obj.detach().cpu().numpy()
        return {"__tensor__": key, "dtype": str(obj.dtype).removeprefix("torch.")}
    if isinstance(obj, dict):
        if not all(isinstance(k, (str, int)) for k in obj):
            raise TypeError("checkpoint keys must be strings or integers")
        return {"__dict__": [[k, _flatten(v, f"{key}/{k}", arrays)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_flatten(v, f"{key}/{i}", arrays) for i, v in enumerate(obj)],
                "tuple": isinstance(obj, tuple)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint skeleton")


def _unflatten(skeleton: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    import torch

    if isinstance(skeleton, dict) and "__tensor__" in skeleton:
        return torch.from_numpy(np.array(arrays[skeleton["__tensor__"]])).to(getattr(torch, skeleton["dtype"]))
    if isinstance(skeleton, dict) and "__dict__" in skeleton:
        return {k: _unflatten(v, arrays) for k, v in skeleton["__dict__"]}
    if isinstance(skeleton, dict) and "__list__" in skeleton:
        items = [_unflatten(v, arrays) for v in skeleton["__list__"]]
        return tuple(items) if skeleton["tuple"] else items
    return skeleton


def _neighbour_headroom(images: Sequence[Atoms], rcut: float) -> int:
    """Largest neighbour count within ``rcut`` over ``images``, plus 30%, rounded up to a multiple of 4."""
    from ase.neighborlist import neighbor_list

    most = 1
    for a in images:
        i = neighbor_list("i", a, rcut)
        if i.size:
            most = max(most, int(np.bincount(i, minlength=len(a)).max()))
    return int(4 * np.ceil(1.3 * most / 4))
