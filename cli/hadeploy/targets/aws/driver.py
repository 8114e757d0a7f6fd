"""The AWS target: one Pulumi stack per region plus a global DNS stack, driven by the
Automation API (inline programs from :mod:`hadeploy.infra`).

- ``up``: regional stacks concurrently (at most ``aws.parallel`` at once), then the
  global stack. A failed region never stops the others; the global stack is built over
  every region that has outputs, and only if the primary has.
- ``preview``: only stacks that exist (``select``, never ``create``): a plan creates no
  stack and writes no stack configuration.
- Inline programs get their inputs from the driver directly (a closure). The one value
  kept as stack configuration is the application secret, ``hadeploy:appSecret``: a Pulumi
  secret (encrypted with the stack's secrets provider) in ``Pulumi.<stack>.yaml``, handed
  to ``pulumi config set --secret`` on stdin, never on a command line
  (``/proc/<pid>/cmdline`` is world-readable).
- Where things live (:class:`PulumiState`, :func:`pulumi_state`): the stacks' state in
  ``aws.backend_url`` (else ``PULUMI_BACKEND_URL``, else ``file://<state root>``: never the
  backend ``pulumi login`` chose), passed as ``PULUMI_BACKEND_URL``, which outranks every
  other source; their configuration files in ``$HADEPLOY_STACKS_DIR`` (else ``./stacks``)
  ``/regional`` and ``/global``, so they persist between runs and can be committed.
- First deployment: replication needs the peer's bucket/file system to exist, so regions
  whose peer did not exist yet get a second ``up`` once it does (no stack references).
- ``destroy``: the global stack first (DNS stops pointing at regions); then every regional
  stack is updated once for its teardown (replication to the peer dropped, so no EFS pair
  binds two stacks; backups kept on destroy, or emptied with ``delete_backups``), then the
  regions are destroyed in waves: every other region, then the region whose stack owns the
  global database, then the region holding its writer (Aurora refuses to delete a writer
  while other members exist).

Pulumi is behind the small :class:`Workspace` protocol (:class:`PulumiWorkspace` is the
real one), so the orchestration is tested without the Pulumi CLI. pulumi is imported only
inside functions: the CLI's help/status/failover never load it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hadeploy.config import AwsSettings, Deployment, Target, backend_url_problem
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.infra.settings import (
    GLOBAL_PROJECT,
    REGIONAL_PROJECT,
    Teardown,
    check_deployment,
    efs_mount_source,
    plan_region,
    settings_of,
    stack_ref,
)
from hadeploy.targets.aws.ops import OperateDoc, RegionOperate
from hadeploy.topology import (
    DnsEndpoint,
    Endpoint,
    Host,
    HostKind,
    RegionData,
    RegionTopology,
    SharedStorage,
    StorageType,
    Topology,
)

POSTGRES_PORT = 5432  # Aurora PostgreSQL (hadeploy.infra.database; pulumi is not imported)

Log = Callable[[str], None]
HostLister = Callable[[str, str, str, str], list[Host]]  # (region, aws_region, key, value)
GLOBAL_AWS_REGION = "us-east-1"
SECRET_ENV = "HADEPLOY_APP_SECRET"  # noqa: S105 - the variable's name, not a secret
SECRET_KEY = "hadeploy:appSecret"  # noqa: S105 - the config key (read_inputs reads it too)
PLAN_SECRET = "not-generated-yet"  # noqa: S105 - what a plan previews with before any up
BACKEND_ENV = "PULUMI_BACKEND_URL"
STACKS_DIR_ENV = "HADEPLOY_STACKS_DIR"
PASSPHRASE_ENV = "PULUMI_CONFIG_PASSPHRASE"  # noqa: S105 - a variable name
PASSPHRASE_FILE_ENV = "PULUMI_CONFIG_PASSPHRASE_FILE"  # noqa: S105 - a variable name
PROJECT_DIRS = {REGIONAL_PROJECT: "regional", GLOBAL_PROJECT: "global"}
DEFAULT_BACKEND = "default: the state root"
CREDENTIAL_ENV_SETS = (
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), ("AWS_PROFILE",),
    ("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"), ("AWS_CONTAINER_CREDENTIALS_FULL_URI",),
    ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",))


# --- the workspace seam --------------------------------------------------------------------

@dataclass(frozen=True)
class StackSpec:
    project: str
    name: str
    program: Callable[[], None]
    inputs: Mapping[str, str]  # what the program is built from, shown and compared; no secret
    region: str | None = None  # None: the global stack
    # Secret stack configuration an update stores first (key -> value, as Pulumi secrets);
    # called only by an update, so a plan never generates a secret.
    secrets: Callable[[], Mapping[str, str]] | None = None


class StackFailed(Exception):
    """A stack operation ran and failed (the message is the useful tail of Pulumi's)."""


class Workspace(Protocol):
    def check(self) -> str:
        """The backend identity; raises HadeployError (ENVIRONMENT) when the Pulumi CLI is
        missing or the state backend is unreachable."""

    def outputs(self, spec: StackSpec) -> dict[str, Any] | None:
        """The stack's current outputs, or None when the stack does not exist."""

    def config_secret(self, spec: StackSpec, key: str) -> str | None:
        """The secret ``key`` of the stack's configuration, decrypted; None when the stack or
        the key does not exist. Reads only."""

    def preview(self, spec: StackSpec) -> dict[str, int]:
        """Preview an existing stack (select, never create): {operation: count}."""

    def up(self, spec: StackSpec) -> dict[str, Any]:
        """Create or select the stack, store ``spec.secrets`` in its configuration, and
        update it: its outputs."""

    def destroy(self, spec: StackSpec) -> bool:
        """Destroy and remove the stack; False when it did not exist."""


# --- results -------------------------------------------------------------------------------

@dataclass
class StackResult:
    stack: str
    region: str | None
    ok: bool
    outputs: dict[str, Any] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)
    error: str = ""
    passes: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "region": self.region, "ok": self.ok,
                "changes": self.changes, "error": self.error, "passes": self.passes}


