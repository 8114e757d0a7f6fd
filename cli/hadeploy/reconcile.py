"""``hadeploy reconcile``: pull the desired state from a git repository and apply it
(GitOps, pull-based).

One iteration:

1. fetch the branch into a private bare repository under the state root,
   ``<state root>/.reconcile/<key>/repo.git`` (``<key>``: a hash of the URL, branch and
   path), with the git CLI: no hook of any repository ever runs (``core.hooksPath`` is
   ``/dev/null``, nothing is checked out), every git call has a timeout, and git never
   prompts (no terminal, ``GIT_TERMINAL_PROMPT=0``);
2. with ``--require-signed``, verify the head commit with ``git verify-commit`` (SSH
   signatures against the ``--allowed-signers`` file; a GPG signature is checked by git
   against the keyring of the user running it and must be fully trusted). A commit that is
   not signed, or not by an allowed signer, is refused (exit 3) and audited; nothing of it
   is read further;
3. read ``<path>/hadeploy.yaml`` from that commit (``git ls-tree``/``git cat-file``: a
   regular file of at most 1 MiB; a copy is kept in the cache directory) and validate it
   like ``--config`` does;
4. apply it exactly as ``hadeploy up --yes`` would (the same function, under the
   deployment lock): ``up`` never moves traffic that a failover moved, and neither does
   the reconciler (it never fails over or back);
5. record the outcome in ``<state>/<deployment>/reconcile.json`` (atomically) and audit it
   (operation ``reconcile``).

A revision already applied is not applied again unless ``plan`` shows changes (drift: then
it is re-applied and ``drift_seen`` recorded). A failed apply is retried with exponential
back-off by the loop (:func:`backoff`).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from hadeploy.errors import ExitCode, HadeployError
from hadeploy.state import StateDir, StateError, atomic_write, load_model, state_root, utc_now

if TYPE_CHECKING:
    from hadeploy.config import Deployment

CACHE_DIR = ".reconcile"  # under the state root; not a valid deployment name
RECORD = "reconcile.json"  # in the deployment's state directory
CONFIG_NAME = "hadeploy.yaml"
REF = "refs/hadeploy/reconcile"  # where the fetched branch head is kept in the cache
BACKOFF_CAP = 600.0  # seconds: the longest wait between retries of a failing apply
INTERVAL_MIN, INTERVAL_MAX = 5.0, 86400.0
FETCH_TIMEOUT = 300.0
GIT_TIMEOUT = 60.0
# The options of every git call: no hook runs, no helper transport (ext::), no fsmonitor.
SAFE_GIT = ["-c", "core.hooksPath=/dev/null", "-c", "protocol.ext.allow=never",
            "-c", "core.fsmonitor=false"]
# Variables that would point git at another repository than the one it is told about.
_GIT_ENV_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                 "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_COMMON_DIR",
                 "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT")
URL_SCHEMES = ("https", "http", "ssh", "git", "file", "git+ssh", "ssh+git")
_BRANCH_RE = re.compile(r"\A(?![-./])(?!.*(?:\.\.|//|@\{|\.lock(?:/|\Z)|/\.|[/.]\Z))"
                        r"[A-Za-z0-9._/+-]{1,200}\Z")
_SCP_RE = re.compile(r"\A(?:[A-Za-z0-9._~+-]+@)?(?:(?!-)[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[^/]?")
Action = Literal["applied", "drift", "noop", "failed", "refused"]
Stage = Literal["fetch", "verify", "config", "plan", "apply"]


def _bad(message: str, hint: str) -> HadeployError:
    return HadeployError(message, hint=hint, code=ExitCode.BAD_INPUT)


class WrongSource(HadeployError):
    """The branch cannot be fetched or has no hadeploy.yaml at --path: most likely a
    wrong option (ends a loop that never applied anything)."""


# --- what to follow ---------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """The repository, branch and directory a reconciler follows (validated)."""

    repo: str
    branch: str = "main"
    path: str = "."  # the directory of hadeploy.yaml in the repository, normalized
    require_signed: bool = False
    allowed_signers: Path | None = None

    @property
    def config_path(self) -> str:
        return CONFIG_NAME if self.path == "." else f"{self.path}/{CONFIG_NAME}"

    @property
    def key(self) -> str:
        """The cache directory's name: one per repository, branch and path."""
        text = f"{self.repo}\n{self.branch}\n{self.path}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self, revision: str | None = None) -> str:
        at = f"@{revision[:12]}" if revision else ""
        return f"{self.repo} {self.branch}{at}:{self.config_path}"


