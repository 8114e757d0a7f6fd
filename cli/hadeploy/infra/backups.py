"""``Backups``: an AWS Backup vault (optionally with Vault Lock) and plan (copied to a vault
in another region) that selects the region's resources by tag — the EFS and the Aurora
cluster — and the region's S3 artifacts bucket (versioned, encrypted, private) replicated
into the peer region's bucket. ``RestoreTests``: AWS Backup restore testing of the vault's
newest EFS and Aurora recovery points.

What holds backups (the vault, its lock, the bucket and its settings) is kept when the
stack is destroyed (``retain_on_delete``) unless ``delete_backups``: then the vault and the
bucket are emptied (``force_destroy``) and deleted with the stack.

Peer ARNs arrive as plain strings computed from configuration (``settings.plan_region``),
never as references to another stack: a region builds even while its peer is down.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi  # noqa: TID253 - hadeploy.infra is only imported by the AWS target
import pulumi_aws as aws  # noqa: TID253

from hadeploy.config import AwsVaultLock
from hadeploy.infra.settings import TAG_BACKUP

RESOURCE_TAG = f"aws:ResourceTag/{TAG_BACKUP}"  # restore testing's tag condition key


@dataclass(frozen=True)
class BackupsArgs:
    vault_name: str
    schedule: str
    retention_days: int
    backup_tag: str
    bucket_name: str
    partition: str = "aws"
    copy_vault_arn: str | None = None  # a vault in another region
    copy_retention_days: int | None = None
    replicate_to_bucket_arn: str | None = None  # the peer region's artifacts bucket
    vault_lock: AwsVaultLock | None = None
    delete_backups: bool = False  # destroy deletes the vault and bucket with their contents
    tags: Mapping[str, str] = field(default_factory=dict)


def _assume(service: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": service}}]})


def replication_policy(source_arn: str, destination_arn: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"],
         "Resource": source_arn},
        {"Effect": "Allow", "Action": ["s3:GetObjectVersionForReplication",
                                       "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"],
         "Resource": f"{source_arn}/*"},
        {"Effect": "Allow", "Action": ["s3:ReplicateObject", "s3:ReplicateDelete",
                                       "s3:ReplicateTags"],
         "Resource": f"{destination_arn}/*"},
    ]})


class Backups(pulumi.ComponentResource):
    vault: aws.backup.Vault
    vault_lock: aws.backup.VaultLockConfiguration | None
    plan: aws.backup.Plan
    role: aws.iam.Role
    bucket: aws.s3.Bucket

    def __init__(self, name: str, args: BackupsArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hadeploy:backups:Backups", name, None, opts)
        self._name = name
        self._args = args
        self.vault = aws.backup.Vault(f"{name}-vault", name=args.vault_name,
                                      force_destroy=args.delete_backups,
                                      tags=self._tags("vault"), opts=self._keep())
        self.vault_lock = self._create_vault_lock()
        self.plan = self._create_plan()
        self._create_selection()
        self.bucket = self._create_bucket()
        self.replication = self._create_bucket_replication()
        self.register_outputs({"vault_arn": self.vault.arn, "bucket_arn": self.bucket.arn})

    def _opts(self, depends_on: list[pulumi.Resource] | None = None) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, depends_on=depends_on)

    def _keep(self) -> pulumi.ResourceOptions:
        """What holds or protects backups outlives the stack unless ``delete_backups``."""
        return pulumi.ResourceOptions(parent=self,
                                      retain_on_delete=not self._args.delete_backups)

    def _create_vault_lock(self) -> aws.backup.VaultLockConfiguration | None:
        lock = self._args.vault_lock
        if lock is None:
            return None
        return aws.backup.VaultLockConfiguration(
            f"{self._name}-vault-lock", backup_vault_name=self.vault.name,
            min_retention_days=lock.min_retention_days,
            max_retention_days=lock.max_retention_days,
            changeable_for_days=lock.changeable_for_days, opts=self._keep())

    def _tags(self, part: str) -> dict[str, str]:
        return {**self._args.tags, "Name": f"{self._name}-{part}"}

    def _create_plan(self) -> aws.backup.Plan:
        a = self._args
        copies = []
        if a.copy_vault_arn:
            copies.append(aws.backup.PlanRuleCopyActionArgs(
                destination_vault_arn=a.copy_vault_arn,
                lifecycle=aws.backup.PlanRuleCopyActionLifecycleArgs(
                    delete_after=a.copy_retention_days or a.retention_days)))
        return aws.backup.Plan(
            f"{self._name}-plan", name=f"{a.vault_name}-plan",
            rules=[aws.backup.PlanRuleArgs(
                rule_name="scheduled", target_vault_name=self.vault.name,
                schedule=a.schedule, start_window=60, completion_window=360,
                lifecycle=aws.backup.PlanRuleLifecycleArgs(delete_after=a.retention_days),
                copy_actions=copies)],
            tags=self._tags("plan"), opts=self._opts())

    def _create_selection(self) -> None:
        a = self._args
        self.role = role = aws.iam.Role(f"{self._name}-role",
                                        assume_role_policy=_assume("backup.amazonaws.com"),
                                        tags=self._tags("role"), opts=self._opts())
        # ...ForRestores also lets AWS Backup delete what a restore test created.
        self.role_attachments = attachments = [aws.iam.RolePolicyAttachment(
            f"{self._name}-role-{kind.lower()}", role=role.name,
            policy_arn=(f"arn:{a.partition}:iam::aws:policy/service-role/"
                        f"AWSBackupServiceRolePolicyFor{kind}"),
            opts=self._opts()) for kind in ("Backup", "Restores")]
        aws.backup.Selection(
            f"{self._name}-selection", name=f"{a.vault_name}-tagged", plan_id=self.plan.id,
            iam_role_arn=role.arn,
            selection_tags=[aws.backup.SelectionSelectionTagArgs(
                type="STRINGEQUALS", key=TAG_BACKUP, value=a.backup_tag)],
            opts=self._opts(depends_on=list(attachments)))

    def _create_bucket(self) -> aws.s3.Bucket:
        a = self._args
        bucket = aws.s3.Bucket(f"{self._name}-artifacts", bucket=a.bucket_name,
                               force_destroy=a.delete_backups,
                               tags=self._tags("artifacts"), opts=self._keep())
        # Kept with the bucket: deleting them would suspend versioning, drop the default
        # encryption and unblock public access on a bucket that outlives the stack.
        self.versioning = aws.s3.BucketVersioning(
            f"{self._name}-artifacts-versioning", bucket=bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                status="Enabled"), opts=self._keep())
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{self._name}-artifacts-sse", bucket=bucket.id,
            rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.
                BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="AES256"),
                bucket_key_enabled=True)], opts=self._keep())
        aws.s3.BucketPublicAccessBlock(
            f"{self._name}-artifacts-pab", bucket=bucket.id, block_public_acls=True,
            block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True,
            opts=self._keep())
        return bucket

    def _create_bucket_replication(self) -> aws.s3.BucketReplicationConfig | None:
        a = self._args
        if a.replicate_to_bucket_arn is None:
            return None
        source_arn = f"arn:{a.partition}:s3:::{a.bucket_name}"
        role = aws.iam.Role(f"{self._name}-replication-role",
                            assume_role_policy=_assume("s3.amazonaws.com"),
                            tags=self._tags("replication-role"), opts=self._opts())
        policy = aws.iam.RolePolicy(
            f"{self._name}-replication-policy", role=role.id,
            policy=replication_policy(source_arn, a.replicate_to_bucket_arn), opts=self._opts())
        return aws.s3.BucketReplicationConfig(
            f"{self._name}-artifacts-replication", bucket=self.bucket.id, role=role.arn,
            rules=[aws.s3.BucketReplicationConfigRuleArgs(
                id="to-peer-region", status="Enabled", priority=1,
                filter=aws.s3.BucketReplicationConfigRuleFilterArgs(prefix=""),
                delete_marker_replication=aws.s3.
                BucketReplicationConfigRuleDeleteMarkerReplicationArgs(status="Enabled"),
                destination=aws.s3.BucketReplicationConfigRuleDestinationArgs(
                    bucket=a.replicate_to_bucket_arn, storage_class="STANDARD"))],
            # Replication needs versioning on, and the role's permissions in place.
            opts=self._opts(depends_on=[self.versioning, policy]))


@dataclass(frozen=True)
class AuroraRestoreTarget:
    """Where a restore test puts the Aurora cluster it restores: the database's own subnet
    group and security group (AWS Backup's default, the default VPC, may not exist)."""

    subnet_group_name: pulumi.Input[str]
    security_group_id: pulumi.Input[str]


@dataclass(frozen=True)
class RestoreTestsArgs:
    name: str  # letters, digits and '_' (settings.restore_test_name)
    schedule: str
    selection_window_days: int
    vault_arn: pulumi.Input[str]  # the region's vault: its newest recovery points are tested
    role_arn: pulumi.Input[str]
    backup_tag: str  # the protected resources carry hadeploy:backup=<backup_tag>
    aurora: AuroraRestoreTarget | None = None  # None: no database tier, EFS only
    depends_on: Sequence[pulumi.Resource] = ()  # the role's policy attachments
    tags: Mapping[str, str] = field(default_factory=dict)


class RestoreTests(pulumi.ComponentResource):
    """A restore testing plan over the region's vault and one selection per protected
    resource type (EFS, and Aurora with the database tier), chosen by the backup tag."""

    plan: aws.backup.RestoreTestingPlan
    selections: dict[str, aws.backup.RestoreTestingSelection]

    def __init__(self, name: str, args: RestoreTestsArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hadeploy:backups:RestoreTests", name, None, opts)
        self.plan = aws.backup.RestoreTestingPlan(
            f"{name}-plan", name=args.name, schedule_expression=args.schedule,
            recovery_point_selection=aws.backup.RestoreTestingPlanRecoveryPointSelectionArgs(
                algorithm="LATEST_WITHIN_WINDOW", include_vaults=[args.vault_arn],
                recovery_point_types=["SNAPSHOT"],
                selection_window_days=args.selection_window_days),
            tags={**args.tags, "Name": f"{name}-plan"},
            opts=pulumi.ResourceOptions(parent=self))
        conditions = aws.backup.RestoreTestingSelectionProtectedResourceConditionsArgs
        equals = aws.backup.RestoreTestingSelectionProtectedResourceConditionsStringEqualArgs
        condition = conditions(string_equals=[equals(key=RESOURCE_TAG, value=args.backup_tag)])
        overrides: dict[str, dict[str, pulumi.Input[str]] | None] = {"EFS": None}
        if args.aurora is not None:
            overrides["Aurora"] = {
                "dbsubnetgroupname": args.aurora.subnet_group_name,
                "vpcSecurityGroupIds": pulumi.Output.from_input(
                    args.aurora.security_group_id).apply(lambda sg: json.dumps([sg]))}
        self.selections = {kind: aws.backup.RestoreTestingSelection(
            f"{name}-{kind.lower()}", name=kind.lower(),
            restore_testing_plan_name=self.plan.name, protected_resource_type=kind,
            iam_role_arn=args.role_arn, protected_resource_arns=["*"],
            protected_resource_conditions=condition, restore_metadata_overrides=extra,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)))
            for kind, extra in overrides.items()}
        self.register_outputs({"plan": self.plan.name})
