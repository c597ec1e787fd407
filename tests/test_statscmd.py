"""`python -m fastloop stats SCRIPT`: the program runs on fastloop and a report follows."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

from fastloop import _statscmd

SCRIPT = """
import asyncio, sys, time

async def blocker():
    time.sleep(0.05)
    await asyncio.sleep(0)

async def main():
    await blocker()
    print(type(asyncio.get_running_loop()).__module__, sys.argv[1:])

asyncio.run(main())
"""


def test_stats_command_runs_the_program_on_fastloop_and_reports(tmp_path):
    proc = run_stats(tmp_path, ["--slow", "0.02"], ["x", "-y"])
    assert proc.stdout == "fastloop._loop ['x', '-y']\n"
    assert "fastloop stats" in proc.stderr
    assert "loop 0:" in proc.stderr and "utilisation" in proc.stderr
    assert "1 callbacks >= 20 ms" in proc.stderr
    assert "blocker" in proc.stderr  # the slowest callback's task, with its coroutine


def run_stats(tmp_path, options, args=()):
    """Run SCRIPT (with ``args``) under `python -m fastloop stats` with ``options``."""
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(SCRIPT))
    src = os.path.join(os.path.dirname(os.path.dirname(__file__)), "src")
    env = {**os.environ, "PYTHONPATH": src}
    return subprocess.run(
        [sys.executable, "-m", "fastloop", "stats", *options, str(script), *args],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                    reason="matplotlib is not installed")
def test_plot_draws_lag_and_utilisation_into_a_png(tmp_path):
    png = tmp_path / "stats.png"
    proc = run_stats(tmp_path, ["--plot", str(png), "--interval", "0.01"])
    assert f"plot: {png}" in proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # find_spec: not there
    with pytest.raises(SystemExit) as exit:
        _statscmd.main(["--plot", str(tmp_path / "x.png"), "prog.py"])
    assert exit.value.code == 2
    assert "--plot needs matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
