"""``hadeploy reconcile``: a local bare git repository as the remote, the apply step
replaced by a fake (the real one is 'hadeploy up --yes', covered by the lab tests)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hadeploy import reconcile as rc
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.state import StateDir

CONFIG = """\
name: gitops
regions:
  - {name: east, role: primary, lab_subnet: 10.77.1.0/24}
  - {name: west, role: secondary, lab_subnet: 10.77.2.0/24}
"""


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True, timeout=60).stdout.strip()


@pytest.fixture(autouse=True)
def _git_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private git configuration: the machine's (commit.gpgsign, hooks) stays out."""
    cfg = tmp_path / "gitconfig"
    cfg.write_text("[user]\n\tname = Ops\n\temail = ops@example.com\n"
                   "[init]\n\tdefaultBranch = main\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(cfg))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    return cfg


class Remote:
    """A bare repository (the 'remote') and a clone that commits and pushes to it."""

    def __init__(self, tmp_path: Path) -> None:
        self.url = str(tmp_path / "origin.git")
        git("init", "--bare", "-q", "-b", "main", self.url)
        self.work = tmp_path / "work"
        git("clone", "-q", self.url, str(self.work))

    def commit(self, text: str = CONFIG, *, path: str = "hadeploy.yaml",
               key: Path | None = None, message: str = "change") -> str:
        file = self.work / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
        git("add", "-A", cwd=self.work)
        sign = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}"] if key else []
        git(*sign, "commit", "-q", "--allow-empty", *(["-S"] if key else []), "-m", message,
            cwd=self.work)
        git("push", "-q", "origin", "HEAD:main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return Remote(tmp_path)


class Fakes:
    """Stand-ins for 'up --yes' and 'plan'."""

    def __init__(self) -> None:
        self.applied: list[str] = []
        self.planned = 0
        self.changes: list[str] = []
        self.fail: list[HadeployError] = []  # raised by the next applies, in order

    def apply(self, dep: Any, state: StateDir, *, summary: bool = True) -> dict[str, Any]:
        self.applied.append(dep.name)
        if self.fail:
            raise self.fail.pop(0)
        return {"deployment": dep.name, "changed": True, "plan": ["create container x"]}

    def plan(self, dep: Any, state: StateDir) -> list[str]:
        self.planned += 1
        return list(self.changes)


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


def reconciler(remote: Remote, root: Path, fakes: Fakes, **kw: Any) -> rc.Reconciler:
    source = rc.make_source(remote.url, kw.pop("branch", "main"), kw.pop("path", "."), **kw)
    return rc.Reconciler(source, root, apply=fakes.apply, plan=fakes.plan,
                         log=lambda _m: None)


def record(root: Path, name: str = "gitops") -> dict[str, Any]:
    return json.loads((root / name / "reconcile.json").read_text())


def audits(root: Path, name: str = "gitops") -> list[dict[str, Any]]:
    return list(StateDir(root / name).audit_records(operation="reconcile"))


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """An allowed signing key, a key nobody allowed, and the allowed signers file."""
    out: dict[str, Path] = {}
    for name in ("good", "other"):
        out[name] = tmp_path / f"{name}_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f",
                        str(out[name])], check=True, timeout=30)
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"ops@example.com {(tmp_path / 'good_ed25519.pub').read_text()}")
    out["signers"] = signers
    return out


# --- one iteration ----------------------------------------------------------------------

def test_first_apply_records_the_revision(remote: Remote, tmp_path: Path, fakes: Fakes):
    head = remote.commit()
    root = tmp_path / "state"
    outcome = reconciler(remote, root, fakes).once()
    assert (outcome.action, outcome.code, outcome.revision) == ("applied", ExitCode.OK, head)
    assert fakes.applied == ["gitops"] and fakes.planned == 0  # a new revision: no pre-plan
    rec = record(root)
    assert rec["repo"] == remote.url and rec["branch"] == "main" and rec["path"] == "."
    assert (rec["revision"], rec["head"], rec["result"], rec["attempts"]) == (head, head,
                                                                              "ok", 1)
    assert rec["drift_seen"] is False and rec["error"] is None and rec["applied_at"]
    assert oct((root / "gitops" / "reconcile.json").stat().st_mode & 0o777) == "0o600"
    [audit] = audits(root)
    assert (audit["revision"], audit["result"], audit["drift"]) == (head, "ok", False)
    # the cache: a bare repository under the state root, and the config last read
    cache = root / ".reconcile" / rc.make_source(remote.url).key
    assert (cache / "repo.git" / "HEAD").is_file()
    assert (cache / "hadeploy.yaml").read_text() == CONFIG


