"""State directory, lock and secrets handling."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest

from hadeploy.dns.rfc2136 import TsigKey
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.state import StateDir


def _hold(path: str, ready, release) -> None:
    with StateDir(Path(path)).lock("up"):
        ready.set()
        release.wait(10)


def test_second_run_is_refused_and_told_who_holds_the_lock(tmp_path: Path):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold, args=(str(tmp_path / "d"), ready, release))
    proc.start()
    try:
        assert ready.wait(10)
        with pytest.raises(HadeployError) as info, StateDir(tmp_path / "d").lock("down"):
            pass
        assert info.value.code is ExitCode.LOCKED
        assert "'up' run by" in info.value.message and f"pid {proc.pid}" in info.value.message
    finally:
        release.set()
        proc.join(10)
    with StateDir(tmp_path / "d").lock("down"):  # released when the holder exits
        pass


def test_lock_is_released_when_holder_dies(tmp_path: Path):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold, args=(str(tmp_path / "d"), ready, release))
    proc.start()
    assert ready.wait(10)
    os.kill(proc.pid, 9)
    proc.join(10)
    with StateDir(tmp_path / "d").lock("up"):
        pass


def test_state_dir_is_private(tmp_path: Path):
    state = StateDir(tmp_path / "x")
    state.ensure()
    assert stat.S_IMODE(state.path.stat().st_mode) == 0o700


def test_tsig_key_file_is_0600_and_repr_hides_secret(tmp_path: Path):
    key = TsigKey.generate("k")
    path = tmp_path / "dns" / "tsig.json"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key.secret not in repr(key)
    assert TsigKey.load(path) == key


def test_corrupt_tsig_key_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "tsig.json"
    path.write_text("{not json")
    with pytest.raises(HadeployError, match="unreadable"):
        TsigKey.load(path)


def test_clear_keeps_audit(tmp_path: Path):
    state = StateDir(tmp_path / "d")
    state.save_json("topology.json", {})
    state.append_audit({"operation": "up", "at": time.time()})
    state.clear()
    assert [p.name for p in state.path.iterdir()] == ["audit.jsonl"]
    assert json.loads((state.path / "audit.jsonl").read_text())["operation"] == "up"
