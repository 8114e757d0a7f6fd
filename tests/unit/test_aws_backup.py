"""AWS backups under Pulumi's mocks: Aurora and EFS selected by the backup plan and copied to
another region, Vault Lock as configured, restore testing of both, and what a teardown keeps
or deletes. Every check is shown to fail on a deliberately broken graph.

The graphs come from tests/infra_mock_program.py (one program per subprocess); nothing here
reaches AWS or needs the Pulumi CLI.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from hadeploy import config
from hadeploy.infra.settings import restore_test_name
from tests.infra_mock_program import (
    BUCKET,
    EFS,
    KMS_KEY,
    RDS_CLUSTER,
    RESTORE_PLAN,
    RESTORE_SELECTION,
    VAULT,
    VAULT_LOCK,
    build_graphs,
    deployment,
    of_type,
    one,
    regional_problems,
    regional_scenario,
    restore_test_problems,
    retention_problems,
    selected_data_problems,
    steady_scenarios,
    vault_lock_problems,
)

pytestmark = pytest.mark.slow

LOCK = {"min_retention_days": 7, "max_retention_days": 400, "changeable_for_days": 3}
DEPS: dict[str, dict[str, Any]] = {
    "data": deployment(2, "warm", data=True),
    "locked": deployment(2, "warm", data=True, backup={"vault_lock": LOCK}),
    "plain": deployment(2, "warm"),
    "untested": deployment(2, "warm", backup={"restore_testing": {"enabled": False}}),
}
STAMP = "20250101-000000"
KEEP, DELETE = "teardown (keep backups)", "teardown (delete backups)"


@pytest.fixture(scope="module")
def graphs() -> dict[str, dict[str, Any]]:
    scenarios: dict[str, dict[str, Any]] = {}
    for key, dep in DEPS.items():
        scenarios.update(steady_scenarios(dep, prefix=f"{key}/"))
    steady = scenarios["data/us-east-1"]["config"]
    scenarios[KEEP] = regional_scenario(DEPS["data"], "us-east-1",
                                        **{**steady, "teardownStamp": STAMP})
    scenarios[DELETE] = regional_scenario(DEPS["data"], "us-east-1", **{
        **steady, "teardownStamp": STAMP, "deleteBackups": True})
    return build_graphs({k: v for k, v in scenarios.items() if not k.endswith("/global")})


def broken(graph: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    g = copy.deepcopy(graph)
    change(g)
    return g


@pytest.mark.parametrize("stack", ["data/us-east-1", "data/eu-west-1", "locked/us-east-1",
                                   "plain/eu-west-1", "untested/us-east-1"])
def test_every_stack_keeps_every_backup_invariant(graphs, stack):
    key, region = stack.split("/")
    assert regional_problems(graphs[stack], DEPS[key], region) == []


# --- 1. Aurora: selected by the AWS Backup plan, copied to another region -----------------

def test_aurora_and_efs_are_selected_by_the_plan_that_copies_to_the_peer(graphs):
    for region, peer in (("us-east-1", "eu-west-1"), ("eu-west-1", "us-east-1")):
        graph = graphs[f"data/{region}"]
        assert selected_data_problems(graph) == []
        tag = f"demo-{region}"
        assert one(graph, RDS_CLUSTER)["inputs"]["tags"]["hadeploy:backup"] == tag
        assert one(graph, EFS)["inputs"]["tags"]["hadeploy:backup"] == tag
        copies = one(graph, "aws:backup/plan:Plan")["inputs"]["rules"][0]["copyActions"]
        assert [c["destinationVaultArn"] for c in copies] == [
            f"arn:aws:backup:{peer}:123456789012:backup-vault:hd-demo-{peer}"]


def test_aurora_gets_no_automated_backup_replication(graphs):
    """Aurora clusters do not support RDS cross-Region automated backup replication (an
    RDS DB instance feature): the cross-region copies are AWS Backup copy actions of the
    cluster's snapshots, plus the Global Database itself (docs/aws.md)."""
    for region in ("us-east-1", "eu-west-1"):
        graph = graphs[f"data/{region}"]
        assert not [r for r in graph["resources"] if "AutomatedBackupsReplication" in r["type"]]
        cluster = one(graph, RDS_CLUSTER)["inputs"]
        assert cluster["backupRetentionPeriod"] == 7 and cluster["copyTagsToSnapshot"] is True


