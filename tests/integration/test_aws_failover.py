"""status / failover / failback on the aws target, against moto's HTTP server.

The world a real ``hadeploy up`` builds is created with boto3 in moto (per region: VPC,
ALB, target group, ACM certificate, HTTPS listener, launch template, Auto Scaling group;
globally: a zone, one health check per region, PRIMARY/SECONDARY failover aliases), and
the state files are written by the same functions ``up`` uses (``Stacks.topology``,
``operate_doc``). Then the real CLI runs as a subprocess with ``AWS_ENDPOINT_URL``.

What moto cannot show is not relied on: the ALB's DNS name does not
resolve, so this machine's HTTPS probe always fails — the CLI tests pass ``--force``
(audited as forced) and switch Route 53's checker votes off (``HADEPLOY_ROUTE53_VOTES=0``:
moto's GetHealthCheckStatus is static); the in-process tests inject the probe results
instead, and Route 53's checker votes are tested with botocore's Stubber. moto's target
health is always "healthy" once instances exist, so "wait for a healthy target" is only
shown to pass, never to wait.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from hadeploy import config as hconfig
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.health import ProbeResult
from hadeploy.state import StateDir
from tests.conftest import run_cli
from tests.integration.conftest import fake_aws_env

ZONE = "hadeploy.test"
REGIONS = {"east": "us-east-1", "west": "eu-west-1"}
CONFIG = """name: demo
target: aws
dns: {{zone: {zone}, record: app, ttl: 60}}
regions:
  - {{name: east, role: primary, hosts: 2, standby: hot, aws_region: us-east-1}}
  - {{name: west, role: secondary, hosts: 2, standby: cold, aws_region: eu-west-1}}
failover: {{probe_interval: 1, probe_timeout: 0.5, failure_threshold: 2, quorum: 1}}
aws:
  account_id: "123456789012"
  certificate_arns: {{east: "{east}", west: "{west}"}}
"""


def client(url: str, service: str, region: str = "us-east-1") -> Any:
    return boto3.client(service, endpoint_url=url, region_name=region,
                        config=Config(retries={"max_attempts": 1}))


def build_region(url: str, name: str, aws_region: str, size: tuple[int, int, int]
                 ) -> dict[str, Any]:
    """What the regional stack builds (the parts failover touches) and its outputs."""
    ec2, elb = client(url, "ec2", aws_region), client(url, "elbv2", aws_region)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    azs = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]][:2]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24",
                                 AvailabilityZone=az)["Subnet"]["SubnetId"]
               for i, az in enumerate(azs)]
    alb = elb.create_load_balancer(Name=f"demo-{name}", Subnets=subnets,
                                   Type="application")["LoadBalancers"][0]
    group = elb.create_target_group(Name=f"demo-{name}-tg", Protocol="HTTP", Port=8080,
                                    VpcId=vpc, TargetType="instance",
                                    HealthCheckPath="/healthz")["TargetGroups"][0]
    cert = client(url, "acm", aws_region).request_certificate(
        DomainName=f"app.{ZONE}")["CertificateArn"]
    listener = elb.create_listener(
        LoadBalancerArn=alb["LoadBalancerArn"], Protocol="HTTPS", Port=443,
        Certificates=[{"CertificateArn": cert}],
        DefaultActions=[{"Type": "forward", "TargetGroupArn": group["TargetGroupArn"]}],
    )["Listeners"][0]["ListenerArn"]
    template = ec2.create_launch_template(LaunchTemplateName=f"demo-{name}", LaunchTemplateData={
        "ImageId": "ami-12c6146b", "InstanceType": "t3.small"})["LaunchTemplate"]
    lo, desired, hi = size
    client(url, "autoscaling", aws_region).create_auto_scaling_group(
        AutoScalingGroupName=f"demo-{name}-asg",
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"]}, MinSize=lo,
        MaxSize=hi, DesiredCapacity=desired, VPCZoneIdentifier=",".join(subnets),
        TargetGroupARNs=[group["TargetGroupArn"]])
    return {"region": name, "aws_region": aws_region, "alb_dns_name": alb["DNSName"],
            "alb_zone_id": alb["CanonicalHostedZoneId"],
            "target_group_arn": group["TargetGroupArn"], "https_listener_arn": listener,
            "asg_name": f"demo-{name}-asg", "hosts": 2, "vpc_cidr": "10.20.0.0/16",
            "efs_dns_name": f"fs-{name}.efs.{aws_region}.amazonaws.com", "cert": cert}


def build_dns(url: str, regional: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the global stack builds: zone, health checks, PRIMARY east / SECONDARY west."""
    r53 = client(url, "route53")
    zone = r53.create_hosted_zone(Name=ZONE, CallerReference=f"z-{time.time_ns()}")
    zone_id = str(zone["HostedZone"]["Id"]).rsplit("/", 1)[-1]
    checks = {}
    for name, out in regional.items():
        checks[name] = r53.create_health_check(
            CallerReference=f"hc-{name}-{time.time_ns()}", HealthCheckConfig={
                "Type": "HTTPS", "FullyQualifiedDomainName": out["alb_dns_name"], "Port": 443,
                "ResourcePath": "/healthz", "RequestInterval": 10, "FailureThreshold": 2,
            })["HealthCheck"]["Id"]
    r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
        {"Action": "CREATE", "ResourceRecordSet": {
            "Name": f"app.{ZONE}.", "Type": "A", "SetIdentifier": name, "Failover": kind,
            "HealthCheckId": checks[name], "AliasTarget": {
                "HostedZoneId": regional[name]["alb_zone_id"],
                "DNSName": regional[name]["alb_dns_name"], "EvaluateTargetHealth": True}}}
        for name, kind in (("east", "PRIMARY"), ("west", "SECONDARY"))]})
    return {"zone_id": zone_id, "mode": "active-passive", "health_check_ids": checks,
            "name_servers": list(zone["DelegationSet"]["NameServers"]),
            "fqdn": f"app.{ZONE}", "order": ["east", "west"]}


