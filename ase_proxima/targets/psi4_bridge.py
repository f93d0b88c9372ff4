"""Psi4 as a target, in process where ``import psi4`` works, else through a worker process.

Psi4 is not on PyPI.  Debian's ``psi4`` package imports only under Debian's
``/usr/bin/python3`` with Debian's numpy 1.x, so from the project's numpy-2
environment it runs out of process: :class:`Psi4Bridge` starts
``_psi4_worker.py`` under a bridge interpreter (``scripts/setup.sh`` builds
``.venv-psi4`` from Debian's Python with ASE) and exchanges one JSON line per
calculation.  The worker stays up between calls; if it dies, the call fails
with its last output and the next call starts a fresh worker.

:func:`psi4_calculator` picks ASE's own in-process ``Psi4`` calculator when
``import psi4`` works here (a conda user), the bridge otherwise.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, CalculatorError, all_changes

__all__ = ["Psi4Bridge", "psi4_calculator", "find_bridge_python"]

_WORKER = Path(__file__).with_name("_psi4_worker.py")


def find_bridge_python() -> str | None:
    """The interpreter that runs the worker: ``$ASE_PROXIMA_PSI4_PYTHON``, else a ``.venv-psi4``
    beside the active environment, else ``None``."""
    env = os.environ.get("ASE_PROXIMA_PSI4_PYTHON")
    if env:
        return env
    for base in (Path(sys.prefix).parent, Path.cwd()):
        candidate = base / ".venv-psi4" / "bin" / "python"
        if candidate.exists():
            return str(candidate)
    return None


class Psi4Bridge(Calculator):
    """Psi4 energies and forces computed in a separate worker process.

    Parameters
    ----------
    method, basis:
        Psi4 method and basis (always give the basis: ASE's Psi4 defaults to aug-cc-pvtz).
    charge, multiplicity:
        Total charge and spin multiplicity.
    memory, num_threads:
        Psi4 resources for the worker.
    python:
        Interpreter for the worker (default :func:`find_bridge_python`).
    timeout:
        Seconds one calculation may take before the worker is killed and the
        call fails (``None``: no limit).
    """

    implemented_properties = ["energy", "free_energy", "forces"]
    name = "psi4-bridge"
    default_parameters: dict[str, Any] = {
        "method": "hf",
        "basis": "6-31g",
        "charge": 0,
        "multiplicity": 1,
        "memory": "500MB",
        "num_threads": 1,
    }

    def __init__(self, python: str | None = None, timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.python = python or find_bridge_python()
        if self.python is None:
            raise CalculatorError(
                "no interpreter with Psi4 found: run scripts/setup.sh (it builds .venv-psi4) "
                "or set ASE_PROXIMA_PSI4_PYTHON"
            )
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be > 0 seconds")
        self.timeout = timeout
        self._proc: subprocess.Popen | None = None
        self._log = None

    # ------------------------------------------------------------ worker
    @property
    def worker_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _start(self) -> None:
        self._log = tempfile.NamedTemporaryFile(prefix="proxima-psi4-", suffix=".log", delete=False)
        self._proc = subprocess.Popen(
            [self.python, str(_WORKER)],
            cwd=tempfile.mkdtemp(prefix="proxima-psi4-cwd-"),  # Psi4 drops timer.dat etc. in its cwd
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )
        hello = self._read_line(timeout=120)
        if json.loads(hello).get("ready") is not True:
            raise CalculatorError(f"Psi4 worker did not start: {self._log_tail()}")

    def _log_tail(self, n: int = 2000) -> str:
        if self._log is None:
            return ""
        try:
            with open(self._log.name, errors="replace") as fh:
                return fh.read()[-n:]
        except OSError:
            return ""

    def _read_line(self, timeout: float | None) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        if not ready:
            self.close()
            raise CalculatorError(f"Psi4 worker gave no answer within {timeout} s; it was stopped")
        line = self._proc.stdout.readline()
        if not line:
            code = self._proc.poll()
            tail = self._log_tail()
            self._proc = None
            raise CalculatorError(f"Psi4 worker died (exit code {code}); its last output:\n{tail}")
        return line

    def close(self) -> None:
        """Stop the worker (a later calculation starts a new one)."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -------------------------------------------------------------- ASE
    def calculate(self, atoms: Atoms | None = None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        if atoms.pbc.any():
            raise ValueError("the Psi4 target handles molecules only (set atoms.pbc = False)")
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        want = ["energy", "forces"] if "forces" in properties else ["energy"]
        p = self.parameters
        request = {
            "numbers": atoms.numbers.tolist(),
            "positions": atoms.positions.tolist(),
            "properties": want,
            "settings": {k: p[k] for k in ("method", "basis", "charge", "multiplicity", "memory", "num_threads")},
        }
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            tail = self._log_tail()
            self._proc = None
            raise CalculatorError(f"Psi4 worker died; its last output:\n{tail}") from None
        reply = json.loads(self._read_line(self.timeout))
        if "error" in reply:
            raise CalculatorError(f"Psi4 failed ({reply['type']}): {reply['error']}")
        self.results = {"energy": reply["energy"], "free_energy": reply["energy"]}
        if "forces" in reply:
            self.results["forces"] = np.array(reply["forces"])


def psi4_calculator(**kwargs: Any) -> Calculator:
    """ASE's in-process Psi4 calculator where ``import psi4`` works, else :class:`Psi4Bridge`."""
    try:
        import psi4  # noqa: F401
    except ImportError:
        return Psi4Bridge(**kwargs)
    from ase.calculators.psi4 import Psi4

    kwargs.pop("python", None)
    kwargs.pop("timeout", None)
    return Psi4(**kwargs)
