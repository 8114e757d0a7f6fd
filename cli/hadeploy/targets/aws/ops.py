"""What a failover does to an AWS region: prepare a target, fence an old primary.

- **prepare** (warm/cold target): scale its Auto Scaling group to full size (MinSize and
  DesiredCapacity = the region's hosts), lift its fence, wait until the target group has
  at least one healthy target.
- **fence**: the region's HTTPS listener gets two rules in front of its default action —
  priority 1 forwards ``GET``/``HEAD`` (``http-request-method`` condition) to the target
  group, priority 2 answers every other request with a fixed 503. Reads keep working,
  writes are refused. (An ALB condition cannot be negated and takes at most 5 values, so
  "everything but GET/HEAD" is the second rule catching what the first one did not.)
  **unfence** deletes both rules.

Like the lab, the intent is recorded in the state first (``regions.json``), then applied.
A region whose API cannot be reached (the region may be burning) is reported as a string,
never raised: a dead region takes no writes anyway, and ``watch`` re-applies the fence
when it comes back.

Also here: Route 53's health checkers as vantage points (:class:`Route53Checkers`), one
vote per checker region.

boto3 is imported inside functions only (``hadeploy failover`` must start fast), and this
module never imports pulumi.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from hadeploy.config import Deployment
from hadeploy.health import ProbeResult
from hadeploy.quorum import LocalVantage, Vote
from hadeploy.state import StateDir
from hadeploy.targets import DataOps, Fenced
from hadeploy.topology import RegionTopology, Topology

# --- aws.json: what operating an AWS deployment needs, without Pulumi --------------------

class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegionOperate(_Doc):
    aws_region: str
    alb_dns_name: str
    alb_zone_id: str = ""
    health_check_id: str | None = None
    asg_name: str | None = None
    target_group_arn: str | None = None
    https_listener_arn: str | None = None
    hosts: int
    standby: Literal["hot", "warm", "cold"]
    efs_id: str | None = None  # the region's shared file system (promoted by a failover)
    db_cluster_id: str | None = None  # the region's Aurora cluster (a database tier)
    db_global_cluster_id: str | None = None


class OperateDoc(_Doc):
    """``<state>/aws.json`` (version 1), written by ``up``: the DNS zone and record mode,
    and per region the ALB, its listener and target group, the Auto Scaling group and
    the Route 53 health check."""

    version: Literal[1] = 1
    zone: str
    zone_id: str | None = None
    record: str
    ttl: int
    mode: Literal["plain", "failover", "weighted"]
    checker_regions: list[str]
    regions: dict[str, RegionOperate]

FENCE_BODY = "hadeploy: this region is fenced (read-only); writes go to the active region"
READ_METHODS = ["GET", "HEAD"]
READ_PRIORITY, FENCE_PRIORITY = 1, 2
ClientFactory = Callable[[str, str, float], Any]  # (service, aws_region, timeout) -> client


def boto3_client_factory(endpoint_url: str | None = None) -> ClientFactory:
    def make(service: str, aws_region: str, timeout: float) -> Any:
        import boto3  # type: ignore[import-not-found,import-untyped]
        from botocore.config import Config  # type: ignore[import-not-found,import-untyped]

        config = Config(retries={"max_attempts": 2}, connect_timeout=max(1.0, timeout),
                        read_timeout=max(1.0, timeout))
        return boto3.session.Session().client(service, region_name=aws_region,
                                              endpoint_url=endpoint_url, config=config)
    return make


def error_text(exc: BaseException) -> str:
    """A boto3 error as "<Code>: <Message>" (any other exception: its type and text)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        err = response.get("Error", {})
        return f"{err.get('Code', type(exc).__name__)}: {err.get('Message', '')}".strip(": ")
    return f"{type(exc).__name__}: {exc}".strip(": ")