def test_same_revision_without_changes_applies_nothing(remote: Remote, tmp_path: Path,
                                                       fakes: Fakes):
    remote.commit()
    root = tmp_path / "state"
    rec = reconciler(remote, root, fakes)
    rec.once()
    before = record(root)
    outcome = rec.once()
    assert outcome.action == "noop" and outcome.code is ExitCode.OK
    assert fakes.applied == ["gitops"] and fakes.planned == 1
    after = record(root)
    assert {k: v for k, v in after.items() if k != "checked_at"} == \
        {k: v for k, v in before.items() if k != "checked_at"}
    assert len(audits(root)) == 1  # a check that changes nothing is not audited


def test_drift_at_the_same_revision_is_applied_and_recorded(remote: Remote, tmp_path: Path,
                                                            fakes: Fakes):
    head = remote.commit()
    root = tmp_path / "state"
    rec = reconciler(remote, root, fakes)
    rec.once()
    fakes.changes = ["start container hd-gitops-east-app1"]  # someone stopped a host
    outcome = rec.once()
    assert outcome.action == "drift" and outcome.drift_seen and outcome.code is ExitCode.OK
    assert fakes.applied == ["gitops", "gitops"]
    saved = record(root)
    assert saved["drift_seen"] is True and saved["drift_at"] and saved["revision"] == head
    assert audits(root)[-1]["drift"] is True
    fakes.changes = []
    assert rec.once().action == "noop" and record(root)["drift_seen"] is True


def test_a_new_commit_is_applied(remote: Remote, tmp_path: Path, fakes: Fakes):
    first = remote.commit()
    root = tmp_path / "state"
    rec = reconciler(remote, root, fakes)
    rec.once()
    second = remote.commit(CONFIG + "dns:\n  ttl: 10\n")
    outcome = rec.once()
    assert (outcome.action, outcome.revision) == ("applied", second)
    assert fakes.applied == ["gitops", "gitops"] and fakes.planned == 0
    assert record(root)["revision"] == second
    assert [a["revision"] for a in audits(root)] == [first, second]


def test_config_in_a_subdirectory(remote: Remote, tmp_path: Path, fakes: Fakes):
    remote.commit(path="deploy/prod/hadeploy.yaml")
    root = tmp_path / "state"
    outcome = reconciler(remote, root, fakes, path="./deploy/prod/").once()
    assert outcome.action == "applied"
    assert record(root)["path"] == "deploy/prod"


def test_hooks_never_run(remote: Remote, tmp_path: Path, fakes: Fakes, _git_config: Path):
    """Not the remote's, and not even the user's core.hooksPath."""
    remote.commit()
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    ran = tmp_path / "hook-ran"
    for name in ("reference-transaction", "post-checkout", "post-merge"):
        (hooks / name).write_text(f"#!/bin/sh\ntouch {ran}\n")
        (hooks / name).chmod(0o755)
    with _git_config.open("a") as f:
        f.write(f"[core]\n\thooksPath = {hooks}\n")
    assert reconciler(remote, tmp_path / "state", fakes).once().action == "applied"
    assert not ran.exists()


# --- signatures -------------------------------------------------------------------------

