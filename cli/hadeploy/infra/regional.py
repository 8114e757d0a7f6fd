"""The regional program: one region's whole stack, independent of every other region.

Every resource uses the region's explicit ``aws.Provider`` (inherited through the
components). Values about the peer region are plain strings from configuration or from the
driver's stack config (``hadeploy:peerReady``, ``hadeploy:peerEfsId``,
``hadeploy:globalDbReady``) — never stack
references — so a region builds, and is destroyed, while its peer is down.

Before ``down`` destroys a region, the driver updates it once with a :class:`Teardown`:
replication to the peer is dropped (no EFS pair binds two stacks any more) and what holds
backups is either kept on destroy (the default) or emptied and deleted with the stack
(``hadeploy down --delete-backups``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi  # noqa: TID253 - hadeploy.infra is only imported by the AWS target
import pulumi_aws as aws  # noqa: TID253

from hadeploy.config import AwsSettings, Deployment
from hadeploy.infra.backups import (
    AuroraRestoreTarget,
    Backups,
    BackupsArgs,
    RestoreTests,
    RestoreTestsArgs,
)
from hadeploy.infra.cluster import AppCluster, AppClusterArgs
from hadeploy.infra.database import AuroraDatabase, AuroraDatabaseArgs
from hadeploy.infra.network import Network, NetworkArgs
from hadeploy.infra.settings import (
    CONFIG_NAMESPACE,
    TAG_HOSTS,
    RegionPlan,
    Teardown,
    load_stack_config,
    plan_region,
    settings_of,
)
from hadeploy.infra.storage import EfsReplicationArgs, SharedStorage, SharedStorageArgs


@dataclass(frozen=True)
class RegionalInputs:
    """What the program gets besides hadeploy.yaml: from hadeploy's driver directly (an
    inline program: the secret never crosses a command line), or from stack config
    (the plain pulumi CLI)."""

    app_secret: pulumi.Input[str]  # made a Pulumi secret by the program
    peer_ready: bool = False  # the peer's bucket exists: S3 replication can target it
    peer_efs_id: str | None = None  # the peer's file system: the writer replicates into it
    # The primary region's global database exists: a secondary region's cluster can join it.
    global_db_ready: bool = False
    teardown: Teardown | None = None  # None: a normal up


def read_inputs() -> RegionalInputs:
    cfg = pulumi.Config(CONFIG_NAMESPACE)
    # The plain CLI's teardown: set hadeploy:teardownStamp (e.g. 20250101-1200) and, to
    # delete the backups too, hadeploy:deleteBackups true; 'pulumi up', then 'pulumi destroy'.
    delete = cfg.get_bool("deleteBackups") or False
    stamp = cfg.get("teardownStamp") or ""
    return RegionalInputs(app_secret=cfg.require_secret("appSecret"),
                          peer_ready=cfg.get_bool("peerReady") or False,
                          peer_efs_id=cfg.get("peerEfsId") or None,
                          global_db_ready=cfg.get_bool("globalDbReady") or False,
                          teardown=Teardown(delete, stamp) if delete or stamp else None)


def deployment_from_stack_config() -> tuple[Deployment, AwsSettings]:
    """For the plain ``pulumi`` CLI: ``hadeploy:deployment`` (hadeploy.yaml as an object)
    or ``hadeploy:configFile`` (a path to hadeploy.yaml, relative to the project)."""
    cfg = pulumi.Config(CONFIG_NAMESPACE)
    raw = cfg.get_object("deployment")
    if raw is None:
        import yaml

        path = Path(cfg.require("configFile"))
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError("hadeploy:deployment must be a mapping (hadeploy.yaml as an object)")
    return load_stack_config(raw)


def regional_program(deployment: Deployment, region_name: str,
                     settings: AwsSettings | None = None,
                     inputs: RegionalInputs | None = None) -> None:
    """The Pulumi program of stack ``<deployment>-<region_name>``; ``inputs`` default to
    the stack's config (:func:`read_inputs`)."""
    plan = plan_region(deployment, settings or settings_of(deployment), region_name)
    for key, value in build_region(plan, inputs or read_inputs()).items():
        pulumi.export(key, value)