def make_source(repo: str | None, branch: str = "main", path: str = ".", *,
                require_signed: bool = False, allowed_signers: Path | None = None) -> Source:
    """Validate the command line's --repo, --branch, --path and signing options; every
    problem is a :class:`HadeployError` with exit code 2 naming the option and the fix."""
    if repo is None:
        raise _bad("--repo is required: the git repository that holds hadeploy.yaml",
                   "e.g. hadeploy reconcile --repo https://git.example.com/ops/app.git")
    signers = None
    if require_signed:
        if allowed_signers is None:
            raise _bad("--require-signed needs --allowed-signers FILE: the SSH public keys "
                       "allowed to sign the branch's commits",
                       "write one line per signer, '<email> <ssh public key>' (man "
                       "ssh-keygen, ALLOWED SIGNERS), and pass --allowed-signers FILE")
        signers = allowed_signers.expanduser().absolute()
        if not signers.is_file() or not os.access(signers, os.R_OK):
            what = "does not exist" if not signers.exists() else "is not a readable file"
            raise _bad(f"--allowed-signers {signers} {what}",
                       "pass the allowed signers file (lines '<email> <ssh public key>', "
                       "man ssh-keygen, ALLOWED SIGNERS)")
    elif allowed_signers is not None:
        raise _bad("--allowed-signers is only used with --require-signed",
                   "add --require-signed to refuse commits that are not signed by them")
    return Source(repo=check_repo(repo), branch=check_branch(branch), path=check_path(path),
                  require_signed=require_signed, allowed_signers=signers)


def check_repo(url: str) -> str:
    """A repository URL git may fetch: https, http, ssh, git or file URLs, scp-like
    ``user@host:path``, or a local path (made absolute). Refused: options (``-…``),
    helper transports (``ext::``), unknown schemes, whitespace, and credentials in the URL
    (they would be written to the audit log, the state and the unit file)."""
    hint = ("pass --repo as https://host/owner/repo.git, ssh://git@host/owner/repo.git, "
            "git@host:owner/repo.git or a local path")
    shown = url[:120]
    if not url or not url.isprintable() or any(c.isspace() for c in url) or len(url) > 2048:
        raise _bad(f"--repo {shown!r} is not a repository URL (empty, too long, or with "
                   "spaces or control characters)", hint)
    if url.startswith("-"):
        raise _bad(f"--repo {shown!r} starts with '-' (git would read it as an option)", hint)
    if "://" in url:
        return _check_url(url, hint)
    head = url.split("/", 1)[0]
    if "::" in head:
        raise _bad(f"--repo {shown!r} names a git remote helper transport, which may run "
                   "commands; only fetching from a repository is allowed", hint)
    if ":" in head and not url.startswith("/"):
        if not _SCP_RE.match(url):
            raise _bad(f"--repo {shown!r} is not a repository URL", hint)
        return url
    return str(Path(url).expanduser().absolute())


def _check_url(url: str, hint: str) -> str:
    try:
        parts = urlsplit(url)
        host, password = parts.hostname, parts.password
    except ValueError as exc:
        raise _bad(f"--repo {url[:120]!r} is not a valid URL ({exc})", hint) from None
    scheme = parts.scheme.lower()
    if scheme not in URL_SCHEMES:
        raise _bad(f"--repo {url[:120]!r}: scheme '{scheme[:20]}' is not supported",
                   f"use one of: {', '.join(URL_SCHEMES)}")
    if scheme != "file" and (not host or host.startswith("-")):
        raise _bad(f"--repo {url[:120]!r} names no host", hint)
    if password is not None:
        raise _bad("--repo carries a password or token, which would be written to the "
                   "audit log, the state directory and the systemd unit",
                   "drop it from the URL and give git the credential another way: a "
                   "credential helper (git config --global credential.helper store) or an "
                   "SSH key (ssh://git@host/owner/repo.git)")
    return url


def check_branch(branch: str) -> str:
    if not _BRANCH_RE.match(branch):
        raise _bad(f"--branch {branch[:80]!r} is not a branch name",
                   "name a branch as git does, e.g. --branch main or --branch "
                   "release/2026 (no spaces, '..', '~', '^', ':' or leading '-')")
    return branch