@dataclass
class AwsReport:
    operation: str
    stacks: list[StackResult] = field(default_factory=list)
    topology: Topology | None = None
    notes: list[str] = field(default_factory=list)
    operate: OperateDoc | None = None  # what status/failover/watch need (aws.json)

    @property
    def failed(self) -> dict[str, str]:
        return {r.stack: r.error for r in self.stacks if not r.ok}

    def raise_for_failures(self) -> None:
        if self.failed:
            lines = [f"{stack}: {error}" for stack, error in self.failed.items()]
            raise HadeployError(
                f"aws {self.operation}: {len(lines)} stack(s) failed:\n  " + "\n  ".join(lines),
                hint="fix the cause and re-run (every stack converges on its own; the "
                "others were completed)", code=ExitCode.FAILED)

    def to_dict(self) -> dict[str, Any]:
        return {"operation": self.operation, "stacks": [s.to_dict() for s in self.stacks],
                "failed": self.failed, "notes": self.notes,
                "topology": self.topology.to_dict() if self.topology else None}


# --- preflight -----------------------------------------------------------------------------

def aws_credentials_available(env: Mapping[str, str]) -> bool:
    """Credentials from the environment, a shared config file, or boto3's chain."""
    if any(all(env.get(k) for k in keys) for keys in CREDENTIAL_ENV_SETS):
        return True
    try:
        import boto3  # type: ignore[import-not-found,import-untyped]
    except ImportError:
        home = Path(env.get("HOME", "~")).expanduser()
        files = [env.get("AWS_SHARED_CREDENTIALS_FILE"), env.get("AWS_CONFIG_FILE"),
                 str(home / ".aws" / "credentials"), str(home / ".aws" / "config")]
        return any(f and Path(f).is_file() for f in files)
    return boto3.session.Session().get_credentials() is not None


def missing_cli_error() -> HadeployError:
    return HadeployError(
        "the Pulumi CLI ('pulumi') is not installed or not on PATH",
        hint="install it (https://www.pulumi.com/docs/install/, e.g. 'curl -fsSL "
        "https://get.pulumi.com | sh') and make sure 'pulumi version' works",
        code=ExitCode.ENVIRONMENT)


def missing_credentials_error() -> HadeployError:
    return HadeployError(
        "no AWS credentials found (environment, AWS_PROFILE, ~/.aws, or instance role)",
        hint="run 'aws configure' or 'aws sso login --profile P' and export AWS_PROFILE=P, or "
        "export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", code=ExitCode.ENVIRONMENT)


def backend_error(detail: str, where: str) -> HadeployError:
    if "passphrase" in detail.lower():
        return HadeployError(
            f"Pulumi cannot decrypt stack secrets on {where}: {detail}",
            hint="export PULUMI_CONFIG_PASSPHRASE (or _FILE) with the passphrase the stacks "
            "were created with, or set aws.secrets_provider to a KMS key such as "
            "'awskms://alias/hadeploy?region=us-east-1'", code=ExitCode.ENVIRONMENT)
    return HadeployError(
        f"the Pulumi state backend ({where}) is not reachable: {detail}",
        hint="check aws.backend_url (or PULUMI_BACKEND_URL), the credentials it needs (AWS "
        "for s3://, PULUMI_ACCESS_TOKEN for Pulumi Cloud) and network access to it",
        code=ExitCode.ENVIRONMENT)


# --- where the stacks' state and configuration live ------------------------------------

@dataclass(frozen=True)
class PulumiState:
    """Where a deployment's stacks keep their state (the backend) and their configuration
    files, and what encrypts their secrets. Resolved once per run by :func:`pulumi_state`."""

    backend_url: str
    source: str  # "aws.backend_url", "PULUMI_BACKEND_URL" or DEFAULT_BACKEND
    stacks_dir: Path  # <stacks_dir>/regional|global/Pulumi.<stack>.yaml
    secrets_provider: str | None  # for 'pulumi stack init'; None: Pulumi Cloud's own

    @property
    def local_dir(self) -> Path | None:
        """The directory of a ``file://`` backend (Pulumi keeps ``.pulumi/`` in it)."""
        if not self.backend_url.startswith("file://"):
            return None
        return Path(self.backend_url[len("file://"):]).expanduser()

    def env(self) -> dict[str, str]:
        """For every Pulumi command: the backend, above ``pulumi login`` and Pulumi.yaml."""
        return {BACKEND_ENV: self.backend_url}

    def config_dir(self, project: str) -> Path:
        return self.stacks_dir / PROJECT_DIRS.get(project, project)

    def config_file(self, project: str, stack: str) -> Path:
        return self.config_dir(project) / f"Pulumi.{stack}.yaml"

    def describe(self) -> str:
        secrets_by = self.secrets_provider or "Pulumi Cloud's secrets provider"
        if self.secrets_provider == "passphrase":
            secrets_by = f"passphrase ({PASSPHRASE_ENV})"
        return (f"Pulumi state: {self.backend_url} ({self.source}); stack configuration: "
                f"{self.stacks_dir}/{{regional,global}}/Pulumi.<stack>.yaml; secrets "
                f"encrypted by {secrets_by}")


def stacks_root(env: Mapping[str, str], cwd: Path) -> Path:
    """Where the stack configuration files live: ``$HADEPLOY_STACKS_DIR``, else
    ``./stacks`` (relative to the current directory, like ./hadeploy.yaml)."""
    given = env.get(STACKS_DIR_ENV)
    path = Path(given) if given else Path("stacks")
    return path if path.is_absolute() else cwd / path


