"""The documentation runs as written: every Python block of README.md and docs/guide.md, in
order, one namespace per file, in a scratch directory.  Where a block names a PostgreSQL
server, the tests' own throw-away server stands in for it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER_URL = "postgresql://me:secret@dbhost:5432/proxima"


def _blocks(name: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / name).read_text(), flags=re.S)


@pytest.mark.parametrize("name", ["README.md", "docs/guide.md"])
def test_every_python_block_runs(name, tmp_path, monkeypatch, capsys, request):
    blocks = _blocks(name)
    assert blocks, f"{name} shows no Python"
    if any(PLACEHOLDER_URL in b for b in blocks):
        url = request.getfixturevalue("postgres_url")
        blocks = [b.replace(PLACEHOLDER_URL, url) for b in blocks]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{name} block {i + 1}", "exec"), namespace)  # noqa: S102 - our own documentation
    assert capsys.readouterr().out  # the examples print what they show


def test_report_reads_a_store_a_script_wrote(tmp_path, monkeypatch):
    """The guide's first example writes runs/my_run; `ase-proxima report runs/my_run` reads it."""
    from ase_proxima.cli import main

    monkeypatch.chdir(tmp_path)
    exec(compile(_blocks("docs/guide.md")[0], "guide block 1", "exec"), {})  # noqa: S102
    assert main(["report", "runs/my_run"]) == 0
    assert (tmp_path / "runs" / "my_run" / "report.png").stat().st_size > 10_000
