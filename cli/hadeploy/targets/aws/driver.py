"""The AWS target: one Pulumi stack per region plus a global DNS stack, driven by the
Automation API (inline programs from :mod:`hadeploy.infra`).

- ``up``: regional stacks concurrently (at most ``aws.parallel`` at once), then the
  global stack. A failed region never stops the others; the global stack is built over
  every region that has outputs, and only if the primary has.
- ``preview``: only stacks that exist (``select``, never ``create``): a plan creates no
  stack and writes no stack configuration.
- Inline programs get their inputs from the driver directly (a closure), not from stack
  configuration: nothing is written with ``pulumi config set`` and the application secret
  never appears on a command line (``/proc/<pid>/cmdline`` is world-readable).
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

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hadeploy.config import AwsSettings, Deployment, Target
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.infra.settings import (
    GLOBAL_PROJECT,
    REGIONAL_PROJECT,
    Teardown,
    check_deployment,
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


class StackFailed(Exception):
    """A stack operation ran and failed (the message is the useful tail of Pulumi's)."""


class Workspace(Protocol):
    def check(self) -> str:
        """The backend identity; raises HadeployError (ENVIRONMENT) when the Pulumi CLI is
        missing or the state backend is unreachable."""

    def outputs(self, spec: StackSpec) -> dict[str, Any] | None:
        """The stack's current outputs, or None when the stack does not exist."""

    def preview(self, spec: StackSpec) -> dict[str, int]:
        """Preview an existing stack (select, never create): {operation: count}."""

    def up(self, spec: StackSpec) -> dict[str, Any]:
        """Create or select the stack and update it: its outputs."""

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


def backend_error(detail: str, settings: AwsSettings) -> HadeployError:
    where = settings.backend_url or "the backend of 'pulumi login'"
    if "passphrase" in detail.lower():
        return HadeployError(
            f"Pulumi cannot decrypt stack secrets on {where}: {detail}",
            hint="export PULUMI_CONFIG_PASSPHRASE (or _FILE), or set aws.secrets_provider "
            "to a KMS key such as 'awskms://alias/hadeploy'", code=ExitCode.ENVIRONMENT)
    return HadeployError(
        f"the Pulumi state backend ({where}) is not reachable: {detail}",
        hint="log in with 'pulumi login s3://<bucket>' (or 'pulumi login' for Pulumi Cloud), "
        "or set aws.backend_url in hadeploy.yaml; check network access to it",
        code=ExitCode.ENVIRONMENT)


def _tail(text: str, lines: int = 6) -> str:
    useful = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in useful if "error" in ln.lower()]
    return " | ".join((errors or useful)[-lines:]) or "no output"


# --- the real workspace --------------------------------------------------------------------