def pulumi_state(settings: AwsSettings, env: Mapping[str, str], *, state_root: Path,
                 cwd: Path) -> PulumiState:
    """The backend: ``aws.backend_url``, else ``PULUMI_BACKEND_URL``, else
    ``file://<state root>`` (the state in ``<state root>/.pulumi/``, next to the
    deployments' state directories; like ``.reconcile``, not a deployment name). The
    backend of ``pulumi login`` is never used: where the state lives is always one of the
    three, and ``plan`` says which. Secrets: ``aws.secrets_provider``; null (or ``default``)
    means the passphrase on s3/gs/azblob/file backends, the service's own on Pulumi Cloud."""
    from hadeploy.yamlload import clip

    from_env = env.get(BACKEND_ENV) or None
    if settings.backend_url:
        if from_env and from_env != settings.backend_url:
            raise HadeployError(
                f"aws.backend_url is {clip(settings.backend_url)} but {BACKEND_ENV} is "
                f"{clip(from_env)}: the stacks' state would be looked for in one of two places",
                hint=f"unset {BACKEND_ENV} (aws.backend_url names the state), or make them "
                "equal", code=ExitCode.BAD_INPUT)
        url, source = settings.backend_url, "aws.backend_url"
    elif from_env:
        problem = backend_url_problem(from_env)
        if problem is not None:
            raise HadeployError(f"{BACKEND_ENV} {clip(from_env)} {problem[0]}",
                                hint=f"{problem[1]}; or unset it and set aws.backend_url",
                                code=ExitCode.BAD_INPUT)
        url, source = from_env, BACKEND_ENV
    else:
        url, source = f"file://{state_root.absolute()}", DEFAULT_BACKEND
    provider = settings.secrets_provider
    if provider in (None, "default"):
        provider = None if url.startswith("https://") else "passphrase"
    return PulumiState(url, source, stacks_root(env, cwd), provider)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no")


def check_state_env(state: PulumiState, env: Mapping[str, str], cwd: Path) -> None:
    """Refuse, before any Pulumi command, what would lose state or leave secrets
    unencrypted: in a pipeline (``CI`` set) the default backend inside the checkout (a
    pipeline throws its workspace away, and the stacks with it); a passphrase provider
    without a passphrase (or with an empty one, which protects nothing)."""
    local = state.local_dir
    if state.source == DEFAULT_BACKEND and _truthy(env.get("CI")) and local is not None \
            and local.absolute().is_relative_to(cwd.absolute()):
        raise HadeployError(
            f"in a pipeline (CI is set) the Pulumi state would be kept in {local}, inside "
            "this checkout, which the pipeline does not keep: the next run would not find "
            "the stacks", hint="set aws.backend_url (e.g. s3://<bucket>/hadeploy), or "
            f"export {BACKEND_ENV}, or point HADEPLOY_STATE_DIR at a directory the runner "
            "keeps (docs/gitops.md)", code=ExitCode.BAD_INPUT)
    if state.secrets_provider != "passphrase":
        return
    fix = (f"export {PASSPHRASE_ENV} (in a pipeline: a masked secret variable) or "
           f"{PASSPHRASE_FILE_ENV}, or set aws.secrets_provider to a KMS key such as "
           "'awskms://alias/hadeploy?region=us-east-1'")
    where = f"the stacks' secrets (on {state.backend_url}) are encrypted with a passphrase"
    if env.get(PASSPHRASE_FILE_ENV):
        if not Path(env[PASSPHRASE_FILE_ENV]).is_file():
            raise HadeployError(f"{where}, and {PASSPHRASE_FILE_ENV} names no file "
                                f"({env[PASSPHRASE_FILE_ENV][:200]})", hint=fix,
                                code=ExitCode.ENVIRONMENT)
        return
    if not env.get(PASSPHRASE_ENV):
        state_of = "empty" if PASSPHRASE_ENV in env else "not set"
        raise HadeployError(f"{where}, and {PASSPHRASE_ENV} is {state_of}", hint=fix,
                            code=ExitCode.ENVIRONMENT)


def read_stack_file(path: Path) -> dict[str, Any] | None:
    """A stack configuration file (``Pulumi.<stack>.yaml``); None when there is none."""
    from hadeploy.yamlload import load_file

    if not path.exists():
        return None
    doc = load_file(path)
    if doc is None:
        return {}
    if not isinstance(doc, dict) or not isinstance(doc.get("config") or {}, dict):
        raise HadeployError(f"{path}: is not a Pulumi stack configuration (a mapping with "
                            "'config:')", hint="restore it from version control, or move it "
                            "away (its secrets are lost then)", code=ExitCode.BAD_INPUT)
    return doc


def stack_file_secret(path: Path, key: str) -> str | None:
    """The ciphertext of secret ``key`` in a stack configuration file; None when absent.
    A plain-text value is refused: hadeploy's secrets are only ever stored encrypted."""
    doc = read_stack_file(path)
    value = ((doc or {}).get("config") or {}).get(key)
    if value is None:
        return None
    if isinstance(value, dict) and isinstance(value.get("secure"), str) and value["secure"]:
        return str(value["secure"])
    raise HadeployError(f"{path}: {key} is stored in plain text, not as a Pulumi secret",
                        hint="delete the line and rotate the secret (whoever saw the file "
                        "knows it): set HADEPLOY_APP_SECRET for one 'hadeploy up', which "
                        "stores it encrypted ('secure: ...')", code=ExitCode.BAD_INPUT)


def recorded_provider(doc: Mapping[str, Any]) -> str | None:
    """The secrets provider a stack configuration file records: ``secretsprovider``, else
    ``passphrase`` when it holds an ``encryptionsalt``; None when it records none."""
    provider = doc.get("secretsprovider")
    if isinstance(provider, str) and provider:
        return provider
    return "passphrase" if doc.get("encryptionsalt") else None


def provider_problem(doc: Mapping[str, Any], wanted: str | None) -> str | None:
    """Why the secrets provider recorded in a stack's file is not the configured one (a
    stack keeps the provider it was created with; Pulumi would silently use that one)."""
    recorded = recorded_provider(doc)
    if recorded is None or wanted is None:
        return None
    if recorded.split("?")[0] == wanted.split("?")[0]:
        return None
    return f"its secrets are encrypted by {recorded}, but aws.secrets_provider means {wanted}"


def _tail(text: str, lines: int = 6) -> str:
    useful = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in useful if "error" in ln.lower()]
    return " | ".join((errors or useful)[-lines:]) or "no output"


# --- the real workspace --------------------------------------------------------------------

