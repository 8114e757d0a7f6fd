"""Hostile arguments and corrupted state: every case ends with a documented exit code, one
clear message, no traceback, bounded output — and a command that must not write (status,
plan, failover --dry-run, and any refused run) leaves the state directory as it was.

The CLI runs in-process (``hadeploy.cli.main`` with ``sys.argv``), so an exception that
escapes the one error handler fails the test instead of printing a traceback. No case
reaches the network: every one is refused before a probe or a DNS query is sent.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hadeploy import config
from hadeploy.cli import main
from hadeploy.dns.rfc2136 import TsigKey
from hadeploy.state import JOURNAL, StateDir

DOCUMENTED = {0, 1, 2, 3, 4, 5, 6, 7, 130}
MAX_OUTPUT = 4096


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests must not send a packet off this machine: a connection or datagram to
    anything but loopback fails at once, as an unreachable network would."""
    def guard(real):
        def wrapped(self, *args):
            address = args[-1]
            host = address[0] if isinstance(address, tuple) else None
            if host is not None and not ipaddress.ip_address(host).is_loopback:
                raise OSError(101, f"blocked by the test: {host}")
            return real(self, *args)
        return wrapped
    for name in ("connect", "connect_ex", "sendto"):
        monkeypatch.setattr(socket.socket, name, guard(getattr(socket.socket, name)))


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def hd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Run the CLI in-process in tmp_path with a private state root; never asks."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HADEPLOY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # noqa: SIM115 - not a terminal

    def run(*args: str) -> Run:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["hadeploy", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
        out, err = capsys.readouterr()
        assert code in DOCUMENTED, (args, code, err)
        assert "Traceback" not in out + err, err
        assert len(out) + len(err) <= MAX_OUTPUT, (args, len(err))
        return Run(code, out, err)
    return run


def built(tmp_path: Path, name: str = "demo") -> StateDir:
    """A state directory as a successful lab 'up' leaves it (without the containers)."""
    from hadeploy import dbsecrets

    state = StateDir(tmp_path / "state" / name)
    state.save_deployment(config.from_regions(["east", "west"], name=name))
    TsigKey.generate(f"hadeploy-{name}").save(state.path / "dns" / "tsig.json")
    dbsecrets.ensure_passwords(state.path)
    return state


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    out: dict[str, tuple[int, bytes]] = {}
    for path in sorted(root.rglob("*")) if root.exists() else []:
        st_ = path.lstat()
        out[str(path)] = (st_.st_mode, b"" if path.is_dir() else path.read_bytes())
    return out


# --- arguments ---------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["status", "--timeout", "-1"], ["status", "--timeout", "nan"],
    ["status", "--timeout", "inf"], ["status", "--timeout", "0"],
    ["status", "--timeout", "1e309"], ["status", "--timeout", "abc"],
    ["watch", "--max-seconds", "nan"], ["watch", "--max-seconds", "-5"],
])
def test_bad_numbers_are_refused(hd, tmp_path, args):
    built(tmp_path)
    before = snapshot(tmp_path / "state")
    r = hd(*args)
    assert r.code == 2 and ("--timeout" in r.err or "--max-seconds" in r.err), r.err
    assert snapshot(tmp_path / "state") == before


@pytest.mark.parametrize("name", ["../outside", "a/b", "", "Demo", "x" * 200, "-", "..",
                                  "demo\n", "démo", "a" * 10_000])
def test_deployment_names_are_validated_everywhere(hd, tmp_path, name):
    (tmp_path / "outside").mkdir()
    for cmd in (["status"], ["plan", "-d", name], ["down", "--yes"],
                ["failover", "--to", "west", "--dry-run"]):
        args = [*cmd, "-d", name] if cmd[0] != "plan" else cmd
        r = hd(*args)
        assert r.code == 2, (cmd, r.err)
        assert "deployment name" in r.err or "not a deployment name" in r.err, r.err
    assert list((tmp_path / "outside").iterdir()) == []
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("to", ["", " ", "mars", "west\nx", "x" * 5000])
def test_failover_to_a_bad_region_is_refused_before_anything(hd, tmp_path, to):
    state = built(tmp_path)
    before = snapshot(state.path)
    r = hd("failover", "--to", to, "--yes", "--json")
    assert r.code == 2, r.err
    assert "--to is empty" in r.err or "unknown region" in r.err
    assert snapshot(state.path) == before


@pytest.mark.parametrize("regions", ["", ",", " , ", "east,east", "ctl", "east,ctl",
                                     "a" * 300, "east,West", "east;rm -rf /"])
def test_bad_region_lists(hd, regions):
    r = hd("plan", "--regions", regions)
    assert r.code == 2 and "error:" in r.err


def test_target_aws_without_a_config_says_how_to_write_one(hd):
    r = hd("up", "--target", "aws", "--regions", "us-east-1,eu-west-1")
    assert r.code == 2 and "init --target aws" in r.err


