"""The per-call record of a run.

In memory, :class:`CallLog` is a bounded view: the newest ``maxlen`` records (all of a
run without a store is what the user asked for; a long run keeps flat memory).  The whole
log of a run with a store is its ``calls.csv``, written one flushed line per call and never
rewritten; :func:`read_log_csv` reads it back:

* a last line without its newline (the writer was killed mid-line) is dropped with a
  warning, and so is any line that does not parse;
* a run resumed from a state older than its last logged call repeats those steps; the
  later record of a step wins, so the log reads as one run.
"""
from __future__ import annotations

import csv
import io
import math
import os
import warnings
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CallLog", "LOG_COLUMNS", "read_log_csv", "format_record"]

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
    "t_store",
    "t_total",
)
_TEXT = ("kind", "reason")
_INT = ("step", "n_fitted")


class CallLog:
    """Records with :data:`LOG_COLUMNS` keys, the newest ``maxlen`` kept (``None``: all).

    ``kind`` is ``target`` (the target answered), ``surrogate`` (the surrogate
    answered) or ``audit`` (the gate allowed the surrogate, the target ran as a
    random check and answered).  ``error`` is the surrogate-vs-target error
    where both ran, else NaN.  ``n_fitted`` is the number of target results the
    surrogate had been fitted on when it made this call's prediction.
    """

    def __init__(self, records: Sequence[Mapping[str, Any]] = (), maxlen: int | None = None) -> None:
        self.maxlen = maxlen
        self._rows: deque[tuple] = deque((_row(r) for r in records), maxlen=maxlen)

    def append(self, record: Mapping[str, Any]) -> None:
        self._rows.append(_row(record))

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (dict(zip(LOG_COLUMNS, r)) for r in self._rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return dict(zip(LOG_COLUMNS, self._rows[i]))

    @property
    def records(self) -> list[dict[str, Any]]:
        return list(self)

    def column(self, name: str) -> np.ndarray:
        """One column as an array (NaN where missing)."""
        k = LOG_COLUMNS.index(name)
        if name in _TEXT:
            return np.array([r[k] for r in self._rows], dtype=object)
        return np.array([_as_float(r[k]) for r in self._rows], float)

    def to_dataframe(self):
        """A pandas DataFrame (pandas is an optional dependency)."""
        import pandas as pd

        return pd.DataFrame(list(self._rows), columns=list(LOG_COLUMNS))

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write the records to ``path`` (whole or not at all)."""
        from .store import atomic_write

        text = ",".join(LOG_COLUMNS) + "\n" + "".join(format_record(dict(zip(LOG_COLUMNS, r))) for r in self._rows)
        atomic_write(Path(path), text.encode(), sync=False)

    @classmethod
    def read_csv(cls, path: str | os.PathLike, maxlen: int | None = None) -> CallLog:
        return cls(read_log_csv(path), maxlen=maxlen)


def _row(record: Mapping[str, Any]) -> tuple:
    return tuple(record.get(k) for k in LOG_COLUMNS)


def _as_float(v: Any) -> float:
    if v is None or v == "":
        return math.nan
    return float(v)


def format_record(record: Mapping[str, Any]) -> str:
    """One CSV line (with its newline) for a record."""
    def cell(k: str) -> Any:
        v = record.get(k)
        if v is None:
            return ""
        return " ".join(str(v).split()) if k in _TEXT else v  # one record, one line

    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([cell(k) for k in LOG_COLUMNS])
    return out.getvalue()


def _parse(values: list[str], columns: Sequence[str]) -> dict[str, Any]:
    if len(values) != len(columns):
        raise ValueError(f"{len(values)} fields for {len(columns)} columns")
    rec: dict[str, Any] = dict.fromkeys(LOG_COLUMNS)
    for k, v in zip(columns, values):
        if k in _TEXT:
            rec[k] = v or None
        elif k == "step" or (k in _INT and v != ""):
            rec[k] = int(v)
        elif k in LOG_COLUMNS:
            rec[k] = _as_float(v)
    return rec


def read_log_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``calls.csv`` (see the module doc for torn, bad and repeated lines)."""
    with open(path, newline="") as fh:
        text = fh.read()
    if not text:
        return []
    lines = text.split("\n")
    torn = lines.pop()  # '' when the file ends with a newline
    if torn:
        warnings.warn(f"{path}: dropped a torn last line (the writer stopped mid-line): {torn[:60]!r}",
                      stacklevel=2)
    header, *body = lines if lines else [""]
    columns = next(csv.reader([header])) if header else []
    if not columns or columns[0] != "step":
        raise ValueError(f"{path} is not a call log (its first line is {header[:60]!r})")
    records: list[dict[str, Any]] = []
    bad = 0
    for values in csv.reader(body):
        try:
            rec = _parse(values, columns)
        except ValueError:
            bad += 1
            continue
        while records and records[-1]["step"] >= rec["step"]:
            records.pop()  # a resumed run repeated these steps: its records win
        records.append(rec)
    if bad:
        warnings.warn(f"{path}: skipped {bad} line(s) that do not parse", stacklevel=2)
    return records
