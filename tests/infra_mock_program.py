"""Build ONE hadeploy Pulumi program under Pulumi's mocks and dump the recorded graph.

Pulumi's runtime keeps global state: a program must be built once per process (a second
build in the same process silently registers duplicate URNs). So every scenario runs this
file in its own subprocess::

    python tests/infra_mock_program.py scenario.json > graph.json

The scenario is ``{"deployment": <hadeploy.yaml as a dict, with an "aws" section>,
"program": "regional"|"global", "region": <name> (regional), "config": {key: value}
(stack config in the "hadeploy" namespace), "stack_outputs": {<stack ref>: {...}} (global),
"az_counts": {<aws region>: n}, "preview": bool (ids and computed outputs unknown, as in a
first ``pulumi preview``), "via_main": bool (run the stack project's ``__main__.py`` as
the plain pulumi CLI would)}``. The graph is ``{"resources": [{urn, type, name, custom,
parent, provider, dependencies, property_dependencies, ignore_changes, inputs, outputs}],
"calls": [{token, provider, args}], "exports": {...}, "timing": {import_s, build_s}}``.
Secrets appear as ``{"__secret__": true}``.

The module also holds what the tests share: scenario builders and :func:`build_graphs`,
which runs builds in parallel subprocesses.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ACCOUNT = "123456789012"
AWS_REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2", "us-west-2", "eu-central-1",
               "ap-northeast-1", "sa-east-1", "ca-central-1", "eu-north-1", "ap-south-1",
               "us-east-2", "eu-west-2"]
AZ_TOKEN = "aws:index/getAvailabilityZones:getAvailabilityZones"


# --- scenarios ---------------------------------------------------------------------------

def deployment(n_regions: int, standby: str = "hot", *, hosts: int = 2,
               mode: str = "active-passive", data: bool = False,
               **aws_extra: Any) -> dict[str, Any]:
    """A hadeploy.yaml (as a dict) with ``n_regions`` regions named after AWS regions; the
    first is the hot primary, the others have ``standby``; ``data``: with the database
    tier (an Aurora Global Database)."""
    regions = []
    for i in range(n_regions):
        name = AWS_REGIONS[i]
        regions.append({"name": name, "role": "primary" if i == 0 else "secondary",
                        "hosts": hosts, "standby": "hot" if i == 0 else standby,
                        "aws_region": name})
    aws = {"account_id": ACCOUNT, "mode": mode,
           "certificate_arns": {r["name"]: f"arn:aws:acm:{r['aws_region']}:{ACCOUNT}:"
                                f"certificate/0000-{i}" for i, r in enumerate(regions)}}
    aws.update(aws_extra)
    return {"name": "demo", "target": "aws",
            "dns": {"zone": "example.com", "record": "app"},
            "regions": regions, "failover": {"quorum": min(2, n_regions)}, "aws": aws,
            **({"data": {"enabled": True}} if data else {})}


def regional_scenario(dep: dict[str, Any], region: str, **config: Any) -> dict[str, Any]:
    cfg = {"appSecret": "s3cr3t-value", **config}
    return {"deployment": dep, "program": "regional", "region": region, "config": cfg}


def global_scenario(dep: dict[str, Any], org: str = "organization") -> dict[str, Any]:
    outputs = {}
    for r in dep["regions"]:
        ref = f"{org}/hadeploy-regional/{dep['name']}-{r['name']}"
        outputs[ref] = {"alb_dns_name": f"app-alb-{r['name']}.elb.amazonaws.com",
                        "alb_zone_id": f"ZALB{r['aws_region'].replace('-', '').upper()}"}
    return {"deployment": dep, "program": "global", "stack_outputs": outputs, "config": {}}


def steady_scenarios(dep: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every stack of a deployment as the driver's converged ``up`` builds it: regions see
    their peer (``peerReady``), the primary knows its peer's file system id."""
    scenarios = {}
    n = len(dep["regions"])
    for region in dep["regions"]:
        config: dict[str, Any] = {"peerReady": n > 1,
                                  "globalDbReady": bool(dep.get("data", {}).get("enabled"))}
        if region["role"] == "primary" and n > 1:
            config["peerEfsId"] = "fs-0123456789abcdef0"  # as EFS writes ids
        scenarios[f"{prefix}{region['name']}"] = regional_scenario(dep, region["name"], **config)
    scenarios[f"{prefix}global"] = global_scenario(dep)
    return scenarios


def scenario_key(scenario: dict[str, Any]) -> str:
    """Scenarios whose programs receive the same plan and config build the same graph."""
    from hadeploy.infra.settings import load_stack_config, plan_global, plan_region

    dep, settings = load_stack_config(scenario["deployment"])
    if scenario["program"] == "regional":
        plan: Any = plan_region(dep, settings, scenario["region"])
    else:
        stacks = scenario.get("regional_stacks")
        plan = (plan_global(dep, settings, list(stacks) if stacks is not None else None),
                stacks, settings.account_id)
    extra = {k: scenario.get(k) for k in ("config", "stack_outputs", "az_counts", "preview",
                                          "via_main")}
    return repr(plan) + json.dumps(extra, sort_keys=True)


_CACHE: dict[str, dict[str, Any]] = {}


def build_graph(scenario: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "-"], input=json.dumps(scenario),
                          capture_output=True, text=True, timeout=timeout, check=False,
                          cwd=REPO, env={**os.environ, "PULUMI_CONFIG": "{}"})
    if proc.returncode != 0:
        raise RuntimeError(f"mock build failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}")
    return dict(json.loads(proc.stdout))


def build_graphs(scenarios: dict[str, dict[str, Any]],
                 workers: int | None = None) -> dict[str, dict[str, Any]]:
    """Build every distinct scenario once (cached for the whole test session), each in its
    own subprocess, ``workers`` at a time (default: one per core). Callers that mutate a
    graph must deep-copy it first."""
    keys = {name: scenario_key(sc) for name, sc in scenarios.items()}
    todo: dict[str, dict[str, Any]] = {}
    for name, key in keys.items():
        if key not in _CACHE:
            todo.setdefault(key, scenarios[name])
    if todo:
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
            futures = {key: pool.submit(build_graph, sc) for key, sc in todo.items()}
            _CACHE.update({key: f.result() for key, f in futures.items()})
    return {name: _CACHE[key] for name, key in keys.items()}


# --- graph queries and the invariants every graph must satisfy ---------------------------
# Each check returns a list of problems (empty = fine), so that tests can show that it
# fails on a deliberately broken graph.