def check_path(path: str) -> str:
    """The directory of hadeploy.yaml in the repository: relative, inside it."""
    hint = ("pass --path as the repository directory that holds hadeploy.yaml, relative "
            "to its root, e.g. --path deploy/prod (default '.')")
    if not path.isprintable() or "\\" in path or len(path) > 1024:
        raise _bad(f"--path {path[:80]!r} is not a directory of the repository", hint)
    pure = PurePosixPath(path or ".")
    if pure.is_absolute() or ".." in pure.parts:
        raise _bad(f"--path {path[:80]!r} leaves the repository (absolute or '..')", hint)
    return str(pure)


def check_interval(value: float) -> float:
    if not math.isfinite(value) or not INTERVAL_MIN <= value <= INTERVAL_MAX:
        raise _bad(f"--interval {value!r} is not a number of seconds in "
                   f"[{INTERVAL_MIN:.0f}, {INTERVAL_MAX:.0f}]",
                   "pass e.g. --interval 60 (seconds between two checks of the branch)")
    return value


# --- git --------------------------------------------------------------------------------

def require_git() -> str:
    exe = shutil.which("git")
    if exe is None:
        raise HadeployError("git is not installed (not found in PATH)",
                            hint="install it: apt-get install -y git (or dnf install git)",
                            code=ExitCode.ENVIRONMENT)
    return exe


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_DROP}
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C", GIT_OPTIONAL_LOCKS="0")
    return env


def git(args: list[str], *, what: str, timeout: float = GIT_TIMEOUT,
        binary: bool = False) -> subprocess.CompletedProcess[Any]:
    """Run ``git`` with :data:`SAFE_GIT` in its own session (no terminal to prompt on;
    killed with its children after ``timeout``). Not checked: the caller reads the code."""
    cmd = ["git", *SAFE_GIT, *args]
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=_git_env(),
                                start_new_session=True)
    except FileNotFoundError:
        require_git()
        raise
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):  # a helper kept the pipes
            proc.communicate(timeout=5)
        raise HadeployError(f"git {what} did not finish within {timeout:.0f} s",
                            hint="check the network and that the repository answers "
                            "(git ls-remote <URL> runs the same connection by hand)",
                            code=ExitCode.ENVIRONMENT) from None
    return subprocess.CompletedProcess(cmd, proc.returncode,
                                       out if binary else out.decode(errors="replace"),
                                       err.decode(errors="replace"))


def _git_ok(args: list[str], *, what: str, timeout: float = GIT_TIMEOUT,
            binary: bool = False) -> Any:
    proc = git(args, what=what, timeout=timeout, binary=binary)
    if proc.returncode != 0:
        raise HadeployError(f"git {what} failed: {_tail(proc.stderr)}",
                            hint="the reconciler's cache may be damaged: remove it "
                            "(the next run fetches again)", code=ExitCode.ENVIRONMENT)
    return proc.stdout


def _tail(text: str, lines: int = 3, limit: int = 300) -> str:
    kept = [ln.strip() for ln in text.strip().splitlines() if ln.strip()][-lines:]
    joined = " / ".join(kept) or "no message"
    return joined if len(joined) <= limit else joined[:limit - 1] + "…"


# --- the record -------------------------------------------------------------------------

