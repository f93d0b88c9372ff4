"""Persistence of a Proxima run: training data, the per-call log, the controller state.

A store is a directory:

``training.db``  every target result (structure + energy/forces/stress) in an
                 ``ase.db`` SQLite database, written as soon as the target
                 returns, so a crash loses no target work;
``calls.csv``    the per-call log, one flushed line per call;
``state.json``   controller, counters and random state after the latest call,
                 replaced atomically, so a run can resume where it stopped;
``models.pkl``   the fitted surrogate and uncertainty after the latest fit, so a
                 resumed run predicts bit for bit as the original would have.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

__all__ = ["CallLog", "RunStore", "LOG_COLUMNS", "training_row"]

#: columns of the per-call log, in order
LOG_COLUMNS: tuple[str, ...] = (
    "step",
    "kind",
    "reason",
    "uncertainty",
    "threshold",
    "alpha",
    "error",
    "n_fitted",
    "t_target",
    "t_surrogate",
    "t_uncertainty",
    "t_training",
    "t_controller",
    "t_total",
)

_STORED_PROPERTIES = ("energy", "free_energy", "forces", "stress", "dipole", "charges", "magmom", "magmoms")


class CallLog:
    """The per-call record of a run: a list of dicts with :data:`LOG_COLUMNS` keys.

    ``kind`` is ``target`` (the target answered), ``surrogate`` (the surrogate
    answered) or ``audit`` (the gate allowed the surrogate, the target ran as a
    random check and answered).  ``error`` is the surrogate-vs-target error
    where both ran, else NaN.  ``n_fitted`` is the number of target results the
    surrogate had been fitted on when it made this call's prediction.
    """

    def __init__(self, records: Sequence[Mapping[str, Any]] = ()) -> None:
        self.records: list[dict[str, Any]] = [dict(r) for r in records]

    def append(self, record: Mapping[str, Any]) -> None:
        self.records.append(dict(record))

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.records[i]

    def column(self, name: str) -> np.ndarray:
        """One column as an array (NaN where missing)."""
        if name == "kind" or name == "reason":
            return np.array([r.get(name) for r in self.records], dtype=object)
        return np.array([_as_float(r.get(name)) for r in self.records], float)

    def to_dataframe(self):
        """A pandas DataFrame (pandas is an optional dependency)."""
        import pandas as pd

        return pd.DataFrame(self.records, columns=list(LOG_COLUMNS))

    def to_csv(self, path: str | os.PathLike) -> None:
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=LOG_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for r in self.records:
                writer.writerow(r)

    @classmethod
    def read_csv(cls, path: str | os.PathLike) -> CallLog:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        out = []
        for r in rows:
            rec: dict[str, Any] = {}
            for k in LOG_COLUMNS:
                v = r.get(k, "")
                if k in ("kind", "reason"):
                    rec[k] = v or None
                elif k in ("step", "n_fitted"):
                    rec[k] = int(v)
                else:
                    rec[k] = _as_float(v)
            out.append(rec)
        return cls(out)


class _DatabaseLock:
    """A PostgreSQL advisory lock held around ase.db's table creation and row writes.

    Two processes writing to one server through ase.db's PostgreSQL backend collide without it:
    both create the tables on an empty database (one fails), and concurrent writes break a
    foreign key between rows and their species (both seen in the tests).  One lock per write
    is cheap next to a target call."""

    KEY = 0x50524F58  # any fixed number, the same in every process

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> _DatabaseLock:
        import psycopg2

        self.con = psycopg2.connect(self.url)
        self.con.autocommit = True
        with self.con.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (self.KEY,))
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            with self.con.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (self.KEY,))
        finally:
            self.con.close()


def _as_float(v: Any) -> float:
    if v is None or v == "":
        return float("nan")
    return float(v)


def training_row(atoms: Atoms, results: Mapping[str, Any]) -> Atoms:
    """A copy of ``atoms`` carrying ``results`` in a SinglePointCalculator (what ase.db stores)."""
    copy = atoms.copy()
    copy.calc = SinglePointCalculator(copy, **{k: v for k, v in results.items() if k in _STORED_PROPERTIES})
    return copy


class RunStore:
    """A run directory holding training data (ase.db), the call log (CSV) and the state (JSON).

    ``database``: an ase.db URL for the training data instead of the run's own SQLite file,
    e.g. ``postgresql://user:password@host:5432/proxima``, so that many runs and workers write
    to one server.  Rows then carry ``run=<run>`` (default: the directory's name) and
    :meth:`training` reads this run's rows, or every run's with ``shared=True``: a
    ProximaCalculator opened on a ``shared`` store warm-starts from every worker's target
    results (resuming such a run refits on them, so its decisions are not bit-identical).
    """

    def __init__(self, path: str | os.PathLike, database: str | None = None, run: str | None = None,
                 shared: bool = False) -> None:
        import ase.db

        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"store must be a directory, {self.path} is a file")
        self.path.mkdir(parents=True, exist_ok=True)
        self.log_path = self.path / "calls.csv"
        self.state_path = self.path / "state.json"
        self.models_path = self.path / "models.pkl"
        self.database = database
        self.shared = bool(shared)
        if database is None:
            self.db_path: Path | None = self.path / "training.db"
            self.run = run
            self.db = ase.db.connect(str(self.db_path), type="db", append=True)
        else:
            if not database.startswith(("postgresql://", "postgres://")):
                raise ValueError(f"database must be a postgresql:// URL, got {database!r}")
            self.db_path = None
            self.run = run if run is not None else self.path.resolve().name
            try:
                self.db = ase.db.connect(database, type="postgresql", append=True)
            except ImportError as err:
                raise ImportError(f"a PostgreSQL store needs the 'cluster' extra (pip install "
                                  f"'ase-proxima[cluster]'): {err}") from err
            with _DatabaseLock(database):
                self.db.count()  # ase.db creates its tables on first use

    # ------------------------------------------------------------- training
    def add_training(self, atoms: Atoms, results: Mapping[str, Any], **keys: Any) -> int:
        """Persist one target result; returns its row id."""
        if self.run is not None:
            keys = {**keys, "run": self.run}
        if self.database is None:
            return self.db.write(training_row(atoms, results), key_value_pairs=keys)
        with _DatabaseLock(self.database):
            return self.db.write(training_row(atoms, results), key_value_pairs=keys)

    def training(self, shared: bool | None = None) -> list[tuple[Atoms, dict[str, Any]]]:
        """This run's stored target results in insertion order; every run's with ``shared``
        (default: the store's ``shared`` flag)."""
        out = []
        shared = self.shared if shared is None else shared
        query = {} if shared or self.run is None else {"run": self.run}
        for row in self.db.select(sort="id", **query):
            atoms = row.toatoms()
            res = {k: row.get(k) for k in _STORED_PROPERTIES if row.get(k) is not None}
            out.append((atoms, res))
        return out

    def training_count(self, shared: bool | None = None) -> int:
        shared = self.shared if shared is None else shared
        return self.db.count() if shared or self.run is None else self.db.count(run=self.run)

    # ------------------------------------------------------------------- log
    def append_log(self, record: Mapping[str, Any]) -> None:
        new = not self.log_path.exists() or self.log_path.stat().st_size == 0
        with open(self.log_path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=LOG_COLUMNS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(record)
            fh.flush()

    def read_log(self) -> CallLog:
        if not self.log_path.exists():
            return CallLog()
        return CallLog.read_csv(self.log_path)

    def truncate_log(self, n_records: int) -> None:
        """Keep the first ``n_records`` log lines (drops lines written after the saved state)."""
        log = self.read_log()
        if len(log) > n_records:
            CallLog(log.records[:n_records]).to_csv(self.log_path)

    # ----------------------------------------------------------------- state
    def write_state(self, state: Mapping[str, Any]) -> None:
        tmp = self.state_path.with_suffix(".json.tmp")
        with open(tmp, "w") as fh:
            json.dump(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_path)

    def read_state(self) -> dict[str, Any] | None:
        if not self.state_path.exists():
            return None
        with open(self.state_path) as fh:
            return json.load(fh)

    # ---------------------------------------------------------------- models
    def write_models(self, models: Any, n_fitted: int) -> None:
        """Persist fitted models with the training-set size they were fitted on."""
        tmp = self.models_path.with_suffix(".pkl.tmp")
        with open(tmp, "wb") as fh:
            pickle.dump({"n_fitted": n_fitted, "models": models}, fh)
        os.replace(tmp, self.models_path)

    def read_models(self) -> dict[str, Any] | None:
        if not self.models_path.exists():
            return None
        with open(self.models_path, "rb") as fh:
            return pickle.load(fh)