def test_a_signed_commit_is_accepted_and_an_unsigned_one_refused(
        remote: Remote, tmp_path: Path, fakes: Fakes, keys: dict[str, Path]):
    signed = remote.commit(key=keys["good"])
    root = tmp_path / "state"
    rec = reconciler(remote, root, fakes, require_signed=True,
                     allowed_signers=keys["signers"])
    outcome = rec.once()
    assert outcome.action == "applied" and outcome.signed_by == "ops@example.com"
    assert audits(root)[-1]["signed_by"] == "ops@example.com"

    unsigned = remote.commit(CONFIG + "dns:\n  ttl: 10\n")
    outcome = rec.once()
    assert (outcome.action, outcome.code, outcome.revision) == ("refused", ExitCode.REFUSED,
                                                                unsigned)
    assert "not signed" in (outcome.error or "")
    assert fakes.applied == ["gitops"]  # nothing of the unsigned revision was applied
    refusal = audits(root)[-1]
    assert (refusal["result"], refusal["revision"]) == ("refused", unsigned)
    assert "not signed" in refusal["reason"]
    saved = record(root)
    assert (saved["result"], saved["head"], saved["revision"]) == ("refused", unsigned,
                                                                   signed)
    # the same refusal again is not audited again
    again = rec.once()
    assert again.action == "refused" and not again.new and len(audits(root)) == 2


def test_a_commit_signed_by_another_key_is_refused(
        remote: Remote, tmp_path: Path, fakes: Fakes, keys: dict[str, Path]):
    remote.commit(key=keys["other"])
    root = tmp_path / "state"
    outcome = reconciler(remote, root, fakes, require_signed=True,
                         allowed_signers=keys["signers"]).once()
    assert outcome.action == "refused" and outcome.code is ExitCode.REFUSED
    assert "does not allow" in (outcome.error or "")
    assert fakes.applied == []
    # no deployment known yet (its config was never trusted): audited in the cache
    cache = StateDir(root / ".reconcile" / rc.make_source(remote.url).key)
    [refusal] = cache.audit_records(operation="reconcile")
    assert refusal["result"] == "refused" and "does not allow" in refusal["reason"]
    assert not (root / "gitops").exists()


def test_require_signed_needs_an_allowed_signers_file(tmp_path: Path):
    with pytest.raises(HadeployError) as err:
        rc.make_source("/srv/x.git", require_signed=True)
    assert err.value.code is ExitCode.BAD_INPUT and "--allowed-signers" in err.value.message
    with pytest.raises(HadeployError) as err:
        rc.make_source("/srv/x.git", require_signed=True,
                       allowed_signers=tmp_path / "missing")
    assert err.value.code is ExitCode.BAD_INPUT and "does not exist" in err.value.message
    with pytest.raises(HadeployError) as err:
        rc.make_source("/srv/x.git", allowed_signers=tmp_path)
    assert "only used with --require-signed" in err.value.message


# --- failures and the loop --------------------------------------------------------------

def test_backoff_doubles_up_to_the_cap():
    assert [rc.backoff(60, n) for n in range(7)] == [60, 60, 120, 240, 480, 600, 600]
    assert rc.backoff(3600, 3) == 3600  # never more often than the interval... nor less
    assert rc.backoff(60, 10**6) == 600


def test_a_failing_apply_is_retried_with_backoff(remote: Remote, tmp_path: Path,
                                                 fakes: Fakes):
    head = remote.commit()
    root = tmp_path / "state"
    rec = reconciler(remote, root, fakes)
    fakes.fail = [HadeployError("ansible failed on hd-gitops-east-app1", hint="look",
                                code=ExitCode.FAILED) for _ in range(3)]
    waits: list[float] = []
    seen: list[rc.Outcome] = []
    stop = threading.Event()

    def wait(seconds: float) -> bool:  # a fake clock: no real sleeping
        waits.append(seconds)
        return len(waits) >= 5

    assert rec.loop(stop, 60, wait=wait, on_outcome=seen.append) is None
    assert waits == [60, 120, 240, 60, 60]
    assert [o.action for o in seen] == ["failed", "failed", "failed", "applied", "noop"]
    assert [o.attempts for o in seen[:4]] == [1, 2, 3, 4]
    assert all(o.code is ExitCode.FAILED and "ansible failed" in (o.error or "")
               for o in seen[:3])
    assert [a["result"] for a in audits(root)] == ["failed"] * 3 + ["ok"]
    assert audits(root)[0]["error"] == "ansible failed on hd-gitops-east-app1"
    saved = record(root)
    assert (saved["result"], saved["revision"], saved["attempts"]) == ("ok", head, 4)