@pytest.fixture
def world(url: str, tmp_path: Path) -> dict[str, Any]:
    """moto holds what 'up' built; <state>/demo holds what 'up' saved."""
    from hadeploy.targets.aws.driver import Stacks, no_hosts, operate_doc

    regional = {"east": build_region(url, "east", REGIONS["east"], (2, 2, 2)),
                "west": build_region(url, "west", REGIONS["west"], (0, 0, 2))}
    glob = build_dns(url, regional)
    cfg = tmp_path / "hadeploy.yaml"
    cfg.write_text(CONFIG.format(zone=ZONE, east=regional["east"]["cert"],
                                 west=regional["west"]["cert"]))
    dep = hconfig.load(cfg)
    state = StateDir(tmp_path / "state" / dep.name)
    state.save_deployment(dep)
    stacks = Stacks(dep, host_lister=no_hosts)
    state.save_json("topology.json", stacks.topology(regional, glob).to_dict())
    state.save_model("aws.json", operate_doc(dep, stacks.settings, regional, glob))
    return {"url": url, "cfg": cfg, "dep": dep, "state": state, "regional": regional,
            "glob": glob, "tmp": tmp_path}


def hadeploy(world: dict[str, Any], *args: str, votes: bool = False) -> Any:
    env = {"HADEPLOY_STATE_DIR": str(world["tmp"] / "state"), "AWS_ENDPOINT_URL": world["url"],
           "HADEPLOY_ROUTE53_VOTES": "1" if votes else "0", **fake_aws_env()}
    return run_cli(*args, "--config", str(world["cfg"]), cwd=world["tmp"], env=env,
                   timeout=180)


def records(world: dict[str, Any]) -> dict[str, dict[str, Any]]:
    sets = client(world["url"], "route53").list_resource_record_sets(
        HostedZoneId=world["glob"]["zone_id"])["ResourceRecordSets"]
    return {s["Failover"]: s for s in sets if s["Name"] == f"app.{ZONE}." and s["Type"] == "A"}


def alias(rrset: dict[str, Any]) -> str:
    return str(rrset["AliasTarget"]["DNSName"]).rstrip(".").lower()


def fence_rules(world: dict[str, Any], region: str) -> list[dict[str, Any]]:
    out = world["regional"][region]
    rules = client(world["url"], "elbv2", out["aws_region"]).describe_rules(
        ListenerArn=out["https_listener_arn"])["Rules"]
    return [r for r in rules if not r["IsDefault"]]


def asg(world: dict[str, Any], region: str) -> dict[str, Any]:
    out = world["regional"][region]
    return client(world["url"], "autoscaling", out["aws_region"]).describe_auto_scaling_groups(
        AutoScalingGroupNames=[out["asg_name"]])["AutoScalingGroups"][0]


