"""hadeploy's policy pack: the high-availability rules every stack must satisfy.

Importing this module defines the policies and does NOT serve them (``PolicyPack(...)``
blocks serving gRPC): ``stacks/policy/__main__.py`` wraps :data:`POLICIES` for
``pulumi preview --policy-pack stacks/policy``, and unit tests call each policy's
``validate`` on resources recorded under mocks.

Properties are the engine's (camelCase). Stack policies find subnets through property
dependencies (``vpcZoneIdentifiers`` → the subnets), which are known even in a preview of
a new stack where the subnet ids are not.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from hadeploy.infra.settings import TAG_BACKUP, TAG_STANDBY, TAG_TIER

PACK_NAME = "hadeploy-ha"
WORLD = frozenset({"0.0.0.0/0", "::/0"})
WEB_PORTS = frozenset({80, 443})
SG = "aws:ec2/securityGroup:SecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SG_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
ASG = "aws:autoscaling/group:Group"
SUBNET = "aws:ec2/subnet:Subnet"
LB = "aws:lb/loadBalancer:LoadBalancer"
EFS = "aws:efs/fileSystem:FileSystem"
RDS_CLUSTER = "aws:rds/cluster:Cluster"
RDS_INSTANCE = "aws:rds/clusterInstance:ClusterInstance"
MOUNT_TARGET = "aws:efs/mountTarget:MountTarget"
BACKUP_PLAN = "aws:backup/plan:Plan"
BACKUP_SELECTION = "aws:backup/selection:Selection"
RECORD = "aws:route53/record:Record"


# --- helpers -----------------------------------------------------------------------------

def tag(props: Mapping[str, Any], key: str) -> str | None:
    """A tag's value from a ``tags`` map or an ASG's ``tags`` list."""
    tags = props.get("tags")
    if isinstance(tags, Mapping):
        value = tags.get(key)
        return str(value) if value is not None else None
    if isinstance(tags, Sequence) and not isinstance(tags, str):
        for item in tags:
            if isinstance(item, Mapping) and item.get("key") == key:
                return str(item.get("value"))
    return None


def _ports(rule: Mapping[str, Any]) -> tuple[str, int, int]:
    protocol = str(rule.get("protocol", rule.get("ipProtocol", "-1"))).lower()
    return protocol, int(rule.get("fromPort", 0) or 0), int(rule.get("toPort", 0) or 0)


def _world_cidrs(rule: Mapping[str, Any]) -> set[str]:
    cidrs = set(rule.get("cidrBlocks") or []) | set(rule.get("ipv6CidrBlocks") or [])
    cidrs |= {c for c in (rule.get("cidrIpv4"), rule.get("cidrIpv6")) if c}
    return cidrs & WORLD


def _is_web_port(rule: Mapping[str, Any]) -> bool:
    protocol, low, high = _ports(rule)
    return protocol in {"tcp", "6"} and low == high and low in WEB_PORTS


def world_open_problems(rules: Iterable[Mapping[str, Any]], alb: bool) -> list[str]:
    problems = []
    for rule in rules:
        world = _world_cidrs(rule)
        if not world:
            continue
        protocol, low, high = _ports(rule)
        where = f"{protocol} {low}-{high} from {', '.join(sorted(world))}"
        if not _is_web_port(rule):
            problems.append(f"opens {where}: only 80/443 may be open to the world")
        elif not alb:
            problems.append(f"opens {where} but is not the ALB's security group "
                            f"(tag {TAG_TIER}=alb)")
    return problems


def _provider_region(args: ResourceValidationArgs) -> str | None:
    provider = args.provider
    if provider is None:
        return None
    region = provider.props.get("region")
    return str(region) if region else None


def _arn_region(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 else ""


# --- resource policies -------------------------------------------------------------------

def _validate_security_group(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props = args.props
    if args.resource_type == SG:
        problems = world_open_problems(props.get("ingress") or [],
                                       alb=tag(props, TAG_TIER) == "alb")
    elif args.resource_type == SG_RULE and props.get("type") == "ingress":
        problems = world_open_problems([props], alb=False)
    elif args.resource_type == SG_INGRESS_RULE:
        problems = world_open_problems([props], alb=tag(props, TAG_TIER) == "alb")
    else:
        return
    for problem in problems:
        report(f"security group {args.name} {problem}", None)


def _validate_hot_asg(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != ASG:
        return
    if tag(args.props, TAG_STANDBY) == "hot" and int(args.props.get("minSize") or 0) < 2:
        report(f"auto scaling group {args.name} of a hot region has minSize "
               f"{int(args.props.get('minSize') or 0)}; a hot region needs at least 2 hosts",
               None)


def _validate_efs_encrypted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == EFS and args.props.get("encrypted") is not True:
        report(f"EFS file system {args.name} is not encrypted at rest", None)


def _validate_database(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props = args.props
    if args.resource_type == RDS_CLUSTER:
        if props.get("storageEncrypted") is not True:
            report(f"database cluster {args.name} is not encrypted at rest", None)
        if props.get("masterPassword"):
            report(f"database cluster {args.name} has its password in the stack (use "
                   "manageMasterUserPassword)", None)
    elif args.resource_type == RDS_INSTANCE and props.get("publiclyAccessible") is True:
        report(f"database instance {args.name} is publicly accessible", None)


def _validate_backup_copy(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != BACKUP_PLAN:
        return
    region = _provider_region(args)
    for rule in args.props.get("rules") or []:
        name = rule.get("ruleName", "?")
        copies = [c.get("destinationVaultArn", "") for c in rule.get("copyActions") or []]
        elsewhere = [arn for arn in copies if _arn_region(arn) and _arn_region(arn) != region]
        if not elsewhere:
            report(f"backup plan {args.name}, rule {name}: no copy to a vault in another "
                   f"region (copies: {copies or 'none'}, plan region: {region or 'unknown'})",
                   None)


SECURITY_GROUPS = ResourceValidationPolicy(
    name="hadeploy-world-ingress-only-alb-web",
    description="Only the ALB's security group may accept traffic from 0.0.0.0/0 or ::/0, "
    "and only on TCP 80/443.",
    enforcement_level=EnforcementLevel.MANDATORY, validate=_validate_security_group)
HOT_ASG_MIN = ResourceValidationPolicy(
    name="hadeploy-hot-asg-min-2",
    description="A hot region's auto scaling group keeps at least 2 hosts.",
    enforcement_level=EnforcementLevel.MANDATORY, validate=_validate_hot_asg)
EFS_ENCRYPTED = ResourceValidationPolicy(
    name="hadeploy-efs-encrypted",
    description="EFS file systems are encrypted at rest.",
    enforcement_level=EnforcementLevel.MANDATORY, validate=_validate_efs_encrypted)
DATABASE = ResourceValidationPolicy(
    name="hadeploy-database-encrypted-private",
    description="Database clusters are encrypted at rest with no password in the stack; "
    "no database instance is publicly accessible.",
    enforcement_level=EnforcementLevel.MANDATORY, validate=_validate_database)
BACKUP_COPY = ResourceValidationPolicy(
    name="hadeploy-backup-copies-to-another-region",
    description="Every backup plan rule copies recovery points to a vault in another region.",
    enforcement_level=EnforcementLevel.MANDATORY, validate=_validate_backup_copy)


# --- stack policies ----------------------------------------------------------------------

def _deps(resource: PolicyResource, prop: str, kind: str) -> list[PolicyResource]:
    return [r for r in resource.property_dependencies.get(prop, []) if r.resource_type == kind]


def _azs(subnets: Iterable[PolicyResource]) -> set[str]:
    return {str(s.props.get("availabilityZone")) for s in subnets
            if s.props.get("availabilityZone")}


def _host_azs(resources: list[PolicyResource]) -> set[str]:
    azs: set[str] = set()
    for asg in (r for r in resources if r.resource_type == ASG):
        azs |= _azs(_deps(asg, "vpcZoneIdentifiers", SUBNET))
    return azs


def _validate_multi_az(args: StackValidationArgs, report: ReportViolation) -> None:
    for resource in args.resources:
        if resource.resource_type == ASG:
            azs = _azs(_deps(resource, "vpcZoneIdentifiers", SUBNET))
            if len(azs) < 2:
                report(f"auto scaling group {resource.name} spans {len(azs)} availability "
                       f"zone(s) ({', '.join(sorted(azs)) or 'none known'}); at least 2 needed",
                       resource.urn)
        elif resource.resource_type == LB:
            azs = _azs(_deps(resource, "subnets", SUBNET))
            if len(azs) < 2:
                report(f"load balancer {resource.name} spans {len(azs)} availability zone(s)",
                       resource.urn)


def _validate_efs_every_az(args: StackValidationArgs, report: ReportViolation) -> None:
    host_azs = _host_azs(args.resources)
    mounted: dict[str, set[str]] = defaultdict(set)
    file_systems = [r for r in args.resources if r.resource_type == EFS]
    for mt in (r for r in args.resources if r.resource_type == MOUNT_TARGET):
        for fs in _deps(mt, "fileSystemId", EFS):
            mounted[fs.urn] |= _azs(_deps(mt, "subnetId", SUBNET))
    for fs in file_systems:
        if fs.props.get("encrypted") is not True:
            report(f"EFS file system {fs.name} is not encrypted at rest", fs.urn)
        missing = host_azs - mounted[fs.urn]
        if missing:
            report(f"EFS file system {fs.name} has no mount target in "
                   f"{', '.join(sorted(missing))}, where app hosts run", fs.urn)
    if host_azs and not file_systems:
        report("app hosts run but the stack has no EFS file system for their shared data",
               None)


def _validate_failover_pairs(args: StackValidationArgs, report: ReportViolation) -> None:
    kinds: dict[tuple[str, str], list[str]] = defaultdict(list)
    for record in (r for r in args.resources if r.resource_type == RECORD):
        for policy in record.props.get("failoverRoutingPolicies") or []:
            key = (str(record.props.get("name", "")), str(record.props.get("type", "")))
            kinds[key].append(str(policy.get("type")))
    for (name, rtype), found in sorted(kinds.items()):
        if sorted(found) != ["PRIMARY", "SECONDARY"]:
            report(f"failover record {name} ({rtype}) has {sorted(found)}; it needs exactly "
                   "one PRIMARY and one SECONDARY", None)


def _validate_data_selected(args: StackValidationArgs, report: ReportViolation) -> None:
    selected = {(str(t.get("key")), str(t.get("value")))
                for s in args.resources if s.resource_type == BACKUP_SELECTION
                for t in s.props.get("selectionTags") or []
                if str(t.get("type", "")).upper() == "STRINGEQUALS"}
    for store in args.resources:
        if store.resource_type not in (EFS, RDS_CLUSTER):
            continue
        value = tag(store.props, TAG_BACKUP)
        if value is None or (TAG_BACKUP, value) not in selected:
            kind = "EFS file system" if store.resource_type == EFS else "database cluster"
            report(f"{kind} {store.name} is not selected by any backup plan (tag "
                   f"{TAG_BACKUP}={value or 'missing'}; selections: "
                   f"{sorted(v for _, v in selected) or 'none'})", store.urn)


MULTI_AZ = StackValidationPolicy(
    name="hadeploy-region-multi-az",
    description="Every region's hosts and load balancer span at least 2 availability zones.",
    enforcement_level=EnforcementLevel.MANDATORY, validate=_validate_multi_az)
EFS_EVERY_AZ = StackValidationPolicy(
    name="hadeploy-efs-mount-target-per-host-az",
    description="The shared EFS is encrypted and has a mount target in every AZ the app "
    "hosts use.",
    enforcement_level=EnforcementLevel.MANDATORY, validate=_validate_efs_every_az)
FAILOVER_PAIRS = StackValidationPolicy(
    name="hadeploy-failover-primary-and-secondary",
    description="Every Route 53 failover record name has both a PRIMARY and a SECONDARY.",
    enforcement_level=EnforcementLevel.MANDATORY, validate=_validate_failover_pairs)

DATA_SELECTED = StackValidationPolicy(
    name="hadeploy-backup-selects-every-data-store",
    description="Every EFS file system and Aurora cluster carries the backup tag that one of "
    "the stack's AWS Backup selections selects.",
    enforcement_level=EnforcementLevel.MANDATORY, validate=_validate_data_selected)

RESOURCE_POLICIES: list[ResourceValidationPolicy] = [
    SECURITY_GROUPS, HOT_ASG_MIN, EFS_ENCRYPTED, DATABASE, BACKUP_COPY]
STACK_POLICIES: list[StackValidationPolicy] = [MULTI_AZ, EFS_EVERY_AZ, FAILOVER_PAIRS,
                                               DATA_SELECTED]
POLICIES: list[ResourceValidationPolicy | StackValidationPolicy] = [
    *RESOURCE_POLICIES, *STACK_POLICIES]
