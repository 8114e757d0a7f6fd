"""Shared test helpers: run the real `hadeploy` console script in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HADEPLOY = [sys.executable, "-m", "hadeploy"]


@dataclass
class Result:
    rc: int
    out: str
    err: str


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 900, input_: str | None = None) -> Result:
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([*HADEPLOY, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout, input=input_, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli(tmp_path: Path):
    """Run hadeploy with a private state dir and working directory."""
    state = tmp_path / "state"

    def _run(*args: str, **kw) -> Result:
        env = {"HADEPLOY_STATE_DIR": str(state), **kw.pop("env", {})}
        return run_cli(*args, cwd=kw.pop("cwd", tmp_path), env=env, **kw)

    return _run


_MEASUREMENTS: dict[str, object] = {}


@pytest.fixture(scope="session")
def measurements() -> dict[str, object]:
    """Numbers a test observed (failed requests, durations); printed in the summary.

    They are recorded, never asserted as timings: this machine is noisy.
    """
    return _MEASUREMENTS


def pytest_terminal_summary(terminalreporter) -> None:
    if _MEASUREMENTS:
        terminalreporter.section("hadeploy measurements")
        for key, value in _MEASUREMENTS.items():
            terminalreporter.write_line(f"{key}: {value}")
