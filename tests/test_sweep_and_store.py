"""Sweeps (local pool and Parsl), kill-and-resume, reports, and a PostgreSQL training store."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ase_proxima.workflows.sweep import SweepTask, gather, grid, local_executor, parsl_executor, run_sweep

ROOT = Path(__file__).resolve().parents[1]
# a small MC grid with the EMT target: 2 temperatures x 2 seeds
# decisions that count measured time are not the same in two processes: the comparison of local
# and Parsl numbers switches the cost rule off (EMT standing in for a costly target)
AXES = dict(temperature=[300.0, 600.0], seed=[0, 1], target="emt", steps=40, step_size=0.01, error_bound=0.01,
            cost_aware=False)
COMPARED = ("acceptance_ratio", "mean_rog_A", "served_fraction", "target_calls", "surrogate_calls", "served_error")


def test_grid_names_every_task_and_refuses_bad_input():
    tasks = grid("mc", **AXES)
    assert len(tasks) == 4 and len({t.key for t in tasks}) == 4
    assert "temperature=300" in tasks[0].key and "seed=0" in tasks[0].key
    with pytest.raises(ValueError):
        grid("mc", temperature=[])
    with pytest.raises(ValueError):
        SweepTask("md", {})


def test_parsl_sweep_gives_the_local_numbers(tmp_path):
    tasks = grid("mc", **AXES)
    with local_executor(2) as ex:
        local = {r["key"]: r for r in run_sweep(tasks, tmp_path / "local", executor=ex, progress=False)}
    with parsl_executor(2, run_dir=tmp_path / "parsl-runinfo") as ex:
        parsl = {r["key"]: r for r in run_sweep(tasks, tmp_path / "parsl", executor=ex, progress=False)}
    assert set(local) == set(parsl) == {t.key for t in tasks}
    for key in local:
        assert local[key]["status"] == parsl[key]["status"] == "ok"
        for col in COMPARED:
            assert local[key][col] == pytest.approx(parsl[key][col], rel=1e-12, abs=1e-15, nan_ok=True), (key, col)
    # the table holds every task
    table = (tmp_path / "parsl" / "results.csv").read_text().splitlines()
    assert len(table) == 5 and table[0].startswith("key,workflow")


def test_failed_task_is_kept_and_the_others_finish(tmp_path):
    tasks = grid("mc", temperature=[300.0], seed=[0], target=["emt", "pyscf:hf/no-such-basis"], steps=20,
                 step_size=0.01)
    rows = {r["target"]: r for r in run_sweep(tasks, tmp_path, executor=local_executor(2), progress=False)}
    assert rows["emt"]["status"] == "ok"
    assert rows["pyscf:hf/no-such-basis"]["status"] == "failed" and rows["pyscf:hf/no-such-basis"]["error"]
    failed_dir = tmp_path / [t.key for t in tasks if "pyscf" in t.key][0]
    assert "Traceback" in json.loads((failed_dir / "error.json").read_text())["traceback"]


def test_killed_sweep_reruns_only_the_missing_tasks(tmp_path):
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "ase_proxima.cli", "sweep", "mc", "--temperature", "300", "450", "600",
           "--seed", "0", "1", "--target", "emt", "--steps", "150", "--step-size", "0.01", "--error-bound", "0.01",
           "--workers", "1", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and len(list(out.glob("*/result.json"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/result.json")}
    assert 2 <= len(finished) < 6, "the sweep was not killed half way"
    pids = {k: json.loads((out / k / "result.json").read_text())["pid"] for k in finished}
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    rows = gather(out)
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
    for key, mtime in finished.items():  # untouched: not run again
        assert (out / key / "result.json").stat().st_mtime_ns == mtime
        assert json.loads((out / key / "result.json").read_text())["pid"] == pids[key]
    assert "6 of 6 tasks finished" in again.stdout


def test_report_pngs_for_a_sweep_and_a_run(tmp_path):
    from ase_proxima.cli import main

    # EMT stands in for a costly target: with the cost rule a run may stay idle before any fit,
    # and a run with no model has no GPU prediction to report
    tasks = grid("mc", temperature=[300.0, 600.0], seed=[0, 1], method=["proxima", "baseline"], target="emt",
                 steps=40, step_size=0.01, error_bound=0.01, cost_aware=False)
    run_sweep(tasks, tmp_path, executor=local_executor(2), progress=False)
    run = tmp_path / [t.key for t in tasks if "proxima" in t.key][0]
    assert main(["report", str(tmp_path), str(run)]) == 0
    for d in (tmp_path, run):
        assert (d / "report.png").stat().st_size > 20_000
        assert "<img src='report.png'" in (d / "report.html").read_text()
    # the run's page carries the GPU prediction, marked as one
    page = (run / "report.html").read_text()
    assert "Predicted time of the GPU-able parts: PREDICTION" in page and "H100" in page
    baseline = tmp_path / [t.key for t in tasks if "baseline" in t.key][0]
    assert main(["report", str(baseline)]) == 2  # nothing to report on a target-only run


# ----------------------------------------------------------------------------- PostgreSQL
WRITER = """
import sys
from ase.build import bulk
from ase.calculators.emt import EMT
from ase_proxima.store import RunStore