def region_provider(plan: RegionPlan) -> aws.Provider:
    return aws.Provider(
        f"aws-{plan.aws_region}", region=plan.aws_region, allowed_account_ids=[plan.account_id],
        default_tags=aws.ProviderDefaultTagsArgs(tags=plan.tags))


def issue_certificate(plan: RegionPlan, provider: aws.Provider) -> pulumi.Output[str]:
    """An ACM certificate for the app's name, validated by DNS in the existing hosted zone
    (``aws.zone_id``); the HTTPS listener waits for it to be issued. ACM gives every region
    of an account the same validation record for a name, so each regional stack writes it
    (``allow_overwrite``) and none deletes it: the other regions' certificates renew by it."""
    assert plan.zone_id, "checked by the settings: no certificate ARN and no hosted zone"
    opts = pulumi.ResourceOptions(provider=provider)
    cert = aws.acm.Certificate("cert", domain_name=plan.domain, validation_method="DNS",
                               opts=opts)
    option = cert.domain_validation_options[0]
    record = aws.route53.Record(
        "cert-validation", zone_id=plan.zone_id, name=option.resource_record_name,
        type=option.resource_record_type, records=[option.resource_record_value], ttl=300,
        allow_overwrite=True,
        opts=pulumi.ResourceOptions(provider=provider, retain_on_delete=True))
    validated = aws.acm.CertificateValidation(
        "cert-validated", certificate_arn=cert.arn, validation_record_fqdns=[record.fqdn],
        opts=opts)
    arn: pulumi.Output[str] = validated.certificate_arn
    return arn