def test_a_failure_is_recorded_with_the_previous_revision_kept(remote: Remote,
                                                               tmp_path: Path,
                                                               fakes: Fakes):
    first = remote.commit()
    root = tmp_path / "state"
    rec = reconciler(remote, root, fakes)
    rec.once()
    second = remote.commit(CONFIG + "dns:\n  ttl: 10\n")
    fakes.fail = [HadeployError("deployment 'gitops' is locked by 'failover'",
                                code=ExitCode.LOCKED)]
    outcome = rec.once()
    assert (outcome.action, outcome.code, outcome.stage) == ("failed", ExitCode.LOCKED,
                                                             "apply")
    saved = record(root)
    assert (saved["revision"], saved["head"], saved["result"]) == (first, second, "failed")
    assert "locked" in saved["error"]


def test_an_unreachable_repository_after_a_sync_does_not_reapply(remote: Remote,
                                                                  tmp_path: Path,
                                                                  fakes: Fakes):
    head = remote.commit()
    root = tmp_path / "state"
    rec = reconciler(remote, root, fakes)
    rec.once()
    Path(remote.url).rename(tmp_path / "away.git")
    outcome = rec.once()
    assert (outcome.action, outcome.code, outcome.stage) == ("failed", ExitCode.ENVIRONMENT,
                                                             "fetch")
    saved = record(root)  # the deployment is known: recorded there, revision kept
    assert (saved["result"], saved["stage"], saved["revision"]) == ("failed", "fetch", head)
    assert audits(root)[-1]["stage"] == "fetch"
    (tmp_path / "away.git").rename(remote.url)
    assert rec.once().action == "noop" and fakes.applied == ["gitops"]
    saved = record(root)
    assert (saved["result"], saved["stage"], saved["error"]) == ("ok", None, None)


def test_the_loop_stops_at_once_on_a_wrong_branch(remote: Remote, tmp_path: Path,
                                                  fakes: Fakes):
    remote.commit()
    rec = reconciler(remote, tmp_path / "state", fakes, branch="mian")
    waits: list[float] = []
    last = rec.loop(threading.Event(), 60, wait=lambda s: waits.append(s) or False)
    assert last is not None and last.code is ExitCode.BAD_INPUT and waits == []
    assert "branch 'mian' does not exist" in (last.error or "")


def test_a_broken_config_is_retried_not_fatal(remote: Remote, tmp_path: Path,
                                              fakes: Fakes):
    """A restarted reconciler must not die on a bad commit: a fix is pushed later."""
    remote.commit()
    root = tmp_path / "state"
    reconciler(remote, root, fakes).once()
    bad = remote.commit("name: gitops\nregions: [\n")
    waits: list[float] = []
    seen: list[rc.Outcome] = []
    last = reconciler(remote, root, fakes).loop(
        threading.Event(), 30, wait=lambda s: waits.append(s) or len(waits) > 1,
        on_outcome=seen.append)
    assert last is None and waits == [30, 60]  # backing off, not exiting
    assert seen[0].stage == "config" and seen[0].code is ExitCode.BAD_INPUT
    assert f"main@{bad[:12]}:hadeploy.yaml" in (seen[0].error or "")
    saved = record(root)
    assert (saved["result"], saved["head"], saved["attempts"]) == ("failed", bad, 2)
    assert fakes.applied == ["gitops"]


def test_a_missing_config_ends_a_loop_that_never_applied(remote: Remote, tmp_path: Path,
                                                        fakes: Fakes):
    remote.commit(path="deploy/hadeploy.yaml")
    last = reconciler(remote, tmp_path / "state", fakes).loop(
        threading.Event(), 30, wait=lambda _s: pytest.fail("no wait expected"))
    assert last is not None and last.code is ExitCode.BAD_INPUT and last.wrong_source
    assert "that revision has: deploy/hadeploy.yaml" in (last.hint or "")


def test_a_second_reconciler_of_the_same_branch_is_locked_out(remote: Remote,
                                                              tmp_path: Path,
                                                              fakes: Fakes):
    remote.commit()
    first = reconciler(remote, tmp_path / "state", fakes)
    second = reconciler(remote, tmp_path / "state", fakes)
    with first.hold(), pytest.raises(HadeployError) as err:
        second.once()
    assert err.value.code is ExitCode.LOCKED