class PulumiWorkspace:
    """:class:`Workspace` over ``pulumi.automation`` (inline programs, local CLI).

    Every operation runs in a fresh temporary project directory (removed afterwards) whose
    ``Pulumi.yaml`` names the project and, through ``stackConfigDir``, a link to the
    stack's configuration directory (:meth:`PulumiState.config_dir`): Pulumi reads and
    writes ``Pulumi.<stack>.yaml`` there, and nothing else lands in it. A fresh directory
    per operation also keeps concurrent stacks from sharing Pulumi's per-project workspace
    file. A read (outputs, preview, a secret) links the directory only when the stack's file
    exists: a plan writes nothing into it."""

    def __init__(self, settings: AwsSettings, env: Mapping[str, str] | None = None,
                 log: Log = print, *, state: PulumiState | None = None) -> None:
        self._settings = settings
        self._env = dict(env or {})
        self._log = log
        if state is None:
            from hadeploy.state import state_root

            state = pulumi_state(settings, self._env, state_root=state_root(), cwd=Path.cwd())
        self.state = state

    # -- plumbing --

    def _error(self, detail: str) -> HadeployError:
        return backend_error(detail, f"{self.state.backend_url} ({self.state.source})")

    def _options(self, work_dir: str) -> Any:
        from pulumi import automation as auto

        return auto.LocalWorkspaceOptions(
            work_dir=work_dir, secrets_provider=self.state.secrets_provider,
            env_vars={**self._env, **self.state.env()})

    def _no_local_state(self) -> bool:
        """A ``file://`` backend whose directory does not exist holds no stack (and Pulumi
        would fail to open it): reads answer without Pulumi, and create nothing."""
        local = self.state.local_dir
        return local is not None and not local.is_dir()

    def _prepare(self, spec: StackSpec) -> None:
        """Before an update: the backend directory (file://) and the configuration
        directory exist, and the stack's file records the configured secrets provider."""
        for directory, what in ((self.state.local_dir, "the Pulumi state directory"),
                                (self.state.config_dir(spec.project),
                                 f"the stack configuration directory (${STACKS_DIR_ENV})")):
            if directory is None:
                continue
            try:
                directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise HadeployError(f"{directory} ({what}) cannot be created: "
                                    f"{exc.strerror or exc}", hint="make it writable, or set "
                                    f"{STACKS_DIR_ENV} / aws.backend_url elsewhere",
                                    code=ExitCode.ENVIRONMENT) from None
        path = self.state.config_file(spec.project, spec.name)
        problem = provider_problem(read_stack_file(path) or {}, self.state.secrets_provider)
        if problem is not None:
            raise HadeployError(
                f"{path}: {problem}",
                hint=f"re-encrypt it: cd {path.parent} && {BACKEND_ENV}="
                f"{self.state.backend_url} pulumi stack change-secrets-provider --stack "
                f"{spec.name} '{self.state.secrets_provider}' (with a Pulumi.yaml naming "
                f"{spec.project}), or set aws.secrets_provider back", code=ExitCode.BAD_INPUT)

    @contextlib.contextmanager
    def _project(self, project: str, stack: str | None, *, link: bool) -> Iterator[str]:
        """A temporary project directory for ``project`` (see the class)."""
        import yaml

        work_dir = Path(tempfile.mkdtemp(prefix="hadeploy-pulumi-"))
        try:
            doc: dict[str, Any] = {"name": project, "runtime": "python",
                                   "description": "hadeploy (Automation API, inline program)"}
            config_dir = self.state.config_dir(project)
            if stack is not None and (link or self.state.config_file(project,
                                                                    stack).is_file()):
                (work_dir / "config").symlink_to(config_dir.absolute(),
                                                 target_is_directory=True)
                doc["stackConfigDir"] = "config"
            (work_dir / "Pulumi.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
            yield str(work_dir)
        finally:
            with contextlib.suppress(OSError):
                (work_dir / "config").unlink()
            shutil.rmtree(work_dir, ignore_errors=True)

    def _stack(self, spec: StackSpec, create: bool, work_dir: str) -> Any:
        from pulumi import automation as auto

        make = auto.create_or_select_stack if create else auto.select_stack
        try:
            return make(stack_name=spec.name, project_name=spec.project, program=spec.program,
                        opts=self._options(work_dir))
        except FileNotFoundError:
            raise missing_cli_error() from None

    def _run(self, spec: StackSpec, action: Callable[[Any], Any], create: bool = True) -> Any:
        from pulumi import automation as auto

        if create:
            self._prepare(spec)
        with self._project(spec.project, spec.name, link=create) as work_dir:
            try:
                return action(self._stack(spec, create, work_dir))
            except auto.StackNotFoundError:
                raise
            except auto.CommandError as exc:
                detail = _tail(str(exc))
                if "passphrase" in detail.lower() or "login" in detail.lower():
                    raise self._error(detail) from None
                raise StackFailed(detail) from None

    def _printer(self, spec: StackSpec) -> Callable[[str], None]:
        prefix = f"[{spec.name}] "
        return lambda line: self._log(prefix + line.rstrip())

    def _set_secret(self, stack: Any, key: str, value: str) -> None:
        """``pulumi config set --secret`` with the value on stdin (the Automation API's
        set_config would put it on the command line)."""
        from pulumi.automation import CommandError
        from pulumi.automation._cmd import CommandResult

        ws = stack.workspace
        command = str(getattr(ws.pulumi_command, "command", None) or "pulumi")
        proc = subprocess.run(  # fixed arguments; the value goes to stdin
            [command, "--non-interactive", "config", "set", "--secret", "--stack",
             stack.name, key], input=value, text=True, capture_output=True, check=False,
            cwd=ws.work_dir, env={**os.environ, **ws.env_vars, "PULUMI_AUTOMATION_API": "true"},
            timeout=300)
        if proc.returncode != 0:
            raise CommandError(CommandResult(proc.stdout, proc.stderr, proc.returncode))

    def _store_secrets(self, spec: StackSpec, stack: Any) -> None:
        path = self.state.config_file(spec.project, spec.name)
        for key, value in (spec.secrets() if spec.secrets else {}).items():
            if stack_file_secret(path, key) is not None \
                    and stack.get_config(key).value == value:
                continue
            self._set_secret(stack, key, value)

    # -- the Workspace protocol --

    def check(self) -> str:
        from pulumi import automation as auto

        check_state_env(self.state, self._env, Path.cwd())
        if self._no_local_state():
            return f"local ({self.state.local_dir} is created by the first 'up')"
        try:
            with self._project(REGIONAL_PROJECT, None, link=False) as work_dir:
                opts = self._options(work_dir)
                workspace = auto.LocalWorkspace(work_dir=work_dir,
                                                secrets_provider=opts.secrets_provider,
                                                env_vars=opts.env_vars)
                return str(workspace.who_am_i().user)
        except FileNotFoundError:
            raise missing_cli_error() from None
        except auto.CommandError as exc:
            raise self._error(_tail(str(exc))) from None

    def outputs(self, spec: StackSpec) -> dict[str, Any] | None:
        from pulumi import automation as auto

        if self._no_local_state():
            return None
        try:
            return dict(self._run(spec, lambda s: {k: v.value for k, v in s.outputs().items()},
                                  create=False))
        except auto.StackNotFoundError:
            return None
        except StackFailed as exc:
            raise self._error(str(exc)) from None

    def config_secret(self, spec: StackSpec, key: str) -> str | None:
        from pulumi import automation as auto

        path = self.state.config_file(spec.project, spec.name)
        if stack_file_secret(path, key) is None or self._no_local_state():
            return None
        try:
            return str(self._run(spec, lambda s: s.get_config(key).value, create=False))
        except auto.StackNotFoundError:
            return None

    def preview(self, spec: StackSpec) -> dict[str, int]:
        result = self._run(spec, lambda s: s.preview(color="never",
                                                     on_output=self._printer(spec)),
                           create=False)
        return {str(k): int(v) for k, v in (result.change_summary or {}).items()}

    def up(self, spec: StackSpec) -> dict[str, Any]:
        def update(stack: Any) -> Any:
            self._store_secrets(spec, stack)
            return stack.up(color="never", on_output=self._printer(spec))

        result = self._run(spec, update)
        return {k: v.value for k, v in result.outputs.items()}

    def destroy(self, spec: StackSpec) -> bool:
        from pulumi import automation as auto

        def destroy(stack: Any) -> bool:
            stack.destroy(color="never", on_output=self._printer(spec))
            stack.workspace.remove_stack(spec.name)  # and its Pulumi.<stack>.yaml
            return True

        if self._no_local_state():
            return False
        try:
            return bool(self._run(spec, destroy, create=False))
        except auto.StackNotFoundError:
            return False


# --- the driver ----------------------------------------------------------------------------

def list_hosts_boto3(region: str, aws_region: str, key: str, value: str) -> list[Host]:
    """Running app instances of a region, by the ASG's host tag (the Ansible inventory)."""
    import boto3  # type: ignore[import-not-found,import-untyped]

    ec2 = boto3.client("ec2", region_name=aws_region)
    hosts = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=[
            {"Name": f"tag:{key}", "Values": [value]},
            {"Name": "instance-state-name", "Values": ["running"]}]):
        for reservation in page["Reservations"]:
            for inst in reservation["Instances"]:
                hosts.append(Host(inst["InstanceId"], inst.get("PrivateIpAddress", ""),
                                  HostKind.APP, region))
    return sorted(hosts, key=lambda h: h.name)