class ReconcileRecord(BaseModel):
    """``<state>/<deployment>/reconcile.json``: what the reconciler last did."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    repo: str
    branch: str
    path: str
    revision: str | None = None  # the revision last applied successfully (in sync with)
    applied_at: str | None = None  # when it was last applied (a drift re-apply included)
    result: Literal["ok", "failed", "refused"]  # the last attempt's outcome
    error: str | None = None  # why it failed or was refused
    stage: Stage | None = None  # where the last attempt failed (None: it did not)
    attempts: int = Field(default=0, ge=0)  # attempts at `head` for this result
    head: str | None = None  # the branch head of the last attempt (== revision when in sync)
    drift_seen: bool = False  # `revision` drifted since it was applied, and was re-applied
    drift_at: str | None = None
    checked_at: str  # the last check, also when there was nothing to do


def read_record(state: StateDir) -> ReconcileRecord | None:
    """The deployment's reconcile.json, or None; a file that cannot be trusted is a
    :class:`~hadeploy.state.StateError`."""
    return load_model(state.file(RECORD), ReconcileRecord,
                      hint="remove it; the next 'hadeploy reconcile' applies the branch "
                      "head and writes it again")


@dataclass
class Outcome:
    """One iteration: what was done, and the exit code ``--once`` ends with."""

    action: Action
    code: ExitCode = ExitCode.OK
    revision: str | None = None  # the branch head
    deployment: str | None = None
    stage: Stage = "fetch"
    error: str | None = None
    hint: str | None = None
    changes: list[str] = field(default_factory=list)
    report: dict[str, Any] | None = None  # up's report (its --json document)
    attempts: int = 0
    drift_seen: bool = False
    signed_by: str | None = None
    seconds: float = 0.0
    new: bool = True  # False: the same refusal as the previous check (not audited again)
    wrong_source: bool = False  # a WrongSource failure

    def to_dict(self, source: Source) -> dict[str, Any]:
        return {"repo": source.repo, "branch": source.branch, "path": source.path,
                "deployment": self.deployment, "revision": self.revision,
                "action": self.action, "result": _RESULT[self.action],
                "exit_code": int(self.code), "stage": self.stage, "error": self.error,
                "hint": self.hint, "attempts": self.attempts, "drift_seen": self.drift_seen,
                "signed_by": self.signed_by, "changes": self.changes, "up": self.report,
                "seconds": round(self.seconds, 3)}


_RESULT = {"applied": "ok", "drift": "ok", "noop": "ok", "failed": "failed",
           "refused": "refused"}


def backoff(interval: float, failures: int, cap: float = BACKOFF_CAP) -> float:
    """Seconds until the next check after ``failures`` failed iterations in a row:
    ``interval``, doubled with each further failure, at most ``max(cap, interval)``."""
    if failures <= 0:
        return interval
    return min(interval * 2.0 ** min(failures - 1, 40), max(cap, interval))


# --- applying ---------------------------------------------------------------------------

def plan_changes(dep: Deployment, state: StateDir) -> list[str]:
    """What ``hadeploy plan`` lists for ``dep`` (read-only, no lock)."""
    from hadeploy import targets

    return [str(c) for c in targets.plan(targets.for_deployment(dep, state)).changes]


def apply_config(dep: Deployment, state: StateDir, *, summary: bool = True) -> dict[str, Any]:
    """Apply ``dep`` exactly as ``hadeploy up --yes`` does (the same function: under the
    deployment lock, progress on stderr); ``up``'s JSON report. ``summary``: also print
    up's summary on stderr."""
    from hadeploy.commands.up import apply, print_report

    report = apply(dep, state, yes=True)
    if summary:
        print_report(report)
    return report.to_dict()


Log = Callable[[str], None]


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr)

Apply = Callable[..., dict[str, Any]]
PlanFn = Callable[["Deployment", StateDir], list[str]]


@dataclass
class _Run:
    """What one iteration knows so far (for the record of a failure)."""

    stage: Stage = "fetch"
    revision: str | None = None
    state: StateDir | None = None
    prev: ReconcileRecord | None = None
    signed_by: str | None = None


