"""One long-lived deepmd-kit training process per Python process, shared by every ensemble.

Importing torch and deepmd-kit's training code takes seconds, longer than a warm-started
refit itself; a worker started once (:func:`training_worker`) makes every later training pay
only for its steps.  A training that raises is reported and the worker stays up; one that
crashes the worker (a signal, an abort in C++) is reported with the exit status and the
tail of its output, and the next training starts a fresh worker; one that runs past its
timeout kills the worker (:class:`subprocess.TimeoutExpired`).
"""
from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["TrainingWorker", "training_worker"]


class TrainingWorker:
    """A ``python -m ase_proxima.surrogates._deepmd_train`` process and its status pipe."""

    def __init__(self) -> None:
        env = dict(os.environ, DP_BACKEND="pytorch")
        env.setdefault("OMP_NUM_THREADS", "1")
        self._read_fd, write_fd = os.pipe()
        self._output = tempfile.TemporaryFile()  # deepmd-kit's output: a file, so a full pipe never blocks it
        self.process = subprocess.Popen([sys.executable, "-m", "ase_proxima.surrogates._deepmd_train", str(write_fd)],
                                        stdin=subprocess.PIPE, stdout=self._output, stderr=subprocess.STDOUT,
                                        pass_fds=(write_fd,), env=env, text=True)
        os.close(write_fd)
        self._status = os.fdopen(self._read_fd, "r")

    def alive(self) -> bool:
        return self.process.poll() is None

    def train(self, jobs_file: str | os.PathLike, timeout: float) -> None:
        """Train the members listed in ``jobs_file``; raises RuntimeError (training failed) or
        :class:`subprocess.TimeoutExpired`."""
        self._output.seek(0)
        self._output.truncate()
        try:
            self.process.stdin.write(f"{Path(jobs_file)}\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the worker is gone: said below, with its exit status
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise subprocess.TimeoutExpired(self.process.args, timeout)
            ready, _, _ = select.select([self._status], [], [], left)
            if ready:
                break
        line = self._status.readline()
        if not line:  # the worker died mid-training
            code = self.process.wait()
            raise RuntimeError(f"deepmd training failed (exit {code}):\n{self._tail()}")
        reply = json.loads(line)
        if not reply["ok"]:
            raise RuntimeError(f"deepmd training failed (exit 1):\n{reply['error']}")

    def _tail(self) -> str:
        self._output.seek(0)
        return self._output.read().decode(errors="replace")[-3000:]

    def close(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait()
        for f in (self.process.stdin, self._status, self._output):
            try:
                f.close()
            except OSError:
                pass


_worker: TrainingWorker | None = None


def training_worker() -> TrainingWorker:
    """This process's worker, started (again) when there is none alive."""
    global _worker
    if _worker is None or not _worker.alive():
        if _worker is not None:
            _worker.close()
        _worker = TrainingWorker()
    return _worker


@atexit.register
def _stop() -> None:
    if _worker is not None:
        _worker.close()
