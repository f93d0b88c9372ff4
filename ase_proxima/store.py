"""Persistence of a Proxima run: a directory that loses nothing and runs nothing it finds.

A store is a directory:

``training.db``   every target result (structure + energy/forces/stress) in an ``ase.db``
                  SQLite database (or rows on a PostgreSQL server), written as soon as the
                  target returns, so a crash loses no target work;
``calls.csv``     the per-call log, one flushed line per call, only ever appended to
                  (:mod:`.calllog` reads it back; a torn last line is cut off on opening);
``state.json``    the :class:`~ase_proxima.runstate.RunState` as of a recent call, written by
                  the calculator every ``checkpoint_every`` calls (and on ``close``), atomically;
``models.json`` + ``models.npz``  the fitted surrogate as arrays plus JSON, loaded with
                  ``allow_pickle=False`` (a family that cannot be written so is refitted
                  from ``training.db``);
``equations/``   per-structure normal equations of a fit that keeps them (the SNAP ensemble),
                  raw float64 records with their keys, only ever appended to, under a tag of
                  the surrogate's settings: a reopened run reads them back instead of
                  describing every structure again (checked on one structure first);
``store.json``    what the data mean (the fingerprint: target and its parameters, error
                  metric, surrogate family, species), the run's key, and every change of
                  the control settings;
``lock``          held by the process that writes (see :mod:`.locking`).

Nothing in a store is unpickled: a ``models.pkl`` left by an older version is ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculatorSetupError
from ase.calculators.singlepoint import SinglePointCalculator

from .calllog import LOG_COLUMNS, CallLog, format_record, read_log_csv
from .locking import DirectoryLock
from .runstate import RunState
from .surrogates.base import FittedState

__all__ = ["RunStore", "StoreMismatch", "CallLog", "LOG_COLUMNS", "training_row", "atomic_write", "run_fingerprint"]

log = logging.getLogger("ase_proxima")

_STORED_PROPERTIES = ("energy", "free_energy", "forces", "stress", "dipole", "charges", "magmom", "magmoms")
STORE_FORMAT = 2


class StoreMismatch(CalculatorSetupError, ValueError):
    """A store holds data that mean something else than this run would add (another target,
    metric, surrogate family or set of species)."""


def atomic_write(path: Path, data: bytes, sync: bool = True) -> None:
    """Write ``path`` whole or not at all: a uniquely named temporary file beside it, then rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def training_row(atoms: Atoms, results: Mapping[str, Any]) -> Atoms:
    """A copy of ``atoms`` carrying ``results`` in a SinglePointCalculator (what ase.db stores)."""
    copy = atoms.copy()
    copy.calc = SinglePointCalculator(copy, **{k: v for k, v in results.items() if k in _STORED_PROPERTIES})
    return copy


def _row_results(row: Any) -> dict[str, Any]:
    """A training row's target results, and its baseline's answer under ``'baseline'`` if kept."""
    out = {k: row.get(k) for k in _STORED_PROPERTIES if row.get(k) is not None}
    base = row.data.get("baseline") if row.get("data") else None
    if base:
        out["baseline"] = {k: float(v) if np.ndim(v) == 0 else np.asarray(v, float) for k, v in base.items()}
    return out


def run_fingerprint(target: Any, error_metric: str, surrogate: Any = None, baseline: Any = None) -> dict[str, Any]:
    """What a run's data mean: the target (its name and every parameter), the error metric, the
    surrogate family once known, and the baseline under the surrogate (``'none'`` without one: a
    model fitted on corrections to one baseline means nothing over another); ``target_key`` names
    the target in database rows."""
    from .baseline import describe
    from .surrogates.defaults import surrogate_family

    described = describe(target)
    key = hashlib.sha1(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]
    return {"target": described, "target_key": key, "error_metric": error_metric,
            "surrogate": surrogate_family(surrogate) if surrogate is not None else None,
            "baseline": describe(baseline) if baseline is not None else "none"}


