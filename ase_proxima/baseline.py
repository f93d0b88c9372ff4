"""A cheap physical model under the surrogate: the surrogate learns target minus baseline.

Learning the *difference* between an expensive target and a cheap physical model (a
tight-binding method under Hartree-Fock, a classical potential under DFT) is far easier than
learning the target: the baseline carries the bonds and the repulsion, the surrogate only a
smooth correction (Ramakrishnan et al., J. Chem. Theory Comput. 2015, "Delta-machine
learning").  :class:`Baseline` owns the baseline calculator and what it cost; the calculator
asks it for the baseline's answer on every structure it learns from or serves, subtracts it
from target answers before they join the training set, and adds it back to every served
correction.  The surrogate's uncertainty and the plausibility checks apply to the correction
alone (a deterministic baseline adds no doubt).

:func:`make_baseline` builds one from a short specification (``xtb:gfn2``, ``xtb:gfn1``, or any
target specification of :func:`~ase_proxima.targets.make_target`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.stress import full_3x3_to_voigt_6_stress

from .xtb import METHODS, XTB

__all__ = ["Baseline", "BaselineError", "make_baseline", "plain_value", "LEARNED_PROPERTIES"]

#: properties a surrogate learns as a correction to the baseline (others are not learned)
LEARNED_PROPERTIES = ("energy", "forces", "stress")


class BaselineError(RuntimeError):
    """The baseline could not compute a structure (an element it does not know, an SCF that
    did not converge)."""


def make_baseline(spec: str) -> Calculator:
    """A baseline calculator from a specification: ``xtb:gfn2`` or ``xtb:gfn1`` (tblite, through
    :class:`~ase_proxima.xtb.XTB`), or any
    :func:`~ase_proxima.targets.make_target` specification (``emt``, ``pyscf:hf/sto-3g``, ...)."""
    name, _, rest = spec.partition(":")
    if name.strip().lower() == "xtb":
        method = METHODS.get(rest.strip().lower() or "gfn2")
        if method is None:
            raise ValueError(f"xtb baseline spec must be 'xtb:gfn2' or 'xtb:gfn1', got {spec!r}")
        try:
            import tblite.interface  # noqa: F401
        except ImportError as err:
            raise ValueError("the xtb baseline needs tblite: pip install 'ase-proxima[xtb]'") from err
        return XTB(method=method)
    from .targets import make_target

    return make_target(spec)


def describe(calc: Any) -> dict[str, Any]:
    """A calculator's name and every parameter, as JSON gives them back (for fingerprints)."""
    from .training import plain

    try:
        params = calc.todict(skip_default=False)
    except TypeError:
        params = calc.todict()
    except AttributeError:
        params = {}
    return {"name": getattr(calc, "name", type(calc).__name__), "parameters": plain(params)}


class Baseline:
    """The baseline calculator of a run, its answers and their cost.

    Parameters
    ----------
    calc:
        Any ASE calculator giving at least energies and forces (an instance).
    """

    def __init__(self, calc: Calculator) -> None:
        if isinstance(calc, type):
            raise TypeError(f"baseline must be a calculator instance, not the class {calc.__name__}: "
                            f"pass {calc.__name__}()")
        if calc is None or not hasattr(calc, "get_property"):
            raise TypeError(f"baseline must be an ASE calculator, got {calc!r}")
        given = set(getattr(calc, "implemented_properties", ()))
        missing = [p for p in ("energy", "forces") if p not in given]
        if missing:
            raise ValueError(f"the baseline {getattr(calc, 'name', calc)!r} must give energies and forces "
                             f"(it lacks {missing})")
        self.calc = calc
        self.properties = tuple(p for p in LEARNED_PROPERTIES if p in given)
        self.calls = 0  # answers asked of it
        self.answered = 0  # answers it gave

    @property
    def name(self) -> str:
        return str(getattr(self.calc, "name", type(self.calc).__name__))

    def describe(self) -> dict[str, Any]:
        """Name and parameters: what the training data's corrections are relative to."""
        return describe(self.calc)

    def results(self, atoms: Atoms, properties: Iterable[str]) -> dict[str, Any]:
        """The baseline's answer on ``atoms`` for those of ``properties`` it learns under (energy
        always); raises :class:`BaselineError` with the baseline's own reason when it fails.  The
        calculator's own cache makes a second property of the same structure free."""
        wanted = ["energy", *(p for p in self.properties if p != "energy" and p in properties)]
        self.calls += 1
        try:
            out = {p: plain_value(p, self.calc.get_property(p, atoms)) for p in wanted}
        except Exception as err:
            raise BaselineError(f"the baseline {self.name} could not compute {atoms.get_chemical_formula()}: "
                                f"{type(err).__name__}: {err}") from err
        for p, v in out.items():
            if not np.all(np.isfinite(v)):
                raise BaselineError(f"the baseline {self.name} gave a non-finite {p} for "
                                    f"{atoms.get_chemical_formula()}")
        self.answered += 1
        return out

    def correction(self, target: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
        """What the surrogate learns from a target answer: target minus baseline, for the learned
        properties both give (a property the baseline lacks is not learned)."""
        return {p: _difference(target[p], base[p]) for p in LEARNED_PROPERTIES if p in target and p in base}

    def total(self, correction: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
        """A served answer: the baseline plus the surrogate's correction, for every property the
        correction holds."""
        return {p: (float(base[p]) + float(v) if np.ndim(v) == 0 else np.asarray(base[p], float) + v)
                for p, v in correction.items()}

    def summary(self) -> dict[str, Any]:
        return {"baseline": self.name, "baseline_calls": self.calls, "baseline_failures": self.calls - self.answered}

    def state(self) -> dict[str, Any]:
        return {"calls": self.calls, "answered": self.answered}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.calls, self.answered = int(state.get("calls", 0)), int(state.get("answered", 0))


def plain_value(name: str, v: Any) -> Any:
    """A property as ASE's conventions have it: a float, or an array of floats, stress in Voigt
    order (a calculator returning the 3x3 tensor, as CHGNet does, is read as ASE's ``get_stress``
    reads it)."""
    if np.ndim(v) == 0:
        return float(v)
    v = np.array(v, float)
    return full_3x3_to_voigt_6_stress(v) if name == "stress" and v.shape == (3, 3) else v


def _difference(a: Any, b: Any) -> Any:
    return float(a) - float(b) if np.ndim(a) == 0 else np.asarray(a, float) - np.asarray(b, float)