class Reconciler:
    """Follows one :class:`Source` and applies it to the deployment its config names.

    ``apply``/``plan`` default to :func:`apply_config` and :func:`plan_changes` (looked up
    when called, so that tests may replace them)."""

    def __init__(self, source: Source, root: Path | None = None, *, log: Log = _stderr,
                 apply: Apply | None = None, plan: PlanFn | None = None,
                 summary: bool = True) -> None:
        self.source = source
        self.root = state_root(root)
        self.cache = self.root / CACHE_DIR / source.key
        self.bare = self.cache / "repo.git"
        self.log = log
        self._apply, self._plan, self.summary = apply, plan, summary
        self._held = False
        self._last_refused: str | None = None

    # -- entry points -------------------------------------------------------------------

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """The reconciler's own lock: one reconciler per repository, branch and path
        (exit 4 for a second one). The deployment lock is taken by each apply."""
        if self._held:
            yield
            return
        with StateDir(self.cache).lock(
                "reconcile", holder_hint="one reconciler per repository, branch and path: "
                "stop the other one (systemctl stop hadeploy-reconcile-…), or wait"):
            self._held = True
            try:
                yield
            finally:
                self._held = False

    def once(self) -> Outcome:
        with self.hold():
            return self.iterate()

    def loop(self, stop: threading.Event, interval: float, *,
             wait: Callable[[float], bool] | None = None,
             on_outcome: Callable[[Outcome], None] | None = None) -> Outcome | None:
        """Check every ``interval`` seconds until ``stop`` is set (between iterations);
        failures back off (:func:`backoff`). Returns the outcome that ended the loop, or
        None: when this reconciler never applied anything and its first check cannot
        fetch the branch or find hadeploy.yaml at --path (exit 2 or 6: most likely a
        wrong option), it stops there; every later failure is retried."""
        pause = wait or stop.wait
        failures = 0
        with self.hold():
            first = self._known_state() is None
            while not stop.is_set():
                outcome = self.iterate()
                if on_outcome is not None:
                    on_outcome(outcome)
                if first and outcome.wrong_source:
                    return outcome
                first = False
                failures = failures + 1 if outcome.action == "failed" else 0
                if pause(backoff(interval, failures)):
                    break
        return None

    def iterate(self) -> Outcome:
        """One check: fetch, verify, read, plan or apply, record. Never raises a
        :class:`HadeployError`: a failure is an outcome (recorded and audited)."""
        start = time.monotonic()
        run = _Run()
        try:
            outcome = self._step(run)
        except HadeployError as exc:
            outcome = self._failed(run, exc.message, exc.hint, exc.code)
            outcome.wrong_source = isinstance(exc, WrongSource)
        except Exception as exc:  # a bug or an unexpected OS error: recorded, then raised
            self._failed(run, f"{type(exc).__name__}: {exc}"[:500], None, ExitCode.FAILED)
            raise
        outcome.seconds = time.monotonic() - start
        return outcome

    # -- one iteration ------------------------------------------------------------------

    def _step(self, run: _Run) -> Outcome:
        run.state = self._known_state()
        run.revision = self.fetch()
        if self.source.require_signed:
            run.stage = "verify"
            good, text = self.verify(run.revision)
            if not good:
                return self._refused(run, text)
            run.signed_by = text
        run.stage = "config"
        dep = self.load_config(run.revision)
        run.state = StateDir.for_deployment(dep.name, self.root)
        self._remember(dep.name)
        run.prev = self._previous(run.state)
        prev, head = run.prev, run.revision
        drift = False
        if prev is not None and prev.revision == head and (
                prev.result == "ok" or prev.stage != "apply"):  # not a failed apply: check
            run.stage = "plan"
            changes = (self._plan or plan_changes)(dep, run.state)
            if not changes:
                self._save(run, result="ok", error=None, stage=None,
                           attempts=prev.attempts if prev.result == "ok" else 1)
                return Outcome("noop", revision=head, deployment=dep.name, stage="plan",
                               drift_seen=prev.drift_seen, signed_by=run.signed_by)
            drift = True
            self.log(f"{self.source.describe(head)} is applied, but the deployment drifted: "
                     f"{len(changes)} change(s); applying it again")
        return self._apply_revision(run, dep, drift)

    def _apply_revision(self, run: _Run, dep: Deployment, drift: bool) -> Outcome:
        assert run.state is not None and run.revision is not None
        prev, head = run.prev, run.revision
        attempts = self._attempts(run, "failed") + 1
        run.stage = "apply"
        if not drift:
            self.log(f"applying {self.source.describe(head)} to '{dep.name}'"
                     + (f" (attempt {attempts})" if attempts > 1 else ""))
        apply = self._apply or apply_config
        report = apply(dep, run.state, summary=self.summary)
        now = utc_now()
        same = prev is not None and prev.revision == head
        drift_seen = drift or (same and prev is not None and prev.drift_seen)
        drift_at = now if drift else (prev.drift_at if same and prev is not None else None)
        self._save(run, revision=head, applied_at=now, result="ok", error=None, stage=None,
                   attempts=attempts, drift_seen=drift_seen, drift_at=drift_at)
        run.state.audit("reconcile", **self._fields(head), result="ok",
                        drift=drift, attempts=attempts, changed=report.get("changed"),
                        signed_by=run.signed_by)
        return Outcome("drift" if drift else "applied", revision=head, deployment=dep.name,
                       stage="apply", report=report, attempts=attempts,
                       drift_seen=drift_seen, signed_by=run.signed_by,
                       changes=[str(c) for c in report.get("plan") or []])

    def _refused(self, run: _Run, reason: str) -> Outcome:
        state = run.state
        prev = self._previous(state) if state is not None else None
        run.prev = prev
        name = state.path.name if state is not None else None
        if self._last_refused == run.revision or (
                prev is not None and prev.result == "refused" and prev.head == run.revision):
            if state is not None and prev is not None:
                self._save(run, result="refused", attempts=prev.attempts)
            return Outcome("refused", ExitCode.REFUSED, run.revision, name, "verify",
                           error=reason, hint=_SIGN_HINT, attempts=1, new=False)
        self._last_refused = run.revision
        if state is not None:
            self._save(run, result="refused", error=reason, stage="verify", attempts=1,
                       head=run.revision)
        (state or StateDir(self.cache)).audit("reconcile", **self._fields(run.revision),
                                              result="refused", reason=reason)
        return Outcome("refused", ExitCode.REFUSED, run.revision, name, "verify",
                       error=reason, hint=_SIGN_HINT, attempts=1)

    def _failed(self, run: _Run, message: str, hint: str | None, code: ExitCode) -> Outcome:
        """Record and audit a failure at any stage, where the deployment is known (else in
        the reconciler's cache directory, ``<cache>/audit.jsonl``)."""
        state = run.state
        with contextlib.suppress(HadeployError):
            if state is not None and run.prev is None:
                run.prev = self._previous(state)
        attempts = self._attempts(run, "failed") + 1
        with contextlib.suppress(HadeployError):  # the failure to report is the first one
            if state is not None:
                self._save(run, result="failed", error=message, stage=run.stage,
                           attempts=attempts,
                           head=run.revision or (run.prev.head if run.prev else None))
            (state or StateDir(self.cache)).audit(
                "reconcile", **self._fields(run.revision), result="failed",
                stage=run.stage, error=message[:500], exit_code=int(code), attempts=attempts)
        return Outcome("failed", code, run.revision, state.path.name if state else None,
                       run.stage, error=message, hint=hint, attempts=attempts,
                       signed_by=run.signed_by)

    # -- the steps ----------------------------------------------------------------------

    def fetch(self) -> str:
        """Fetch the branch into the cache's bare repository; its head commit."""
        StateDir(self.cache).ensure()
        if not (self.bare / "HEAD").is_file():
            if self.bare.exists():
                shutil.rmtree(self.bare)
            _git_ok(["init", "--bare", "--quiet", "--template=", str(self.bare)],
                    what="init (the reconciler's cache)")
        src = self.source
        proc = git(["--git-dir", str(self.bare), "fetch", "--quiet", "--no-tags",
                    "--no-write-fetch-head", "--no-recurse-submodules", "--", src.repo,
                    f"+refs/heads/{src.branch}:{REF}"], what="fetch", timeout=FETCH_TIMEOUT)
        if proc.returncode != 0:
            if "couldn't find remote ref" in proc.stderr:
                raise WrongSource(f"branch '{src.branch}' does not exist in {src.repo}",
                                  hint=f"check --branch; the repository's branches: git "
                                  f"ls-remote --heads {src.repo}", code=ExitCode.BAD_INPUT)
            raise WrongSource(f"cannot fetch branch '{src.branch}' of {src.repo}: "
                                f"{_tail(proc.stderr)}",
                                hint="check the URL, the network, and the credentials of the "
                                f"user running hadeploy (try: git ls-remote {src.repo})",
                                code=ExitCode.ENVIRONMENT)
        out = _git_ok(["--git-dir", str(self.bare), "rev-parse", "--verify", "--quiet",
                       f"{REF}^{{commit}}"], what="rev-parse")
        return str(out).strip()

    def verify(self, revision: str) -> tuple[bool, str]:
        """``git verify-commit`` of ``revision``: (True, who signed it) or (False, why)."""
        signers = self.source.allowed_signers
        if signers is None or not signers.is_file():
            raise _bad(f"--allowed-signers {signers} does not exist (any more)",
                       "restore the allowed signers file; nothing is applied without it")
        proc = git(["-c", "gpg.format=ssh", "-c", f"gpg.ssh.allowedSignersFile={signers}",
                    "-c", "gpg.minTrustLevel=fully", "--git-dir", str(self.bare),
                    "verify-commit", revision], what="verify-commit")
        text = (proc.stderr + proc.stdout).strip()
        if proc.returncode == 0:
            found = re.search(r'Good "git" signature for (\S+)|Good signature from "([^"]+)"',
                              text)
            return True, (found.group(1) or found.group(2)) if found else _tail(text, 1)
        if "ssh-keygen" in text and ("No such file" in text or "cannot run" in text):
            raise HadeployError(f"git cannot verify signatures: {_tail(text)}",
                                hint="install OpenSSH's ssh-keygen (apt-get install -y "
                                "openssh-client)", code=ExitCode.ENVIRONMENT)
        short = revision[:12]
        if not text:
            return False, f"commit {short} is not signed"
        if "No principal matched" in text or "No public key" in text:
            return False, (f"commit {short} is signed by a key that {signers} does not "
                           f"allow ({_tail(text)})")
        return False, f"the signature of commit {short} does not verify ({_tail(text)})"

    def load_config(self, revision: str) -> Deployment:
        """``<path>/hadeploy.yaml`` of ``revision``, validated (exit 2 with its place)."""
        from hadeploy import config as cfg
        from hadeploy.yamlload import MAX_BYTES, load_text

        spec, where = self.source.config_path, self.source.describe(revision)
        out = str(_git_ok(["--git-dir", str(self.bare), "ls-tree", "-l", "-z", revision,
                           "--", spec], what="ls-tree"))
        if not out:
            raise self._missing_config(revision)
        mode, kind, sha, size = out.split("\t", 1)[0].split()
        if kind != "blob" or mode == "120000":
            what = "a symbolic link" if mode == "120000" else f"a {kind}, not a file"
            raise _bad(f"{where} is {what}", "commit hadeploy.yaml itself as a file there")
        if int(size) > MAX_BYTES:
            raise _bad(f"{where} is {size} bytes (more than {MAX_BYTES // 1024} KiB)",
                       "a hadeploy.yaml is a few kilobytes: check --path and the file")
        blob = _git_ok(["--git-dir", str(self.bare), "cat-file", "blob", sha],
                       what="cat-file", binary=True)
        try:
            text = bytes(blob).decode("utf-8")
        except UnicodeDecodeError:
            raise _bad(f"{where} is not UTF-8 text", "save it as UTF-8 and commit it"
                       ) from None
        atomic_write(self.cache / CONFIG_NAME, text)  # what was last read, for humans
        return cfg.parse(load_text(text, where), where)

    def _missing_config(self, revision: str) -> HadeployError:
        listing = git(["--git-dir", str(self.bare), "ls-tree", "-r", "--name-only", "-z",
                       revision], what="ls-tree")
        found = [p for p in listing.stdout.split("\0")
                 if PurePosixPath(p).name == CONFIG_NAME][:5]
        there = (f"; that revision has: {', '.join(found)}" if found
                 else "; that revision has no hadeploy.yaml at all (write one with "
                 "'hadeploy init' and commit it)")
        return WrongSource(f"{self.source.config_path} does not exist in {self.source.repo} "
                           f"branch '{self.source.branch}' (revision {revision[:12]})",
                           hint="pass --path naming the repository directory that holds "
                           "hadeploy.yaml" + there, code=ExitCode.BAD_INPUT)

    # -- state --------------------------------------------------------------------------

    def _fields(self, revision: str | None) -> dict[str, Any]:
        return {"repo": self.source.repo, "branch": self.source.branch,
                "path": self.source.path, "revision": revision}

    def _known_state(self) -> StateDir | None:
        """The deployment this reconciler last applied (named by a verified config)."""
        with contextlib.suppress(HadeployError):
            known = load_model(self.cache / "source.json", _Remembered, hint="")
            if known is not None:
                return StateDir.for_deployment(known.deployment, self.root)
        return None

    def _remember(self, name: str) -> None:
        doc = _Remembered(repo=self.source.repo, branch=self.source.branch,
                          path=self.source.path, deployment=name)
        path = self.cache / "source.json"
        text = doc.model_dump_json(indent=2) + "\n"
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if path.is_file() and path.read_text() == text:
                return
        atomic_write(path, text)

    def _previous(self, state: StateDir) -> ReconcileRecord | None:
        """This source's record in ``state`` (a record of another source, or one that
        cannot be trusted, counts as none: the branch head is then applied again)."""
        try:
            prev = read_record(state)
        except StateError as exc:
            self.log(f"warning: {exc.message}; it is rewritten")
            return None
        src = self.source
        if prev is None or (prev.repo, prev.branch, prev.path) != (src.repo, src.branch,
                                                                    src.path):
            return None
        return prev

    def _attempts(self, run: _Run, result: str) -> int:
        prev = run.prev
        if prev is not None and prev.result == result and prev.head == (run.revision
                                                                         or prev.head):
            return prev.attempts
        return 0

    def _save(self, run: _Run, **fields: Any) -> None:
        assert run.state is not None
        base: dict[str, Any] = run.prev.model_dump() if run.prev is not None else {}
        base.update(repo=self.source.repo, branch=self.source.branch, path=self.source.path,
                    head=run.revision or base.get("head"), checked_at=utc_now())
        base.update(fields)
        run.state.save_model(RECORD, ReconcileRecord.model_validate(base))