def test_apply_config_is_up_with_yes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from hadeploy.commands import up

    calls: list[dict[str, Any]] = []

    class Report:
        changed = True

        def to_dict(self) -> dict[str, Any]:
            return {"changed": True}

        def summary(self) -> list[str]:
            return ["done"]

    def fake_apply(dep: Any, state: Any, **kw: Any) -> Report:
        calls.append(kw)
        return Report()

    monkeypatch.setattr(up, "apply", fake_apply)
    dep: Any = object()
    assert rc.apply_config(dep, StateDir(tmp_path), summary=False) == {"changed": True}
    assert calls == [{"yes": True}]


# --- the command ------------------------------------------------------------------------

@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch, fakes: Fakes) -> Fakes:
    monkeypatch.setattr(rc, "apply_config", fakes.apply)
    monkeypatch.setattr(rc, "plan_changes", fakes.plan)
    return fakes


def invoke(*args: str) -> Any:
    from hadeploy.cli import app

    return CliRunner().invoke(app, ["reconcile", *args])


def test_once_exits_with_the_apply_exit_code(remote: Remote, tmp_path: Path,
                                             patched: Fakes):
    head = remote.commit()
    state = str(tmp_path / "state")
    r = invoke("--repo", remote.url, "--once", "--json", "--state-dir", state)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert (doc["action"], doc["result"], doc["revision"], doc["exit_code"]) == (
        "applied", "ok", head, 0)
    assert doc["deployment"] == "gitops" and doc["up"]["changed"] is True
    r = invoke("--repo", remote.url, "--once", "--state-dir", state)
    assert r.exit_code == 0 and "in sync, nothing to do" in r.stderr
    patched.changes = ["start container x"]
    patched.fail = [HadeployError("ansible failed", hint="see the log", code=ExitCode.FAILED)]
    r = invoke("--repo", remote.url, "--once", "--state-dir", state)
    assert r.exit_code == 1
    assert "FAILED (apply, exit 1, attempt 1)" in r.stderr and "fix: see the log" in r.stderr
    patched.fail = [HadeployError("locked", code=ExitCode.LOCKED)]
    assert invoke("--repo", remote.url, "--once", "--state-dir", state).exit_code == 4


def test_once_refuses_an_unsigned_commit_with_exit_3(remote: Remote, tmp_path: Path,
                                                     patched: Fakes, keys: dict[str, Path]):
    remote.commit()
    r = invoke("--repo", remote.url, "--once", "--require-signed", "--allowed-signers",
               str(keys["signers"]), "--state-dir", str(tmp_path / "state"), "--json")
    assert r.exit_code == 3
    assert json.loads(r.stdout)["action"] == "refused" and "REFUSED" in r.stderr
    assert patched.applied == []


def _no_traceback(r: Any) -> None:
    assert "Traceback" not in r.out + r.err, r.err


@pytest.mark.parametrize("args,code,needle", [
    (["--repo", "ext::sh -c touch% /tmp/pwned"], 2, "not a repository URL"),
    (["--repo", "ext::sh"], 2, "remote helper"),
    (["--repo", "https://ops:s3cret@git.example.com/x.git"], 2, "password or token"),
    (["--repo", "ftp://git.example.com/x.git"], 2, "scheme 'ftp' is not supported"),
    (["--repo", "ssh://-oProxyCommand=touch/x"], 2, "names no host"),
    (["--repo", "git@-oProxyCommand=x:repo"], 2, "not a repository URL"),
    (["--repo", "--upload-pack=touch"], 2, "starts with '-'"),
    (["--repo", ""], 2, "not a repository URL"),
    ([], 2, "--repo is required"),
    (["--repo", "{url}", "--branch", "a..b"], 2, "not a branch name"),
    (["--repo", "{url}", "--path", "/etc"], 2, "leaves the repository"),
    (["--repo", "{url}", "--interval", "0"], 2, "--interval"),
    (["--repo", "{url}", "--interval", "nan"], 2, "--interval"),
    (["--repo", "{url}", "--require-signed"], 2, "--allowed-signers"),
    (["--repo", "{url}", "--require-signed", "--allowed-signers", "/nonexistent"], 2,
     "does not exist"),
    (["--repo", "{url}", "--once", "--branch", "nope"], 2, "branch 'nope' does not exist"),
    (["--repo", "{url}", "--branch", "nope"], 2, "branch 'nope' does not exist"),
    (["--repo", "{url}", "--once", "--path", "deploy"], 2, "that revision has: hadeploy.yaml"),
    (["--repo", "{missing}", "--once"], 6, "cannot fetch branch 'main'"),
    (["--repo", "{missing}"], 6, "cannot fetch branch 'main'"),
])
def test_bad_input_exit_codes(cli, remote: Remote, tmp_path: Path, args: list[str],
                              code: int, needle: str):
    remote.commit()
    args = [a.format(url=remote.url, missing=tmp_path / "nope.git") for a in args]
    r = cli("reconcile", *args, timeout=120)
    assert r.rc == code, (r.rc, r.err)
    assert needle in r.err, r.err
    assert "fix:" in r.err
    _no_traceback(r)


