"""``SharedStorage``: the region's EFS file system (encrypted at rest), a mount target in
every AZ the hosts use, an access point, and — from the writer region — replication into
the peer region's file system."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi  # noqa: TID253 - hadeploy.infra is only imported by the AWS target
import pulumi_aws as aws  # noqa: TID253

from hadeploy.infra.settings import TAG_BACKUP, TAG_TIER, efs_mount_source

NFS_PORT = 2049


@dataclass(frozen=True)
class EfsReplicationArgs:
    aws_region: str
    file_system_id: str  # the peer region's file system (a plain string from stack config)


@dataclass(frozen=True)
class SharedStorageArgs:
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]  # one private subnet per AZ
    host_security_group_id: pulumi.Input[str]
    backup_tag: str
    replicate_to: EfsReplicationArgs | None = None
    replica_target: bool = False  # another region replicates into this file system
    root_path: str = "/hadeploy"
    tags: Mapping[str, str] = field(default_factory=dict)


class SharedStorage(pulumi.ComponentResource):
    file_system: aws.efs.FileSystem
    mount_targets: list[aws.efs.MountTarget]
    access_point: aws.efs.AccessPoint
    security_group: aws.ec2.SecurityGroup

    def __init__(self, name: str, args: SharedStorageArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hadeploy:storage:SharedStorage", name, None, opts)
        self._name = name
        self._args = args
        self.security_group = self._create_security_group()
        self.file_system = self._create_file_system()
        self.mount_targets = self._create_mount_targets()
        self.access_point = self._create_access_point()
        self.replication = self._create_replication()
        self.mount_source: pulumi.Output[str] = self.file_system.dns_name.apply(
            efs_mount_source)
        self.register_outputs({
            "file_system_id": self.file_system.id,
            "dns_name": self.file_system.dns_name,
            "mount_source": self.mount_source,
            "access_point_id": self.access_point.id,
        })

    def _opts(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self)

    def _tags(self, part: str, **extra: str) -> dict[str, str]:
        return {**self._args.tags, "Name": f"{self._name}-{part}", **extra}

    def _create_security_group(self) -> aws.ec2.SecurityGroup:
        return aws.ec2.SecurityGroup(
            f"{self._name}-sg", vpc_id=self._args.vpc_id,
            description="hadeploy EFS: NFS from the app hosts only",
            ingress=[aws.ec2.SecurityGroupIngressArgs(
                protocol="tcp", from_port=NFS_PORT, to_port=NFS_PORT,
                security_groups=[self._args.host_security_group_id],
                description="NFS from the app hosts")],
            tags=self._tags("sg", **{TAG_TIER: "storage"}), opts=self._opts())

    def _create_file_system(self) -> aws.efs.FileSystem:
        a = self._args
        return aws.efs.FileSystem(
            f"{self._name}-fs", encrypted=True, performance_mode="generalPurpose",
            throughput_mode="elastic",
            lifecycle_policies=[aws.efs.FileSystemLifecyclePolicyArgs(
                transition_to_ia="AFTER_30_DAYS")],
            # A replication destination must allow being overwritten by its source.
            protection=aws.efs.FileSystemProtectionArgs(
                replication_overwrite="DISABLED" if a.replica_target else "ENABLED"),
            tags=self._tags("fs", **{TAG_BACKUP: a.backup_tag}), opts=self._opts())

    def _create_mount_targets(self) -> list[aws.efs.MountTarget]:
        return [aws.efs.MountTarget(
            f"{self._name}-mt-{i}", file_system_id=self.file_system.id, subnet_id=subnet,
            security_groups=[self.security_group.id], opts=self._opts())
            for i, subnet in enumerate(self._args.subnet_ids)]

    def _create_access_point(self) -> aws.efs.AccessPoint:
        # Root-owned: Ansible (as root) gives the app user its directory below it.
        return aws.efs.AccessPoint(
            f"{self._name}-ap", file_system_id=self.file_system.id,
            root_directory=aws.efs.AccessPointRootDirectoryArgs(
                path=self._args.root_path,
                creation_info=aws.efs.AccessPointRootDirectoryCreationInfoArgs(
                    owner_uid=0, owner_gid=0, permissions="0755")),
            tags=self._tags("ap"), opts=self._opts())

    def _create_replication(self) -> aws.efs.ReplicationConfiguration | None:
        target = self._args.replicate_to
        if target is None:
            return None
        return aws.efs.ReplicationConfiguration(
            f"{self._name}-replication", source_file_system_id=self.file_system.id,
            destination=aws.efs.ReplicationConfigurationDestinationArgs(
                region=target.aws_region, file_system_id=target.file_system_id),
            opts=self._opts())