SUBNET = "aws:ec2/subnet:Subnet"
SG = "aws:ec2/securityGroup:SecurityGroup"
ASG = "aws:autoscaling/group:Group"
EFS = "aws:efs/fileSystem:FileSystem"
MOUNT_TARGET = "aws:efs/mountTarget:MountTarget"
RECORD = "aws:route53/record:Record"
HEALTH_CHECK = "aws:route53/healthCheck:HealthCheck"
# Where a regional stack may name its peer region: plain strings by design.
PEER_FIELDS = {
    "aws:efs/replicationConfiguration:ReplicationConfiguration": ("destination",),
    "aws:backup/plan:Plan": ("rules",),
    "aws:s3/bucketReplicationConfig:BucketReplicationConfig": ("rules",),
    "aws:iam/rolePolicy:RolePolicy": ("policy",),
}


def of_type(graph: dict[str, Any], typ: str) -> list[dict[str, Any]]:
    return [r for r in graph["resources"] if r["type"] == typ]


def one(graph: dict[str, Any], typ: str, name: str | None = None) -> dict[str, Any]:
    found = [r for r in of_type(graph, typ) if name is None or r["name"] == name]
    assert len(found) == 1, f"expected one {typ} {name or ''}, found {len(found)}"
    return found[0]


def by_urn(graph: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["urn"]: r for r in graph["resources"]}


def deps_of(graph: dict[str, Any], resource: dict[str, Any], prop: str,
            typ: str | None = None) -> list[dict[str, Any]]:
    index = by_urn(graph)
    found = [index[u] for u in resource["property_dependencies"].get(prop, []) if u in index]
    return [r for r in found if typ is None or r["type"] == typ]


def azs_of(subnets: list[dict[str, Any]]) -> set[str]:
    return {s["inputs"].get("availabilityZone") for s in subnets}


def tag_value(resource: dict[str, Any], key: str) -> str | None:
    tags = resource["inputs"].get("tags")
    if isinstance(tags, dict):
        return tags.get(key)
    for item in tags or []:
        if item.get("key") == key:
            return str(item.get("value"))
    return None


