"""The hadeploy-ha policy pack, both ways: the stacks hadeploy builds pass every policy, and
each rule catches its violation. Policies run on graphs recorded under mocks (see
tests/infra_mock_program.py), presented as the policy engine presents resources
(camelCase properties behind the unknown-checking proxy, providers, property
dependencies)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.infra_mock_program import (
    ASG,
    EFS,
    MOUNT_TARGET,
    RECORD,
    SG,
    SUBNET,
    build_graphs,
    deployment,
    of_type,
    one,
    run_policies,
    steady_scenarios,
)

pytestmark = pytest.mark.slow

DEP = deployment(2, "warm")
DATA = deployment(2, "warm", data=True)


@pytest.fixture(scope="module")
def graphs() -> dict[str, dict[str, Any]]:
    scenarios = steady_scenarios(DEP, prefix="2-warm/")
    scenarios.update(steady_scenarios(deployment(1), prefix="1-hot/"))
    scenarios.update(steady_scenarios(DATA, prefix="2-warm+data/"))
    return build_graphs(scenarios)


def policies_hit(graph: dict[str, Any]) -> set[str]:
    return {name for name, _ in run_policies(graph)}


@pytest.mark.parametrize("stack", ["2-warm/us-east-1", "2-warm/eu-west-1", "2-warm/global",
                                   "2-warm+data/us-east-1", "2-warm+data/eu-west-1"])
def test_hadeploy_stacks_pass_every_policy(graphs, stack):
    assert run_policies(graphs[stack]) == []


def test_a_single_region_deployment_is_flagged_for_its_uncopied_backups(graphs):
    """One region has no other region to copy backups to: the pack says so (by design)."""
    assert policies_hit(graphs["1-hot/us-east-1"]) == {"hadeploy-backup-copies-to-another-region"}
    assert run_policies(graphs["1-hot/global"]) == []


def _sg(g: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in of_type(g, SG) if r["name"] == name)


def _world_ssh(g: dict[str, Any]) -> None:
    _sg(g, "app-host-sg")["inputs"]["ingress"].append(
        {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]})


def _world_db_v6(g: dict[str, Any]) -> None:
    _sg(g, "shared-sg")["inputs"]["ingress"].append(
        {"protocol": "tcp", "fromPort": 5432, "toPort": 5432, "ipv6CidrBlocks": ["::/0"]})


def _https_on_hosts(g: dict[str, Any]) -> None:
    _sg(g, "app-host-sg")["inputs"]["ingress"].append(
        {"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]})


def _alb_all_ports(g: dict[str, Any]) -> None:
    _sg(g, "app-alb-sg")["inputs"]["ingress"][0].update(protocol="-1", fromPort=0, toPort=0)


def _standalone_rule(g: dict[str, Any]) -> None:
    g["resources"].append({
        "urn": "urn:pulumi:x::y::aws:ec2/securityGroupRule:SecurityGroupRule::ssh",
        "type": "aws:ec2/securityGroupRule:SecurityGroupRule", "name": "ssh", "custom": True,
        "parent": None, "provider": None, "dependencies": [], "property_dependencies": {},
        "inputs": {"type": "ingress", "protocol": "tcp", "fromPort": 22, "toPort": 22,
                   "cidrBlocks": ["0.0.0.0/0"]}, "outputs": {}})


def _hot_min_one(g: dict[str, Any]) -> None:
    one(g, ASG)["inputs"]["minSize"] = 1


def _unencrypted(g: dict[str, Any]) -> None:
    for key in ("inputs", "outputs"):
        one(g, EFS)[key]["encrypted"] = False


def _mount_target_gone(g: dict[str, Any]) -> None:
    g["resources"].remove(of_type(g, MOUNT_TARGET)[-1])


def _copy_same_region(g: dict[str, Any]) -> None:
    action = one(g, "aws:backup/plan:Plan")["inputs"]["rules"][0]["copyActions"][0]
    action["destinationVaultArn"] = action["destinationVaultArn"].replace("eu-west-1",
                                                                          "us-east-1")


def _no_copy(g: dict[str, Any]) -> None:
    one(g, "aws:backup/plan:Plan")["inputs"]["rules"][0]["copyActions"] = []


def _single_az(g: dict[str, Any]) -> None:
    for subnet in of_type(g, SUBNET):
        subnet["outputs"]["availabilityZone"] = "us-east-1a"


def _no_secondary(g: dict[str, Any]) -> None:
    g["resources"] = [r for r in g["resources"]
                      if not (r["type"] == RECORD and r["name"].endswith("secondary"))]


def _two_primaries(g: dict[str, Any]) -> None:
    record = next(r for r in of_type(g, RECORD) if r["name"].endswith("secondary"))
    record["outputs"]["failoverRoutingPolicies"] = [{"type": "PRIMARY"}]


def _db_public(g: dict[str, Any]) -> None:
    of_type(g, "aws:rds/clusterInstance:ClusterInstance")[0]["inputs"][
        "publiclyAccessible"] = True


def _db_untagged(g: dict[str, Any]) -> None:
    one(g, "aws:rds/cluster:Cluster")["inputs"]["tags"].pop("hadeploy:backup")


def _selection_elsewhere(g: dict[str, Any]) -> None:
    one(g, "aws:backup/selection:Selection")["inputs"]["selectionTags"][0]["value"] = "other"


def _db_plain(g: dict[str, Any]) -> None:
    cluster = one(g, "aws:rds/cluster:Cluster")["inputs"]
    cluster.update(storageEncrypted=False, masterPassword="hunter2")


VIOLATIONS: dict[str, tuple[str, Callable[[dict[str, Any]], None], set[str]]] = {
    "database instance public": ("us-east-1+data", _db_public,
                                 {"hadeploy-database-encrypted-private"}),
    "database unencrypted, password in the stack": (
        "eu-west-1+data", _db_plain, {"hadeploy-database-encrypted-private"}),
    "database not selected for backup": ("eu-west-1+data", _db_untagged,
                                         {"hadeploy-backup-selects-every-data-store"}),
    "backup selection selects nothing here": (
        "us-east-1+data", _selection_elsewhere, {"hadeploy-backup-selects-every-data-store"}),
    "ssh open to the world": ("us-east-1", _world_ssh, {"hadeploy-world-ingress-only-alb-web"}),
    "database open to ::/0": ("us-east-1", _world_db_v6,
                              {"hadeploy-world-ingress-only-alb-web"}),
    "HTTPS open on the hosts": ("us-east-1", _https_on_hosts,
                                {"hadeploy-world-ingress-only-alb-web"}),
    "ALB open on every port": ("us-east-1", _alb_all_ports,
                               {"hadeploy-world-ingress-only-alb-web"}),
    "standalone rule opens ssh": ("us-east-1", _standalone_rule,
                                  {"hadeploy-world-ingress-only-alb-web"}),
    "hot region with 1 host": ("us-east-1", _hot_min_one, {"hadeploy-hot-asg-min-2"}),
    "EFS unencrypted": ("us-east-1", _unencrypted,
                        {"hadeploy-efs-encrypted", "hadeploy-efs-mount-target-per-host-az"}),
    "AZ without mount target": ("eu-west-1", _mount_target_gone,
                                {"hadeploy-efs-mount-target-per-host-az"}),
    "backups copied within the region": ("us-east-1", _copy_same_region,
                                         {"hadeploy-backup-copies-to-another-region"}),
    "backups not copied": ("eu-west-1", _no_copy, {"hadeploy-backup-copies-to-another-region"}),
    "region in one AZ": ("us-east-1", _single_az, {"hadeploy-region-multi-az"}),
    "failover without SECONDARY": ("global", _no_secondary,
                                   {"hadeploy-failover-primary-and-secondary"}),
    "failover with two PRIMARY": ("global", _two_primaries,
                                  {"hadeploy-failover-primary-and-secondary"}),
}


@pytest.mark.parametrize("violation", list(VIOLATIONS))
def test_each_violation_is_caught_by_its_policy(graphs, violation):
    stack, break_it, expected = VIOLATIONS[violation]
    region, _, data = stack.partition("+")
    graph = copy.deepcopy(graphs[f"2-warm{'+data' if data else ''}/{region}"])
    # Resource policies see inputs, stack policies outputs: one dict, so a break hits both.
    for r in graph["resources"]:
        r["inputs"] = r["outputs"] = {**r["outputs"], **r["inputs"]}
    break_it(graph)
    assert policies_hit(graph) == expected


def test_a_warm_region_may_run_one_host(graphs):
    graph = copy.deepcopy(graphs["2-warm/eu-west-1"])
    assert one(graph, ASG)["inputs"]["minSize"] == 1
    assert run_policies(graph) == []


def test_stack_policies_work_in_a_preview_where_ids_are_unknown(graphs):
    """In a first preview subnet ids are unknown; the AZ rules follow property
    dependencies instead of ids, so they still decide."""
    from pulumi_policy.proxy import UNKNOWN_ARRAY_VALUE, UNKNOWN_STRING_VALUE

    graph = copy.deepcopy(graphs["2-warm/us-east-1"])
    for r in graph["resources"]:
        if r["type"] == ASG:
            r["outputs"]["vpcZoneIdentifiers"] = UNKNOWN_ARRAY_VALUE
        if r["type"] == MOUNT_TARGET:
            r["outputs"]["subnetId"] = UNKNOWN_STRING_VALUE
    assert run_policies(graph) == []
    graph["resources"].remove(of_type(graph, MOUNT_TARGET)[0])
    assert policies_hit(graph) == {"hadeploy-efs-mount-target-per-host-az"}


def test_policy_names_are_unique_and_documented():
    from hadeploy.infra.policy import POLICIES

    names = [p.name for p in POLICIES]
    assert len(names) == len(set(names)) == 9
    assert all(p.description and p.enforcement_level is not None for p in POLICIES)