url, run, n, folder = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
store = RunStore(folder, database=url, run=run)
for k in range(n):
    a = bulk("Cu", "fcc", a=3.6, cubic=True)
    a.rattle(0.05, seed=k)
    a.calc = EMT()
    store.add_training(a, {"energy": a.get_potential_energy(), "forces": a.get_forces()}, step=k)
print("done", run)
"""


def test_two_processes_writing_one_postgres_store_lose_no_rows(postgres_url, tmp_path):
    from ase_proxima.store import RunStore

    n = 60
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, postgres_url, f"w{i}", str(n), str(tmp_path / f"w{i}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    store = RunStore(tmp_path / "w0", database=postgres_url, run="w0")
    assert store.training_count() == n and store.training_count(shared=True) == 2 * n
    rows = store.training()
    assert [a.info.get("step", None) for a, _ in rows][:1] is not None
    assert all("forces" in r and r["forces"].shape == (4, 3) for _, r in rows)
    assert len(store.training(shared=True)) == 2 * n


def test_proxima_run_on_a_postgres_store_resumes(postgres_url, tmp_path):
    """A ProximaCalculator whose training rows live on the server resumes from them."""
    from ase.build import molecule
    from ase.calculators.emt import EMT

    from ase_proxima import ProximaCalculator
    from ase_proxima.store import RunStore

    atoms = molecule("CH4")
    calc = ProximaCalculator(target=EMT(), error_bound=0.01, store=RunStore(tmp_path / "run", database=postgres_url))
    for k in range(15):
        atoms.rattle(0.01, seed=k)
        atoms.calc = calc
        atoms.get_potential_energy()
    n_target = calc.stats["target_calls"]
    calc.close()
    again = ProximaCalculator(target=EMT(), error_bound=0.01, store=RunStore(tmp_path / "run", database=postgres_url))
    assert again.store.training_count() == n_target
    assert again.stats["calls"] == 15
    # a new run on a shared store warm-starts from every run's target results with this target
    with RunStore(tmp_path / "other", database=postgres_url) as other:
        other.add_training(atoms, {"energy": EMT().get_potential_energy(atoms)})
    newcomer = ProximaCalculator(target=EMT(), error_bound=0.01,
                                 store=RunStore(tmp_path / "new", database=postgres_url, shared=True))
    assert newcomer.stats["training_size"] >= n_target + 1
    with pytest.raises(ValueError):
        RunStore(tmp_path / "x", database="mysql://nope")


def test_sluschi_sweep_and_its_liquid_ratio_report(tmp_path):
    """Two methods of a tiny coexistence study through the CLI sweep; the report draws the liquid
    ratio per method."""
    from ase_proxima.cli import main
    from ase_proxima.reports import report, sweep_tables

    fixed = ["--set", "size=2,2,2", "--set", "equilibrate_steps=20", "--set", "melt_steps=300", "--set",
             "melt_temperature=3000", "--set", "run_steps=100", "--set", "average_steps=25", "--set", "runs=1"]
    assert main(["sweep", "sluschi", "--method", "proxima", "baseline", "--seed", "0", *fixed, "--out",
                 str(tmp_path), "--quiet"]) == 0
    assert main(["sweep", "sluschi", "--set", "nonsense=3", "--out", str(tmp_path / "bad"), "--quiet"]) == 2
    assert not (tmp_path / "bad" / "results.csv").exists()
    tasks = grid("sluschi", method=["proxima", "baseline"], target="emt", size=[(2, 2, 2)], equilibrate_steps=20,
                 melt_steps=300, melt_temperature=3000.0, run_steps=100, average_steps=25, runs=1, seed=0,
                 error_bound=0.05, temperature=950.0)
    assert {t.key for t in tasks} == {p.name for p in tmp_path.iterdir() if p.is_dir()}
    rows = gather(tmp_path)
    assert all(r["status"] == "ok" for r in rows), [r.get("error") for r in rows]
    assert all(0.0 <= r["liquid_ratio"] <= 1.0 for r in rows)
    files = report(tmp_path)
    assert files[0].stat().st_size > 20_000
    tables = sweep_tables(rows)
    assert set(tables["liquid_ratio"]) == {"proxima", "baseline"}
