"""Everything the AWS target derives from the ``aws:`` section of ``hadeploy.yaml`` (whose
schema, :class:`hadeploy.config.AwsSettings`, is part of the desired-state model).

Pure Python: the CLI can validate an AWS deployment, and the driver can
plan its stacks, without importing pulumi. The Pulumi programs receive a
:class:`RegionPlan` / :class:`GlobalPlan`; every name and ARN that crosses a region
boundary (the peer's backup vault, the peer's artifacts bucket) is computed here from
configuration as a plain string, so that regional stacks never reference each other.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hadeploy.config import (
    CERT_ARN_RE,
    AwsSettings,
    AwsVaultLock,
    Deployment,
    RegionConfig,
)
from hadeploy.errors import ExitCode, HadeployError

REGIONAL_PROJECT = "hadeploy-regional"
GLOBAL_PROJECT = "hadeploy-global"
CONFIG_NAMESPACE = "hadeploy"
TAG_DEPLOYMENT = "hadeploy:deployment"
TAG_REGION = "hadeploy:region"
TAG_HOSTS = "hadeploy:hosts"  # on app instances: "<deployment>-<region>" (Ansible inventory)
TAG_STANDBY = "hadeploy:standby"
TAG_TIER = "hadeploy:tier"  # "alb" | "app" | "storage" on security groups
TAG_BACKUP = "hadeploy:backup"  # AWS Backup selects what carries "<deployment>-<region>"


# --- derived plan (what the programs build) ---------------------------------------------

@dataclass(frozen=True)
class PeerPlan:
    name: str
    aws_region: str
    vault_arn: str
    bucket_arn: str


@dataclass(frozen=True)
class DatabasePlan:
    """This region's member of the deployment's Aurora PostgreSQL Global Database."""

    global_id: str  # the global cluster (created by the primary region's stack)
    cluster_id: str  # this region's cluster
    creates_global: bool  # the primary region's stack owns the global cluster
    instance_class: str
    instances: int
    engine_version: str
    backup_retention_days: int


@dataclass(frozen=True)
class Teardown:
    """The update ``down`` runs on a region before destroying it: no replication to the
    peer, and what holds backups either kept on destroy or deleted with the stack."""

    delete_backups: bool = False  # else the vault, bucket, key and final snapshot stay
    stamp: str = ""  # makes the final snapshot's identifier unique (a later down's too)


@dataclass(frozen=True)
class RestoreTestPlan:
    """AWS Backup restore testing of the region's vault (``aws.backup.restore_testing``)."""

    name: str  # the restore testing plan: letters, digits and '_' only, at most 50
    schedule: str
    selection_window_days: int


def restore_test_name(deployment: str, region: str) -> str:
    """``hd_<deployment>_<region>`` with '-' as '_' (AWS allows only letters, digits and
    '_' here, at most 50); shortened with a hash when longer."""
    import hashlib

    name = f"hd_{deployment}_{region}".replace("-", "_")
    if len(name) <= 50:
        return name
    return f"{name[:41]}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def efs_mount_source(dns_name: str) -> str:
    """What the hosts mount (role shared_storage's ``shared_storage_source``): the file
    system's DNS name and its root, ``<dns name>:/``; the bare name is no NFS source."""
    return f"{dns_name}:/"


def global_cluster_id(deployment: str) -> str:
    return f"hd-{deployment}"


def db_cluster_id(deployment: str, region: str) -> str:
    return f"hd-{deployment}-{region}"