def route53_mode(settings_mode: str, regions: int) -> str:
    """The record layout the global stack built: one region → plain; active-passive →
    failover (PRIMARY/SECONDARY); active-weighted → weighted."""
    if regions <= 1:
        return "plain"
    return "failover" if settings_mode == "active-passive" else "weighted"


def operate_doc(dep: Deployment, settings: AwsSettings,
                regional: Mapping[str, Mapping[str, Any] | None],
                global_outputs: Mapping[str, Any] | None) -> OperateDoc:
    """``<state>/aws.json``: everything ``status``/``failover``/``watch`` need to operate
    the deployment without Pulumi (DNS zone and mode, and per region the ALB, its listener
    and target group, the ASG and the Route 53 health check)."""
    glob = dict(global_outputs or {})
    checks = dict(glob.get("health_check_ids") or {})
    regions: dict[str, RegionOperate] = {}
    for region in dep.regions:
        out = regional.get(region.name)
        if not out:
            continue
        regions[region.name] = RegionOperate(
            aws_region=str(out.get("aws_region") or region.aws_region),
            alb_dns_name=str(out["alb_dns_name"]),
            alb_zone_id=str(out.get("alb_zone_id") or ""),
            health_check_id=checks.get(region.name), asg_name=out.get("asg_name"),
            target_group_arn=out.get("target_group_arn"),
            https_listener_arn=out.get("https_listener_arn"),
            hosts=int(out.get("hosts") or region.hosts), standby=region.standby.value,
            efs_id=out.get("efs_id"), db_cluster_id=out.get("db_cluster_id"),
            db_global_cluster_id=out.get("db_global_cluster_id"))
    return OperateDoc(zone=dep.dns.zone, zone_id=glob.get("zone_id"), record=dep.dns.record,
                      ttl=dep.dns.ttl,
                      mode=route53_mode(str(glob.get("mode") or settings.mode), len(regions)),
                      checker_regions=list(settings.health_checker_regions), regions=regions)


def no_hosts(_region: str, _aws_region: str, _key: str, _value: str) -> list[Host]:
    return []


