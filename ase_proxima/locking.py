"""One process at a time in a run store or a sweep directory.

An exclusive ``flock`` on ``<directory>/lock``, taken without waiting: a second process
(or a second opening in the same process) gets :class:`DirectoryInUse` naming the
holder's PID, which the holder writes into the lock file.  The kernel releases the
lock when the holder exits, however it exits (a SIGKILLed run leaves no stale lock).
The lock file itself is never removed: removing it would let two processes lock two
different files of one name.
"""
from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

__all__ = ["DirectoryLock", "DirectoryInUse"]


class DirectoryInUse(RuntimeError):
    """Another process (or another object of this one) holds the directory's lock."""


class DirectoryLock:
    """An exclusive lock on a directory, held until :meth:`release` (or the process ends)."""

    def __init__(self, directory: str | os.PathLike, what: str = "directory") -> None:
        self.path = Path(directory) / "lock"
        self.what = what
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self.holder()
            os.close(self._fd)
            self._fd = None
            raise DirectoryInUse(
                f"{what} {Path(directory)} is in use by {holder}; wait for it to finish, stop it, "
                f"or choose another directory") from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())

    def holder(self) -> str:
        """Who holds the lock, as its lock file says (``'process <pid> on <host>'``)."""
        try:
            text = self.path.read_text().strip()
        except OSError:
            text = ""
        return ("process " + text.removeprefix("pid ")) if text else "another process"

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.release()