def fingerprint_differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What differs between two fingerprints, one phrase each (keys missing on either side are
    not compared: a surrogate family is known only once chosen, and a store from before baselines
    holds target answers any run can learn from)."""
    out = []
    for key in ("target", "error_metric", "surrogate", "baseline"):
        a, b = stored.get(key), current.get(key)
        if a is not None and b is not None and a != b:
            out.append(f"{key}: the store has {_short(a)}, this run {_short(b)}")
    return out


def _short(v: Any) -> str:
    text = json.dumps(v, sort_keys=True, default=str)
    return text if len(text) <= 200 else text[:200] + "..."


class RunStore:
    """A run directory (see the module doc).

    Parameters
    ----------
    path:
        The directory (created).
    database:
        An ase.db URL for the training data instead of the run's own SQLite file, e.g.
        ``postgresql://user:password@host:5432/proxima``, so that many runs and workers write
        to one server.  Rows carry ``run=<run key>``; :meth:`training` reads this run's rows,
        or with ``shared=True`` every run's rows made with the same target.
    run:
        The run key of the rows.  Default: a key made when the directory is first used (the
        directory's name and a random suffix), kept in ``store.json``, so two stores never
        share rows unless the user names one key for both.
    shared:
        Warm-start from every run's rows (with the same target) on the database.
    readonly:
        Open for reading only: no lock, nothing written (reports, annotations, a look at a
        running store).
    peers:
        Other store directories (each with its own SQLite ``training.db``) whose target results
        this store's run also learns from, read only: runs on a process pool, one store each,
        every one starting from what the others had learnt when it opened.  A peer whose data
        mean something else (its fingerprint) raises :class:`StoreMismatch` when read.
    """

    def __init__(self, path: str | os.PathLike, database: str | None = None, run: str | None = None,
                 shared: bool = False, readonly: bool = False,
                 peers: Sequence[str | os.PathLike] = ()) -> None:
        import ase.db

        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"store must be a directory, {self.path} is a file")
        self.peers = [Path(p) for p in peers]
        if self.peers and database is not None:
            raise ValueError("peers are other stores' SQLite files; a database server is shared already (shared=True)")
        if any(p.resolve() == self.path.resolve() for p in self.peers):
            raise ValueError(f"a store cannot be its own peer: {self.path}")
        if readonly and not self.path.is_dir():
            raise FileNotFoundError(f"no store at {self.path}")
        self.readonly = bool(readonly)
        self.database = database
        self.shared = bool(shared) or bool(self.peers)
        self.log_path = self.path / "calls.csv"
        self.state_path = self.path / "state.json"
        self.meta_path = self.path / "store.json"
        self._lock: DirectoryLock | None = None
        self._log_fh = None
        self._equations_checked: set[str] = set()
        if not readonly:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = DirectoryLock(self.path, "run store")
        self.meta = self._read_meta()
        if (self.path / "models.pkl").exists():
            log.warning("%s: models.pkl (an older store format) is ignored: pickles found in a store are never "
                        "loaded; models are refitted from training.db", self.path)
        if run is not None:
            self.meta["run"] = run
        elif "run" not in self.meta:
            self.meta["run"] = f"{self.path.resolve().name}-{uuid.uuid4().hex[:12]}"
        self.run = self.meta["run"]
        if database is None:
            self.db_path: Path | None = self.path / "training.db"
            if readonly and not self.db_path.exists():
                self.db = None
            else:
                # one writer per directory (the lock above), and SQLite's transactions keep each row
                # whole: ase.db's own lock file adds nothing but a file that a process killed while
                # writing leaves behind, on which every later open would wait for ever
                if not readonly:
                    self.db_path.with_name(self.db_path.name + ".lock").unlink(missing_ok=True)
                self.db = ase.db.connect(str(self.db_path), type="db", append=True, use_lock_file=False)
        else:
            if not database.startswith(("postgresql://", "postgres://")):
                raise ValueError(f"database must be a postgresql:// URL, got {database!r}")
            self.db_path = None
            try:
                self.db = ase.db.connect(database, type="postgresql", append=True)
            except ImportError as err:
                raise ImportError(f"a PostgreSQL store needs the 'cluster' extra (pip install "
                                  f"'ase-proxima[cluster]'): {err}") from err
            with _DatabaseLock(database):
                self.db.count()  # ase.db creates its tables on first use
        if not readonly:
            self._write_meta()
            self._repair_log()

    # ----------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Release the directory (the lock and the log file)."""
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._lock is None

    def _writable(self) -> None:
        if self.readonly:
            raise PermissionError(f"{self.path} was opened read-only")
        if self._lock is None:
            raise PermissionError(f"{self.path} has been closed")

    @classmethod
    @contextmanager
    def snapshot(cls, path: str | os.PathLike) -> Iterator[RunStore]:
        """A new store written into a temporary directory beside ``path`` that replaces ``path``
        (whole) when the block ends without an error."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            store = cls(tmp)
            yield store
            store.close()
            if path.exists():
                old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    # ---------------------------------------------------------------- meta
    def _read_meta(self) -> dict[str, Any]:
        if not self.meta_path.exists():
            return {}
        meta = json.loads(self.meta_path.read_text())
        if meta.get("format", STORE_FORMAT) > STORE_FORMAT:
            raise ValueError(f"{self.path} was written by a newer ase-proxima (store format {meta['format']})")
        return meta

    def _write_meta(self) -> None:
        self.meta["format"] = STORE_FORMAT
        atomic_write(self.meta_path, json.dumps(self.meta, indent=1, sort_keys=True).encode(), sync=False)

    @property
    def fingerprint(self) -> dict[str, Any]:
        """What the stored data mean (empty for a new store)."""
        return dict(self.meta.get("fingerprint", {}))

    def check_fingerprint(self, fingerprint: Mapping[str, Any]) -> None:
        """Raise :class:`StoreMismatch` naming every difference between the store's data and a run
        with ``fingerprint`` (a store without data matches anything)."""
        diffs = fingerprint_differences(self.fingerprint, fingerprint)
        if diffs and self.has_data():
            raise StoreMismatch(f"{self.path} holds data of another kind of run ({'; '.join(diffs)}); "
                                f"use another store directory")

    def claim(self, fingerprint: Mapping[str, Any]) -> None:
        """Check that this run's ``fingerprint`` matches the store's, then record it.  A store
        with data made otherwise raises :class:`StoreMismatch` naming every difference."""
        self._writable()
        self.check_fingerprint(fingerprint)
        stored = self.fingerprint
        merged = {**stored, **{k: v for k, v in fingerprint.items() if v is not None}}
        merged["species"] = sorted(set(stored.get("species", [])) | set(fingerprint.get("species", [])))
        if merged != stored:
            self.meta["fingerprint"] = merged
            self._write_meta()

    def check_species(self, symbols: Sequence[str], resuming: bool) -> None:
        """Record a structure's elements.  On the first call of a reopened store with data
        (``resuming``) they must be elements the data already hold, else :class:`StoreMismatch`
        (methane data reopened for a water run); later calls may bring new ones."""
        stored = set(self.fingerprint.get("species", []))
        new = sorted(set(symbols) - stored)
        if resuming and stored and new and self.has_data():
            raise StoreMismatch(f"{self.path} holds data for species {sorted(stored)}; this run's first structure "
                                f"has {sorted(set(symbols))}; use another store directory")
        if new:
            self.claim({"species": new})

    def record_settings(self, settings: Mapping[str, Any], step: int) -> dict[str, tuple[Any, Any]]:
        """Record the control settings in effect; returns (and logs) what changed since the last
        recorded ones."""
        self._writable()
        settings = json.loads(json.dumps(dict(settings), default=str))
        previous = self.meta.get("settings")
        changed = {} if previous is None else {
            k: (previous.get(k), v) for k, v in settings.items() if previous.get(k) != v}
        if previous is None or changed:
            self.meta["settings"] = settings
            if changed:
                self.meta.setdefault("settings_history", []).append(
                    {"step": step, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "changed": {k: list(v) for k, v in changed.items()}})
                log.warning("%s: control settings changed on reopening at step %d, now in effect: %s", self.path,
                            step, ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()))
            self._write_meta()
        return changed

    # ------------------------------------------------------------- training
    def add_training(self, atoms: Atoms, results: Mapping[str, Any], absurd: bool = False,
                     baseline: Mapping[str, Any] | None = None, **keys: Any) -> int:
        """Persist one target result (``absurd``: kept, but never trained on; ``baseline``: the
        baseline's answer on the same structure, kept in the row's data); returns its row id."""
        self._writable()
        keys = {**keys, "run": self.run}
        target = self.fingerprint.get("target_key")
        if target is not None:
            keys["target"] = target
        if absurd:
            keys["absurd"] = True
        row = training_row(atoms, results)
        data = {"baseline": {k: np.asarray(v, float) for k, v in baseline.items()}} if baseline else {}
        if self.database is None:
            return self.db.write(row, key_value_pairs=keys, data=data)
        with _DatabaseLock(self.database):
            return self.db.write(row, key_value_pairs=keys, data=data)

    def _pooled(self, shared: bool | None) -> bool:
        """Do reads with this ``shared`` flag (``None``: the store's own) span more than this run's
        rows: the other runs of a shared database, or the peer stores?"""
        return (self.database is not None or bool(self.peers)) and (self.shared if shared is None else bool(shared))

    def _rows(self, shared: bool | None, newest: int | None = None) -> Iterator[Any]:
        """ase.db rows, oldest first: the run's own, or every run's made with this target (or by
        code that did not say which target) when ``shared``; the newest ``newest`` rows only."""
        if self._pooled(shared):
            if self.database is not None:
                mine = self.fingerprint.get("target_key")
                rows = [r for r in self.db.select(sort="id") if r.get("target") in (None, mine)]
            else:  # the peers' rows first (older runs), then this run's own
                rows = [r for db in self._peer_databases() for r in db.select(sort="id")]
                rows += list(self.db.select(sort="id")) if self.db is not None else []
            yield from (rows if newest is None else rows[len(rows) - newest:] if newest else [])
            return
        query = {"run": self.run} if self.database is not None else {}
        if newest is None:
            yield from self.db.select(sort="id", **query)
        elif newest:
            yield from list(self.db.select(sort="-id", limit=newest, **query))[::-1]

    def training(self, shared: bool | None = None, newest: int | None = None) -> list[tuple[Atoms, dict[str, Any]]]:
        """Stored training points (target results but absurd ones), oldest first: this run's, or
        with ``shared`` (default: the store's flag) every run's made with this target; ``newest``:
        only that many of the newest.  A point stored with its baseline's answer carries it under
        ``'baseline'``."""
        if self.db is None:
            return []
        extra = 0 if newest is None else self.training_count(shared) - self.point_count(shared)
        out = [(row.toatoms(), _row_results(row))
               for row in self._rows(shared, None if newest is None else newest + extra) if not row.get("absurd")]
        return out if newest is None else out[len(out) - newest:] if newest else []

    def _peer_databases(self) -> list[Any]:
        """The peers' training databases (read only), each checked to hold data of this kind."""
        import ase.db

        out = []
        for peer in self.peers:
            if not (peer / "training.db").exists():
                continue  # a peer that has not written yet
            meta = json.loads((peer / "store.json").read_text()) if (peer / "store.json").exists() else {}
            diffs = fingerprint_differences(meta.get("fingerprint", {}), self.fingerprint)
            if diffs:
                raise StoreMismatch(f"peer store {peer} holds data of another kind of run ({'; '.join(diffs)})")
            out.append(ase.db.connect(str(peer / "training.db"), type="db", use_lock_file=False))
        return out

    def training_count(self, shared: bool | None = None) -> int:
        """Rows stored (absurd ones included: one per successful target call)."""
        if self.db is None:
            return 0
        if self._pooled(shared):
            return sum(1 for _ in self._rows(shared))
        return self.db.count(**({"run": self.run} if self.database is not None else {}))

    def point_count(self, shared: bool | None = None) -> int:
        """Training points stored (rows but absurd ones)."""
        if self.db is None:
            return 0
        if self._pooled(shared):
            return sum(1 for r in self._rows(shared) if not r.get("absurd"))
        absurd = self.db.count(absurd=1, **({"run": self.run} if self.database is not None else {}))
        return self.training_count(shared) - absurd

    def has_data(self) -> bool:
        return self.training_count(shared=False) > 0 or self.state_path.exists()

    # ------------------------------------------------------------------- log
    def _repair_log(self) -> None:
        """Cut a torn last line (a writer killed mid-line) so the next record starts on its own line."""
        if not self.log_path.exists() or self.log_path.stat().st_size == 0:
            return
        with open(self.log_path, "rb+") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) == b"\n":
                return
            data = fh.seek(0) or fh.read()
            keep = data.rfind(b"\n") + 1
            log.warning("%s: dropped a torn last line of the call log: %r", self.log_path, data[keep:][:60])
            fh.truncate(keep)

    def append_log(self, record: Mapping[str, Any]) -> None:
        self._writable()
        if self._log_fh is None:
            new = not self.log_path.exists() or self.log_path.stat().st_size == 0
            self._log_fh = open(self.log_path, "a", newline="")
            if new:
                self._log_fh.write(",".join(LOG_COLUMNS) + "\n")
        self._log_fh.write(format_record(record))
        self._log_fh.flush()

    def read_log(self, maxlen: int | None = None) -> CallLog:
        """The call log (the newest ``maxlen`` records, default all)."""
        if not self.log_path.exists():
            return CallLog(maxlen=maxlen)
        return CallLog(read_log_csv(self.log_path), maxlen=maxlen)

    # ----------------------------------------------------------------- state
    def write_state(self, state: RunState) -> None:
        self._writable()
        atomic_write(self.state_path, state.to_json().encode())

    def read_state(self) -> RunState | None:
        if not self.state_path.exists():
            return None
        return RunState.from_json(self.state_path.read_text())

    # ---------------------------------------------------------------- models
    def write_models(self, family: str, params: Mapping[str, Any], n_fitted: int, state: FittedState,
                     baseline: Any = "none") -> None:
        """Persist a fitted surrogate as arrays (``models.npz``) and JSON (``models.json``), with the
        baseline it corrects (``'none'``: it learned the target itself)."""
        self._writable()
        import io

        buf = io.BytesIO()
        np.savez(buf, _n_fitted=np.array(n_fitted), **{k: np.asarray(v) for k, v in state.arrays.items()})
        atomic_write(self.path / "models.npz", buf.getvalue(), sync=False)
        meta = {"family": family, "params": json.loads(json.dumps(dict(params), default=str)),
                "n_fitted": n_fitted, "meta": state.meta, "arrays": sorted(state.arrays),
                "baseline": json.loads(json.dumps(baseline, default=str))}
        atomic_write(self.path / "models.json", json.dumps(meta).encode())

    def _equation_files(self, tag: str) -> tuple[Path, Path]:
        if not tag or any(c not in "0123456789abcdef-" for c in tag):
            raise ValueError(f"an equations tag is lower-case hex and '-', got {tag!r}")
        folder = self.path / "equations"
        return folder / f"{tag}.f8", folder / f"{tag}.keys"

    def append_equations(self, tag: str, packed: Mapping[bytes, np.ndarray]) -> None:
        """Append per-structure arrays (one length for all under a tag) with their keys: the
        records first, then their keys, so a key read back always has its record."""
        self._writable()
        if not packed:
            return
        records, keys = self._equation_files(tag)
        records.parent.mkdir(exist_ok=True)
        if tag not in self._equations_checked:  # a kill may have left a record without its key
            self._cut_equations(records, keys)
            self._equations_checked.add(tag)
        items = list(packed.items())
        with open(records, "ab") as fh:
            for _, v in items:
                fh.write(np.ascontiguousarray(v, dtype="<f8").tobytes())
        with open(keys, "a") as fh:
            fh.write("".join(f"{k.hex()} {len(v)}\n" for k, v in items))

    @staticmethod
    def _whole_equations(records: Path, keys: Path) -> tuple[list[str], list[tuple[bytes, int]]]:
        """The key lines written whole whose records are whole too, and their (key, length), in
        order: what a kill inside an append leaves readable."""
        lines = keys.read_text().splitlines(keepends=True) if keys.exists() else []
        have = (records.stat().st_size if records.exists() else 0) // 8
        kept: list[str] = []
        entries: list[tuple[bytes, int]] = []
        used = 0
        for line in lines:
            parts = line.split()
            if not line.endswith("\n") or len(parts) != 2 or not parts[1].isdigit():
                break
            try:
                key = bytes.fromhex(parts[0])
            except ValueError:
                break
            if used + int(parts[1]) > have:
                break
            kept.append(line)
            entries.append((key, int(parts[1])))
            used += int(parts[1])
        return kept, entries

    def _cut_equations(self, records: Path, keys: Path) -> None:
        """Cut both files back to the records whose keys were written whole."""
        kept, entries = self._whole_equations(records, keys)
        if keys.exists() and len(kept) != len(keys.read_text().splitlines(keepends=True)):
            keys.write_text("".join(kept))
        size = 8 * sum(n for _, n in entries)
        if records.exists() and records.stat().st_size != size:
            with open(records, "r+b") as fh:
                fh.truncate(size)

    def read_equations(self, tag: str) -> dict[bytes, np.ndarray]:
        """The arrays stored under ``tag`` by key; a torn tail left by a kill is dropped."""
        records, keys = self._equation_files(tag)
        _, entries = self._whole_equations(records, keys)
        if not entries:
            return {}
        data = np.memmap(records, dtype="<f8", mode="r", shape=(sum(n for _, n in entries),))
        out: dict[bytes, np.ndarray] = {}
        offset = 0
        for key, length in entries:
            out[key] = np.array(data[offset:offset + length])
            offset += length
        return out

    def read_models(self) -> tuple[dict[str, Any], FittedState] | None:
        """``(description, fitted state)`` of the last written model, or ``None``; plain data only."""
        meta_path, npz_path = self.path / "models.json", self.path / "models.npz"
        if not (meta_path.exists() and npz_path.exists()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
            with np.load(npz_path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (ValueError, OSError, zipfile.BadZipFile) as err:  # object arrays, a torn or foreign file
            log.warning("%s: the stored model is not plain data and is ignored (%s); it will be refitted",
                        self.path, err)
            return None
        n_fitted = arrays.pop("_n_fitted", None)
        if n_fitted is None or int(n_fitted) != meta["n_fitted"] or sorted(arrays) != meta["arrays"]:
            return None  # the two files come from different fits (a kill in between): refit instead
        return meta, FittedState(arrays, meta["meta"])
