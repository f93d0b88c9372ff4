"""A run store that loses nothing, mixes nothing and runs nothing it finds.

Each test reproduces a defect found on an earlier version (the issue's numbering in the
test names) with real processes, real files and real kills, and checks it is gone.
"""
from __future__ import annotations

import json
import logging
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from conftest import fixed_sequence

from ase_proxima import CallLog, ProximaCalculator, RunStore

ROOT = Path(__file__).resolve().parents[1]

# a real run into a store, in its own process (which ends, as a user's script would)
RUN = """
import sys
import numpy as np
from ase.build import molecule
from ase.calculators.emt import EMT
from ase_proxima import ProximaCalculator

store, calls = sys.argv[1], int(sys.argv[2])
calc = ProximaCalculator(target=EMT(), error_bound=0.005, store=store, seed=0)
atoms = molecule("CH4")
rng = np.random.default_rng(0)
for _ in range(calls):
    atoms.positions += rng.normal(0.0, 0.004, atoms.positions.shape)
    atoms.calc = calc
    atoms.get_potential_energy()
print("ran", flush=True)
if len(sys.argv) > 3:  # hold the store open
    import time
    time.sleep(float(sys.argv[3]))
"""


def _run(store: Path, calls: int) -> None:
    proc = subprocess.run([sys.executable, "-c", RUN, str(store), str(calls)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _frames(n: int, seed: int = 7):
    return fixed_sequence(molecule("CH4"), n, amplitude=0.004, seed=seed)


def test_1_reopening_never_rewrites_the_log_so_a_kill_cannot_empty_it(tmp_path):
    """A store whose log is ahead of its state (a run killed between the two) is reopened by a
    process killed at the worst moment: as soon as the log shrinks, or once it has opened.  The
    log is never shortened, and every record is still there."""
    store = tmp_path / "store"
    _run(store, 40)
    log_path = store / "calls.csv"
    extra = log_path.read_text().splitlines(keepends=True)[-1]
    step = int(extra.split(",")[0])
    with open(log_path, "a") as fh:  # the log of a run that went on past its saved state
        for k in range(1, 60_001):
            fh.write(f"{step + k}{extra[extra.index(','):]}")
    original = log_path.read_bytes()
    opener = ("import sys\nfrom ase.calculators.emt import EMT\nfrom ase_proxima import ProximaCalculator\n"
              "ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.005, store=sys.argv[1], seed=0)\nprint('opened')\n")
    proc = subprocess.Popen([sys.executable, "-c", opener, str(store)], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        if log_path.stat().st_size < len(original):  # someone is rewriting the log: the worst moment
            break
        time.sleep(0.0005)
    proc.kill()
    proc.wait()
    assert log_path.read_bytes()[:len(original)] == original, "the log was rewritten: a kill could empty it"
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.005, store=store, seed=0)
    assert len(calc.log) == calc.stats["calls"] == 40


def test_2_a_second_process_cannot_open_a_store_in_use(tmp_path):
    store = tmp_path / "store"
    holder = subprocess.Popen([sys.executable, "-c", RUN, str(store), "15", "120"], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "ran"
        with pytest.raises(Exception, match=f"in use by process {holder.pid}"):
            ProximaCalculator(target=EMT(), error_bound=0.005, store=store, seed=1)
    finally:
        holder.kill()
        holder.wait()
    # the kernel released the killed holder's lock: the store opens, whole
    calc = ProximaCalculator(target=EMT(), error_bound=0.005, store=store, seed=1)
    assert calc.store.training_count() == calc.stats["training_total"] >= 10


def test_3_a_second_sweep_on_the_same_directory_is_refused(tmp_path):
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "ase_proxima.cli", "sweep", "mc", "--target", "emt", "--temperature", "500",
           "--seed", "0", "--steps", "1500", "--step-size", "0.01", "--workers", "1", "--quiet", "--out", str(out)]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        task_dirs: list[Path] = []
        while time.time() < deadline and not task_dirs:
            task_dirs = [p for p in out.glob("mc_*") if (p / "store" / "calls.csv").exists()]
            time.sleep(0.1)
        assert task_dirs, "the first sweep never started its task"
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert second.returncode != 0
        assert f"in use by process {first.pid}" in second.stderr
        assert task_dirs[0].exists()
        stdout, stderr = first.communicate(timeout=600)
    finally:
        first.kill()
    assert first.returncode == 0, stderr[-3000:]
    assert json.loads((task_dirs[0] / "result.json").read_text())["status"] == "ok"


class _Marker:
    """What an attacker would pickle: unpickling it runs code (here: it makes a file)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (self.path, "pwned"))


def _plant(store: Path, marker: Path) -> None:
    (store / "models.pkl").write_bytes(pickle.dumps({"n_fitted": 10, "models": _Marker(marker)}))
    arrays = np.array([_Marker(marker)], dtype=object)  # an npz whose array only unpickling could read
    np.savez(store / "models.npz", _n_fitted=np.array(10), coef=arrays)
    if not (store / "models.json").exists():
        (store / "models.json").write_text(json.dumps({"family": "SOAPBayesianRidge", "params": {}, "n_fitted": 10,
                                                        "meta": {}, "arrays": ["coef"]}))


def test_4_crafted_model_files_in_a_store_are_never_run(tmp_path):
    from ase_proxima.cli import main

    marker = tmp_path / "marker"
    run = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "ase_proxima.cli", "demo", "--steps", "40", "--out", str(run),
                           "--quiet"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _plant(run / "store", marker)
    assert main(["report", str(run)]) == 0
    main(["perf", "annotate", str(run)])
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.2, error_metric="forces_max", store=run / "store", seed=0)
    atoms = calc.store.training()[-1][0]
    atoms.calc = calc
    atoms.get_forces()
    assert not marker.exists()

    study = tmp_path / "sluschi"
    tiny = ["sluschi", "--size", "2", "2", "2", "--equilibrate-steps", "10", "--melt-steps", "40",
            "--melt-temperature", "3000", "--run-steps", "40", "--average-steps", "10", "--quiet", "--out", str(study)]
    assert main([*tiny, "--runs", "1"]) == 0
    _plant(study / "store", marker)
    assert main([*tiny, "--runs", "2", "--resume"]) == 0
    assert not marker.exists()


PG_RUN = """
import sys
from ase.build import molecule
from ase.calculators.lj import LennardJones
from ase_proxima import ProximaCalculator, RunStore

url, folder = sys.argv[1], sys.argv[2]
target = LennardJones(sigma=2.9, epsilon=0.012, rc=6.0)  # a target no other test writes rows for
calc = ProximaCalculator(target=target, error_bound=0.005, store=RunStore(folder, database=url), seed=0)
atoms = molecule("CH4")
for k in range(15):
    atoms.rattle(0.004, seed=k)
    atoms.calc = calc
    atoms.get_potential_energy()
"""


def _fresh_database(url: str, name: str) -> str:
    """A new, empty database on the session's server: rows other tests wrote without naming a
    target join every shared read of the session's own database (by design), so a test counting
    a shared store's rows needs one of its own."""
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()
    return url.rsplit("/", 1)[0] + "/" + name


def test_5_postgres_runs_do_not_share_rows_unless_asked(postgres_url, tmp_path):
    """Two CLI-like jobs each call their store ``store``: the second must start from nothing."""
    postgres_url = _fresh_database(postgres_url, "store_integrity_5")
    proc = subprocess.run([sys.executable, "-c", PG_RUN, postgres_url, str(tmp_path / "a" / "store")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    target = LennardJones(sigma=2.9, epsilon=0.012, rc=6.0)
    second = ProximaCalculator(target=target, error_bound=0.005, seed=0,
                               store=RunStore(tmp_path / "b" / "store", database=postgres_url))
    assert second.stats["training_size"] == 0 and second.store.training_count() == 0
    shared = ProximaCalculator(target=target, error_bound=0.005, seed=0,
                               store=RunStore(tmp_path / "c" / "store", database=postgres_url, shared=True))
    assert shared.stats["training_size"] == 15  # asked for: every run's rows with this target
    other_target = ProximaCalculator(target=LennardJones(sigma=2.9, epsilon=0.013, rc=6.0), error_bound=0.005,
                                     seed=0, store=RunStore(tmp_path / "d" / "store", database=postgres_url,
                                                            shared=True))
    assert other_target.stats["training_size"] == 0  # never another target's data


@pytest.mark.parametrize("change, message", [
    ({"target": LennardJones()}, "target"),
    ({"error_metric": "forces_mean"}, "error_metric"),
])
def test_6_a_store_refuses_a_run_of_another_kind(change, message, tmp_path):
    store = tmp_path / "store"
    _run(store, 20)
    kwargs = {"target": EMT(), "error_bound": 0.005, "seed": 0, **change}
    with pytest.raises(ValueError, match=message):
        ProximaCalculator(store=store, **kwargs)


def test_6_a_changed_bound_on_reopening_is_logged_and_steers(tmp_path, caplog):
    store = tmp_path / "store"
    _run(store, 60)
    with caplog.at_level(logging.WARNING, logger="ase_proxima"):
        calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.02, store=store, seed=0)
    assert "error_bound 0.005 -> 0.02" in caplog.text
    assert calc.controller.error_bound == 0.02 == calc.stats["error_bound"]
    history = json.loads((store / "store.json").read_text())["settings_history"]
    assert history[-1]["changed"]["error_bound"] == [0.005, 0.02]


def test_11_state_is_written_every_few_calls_and_stays_small(tmp_path):
    store = tmp_path / "store"
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.005, audit_fraction=0.5, store=store, seed=0)
    writes, sizes, inode = 0, [], None
    for a in _frames(400):
        calc.get_potential_energy(a)
        st = (store / "state.json").stat() if (store / "state.json").exists() else None
        if st is not None and st.st_ino != inode:
            writes, inode = writes + 1, st.st_ino
            sizes.append(st.st_size)
    assert writes <= 400 // calc.parameters.get("checkpoint_every", 20) + 1
    assert calc.stats["audits"] > 25  # priced: the rate falls while the error is far below the bound
    # no list growing with the run: over its second half (bounded windows and the certificate's
    # weight bins have filled by then: a model that keeps learning asks the target less, so its
    # comparison windows fill after about 250 calls here) the state's size stays flat
    half = sizes[len(sizes) // 2:]
    assert len(half) >= 4 and max(half) - min(half) < 1500
    assert calc.stats["time_store"] > 0 and calc.stats["store_seconds_per_call"] > 0
    small = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.005, log_size=50, seed=0)
    for a in _frames(120):
        small.get_potential_energy(a)
    assert len(small.log) == 50 and small.log[-1]["step"] == 119


CONTINUE = """
import sys
from ase.calculators.emt import EMT
from ase_proxima import ProximaCalculator

calc = ProximaCalculator(target=EMT(), error_bound=0.2, error_metric="forces_max", store=sys.argv[1], seed=0)
atoms = calc.store.training()[-1][0]
atoms.calc = calc
for k in range(10):
    atoms.rattle(0.01, seed=k)
    atoms.get_forces()
print(calc.stats["calls"])
"""


def test_12_a_torn_last_log_line_is_dropped_and_the_report_works(tmp_path):
    from ase_proxima.cli import main

    run = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "ase_proxima.cli", "demo", "--steps", "30", "--out", str(run),
                           "--quiet"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log_path = run / "store" / "calls.csv"
    text = log_path.read_text()
    log_path.write_text(text[:-25])  # the writer was killed in the middle of the last line
    proc = subprocess.run([sys.executable, "-c", CONTINUE, str(run / "store")], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    calls = int(proc.stdout.split()[-1])
    assert log_path.read_text().endswith("\n")
    steps = [r["step"] for r in CallLog.read_csv(log_path)]
    assert steps == [*range(30), *range(31, calls)]  # only the torn record is missing, none is glued
    assert main(["report", str(run)]) == 0
    assert "torn" in proc.stderr  # and it was said, not done silently


def test_a_writer_killed_inside_a_row_write_leaves_a_store_that_reopens(tmp_path):
    """A run killed while ase.db wrote a row (every call of an idle run writes one) left ase.db's
    lock file behind, and the next open of the store waited on it for ever (seen when
    ``ase-proxima mc --resume`` hung after a kill).  A real writer is killed in a tight write loop;
    the leftover lock file ase.db used to make is put back too; the store reopens at once and
    keeps every row written."""
    import os
    import signal

    store = tmp_path / "store"
    writer = RUN.replace("for _ in range(calls):", "while True:")  # writes until killed
    proc = subprocess.Popen([sys.executable, "-c", writer, str(store), "0"])
    deadline = time.time() + 120
    while time.time() < deadline and not (store / "training.db").exists():
        time.sleep(0.05)
    time.sleep(3.0)  # well into the loop: a target call (and a row) every few milliseconds
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (store / "training.db.lock").write_text("")  # what a kill inside ase.db's locked write left
    reopen = ("import sys; from ase_proxima import RunStore; s = RunStore(sys.argv[1]); "
              "print(s.training_count()); s.close()")
    out = subprocess.run([sys.executable, "-c", reopen, str(store)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) > 10


def test_a_torn_equations_file_loses_only_its_torn_record_and_later_records_stay_aligned(tmp_path):
    """A kill inside an append leaves part of a record (and maybe part of its key); what was
    written whole reads back, and the next append starts where the whole records end."""
    store = RunStore(tmp_path / "s")
    rows = {bytes([i]) * 20: np.arange(6.0) + 10 * i for i in range(3)}
    store.append_equations("ab12", rows)
    records, keys = tmp_path / "s" / "equations" / "ab12.f8", tmp_path / "s" / "equations" / "ab12.keys"
    with open(records, "r+b") as fh:
        fh.truncate(records.stat().st_size - 20)  # the third record torn
    assert set(store.read_equations("ab12")) == set(list(rows)[:2])
    store.close()
    store = RunStore(tmp_path / "s")  # reopened, as after the kill
    store.append_equations("ab12", {b"\x09" * 20: np.full(6, -1.0)})
    back = store.read_equations("ab12")
    assert list(back) == [*list(rows)[:2], b"\x09" * 20]
    np.testing.assert_array_equal(back[b"\x09" * 20], np.full(6, -1.0))
    np.testing.assert_array_equal(back[bytes([1]) * 20], rows[bytes([1]) * 20])
    keys.write_text(keys.read_text() + "0a0a")  # a torn key line
    assert len(store.read_equations("ab12")) == 3
    with pytest.raises(ValueError):
        store.append_equations("../x", rows)
    store.close()