def build_region(plan: RegionPlan, inputs: RegionalInputs) -> dict[str, Any]:
    teardown = inputs.teardown
    delete_backups = teardown is not None and teardown.delete_backups
    provider = region_provider(plan)
    in_region = pulumi.ResourceOptions(providers=[provider])
    network = Network("net", NetworkArgs(cidr=plan.vpc_cidr, az_count=plan.az_count),
                      opts=in_region)
    secret = aws.ssm.Parameter(
        "app-secret", name=f"/hadeploy/{plan.deployment}/{plan.name}/app-secret",
        type="SecureString", value=pulumi.Output.secret(inputs.app_secret),
        description="hadeploy application secret (read by the hosts over SSM)",
        opts=pulumi.ResourceOptions(provider=provider))
    cluster = AppCluster("app", AppClusterArgs(
        vpc_id=network.vpc.id, vpc_cidr=plan.vpc_cidr,
        public_subnet_ids=network.public_subnet_ids,
        private_subnet_ids=network.private_subnet_ids, aws_region=plan.aws_region,
        partition=plan.partition, app_port=plan.app_port, health_path=plan.health_path,
        certificate_arn=plan.certificate_arn or issue_certificate(plan, provider),
        instance_type=plan.instance_type, ami=plan.ami,
        root_device=plan.root_device, min_size=plan.min_size, desired=plan.desired,
        max_size=plan.max_size, host_tag=plan.host_tag, standby=plan.standby,
        health_interval=plan.health_interval, unhealthy_threshold=plan.unhealthy_threshold,
        secret_parameter_arn=secret.arn, deletion_protection=plan.deletion_protection),
        opts=in_region)
    replicate = None
    if plan.writer and plan.efs_replication and plan.peer and inputs.peer_efs_id \
            and teardown is None:
        replicate = EfsReplicationArgs(plan.peer.aws_region, inputs.peer_efs_id)
    storage = SharedStorage("shared", SharedStorageArgs(
        vpc_id=network.vpc.id, subnet_ids=network.private_subnet_ids,
        host_security_group_id=cluster.host_security_group.id, backup_tag=plan.host_tag,
        replicate_to=replicate, replica_target=plan.replica_target), opts=in_region)
    backups = Backups("backup", BackupsArgs(
        vault_name=plan.vault_name, schedule=plan.backup_schedule,
        retention_days=plan.retention_days, backup_tag=plan.host_tag,
        bucket_name=plan.bucket_name, partition=plan.partition,
        copy_vault_arn=plan.copy_vault_arn, copy_retention_days=plan.copy_retention_days,
        replicate_to_bucket_arn=(plan.peer.bucket_arn if plan.peer and plan.s3_replication
                                 and inputs.peer_ready and teardown is None else None),
        vault_lock=plan.vault_lock, delete_backups=delete_backups), opts=in_region)
    database = None
    if plan.database is not None and (plan.database.creates_global or inputs.global_db_ready):
        database = AuroraDatabase("db", AuroraDatabaseArgs(
            plan=plan.database, vpc_id=network.vpc.id, subnet_ids=network.private_subnet_ids,
            host_security_group_id=cluster.host_security_group.id,
            deletion_protection=plan.deletion_protection, backup_tag=plan.host_tag,
            delete_backups=delete_backups,
            final_snapshot_suffix=f"final-{teardown.stamp}" if teardown and teardown.stamp
            else "final"), opts=in_region)
    tests = None
    if plan.restore_testing is not None:
        tests = RestoreTests("restore-test", RestoreTestsArgs(
            name=plan.restore_testing.name, schedule=plan.restore_testing.schedule,
            selection_window_days=plan.restore_testing.selection_window_days,
            vault_arn=backups.vault.arn, role_arn=backups.role.arn, backup_tag=plan.host_tag,
            aurora=AuroraRestoreTarget(database.subnet_group.name,
                                       database.security_group.id) if database else None,
            depends_on=backups.role_attachments), opts=in_region)
    return {
        "region": plan.name,
        "aws_region": plan.aws_region,
        "role": plan.role,
        "standby": plan.standby,
        "vpc_id": network.vpc.id,
        "vpc_cidr": plan.vpc_cidr,
        "azs": network.az_names,
        "alb_dns_name": cluster.alb.dns_name,
        "alb_zone_id": cluster.alb.zone_id,
        "target_group_arn": cluster.target_group.arn,
        "https_listener_arn": cluster.https_listener.arn,
        "asg_name": cluster.asg.name,
        "hosts": plan.hosts,
        "host_tag": {"key": TAG_HOSTS, "value": plan.host_tag},
        "efs_id": storage.file_system.id,
        "efs_dns_name": storage.file_system.dns_name,
        "efs_mount_source": storage.mount_source,  # <dns name>:/, what the hosts mount
        "efs_access_point_id": storage.access_point.id,
        "efs_replicating_to": replicate.aws_region if replicate else None,
        "backup_vault_arn": backups.vault.arn,
        "backup_vault_lock": ({"min_retention_days": plan.vault_lock.min_retention_days,
                               "max_retention_days": plan.vault_lock.max_retention_days,
                               "changeable_for_days": plan.vault_lock.changeable_for_days}
                              if plan.vault_lock else None),
        "restore_testing_plan": tests.plan.name if tests else None,
        "backups_kept_on_destroy": not delete_backups,
        "artifacts_bucket_arn": backups.bucket.arn,
        "artifacts_replicating_to": (plan.peer.bucket_arn if backups.replication is not None
                                     and plan.peer else None),
        "app_secret_parameter": secret.name,
        "db_global_cluster_id": plan.database.global_id if database and plan.database
        else None,
        "db_cluster_id": database.cluster.cluster_identifier if database else None,
        "db_endpoint": database.cluster.endpoint if database else None,
        "db_reader_endpoint": database.cluster.reader_endpoint if database else None,
    }
