"""`python -m fastloop stats SCRIPT`: the program runs on fastloop and a report follows."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

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
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(SCRIPT))
    src = os.path.join(os.path.dirname(os.path.dirname(__file__)), "src")
    env = {**os.environ, "PYTHONPATH": src}
    proc = subprocess.run(
        [sys.executable, "-m", "fastloop", "stats", "--slow", "0.02", str(script), "x", "-y"],
        capture_output=True, text=True, env=env, timeout=60, check=True,
    )
    assert proc.stdout == "fastloop._loop ['x', '-y']\n"
    assert "fastloop stats" in proc.stderr
    assert "loop 0:" in proc.stderr and "utilisation" in proc.stderr
    assert "1 callbacks >= 20 ms" in proc.stderr
    assert "blocker" in proc.stderr  # the slowest callback's task, with its coroutine