def test_config_problems_name_the_repository_revision_and_file(cli, remote: Remote):
    head = remote.commit("name: gitops\nregions:\n  - {name: east, role: primary, "
                         "lab_subnet: 10.77.1.0/24, flavour: big}\n")
    r = cli("reconcile", "--repo", remote.url, "--once", timeout=120)
    assert r.rc == 2 and f"main@{head[:12]}:hadeploy.yaml" in r.err
    assert "unknown key 'flavour'" in r.err
    (remote.work / "hadeploy.yaml").unlink()
    (remote.work / "hadeploy.yaml").symlink_to("/etc/passwd")
    remote.commit("x", path="other.txt")
    r = cli("reconcile", "--repo", remote.url, "--once", timeout=120)
    assert r.rc == 2 and "symbolic link" in r.err
    _no_traceback(r)


def test_git_missing_is_an_environment_error(cli, tmp_path: Path):
    r = cli("reconcile", "--repo", "https://git.example.com/x.git", "--once",
            env={"PATH": str(tmp_path / "empty")})
    assert r.rc == 6 and "git is not installed" in r.err
    _no_traceback(r)


def test_sigterm_stops_the_loop_between_iterations(remote: Remote, tmp_path: Path):
    remote.commit()
    state = tmp_path / "state"
    script = tmp_path / "run.py"
    script.write_text(f"""\
import sys
from hadeploy import reconcile
reconcile.apply_config = lambda dep, state, summary=True: {{"changed": True, "plan": []}}
reconcile.plan_changes = lambda dep, state: []
from hadeploy.cli import main
sys.argv = ["hadeploy", "reconcile", "--repo", {remote.url!r}, "--interval", "5",
            "--state-dir", {str(state)!r}]
main()
""")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (state / "gitops" / "reconcile.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "SIGTERM: stopping after this iteration" in err and "reconcile: stopped" in err
    assert "applied (0 change(s)" in err


# --- status -----------------------------------------------------------------------------

def test_status_shows_the_synced_revision(remote: Remote, tmp_path: Path, fakes: Fakes):
    from hadeploy.status import DnsStatus, StatusDoc, reconcile_status, render_text

    root = tmp_path / "state"
    assert reconcile_status(root / "gitops") is None
    head = remote.commit()
    rec = reconciler(remote, root, fakes)
    rec.once()
    fakes.changes = ["start container x"]
    rec.once()
    found = reconcile_status(root / "gitops")
    assert found is not None and found.revision == head and found.drift_seen
    doc = StatusDoc(deployment="gitops", target="lab", checked_at="2026-11-28T10:00:00.000Z",
                    active_region=None, healthy=False, degraded=False,
                    dns=DnsStatus(server="10.77.0.53", port=53, zone="hadeploy.test",
                                  record="app.hadeploy.test.", ttl=5, answer=[],
                                  error=None), regions=[], reconcile=found)
    as_json = json.loads(doc.to_json())
    assert as_json["reconcile"]["revision"] == head
    assert as_json["reconcile"]["result"] == "ok" and as_json["reconcile"]["drift_seen"]
    assert set(as_json) >= {"schema_version", "deployment", "regions", "drills", "reconcile"}
    from rich.console import Console

    console = Console(record=True, width=400)
    console.print(render_text(doc))
    text = console.export_text()
    assert f"in sync with {head[:12]}" in text and "drift seen and corrected" in text
    (root / "gitops" / "reconcile.json").write_text("{garbage")
    assert reconcile_status(root / "gitops") is None  # status never fails on it
    no_rec = StatusDoc.model_validate({**as_json, "reconcile": None})
    assert json.loads(no_rec.to_json())["reconcile"] is None


# --- the systemd unit -------------------------------------------------------------------

def test_print_unit(cli, remote: Remote, tmp_path: Path, keys: dict[str, Path]):
    remote.commit()
    state = tmp_path / "st ate%1"  # a space and a '%': quoted and escaped for systemd
    r = cli("reconcile", "--print-unit", "--repo", remote.url, "--branch", "main",
            "--path", "deploy/prod", "--interval", "30", "--require-signed",
            "--allowed-signers", str(keys["signers"]), env={"HADEPLOY_STATE_DIR": str(state)})
    assert r.rc == 0, r.err
    unit = r.out
    lines = unit.splitlines()
    assert "Type=simple" in lines and "Restart=on-failure" in lines
    assert "NoNewPrivileges=yes" in lines and "ProtectSystem=strict" in lines
    assert "KillMode=mixed" in lines and "RestartPreventExitStatus=2" in lines
    [exec_start] = [ln for ln in lines if ln.startswith("ExecStart=")]
    assert exec_start == (f"ExecStart={sys.executable} -m hadeploy reconcile --repo "
                          f"{remote.url} --branch main --path deploy/prod --interval 30 "
                          f"--require-signed --allowed-signers {keys['signers']}")
    assert Path(sys.executable).is_absolute()
    escaped = str(state).replace("%", "%%")
    assert f'Environment="HADEPLOY_STATE_DIR={escaped}"' in lines
    [rw] = [ln for ln in lines if ln.startswith("ReadWritePaths=")]
    assert rw.startswith(f'ReadWritePaths="{escaped}" ')
    assert any(ln.startswith("WorkingDirectory=/") for ln in lines)
    assert not state.exists()  # printing the unit writes nothing
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the unit's syntax is not verified")
    path = tmp_path / "hadeploy-reconcile-origin-deploy-prod.service"
    path.write_text(unit)
    check = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                           text=True, timeout=60, check=False)
    ours = [ln for ln in check.stderr.splitlines() if path.name in ln or "ExecStart" in ln]
    assert check.returncode == 0 and ours == [], check.stderr