class _Remembered(BaseModel):
    """``<cache>/source.json``: the deployment the source's config named last."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repo: str
    branch: str
    path: str
    deployment: str


_SIGN_HINT = ("sign the commit with a key of the allowed signers file (git commit -S with "
              "gpg.format=ssh and user.signingkey) and push it; nothing of this revision "
              "was applied")


# --- the systemd unit -------------------------------------------------------------------

_PLAIN_ARG = re.compile(r"\A[A-Za-z0-9_@%+=:,./-]+\Z")


def _unit_arg(arg: str, *, dollars: bool = True) -> str:
    """One word of an ExecStart= (``dollars``: '$' is expanded there) or of a setting
    that takes a list (Environment=, ReadWritePaths=) for systemd: '%' escaped, double
    quoted when needed (systemd splits on whitespace)."""
    text = arg.replace("%", "%%")
    if _PLAIN_ARG.match(arg):
        return text
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + (text.replace("$", "$$") if dollars else text) + '"'


def unit_name(source: Source) -> str:
    base = re.sub(r"\.git\Z", "", source.repo.rstrip("/").rsplit("/", 1)[-1].split(":")[-1])
    parts = [base] + ([source.path] if source.path != "." else [])
    slug = re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")[:48].strip("-")
    return f"hadeploy-reconcile-{slug}.service" if slug else "hadeploy-reconcile.service"


def command_line(source: Source, interval: float, *, json_out: bool = False) -> list[str]:
    """The command the unit runs: absolute paths, every option explicit."""
    import sys

    exe = Path(sys.argv[0]).resolve()
    program = [str(exe)] if exe.name == "hadeploy" else [sys.executable, "-m", "hadeploy"]
    args = [*program, "reconcile", "--repo", source.repo, "--branch", source.branch,
            "--path", source.path, "--interval", f"{interval:g}"]
    if source.require_signed and source.allowed_signers is not None:
        args += ["--require-signed", "--allowed-signers", str(source.allowed_signers)]
    return args + (["--json"] if json_out else [])


def unit(source: Source, root: Path, *, interval: float, json_out: bool = False,
         workdir: Path | None = None) -> str:
    """A systemd service that runs the reconciler loop (``--print-unit``)."""
    name = unit_name(source)
    root = root.absolute()
    workdir = (workdir or Path.cwd()).absolute()
    exec_start = " ".join(_unit_arg(a) for a in command_line(source, interval,
                                                             json_out=json_out))
    home = Path.home()
    writable = " ".join(_unit_arg(p, dollars=False) for p in (
        str(root), f"-{home}", "-/var/lib/containers", "-/var/lib/cni", "-/etc/cni",
        "-/etc/containers", "-/run", "-/var/tmp"))
    signed = (f"only commits signed by a key of {source.allowed_signers}"
              if source.require_signed else "unsigned commits accepted")
    return f"""\
