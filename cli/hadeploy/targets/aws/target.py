"""The aws target behind the one Target interface.

Provisioning (``desired``/``live``/``diff``/``apply``/``destroy``) drives the deployment's
Pulumi stacks through :class:`hadeploy.targets.aws.driver.Stacks`: one per region plus a
global Route 53 stack. ``plan`` previews the stacks that exist and lists those that would
be created; it never creates a stack or writes stack configuration.

Operating (``runtime``) needs no Pulumi at all: ``<state>/topology.json`` and
``<state>/aws.json`` (written by ``up``), Route 53, ALB listener rules + Auto Scaling
(:mod:`hadeploy.targets.aws.ops`), this machine and Route 53's health checkers as
vantage points.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from hadeploy.config import Deployment
from hadeploy.dns.base import DnsProvider
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.health import ProbeResult
from hadeploy.state import StateDir, StateError, load_model, read_text
from hadeploy.status import DataReaders, StatusDoc, collect
from hadeploy.targets import ApplyHooks, Change, Desired, Drift, Plan, Runtime
from hadeploy.targets.aws.ops import AwsRegionOps, OperateDoc, Route53Checkers
from hadeploy.topology import Host, HostKind, RegionTopology, Topology

Log = Callable[[str], None]
ENDPOINT_ENV = ("HADEPLOY_AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL")  # moto, LocalStack
ROUTE53_VOTES_ENV = "HADEPLOY_ROUTE53_VOTES"  # "0": Route 53's checkers do not vote
SECRET_FILE = "secrets/app-secret"  # noqa: S105 - a path (earlier versions), not a secret


def _quiet(_message: str) -> None:
    return None


def aws_endpoint_url() -> str | None:
    return next((os.environ[k] for k in ENDPOINT_ENV if os.environ.get(k)), None)


@dataclass
class AwsLive:
    regional: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    global_outputs: dict[str, Any] | None = None


@dataclass
class AwsApplyReport:
    deployment: str
    stacks: list[dict[str, Any]]
    plan: list[Change]
    notes: list[str]
    seconds: float

    @property
    def changed(self) -> bool:
        return bool(self.plan)

    def to_dict(self) -> dict[str, Any]:
        return {"deployment": self.deployment, "target": "aws", "changed": self.changed,
                "plan": [str(c) for c in self.plan], "stacks": self.stacks,
                "notes": self.notes, "seconds": round(self.seconds, 1)}

    def summary(self) -> list[str]:
        return [f"[green]up[/]: {len(self.stacks)} stack(s) up to date in {self.seconds:.1f} s",
                *(f"[yellow]note[/]: {n}" for n in self.notes)]


class AwsTarget:
    confirm_apply = True  # like 'pulumi up': show the preview, ask on a terminal

    def __init__(self, dep: Deployment, state: StateDir, *, log: Log = _quiet,
                 stacks: Any = None) -> None:
        self.dep, self.state, self.log = dep, state, log
        self._stacks = stacks

    @property
    def stacks(self) -> Any:
        """The Pulumi driver, made on first use (``status``/``failover`` never need it)."""
        if self._stacks is None:
            from hadeploy.targets.aws.driver import Stacks, list_hosts_boto3

            self._stacks = Stacks(self.dep, log=self.log, host_lister=list_hosts_boto3,
                                  app_secret=self._legacy_app_secret,
                                  state_root=self.state.path.parent)
        return self._stacks

    def _legacy_app_secret(self) -> str:
        """The secret earlier versions generated into ``<state>/secrets/app-secret``: used
        (and then stored in the stacks' configuration) when no stack holds one yet. The
        secret now lives in the regional stacks' configuration only (see the driver)."""
        text = read_text(self.state.file(SECRET_FILE))
        return text.strip() if text else ""

    # -- provisioning ---------------------------------------------------------------------

    def desired(self) -> list[Desired]:
        import hashlib
        import json

        regions = [r.name for r in self.dep.regions]
        specs = [self.stacks.regional_spec(r, None) for r in regions]
        specs.append(self.stacks.global_spec(regions))
        return [Desired("stack", s.name, s.region, spec=hashlib.sha256(
            json.dumps(dict(s.inputs), sort_keys=True).encode()).hexdigest()[:16],
            detail=s.project) for s in specs]

    def live(self) -> AwsLive:
        regional, glob = self.stacks.current()
        return AwsLive(regional, glob)

    def check_drift(self, live: AwsLive) -> Drift:
        raise HadeployError(
            "--drift is not available on aws yet: its hosts are not configured by Ansible "
            "from this machine, so there is no check mode to compare them with",
            hint="the stacks' preview (plain 'hadeploy plan') compares with Pulumi's recorded "
            "state; run 'pulumi refresh' on a stack to see changes made outside Pulumi",
            code=ExitCode.NOT_AVAILABLE)

    def diff(self, desired: list[Desired], live: AwsLive, *, converge: bool = False) -> Plan:
        plan = Plan("aws")
        report = self.stacks.preview(live.regional, live.global_outputs)
        report.raise_for_failures()
        previewed = {s.stack: s.changes for s in report.stacks}
        for want in desired:
            if want.name not in previewed:
                after = " after the regional stacks (it reads their outputs)" \
                    if want.region is None else ""
                plan.changes.append(Change("create", "stack", want.name, want.region,
                                           f"new stack{after}; its resources are previewed "
                                           "once it exists"))
                continue
            changes = {k: v for k, v in previewed[want.name].items() if k != "same" and v}
            if changes:
                detail = ", ".join(f"{k} {v}" for k, v in sorted(changes.items()))
                plan.changes.append(Change("update", "stack", want.name, want.region, detail))
        plan.notes += report.notes
        plan.notes.append(self.stacks.pulumi_state.describe())
        if converge:
            plan.notes.append("--converge has no effect on aws: every 'up' updates every stack")
        return plan

    def apply(self, plan: Plan, hooks: ApplyHooks) -> AwsApplyReport:
        start = time.monotonic()
        self.log = hooks.log
        report = self.stacks.up()
        report.raise_for_failures()
        self.state.save_deployment(self.dep)
        if report.topology is not None:
            self.state.save_json("topology.json", report.topology.to_dict())
        if report.operate is not None:
            self.state.save_model("aws.json", report.operate)
        seconds = time.monotonic() - start
        self.state.audit("up", target="aws", stacks=[s.stack for s in report.stacks],
                         changes=[str(c) for c in plan.changes], seconds=round(seconds, 1))
        return AwsApplyReport(self.dep.name, [s.to_dict() for s in report.stacks],
                              list(plan.changes), report.notes, seconds)

    def destroy(self, log: Log, *, delete_backups: bool = False) -> list[str]:
        """Every stack; the backups (vaults, artifacts buckets, the database's final
        snapshots and keys) are kept unless ``delete_backups``."""
        self.log = log
        writer = self.state.region_flags().data_primary
        report = self.stacks.destroy(delete_backups=delete_backups, writer=writer)
        for note in report.notes:
            log(f"note: {note}")
        report.raise_for_failures()
        return [f"stack {s.stack}" for s in report.stacks]

    # -- operating ------------------------------------------------------------------------

    def _operate(self) -> OperateDoc:
        path = self.state.file("aws.json")
        doc = load_model(path, OperateDoc, hint="run 'hadeploy up' again to rewrite it")
        if doc is None:
            raise _not_built(self.dep, path)
        return doc

    def topology(self) -> Topology:
        path = self.state.file("topology.json")
        raw = self.state.load_json("topology.json")
        if raw is None:
            raise _not_built(self.dep, path)
        try:
            topo = Topology.from_dict(raw)
        except ValueError as exc:
            raise StateError(path, f"cannot be trusted: {exc}",
                             "run 'hadeploy up' again to rewrite it") from None
        flags = self.state.region_flags()
        return topo.with_flags(promoted=flags.names("promoted"), fenced=flags.names("fenced"),
                               data_primary=flags.data_primary)

    def runtime(self) -> Runtime:
        doc = self._operate()
        endpoint = aws_endpoint_url()

        def dns(_topo: Topology) -> DnsProvider:
            provider: DnsProvider = route53_provider(doc, endpoint)
            return provider

        def ops(topo: Topology) -> AwsRegionOps:
            return AwsRegionOps(self.dep, self.state, doc, endpoint_url=endpoint, topo=topo)

        def status(timeout: float) -> StatusDoc:
            topo = self.topology()
            region_ops = ops(topo)
            topo, health = live_hosts(topo, region_ops, timeout)
            return collect(topo, self.dep, self.state.path, timeout=timeout, dns=dns(topo),
                           host_health=health,
                           data=DataReaders(observe=region_ops.data.observe)
                           if region_ops.data is not None else None)

        extra = None
        if os.environ.get(ROUTE53_VOTES_ENV, "1") != "0":
            extra = Route53Checkers(doc, endpoint_url=endpoint)
        return Runtime(topology=self.topology, dns=dns, region_ops=ops, status=status,
                       extra_votes=extra)


def _not_built(dep: Deployment, path: Any) -> HadeployError:
    return HadeployError(f"deployment '{dep.name}' has not been built on aws ({path} is "
                         "missing)", hint="run 'hadeploy up' (a successful up writes "
                         "topology.json and aws.json)", code=ExitCode.BAD_INPUT)


def route53_provider(doc: OperateDoc, endpoint_url: str | None) -> Any:
    from hadeploy.dns.route53 import Endpoint, Route53Provider

    if doc.mode not in ("plain", "failover"):
        raise HadeployError(f"Route 53 record mode '{doc.mode}' (aws.mode active-weighted) is "
                            "not operated by hadeploy yet", hint="use aws.mode: active-passive "
                            "for status/failover/watch", code=ExitCode.NOT_AVAILABLE)
    endpoints = {name: Endpoint(r.alb_dns_name, r.alb_zone_id, r.health_check_id)
                 for name, r in doc.regions.items()}
    return Route53Provider(doc.zone, zone_id=doc.zone_id, mode=doc.mode, endpoints=endpoints,
                           endpoint_url=endpoint_url)


def live_hosts(topo: Topology, ops: AwsRegionOps,
               timeout: float) -> tuple[Topology, dict[str, ProbeResult]]:
    """On AWS a region's hosts are its target group's targets, as the ALB sees them now
    (private addresses are not reachable from here; the ALB's health check is the truth).
    A region whose API does not answer keeps the hosts ``up`` saw, reported unknown."""

    def one(region: RegionTopology) -> tuple[RegionTopology, dict[str, str] | str]:
        try:
            return region, dict(ops.target_health(region, timeout=max(2.0, timeout)))
        except Exception as exc:  # reported per host, never fatal
            return region, f"{type(exc).__name__}: {exc}"

    health: dict[str, ProbeResult] = {}
    regions = []
    with ThreadPoolExecutor(max_workers=max(1, len(topo.regions))) as pool:
        for region, states in pool.map(one, topo.regions):
            if isinstance(states, str):
                for h in region.hosts:
                    health[h.name] = ProbeResult(f"elb:{h.name}", False, None, 0.0,
                                                 f"target health unknown: {states}")
                regions.append(region)
                continue
            known = {h.name: h for h in region.hosts}
            hosts = tuple(known.get(i) or Host(i, "", HostKind.APP, region.name)
                          for i in sorted(states))
            for instance, state in states.items():
                health[instance] = ProbeResult(f"elb:{instance}", state == "healthy", None,
                                               0.0, None if state == "healthy"
                                               else f"target {state}")
            regions.append(replace(region, hosts=hosts))
    return replace(topo, regions=tuple(regions)), health