@dataclass(frozen=True)
class RegionPlan:
    deployment: str
    name: str
    aws_region: str
    partition: str
    account_id: str
    role: str
    standby: str
    hosts: int
    min_size: int
    desired: int
    max_size: int
    vpc_cidr: str
    az_count: int
    certificate_arn: str
    instance_type: str
    ami: str
    root_device: str
    vault_name: str
    bucket_name: str
    copy_vault_arn: str | None  # backup copy destination (another region)
    peer: PeerPlan | None
    writer: bool  # the primary: its EFS replicates into its peer's
    replica_target: bool  # its EFS receives the primary's replication
    efs_replication: bool
    s3_replication: bool
    backup_schedule: str
    retention_days: int
    copy_retention_days: int
    app_port: int
    health_path: str
    health_interval: int
    unhealthy_threshold: int
    deletion_protection: bool
    database: DatabasePlan | None = None  # None: no database tier (data.enabled false)
    vault_lock: AwsVaultLock | None = None  # None: the vault has no Vault Lock
    restore_testing: RestoreTestPlan | None = None  # None: restore testing disabled
    # Without a certificate_arn: the stack requests one for ``domain`` (the app record),
    # validated by a DNS record in the existing hosted zone ``zone_id``.
    zone_id: str | None = None
    domain: str = ""

    @property
    def stack_name(self) -> str:
        return f"{self.deployment}-{self.name}"

    @property
    def host_tag(self) -> str:
        return f"{self.deployment}-{self.name}"

    @property
    def tags(self) -> dict[str, str]:
        return {TAG_DEPLOYMENT: self.deployment, TAG_REGION: self.name,
                "hadeploy:managed-by": "pulumi"}


@dataclass(frozen=True)
class DnsTargetPlan:
    region: str
    role: str
    stack_ref: str  # fully qualified "<org>/hadeploy-regional/<deployment>-<region>"


@dataclass(frozen=True)
class GlobalPlan:
    deployment: str
    zone: str
    record: str
    zone_id: str | None
    mode: str
    targets: tuple[DnsTargetPlan, ...]  # primary first, then secondaries in config order
    health_path: str
    request_interval: int
    failure_threshold: int
    checker_regions: tuple[str, ...]

    @property
    def stack_name(self) -> str:
        return f"{self.deployment}-global"


def settings_of(dep: Deployment) -> AwsSettings:
    """The deployment's ``aws:`` section."""
    if dep.aws is None:
        raise HadeployError("target 'aws' needs an 'aws:' section in hadeploy.yaml",
                            hint="add at least 'aws: {account_id: \"123456789012\", "
                            "certificate_arns: {<region>: <ACM ARN>}}' (docs/aws.md)",
                            code=ExitCode.BAD_INPUT)
    return dep.aws


def load_stack_config(raw: Mapping[str, Any]) -> tuple[Deployment, AwsSettings]:
    """Parse the ``hadeploy:deployment`` stack config (hadeploy.yaml as an object)."""
    dep = Deployment.model_validate(dict(raw))
    return dep, settings_of(dep)