def _untag_cluster(g: dict[str, Any]) -> None:
    one(g, RDS_CLUSTER)["inputs"]["tags"].pop("hadeploy:backup")


def _untag_efs(g: dict[str, Any]) -> None:
    one(g, EFS)["inputs"]["tags"]["hadeploy:backup"] = "demo-elsewhere"


def _select_other_tag(g: dict[str, Any]) -> None:
    one(g, "aws:backup/selection:Selection")["inputs"]["selectionTags"][0]["value"] = "x"


def _copy_home(g: dict[str, Any]) -> None:
    action = one(g, "aws:backup/plan:Plan")["inputs"]["rules"][0]["copyActions"][0]
    action["destinationVaultArn"] = action["destinationVaultArn"].replace("eu-west-1",
                                                                          "us-east-1")


@pytest.mark.parametrize("change", [_untag_cluster, _untag_efs, _select_other_tag,
                                    _copy_home], ids=lambda f: f.__name__)
def test_selection_check_fails_on_a_broken_graph(graphs, change):
    graph = graphs["data/us-east-1"]
    assert selected_data_problems(broken(graph, change)) != []
    assert regional_problems(broken(graph, change), DEPS["data"], "us-east-1") != []


# --- 2. Vault Lock -----------------------------------------------------------------------

def test_vault_lock_is_on_the_vault_as_configured_and_absent_by_default(graphs):
    lock = one(graphs["locked/eu-west-1"], VAULT_LOCK)
    assert lock["inputs"] == {"backupVaultName": "hd-demo-eu-west-1", "minRetentionDays": 7.0,
                              "maxRetentionDays": 400.0, "changeableForDays": 3.0}
    assert vault_lock_problems(graphs["locked/eu-west-1"], DEPS["locked"]) == []
    assert not of_type(graphs["data/eu-west-1"], VAULT_LOCK)
    assert graphs["locked/eu-west-1"]["exports"]["backup_vault_lock"] == LOCK


def _drop_lock(g: dict[str, Any]) -> None:
    g["resources"].remove(one(g, VAULT_LOCK))


def _shorter_lock(g: dict[str, Any]) -> None:
    one(g, VAULT_LOCK)["inputs"]["minRetentionDays"] = 1.0


def _removable_lock(g: dict[str, Any]) -> None:
    one(g, VAULT_LOCK)["inputs"].pop("changeableForDays")


def _lock_elsewhere(g: dict[str, Any]) -> None:
    one(g, VAULT_LOCK)["property_dependencies"]["backupVaultName"] = []


@pytest.mark.parametrize("change", [_drop_lock, _shorter_lock, _removable_lock,
                                    _lock_elsewhere], ids=lambda f: f.__name__)
def test_vault_lock_check_fails_on_a_broken_graph(graphs, change):
    graph = graphs["locked/us-east-1"]
    assert vault_lock_problems(broken(graph, change), DEPS["locked"]) != []


def test_an_unconfigured_lock_is_caught(graphs):
    locked = one(graphs["locked/us-east-1"], VAULT_LOCK)
    graph = broken(graphs["data/us-east-1"], lambda g: g["resources"].append(locked))
    assert vault_lock_problems(graph, DEPS["data"]) != []


def _aws_doc(**backup: Any) -> dict[str, Any]:
    return deployment(2, "warm", backup=backup)


@pytest.mark.parametrize(("backup", "field", "words"), [
    ({"vault_lock": {"min_retention_days": 40}}, "aws.backup.retention_days", "at least 40"),
    ({"retention_days": 30, "copy_retention_days": 500, "vault_lock": LOCK},
     "aws.backup.copy_retention_days", "7..400 days"),
    ({"vault_lock": {"min_retention_days": 9, "max_retention_days": 8}},
     "aws.backup.vault_lock.max_retention_days", "below min_retention_days"),
    ({"vault_lock": {"min_retention_days": 7, "changeable_for_days": 1}},
     "aws.backup.vault_lock.changeable_for_days", ""),
    ({"restore_testing": {"schedule": "every sunday"}}, "aws.backup.restore_testing.schedule",
     "schedule expression"),
])
def test_backup_config_errors_name_the_field_and_the_fix(backup, field, words):
    with pytest.raises(config.ConfigError) as err:
        config.parse(_aws_doc(**backup))
    text = str(err.value) + str(err.value.hint or "")
    assert field in text and words in text