def test_print_unit_refuses_once_and_checks_its_options(cli, tmp_path: Path):
    r = cli("reconcile", "--print-unit", "--once", "--repo", "https://git.example.com/x.git")
    assert r.rc == 2 and "drop --once" in r.err
    r = cli("reconcile", "--print-unit", "--repo", "https://git.example.com/x.git",
            "--interval", "1")
    assert r.rc == 2 and "--interval" in r.err
    r = cli("reconcile", "--print-unit", "--repo", "https://git.example.com/x.git", "--json")
    assert r.rc == 0 and "--interval 60 --json" in r.out
    assert "hadeploy-reconcile-x.service" in r.out


def test_unit_arguments_are_quoted_for_systemd():
    assert rc._unit_arg("/a/b") == "/a/b"
    assert rc._unit_arg("a b") == '"a b"'
    assert rc._unit_arg("50%") == "50%%"
    assert rc._unit_arg('x"$y\\') == '"x\\"$$y\\\\"'
    assert rc._unit_arg("$y z", dollars=False) == '"$y z"'


def test_urls_are_normalized(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert rc.check_repo("repo.git") == str(tmp_path / "repo.git")
    for ok in ("https://git.example.com/ops/app.git", "ssh://git@git.example.com/ops/app",
               "git@github.com:ops/app.git", "file:///srv/app.git", "/srv/app.git"):
        assert rc.check_repo(ok) == ok
    assert rc.check_path("") == "." and rc.check_path("./a//b/") == "a/b"
    assert os.sep == "/"