# --- the state root and state files ---------------------------------------------------------

def test_state_dir_that_is_a_file(hd, tmp_path):
    (tmp_path / "statefile").write_text("")
    for cmd in (["status"], ["up", "--regions", "a,b"], ["plan", "--regions", "a,b"]):
        r = hd(*cmd, "--state-dir", str(tmp_path / "statefile"))
        assert r.code == 2 and "not a directory" in r.err, r.err


@pytest.mark.parametrize("content", ["", "{", "[]", '"x"', "\x00\x01binary",
                                     '{"name": "demo"}', json.dumps({"name": "other",
                                     "regions": [{"name": "a", "role": "primary",
                                                  "lab_subnet": "10.91.1.0/24"}]})])
def test_a_corrupt_deployment_json(hd, tmp_path, content):
    state = StateDir(tmp_path / "state" / "demo")
    state.ensure()
    state.file("deployment.json").write_text(content)
    before = snapshot(tmp_path / "state")
    for cmd in (["status"], ["failover", "--to", "west", "--dry-run"], ["down", "--yes"]):
        r = hd(*cmd)
        assert r.code == 2 and "deployment.json" in r.err and "fix:" in r.err, r.err
    assert snapshot(tmp_path / "state") == before


@pytest.mark.parametrize("name", ["deployment.json", "lock", "regions.json", JOURNAL])
def test_a_directory_where_a_state_file_belongs(hd, tmp_path, name):
    state = built(tmp_path)
    (state.path / name).unlink(missing_ok=True)
    (state.path / name).mkdir()
    r = hd("failover", "--to", "west", "--yes")
    assert r.code == 2 and name in r.err, r.err


@pytest.mark.parametrize("file,content", [
    ("regions.json", "garbage"), ("regions.json", '{"fenced": "east"}'),
    (JOURNAL, '{"id": "abcdef012345", "to": "west"}'),
    (JOURNAL, '{"version": 1, "id": "abcdef012345", "to": "west", "reason": "x", '
              '"started": "t", "user": "u"}'),  # no "from": would fence nothing
    ("dns/tsig.json", '{"name": "k", "secret": "not base64!!", "algorithm": "hmac-sha256"}'),
    ("dns/tsig.json", "{"),
])
def test_state_files_that_cannot_be_trusted_stop_a_failover_before_any_change(
        hd, tmp_path, file, content):
    state = built(tmp_path)
    (state.path / file).write_text(content)
    before = snapshot(state.path)
    for args in (["failover", "--to", "west", "--yes"], ["failback", "--yes"],
                 ["failover", "--to", "west", "--dry-run"]):
        r = hd(*args)
        assert r.code == 2, (args, r.err)
        assert file.split("/")[-1] in r.err and "fix:" in r.err, r.err
    assert snapshot(state.path) == before


# --- init ---------------------------------------------------------------------------------

@pytest.mark.parametrize("where,needle", [
    ("missing/dir/hadeploy.yaml", "does not exist"), (".", "is a directory"),
    ("exists.yaml", "already exists"), ("fifo", "already exists"),
])
def test_init_refuses_bad_destinations(hd, tmp_path, where, needle):
    (tmp_path / "exists.yaml").write_text("keep me")
    os.mkfifo(tmp_path / "fifo")
    r = hd("init", where)
    assert r.code == 2 and needle in r.err, r.err
    assert (tmp_path / "exists.yaml").read_text() == "keep me"


def test_init_target_aws_writes_a_template_that_validates(hd, tmp_path):
    r = hd("init", "aws.yaml", "--target", "aws")
    assert r.code == 0, r.err
    dep = config.load(tmp_path / "aws.yaml")
    assert dep.target is config.Target.AWS and dep.aws is not None


# --- a fuzz of argument vectors -----------------------------------------------------------

WORDS = ["status", "plan", "up", "down", "failover", "failback", "watch", "init", "doctor",
         "--to", "--timeout", "--regions", "-d", "--deployment", "--state-dir", "--config",
         "--target", "--json", "--dry-run", "--yes", "--max-seconds", "--force", "-r",
         "east", "west", "", "nan", "-1", "..", "/", "aws", "lab", "\n", "x" * 300]


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(WORDS) | st.text(max_size=20), min_size=1, max_size=6))
def test_fuzzed_arguments_never_traceback_and_never_write(hd, tmp_path, args):
    """Whatever the arguments: a documented exit code, bounded output, no traceback; the
    only writes allowed are what a successful 'init' writes."""
    if {"up", "doctor", "watch"} & set(args) or ("down" in args and "--yes" in args):
        return  # commands that act on this machine are tested elsewhere
    state = built(tmp_path)
    before = snapshot(state.path)
    r = hd(*args)
    if "init" not in args or r.code != 0:
        assert snapshot(state.path) == before, (args, r.err)
