"""State directory, lock and secrets handling."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import stat
import time
from pathlib import Path

import pytest

from hadeploy.dns.rfc2136 import TsigKey
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.state import StateDir, StateError, atomic_write, parse_time


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


@pytest.mark.parametrize("content", [
    "{not json", "[]", '{"name": "k"}',
    '{"name": "k", "secret": "not base64!!", "algorithm": "hmac-sha256"}',
    '{"name": "k", "secret": "c2hvcnQ=", "algorithm": "hmac-sha256"}',  # 5 bytes
    '{"name": "k\\nx", "secret": "AAAAAAAAAAAAAAAAAAAAAA==", "algorithm": "hmac-sha256"}',
    '{"name": "k", "secret": "AAAAAAAAAAAAAAAAAAAAAA==", "algorithm": "hmac-md5"}',
])
def test_a_tsig_key_that_cannot_be_used_is_refused_when_loaded(tmp_path: Path, content: str):
    """Refused on load, as a clear error: never a binascii.Error after a fence."""
    path = tmp_path / "tsig.json"
    path.write_text(content)
    with pytest.raises(HadeployError) as info:
        TsigKey.load(path)
    assert "cannot be used" in info.value.message and str(path) in info.value.message
    assert "AAAA" not in info.value.message  # never quotes the secret


def test_clear_keeps_audit(tmp_path: Path):
    state = StateDir(tmp_path / "d")
    state.save_json("topology.json", {})
    state.audit("up", changed=True)
    state.clear()
    assert [p.name for p in state.path.iterdir()] == ["audit.jsonl"]
    assert json.loads((state.path / "audit.jsonl").read_text())["operation"] == "up"


# --- one owner of writes, timestamps and paths -------------------------------------------

def test_audit_records_have_one_timestamp_format(tmp_path: Path):
    state = StateDir(tmp_path / "d")
    first = state.audit("up")
    second = state.audit("failover", result="done")
    for rec in (first, second):
        assert set(rec) >= {"operation", "at", "user", "host", "pid"}
        assert parse_time(rec["at"]) == pytest.approx(time.time(), abs=5)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rec["at"])
    assert [r["operation"] for r in state.audit_records()] == ["up", "failover"]
    assert stat.S_IMODE((state.path / "audit.jsonl").stat().st_mode) == 0o600


def test_audit_records_of_one_operation_skip_others_that_mention_it(tmp_path: Path):
    state = StateDir(tmp_path / "d")
    state.audit("up", reason="drill")  # names the operation, is not one
    state.audit("drill", scenario="lb")
    with (state.path / "audit.jsonl").open("a") as f:
        f.write('{"operation": "drill", "torn\n')
    assert [r.get("scenario") for r in state.audit_records(operation="drill")] == ["lb"]
    assert len(list(state.audit_records())) == 2


def test_atomic_write_is_private_and_leaves_no_temporary_file(tmp_path: Path):
    path = tmp_path / "x" / "f.json"
    atomic_write(path, "one")
    atomic_write(path, "two")
    assert path.read_text() == "two" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["f.json"]


@pytest.mark.parametrize("name", ["../outside", "a/b", "", "Demo", "x" * 30, "-x", ".", ".."])
def test_deployment_names_are_validated(tmp_path: Path, name: str):
    with pytest.raises(HadeployError) as info:
        StateDir.for_deployment(name, tmp_path)
    assert info.value.code is ExitCode.BAD_INPUT
    assert list(tmp_path.iterdir()) == []


def test_a_state_dir_that_links_outside_the_root_is_refused(tmp_path: Path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "demo").symlink_to(outside)
    with pytest.raises(StateError, match="outside the state root"):
        StateDir.for_deployment("demo", root)


def test_a_state_root_that_is_a_file_is_refused(tmp_path: Path):
    root = tmp_path / "file"
    root.write_text("")
    with pytest.raises(StateError, match="not a directory"):
        StateDir.for_deployment("demo", root)


@pytest.mark.parametrize("name", ["deployment.json", "lock", "regions.json", "audit.jsonl"])
def test_a_directory_where_a_state_file_belongs_is_a_clear_error(tmp_path: Path, name: str):
    state = StateDir(tmp_path / "demo")
    (state.path / name).mkdir(parents=True)
    with pytest.raises(StateError) as info:
        if name == "deployment.json":
            state.load_deployment()
        elif name == "lock":
            with state.lock("up"):
                pass
        elif name == "regions.json":
            state.region_flags()
        else:
            state.audit("up")
    assert str(state.path / name) in info.value.message and info.value.hint


@pytest.mark.parametrize("content", ["{", "[]", '{"name": "demo"}', '"x"'])
def test_a_corrupt_deployment_json_is_a_clear_error(tmp_path: Path, content: str):
    state = StateDir(tmp_path / "demo")
    state.ensure()
    state.file("deployment.json").write_text(content)
    with pytest.raises(StateError) as info:
        state.load_deployment()
    assert "deployment.json" in info.value.message and info.value.code is ExitCode.BAD_INPUT


def test_a_deployment_json_of_another_deployment_is_refused(tmp_path: Path):
    from hadeploy import config

    other = StateDir(tmp_path / "other")
    other.save_deployment(config.from_regions(["a"], name="demo"))
    with pytest.raises(StateError, match="names deployment 'demo'"):
        other.load_deployment()


def test_region_flags_change_only_under_the_lock(tmp_path: Path):
    state = StateDir(tmp_path / "demo")
    with pytest.raises(RuntimeError, match="outside the deployment lock"):
        state.set_region_flag("fenced", "east", True)
    with state.lock("failover"):
        state.set_region_flag("fenced", "east", True)
    assert state.region_flags().fenced == ("east",)


@pytest.mark.parametrize("content", [b"not a database at all", b"SQLite format 3\x00" + b"x" * 200])
def test_a_corrupt_probe_history_is_reported_not_raised(tmp_path: Path, content: bytes):
    from hadeploy.history import History, HistoryError, history_path
    from hadeploy.status import _history

    path = history_path(tmp_path)
    path.write_bytes(content)
    summaries, error = _history(tmp_path, ["east"])
    assert summaries == {} and error and str(path) in error
    assert path.read_bytes() == content  # read-only: status repairs nothing, writes nothing
    with pytest.raises(HistoryError) as info:
        History(path)
    assert info.value.code is ExitCode.BAD_INPUT and "mv" in (info.value.hint or "")


def test_status_reads_history_without_writing(tmp_path: Path):
    from hadeploy.history import History, ProbeRow, history_path
    from hadeploy.status import _history

    db = History(history_path(tmp_path))
    db.add([ProbeRow(time.time(), "cli", "east", True, 200, 1.0, None)])
    db.close()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    summaries, error = _history(tmp_path, ["east"])
    assert error is None and summaries["east"]["vantages"]["cli"]["ok"] == 1
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