# --- 3. Restore testing (the counterpart of the lab's 'backup verify') -------------------

def test_restore_tests_cover_the_efs_and_the_aurora_cluster(graphs):
    graph = graphs["data/eu-west-1"]
    assert restore_test_problems(graph, DEPS["data"], "eu-west-1") == []
    plan = one(graph, RESTORE_PLAN)["inputs"]
    assert plan["name"] == "hd_demo_eu_west_1"
    assert plan["scheduleExpression"] == "cron(0 5 ? * SUN *)"
    kinds = {s["inputs"]["protectedResourceType"]: s["inputs"]
             for s in of_type(graph, RESTORE_SELECTION)}
    assert set(kinds) == {"EFS", "Aurora"}
    assert kinds["Aurora"]["restoreMetadataOverrides"] == {
        "dbsubnetgroupname": "hd-demo-eu-west-1", "vpcSecurityGroupIds": '["db-sg-id"]'}
    assert graph["exports"]["restore_testing_plan"] == "hd_demo_eu_west_1"


def test_restore_tests_follow_the_configuration(graphs):
    plain = graphs["plain/us-east-1"]
    assert restore_test_problems(plain, DEPS["plain"], "us-east-1") == []
    assert [s["inputs"]["protectedResourceType"]
            for s in of_type(plain, RESTORE_SELECTION)] == ["EFS"]
    untested = graphs["untested/us-east-1"]
    assert not of_type(untested, RESTORE_PLAN) and not of_type(untested, RESTORE_SELECTION)
    assert untested["exports"]["restore_testing_plan"] is None