class PulumiWorkspace:
    """:class:`Workspace` over ``pulumi.automation`` (inline programs, local CLI)."""

    def __init__(self, settings: AwsSettings, env: Mapping[str, str] | None = None,
                 log: Log = print) -> None:
        self._settings = settings
        self._env = dict(env or {})
        self._log = log

    def _options(self, project: str) -> Any:
        from pulumi import automation as auto

        backend = auto.ProjectBackend(self._settings.backend_url) \
            if self._settings.backend_url else None
        return auto.LocalWorkspaceOptions(
            project_settings=auto.ProjectSettings(name=project, runtime="python",
                                                  backend=backend),
            secrets_provider=self._settings.secrets_provider, env_vars=self._env)

    def check(self) -> str:
        from pulumi import automation as auto

        try:
            opts = self._options(REGIONAL_PROJECT)
            workspace = auto.LocalWorkspace(project_settings=opts.project_settings,
                                            secrets_provider=opts.secrets_provider,
                                            env_vars=opts.env_vars)
            return str(workspace.who_am_i().user)
        except FileNotFoundError:
            raise missing_cli_error() from None
        except auto.CommandError as exc:
            raise backend_error(_tail(str(exc)), self._settings) from None

    def _stack(self, spec: StackSpec, create: bool) -> Any:
        from pulumi import automation as auto

        make = auto.create_or_select_stack if create else auto.select_stack
        try:
            return make(stack_name=spec.name, project_name=spec.project, program=spec.program,
                        opts=self._options(spec.project))
        except FileNotFoundError:
            raise missing_cli_error() from None

    def _run(self, spec: StackSpec, action: Callable[[Any], Any], create: bool = True) -> Any:
        from pulumi import automation as auto

        try:
            return action(self._stack(spec, create))
        except auto.StackNotFoundError:
            raise
        except auto.CommandError as exc:
            detail = _tail(str(exc))
            if "passphrase" in detail.lower() or "login" in detail.lower():
                raise backend_error(detail, self._settings) from None
            raise StackFailed(detail) from None

    def _printer(self, spec: StackSpec) -> Callable[[str], None]:
        prefix = f"[{spec.name}] "
        return lambda line: self._log(prefix + line.rstrip())

    def outputs(self, spec: StackSpec) -> dict[str, Any] | None:
        from pulumi import automation as auto

        try:
            stack = self._stack(spec, create=False)
            return {k: v.value for k, v in stack.outputs().items()}
        except auto.StackNotFoundError:
            return None
        except auto.CommandError as exc:
            raise backend_error(_tail(str(exc)), self._settings) from None

    def preview(self, spec: StackSpec) -> dict[str, int]:
        result = self._run(spec, lambda s: s.preview(color="never",
                                                     on_output=self._printer(spec)),
                           create=False)
        return {str(k): int(v) for k, v in (result.change_summary or {}).items()}

    def up(self, spec: StackSpec) -> dict[str, Any]:
        result = self._run(spec, lambda s: s.up(color="never", on_output=self._printer(spec)))
        return {k: v.value for k, v in result.outputs.items()}

    def destroy(self, spec: StackSpec) -> bool:
        from pulumi import automation as auto

        def destroy(stack: Any) -> bool:
            stack.destroy(color="never", on_output=self._printer(spec))
            stack.workspace.remove_stack(spec.name)
            return True

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
            db_cluster_id=out.get("db_cluster_id"),
            db_global_cluster_id=out.get("db_global_cluster_id"))
    return OperateDoc(zone=dep.dns.zone, zone_id=glob.get("zone_id"), record=dep.dns.record,
                      ttl=dep.dns.ttl,
                      mode=route53_mode(str(glob.get("mode") or settings.mode), len(regions)),
                      checker_regions=list(settings.health_checker_regions), regions=regions)


def no_hosts(_region: str, _aws_region: str, _key: str, _value: str) -> list[Host]:
    return []


class Stacks:
    """The deployment's stacks: preview, up, destroy, and the topology they built."""

    def __init__(self, dep: Deployment, *, settings: AwsSettings | None = None,
                 workspace: Workspace | None = None, log: Log = print,
                 env: Mapping[str, str] | None = None,
                 credentials: Callable[[], bool] | None = None,
                 host_lister: HostLister | None = None,
                 app_secret: Callable[[], str] = lambda: "") -> None:
        self.dep = dep
        self.settings = settings or settings_of(dep)
        check_deployment(dep, self.settings)
        self._env = dict(os.environ if env is None else env)
        self._log = log
        self._workspace = workspace
        self._credentials = credentials or (lambda: aws_credentials_available(self._env))
        self._host_lister = host_lister
        self._app_secret = app_secret
        self._lock = threading.Lock()

    # -- plumbing --

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            if shutil.which("pulumi", path=self._env.get("PATH")) is None:
                raise missing_cli_error()
            self._workspace = PulumiWorkspace(self.settings, self._env, self._log)
        return self._workspace

    def preflight(self) -> str:
        workspace = self.workspace  # the CLI first: nothing else works without it
        if not self._credentials():
            raise missing_credentials_error()
        return workspace.check()

    def _say(self, msg: str) -> None:
        with self._lock:
            self._log(msg)

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
        dep, settings, secret = self.dep, self.settings, self._app_secret

        def program() -> None:
            from hadeploy.infra.regional import RegionalInputs, regional_program

            regional_program(dep, region, settings, RegionalInputs(
                app_secret=secret(), peer_ready=peer_outputs is not None,
                peer_efs_id=peer_efs or None, global_db_ready=global_db_ready,
                teardown=teardown))

        return StackSpec(REGIONAL_PROJECT, plan.stack_name, program, inputs, region)

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
                storage=SharedStorage(StorageType.EFS, str(out["efs_dns_name"])),
                hosts=tuple(hosts), data=data,
                data_primary=data is not None and region.role.value == "primary"))
        servers = list((global_outputs or {}).get("name_servers") or [])
        dns = DnsEndpoint(str(servers[0]).rstrip(".") if servers else "route53", 53,
                          self.dep.dns.zone, self.dep.dns.record, self.dep.dns.ttl)
        return Topology(self.dep.name, Target.AWS, dns, tuple(regions))