def audit(world: dict[str, Any]) -> list[dict[str, Any]]:
    lines = (world["state"].path / "audit.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def assert_fenced(rules: list[dict[str, Any]]) -> None:
    by_priority = {r["Priority"]: r for r in rules}
    assert set(by_priority) == {"1", "2"}, rules
    reads = by_priority["1"]
    assert reads["Conditions"] == [{"Field": "http-request-method",
                                    "HttpRequestMethodConfig": {"Values": ["GET", "HEAD"]}}]
    assert reads["Actions"][0]["Type"] == "forward"
    (deny,) = by_priority["2"]["Actions"]
    assert deny["Type"] == "fixed-response"
    assert deny["FixedResponseConfig"]["StatusCode"] == "503"


# --- the CLI, end to end (health guard overridden with --force: see the module doc) -----

def test_cli_failover_to_cold_region_then_failback(world: dict[str, Any]) -> None:
    east, west = (world["regional"][r]["alb_dns_name"].lower() for r in ("east", "west"))
    before = records(world)
    assert alias(before["PRIMARY"]) == east and alias(before["SECONDARY"]) == west

    r = hadeploy(world, "failover", "--to", "west", "--yes", "--json", "--force",
                 "--reason", "drill")
    assert r.rc == 0, r.err
    assert "Traceback" not in r.err
    out = json.loads(r.out)
    assert out["result"] == "done" and out["from"] == "east" and out["to"] == "west"
    assert out["forced"] is True and out["dns"]["after"] == [world["regional"]["west"][
        "alb_dns_name"]]
    assert any(a.startswith("scaled demo-west-asg of west to 2") for a in out["actions"])
    assert any(a.startswith("fence east: fenced") for a in out["actions"]), out["actions"]
    assert "health guard overridden by --force" in out["actions"]

    after = records(world)  # swapped, identifiers and health checks kept
    assert alias(after["PRIMARY"]) == west and alias(after["SECONDARY"]) == east
    assert after["PRIMARY"]["SetIdentifier"] == "east"
    assert after["SECONDARY"]["SetIdentifier"] == "west"
    assert after["PRIMARY"]["HealthCheckId"] == world["glob"]["health_check_ids"]["west"]
    assert_fenced(fence_rules(world, "east"))
    assert fence_rules(world, "west") == []
    group = asg(world, "west")
    assert (group["MinSize"], group["DesiredCapacity"]) == (2, 2)
    flags = json.loads((world["state"].path / "regions.json").read_text())
    assert flags == {"version": 1, "fenced": ["east"], "promoted": ["west"],
                     "data_primary": None, "rejoin": []}  # no database tier here
    rec = audit(world)[-1]
    assert rec["operation"] == "failover" and rec["result"] == "done"
    assert rec["forced"] is True and rec["reason"] == "drill" and rec["to"] == "west"

    # Re-running converges: nothing to do, still exit 0; the fence is not duplicated.
    r = hadeploy(world, "failover", "--to", "west", "--yes", "--json", "--force")
    assert r.rc == 0, r.err
    assert json.loads(r.out)["result"] == "already-active"
    assert len(fence_rules(world, "east")) == 2

    # status reads Route 53 and the ALBs' target health (this machine cannot reach the
    # fake ALBs: the regions are unhealthy from here, so the exit code is 1).
    r = hadeploy(world, "status", "--json")
    assert r.rc == 1, r.err
    doc = json.loads(r.out)
    assert doc["schema_version"] == 1 and doc["target"] == "aws"
    assert doc["active_region"] == "west"
    assert doc["dns"]["answer"] == [world["regional"]["west"]["alb_dns_name"]]
    regions = {x["name"]: x for x in doc["regions"]}
    assert regions["east"]["fenced"] is True and regions["west"]["promoted"] is True
    assert regions["west"]["active"] is True
    assert regions["west"]["url"] == f"https://{world['regional']['west']['alb_dns_name']}"
    assert len(regions["west"]["hosts"]) == 2  # the target group's targets
    assert all(h["healthy"] for h in regions["west"]["hosts"])  # moto: always healthy

    # failback: back to east; east's fence lifted, west fenced.
    r = hadeploy(world, "failback", "--yes", "--json", "--force")
    assert r.rc == 0, r.err
    out = json.loads(r.out)
    assert out["from"] == "west" and out["to"] == "east"
    assert "lifted the fence of east" in out["actions"]
    back = records(world)
    assert alias(back["PRIMARY"]) == east and alias(back["SECONDARY"]) == west
    assert fence_rules(world, "east") == []
    assert_fenced(fence_rules(world, "west"))
    assert audit(world)[-1]["operation"] == "failback"


def test_cli_refuses_without_health_and_for_unknown_region(world: dict[str, Any]) -> None:
    before = records(world)
    r = hadeploy(world, "failover", "--to", "west", "--yes", "--json")
    assert r.rc == int(ExitCode.REFUSED), r.err
    out = json.loads(r.out)
    assert out["result"] == "refused" and "not healthy by quorum" in out["error"]
    assert records(world) == before  # DNS untouched
    assert fence_rules(world, "east") == []  # the old primary was not fenced
    assert audit(world)[-1]["result"] == "refused"
    assert not (world["state"].path / "failover-journal.json").exists()

    r = hadeploy(world, "failover", "--to", "south", "--yes", "--json")
    assert r.rc == int(ExitCode.BAD_INPUT) and "unknown region" in r.err

    r = hadeploy(world, "failover", "--to", "west", "--dry-run", "--json")
    assert r.rc == 0 and json.loads(r.out)["result"] == "dry-run"
    assert records(world) == before


# --- the engine in-process, with the health vote injected --------------------------------

def _engine(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, healthy: set[str]) -> Any:
    from hadeploy import failover as fo
    from hadeploy import targets

    def fake_probe(url: str, timeout: float = 1.0) -> ProbeResult:
        ok = any(world["regional"][r]["alb_dns_name"] in url for r in healthy)
        return ProbeResult(url, ok, 200 if ok else None, 1.0, None if ok else "down")

    monkeypatch.setattr(fo, "probe", fake_probe)
    monkeypatch.setenv("AWS_ENDPOINT_URL", world["url"])
    monkeypatch.setenv("HADEPLOY_ROUTE53_VOTES", "0")
    runtime = targets.for_deployment(world["dep"], world["state"]).runtime()
    return fo.FailoverContext.of(world["dep"], world["state"], runtime)


def test_engine_failover_is_one_route53_batch_and_not_forced(
        world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from hadeploy import failover as fo

    ctx = _engine(world, monkeypatch, healthy={"east", "west"})
    dns = ctx.dns
    batches: list[dict[str, Any]] = []
    dns.client().meta.events.register(  # type: ignore[attr-defined]
        "provide-client-params.route53.ChangeResourceRecordSets",
        lambda params, **_kw: batches.append(params["ChangeBatch"]))
    out = fo.failover(ctx, fo.FailoverRequest(to="west", reason="test"))
    assert out.result == "done" and out.forced is False
    assert out.health is not None and out.health["healthy"] is True
    assert len(batches) == 1
    kinds = sorted(c["ResourceRecordSet"]["Failover"] for c in batches[0]["Changes"])
    assert kinds == ["PRIMARY", "SECONDARY"]
    assert all(c["Action"] == "UPSERT" for c in batches[0]["Changes"])
    assert_fenced(fence_rules(world, "east"))
    assert dns.verify_timeout == 120.0


def test_engine_refuses_unhealthy_target(world: dict[str, Any],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from hadeploy import failover as fo

    ctx = _engine(world, monkeypatch, healthy={"east"})
    with pytest.raises(HadeployError) as err:
        fo.failover(ctx, fo.FailoverRequest(to="west", reason="test"))
    assert err.value.code is ExitCode.REFUSED
    assert alias(records(world)["PRIMARY"]) == world["regional"]["east"]["alb_dns_name"].lower()


def test_fence_of_an_unreachable_region_is_reported_not_raised(
        world: dict[str, Any]) -> None:
    from hadeploy.targets.aws.ops import AwsRegionOps

    doc, topo = _operate(world)
    ops = AwsRegionOps(world["dep"], world["state"], doc, endpoint_url="http://127.0.0.1:9")
    with world["state"].lock("failover"):
        result = ops.fence(topo.region("east"), timeout=1)
    assert result.text.startswith("unreachable, recorded as fenced"), result
    assert result.certain is False, "an unreachable listener may still take writes"
    assert world["state"].region_flags().fenced == ("east",)


def _operate(world: dict[str, Any]) -> Any:
    from hadeploy.targets.aws.ops import OperateDoc
    from hadeploy.topology import Topology

    doc = OperateDoc.model_validate_json((world["state"].path / "aws.json").read_text())
    topo = Topology.from_dict(json.loads((world["state"].path / "topology.json").read_text()))
    return doc, topo


def test_aws_json_holds_what_operating_needs(world: dict[str, Any]) -> None:
    doc = json.loads((world["state"].path / "aws.json").read_text())
    assert doc["mode"] == "failover" and doc["zone_id"] == world["glob"]["zone_id"]
    for name in ("east", "west"):
        region = doc["regions"][name]
        assert region["health_check_id"] == world["glob"]["health_check_ids"][name]
        for key in ("alb_dns_name", "alb_zone_id", "asg_name", "target_group_arn",
                    "https_listener_arn", "aws_region"):
            assert region[key], key


# --- Route 53's health checkers as vantage points (Stubber: moto's status is static) ------

def _observations(statuses: dict[str, list[str]]) -> dict[str, Any]:
    return {"HealthCheckObservations": [
        {"Region": region, "IPAddress": f"192.0.2.{i}",
         "StatusReport": {"Status": s, "CheckedTime": "2026-01-01T00:00:00Z"}}
        for region, values in statuses.items() for i, s in enumerate(values)]}


def test_route53_checkers_vote_per_checker_region(world: dict[str, Any]) -> None:
    from hadeploy.config import FailoverPolicy
    from hadeploy.quorum import assess
    from hadeploy.targets.aws.ops import Route53Checkers

    doc, topo = _operate(world)
    r53 = boto3.client("route53", region_name="us-east-1")
    stub = Stubber(r53)
    ok, bad = "Success: HTTP Status Code 200, OK", "Failure: Connection timed out."
    checks = world["glob"]["health_check_ids"]
    for _round in range(2):
        stub.add_response("get_health_check_status", _observations(
            {"us-east-1": [ok, ok], "eu-west-1": [ok, ok], "ap-southeast-1": [ok, bad]}),
            {"HealthCheckId": checks["east"]})
        stub.add_response("get_health_check_status", _observations(
            {"us-east-1": [bad, bad], "eu-west-1": [bad, ok], "ap-southeast-1": [bad, bad]}),
            {"HealthCheckId": checks["west"]})
    checkers = Route53Checkers(doc, client_factory=lambda *_a: r53)
    with stub:
        checkers(topo)
        votes = checkers(topo)
    stub.assert_no_pending_responses()
    east = {v.vantage: v for v in votes if v.region == "east"}
    west = {v.vantage: v for v in votes if v.region == "west"}
    assert set(east) == {"route53@us-east-1", "route53@eu-west-1", "route53@ap-southeast-1"}
    assert east["route53@us-east-1"].ok and east["route53@us-east-1"].consecutive_successes == 2
    assert not east["route53@ap-southeast-1"].ok  # 1 of 2: not a majority
    assert all(not v.ok and v.consecutive_failures == 2 for v in west.values())
    policy = FailoverPolicy(quorum=2, failure_threshold=2)
    assert assess("west", votes, policy).down
    assert assess("east", votes, policy).healthy and not assess("east", votes, policy).down


def test_route53_checkers_that_cannot_be_asked_do_not_vote(world: dict[str, Any]) -> None:
    from hadeploy.targets.aws.ops import Route53Checkers

    doc, topo = _operate(world)
    r53 = boto3.client("route53", region_name="us-east-1")
    stub = Stubber(r53)
    for _ in range(2):
        stub.add_client_error("get_health_check_status", "AccessDenied", "denied")
    with stub:
        assert Route53Checkers(doc, client_factory=lambda *_a: r53)(topo) == []


def test_cli_watch_runs_on_aws_and_never_moves_traffic_to_an_unhealthy_region(
        world: dict[str, Any]) -> None:
    """From here every fake ALB is unreachable: watch sees east — and west — down by
    quorum (quorum 1, this machine's vote), so there is nowhere safe to go: DNS is left
    alone and every decision is audited."""
    before = records(world)
    r = hadeploy(world, "watch", "--max-seconds", "4")
    assert r.rc == 0, r.err
    assert "Traceback" not in r.err
    decisions = [a.get("decision", "") for a in audit(world) if a["operation"] == "watch"]
    assert any("region east is down by quorum" in d for d in decisions), decisions
    assert "east is down and no other region is healthy: DNS left as it is" in decisions
    assert records(world) == before
    assert fence_rules(world, "east") == []