def _selection(g: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(s for s in of_type(g, RESTORE_SELECTION)
                if s["inputs"]["protectedResourceType"] == kind)


def _other_schedule(g: dict[str, Any]) -> None:
    one(g, RESTORE_PLAN)["inputs"]["scheduleExpression"] = "cron(0 5 1 * ? *)"


def _any_vault(g: dict[str, Any]) -> None:
    one(g, RESTORE_PLAN)["inputs"]["recoveryPointSelection"]["includeVaults"] = ["*"]


def _no_aurora_test(g: dict[str, Any]) -> None:
    g["resources"].remove(_selection(g, "Aurora"))


def _efs_test_of_another_region(g: dict[str, Any]) -> None:
    condition = _selection(g, "EFS")["inputs"]["protectedResourceConditions"]
    condition["stringEquals"][0]["value"] = "demo-us-east-1"


def _aurora_into_default_vpc(g: dict[str, Any]) -> None:
    _selection(g, "Aurora")["inputs"].pop("restoreMetadataOverrides")


@pytest.mark.parametrize("change", [_other_schedule, _any_vault, _no_aurora_test,
                                    _efs_test_of_another_region, _aurora_into_default_vpc],
                         ids=lambda f: f.__name__)
def test_restore_test_check_fails_on_a_broken_graph(graphs, change):
    graph = graphs["data/eu-west-1"]
    assert restore_test_problems(broken(graph, change), DEPS["data"], "eu-west-1") != []
    assert regional_problems(broken(graph, change), DEPS["data"], "eu-west-1") != []


def test_disabled_restore_testing_check_fails_when_a_plan_exists(graphs):
    plan = one(graphs["plain/us-east-1"], RESTORE_PLAN)
    graph = broken(graphs["untested/us-east-1"], lambda g: g["resources"].append(plan))
    assert restore_test_problems(graph, DEPS["untested"], "us-east-1") != []


@pytest.mark.parametrize(("deployment_name", "region"), [
    ("demo", "us-east-1"), ("a" * 24, "b" * 24), ("x-y-z", "eu-central-1")])
def test_restore_test_names_are_what_aws_accepts(deployment_name, region):
    name = restore_test_name(deployment_name, region)
    assert re.fullmatch(r"[A-Za-z0-9_]{1,50}", name)
    assert restore_test_name(deployment_name, region) == name  # stable
    assert restore_test_name(deployment_name, region + "x") != name


# --- 4. Destroy: backups kept unless --delete-backups ------------------------------------

def test_a_normal_up_keeps_backups_on_destroy(graphs):
    graph = graphs["data/us-east-1"]
    assert retention_problems(graph) == []
    assert retention_problems(graph, delete_backups=True) != []
    kept = {(r["type"], r["name"]) for r in graph["resources"] if r["retain_on_delete"]}
    assert {(VAULT, "backup-vault"), (BUCKET, "backup-artifacts"), (KMS_KEY, "db-key")} <= kept
    # The backup plan, its selection, role and restore tests go with the stack.
    assert not {t for t, _ in kept} & {"aws:backup/plan:Plan", RESTORE_PLAN, RDS_CLUSTER}
    assert graph["exports"]["backups_kept_on_destroy"] is True


def test_the_keeping_teardown_drops_replication_and_names_a_unique_final_snapshot(graphs):
    graph = graphs[KEEP]
    assert retention_problems(graph) == []
    types = {r["type"] for r in graph["resources"]}
    assert "aws:efs/replicationConfiguration:ReplicationConfiguration" not in types
    assert "aws:s3/bucketReplicationConfig:BucketReplicationConfig" not in types
    assert "aws:efs/replicationConfiguration:ReplicationConfiguration" in {
        r["type"] for r in graphs["data/us-east-1"]["resources"]}
    assert one(graph, RDS_CLUSTER)["inputs"]["finalSnapshotIdentifier"] == (
        f"hd-demo-us-east-1-final-{STAMP}")


def test_the_deleting_teardown_empties_and_deletes_what_held_backups(graphs):
    graph = graphs[DELETE]
    assert retention_problems(graph, delete_backups=True) == []
    assert retention_problems(graph) != []
    assert one(graph, VAULT)["inputs"]["forceDestroy"] is True
    assert one(graph, BUCKET)["inputs"]["forceDestroy"] is True
    cluster = one(graph, RDS_CLUSTER)["inputs"]
    assert cluster["skipFinalSnapshot"] is True and "finalSnapshotIdentifier" not in cluster
    assert graph["exports"]["backups_kept_on_destroy"] is False
    # The global cluster detaches members on destroy (the writer may be elsewhere).
    assert one(graph, "aws:rds/globalCluster:GlobalCluster")["inputs"]["forceDestroy"] is True


def _vault_deleted(g: dict[str, Any]) -> None:
    one(g, VAULT)["retain_on_delete"] = False


def _bucket_emptied(g: dict[str, Any]) -> None:
    one(g, BUCKET)["inputs"]["forceDestroy"] = True


def _key_deleted(g: dict[str, Any]) -> None:
    one(g, KMS_KEY)["retain_on_delete"] = False


def _versioning_dropped(g: dict[str, Any]) -> None:
    one(g, "aws:s3/bucketVersioning:BucketVersioning")["retain_on_delete"] = False


def _no_final_snapshot(g: dict[str, Any]) -> None:
    one(g, RDS_CLUSTER)["inputs"]["skipFinalSnapshot"] = True


def _automated_backups_deleted(g: dict[str, Any]) -> None:
    one(g, RDS_CLUSTER)["inputs"]["deleteAutomatedBackups"] = True


@pytest.mark.parametrize("change", [_vault_deleted, _bucket_emptied, _key_deleted,
                                    _versioning_dropped, _no_final_snapshot,
                                    _automated_backups_deleted], ids=lambda f: f.__name__)
def test_retention_check_fails_on_a_broken_graph(graphs, change):
    graph = graphs["data/eu-west-1"]
    assert retention_problems(broken(graph, change)) != []
    assert regional_problems(broken(graph, change), DEPS["data"], "eu-west-1") != []


def test_a_deleting_teardown_that_keeps_something_is_caught(graphs):
    kept_vault = broken(graphs[DELETE], lambda g: one(g, VAULT).update(retain_on_delete=True))
    assert retention_problems(kept_vault, delete_backups=True) != []
    snapshot = broken(graphs[DELETE], lambda g: one(g, RDS_CLUSTER)["inputs"].update(
        skipFinalSnapshot=False, finalSnapshotIdentifier="x"))
    assert retention_problems(snapshot, delete_backups=True) != []


def test_the_example_shows_the_backup_options():
    import yaml

    backup = yaml.safe_load(config.EXAMPLE_AWS)["aws"]["backup"]
    assert set(backup) == set(config.AwsBackup.model_fields)
    assert backup["vault_lock"] is None and backup["restore_testing"]["enabled"] is True
    assert json.loads(json.dumps(config.AwsBackup().model_dump()))["vault_lock"] is None