# /etc/systemd/system/{name}
# Pulls {source.describe()} every {interval:g} s
# and applies it like 'hadeploy up --yes' ({signed}).
# Install: save as the path above, then
#   systemctl daemon-reload && systemctl enable --now {name}
# Follow it: journalctl -fu {name}; 'hadeploy status' shows the synced revision.
[Unit]
Description=hadeploy reconcile {source.describe().replace('%', '%%')}
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec=0

[Service]
Type=simple
ExecStart={exec_start}
WorkingDirectory={str(workdir).replace('%', '%%')}
Environment={_unit_arg(f"HADEPLOY_STATE_DIR={root}", dollars=False)}
Environment=GIT_TERMINAL_PROMPT=0
# Exit 2 is a wrong option or config: restarting does not help. Anything else (the
# repository unreachable at boot, a crash) restarts after 30 s.
Restart=on-failure
RestartSec=30
RestartPreventExitStatus=2
# SIGTERM to the reconciler only: it stops between two iterations, so an apply in progress
# (Ansible, podman, Pulumi) finishes first; it is killed after TimeoutStopSec.
KillMode=mixed
TimeoutStopSec=30min
# Hardening. Writable: the state directory, HOME (Ansible's and Pulumi's caches) and, for
# the lab target, podman's storage and runtime directories (drop them for aws).
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={writable}
PrivateTmp=yes
UMask=0077
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes

[Install]
WantedBy=multi-user.target
"""