def _is_fence_rule(rule: dict[str, Any]) -> bool:
    """One of the two rules :meth:`AwsRegionOps.fence` adds (found again by content)."""
    for action in rule.get("Actions", []):
        if (action.get("FixedResponseConfig") or {}).get("MessageBody") == FENCE_BODY:
            return True
    if str(rule.get("Priority")) != str(READ_PRIORITY):
        return False
    return any(c.get("Field") == "http-request-method"
               and sorted((c.get("HttpRequestMethodConfig") or {}).get("Values", []))
               == sorted(READ_METHODS) for c in rule.get("Conditions", []))


class AwsRegionOps:
    """:class:`hadeploy.failover.RegionOps` for the aws target (``<state>/aws.json``)."""

    # New instances of a cold region boot, run cloud-init and pass the ALB's health check:
    # minutes, not seconds (the engine reads this; the lab's default is 60 s).
    prepare_timeout = 600.0
    # An ALB runs no agent of ours: an aws region does not fence itself when cut off (a
    # known limit, docs/aws.md); a failover fences it through the ELB API.
    lease: float | None = None

    def wait_writable(self, region: RegionTopology, timeout: float) -> str:
        return ""  # no lease agents: nothing to wait for

    def __init__(self, dep: Deployment, state: StateDir, doc: OperateDoc,
                 client_factory: ClientFactory | None = None,
                 endpoint_url: str | None = None, poll: float = 5.0,
                 topo: Topology | None = None) -> None:
        self.dep, self.state, self.doc = dep, state, doc
        self.clients = client_factory or boto3_client_factory(endpoint_url)
        self.poll = poll
        self.data: DataOps | None = None
        clusters = {name: (r.aws_region, r.db_cluster_id) for name, r in doc.regions.items()
                    if r.db_cluster_id}
        global_id = next((r.db_global_cluster_id for r in doc.regions.values()
                          if r.db_global_cluster_id), None)
        if topo is not None and dep.data.enabled and clusters and global_id:
            from hadeploy.targets.aws.data import AuroraGlobal

            self.data = AuroraGlobal(topo, global_id, clusters, self.clients, poll=poll)

    def _region(self, name: str) -> RegionOperate | None:
        return self.doc.regions.get(name)

    def _client(self, service: str, region: RegionTopology, timeout: float) -> Any:
        info = self._region(region.name)
        return self.clients(service, info.aws_region if info else "", timeout)

    # -- fence -------------------------------------------------------------------------

    def _fence_rules(self, elb: Any, listener: str) -> list[dict[str, Any]]:
        rules = elb.describe_rules(ListenerArn=listener)["Rules"]
        return [r for r in rules if not r.get("IsDefault") and _is_fence_rule(r)]

    def fence(self, region: RegionTopology, timeout: float) -> Fenced:
        self.state.set_region_flag("fenced", region.name, True)
        info = self._region(region.name)
        listener = info.https_listener_arn if info else None
        group = info.target_group_arn if info else None
        if not listener or not group:
            return Fenced("recorded as fenced; not applied: aws.json has no HTTPS listener / "
                          "target group for this region (run 'hadeploy up' again)", False)
        try:
            elb = self._client("elbv2", region, timeout)
            have = self._fence_rules(elb, listener)
            priorities = {int(r["Priority"]) for r in have}
            if READ_PRIORITY not in priorities:
                elb.create_rule(
                    ListenerArn=listener, Priority=READ_PRIORITY,
                    Conditions=[{"Field": "http-request-method",
                                 "HttpRequestMethodConfig": {"Values": READ_METHODS}}],
                    Actions=[{"Type": "forward", "TargetGroupArn": group}])
            if FENCE_PRIORITY not in priorities:
                elb.create_rule(
                    ListenerArn=listener, Priority=FENCE_PRIORITY,
                    Conditions=[{"Field": "path-pattern",
                                 "PathPatternConfig": {"Values": ["*"]}}],
                    Actions=[{"Type": "fixed-response", "FixedResponseConfig": {
                        "StatusCode": "503", "ContentType": "text/plain",
                        "MessageBody": FENCE_BODY}}])
        except Exception as exc:  # a burning region: report, never raise
            return Fenced(f"unreachable, recorded as fenced ({error_text(exc)})", False)
        if len(priorities) == 2:
            return Fenced("already fenced (listener rules answer 503 to all but GET/HEAD)",
                          True)
        return Fenced("fenced (listener rules answer 503 to all but GET/HEAD)", True)

    def unfence(self, region: RegionTopology, timeout: float) -> str | None:
        """Delete the fence rules; None when done, else why not."""
        info = self._region(region.name)
        listener = info.https_listener_arn if info else None
        if not listener:
            return "aws.json has no HTTPS listener for this region"
        try:
            elb = self._client("elbv2", region, timeout)
            for rule in self._fence_rules(elb, listener):
                elb.delete_rule(RuleArn=rule["RuleArn"])
        except Exception as exc:
            return error_text(exc)
        return None

    # -- prepare -----------------------------------------------------------------------

    def prepare(self, region: RegionTopology, timeout: float) -> list[str]:
        actions: list[str] = []
        info = self._region(region.name)
        scaled = False
        if region.standby in ("warm", "cold"):
            hosts = info.hosts if info else 1
            asg_name = str(info.asg_name if info else None)
            try:
                asg = self._client("autoscaling", region, min(timeout, 10.0))
                group = asg.describe_auto_scaling_groups(
                    AutoScalingGroupNames=[asg_name])["AutoScalingGroups"]
                if not group:
                    raise LookupError(f"no Auto Scaling group {asg_name}")
                g = group[0]
                if int(g["MinSize"]) < hosts or int(g["DesiredCapacity"]) < hosts:
                    asg.update_auto_scaling_group(
                        AutoScalingGroupName=asg_name, MinSize=hosts,
                        DesiredCapacity=hosts, MaxSize=max(hosts, int(g["MaxSize"])))
                    actions.append(f"scaled {asg_name} of {region.name} to {hosts} host(s)")
                    scaled = True
                self.state.set_region_flag("promoted", region.name, True)
            except Exception as exc:
                actions.append(f"could not scale up {region.name}: {error_text(exc)}")
        promoted = self.promote_storage(region, min(timeout, 10.0))
        if promoted:
            actions.append(promoted)
        if region.fenced:
            failure = self.unfence(region, min(timeout, 10.0))
            if failure is None:
                self.state.set_region_flag("fenced", region.name, False)
                actions.append(f"lifted the fence of {region.name}")
            else:
                actions.append(f"could not lift the fence of {region.name}: {failure}")
        if scaled or region.fenced or region.standby in ("warm", "cold"):
            actions.append(self._wait_healthy_target(region, timeout))
        return actions

    def promote_storage(self, region: RegionTopology, timeout: float) -> str:
        """Make the target's shared storage writable: while it is the destination of the
        old writer's EFS replication it is read-only (its app reports it healthy as a
        replica, and refuses writes). The replication is deleted from the target's own
        region — only this region's side when the source region's API does not answer,
        which AWS allows for a region that is down. What was done ('' when nothing was
        needed). AWS makes the file system writable within minutes; until then writes
        are refused with 503, reads are served."""
        info = self._region(region.name)
        fs = info.efs_id if info else None
        if not fs:
            return ""
        try:
            efs = self._client("efs", region, timeout)
            try:
                replications = efs.describe_replication_configurations(
                    FileSystemId=fs).get("Replications", [])
            except Exception as exc:
                if error_text(exc).startswith("ReplicationNotFound"):
                    return ""
                raise
            sources = [r["SourceFileSystemId"] for r in replications
                       if r.get("SourceFileSystemId") != fs
                       and any(d.get("FileSystemId") == fs for d in r.get("Destinations", []))]
            if not sources:
                return ""
            try:
                efs.delete_replication_configuration(SourceFileSystemId=sources[0])
                how = ""
            except Exception as exc:  # the source region's side does not answer
                efs.delete_replication_configuration(SourceFileSystemId=sources[0],
                                                     DeletionMode="LOCAL_CONFIGURATION_ONLY")
                how = f" (this region's side only: {error_text(exc)})"
        except Exception as exc:
            return (f"could not promote the file system {fs} of {region.name}: "
                    f"{error_text(exc)}; it stays read-only")
        return (f"promoted the file system {fs} of {region.name}: replication from "
                f"{sources[0]} deleted{how}; writable within minutes")

    def target_health(self, region: RegionTopology, timeout: float) -> dict[str, str]:
        """Instance id → the ALB's view of it (healthy, initial, unhealthy, …)."""
        info = self._region(region.name)
        group = info.target_group_arn if info else None
        if not group:
            return {}
        elb = self._client("elbv2", region, timeout)
        found = elb.describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]
        return {str(t["Target"]["Id"]): str(t["TargetHealth"]["State"]) for t in found}

    def _wait_healthy_target(self, region: RegionTopology, timeout: float) -> str:
        start = time.monotonic()
        last = "no answer"
        while True:
            try:
                states = self.target_health(region, min(timeout, 10.0))
                healthy = sum(1 for s in states.values() if s == "healthy")
                if healthy:
                    return (f"{region.name} serving: {healthy}/{len(states)} healthy target(s) "
                            f"after {time.monotonic() - start:.1f} s")
                last = f"{len(states)} target(s), none healthy"
            except Exception as exc:
                last = error_text(exc)
            if time.monotonic() - start >= timeout:
                return f"{region.name} has no healthy target after {timeout:.0f} s ({last})"
            time.sleep(self.poll)


