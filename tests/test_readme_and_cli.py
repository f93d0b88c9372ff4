"""The README's example runs as written; the ``ase-proxima`` command does a real run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(capsys):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README shows no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
    out = capsys.readouterr().out
    assert "surrogate answered" in out
    assert len(namespace["df"]) == 201


def test_readme_top_has_the_two_setup_commands():
    text = (ROOT / "README.md").read_text()
    bash = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    assert "ase-proxima demo" in bash[0] and "scripts/setup.sh" in bash[0]
    assert "pytest" in bash[1] and "scripts/setup.sh" in bash[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert bash[1].strip().splitlines()[-1] in ci


def test_cli_demo_writes_a_run_directory(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "ase_proxima.cli", "demo", "--steps", "60", "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "stats.json").read_text())
    assert report["stats"]["calls"] == 61
    assert (out / "run.png").stat().st_size > 10_000
    assert (out / "store" / "training.db").exists()
    assert "served forces_max error" in proc.stdout
    # the report carries the predicted time of the surrogate's work on GPUs, marked as a prediction
    perf = report["perf_prediction"]
    assert "PREDICTION" in perf["note"]
    part = perf["parts"]["surrogate: Bayesian posterior"]
    assert part["calls"] == 61 and part["devices"]["H100"]["expected_s"] > part["devices"]["H100"]["roofline_s"] > 0
    ann = subprocess.run([sys.executable, "-m", "ase_proxima.cli", "perf", "annotate", str(out), "--device", "H100"],
                         capture_output=True, text=True, timeout=300)
    assert ann.returncode == 0, ann.stderr
    assert "PREDICTION" in ann.stdout and "H100" in ann.stdout and "SOAP features" in ann.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--overwrite" in again.stderr


@pytest.mark.parametrize("method", ["proxima", "fixed", "baseline"])
def test_cli_mc_run_directory(method, tmp_path):
    from ase.io import read

    from ase_proxima.cli import main

    out = tmp_path / method
    extra = ["--threshold", "0.001"] if method == "fixed" else []
    code = main(["mc", "--molecule", "CH4", "--target", "emt", "--steps", "60", "--step-size", "0.01",
                 "--method", method, "--out", str(out), "--quiet", *extra])
    assert code == 0
    report = json.loads((out / "stats.json").read_text())
    assert 0 <= report["acceptance_ratio"] <= 1 and report["mean_rog_A"] > 0
    assert len(read(out / "mc.traj", ":")) == 61
    if method == "baseline":
        assert "stats" not in report and not (out / "store").exists()
    else:
        assert report["stats"]["calls"] == 61
        assert (out / "run.png").exists() and (out / "store" / "calls.csv").exists()


def test_cli_mc_with_a_baseline_under_the_surrogate(tmp_path):
    """--baseline puts a cheap model under the surrogate: the report names it and counts its calls;
    an unknown baseline is refused before anything runs."""
    from ase_proxima.cli import main

    out = tmp_path / "mc"
    code = main(["mc", "--molecule", "CH4", "--target", "emt", "--baseline", "emt", "--steps", "60",
                 "--step-size", "0.01", "--no-cost-aware", "--out", str(out), "--quiet"])
    assert code == 0
    report = json.loads((out / "stats.json").read_text())
    assert report["job"]["baseline"] == "emt"
    assert report["stats"]["baseline"] == "emt" and report["stats"]["baseline_calls"] >= 61
    assert main(["mc", "--target", "emt", "--baseline", "xtb:gfn9", "--steps", "5", "--out", str(tmp_path / "x"),
                 "--quiet"]) == 2
    assert not (tmp_path / "x").exists()
    # a baseline that cannot do the system at all: said in one line, not a traceback
    assert main(["mc", "--molecule", "CH4", "--target", "emt", "--baseline", "lammps-lj:C/0.003/3.4/8.5",
                 "--steps", "5", "--out", str(tmp_path / "lj"), "--quiet"]) == 2


@pytest.mark.parametrize(
    "args",
    [["--molecule", "NotAMolecule"], ["--target", "gaussian:hf/sto-3g"], ["--method", "fixed"]],
)
def test_cli_mc_rejects_bad_input(args, tmp_path):
    from ase_proxima.cli import main

    assert main(["mc", "--target", "emt", "--steps", "5", "--out", str(tmp_path / "o"), "--quiet", *args]) == 2


@pytest.mark.parametrize("bad", [["--steps", "0"], ["--error-bound", "-1"]])
def test_cli_rejects_bad_input(bad, tmp_path):
    from ase_proxima.cli import main

    assert main(["demo", "--out", str(tmp_path / "x"), "--quiet", *bad]) == 2


def test_cli_sluschi_run_directory_and_resume(tmp_path):
    from ase_proxima.cli import main

    out = tmp_path / "sl"
    common = ["sluschi", "--target", "emt", "--size", "2", "2", "2", "--equilibrate-steps", "20",
              "--melt-steps", "300", "--melt-temperature", "3000", "--run-steps", "100", "--average-steps", "25",
              "--error-bound", "0.05", "--out", str(out), "--quiet"]
    assert main([*common, "--runs", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"] == 1 and summary["solid"] + summary["liquid"] + summary["undecided"] == 1
    assert (out / "run.png").exists() and (out / "store" / "calls.csv").exists()
    assert main([*common, "--runs", "1"]) == 2  # refuses to mix with the earlier run
    assert main([*common, "--runs", "2", "--resume"]) == 0
    lines = (out / "runs.jsonl").read_text().splitlines()
    assert [json.loads(x)["run"] for x in lines] == [0, 1]


@pytest.mark.parametrize("bad", [["--size", "0", "1", "1"], ["--method", "fixed"], ["--runs", "0"],
                                 ["--target", "nope"]])
def test_cli_sluschi_rejects_bad_input(bad, tmp_path):
    from ase_proxima.cli import main

    assert main(["sluschi", "--out", str(tmp_path / "x"), "--quiet", *bad]) == 2


def test_8_version_and_help_with_defaults():
    proc = subprocess.run([sys.executable, "-m", "ase_proxima.cli", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("ase-proxima ")
    proc = subprocess.run([sys.executable, "-m", "ase_proxima.cli", "mc", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert "(default: 500.0)" in proc.stdout and "--threads" in proc.stdout and "--resume" in proc.stdout
