"""``AuroraDatabase``: the region's member of the deployment's Aurora PostgreSQL Global
Database — the AWS counterpart of the lab's Patroni clusters.

One global cluster per deployment, owned by the primary region's stack; every region's
stack owns its own regional cluster (encrypted with a key of its region, in its private
subnets, reachable on 5432 from its app hosts only) with ``instances`` instances spread over
the AZs (a reader takes over when the writer's AZ fails: the Multi-AZ part). Secondary
clusters join the global cluster by its identifier — a plain string, so no stack
references another. Aurora then does what the lab does with Patroni: storage-level
replication to the secondary regions, a managed *switchover* (no data loss) and a managed
*failover* that may lose what was in flight (``AllowDataLoss``); ``hadeploy failover``
calls those (:mod:`hadeploy.targets.aws.data`).

Backups: Aurora's own continuous backups (``backup_retention_days``), kept after the
cluster is deleted, plus a final snapshot; the cluster carries the backup tag, so the
region's AWS Backup plan snapshots it and copies the snapshot to another region. The KMS
key outlives the stack too: without it no snapshot could be restored. With
``delete_backups`` none of that is kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi  # noqa: TID253 - hadeploy.infra is only imported by the AWS target
import pulumi_aws as aws  # noqa: TID253

from hadeploy.infra.settings import TAG_BACKUP, TAG_TIER, DatabasePlan

POSTGRES_PORT = 5432
ENGINE = "aurora-postgresql"


@dataclass(frozen=True)
class AuroraDatabaseArgs:
    plan: DatabasePlan
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]  # one private subnet per AZ
    host_security_group_id: pulumi.Input[str]  # the app hosts: the only clients
    deletion_protection: bool = False
    backup_tag: str | None = None  # hadeploy:backup=<tag>: the AWS Backup plan selects it
    delete_backups: bool = False  # destroy keeps no final snapshot, backups or key
    final_snapshot_suffix: str = "final"  # a teardown passes a unique one (identifiers clash)
    tags: Mapping[str, str] = field(default_factory=dict)


class AuroraDatabase(pulumi.ComponentResource):
    security_group: aws.ec2.SecurityGroup
    subnet_group: aws.rds.SubnetGroup
    key: aws.kms.Key
    global_cluster: aws.rds.GlobalCluster | None
    cluster: aws.rds.Cluster
    instances: list[aws.rds.ClusterInstance]

    def __init__(self, name: str, args: AuroraDatabaseArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hadeploy:database:AuroraDatabase", name, None, opts)
        self._name, self._args = name, args
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg", vpc_id=args.vpc_id,
            description="hadeploy database: PostgreSQL from the app hosts only",
            ingress=[aws.ec2.SecurityGroupIngressArgs(
                protocol="tcp", from_port=POSTGRES_PORT, to_port=POSTGRES_PORT,
                security_groups=[args.host_security_group_id],
                description="PostgreSQL from the app hosts")],
            tags=self._tags("sg", **{TAG_TIER: "database"}), opts=self._opts())
        self.subnet_group = aws.rds.SubnetGroup(
            f"{name}-subnets", name=args.plan.cluster_id, subnet_ids=list(args.subnet_ids),
            description="hadeploy database: the region's private subnets",
            tags=self._tags("subnets"), opts=self._opts())
        self.key = aws.kms.Key(
            f"{name}-key", description=f"hadeploy database {args.plan.cluster_id}",
            enable_key_rotation=True, deletion_window_in_days=30,
            tags=self._tags("key"), opts=self._opts(retain_on_delete=not args.delete_backups))
        self.global_cluster = self._create_global_cluster()
        self.cluster = self._create_cluster()
        self.instances = self._create_instances()
        self.register_outputs({"cluster_id": self.cluster.id,
                               "endpoint": self.cluster.endpoint,
                               "reader_endpoint": self.cluster.reader_endpoint})

    def _opts(self, **kw: object) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kw)  # type: ignore[arg-type]

    def _tags(self, part: str, **extra: str) -> dict[str, str]:
        return {**self._args.tags, "Name": f"{self._name}-{part}", **extra}

    def _create_global_cluster(self) -> aws.rds.GlobalCluster | None:
        plan = self._args.plan
        if not plan.creates_global:
            return None
        return aws.rds.GlobalCluster(
            f"{self._name}-global", global_cluster_identifier=plan.global_id, engine=ENGINE,
            engine_version=plan.engine_version, database_name="hadeploy",
            storage_encrypted=True, deletion_protection=self._args.deletion_protection,
            # After a switchover the writer lives in another region's stack: destroying this
            # one detaches it (a standalone cluster, data intact) instead of failing.
            force_destroy=True, opts=self._opts())

    def _create_cluster(self) -> aws.rds.Cluster:
        plan, args = self._args.plan, self._args
        # Only the cluster that creates the global database has credentials (kept by RDS
        # in Secrets Manager, never in the stack); a secondary gets them by replication.
        # A switchover moves the writer without any input changing here; Aurora sets
        # replication_source_identifier on a secondary itself.
        writer_only: dict[str, object] = {
            "master_username": "hadeploy", "manage_master_user_password": True,
        } if plan.creates_global else {}
        depends = [self.global_cluster] if self.global_cluster is not None else []
        backup_tag = {TAG_BACKUP: args.backup_tag} if args.backup_tag else {}
        keep = not args.delete_backups
        return aws.rds.Cluster(
            f"{self._name}-cluster", cluster_identifier=plan.cluster_id, engine=ENGINE,
            engine_version=plan.engine_version, global_cluster_identifier=plan.global_id,
            db_subnet_group_name=self.subnet_group.name,
            vpc_security_group_ids=[self.security_group.id], port=POSTGRES_PORT,
            storage_encrypted=True, kms_key_id=self.key.arn,
            backup_retention_period=plan.backup_retention_days,
            preferred_backup_window="02:00-03:00", copy_tags_to_snapshot=True,
            deletion_protection=args.deletion_protection,
            skip_final_snapshot=not keep, delete_automated_backups=not keep,
            final_snapshot_identifier=(f"{plan.cluster_id}-{args.final_snapshot_suffix}"
                                       if keep else None),
            iam_database_authentication_enabled=True,
            enabled_cloudwatch_logs_exports=["postgresql"],
            tags=self._tags("cluster", **backup_tag), **writer_only,  # type: ignore[arg-type]
            opts=self._opts(depends_on=depends,
                            ignore_changes=["replication_source_identifier"]))

    def _create_instances(self) -> list[aws.rds.ClusterInstance]:
        plan = self._args.plan
        return [aws.rds.ClusterInstance(
            f"{self._name}-{i}", identifier=f"{plan.cluster_id}-{i}",
            cluster_identifier=self.cluster.id, engine=ENGINE,
            engine_version=plan.engine_version, instance_class=plan.instance_class,
            db_subnet_group_name=self.subnet_group.name, publicly_accessible=False,
            promotion_tier=i, auto_minor_version_upgrade=True,
            performance_insights_enabled=True, performance_insights_kms_key_id=self.key.arn,
            tags=self._tags(f"instance-{i}"), opts=self._opts())
            for i in range(plan.instances)]
