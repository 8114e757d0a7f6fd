"""The AWS programs under Pulumi's mocks: the recorded resource graph of every stack of
1-, 2- and 3-region deployments (secondaries hot, warm, cold) satisfies hadeploy's
invariants; each invariant check is shown to fail on a deliberately broken graph.

Every program is built once, in its own subprocess (tests/infra_mock_program.py), because
Pulumi's runtime must build one program per process. Nothing here reaches AWS or needs the
Pulumi CLI.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.aws_constraints import check_graphs
from tests.conftest import REPO
from tests.infra_mock_program import (
    ASG,
    EFS,
    HEALTH_CHECK,
    MOUNT_TARGET,
    RDS_CLUSTER,
    RDS_GLOBAL,
    RECORD,
    SG,
    SUBNET,
    build_graph,
    build_graphs,
    cluster_problems,
    database_problems,
    deployment,
    dns_problems,
    global_scenario,
    isolation_problems,
    network_problems,
    of_type,
    one,
    regional_problems,
    regional_scenario,
    steady_scenarios,
    storage_problems,
)

pytestmark = pytest.mark.slow

STANDBYS = ("hot", "warm", "cold")
DEPLOYMENTS: dict[str, dict[str, Any]] = {"1-hot": deployment(1)}
DEPLOYMENTS.update({f"{n}-{s}": deployment(n, s) for n in (2, 3) for s in STANDBYS})
DEPLOYMENTS["2-warm+data"] = deployment(2, "warm", data=True)
DEPLOYMENTS["3-cold+data"] = deployment(3, "cold", data=True)
# No certificate ARNs, an existing hosted zone: each regional stack requests its certificate
ACM = "2-warm+acm"
DEPLOYMENTS[ACM] = deployment(2, "warm", zone_id="Z0123456789ABCDEFGHIJ")
del DEPLOYMENTS[ACM]["aws"]["certificate_arns"]
DATA_NOT_JOINED = "2-warm+data/eu-west-1 before the global database exists"
FIRST_PASS = "first-pass"  # the primary before its peer exists: no replication yet
WEIGHTED = "3-weighted"
PREVIEW = "2-warm/us-east-1 preview"
MAIN_REGIONAL = "stacks/regional/__main__.py"
MAIN_GLOBAL = "stacks/global/__main__.py"


@pytest.fixture(scope="module")
def graphs() -> dict[str, dict[str, Any]]:
    scenarios: dict[str, dict[str, Any]] = {}
    for key, dep in DEPLOYMENTS.items():
        scenarios.update(steady_scenarios(dep, prefix=f"{key}/"))
    scenarios[FIRST_PASS] = regional_scenario(DEPLOYMENTS["2-warm"], "us-east-1")
    scenarios[DATA_NOT_JOINED] = regional_scenario(DEPLOYMENTS["2-warm+data"], "eu-west-1",
                                                   peerReady=True, globalDbReady=False)
    scenarios[WEIGHTED] = global_scenario(deployment(3, "warm", mode="active-weighted"))
    scenarios[PREVIEW] = {**scenarios["2-warm/us-east-1"], "preview": True}
    # The stack projects as the plain pulumi CLI runs them: the deployment in stack config.
    main = copy.deepcopy(scenarios["2-warm/us-east-1"])
    main["config"].update(deployment=DEPLOYMENTS["2-warm"], region="us-east-1")
    scenarios[MAIN_REGIONAL] = {**main, "via_main": True}
    main_global = copy.deepcopy(scenarios["2-warm/global"])
    main_global["config"] = {"deployment": DEPLOYMENTS["2-warm"]}
    scenarios[MAIN_GLOBAL] = {**main_global, "via_main": True}
    return build_graphs(scenarios)


REGIONAL_CASES = [(key, r["name"]) for key, dep in DEPLOYMENTS.items() for r in dep["regions"]]


@pytest.mark.parametrize(("key", "region"), REGIONAL_CASES,
                         ids=[f"{k}/{r}" for k, r in REGIONAL_CASES])
def test_regional_graph_keeps_every_invariant(graphs, key, region):
    dep = DEPLOYMENTS[key]
    graph = graphs[f"{key}/{region}"]
    assert regional_problems(graph, dep, region) == []
    # The graph is the real thing, not an empty shell: 50+ resources, all in one region.
    assert len([r for r in graph["resources"] if r["custom"]]) >= 50
    with_data = bool(dep.get("data", {}).get("enabled"))
    assert {r["type"] for r in graph["resources"] if not r["custom"]} == {
        "hadeploy:network:Network", "hadeploy:cluster:AppCluster",
        "hadeploy:storage:SharedStorage", "hadeploy:backups:Backups",
        "hadeploy:backups:RestoreTests",
        *(["hadeploy:database:AuroraDatabase"] if with_data else [])}
    assert bool(of_type(graph, RDS_CLUSTER)) == with_data


def test_the_global_database_is_created_once_and_joined_by_every_other_region(graphs):
    for key in ("2-warm+data", "3-cold+data"):
        regions = [r["name"] for r in DEPLOYMENTS[key]["regions"]]
        owners = [r for r in regions if of_type(graphs[f"{key}/{r}"], RDS_GLOBAL)]
        assert owners == [regions[0]]  # the primary's stack, nobody else's
        joined = {one(graphs[f"{key}/{r}"], RDS_CLUSTER)["inputs"]["globalClusterIdentifier"]
                  for r in regions}
        assert joined == {"hd-demo"}
        # A secondary's cluster must not be replaced when Aurora sets its source itself.
        secondary = one(graphs[f"{key}/{regions[1]}"], RDS_CLUSTER)
        assert "replicationSourceIdentifier" in secondary["ignore_changes"]


def test_a_secondary_joins_only_once_the_global_database_exists(graphs):
    graph = graphs[DATA_NOT_JOINED]
    dep = DEPLOYMENTS["2-warm+data"]
    assert database_problems(graph, dep, "eu-west-1", joined=False) == []
    assert not of_type(graph, RDS_CLUSTER) and graph["exports"]["db_cluster_id"] is None
    assert database_problems(graph, dep, "eu-west-1") != []  # a joined one would be wrong


@pytest.mark.parametrize("key", list(DEPLOYMENTS))
def test_global_graph_routes_to_every_region(graphs, key):
    dep = DEPLOYMENTS[key]
    graph = graphs[f"{key}/global"]
    assert dns_problems(graph, dep) == []
    refs = sorted(r["inputs"]["name"] for r in of_type(graph, "pulumi:pulumi:StackReference"))
    assert refs == sorted(f"organization/hadeploy-regional/demo-{r['name']}"
                          for r in dep["regions"])
    failover = [r for r in of_type(graph, RECORD) if r["inputs"].get("failoverRoutingPolicies")]
    assert len(failover) == (0 if len(dep["regions"]) == 1 else 2 * (len(dep["regions"]) - 1))


def test_three_regions_fall_through_in_configured_order(graphs):
    graph = graphs["3-cold/global"]
    by_name: dict[str, list[tuple[str, str]]] = {}
    for r in of_type(graph, RECORD):
        kind = r["inputs"]["failoverRoutingPolicies"][0]["type"]
        by_name.setdefault(r["inputs"]["name"], []).append(
            (kind, r["inputs"]["aliases"][0]["name"]))
    assert sorted(by_name["app.example.com"]) == [
        ("PRIMARY", "app-alb-us-east-1.elb.amazonaws.com"),
        ("SECONDARY", "app-failover-1.example.com")]
    assert sorted(by_name["app-failover-1.example.com"]) == [
        ("PRIMARY", "app-alb-eu-west-1.elb.amazonaws.com"),
        ("SECONDARY", "app-alb-ap-southeast-2.elb.amazonaws.com")]
    # The top SECONDARY names the next level by a plain string: Route 53 accepts that alias
    # only once the next level's records exist, so Pulumi must create them first.
    records = {r["name"]: r for r in of_type(graph, RECORD)}
    assert {records["dns-l1-primary"]["urn"], records["dns-l1-secondary"]["urn"]} <= set(
        records["dns-l0-secondary"]["dependencies"])
    assert not {r["urn"] for r in records.values()} & set(
        records["dns-l1-secondary"]["dependencies"])  # the last level aliases the ALBs


def test_weighted_mode_gives_every_region_a_health_checked_weight(graphs):
    graph = graphs[WEIGHTED]
    dep = deployment(3, "warm", mode="active-weighted")
    assert dns_problems(graph, dep) == []
    weighted = of_type(graph, RECORD)
    assert len(weighted) == 3
    assert all(r["inputs"]["weightedRoutingPolicies"][0]["weight"] == 100 for r in weighted)


def test_first_pass_replicates_nothing_until_the_peer_exists(graphs):
    graph = graphs[FIRST_PASS]
    assert regional_problems(graph, DEPLOYMENTS["2-warm"], "us-east-1", peer_ready=False) == []
    types = {r["type"] for r in graph["resources"]}
    assert "aws:efs/replicationConfiguration:ReplicationConfiguration" not in types
    assert "aws:s3/bucketReplicationConfig:BucketReplicationConfig" not in types
    # ... but its backups are copied to the peer region from the start.
    plan = one(graph, "aws:backup/plan:Plan")
    assert plan["inputs"]["rules"][0]["copyActions"][0]["destinationVaultArn"] == (
        "arn:aws:backup:eu-west-1:123456789012:backup-vault:hd-demo-eu-west-1")


def shape(graph: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted((r["type"], r["name"], r["parent"], r["provider"]) for r in graph["resources"])


def test_preview_registers_the_same_resources_as_up(graphs):
    """No resource hides inside an ``apply``: with every id and computed output unknown
    (a first preview), the program registers exactly the same resources."""
    assert shape(graphs[PREVIEW]) == shape(graphs["2-warm/us-east-1"])
    alb = one(graphs[PREVIEW], "aws:lb/loadBalancer:LoadBalancer")
    assert alb["outputs"] == {}  # the preview really had unknowns


@pytest.mark.parametrize(("main", "built_by_hadeploy"), [
    (MAIN_REGIONAL, "2-warm/us-east-1"), (MAIN_GLOBAL, "2-warm/global")])
def test_stack_projects_build_what_hadeploy_builds(graphs, main, built_by_hadeploy):
    assert shape(graphs[main]) == shape(graphs[built_by_hadeploy])
    assert graphs[main]["exports"] == graphs[built_by_hadeploy]["exports"]


def test_what_a_failover_changes_is_not_reverted_by_the_next_up(graphs):
    assert one(graphs["2-cold/eu-west-1"], ASG)["ignore_changes"] == ["desiredCapacity"]
    checks = of_type(graphs["2-cold/global"], "aws:route53/healthCheck:HealthCheck")
    assert {tuple(h["ignore_changes"]) for h in checks} == {("disabled", "invertHealthcheck")}


def test_sizing_follows_standby(graphs):
    sizes = {}
    for standby in STANDBYS:
        asg = one(graphs[f"2-{standby}/eu-west-1"], ASG)["inputs"]
        sizes[standby] = (asg["minSize"], asg["desiredCapacity"], asg["maxSize"])
    assert sizes == {"hot": (2, 2, 2), "warm": (1, 1, 2), "cold": (0, 0, 2)}


def test_only_the_replica_target_lets_replication_overwrite_it(graphs):
    protection = {r: one(graphs[f"3-warm/{r}"], EFS)["inputs"]["protection"]
                  ["replicationOverwrite"] for r in ("us-east-1", "eu-west-1", "ap-southeast-2")}
    assert protection == {"us-east-1": "ENABLED", "eu-west-1": "DISABLED",
                          "ap-southeast-2": "ENABLED"}


def test_az_lookup_goes_through_the_region_provider(graphs):
    graph = graphs["2-hot/eu-west-1"]
    provider = one(graph, "pulumi:providers:aws")
    calls = [c for c in graph["calls"] if c["token"].endswith("getAvailabilityZones")]
    assert [c["provider"] for c in calls] == [provider["urn"]]
    assert provider["inputs"]["region"] == "eu-west-1"
    assert json.loads(provider["inputs"]["allowedAccountIds"]) == ["123456789012"]


def test_a_single_az_region_is_refused():
    scenario = regional_scenario(deployment(2), "eu-west-1", peerReady=True)
    scenario["az_counts"] = {"eu-west-1": 1}
    with pytest.raises(RuntimeError, match="offers 1 availability zone"):
        build_graph(scenario)


# --- what AWS's APIs accept -----------------------------------------------------------------

# Inputs AWS constrains (botocore's model or its documented wording) that the check must
# keep covering: the ones a real preview rejected or would reject first.
MUST_CHECK = {
    (SG, "description"), (SG, "ingress[].description"), (SG, "egress[].description"),
    (SG, "name"), (SG, "tags{key}"), (SG, "tags{}"),
    ("aws:lb/loadBalancer:LoadBalancer", "name"), ("aws:lb/targetGroup:TargetGroup", "name"),
    ("aws:iam/role:Role", "name"), ("aws:autoscaling/group:Group", "name"),
    ("aws:autoscaling/group:Group", "tags[].key"), ("aws:backup/vault:Vault", "name"),
    ("aws:backup/plan:Plan", "name"), ("aws:backup/plan:Plan", "rules[].ruleName"),
    ("aws:backup/selection:Selection", "name"), (EFS, "tags{key}"),
    ("aws:efs/accessPoint:AccessPoint", "rootDirectory.path"),
    ("aws:s3/bucket:Bucket", "bucket"), (HEALTH_CHECK, "regions[]"),
    (HEALTH_CHECK, "requestInterval"), (HEALTH_CHECK, "failureThreshold"),
    (RECORD, "setIdentifier"), (RECORD, "name"), (RDS_CLUSTER, "clusterIdentifier"),
    ("aws:ec2/launchTemplate:LaunchTemplate", "userData"),
}


def test_every_input_is_one_aws_accepts(graphs, measurements):
    """Every string and number input of every resource of every graph above (1–3 regions,
    hot/warm/cold, with and without the database tier, the global stacks, a preview) is
    valid for the AWS API member it is sent to; every input is classified (an API member,
    or skipped with a reason)."""
    report = check_graphs(graphs)
    measurements["AWS API constraints over the graphs"] = report.summary()
    assert report.problems == []
    assert report.unmapped == {}, "inputs no entry of tests/aws_constraints.MAPPING covers"
    assert report.unmapped_types == set()
    assert report.constrained >= MUST_CHECK, sorted(MUST_CHECK - report.constrained)
    assert len(report.constrained) >= 150


def _apostrophe(g: dict[str, Any]) -> None:  # the description of issue #12
    host_sg = next(r for r in of_type(g, SG) if r["name"] == "app-host-sg")
    host_sg["inputs"]["egress"][-1]["description"] = "NFS to the region's EFS mount targets"


def _long_logical_name(g: dict[str, Any]) -> None:  # Pulumi's generated name: 26 + 8 > 32
    one(g, "aws:lb/targetGroup:TargetGroup")["name"] = "app-target-group-of-region"


def _bad_default_tag(g: dict[str, Any]) -> None:
    provider = one(g, "pulumi:providers:aws")
    tags = json.loads(provider["inputs"]["defaultTags"])
    tags["tags"]["hadeploy:owner"] = "it's me"  # IAM, ELB, EFS, SSM: no apostrophes in tags
    provider["inputs"]["defaultTags"] = json.dumps(tags)


def _vault_name_with_a_dot(g: dict[str, Any]) -> None:
    one(g, "aws:backup/vault:Vault")["inputs"]["name"] = "hd.demo.eu-west-1"


def _imds_hop_limit(g: dict[str, Any]) -> None:
    one(g, "aws:ec2/launchTemplate:LaunchTemplate")["inputs"]["metadataOptions"][
        "httpPutResponseHopLimit"] = 65.0


BROKEN_INPUTS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "apostrophe in a rule description": (_apostrophe, "egress[].description"),
    "generated target group name too long": (_long_logical_name, "Pulumi's generated name"),
    "apostrophe in a default tag": (_bad_default_tag, "(provider default tag)"),
    "vault name with a dot": (_vault_name_with_a_dot, "BackupVaultName"),
    "IMDS hop limit above 64": (_imds_hop_limit, "Integers from 1 to 64"),
}


@pytest.mark.parametrize("breakage", list(BROKEN_INPUTS))
def test_the_constraint_check_fails_on_what_aws_rejects(graphs, breakage):
    graph = graphs["2-warm/eu-west-1"]
    assert check_graphs({"fixed": graph}).problems == []
    broken = copy.deepcopy(graph)
    break_it, expected = BROKEN_INPUTS[breakage]
    break_it(broken)
    problems = check_graphs({"broken": broken}).problems
    assert problems and all(expected in p for p in problems), problems


# --- every check fails on a broken graph --------------------------------------------------

def _drop_mount_target(g: dict[str, Any]) -> None:
    g["resources"].remove(of_type(g, MOUNT_TARGET)[0])


def _open_ssh(g: dict[str, Any]) -> None:
    host_sg = next(r for r in of_type(g, SG) if r["name"] == "app-host-sg")
    host_sg["inputs"]["ingress"].append({"protocol": "tcp", "fromPort": 22.0, "toPort": 22.0,
                                         "cidrBlocks": ["0.0.0.0/0"]})


def _single_az(g: dict[str, Any]) -> None:
    for subnet in of_type(g, SUBNET):
        subnet["inputs"]["availabilityZone"] = "eu-west-1a"


def _foreign_provider(g: dict[str, Any]) -> None:
    one(g, EFS)["provider"] = ("urn:pulumi:demo-us-east-1::hadeploy-regional::pulumi:pulumi:"
                               "Stack$pulumi:providers:aws::aws-us-east-1")


def _cross_stack_dependency(g: dict[str, Any]) -> None:
    one(g, ASG)["dependencies"].append(
        "urn:pulumi:demo-us-east-1::hadeploy-regional::hadeploy:network:Network$aws:ec2/"
        "subnet:Subnet::net-private-0")


def _names_other_region(g: dict[str, Any]) -> None:
    one(g, EFS)["inputs"]["tags"]["Name"] = "copy-of-us-east-1"


def _wrong_size(g: dict[str, Any]) -> None:
    one(g, ASG)["inputs"]["minSize"] = 2.0


def _imdsv1(g: dict[str, Any]) -> None:
    one(g, "aws:ec2/launchTemplate:LaunchTemplate")["inputs"]["metadataOptions"][
        "httpTokens"] = "optional"


def _refresh_drops_capacity(g: dict[str, Any]) -> None:
    one(g, ASG)["inputs"]["instanceRefresh"]["preferences"]["minHealthyPercentage"] = 50


def _unencrypted_efs(g: dict[str, Any]) -> None:
    one(g, EFS)["inputs"]["encrypted"] = False


def _bare_efs_dns_name(g: dict[str, Any]) -> None:
    g["exports"]["efs_mount_source"] = g["exports"]["efs_dns_name"]


def _no_backup_copy(g: dict[str, Any]) -> None:
    one(g, "aws:backup/plan:Plan")["inputs"]["rules"][0]["copyActions"] = []


def _plaintext_secret(g: dict[str, Any]) -> None:
    one(g, "aws:ssm/parameter:Parameter")["inputs"]["value"] = "s3cr3t-value"


def _host_sg_from_world(g: dict[str, Any]) -> None:
    host_sg = next(r for r in of_type(g, SG) if r["name"] == "app-host-sg")
    host_sg["inputs"]["ingress"][0]["cidrBlocks"] = ["0.0.0.0/0"]


def _no_nat_in_one_az(g: dict[str, Any]) -> None:
    g["resources"].remove(of_type(g, "aws:ec2/natGateway:NatGateway")[-1])


def _db_public(g: dict[str, Any]) -> None:
    of_type(g, "aws:rds/clusterInstance:ClusterInstance")[0]["inputs"]["publiclyAccessible"] = True


def _db_unencrypted(g: dict[str, Any]) -> None:
    one(g, RDS_CLUSTER)["inputs"]["storageEncrypted"] = False


def _db_open_to_vpc(g: dict[str, Any]) -> None:
    sg = next(x for x in of_type(g, SG) if x["inputs"].get("description", "").startswith(
        "hadeploy database"))
    sg["inputs"]["ingress"][0]["cidrBlocks"] = ["10.0.0.0/8"]


def _db_secondary_with_password(g: dict[str, Any]) -> None:
    one(g, RDS_CLUSTER)["inputs"]["masterPassword"] = "hunter2"


def _db_second_global(g: dict[str, Any]) -> None:
    g["resources"].append({**copy.deepcopy(one(g, RDS_CLUSTER)), "type": RDS_GLOBAL,
                           "name": "db-global", "custom": True})


def _db_no_final_snapshot(g: dict[str, Any]) -> None:
    one(g, RDS_CLUSTER)["inputs"]["skipFinalSnapshot"] = True


BROKEN_DATABASE = {
    "database instance public": _db_public,
    "database unencrypted": _db_unencrypted,
    "database open to a CIDR": _db_open_to_vpc,
    "a secondary holds a password": _db_secondary_with_password,
    "a secondary creates a global cluster": _db_second_global,
    "no final snapshot": _db_no_final_snapshot,
}


@pytest.mark.parametrize("breakage", list(BROKEN_DATABASE))
def test_database_checks_catch_a_broken_graph(graphs, breakage):
    dep = DEPLOYMENTS["2-warm+data"]
    graph = graphs["2-warm+data/eu-west-1"]
    assert database_problems(graph, dep, "eu-west-1") == []
    broken = copy.deepcopy(graph)
    BROKEN_DATABASE[breakage](broken)
    assert database_problems(broken, dep, "eu-west-1") != []
    assert regional_problems(broken, dep, "eu-west-1") != []


BROKEN_REGION: dict[str, tuple[Callable[[dict[str, Any]], None], Callable[..., list[str]]]] = {
    "mount target removed": (_drop_mount_target,
                             lambda g, d: storage_problems(g, replicate_to=None)),
    "port 22 open to the world": (_open_ssh, lambda g, d: cluster_problems(g, d, "eu-west-1")),
    "hosts accept the world": (_host_sg_from_world,
                               lambda g, d: cluster_problems(g, d, "eu-west-1")),
    "single AZ": (_single_az, lambda g, d: network_problems(g, "eu-west-1")),
    "single AZ (hosts)": (_single_az, lambda g, d: cluster_problems(g, d, "eu-west-1")),
    "NAT missing in one AZ": (_no_nat_in_one_az, lambda g, d: network_problems(g, "eu-west-1")),
    "another region's provider": (_foreign_provider,
                                  lambda g, d: isolation_problems(g, d, "eu-west-1")),
    "depends on another stack": (_cross_stack_dependency,
                                 lambda g, d: isolation_problems(g, d, "eu-west-1")),
    "names another region": (_names_other_region,
                             lambda g, d: isolation_problems(g, d, "eu-west-1")),
    "warm sized like hot": (_wrong_size, lambda g, d: cluster_problems(g, d, "eu-west-1")),
    "IMDSv1 allowed": (_imdsv1, lambda g, d: cluster_problems(g, d, "eu-west-1")),
    "instance refresh drops capacity": (_refresh_drops_capacity,
                                        lambda g, d: cluster_problems(g, d, "eu-west-1")),
    "EFS unencrypted": (_unencrypted_efs, lambda g, d: storage_problems(g, replicate_to=None)),
    "hosts mount the bare EFS DNS name": (_bare_efs_dns_name,
                                          lambda g, d: storage_problems(g, replicate_to=None)),
    "backups not copied": (_no_backup_copy,
                           lambda g, d: regional_problems(g, d, "eu-west-1")),
    "secret in plain text": (_plaintext_secret,
                             lambda g, d: regional_problems(g, d, "eu-west-1")),
}


def _validation_deleted_with_the_stack(g: dict[str, Any]) -> None:
    next(r for r in of_type(g, RECORD) if r["inputs"].get("type") == "CNAME"
         )["retain_on_delete"] = False


def _listener_does_not_wait_for_the_certificate(g: dict[str, Any]) -> None:
    listener = next(x for x in of_type(g, "aws:lb/listener:Listener")
                    if int(x["inputs"]["port"]) == 443)
    listener["property_dependencies"]["certificateArn"] = []


def _certificate_for_another_name(g: dict[str, Any]) -> None:
    one(g, "aws:acm/certificate:Certificate")["inputs"]["domainName"] = "www.example.com"


BROKEN_CERTIFICATE = {
    "validation record deleted with one region": _validation_deleted_with_the_stack,
    "listener does not wait": _listener_does_not_wait_for_the_certificate,
    "certificate for another name": _certificate_for_another_name}


def test_a_stack_without_a_certificate_arn_requests_a_dns_validated_one(graphs):
    """aws.zone_id and no aws.certificate_arns: every region's stack requests a certificate
    for app.<zone>, validated by a CNAME in that zone, and its HTTPS listener waits for it;
    each check fails on a graph broken to show it."""
    dep = DEPLOYMENTS[ACM]
    for region in ("us-east-1", "eu-west-1"):
        graph = graphs[f"{ACM}/{region}"]
        assert cluster_problems(graph, dep, region) == []
        assert len(of_type(graph, "aws:acm/certificate:Certificate")) == 1
    for breakage, break_it in BROKEN_CERTIFICATE.items():
        broken = copy.deepcopy(graphs[f"{ACM}/eu-west-1"])
        break_it(broken)
        assert cluster_problems(broken, dep, "eu-west-1") != [], breakage
    # with an ARN configured, no certificate is requested
    assert of_type(graphs["2-warm/eu-west-1"], "aws:acm/certificate:Certificate") == []


@pytest.mark.parametrize("breakage", list(BROKEN_REGION))
def test_regional_checks_catch_a_broken_graph(graphs, breakage):
    dep = DEPLOYMENTS["2-warm"]
    graph = graphs["2-warm/eu-west-1"]
    break_it, check = BROKEN_REGION[breakage]
    assert check(graph, dep) == []  # the same check passes on the real graph ...
    broken = copy.deepcopy(graph)
    break_it(broken)
    assert check(broken, dep) != []  # ... and fails once it is broken
    assert regional_problems(broken, dep, "eu-west-1") != []


def _drop_secondary(g: dict[str, Any]) -> None:
    g["resources"] = [r for r in g["resources"] if not (
        r["type"] == RECORD and r["name"].endswith("l0-secondary"))]


def _two_checkers(g: dict[str, Any]) -> None:
    of_type(g, "aws:route53/healthCheck:HealthCheck")[0]["inputs"]["regions"] = [
        "us-east-1", "eu-west-1"]


def _swap_order(g: dict[str, Any]) -> None:
    records = {r["name"]: r for r in of_type(g, RECORD)}
    records["dns-l0-primary"]["inputs"]["setIdentifier"] = "eu-west-1"
    records["dns-l1-primary"]["inputs"]["setIdentifier"] = "us-east-1"


def _blind_alias(g: dict[str, Any]) -> None:
    of_type(g, RECORD)[0]["inputs"]["aliases"][0]["evaluateTargetHealth"] = False


def _alias_before_its_target(g: dict[str, Any]) -> None:
    top = next(r for r in of_type(g, RECORD) if r["name"] == "dns-l0-secondary")
    top["dependencies"] = [u for u in top["dependencies"] if "dns-l1-" not in u]


def _unchecked_primary(g: dict[str, Any]) -> None:
    next(r for r in of_type(g, RECORD) if r["name"] == "dns-l0-primary")["inputs"].pop(
        "healthCheckId")


BROKEN_GLOBAL = {"SECONDARY missing": _drop_secondary, "2 checker regions": _two_checkers,
                 "order swapped": _swap_order, "alias ignores health": _blind_alias,
                 "primary not health checked": _unchecked_primary,
                 "alias created before its target": _alias_before_its_target}


@pytest.mark.parametrize("breakage", list(BROKEN_GLOBAL))
def test_dns_checks_catch_a_broken_graph(graphs, breakage):
    dep = DEPLOYMENTS["3-hot"]
    broken = copy.deepcopy(graphs["3-hot/global"])
    BROKEN_GLOBAL[breakage](broken)
    assert dns_problems(broken, dep) != []


# --- the stack projects -------------------------------------------------------------------

def test_stack_projects_match_what_the_driver_uses():
    from hadeploy.infra.settings import (
        GLOBAL_PROJECT,
        REGIONAL_PROJECT,
        check_deployment,
        load_stack_config,
        plan_region,
    )

    for folder, project in (("regional", REGIONAL_PROJECT), ("global", GLOBAL_PROJECT)):
        assert yaml.safe_load((REPO / "stacks" / folder / "Pulumi.yaml").read_text())[
            "name"] == project
    demo = yaml.safe_load((REPO / "stacks/regional/Pulumi.example-us-east-1.yaml").read_text())
    config = demo["config"]
    dep, settings = load_stack_config(config["hadeploy:deployment"])
    check_deployment(dep, settings)
    plan = plan_region(dep, settings, config["hadeploy:region"])
    assert plan.stack_name == "example-us-east-1" and plan.aws_region == config["aws:region"]
    global_demo = yaml.safe_load((REPO / "stacks/global/Pulumi.example-global.yaml").read_text())
    assert global_demo["config"]["hadeploy:deployment"] == config["hadeploy:deployment"]
    assert "PolicyPack(name=PACK_NAME, policies=POLICIES)" in (
        REPO / "stacks/policy/__main__.py").read_text()