# --- Route 53's health checkers as vantage points --------------------------------------

class Route53Checkers:
    """Votes from Route 53's health checkers (``GetHealthCheckStatus``): one vote per
    checker region and hadeploy region, ok when most of that region's checkers last saw
    the endpoint succeed. Consecutive counts are kept across rounds, like this machine's
    own vantage point. No answer (API unreachable, no health check): no vote."""

    def __init__(self, doc: OperateDoc, client_factory: ClientFactory | None = None,
                 endpoint_url: str | None = None, timeout: float = 3.0) -> None:
        self.doc = doc
        self.clients = client_factory or boto3_client_factory(endpoint_url)
        self.timeout = timeout
        self._vantages: dict[str, LocalVantage] = {}
        self._client: Any = None

    def observations(self, health_check_id: str) -> dict[str, list[bool]]:
        if self._client is None:
            self._client = self.clients("route53", "us-east-1", self.timeout)
        resp = self._client.get_health_check_status(HealthCheckId=health_check_id)
        seen: dict[str, list[bool]] = {}
        for obs in resp.get("HealthCheckObservations", []):
            status = str((obs.get("StatusReport") or {}).get("Status", ""))
            seen.setdefault(str(obs.get("Region", "?")), []).append(
                status.startswith("Success"))
        return seen

    def __call__(self, topo: Topology) -> list[Vote]:
        votes: list[Vote] = []
        now = time.time()
        for region in topo.regions:
            info = self.doc.regions.get(region.name)
            check = info.health_check_id if info else None
            if not check:
                continue
            try:
                seen = self.observations(str(check))
            except Exception:  # noqa: S112 - an observer that cannot be asked does not vote
                continue
            for checker, results in sorted(seen.items()):
                ok = sum(results) * 2 > len(results)
                name = f"route53@{checker}"
                vantage = self._vantages.setdefault(name, LocalVantage(name))
                result = ProbeResult(f"route53:{check}", ok, None, 0.0,
                                     None if ok else f"{len(results) - sum(results)}/"
                                     f"{len(results)} checkers report a failure")
                votes.append(vantage.observe(region.name, result, now))
        return votes