def _strings(value: Any, path: str = "") -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [hit for k, v in value.items() for hit in _strings(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [hit for i, v in enumerate(value) for hit in _strings(v, f"{path}[{i}]")]
    return []


def isolation_problems(graph: dict[str, Any], dep: dict[str, Any], region: str) -> list[str]:
    """The regional graph uses only its region's provider and references nothing outside
    itself; another region appears only in the peer fields (plain configuration strings)."""
    me = next(r for r in dep["regions"] if r["name"] == region)
    problems = []
    providers = of_type(graph, "pulumi:providers:aws")
    if len(providers) != 1 or providers[0]["inputs"].get("region") != me["aws_region"]:
        problems.append(f"expected one aws provider for {me['aws_region']}, found "
                        f"{[p['inputs'].get('region') for p in providers]}")
    provider_urns = {p["urn"] for p in providers if p["inputs"].get("region") == me["aws_region"]}
    urns = {r["urn"] for r in graph["resources"]}
    for r in graph["resources"]:
        if r["type"] == "pulumi:pulumi:StackReference":
            problems.append(f"{r['name']}: a regional stack references another stack")
        if r["custom"] and not r["type"].startswith("pulumi:") and \
                r["provider"] not in provider_urns:
            problems.append(f"{r['type']} {r['name']} uses provider {r['provider']}")
        refs = set(r["dependencies"]) | {u for us in r["property_dependencies"].values()
                                         for u in us}
        if r["parent"] and not r["parent"].endswith("::pulumi:pulumi:Stack::"
                                                    f"{graph['project']}-{graph['stack']}"):
            refs.add(r["parent"])
        for urn in sorted(refs - urns):
            problems.append(f"{r['name']} references {urn}, not in this stack")
        others = [o for o in dep["regions"] if o["name"] != region]
        allowed = PEER_FIELDS.get(r["type"], ())
        for path, text in _strings(r["inputs"]):
            for other in others:
                if (other["aws_region"] in text or f"-{other['name']}" in text) and \
                        not any(path.startswith(f".{f}") for f in allowed):
                    problems.append(f"{r['name']}{path} names region {other['name']}: {text}")
    return problems


def network_problems(graph: dict[str, Any], aws_region: str, min_azs: int = 3) -> list[str]:
    problems = []
    subnets = of_type(graph, SUBNET)
    private = [s for s in subnets if tag_value(s, "hadeploy:subnet") == "private"]
    public = [s for s in subnets if tag_value(s, "hadeploy:subnet") == "public"]
    azs = azs_of(private)
    if len(azs) < min_azs or azs != azs_of(public):
        problems.append(f"private subnets in {sorted(azs)}, public in {sorted(azs_of(public))}"
                        f": need the same ≥{min_azs} AZs")
    if not all(str(az).startswith(aws_region) for az in azs):
        problems.append(f"AZs {sorted(azs)} are not all in {aws_region}")
    nats = of_type(graph, "aws:ec2/natGateway:NatGateway")
    nat_azs = {az for n in nats for az in azs_of(deps_of(graph, n, "subnetId", SUBNET))}
    if nat_azs != azs_of(public) or len(nats) != len(public):
        problems.append(f"NAT gateways in {sorted(nat_azs)}: need one per AZ")
    if len(of_type(graph, "aws:ec2/internetGateway:InternetGateway")) != 1:
        problems.append("no internet gateway")
    for r in of_type(graph, "aws:ec2/routeTable:RouteTable"):
        routes = r["inputs"].get("routes") or []
        if not any(x.get("natGatewayId") or x.get("gatewayId") for x in routes):
            problems.append(f"route table {r['name']} has no default route")
    return problems


def cluster_problems(graph: dict[str, Any], dep: dict[str, Any], region: str) -> list[str]:
    me = next(r for r in dep["regions"] if r["name"] == region)
    hosts, standby = me.get("hosts", 2), me.get("standby", "hot")
    want = {"hot": (hosts, hosts, hosts), "warm": (max(1, hosts // 2),) * 2 + (hosts,),
            "cold": (0, 0, hosts)}[standby]
    problems = []
    asg = one(graph, ASG)
    got = tuple(int(asg["inputs"].get(k, -1)) for k in ("minSize", "desiredCapacity", "maxSize"))
    if got != want:
        problems.append(f"ASG (min, desired, max) = {got} for {standby}, want {want}")
    asg_subnets = deps_of(graph, asg, "vpcZoneIdentifiers", SUBNET)
    if len(azs_of(asg_subnets)) < 2 or any(tag_value(s, "hadeploy:subnet") != "private"
                                           for s in asg_subnets):
        problems.append(f"ASG subnets {[s['name'] for s in asg_subnets]}: need private ≥2 AZs")
    if tag_value(asg, "hadeploy:standby") != standby:
        problems.append("ASG lacks its standby tag")
    refresh = asg["inputs"].get("instanceRefresh") or {}
    prefs = refresh.get("preferences") or {}
    if refresh.get("strategy") != "Rolling" or int(prefs.get("minHealthyPercentage", 0)) < 100 \
            or int(prefs.get("maxHealthyPercentage", 100)) <= 100:
        problems.append("a new launch template does not roll out launch-before-terminate "
                        "(instance refresh with min 100 % healthy)")
    lt = one(graph, "aws:ec2/launchTemplate:LaunchTemplate")
    if (lt["inputs"].get("metadataOptions") or {}).get("httpTokens") != "required":
        problems.append("launch template does not require IMDSv2")
    if len(lt["inputs"].get("userData", "")) > 1400:
        problems.append("user data is not minimal")
    ssm = [a for a in of_type(graph, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
           if a["inputs"]["policyArn"].endswith(":policy/AmazonSSMManagedInstanceCore")]
    if len(ssm) != 1:
        problems.append("host role lacks AmazonSSMManagedInstanceCore")
    alb = one(graph, "aws:lb/loadBalancer:LoadBalancer")
    alb_subnets = deps_of(graph, alb, "subnets", SUBNET)
    if len(azs_of(alb_subnets)) < 2 or any(tag_value(s, "hadeploy:subnet") != "public"
                                           for s in alb_subnets):
        problems.append("ALB is not in public subnets of ≥2 AZs")
    listeners = {int(x["inputs"]["port"]): x for x in of_type(graph, "aws:lb/listener:Listener")}
    https, http = listeners.get(443), listeners.get(80)
    cert = (dep["aws"].get("certificate_arns") or {}).get(region)
    if cert is None:  # requested by the stack, DNS-validated in the configured zone
        problems += certificate_problems(graph, dep, https)
    elif not https or https["inputs"].get("protocol") != "HTTPS" or \
            https["inputs"].get("certificateArn") != cert:
        problems.append("no HTTPS listener with the configured certificate")
    elif of_type(graph, "aws:acm/certificate:Certificate"):
        problems.append("a certificate was requested although one is configured")
    redirect = ((http or {}).get("inputs", {}).get("defaultActions") or [{}])[0]
    if not http or (redirect.get("redirect") or {}).get("protocol") != "HTTPS":
        problems.append("HTTP listener does not redirect to HTTPS")
    tg = one(graph, "aws:lb/targetGroup:TargetGroup")
    check = tg["inputs"].get("healthCheck") or {}
    if check.get("path") != dep.get("app", {}).get("health_path", "/healthz") or \
            int(tg["inputs"]["port"]) != dep.get("app", {}).get("port", 8080):
        problems.append(f"target group health check {check} / port {tg['inputs']['port']}")
    problems += security_group_problems(graph, dep.get("app", {}).get("port", 8080))
    return problems


def certificate_problems(graph: dict[str, Any], dep: dict[str, Any],
                         https: dict[str, Any] | None) -> list[str]:
    """No certificate ARN configured: the stack requests one for the app's name, validated
    by DNS in the configured hosted zone, and the HTTPS listener waits until it is issued;
    the validation record, shared by every region's certificate, outlives the stack."""
    problems = []
    domain = f"{dep['dns']['record']}.{dep['dns']['zone']}"
    certs = of_type(graph, "aws:acm/certificate:Certificate")
    if len(certs) != 1 or certs[0]["inputs"].get("domainName") != domain or \
            certs[0]["inputs"].get("validationMethod") != "DNS":
        problems.append(f"no DNS-validated certificate requested for {domain}")
        return problems
    records = [r for r in of_type(graph, RECORD) if r["inputs"].get("type") == "CNAME"]
    validations = of_type(graph, "aws:acm/certificateValidation:CertificateValidation")
    if len(records) != 1 or records[0]["inputs"].get("zoneId") != dep["aws"].get("zone_id"):
        problems.append("the validation record is not in the configured hosted zone")
    elif not records[0]["retain_on_delete"]:
        problems.append("the validation record would be deleted with one region's stack")
    if len(validations) != 1 or certs[0]["urn"] not in \
            validations[0]["property_dependencies"].get("certificateArn", []) or \
            (records and records[0]["urn"] not in \
            validations[0]["property_dependencies"].get("validationRecordFqdns", [])):
        problems.append("the certificate's validation does not wait for its record")
    elif not https or https["inputs"].get("protocol") != "HTTPS" or validations[0]["urn"] \
            not in https["property_dependencies"].get("certificateArn", []):
        problems.append("the HTTPS listener does not wait for the validated certificate")
    return problems


def security_group_problems(graph: dict[str, Any], app_port: int) -> list[str]:
    problems = []
    groups = {tag_value(g, "hadeploy:tier"): g for g in of_type(graph, SG)}
    for g in of_type(graph, SG):
        for rule in g["inputs"].get("ingress") or []:
            world = set(rule.get("cidrBlocks") or []) | set(rule.get("ipv6CidrBlocks") or [])
            world &= {"0.0.0.0/0", "::/0"}
            ports = (rule.get("protocol"), int(rule.get("fromPort", 0)), int(rule.get("toPort", 0)))
            if world and (g is not groups.get("alb") or ports not in {("tcp", 80, 80),
                                                                      ("tcp", 443, 443)}):
                problems.append(f"{g['name']} opens {ports} to {sorted(world)}")
    for tier, source, port in (("app", "alb", app_port), ("storage", "app", 2049)):
        g = groups.get(tier)
        if g is None:
            problems.append(f"no {tier} security group")
            continue
        rules = g["inputs"].get("ingress") or []
        sources = deps_of(graph, g, "ingress", SG)
        ok = (source in groups and len(rules) == 1 and not rules[0].get("cidrBlocks")
              and int(rules[0]["fromPort"]) == int(rules[0]["toPort"]) == port
              and [s["urn"] for s in sources] == [groups[source]["urn"]])
        if not ok:
            problems.append(f"{tier} security group must accept only port {port} from the "
                            f"{source} group: {rules}")
    return problems


def storage_problems(graph: dict[str, Any], *, replicate_to: str | None) -> list[str]:
    problems = []
    fs = one(graph, EFS)
    if fs["inputs"].get("encrypted") is not True:
        problems.append("EFS is not encrypted at rest")
    host_azs = azs_of(deps_of(graph, one(graph, ASG), "vpcZoneIdentifiers", SUBNET))
    mounted = {az for mt in of_type(graph, MOUNT_TARGET)
               if deps_of(graph, mt, "fileSystemId", EFS)
               for az in azs_of(deps_of(graph, mt, "subnetId", SUBNET))}
    if host_azs - mounted:
        problems.append(f"no EFS mount target in {sorted(host_azs - mounted)}")
    if len(of_type(graph, "aws:efs/accessPoint:AccessPoint")) != 1:
        problems.append("no EFS access point")
    replication = of_type(graph, "aws:efs/replicationConfiguration:ReplicationConfiguration")
    got = replication[0]["inputs"]["destination"]["region"] if replication else None
    if got != replicate_to:
        problems.append(f"EFS replicates to {got}, want {replicate_to}")
    exports = graph.get("exports") or {}
    if exports and exports.get("efs_mount_source") != f"{exports.get('efs_dns_name')}:/":
        problems.append(f"the hosts would mount {exports.get('efs_mount_source')!r}: role "
                        "shared_storage needs the NFS source '<EFS DNS name>:/'")
    return problems


def backup_problems(graph: dict[str, Any], aws_region: str, *, copy_region: str | None,
                    replicate_bucket: str | None) -> list[str]:
    problems = []
    plan = one(graph, "aws:backup/plan:Plan")
    for rule in plan["inputs"]["rules"]:
        regions = [c["destinationVaultArn"].split(":")[3] for c in rule.get("copyActions") or []]
        if copy_region and (copy_region not in regions or aws_region in regions):
            problems.append(f"backup rule copies to {regions}, want {copy_region}")
        if not copy_region and regions:
            problems.append(f"backup rule copies to {regions} without a peer")
    selection = one(graph, "aws:backup/selection:Selection")
    tags = selection["inputs"].get("selectionTags") or []
    fs_tag = tag_value(one(graph, EFS), "hadeploy:backup")
    if not tags or tags[0].get("value") != fs_tag or fs_tag is None:
        problems.append(f"backup selection {tags} does not select the EFS (tag {fs_tag})")
    versioning = one(graph, "aws:s3/bucketVersioning:BucketVersioning")
    if versioning["inputs"]["versioningConfiguration"]["status"] != "Enabled":
        problems.append("artifacts bucket is not versioned")
    if not of_type(graph, "aws:s3/bucketServerSideEncryptionConfiguration:"
                          "BucketServerSideEncryptionConfiguration"):
        problems.append("artifacts bucket has no default encryption")
    pab = one(graph, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")["inputs"]
    if not all(pab.get(k) is True for k in ("blockPublicAcls", "blockPublicPolicy",
                                             "ignorePublicAcls", "restrictPublicBuckets")):
        problems.append(f"artifacts bucket public access not fully blocked: {pab}")
    replication = of_type(graph, "aws:s3/bucketReplicationConfig:BucketReplicationConfig")
    got = replication[0]["inputs"]["rules"][0]["destination"]["bucket"] if replication else None
    if got != replicate_bucket:
        problems.append(f"artifacts bucket replicates to {got}, want {replicate_bucket}")
    return problems


def dns_problems(graph: dict[str, Any], dep: dict[str, Any]) -> list[str]:
    problems = []
    providers = of_type(graph, "pulumi:providers:aws")
    urns = {p["urn"] for p in providers}
    for r in graph["resources"]:
        if r["custom"] and r["type"].startswith("aws:") and r["provider"] not in urns:
            problems.append(f"{r['name']} uses provider {r['provider']}")
    regions = [r for r in dep["regions"] if r["role"] == "primary"] + \
        [r for r in dep["regions"] if r["role"] != "primary"]
    checks = {tag_value(h, "hadeploy:region"): h for h in of_type(graph, HEALTH_CHECK)}
    if set(checks) != {r["name"] for r in regions}:
        problems.append(f"health checks for {sorted(checks)}")
    for name, h in checks.items():
        i = h["inputs"]
        if i.get("type") != "HTTPS" or i.get("resourcePath") != dep.get("app", {}).get(
                "health_path", "/healthz") or len(i.get("regions") or []) < 3 or \
                int(i.get("requestInterval", 0)) not in (10, 30) or \
                not 1 <= int(i.get("failureThreshold", 0)) <= 10:
            problems.append(f"health check of {name}: {i}")
    records = of_type(graph, RECORD)
    for r in records:
        for alias in r["inputs"].get("aliases") or []:
            if alias.get("evaluateTargetHealth") is not True:
                problems.append(f"{r['name']} alias does not evaluate target health")
    mode = dep["aws"].get("mode", "active-passive")
    fqdn = f"{dep['dns']['record']}.{dep['dns']['zone']}"
    if len(regions) == 1:
        if len(records) != 1 or records[0]["inputs"]["name"] != fqdn:
            problems.append(f"one region: want a single {fqdn} record, got {len(records)}")
        return problems
    if mode == "active-weighted":
        weighted = [r for r in records if r["inputs"].get("weightedRoutingPolicies")]
        if len(weighted) != len(regions) or any(not r["inputs"].get("healthCheckId")
                                                for r in weighted):
            problems.append("weighted mode: want one health-checked record per region")
        return problems
    by_name: dict[str, dict[str, dict[str, Any]]] = {}
    for r in records:
        for policy in r["inputs"].get("failoverRoutingPolicies") or []:
            by_name.setdefault(r["inputs"]["name"], {})[policy["type"]] = r
    for name, kinds in by_name.items():
        if set(kinds) != {"PRIMARY", "SECONDARY"}:
            problems.append(f"failover name {name} has {sorted(kinds)}")
    # Walk the chain from the app name: it must visit every region in configured order.
    order, name = [], fqdn
    for _ in range(len(regions) + 1):
        kinds = by_name.get(name)
        if not kinds or set(kinds) != {"PRIMARY", "SECONDARY"}:
            break
        order.append(kinds["PRIMARY"]["inputs"]["setIdentifier"])
        secondary = kinds["SECONDARY"]["inputs"]
        target = secondary["aliases"][0]["name"]
        if target in by_name:
            name = target
            continue
        order.append(secondary["setIdentifier"])
        break
    if order != [r["name"] for r in regions]:
        problems.append(f"failover order {order}, want {[r['name'] for r in regions]}")
    # Route 53 rejects an alias to a name that has no record yet: a SECONDARY that aliases
    # the next level's name is created after both of that name's records.
    for r in records:
        target = ((r["inputs"].get("aliases") or [{}])[0]).get("name")
        late = sorted(x["name"] for x in (by_name.get(target) or {}).values()
                      if x["urn"] not in r["dependencies"])
        if late:
            problems.append(f"{r['name']} aliases {target} but does not depend on {late}")
    for r in records:
        kinds = [p["type"] for p in r["inputs"].get("failoverRoutingPolicies") or []]
        is_chain = r["inputs"]["aliases"][0]["name"] in by_name
        if kinds and not is_chain and not r["inputs"].get("healthCheckId"):
            problems.append(f"{r['name']} points at a region without a health check")
    return problems


RDS_CLUSTER = "aws:rds/cluster:Cluster"
RDS_INSTANCE = "aws:rds/clusterInstance:ClusterInstance"
RDS_GLOBAL = "aws:rds/globalCluster:GlobalCluster"


def database_problems(graph: dict[str, Any], dep: dict[str, Any], region: str, *,
                      joined: bool = True) -> list[str]:
    """The region's Aurora member: encrypted with its own region's key, private, reachable
    on 5432 from the app hosts only, in private subnets of ≥2 AZs, in the deployment's
    global cluster (created by the primary's stack only), credentials only where the global
    cluster is created (kept by RDS, never in the stack), a final snapshot, no public
    instance. ``joined``: the secondary already joined (the driver's second pass)."""
    from hadeploy.infra.settings import load_stack_config, plan_region

    deployment_, settings = load_stack_config(dep)
    plan = plan_region(deployment_, settings, region).database
    clusters, globals_ = of_type(graph, RDS_CLUSTER), of_type(graph, RDS_GLOBAL)
    instances = of_type(graph, RDS_INSTANCE)
    if plan is None or not (plan.creates_global or joined):
        return [f"{len(clusters) + len(globals_) + len(instances)} database resources where "
                "none belong"] if clusters or globals_ or instances else []
    problems = []
    if len(globals_) != (1 if plan.creates_global else 0):
        problems.append(f"{len(globals_)} global clusters; only the primary's stack owns it")
    for g in globals_:
        if g["inputs"].get("storageEncrypted") is not True or \
                g["inputs"].get("globalClusterIdentifier") != plan.global_id:
            problems.append("the global cluster is not encrypted or misnamed")
    if len(clusters) != 1:
        return [*problems, f"{len(clusters)} Aurora clusters, want 1"]
    c = clusters[0]["inputs"]
    if c.get("globalClusterIdentifier") != plan.global_id or \
            c.get("engine") != "aurora-postgresql":
        problems.append("the cluster is not an aurora-postgresql member of the global cluster")
    keys = deps_of(graph, clusters[0], "kmsKeyId", "aws:kms/key:Key")
    if c.get("storageEncrypted") is not True or len(keys) != 1:
        problems.append("the cluster is not encrypted with its region's own KMS key")
    if c.get("skipFinalSnapshot") is not False or int(c.get("backupRetentionPeriod", 0)) < 1:
        problems.append("the cluster has no backups or no final snapshot")
    creds = {k for k in ("masterUsername", "masterPassword", "manageMasterUserPassword")
             if c.get(k)}
    want = {"masterUsername", "manageMasterUserPassword"} if plan.creates_global else set()
    if creds != want:
        problems.append(f"credentials {sorted(creds)}, want {sorted(want)} (a secondary gets "
                        "them by replication; a password never sits in the stack)")
    groups = deps_of(graph, clusters[0], "vpcSecurityGroupIds", SG)
    host_groups = [g for g in of_type(graph, SG) if tag_value(g, "hadeploy:tier") == "app"]
    rules = groups[0]["inputs"].get("ingress") or [] if len(groups) == 1 else []
    sources = deps_of(graph, groups[0], "ingress", SG) if len(groups) == 1 else []
    if not (len(groups) == 1 and len(rules) == 1 and not rules[0].get("cidrBlocks")
            and int(rules[0]["fromPort"]) == int(rules[0]["toPort"]) == 5432
            and [x["urn"] for x in sources] == [h["urn"] for h in host_groups]):
        problems.append(f"the database must accept only 5432 from the app hosts: {rules}")
    subnet_groups = deps_of(graph, clusters[0], "dbSubnetGroupName",
                            "aws:rds/subnetGroup:SubnetGroup")
    subnets = deps_of(graph, subnet_groups[0], "subnetIds", SUBNET) if subnet_groups else []
    if len(azs_of(subnets)) < 2 or any(tag_value(x, "hadeploy:subnet") != "private"
                                       for x in subnets):
        problems.append("the database is not in private subnets of ≥2 AZs")
    if len(instances) != plan.instances or any(
            i["inputs"].get("publiclyAccessible") is not False
            or i["inputs"].get("instanceClass") != plan.instance_class for i in instances):
        problems.append(f"{len(instances)} instances, want {plan.instances} private "
                        f"{plan.instance_class}")
    missing = {"db_cluster_id", "db_endpoint", "db_reader_endpoint",
               "db_global_cluster_id"} - {k for k, v in graph["exports"].items() if v}
    if missing:
        problems.append(f"exports lack {sorted(missing)}")
    return problems


VAULT = "aws:backup/vault:Vault"
VAULT_LOCK = "aws:backup/vaultLockConfiguration:VaultLockConfiguration"
RESTORE_PLAN = "aws:backup/restoreTestingPlan:RestoreTestingPlan"
RESTORE_SELECTION = "aws:backup/restoreTestingSelection:RestoreTestingSelection"
BUCKET = "aws:s3/bucket:Bucket"
KMS_KEY = "aws:kms/key:Key"
# What holds or protects backups: kept on destroy unless --delete-backups.
KEPT = (VAULT, VAULT_LOCK, BUCKET, "aws:s3/bucketVersioning:BucketVersioning",
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", KMS_KEY)


def selected_data_problems(graph: dict[str, Any]) -> list[str]:
    """The backup plan's tag selection picks every data store of the region (the EFS and
    the Aurora cluster), and the plan copies every rule to a vault in another region."""
    problems = []
    provider = one(graph, "pulumi:providers:aws")["inputs"].get("region")
    selection = one(graph, "aws:backup/selection:Selection")["inputs"]
    selected = {(t.get("key"), t.get("value")) for t in selection.get("selectionTags") or []
                if t.get("type") == "STRINGEQUALS"}
    for store in of_type(graph, EFS) + of_type(graph, RDS_CLUSTER):
        tag = ("hadeploy:backup", tag_value(store, "hadeploy:backup"))
        if tag[1] is None or tag not in selected:
            problems.append(f"{store['type'].split(':')[-1]} {store['name']} is not selected "
                            f"by the backup plan (its tag {tag}, selected: {sorted(selected)})")
    for rule in one(graph, "aws:backup/plan:Plan")["inputs"]["rules"]:
        regions = {c["destinationVaultArn"].split(":")[3] for c in rule.get("copyActions") or []}
        if not regions - {provider}:
            problems.append(f"backup rule {rule.get('ruleName')} copies to no other region")
    return problems


def retention_problems(graph: dict[str, Any], *, delete_backups: bool = False) -> list[str]:
    """Kept on destroy (the default): the vault, its lock, the bucket and its settings, the
    database's key, a final snapshot and Aurora's own backups. ``delete_backups``: all of
    them deleted, the vault and bucket emptied first, no final snapshot."""
    problems = []
    for r in graph["resources"]:
        if r["type"] in KEPT and r["retain_on_delete"] == delete_backups:
            problems.append(f"{r['type'].split(':')[-1]} {r['name']} is "
                            f"{'kept' if delete_backups else 'deleted'} on destroy")
    for r in of_type(graph, VAULT) + of_type(graph, BUCKET):
        if bool(r["inputs"].get("forceDestroy")) != delete_backups:
            problems.append(f"{r['name']}: forceDestroy {r['inputs'].get('forceDestroy')}")
    for c in of_type(graph, RDS_CLUSTER):
        i = c["inputs"]
        keeps = (i.get("skipFinalSnapshot") is False and bool(i.get("finalSnapshotIdentifier"))
                 and i.get("deleteAutomatedBackups") is False)
        deletes = i.get("skipFinalSnapshot") is True and i.get("deleteAutomatedBackups") is True
        if not (deletes if delete_backups else keeps):
            problems.append(f"database cluster {c['name']}: skipFinalSnapshot "
                            f"{i.get('skipFinalSnapshot')}, finalSnapshotIdentifier "
                            f"{i.get('finalSnapshotIdentifier')}, deleteAutomatedBackups "
                            f"{i.get('deleteAutomatedBackups')}")
    return problems


def vault_lock_problems(graph: dict[str, Any], dep: dict[str, Any]) -> list[str]:
    """The vault has the configured Vault Lock (or none), on the vault itself."""
    want = (dep["aws"].get("backup") or {}).get("vault_lock")
    locks = of_type(graph, VAULT_LOCK)
    if want is None:
        return [f"{len(locks)} vault lock(s), none configured"] if locks else []
    if len(locks) != 1:
        return [f"{len(locks)} vault locks, want 1"]
    got = locks[0]["inputs"]
    problems = []
    for key, prop in (("min_retention_days", "minRetentionDays"),
                      ("max_retention_days", "maxRetentionDays"),
                      ("changeable_for_days", "changeableForDays")):
        if want.get(key) != (int(got[prop]) if got.get(prop) is not None else None):
            problems.append(f"vault lock {prop} {got.get(prop)}, want {want.get(key)}")
    if deps_of(graph, locks[0], "backupVaultName", VAULT) != of_type(graph, VAULT):
        problems.append("the vault lock is not on the region's vault")
    return problems


def restore_test_problems(graph: dict[str, Any], dep: dict[str, Any],
                          region: str) -> list[str]:
    """Restore testing as configured: a plan on the configured schedule over the region's
    own vault (newest snapshot within the window), and one selection per data store —
    EFS, and Aurora with the database tier, restored into the database's own subnet group
    and security group — chosen by the same backup tag the stores carry."""
    from hadeploy.infra.settings import load_stack_config, plan_region

    deployment_, settings = load_stack_config(dep)
    want = plan_region(deployment_, settings, region).restore_testing
    plans, selections = of_type(graph, RESTORE_PLAN), of_type(graph, RESTORE_SELECTION)
    if want is None:
        return [f"restore testing is disabled but {len(plans) + len(selections)} restore "
                "testing resources exist"] if plans or selections else []
    if len(plans) != 1:
        return [f"{len(plans)} restore testing plans, want 1"]
    plan = plans[0]["inputs"]
    problems = []
    if plan.get("scheduleExpression") != want.schedule or plan.get("name") != want.name:
        problems.append(f"restore testing plan {plan.get('name')} on "
                        f"{plan.get('scheduleExpression')}, want {want.name} on {want.schedule}")
    points = plan.get("recoveryPointSelection") or {}
    vault = one(graph, VAULT)
    if points.get("includeVaults") != [vault["outputs"].get("arn")] or \
            int(points.get("selectionWindowDays") or 0) != want.selection_window_days:
        problems.append(f"restore tests pick {points}, want the newest of the region's vault "
                        f"within {want.selection_window_days} days")
    stores = {"EFS": of_type(graph, EFS), "Aurora": of_type(graph, RDS_CLUSTER)}
    by_type = {s["inputs"].get("protectedResourceType"): s for s in selections}
    for kind, found in stores.items():
        if not found:
            if kind in by_type:
                problems.append(f"a {kind} restore test without a {kind} resource")
            continue
        selection = by_type.get(kind)
        if selection is None:
            problems.append(f"no restore test for {kind}")
            continue
        s = selection["inputs"]
        conditions = (s.get("protectedResourceConditions") or {}).get("stringEquals") or []
        tag = tag_value(found[0], "hadeploy:backup")
        if s.get("restoreTestingPlanName") != plan.get("name") or conditions != [
                {"key": "aws:ResourceTag/hadeploy:backup", "value": tag}]:
            problems.append(f"the {kind} restore test does not select the {kind} of this "
                            f"region (tag {tag}): {conditions}")
        if kind == "Aurora":
            overrides = s.get("restoreMetadataOverrides") or {}
            subnets = found[0]["inputs"].get("dbSubnetGroupName")
            groups = [g for g in of_type(graph, SG) if g["inputs"].get(
                "description", "").startswith("hadeploy database")]
            want_sg = json.dumps([g["outputs"].get("id") or f"{g['name']}-id" for g in groups])
            if overrides.get("dbsubnetgroupname") != subnets or \
                    overrides.get("vpcSecurityGroupIds") != want_sg:
                problems.append(f"the Aurora restore test restores into {overrides}, want "
                                f"subnet group {subnets} and security group {want_sg}")
    return problems


def regional_problems(graph: dict[str, Any], dep: dict[str, Any], region: str, *,
                      peer_ready: bool = True) -> list[str]:
    """Every invariant of one region's graph (``peer_ready``: the driver's second pass)."""
    from hadeploy.infra.settings import load_stack_config, plan_region

    deployment, settings = load_stack_config(dep)
    plan = plan_region(deployment, settings, region)
    peer = plan.peer
    problems = isolation_problems(graph, dep, region)
    problems += network_problems(graph, plan.aws_region)
    problems += cluster_problems(graph, dep, region)
    problems += storage_problems(graph, replicate_to=(
        peer.aws_region if peer and plan.writer and peer_ready else None))
    problems += backup_problems(graph, plan.aws_region,
                                copy_region=peer.aws_region if peer else None,
                                replicate_bucket=peer.bucket_arn if peer and peer_ready else None)
    problems += database_problems(graph, dep, region, joined=peer_ready)
    problems += selected_data_problems(graph) if peer else []
    problems += retention_problems(graph)
    problems += vault_lock_problems(graph, dep)
    problems += restore_test_problems(graph, dep, region)
    secret = one(graph, "aws:ssm/parameter:Parameter")
    if secret["inputs"].get("value") != {"__secret__": True}:
        problems.append("the app secret reaches the SSM parameter unencrypted in state")
    missing = {"alb_dns_name", "alb_zone_id", "efs_dns_name", "efs_mount_source", "asg_name",
               "backup_vault_arn", "artifacts_bucket_arn", "host_tag"} - set(graph["exports"])
    if missing:
        problems.append(f"exports lack {sorted(missing)}")
    return problems


# --- the recorded graph as the policy engine would present it --------------------------

def policy_resources(graph: dict[str, Any]) -> list[Any]:
    """``PolicyResource`` objects (props = the recorded properties, wrapped in the engine's
    unknown-checking proxy) with parents, dependencies and property dependencies linked."""
    from pulumi_policy import PolicyCustomTimeouts, PolicyResource, PolicyResourceOptions
    from pulumi_policy.proxy import unknown_checking_proxy

    index: dict[str, Any] = {}
    for r in graph["resources"]:
        opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [],
                                     r["parent"])
        index[r["urn"]] = PolicyResource(r["type"], unknown_checking_proxy(r["outputs"]),
                                         r["urn"], r["name"], opts, None, None, [], {})
    for r in graph["resources"]:
        res = index[r["urn"]]
        res.parent = index.get(r["parent"] or "")
        res.provider = provider_of(graph, r)
        res.dependencies = [index[u] for u in r["dependencies"] if u in index]
        res.property_dependencies = {k: [index[u] for u in v if u in index]
                                     for k, v in r["property_dependencies"].items()}
    return list(index.values())


def provider_of(graph: dict[str, Any], resource: dict[str, Any]) -> Any:
    from pulumi_policy import PolicyProviderResource

    provider = by_urn(graph).get(resource["provider"] or "")
    if provider is None:
        return None
    return PolicyProviderResource(provider["type"], provider["inputs"], provider["urn"],
                                  provider["name"])


def run_policies(graph: dict[str, Any]) -> list[tuple[str, str]]:
    """Run every policy of the pack on the graph: [(policy name, violation message)]."""
    from pulumi_policy import ResourceValidationArgs, StackValidationArgs
    from pulumi_policy.proxy import unknown_checking_proxy

    from hadeploy.infra.policy import RESOURCE_POLICIES, STACK_POLICIES

    violations: list[tuple[str, str]] = []
    for policy in RESOURCE_POLICIES:
        for r in graph["resources"]:
            if not r["custom"]:
                continue
            args = ResourceValidationArgs(r["type"], unknown_checking_proxy(r["inputs"]),
                                          r["urn"], r["name"], None,  # type: ignore[arg-type]
                                          provider_of(graph, r))
            policy.validate(args, lambda msg, _urn=None, p=policy: violations.append(
                (p.name, msg)))
    resources = policy_resources(graph)
    for stack_policy in STACK_POLICIES:
        stack_policy.validate(StackValidationArgs(resources),
                              lambda msg, _urn=None, p=stack_policy: violations.append(
                                  (p.name, msg)))
    return violations


# --- the builder (runs in the subprocess) ------------------------------------------------

def _plain(value: Any) -> Any:
    """JSON-able copy of deserialized properties; secrets hidden, unknowns marked."""
    from pulumi.runtime import rpc

    if rpc.is_rpc_secret(value):
        return {"__secret__": True}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    urn = getattr(value, "urn", None)
    if isinstance(urn, str):
        return {"__resource__": urn}
    return {"__unknown__": type(value).__name__}


def _provider_urn(ref: str) -> str:
    return ref.rsplit("::", 1)[0] if ref else ""


def main(scenario: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    import pulumi
    from pulumi.runtime import mocks, rpc

    for module in ("ec2", "lb", "autoscaling", "iam", "efs", "backup", "s3", "ssm", "route53",
                   "rds", "kms"):
        importlib.import_module(f"pulumi_aws.{module}")  # the timing below: the build alone

    from hadeploy.infra.settings import GLOBAL_PROJECT, REGIONAL_PROJECT, load_stack_config

    dep, settings = load_stack_config(scenario["deployment"])
    az_counts: dict[str, int] = scenario.get("az_counts", {})
    resources: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    by_urn: dict[str, dict[str, Any]] = {}

    def region_of(provider_ref: str) -> str | None:
        record = by_urn.get(_provider_urn(provider_ref))
        return record["inputs"].get("region") if record else None

    class Mocks(mocks.Mocks):
        def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            typ, name = args.typ, args.name
            state = dict(args.inputs)
            region = region_of(args.provider or "") or state.get("region") or "us-east-1"
            rid = f"{name}-id"
            service = typ.split(":")[1].split("/")[0]
            state.setdefault("arn", f"arn:aws:{service}:{region}:{ACCOUNT}:{typ}/{name}")
            if typ == "pulumi:pulumi:StackReference":
                ref = state["name"]
                return ref, {"name": ref, "outputs": scenario["stack_outputs"][ref],
                             "secretOutputNames": []}
            if preview and not typ.startswith("pulumi:"):
                return "", {}  # as in a first preview: ids and computed outputs unknown
            if typ == "aws:lb/loadBalancer:LoadBalancer":
                state.update(dnsName=f"{name}-1234.{region}.elb.amazonaws.com",
                             zoneId=f"ZALB{region.replace('-', '').upper()}")
            elif typ == "aws:efs/fileSystem:FileSystem":
                rid = f"fs-{name}"
                state["dnsName"] = f"{rid}.efs.{region}.amazonaws.com"
            elif typ == "aws:autoscaling/group:Group":
                state["name"] = f"{name}-0001"
            elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
                state["latestVersion"] = 1
            elif typ == "aws:route53/zone:Zone":
                state.update(zoneId="ZMOCKZONE", nameServers=["ns-1.awsdns-01.org."])
            elif typ == "aws:s3/bucket:Bucket":
                state["arn"] = f"arn:aws:s3:::{state['bucket']}"
            elif typ == "aws:backup/vault:Vault":
                state["arn"] = f"arn:aws:backup:{region}:{ACCOUNT}:backup-vault:{state['name']}"
            elif typ == "aws:rds/cluster:Cluster":
                rid = state["clusterIdentifier"]
                state.update(endpoint=f"{rid}.cluster-x.{region}.rds.amazonaws.com",
                             readerEndpoint=f"{rid}.cluster-ro-x.{region}.rds.amazonaws.com")
            elif typ == "aws:ssm/parameter:Parameter":
                state["arn"] = f"arn:aws:ssm:{region}:{ACCOUNT}:parameter{state['name']}"
            elif typ == "aws:acm/certificate:Certificate":
                domain = state["domainName"]
                state["arn"] = f"arn:aws:acm:{region}:{ACCOUNT}:certificate/{name}-0001"
                state["domainValidationOptions"] = [{
                    "domainName": domain, "resourceRecordName": f"_a1b2c3.{domain}.",
                    "resourceRecordType": "CNAME",
                    "resourceRecordValue": "_d4e5f6.abcdefg.acm-validations.aws."}]
            elif typ == "aws:route53/record:Record":
                state["fqdn"] = str(state.get("name", "")).rstrip(".")
            elif typ.startswith("pulumi:providers:"):
                rid = f"provider-{name}"
            return rid, state

        def call(self, args: mocks.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
            calls.append({"token": args.token, "provider": _provider_urn(args.provider or ""),
                          "args": _plain(dict(args.args))})
            if args.token == AZ_TOKEN:
                region = region_of(args.provider or "") or "?"
                names = [f"{region}{c}" for c in "abcdef"[: az_counts.get(region, 3)]]
                return {"id": region, "names": names,
                        "zoneIds": [f"{region[:3]}-az{i + 1}" for i in range(len(names))],
                        "groupNames": [region] * len(names)}, []
            return {}, []

    class RecordingMonitor(mocks.MockMonitor):
        def _record(self, urn: str, request: Any, custom: bool, props: Any) -> None:
            record = {
                "urn": urn, "type": request.type, "name": request.name, "custom": custom,
                "parent": request.parent or None,
                "provider": _provider_urn(request.provider) or None,
                "dependencies": sorted(getattr(request, "dependencies", [])),
                "ignore_changes": sorted(getattr(request, "ignoreChanges", [])),
                "retain_on_delete": bool(getattr(request, "retainOnDelete", False)),
                "property_dependencies": {
                    k: sorted(v.urns) for k, v in
                    getattr(request, "propertyDependencies", {}).items()},
                "inputs": _plain(rpc.deserialize_properties(props)),
                "outputs": _plain(self.resources[urn].state),
            }
            by_urn[urn] = record
            resources.append(record)

        def RegisterResource(self, request: Any) -> Any:
            response = super().RegisterResource(request)
            if request.type != "pulumi:pulumi:Stack":
                self._record(response.urn, request, bool(request.custom), request.object)
            return response

        def ReadResource(self, request: Any) -> Any:
            response = super().ReadResource(request)
            self._record(response.urn, request, True, request.properties)
            return response

    program = scenario["program"]
    preview = bool(scenario.get("preview"))
    project = REGIONAL_PROJECT if program == "regional" else GLOBAL_PROJECT
    stack = f"{dep.name}-{scenario['region']}" if program == "regional" else f"{dep.name}-global"
    config = {f"hadeploy:{k}": v if isinstance(v, str) else json.dumps(v)
              for k, v in scenario.get("config", {}).items()}
    pulumi.runtime.set_all_config(config, secret_keys=["hadeploy:appSecret"])
    the_mocks = Mocks()
    pulumi.runtime.set_mocks(the_mocks, project=project, stack=stack, preview=preview,
                             monitor=RecordingMonitor(the_mocks))
    exports: dict[str, Any] = {}

    @pulumi.runtime.test
    def build() -> pulumi.Output[Any]:
        if scenario.get("via_main"):  # the stack project's own __main__.py (plain CLI)
            import runpy

            runpy.run_path(str(REPO / "stacks" / program / "__main__.py"), run_name="__main__")
        elif program == "regional":
            from hadeploy.infra.regional import regional_program

            regional_program(dep, scenario["region"], settings)
        else:
            from hadeploy.infra.global_dns import global_program

            global_program(dep, scenario.get("regional_stacks"), settings)
        from pulumi.runtime.settings import get_root_resource

        root = get_root_resource()
        outputs = dict(getattr(root, "outputs", {}))
        return pulumi.Output.all(**outputs).apply(exports.update)

    imported = time.perf_counter()
    build()
    built = time.perf_counter()
    return {"project": project, "stack": stack, "resources": resources, "calls": calls,
            "exports": _plain(exports),
            "timing": {"import_s": round(imported - started, 3),
                       "build_s": round(built - imported, 3)}}


if __name__ == "__main__":
    source = sys.stdin.read() if sys.argv[1:] in (["-"], []) else Path(sys.argv[1]).read_text()
    sys.path.insert(0, str(REPO / "cli"))
    json.dump(main(json.loads(source)), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.flush()
    # Skip interpreter shutdown (~2 s joining the runtime's executor threads): all is written.
    os._exit(0)
