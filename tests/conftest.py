"""Shared helpers: real calculators and real random walks, no mocks."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.cluster import Icosahedron


class CountingEMT(EMT):
    """ASE's EMT, counting how often it really computes (to check ``stats`` against)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.ncalls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        from ase.calculators.calculator import all_changes

        self.ncalls += 1
        super().calculate(atoms, properties, all_changes if system_changes is None else system_changes)


def metropolis_walk(atoms: Atoms, calc, steps: int, temperature: float = 500.0, step_size: float = 0.01,
                    seed: int = 0) -> list[dict]:
    """A Metropolis walk of a copy of ``atoms`` with the project's driver; per step the trial
    structure, the energy ``calc`` gave it and who answered (``calc.log``)."""
    from ase_proxima.workflows import MonteCarlo

    walker = atoms.copy()
    walker.calc = calc
    mc = MonteCarlo(walker, temperature_K=temperature, step_size=step_size, rng=seed)
    out: list[dict] = []
    mc.attach(lambda: out.append({"atoms": mc.trial.copy(), "energy": mc.trial_energy,
                                  "kind": calc.log[-1]["kind"] if hasattr(calc, "log") else None}))
    mc.run(steps)
    return out[1:]  # the observers also see the starting state


@pytest.fixture
def methane() -> Atoms:
    return molecule("CH4")


@pytest.fixture
def cu13() -> Atoms:
    return Icosahedron("Cu", noshells=2, latticeconstant=3.61)


def fixed_sequence(atoms: Atoms, n: int, amplitude: float = 0.02, seed: int = 0) -> list[Atoms]:
    """A reproducible list of rattled copies (a recorded trajectory stand-in for replay tests)."""
    rng = np.random.default_rng(seed)
    frames = []
    cur = atoms.copy()
    for _ in range(n):
        cur = cur.copy()
        cur.positions += rng.normal(0.0, amplitude, cur.positions.shape)
        frames.append(cur.copy())
    return frames


def finite_difference_forces(calc, atoms: Atoms, h: float) -> np.ndarray:
    """Central-difference forces -dE/dx from ``calc``'s energies (to check analytic forces);
    ``calc`` is a calculator or a function of a structure returning its energy."""
    energy = calc.get_potential_energy if hasattr(calc, "get_potential_energy") else calc
    numeric = np.zeros((len(atoms), 3))
    for i in range(len(atoms)):
        for k in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[i, k] += h
            minus.positions[i, k] -= h
            numeric[i, k] = -(energy(plus) - energy(minus)) / (2 * h)
    return numeric


def kill_past_checkpoint(command: list[str], state: Path, steps: int, timeout: float = 120.0) -> int:
    """Start ``command`` (a real process), SIGKILL it a little after its walk checkpoint
    (``state``, a run's ``mc_state.json``) reaches ``steps``, so the trajectory holds steps the
    checkpoint does not; returns the checkpointed step count."""
    import json
    import signal
    import sys
    import time

    proc = subprocess.Popen([sys.executable, *command])
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if json.loads(state.read_text())["walk"]["nsteps"] >= steps:
                break
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return int(json.loads(state.read_text())["walk"]["nsteps"])


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    which = shutil.which("initdb")
    return Path(which).parent if which else None


@pytest.fixture(scope="session")
def postgres_url():
    """A throw-away PostgreSQL server (Debian's binaries, installed by scripts/setup.sh)."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (scripts/setup.sh installs Debian's postgresql as root)")
    base = Path(tempfile.mkdtemp(prefix="proxima-pg-"))
    base.chmod(0o755)
    prefix: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        prefix = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = base / "data"
    subprocess.run(prefix + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "proxima"],
                   check=True, capture_output=True)
    subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-o",
                             f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "proxima", "proxima"],
                       check=True, capture_output=True)
        yield f"postgresql://proxima@127.0.0.1:{port}/proxima"
    finally:
        subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