class Stacks:
    """The deployment's stacks: preview, up, destroy, and the topology they built."""

    def __init__(self, dep: Deployment, *, settings: AwsSettings | None = None,  # noqa: PLR0913 - keyword-only options
                 workspace: Workspace | None = None, log: Log = print,
                 env: Mapping[str, str] | None = None,
                 credentials: Callable[[], bool] | None = None,
                 host_lister: HostLister | None = None,
                 app_secret: Callable[[], str] = lambda: "",
                 state_root: Path | None = None, cwd: Path | None = None) -> None:
        """``app_secret``: a secret kept elsewhere before (``<state>/secrets/app-secret`` of
        earlier versions), used when no stack configuration holds one; ``state_root``: the
        hadeploy state root (the default backend lives there); ``cwd``: what ./stacks is
        relative to."""
        self.dep = dep
        self.settings = settings or settings_of(dep)
        check_deployment(dep, self.settings)
        self._env = dict(os.environ if env is None else env)
        self._log = log
        self._workspace = workspace
        self._credentials = credentials or (lambda: aws_credentials_available(self._env))
        self._host_lister = host_lister
        self._legacy_secret = app_secret
        self._state_root, self._cwd = state_root, cwd
        self._pulumi_state: PulumiState | None = None
        self._lock = threading.Lock()
        self._secret_lock = threading.Lock()
        self._secret: str | None = None
        self._secret_looked = False

    # -- plumbing --

    @property
    def pulumi_state(self) -> PulumiState:
        """Where the stacks' state and configuration live (:func:`pulumi_state`)."""
        if self._pulumi_state is None:
            from hadeploy.state import state_root

            self._pulumi_state = pulumi_state(
                self.settings, self._env, state_root=self._state_root or state_root(),
                cwd=self._cwd or Path.cwd())
        return self._pulumi_state

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            state = self.pulumi_state  # a configuration problem first (exit 2), then the CLI
            if shutil.which("pulumi", path=self._env.get("PATH")) is None:
                raise missing_cli_error()
            self._workspace = PulumiWorkspace(self.settings, self._env, self._log, state=state)
        return self._workspace

    def preflight(self) -> str:
        workspace = self.workspace  # the CLI first: nothing else works without it
        if not self._credentials():
            raise missing_credentials_error()
        return workspace.check()

    def _say(self, msg: str) -> None:
        with self._lock:
            self._log(msg)

    # -- the application secret --

    def app_secret(self, *, generate: bool = False) -> str:
        """The application secret of every regional stack, looked up once per run:
        ``HADEPLOY_APP_SECRET`` (which an update then stores: a rotation); else the one the
        regional stacks keep in their configuration (``hadeploy:appSecret``, a Pulumi
        secret; the primary's first); else the one earlier versions kept in
        ``<state>/secrets/app-secret``; else, with ``generate`` (up, down), a new one, which
        every update stores. Without ``generate`` (a plan) a missing secret is a stand-in:
        nothing is generated or stored."""
        with self._secret_lock:
            if self._secret is None and not self._secret_looked:
                self._secret = self._find_secret()
                self._secret_looked = True
            if self._secret is None and generate:
                self._secret = secrets.token_urlsafe(32)
                self._say("generated the application secret; the regional stacks keep it, "
                          f"encrypted, as {SECRET_KEY} in their stack configuration")
            return self._secret or PLAN_SECRET

    def _find_secret(self) -> str | None:
        if self._env.get(SECRET_ENV):
            return self._env[SECRET_ENV]
        primary = self.dep.primary.name
        for region in [primary] + [r.name for r in self.dep.regions if r.name != primary]:
            found = self.workspace.config_secret(self.regional_spec(region, None), SECRET_KEY)
            if found:
                return found
        return self._legacy_secret() or None

    def _stored_secrets(self) -> Mapping[str, str]:
        """What an update stores in a regional stack's configuration: the secret, once
        there is a real one (never the plan's stand-in)."""
        value = self.app_secret(generate=True)
        return {SECRET_KEY: value} if value != PLAN_SECRET else {}

    def _deployment_json(self) -> str:
        data = self.dep.model_dump(mode="json")
        data.setdefault("aws", self.settings.model_dump(mode="json", exclude_defaults=True))
        return json.dumps(data, sort_keys=True)

    def regional_spec(self, region: str, peer_outputs: Mapping[str, Any] | None,
                      global_db_ready: bool = False,
                      teardown: Teardown | None = None) -> StackSpec:
        plan = plan_region(self.dep, self.settings, region)
        peer_efs = ""
        if plan.writer and plan.efs_replication and peer_outputs and teardown is None:
            peer_efs = str(peer_outputs.get("efs_id") or "")
        inputs = {"aws:region": plan.aws_region, "hadeploy:region": region,
                  "hadeploy:deployment": self._deployment_json(),
                  "hadeploy:peerReady": "true" if peer_outputs else "false",
                  "hadeploy:peerEfsId": peer_efs,
                  "hadeploy:globalDbReady": "true" if global_db_ready else "false"}
        if teardown is not None:
            inputs["hadeploy:teardownStamp"] = teardown.stamp
            inputs["hadeploy:deleteBackups"] = "true" if teardown.delete_backups else "false"
        dep, settings, secret = self.dep, self.settings, self.app_secret

        def program() -> None:
            from hadeploy.infra.regional import RegionalInputs, regional_program

            regional_program(dep, region, settings, RegionalInputs(
                app_secret=secret(), peer_ready=peer_outputs is not None,
                peer_efs_id=peer_efs or None, global_db_ready=global_db_ready,
                teardown=teardown))

        return StackSpec(REGIONAL_PROJECT, plan.stack_name, program, inputs, region,
                         secrets=self._stored_secrets)

    def global_spec(self, regions: list[str]) -> StackSpec:
        refs = {r: stack_ref(self.settings, self.dep.name, r) for r in regions}
        dep, settings = self.dep, self.settings

        def program() -> None:
            from hadeploy.infra.global_dns import global_program

            global_program(dep, refs, settings)

        inputs = {"aws:region": GLOBAL_AWS_REGION,
                  "hadeploy:deployment": self._deployment_json(),
                  "hadeploy:regions": json.dumps(regions)}
        return StackSpec(GLOBAL_PROJECT, f"{self.dep.name}-global", program, inputs)

    def _peer(self, region: str) -> str | None:
        peer = plan_region(self.dep, self.settings, region).peer
        return peer.name if peer else None

    def _pool(self, count: int) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=max(1, min(self.settings.parallel, count)),
                                  thread_name_prefix="hadeploy-stack")

    def _current_outputs(self, regions: list[str]) -> dict[str, dict[str, Any] | None]:
        with self._pool(len(regions)) as pool:
            futures = {r: pool.submit(self.workspace.outputs, self.regional_spec(r, None))
                       for r in regions}
            return {r: f.result() for r, f in futures.items()}

    def _global_db_ready(self, region: str,
                         known: Mapping[str, Mapping[str, Any] | None]) -> bool:
        """A secondary region's cluster can join the global database once the primary
        region's stack created it — and, once joined, stays in its program whatever the
        primary's stack says now (a primary region that is down must not make a secondary
        drop its copy of the data)."""
        return any((known.get(r) or {}).get("db_cluster_id")
                   for r in (self.dep.primary.name, region))

    def _run_regional(self, action: str, region: str,
                      peer_outputs: Mapping[str, Any] | None,
                      global_db_ready: bool = False,
                      teardown: Teardown | None = None) -> StackResult:
        spec = self.regional_spec(region, peer_outputs, global_db_ready, teardown)
        self._say(f"{action} {spec.name}")
        try:
            if action == "preview":
                return StackResult(spec.name, region, True, changes=self.workspace.preview(spec))
            return StackResult(spec.name, region, True, outputs=self.workspace.up(spec))
        except StackFailed as exc:
            self._say(f"{spec.name}: failed: {exc}")
            return StackResult(spec.name, region, False, error=str(exc))

    def _regional_round(self, action: str, regions: list[str],
                        known: Mapping[str, Mapping[str, Any] | None],
                        teardown: Teardown | None = None) -> dict[str, StackResult]:
        with self._pool(len(regions)) as pool:
            futures = {}
            for region in regions:
                peer = self._peer(region)
                futures[region] = pool.submit(self._run_regional, action, region,
                                              known.get(peer) if peer else None,
                                              self._global_db_ready(region, known), teardown)
            return {r: f.result() for r, f in futures.items()}

    # -- operations --

    def up(self) -> AwsReport:
        """Regional stacks (concurrently), a second pass where a peer appeared, then DNS."""
        self.preflight()
        report = AwsReport("up")
        regions = [r.name for r in self.dep.regions]
        before = self._current_outputs(regions)
        self._secret_for_up(before)  # once, before the regions update concurrently
        results = self._regional_round("up", regions, before)
        now: dict[str, Mapping[str, Any] | None] = {
            r: (results[r].outputs if results[r].ok else before.get(r)) for r in regions}
        again = [r for r in regions if results[r].ok and (
            ((p := self._peer(r)) is not None and not before.get(p) and now.get(p))
            or (self.dep.data.enabled and r != self.dep.primary.name
                and not self._global_db_ready(r, before)
                and self._global_db_ready(r, now)))]
        if again:
            self._say(f"second pass for {', '.join(again)}: their peer region (replication) "
                      "or the global database now exists")
            for region, result in self._regional_round("up", again, now).items():
                result.passes = 2
                results[region] = result
                if result.ok:
                    now[region] = result.outputs
        report.stacks.extend(results[r] for r in regions)
        report.stacks.append(self._update_global(now, report))
        report.topology = self.topology(now, report.stacks[-1].outputs)
        report.operate = operate_doc(self.dep, self.settings, now, report.stacks[-1].outputs)
        return report

    def _secret_for_up(self, before: Mapping[str, Mapping[str, Any] | None]) -> None:
        """The secret an up stores. Generated only when no regional stack was ever built:
        a built stack's configuration holds its secret, so when none is found the files
        an earlier run wrote were lost, and a new secret would silently change the one the
        hosts use (every pipeline run would rotate it)."""
        built = [r.name for r in self.dep.regions if before.get(r.name)]
        if self.app_secret(generate=not built) != PLAN_SECRET:
            return
        where = self.pulumi_state.config_dir(REGIONAL_PROJECT)
        raise HadeployError(
            f"the stacks of {', '.join(built)} exist, but no stack configuration holds their "
            f"application secret ({SECRET_KEY} in {where}/Pulumi.<stack>.yaml): the files an "
            "earlier 'up' wrote there were not kept", hint="restore them (commit the stack "
            "configuration directory after every 'up'; docs/aws.md#where-the-state-lives), "
            f"or run one 'up' with {SECRET_ENV} set to the secret the hosts use (or to a new "
            "one, to rotate it)", code=ExitCode.BAD_INPUT)

    def _update_global(self, outputs: Mapping[str, Mapping[str, Any] | None],
                       report: AwsReport) -> StackResult:
        name = f"{self.dep.name}-global"
        ready = [r.name for r in self.dep.regions if outputs.get(r.name)]
        if self.dep.primary.name not in ready:
            error = (f"the primary region '{self.dep.primary.name}' has no outputs; DNS was "
                     "not changed")
            return StackResult(name, None, False, error=error)
        skipped = [r.name for r in self.dep.regions if r.name not in ready]
        if skipped:
            report.notes.append(f"DNS built without {', '.join(skipped)} (never deployed)")
        spec = self.global_spec(ready)
        self._say(f"up {spec.name}")
        try:
            return StackResult(name, None, True, outputs=self.workspace.up(spec))
        except StackFailed as exc:
            return StackResult(name, None, False, error=str(exc))

    def current(self) -> tuple[dict[str, dict[str, Any] | None], dict[str, Any] | None]:
        """The outputs of every regional stack and of the global stack; None where the
        stack does not exist. Reads only."""
        self.preflight()
        regions = [r.name for r in self.dep.regions]
        regional = self._current_outputs(regions)
        glob = self.workspace.outputs(self.global_spec(regions))
        return regional, glob

    def preview(self, regional: Mapping[str, Mapping[str, Any] | None],
                global_outputs: Mapping[str, Any] | None) -> AwsReport:
        """Preview the stacks that exist (``select`` only: nothing is created or
        configured); the others are reported as stacks to create."""
        report = AwsReport("preview")
        existing = [r.name for r in self.dep.regions if regional.get(r.name)]
        if existing:
            self.app_secret()  # the stacks' own (read, never generated): no false change
        results = self._regional_round("preview", existing, regional)
        report.stacks.extend(results[r] for r in existing)
        name = f"{self.dep.name}-global"
        if global_outputs is None:
            return report
        spec = self.global_spec(existing)
        self._say(f"preview {spec.name}")
        try:
            report.stacks.append(StackResult(name, None, True,
                                             changes=self.workspace.preview(spec)))
        except StackFailed as exc:
            report.stacks.append(StackResult(name, None, False, error=str(exc)))
        return report

    def destroy(self, *, delete_backups: bool = False, writer: str | None = None,
                stamp: str | None = None) -> AwsReport:
        """The global stack first (if that fails, the regions are left alone); then every
        existing region is updated for its teardown and destroyed in :meth:`destroy_waves`
        order. ``writer``: the region holding the database's writer now (default: the
        primary); ``stamp``: makes the final snapshots' names unique (default: UTC now)."""
        self.preflight()
        report = AwsReport("destroy")
        regions = [r.name for r in self.dep.regions]
        spec = self.global_spec(regions)
        self._say(f"destroy {spec.name}")
        try:
            existed = self.workspace.destroy(spec)
            report.stacks.append(StackResult(spec.name, None, True,
                                             changes={"deleted_stack": int(existed)}))
        except StackFailed as exc:
            report.stacks.append(StackResult(spec.name, None, False, error=str(exc)))
            report.notes.append("regional stacks left in place: DNS may still point at them")
            return report
        teardown = Teardown(delete_backups=delete_backups,
                            stamp=stamp or time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
        known = self._current_outputs(regions)
        existing = [r for r in regions if known.get(r)]
        if existing:
            self.app_secret(generate=True)
        prepared = self._regional_round("up", existing, known, teardown)
        blocked: list[str] = []
        for region in existing:
            if not prepared[region].ok:
                prepared[region].error = ("teardown update failed, not destroyed: "
                                          f"{prepared[region].error}")
                report.stacks.append(prepared[region])
                blocked.append(region)
        replica = self._peer(self.dep.primary.name) if self.settings.efs_replication else None
        if self.dep.primary.name in blocked and replica and replica not in blocked:
            # Its file system still receives the primary's replication: EFS refuses to
            # delete it.
            report.notes.append(f"{replica} left in place: the primary's EFS replication "
                                "into it could not be removed")
            blocked.append(replica)
        earlier: list[str] = []
        for wave in self.destroy_waves(writer):
            todo = [r for r in wave if r not in blocked]
            waiting = [r for r in earlier if r in blocked]
            earlier += wave
            if self.dep.data.enabled and waiting and todo:
                report.notes.append(f"{', '.join(todo)} left in place: {', '.join(waiting)} "
                                    "must be destroyed first (the global database)")
                blocked += todo
                continue
            with self._pool(len(todo) or 1) as pool:
                results = list(pool.map(self._destroy_region, todo))
            report.stacks.extend(results)
            blocked += [r.region for r in results if not r.ok and r.region]
        report.notes += self._backup_notes([r for r in existing if r not in blocked], teardown)
        return report

    def destroy_waves(self, writer: str | None = None) -> list[list[str]]:
        """The order regions are destroyed in. Teardown already dropped EFS replication, so
        without a database every region goes at once; with one: every other region, then the
        region whose stack owns the global database, then the writer's if another."""
        if not self.dep.data.enabled:
            return [[r.name for r in self.dep.regions]]
        owner = self.dep.primary.name
        last = writer if writer in {r.name for r in self.dep.regions} else owner
        others = [r.name for r in self.dep.regions if r.name not in (owner, last)]
        waves = [others, [owner]] + ([[last]] if last != owner else [])
        return [w for w in waves if w]

    def _destroy_region(self, region: str) -> StackResult:
        regional = self.regional_spec(region, None)
        self._say(f"destroy {regional.name}")
        try:
            existed = self.workspace.destroy(regional)
            return StackResult(regional.name, region, True,
                               changes={"deleted_stack": int(existed)})
        except StackFailed as exc:
            return StackResult(regional.name, region, False, error=str(exc))

    def _backup_notes(self, regions: list[str], teardown: Teardown) -> list[str]:
        if not regions:
            return []
        plans = [plan_region(self.dep, self.settings, r) for r in regions]
        lock = self.settings.backup.vault_lock
        if teardown.delete_backups:
            notes = ["backups deleted with the stacks: vaults and recovery points, artifacts "
                     "buckets, database final snapshots and keys"]
            if lock is not None and lock.changeable_for_days is not None:
                notes.append("the vaults have a compliance-mode Vault Lock: once its grace "
                             f"period ({lock.changeable_for_days} days) is over AWS refuses "
                             "to delete recovery points before they expire, and a vault "
                             "that holds one")
            return notes
        kept = [f"vault {p.vault_name} ({p.aws_region})" for p in plans]
        kept += [f"bucket {p.bucket_name}" for p in plans]
        kept += [f"final snapshot {p.database.cluster_id}-final-{teardown.stamp} and its key"
                 for p in plans if p.database is not None]
        return [f"kept (hadeploy down --delete-backups deletes them): {'; '.join(kept)}",
                "a new 'up' of this deployment in this account needs the kept vaults and "
                "buckets deleted or imported first (their names are taken)"]

    # -- topology --

    def topology(self, regional: Mapping[str, Mapping[str, Any] | None],
                 global_outputs: Mapping[str, Any] | None) -> Topology:
        lister = self._host_lister or no_hosts
        regions = []
        for region in self.dep.regions:
            out = regional.get(region.name)
            if not out:
                continue
            alb = str(out["alb_dns_name"])
            tag = out.get("host_tag") or {}
            hosts: list[Host] = []
            if tag:
                hosts = lister(region.name, str(out.get("aws_region", region.aws_region)),
                               str(tag["key"]), str(tag["value"]))
            data = None
            if out.get("db_cluster_id") and out.get("db_endpoint"):
                data = RegionData(str(out["db_cluster_id"]),
                                  Endpoint(str(out["db_endpoint"]), POSTGRES_PORT),
                                  Endpoint(str(out.get("db_reader_endpoint")
                                               or out["db_endpoint"]), POSTGRES_PORT))
            regions.append(RegionTopology(
                name=region.name, role=region.role, standby=region.standby,
                vip=alb, url=f"https://{alb}", subnet=str(out.get("vpc_cidr", "")), router_id=0,
                # What the hosts mount: "<dns name>:/" (a stack from before that output
                # existed has only the DNS name).
                storage=SharedStorage(StorageType.EFS, str(
                    out.get("efs_mount_source") or efs_mount_source(str(out["efs_dns_name"])))),
                hosts=tuple(hosts), data=data,
                data_primary=data is not None and region.role.value == "primary"))
        servers = list((global_outputs or {}).get("name_servers") or [])
        dns = DnsEndpoint(str(servers[0]).rstrip(".") if servers else "route53", 53,
                          self.dep.dns.zone, self.dep.dns.record, self.dep.dns.ttl)
        return Topology(self.dep.name, Target.AWS, dns, tuple(regions))