def partition_of(aws_region: str) -> str:
    if aws_region.startswith("cn-"):
        return "aws-cn"
    if aws_region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def asg_sizing(region: RegionConfig) -> tuple[int, int, int]:
    """(min, desired, max): hot = hosts; warm = half running; cold = none running."""
    if region.standby.value == "hot":
        return region.hosts, region.hosts, region.hosts
    if region.standby.value == "warm":
        warm = max(1, region.hosts // 2)
        return warm, warm, region.hosts
    return 0, 0, region.hosts


def health_check_interval(probe_interval: float) -> int:
    """Route 53 accepts 10 (fast) or 30 seconds."""
    return 10 if probe_interval <= 10 else 30


def clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def vault_name(deployment: str, region: str) -> str:
    return f"hd-{deployment}-{region}"


def bucket_name(deployment: str, settings: AwsSettings, region: str) -> str:
    prefix = settings.bucket_prefix or f"hd-{deployment}-{settings.account_id}"
    return f"{prefix}-{region}"


def default_peer(dep: Deployment, region: RegionConfig) -> RegionConfig | None:
    """Primary ↔ first secondary; every other secondary → the primary."""
    secondaries = [r for r in dep.regions if r.role.value == "secondary"]
    if region.role.value == "primary":
        return secondaries[0] if secondaries else None
    return dep.primary


def peer_of(dep: Deployment, settings: AwsSettings, region: RegionConfig) -> RegionConfig | None:
    name = settings.peers.get(region.name)
    return dep.region(name) if name else default_peer(dep, region)


def _aws_region(region: RegionConfig) -> str:
    assert region.aws_region is not None  # check_deployment() guarantees it
    return region.aws_region


def plan_region(dep: Deployment, settings: AwsSettings, name: str) -> RegionPlan:
    region = dep.region(name)
    index = dep.regions.index(region)
    aws_region = _aws_region(region)
    partition = partition_of(aws_region)
    lo, desired, hi = asg_sizing(region)
    peer_cfg = peer_of(dep, settings, region)
    peer = None
    if peer_cfg is not None:
        peer_aws = _aws_region(peer_cfg)
        peer_bucket = bucket_name(dep.name, settings, peer_cfg.name)
        peer = PeerPlan(
            name=peer_cfg.name, aws_region=peer_aws,
            vault_arn=(f"arn:{partition}:backup:{peer_aws}:{settings.account_id}:"
                       f"backup-vault:{vault_name(dep.name, peer_cfg.name)}"),
            bucket_arn=f"arn:{partition}:s3:::{peer_bucket}")
    copy_vault = settings.backup.copy_vault_arns.get(name) or (peer.vault_arn if peer else None)
    primary_peer = peer_of(dep, settings, dep.primary)
    tests = settings.backup.restore_testing
    return RegionPlan(
        deployment=dep.name, name=name, aws_region=aws_region, partition=partition,
        account_id=settings.account_id, role=region.role.value, standby=region.standby.value,
        hosts=region.hosts, min_size=lo, desired=desired, max_size=hi,
        vpc_cidr=settings.vpc_cidrs.get(name, f"10.{100 + index}.0.0/16"),
        az_count=settings.az_count, certificate_arn=settings.certificate_arns.get(name, ""),
        zone_id=settings.zone_id, domain=f"{dep.dns.record}.{dep.dns.zone}",
        instance_type=settings.instance_type, ami=settings.ami,
        root_device=settings.root_device, vault_name=vault_name(dep.name, name),
        bucket_name=bucket_name(dep.name, settings, name), copy_vault_arn=copy_vault,
        peer=peer, writer=region.role.value == "primary",
        replica_target=(settings.efs_replication and primary_peer is not None
                        and primary_peer.name == name),
        efs_replication=settings.efs_replication, s3_replication=settings.s3_replication,
        backup_schedule=settings.backup.schedule,
        retention_days=settings.backup.retention_days,
        copy_retention_days=settings.backup.copy_retention_days or settings.backup.retention_days,
        app_port=dep.app.port, health_path=dep.app.health_path,
        health_interval=clamp(round(dep.failover.probe_interval), 5, 300),
        unhealthy_threshold=clamp(dep.failover.failure_threshold, 2, 10),
        deletion_protection=settings.deletion_protection,
        database=DatabasePlan(
            global_id=global_cluster_id(dep.name), cluster_id=db_cluster_id(dep.name, name),
            creates_global=region.role.value == "primary",
            instance_class=settings.database.instance_class,
            instances=settings.database.instances,
            engine_version=settings.database.engine_version,
            backup_retention_days=settings.database.backup_retention_days,
        ) if dep.data.enabled else None,
        vault_lock=settings.backup.vault_lock,
        restore_testing=RestoreTestPlan(
            name=restore_test_name(dep.name, name), schedule=tests.schedule,
            selection_window_days=tests.selection_window_days) if tests.enabled else None)


def stack_ref(settings: AwsSettings, deployment: str, region: str) -> str:
    return f"{settings.pulumi_org}/{REGIONAL_PROJECT}/{deployment}-{region}"


def plan_global(dep: Deployment, settings: AwsSettings,
                regions: list[str] | None = None) -> GlobalPlan:
    """The global DNS stack over ``regions`` (default: all), the primary first."""
    wanted = set(regions) if regions is not None else {r.name for r in dep.regions}
    ordered = [dep.primary] + [r for r in dep.regions if r.role.value == "secondary"]
    targets = tuple(DnsTargetPlan(r.name, r.role.value, stack_ref(settings, dep.name, r.name))
                    for r in ordered if r.name in wanted)
    return GlobalPlan(
        deployment=dep.name, zone=dep.dns.zone, record=dep.dns.record,
        zone_id=settings.zone_id, mode=settings.mode, targets=targets,
        health_path=dep.app.health_path,
        request_interval=health_check_interval(dep.failover.probe_interval),
        failure_threshold=clamp(dep.failover.failure_threshold, 1, 10),
        checker_regions=tuple(settings.health_checker_regions))


Problem = tuple[str, str, str]  # (field, what is wrong, how to fix it)


def check_deployment(dep: Deployment, settings: AwsSettings) -> None:
    """What the AWS target needs beyond the Deployment model; one error per first problem."""
    problems = [*_region_problems(dep, settings), *_key_problems(dep, settings),
                *_network_problems(dep, settings)]
    if problems:
        loc, msg, hint = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise HadeployError(f"hadeploy.yaml: {loc}: {msg}{more}", hint=hint,
                            code=ExitCode.BAD_INPUT)


def _region_problems(dep: Deployment, settings: AwsSettings) -> list[Problem]:
    problems: list[Problem] = []
    seen_aws: dict[str, str] = {}
    for i, region in enumerate(dep.regions):
        where = f"regions[{i}]"
        if region.aws_region is None:
            problems.append((f"{where}.aws_region", "is missing",
                             f"give region '{region.name}' an AWS region such as 'us-east-1'"))
            continue
        if region.aws_region in seen_aws:
            problems.append((f"{where}.aws_region",
                             f"'{region.aws_region}' is also region "
                             f"'{seen_aws[region.aws_region]}'",
                             "put every hadeploy region in its own AWS region (that is what "
                             "makes them independent)"))
        seen_aws[region.aws_region] = region.name
        if region.standby.value == "hot" and region.hosts < 2:
            problems.append((f"{where}.hosts", f"hot region '{region.name}' has 1 host",
                             "a hot region needs at least 2 hosts on AWS (one per AZ "
                             "survives an AZ outage)"))
        problems += _certificate_problems(dep, settings, region.name, region.aws_region)
    return problems


def _certificate_problems(dep: Deployment, settings: AwsSettings, region: str,
                          aws_region: str) -> list[Problem]:
    cert = settings.certificate_arns.get(region)
    if cert is None and settings.zone_id:
        return []  # the stack requests one, validated by a record in that hosted zone
    if cert is None:
        return [(f"aws.certificate_arns.{region}", "is missing",
                 f"add the ARN of an ACM certificate for {dep.dns.record}.{dep.dns.zone} "
                 f"issued in {aws_region}, or set aws.zone_id to the existing hosted zone "
                 f"of {dep.dns.zone}: the stack then requests a DNS-validated one")]
    match = re.fullmatch(CERT_ARN_RE, cert)
    if match and match.group(1) != aws_region:
        return [(f"aws.certificate_arns.{region}",
                 f"the certificate is in {match.group(1)}, the region's ALB in {aws_region}",
                 "ACM certificates are regional: use one issued in the ALB's region")]
    return []


def _key_problems(dep: Deployment, settings: AwsSettings) -> list[Problem]:
    """Keys of the per-region maps must name regions; peers must be other regions."""
    names = {r.name for r in dep.regions}
    problems: list[Problem] = [
        (f"aws.{key}.{region_name}", "names no region", f"use one of: {', '.join(sorted(names))}")
        for key in ("certificate_arns", "vpc_cidrs", "peers")
        for region_name in getattr(settings, key) if region_name not in names]
    problems += [(f"aws.peers.{region_name}", f"'{peer}' is not another region",
                  f"use one of: {', '.join(sorted(names - {region_name}))}")
                 for region_name, peer in settings.peers.items()
                 if peer not in names or peer == region_name]
    return problems


def _network_problems(dep: Deployment, settings: AwsSettings) -> list[Problem]:
    problems: list[Problem] = []
    nets = [ipaddress.IPv4Network(settings.vpc_cidrs.get(r.name, f"10.{100 + i}.0.0/16"))
            for i, r in enumerate(dep.regions)]
    problems += [(f"aws.vpc_cidrs.{dep.regions[i].name}", f"{net} overlaps another region's "
                  "VPC", "give every region its own VPC range")
                 for i, net in enumerate(nets) if any(net.overlaps(o) for o in nets[:i])]
    for region in dep.regions:
        bucket = bucket_name(dep.name, settings, region.name)
        if len(bucket) > 63:
            problems.append(("aws.bucket_prefix", f"bucket name '{bucket}' is longer than 63",
                             "set a shorter aws.bucket_prefix"))
    return problems
