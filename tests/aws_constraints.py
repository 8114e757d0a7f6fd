"""The AWS APIs' own constraints on every input of a resource graph recorded under mocks.

Pulumi's mocks accept any string: an input that AWS would reject (a security group rule
description with an apostrophe, a 33-character target group name) passes every mock test
and fails the first real preview. This module checks each input value of each resource
of a recorded graph (tests/infra_mock_program.py) against the constraints of the AWS API
member it ends up in, taken from botocore's service models (``pattern``, ``min``/``max``,
``enum``, list lengths), and — where the model leaves a constraint to prose, as EC2 does
for descriptions — from an explicit :class:`Documented` rule that quotes AWS's wording
(tests/unit/test_aws_constraints.py checks the quote against the model's documentation).

Every string and number input of every resource type is classified in :data:`MAPPING`
(booleans have nothing to check beyond their type): an API member to check (:class:`Api`),
or :class:`Skip` with the reason (another resource's id or ARN, a provider-only setting, a
secret). What is in neither is reported as *unmapped*, never passed silently; the tests
require none.

Values under mocks: names that Pulumi generates (auto-naming: ``<logical name>-<7 hex>``)
are checked as such (:data:`AUTONAMED`); ids and ARNs of other resources are the mocks'
inventions and are skipped; the provider's default tags are checked as tags of every
resource that takes tags. Secrets and unknowns are counted, not checked.
"""

from __future__ import annotations

import functools
import html
import json
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# --- what an input is checked against ------------------------------------------------------


@dataclass(frozen=True)
class Documented:
    """A constraint AWS documents in prose but botocore's model does not carry as data.

    ``cites``: AWS's wording, quoted from the member's own documentation in botocore's
    model, or with ``source`` from another member's (``"<service> <Operation>.<Member>"``)
    — tests/unit/test_aws_constraints.py checks that the model still says so — or from a
    page of AWS's documentation (``source`` a URL; the wording as that page states it)."""

    cites: str
    pattern: str | None = None  # a Python regular expression the whole value must match
    min_len: int | None = None
    max_len: int | None = None
    values: tuple[str, ...] = ()  # the allowed values
    min_value: int | None = None
    max_value: int | None = None
    source: str | None = None


@dataclass(frozen=True)
class Api:
    """An input member of an AWS API operation as botocore's model names it: ``member`` is
    a dotted path in the operation's input shape; lists are stepped through implicitly and
    a map's key and value are ``<key>`` and ``<value>``."""

    service: str
    operation: str
    member: str
    doc: Documented | None = None

    def __str__(self) -> str:
        return f"{self.service} {self.operation}.{self.member}"


@dataclass(frozen=True)
class Skip:
    reason: str


Entry = Api | tuple[Api, ...] | Skip

# The reasons an input is not checked.
REF = Skip("another resource's id/ARN/name: under mocks a value the mocks invented")
PROVIDER_ONLY = Skip("a setting of the Pulumi provider, never sent to AWS")
SECRET = Skip("a secret: never in the recorded graph")
DEFAULT_TAGS = Skip("checked as the tags of every resource of this provider that takes tags")

# --- constraints AWS documents in prose ---------------------------------------------------

EC2_DESCRIPTION_CHARS = r"[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]"
EC2_API = "https://docs.aws.amazon.com/AWSEC2/latest/APIReference"
# CreateSecurityGroup, GroupDescription: "Constraints: Up to 255 characters in length
# Valid characters: a-z, A-Z, 0-9, spaces, and ._-:/()#,@[]+=&;{}!$*" (also the model's
# documentation of the member, where the model has no pattern).
EC2_GROUP_DESCRIPTION = Documented(
    "Constraints: Up to 255 characters in length Valid characters: a-z, A-Z, 0-9, spaces, "
    "and ._-:/()#,@[]+=&;{}!$*",
    pattern=f"{EC2_DESCRIPTION_CHARS}*", max_len=255)
EC2_GROUP_NAME = Documented(
    "Constraints: Up to 255 characters in length. Can't start with sg- . Valid characters: "
    "a-z, A-Z, 0-9, spaces, and ._-:/()#,@[]+=&;{}!$*",
    pattern=f"(?!sg-){EC2_DESCRIPTION_CHARS}*", max_len=255)
# IpRange / Ipv6Range descriptions allow '&'; a UserIdGroupPair's (a rule whose source is a
# security group) does not.
EC2_RULE_DESCRIPTION = Documented(
    "Constraints: Up to 255 characters in length. Allowed characters are a-z, A-Z, 0-9, "
    "spaces, and ._-:/()#,@[]+=&;{}!$*",
    pattern=f"{EC2_DESCRIPTION_CHARS}*", max_len=255)
EC2_PAIR_DESCRIPTION = Documented(
    "Constraints: Up to 255 characters in length. Allowed characters are a-z, A-Z, 0-9, "
    "spaces, and ._-:/()#,@[]+=;{}!$*",
    pattern=r"[a-zA-Z0-9 ._\-:/()#,@\[\]+=;{}!$*]*", max_len=255)
EC2_TAG_KEY = Documented(
    "Constraints: Tag keys are case-sensitive and accept a maximum of 127 Unicode "
    "characters. May not begin with aws:", pattern=r"(?!aws:).*", min_len=1, max_len=127)
EC2_TAG_VALUE = Documented(
    "Constraints: Tag values are case-sensitive and accept a maximum of 256 Unicode "
    "characters.", max_len=256)
EC2_USER_DATA = Documented(  # base64 of at most 16 KB: at most 4 * ceil(16384 / 3) characters
    "You must provide base64-encoded text. User data is limited to 16 KB.",
    pattern=r"[A-Za-z0-9+/]*={0,2}", max_len=21848)

ELB_NAME_WORDING = ("can have a maximum of 32 characters, must contain only alphanumeric "
                    "characters or hyphens, ")
ELB_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?"
LB_NAME = Documented(ELB_NAME_WORDING + "must not begin or end with a hyphen, and must not "
                     'begin with "internal-".', pattern=f"(?!internal-){ELB_NAME}", max_len=32)
TG_NAME = Documented(ELB_NAME_WORDING + "and must not begin or end with a hyphen.",
                     pattern=ELB_NAME, max_len=32)
TG_DEREGISTRATION_DELAY = Documented(
    "deregistration_delay.timeout_seconds - The amount of time, in seconds, for Elastic Load "
    "Balancing to wait before changing the state of a deregistering target from draining to "
    "unused . The range is 0-3600 seconds.", min_value=0, max_value=3600,
    source="elbv2 ModifyTargetGroupAttributes.Attributes.Key")

RDS_IDENTIFIER = r"[A-Za-z](?!.*--)[A-Za-z0-9-]*(?<!-)"
RDS_CLUSTER_ID = Documented(
    "Must contain from 1 to 63 (for Aurora DB clusters) or 1 to 52 (for Multi-AZ DB "
    "clusters) letters, numbers, or hyphens. First character must be a letter. Can't end "
    "with a hyphen or contain two consecutive hyphens.", pattern=RDS_IDENTIFIER, max_len=63)
RDS_INSTANCE_ID = Documented(
    "Must contain from 1 to 63 letters, numbers, or hyphens. First character must be a "
    "letter. Can't end with a hyphen or contain two consecutive hyphens.",
    pattern=RDS_IDENTIFIER, max_len=63)
RDS_FINAL_SNAPSHOT_ID = Documented(
    "Must be 1 to 255 letters, numbers, or hyphens. First character must be a letter Can't "
    "end with a hyphen or contain two consecutive hyphens", pattern=RDS_IDENTIFIER,
    max_len=255)
RDS_SUBNET_GROUP_NAME = Documented(
    "Must contain no more than 255 letters, numbers, periods, underscores, spaces, or "
    "hyphens. Must not be default. First character must be a letter.",
    pattern=r"(?!default$)[A-Za-z][A-Za-z0-9._ -]*", max_len=255)
RDS_MASTER_USERNAME = Documented(
    "Must be 1 to 16 letters or numbers. First character must be a letter.",
    pattern="[A-Za-z][A-Za-z0-9]*", max_len=16)
RDS_DATABASE_NAME = Documented("The name for your database of up to 64 alphanumeric "
                               "characters.", pattern="[A-Za-z0-9]+", max_len=64)
RDS_BACKUP_WINDOW = Documented(
    "Must be in the format hh24:mi-hh24:mi . Must be in Universal Coordinated Time (UTC).",
    pattern=r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d")
RDS_TAG_WORDING = ("can't be prefixed with aws: or rds: . The string can only contain only "
                   "the set of Unicode letters, digits, white-space, '_', '.', ':', '/', '=', "
                   "'+', '-', '@'")
RDS_TAG = r"(?!aws:|rds:)[\w\s.:/=+\-@]*"
RDS_TAG_KEY = Documented("The string value can be from 1 to 128 Unicode characters in length "
                         "and " + RDS_TAG_WORDING, pattern=RDS_TAG, min_len=1, max_len=128)
RDS_TAG_VALUE = Documented("The string value can be from 1 to 256 Unicode characters in "
                           "length and " + RDS_TAG_WORDING, pattern=RDS_TAG, max_len=256)

BACKUP_PLAN_NAME = Documented("Must contain 1 to 50 alphanumeric or '-_.' characters.",
                              pattern=r"[A-Za-z0-9\-_.]+", max_len=50)
RESTORE_PLAN_NAME = Documented("it must consist of only alphanumeric characters and "
                               "underscores.", pattern="[A-Za-z0-9_]+")
RESTORE_SELECTION_NAME = Documented(
    "The name consists of only alphanumeric characters and underscores. Maximum length is "
    "50.", pattern="[A-Za-z0-9_]+", max_len=50)
RESTORE_RESOURCE_TYPE = Documented(
    "Supported resource types accepted include: Aurora for Amazon Aurora",
    values=("Aurora", "DocumentDB", "DynamoDB", "EBS", "EC2", "EFS", "FSx", "Neptune", "RDS",
            "S3"))
BACKUP_CRON = Documented(  # AWS's cron: six fields (minutes … year) in cron( )
    "Backup will use the default expression cron(0 5 ? * * *)",
    pattern=r"cron\(\S+ \S+ \S+ \S+ \S+ \S+\)")

TAGGING_GUIDE = "https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html"
TAG_KEY = Documented("Maximum key length - 128 Unicode characters in UTF-8",
                     pattern=r"(?!aws:).*", min_len=1, max_len=128, source=TAGGING_GUIDE)
TAG_VALUE = Documented("Maximum value length - 256 Unicode characters in UTF-8", max_len=256,
                       source=TAGGING_GUIDE)

S3_BUCKET_NAME = Documented(
    "Bucket names must be between 3 (min) and 63 (max) characters long. Bucket names can "
    "consist only of lowercase letters, numbers, periods (.), and hyphens (-). Bucket names "
    "must begin and end with a letter or number.",
    pattern=r"(?!xn--|sthree-|amzn-s3-demo-)(?!\d+\.\d+\.\d+\.\d+$)(?!.*\.\.)"
            r"[a-z0-9][a-z0-9.-]*[a-z0-9](?<!-s3alias)(?<!--ol-s3)(?<!\.mrap)(?<!--x-s3)",
    min_len=3, max_len=63,
    source="https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html")
S3_RULE_ID = Documented("A unique identifier for the rule. The maximum value is 255 "
                        "characters.", max_len=255)

DNS_NAME = Documented(
    "Each label can be up to 63 bytes long. The total length of a domain name cannot exceed "
    "255 bytes, including the dots.", pattern=r"(?!.*[^.]{64}).+", max_len=255,
    source="https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/DomainNameFormat.html")

KMS_PENDING_WINDOW = Documented("If you include a value, it must be between 7 and 30, "
                                "inclusive.", min_value=7, max_value=30)

EC2_HOP_LIMIT = Documented("Possible values: Integers from 1 to 64", min_value=1, max_value=64)
EC2_GP3_SIZE = Documented("gp3 : 1 - 65,536 GiB", min_value=1, max_value=65536)  # hadeploy: gp3
ALB_MATCHER = Documented(
    "For Application Load Balancers, you can specify values between 200 and 499",
    pattern=r"[2-4]\d\d(-[2-4]\d\d)?(,[2-4]\d\d(-[2-4]\d\d)?)*")
REDIRECT_PORT = Documented(
    "You can specify a value from 1 to 65535 or #{port}.",
    pattern=r"#\{port\}|[1-9]\d{0,3}|[1-5]\d{4}|6[0-4]\d{3}|65[0-4]\d\d|655[0-2]\d|6553[0-5]")
SSM_NAME = Documented(
    "Parameter names can include only the following symbols and letters: a-zA-Z0-9_.- In "
    "addition, the slash character ( / ) is used to delineate hierarchies in parameter names.",
    pattern=r"(?!/?(?i:aws|ssm))[a-zA-Z0-9_./-]+", max_len=1011 - len(
        "arn:aws:ssm:ap-southeast-2:123456789012:parameter"))  # 1011 with the ARN before it
VAULT_LOCK_MIN = Documented("The shortest minimum retention period you can specify is 1 day.",
                            min_value=1)
VAULT_LOCK_MAX = Documented("The longest maximum retention period you can specify is 36500 "
                            "days", max_value=36500)
VAULT_LOCK_GRACE = Documented("you must set ChangeableForDays to 3 or greater. The maximum "
                              "value you can specify is 36,500 days", min_value=3,
                              max_value=36500)
BACKUP_START_WINDOW = Documented(
    "If this value is included, it must be at least 60 minutes to avoid errors. This "
    "parameter has a maximum value of 100 years (52,560,000 minutes).", min_value=60,
    max_value=52_560_000)
RESTORE_WINDOW_DAYS = Documented("Accepted values are integers from 1 to 365.", min_value=1,
                                 max_value=365)
RDS_GLOBAL_ENGINE = Documented("Valid Values: aurora-mysql | aurora-postgresql",
                               values=("aurora-mysql", "aurora-postgresql"))
RDS_CLUSTER_ENGINE = Documented("Valid Values: aurora-mysql aurora-postgresql mysql postgres "
                                "neptune", values=("aurora-mysql", "aurora-postgresql",
                                                   "mysql", "postgres", "neptune"))
RDS_PORT = Documented("Valid Values: 1150-65535", min_value=1150, max_value=65535)
RDS_RETENTION = Documented("Constraints: Must be a value from 1 to 35.", min_value=1,
                           max_value=35)
RDS_POSTGRES_LOGS = Documented("Aurora PostgreSQL - instance | postgresql | iam-db-auth-error",
                               values=("instance", "postgresql", "iam-db-auth-error"))
RDS_PROMOTION_TIER = Documented("Valid Values: 0 - 15", min_value=0, max_value=15)


# --- the mapping: Pulumi resource type → input path → API member --------------------------
# Input paths: camelCase as Pulumi records them; "[]" a list item, "{}" a map value,
# "{key}" a map key.

def _tags(service: str, operation: str, member: str = "Tags", *, key: str = "Key",
          value: str = "Value", doc: tuple[Documented | None, Documented | None] = (None, None),
          ) -> dict[str, Entry]:
    return {"tags{key}": Api(service, operation, f"{member}.{key}", doc[0]),
            "tags{}": Api(service, operation, f"{member}.{value}", doc[1])}


EC2_TAGS = (EC2_TAG_KEY, EC2_TAG_VALUE)
EC2 = functools.partial(Api, "ec2")
ELB = functools.partial(Api, "elbv2")


def _ec2(operation: str, **fields: Entry) -> dict[str, Entry]:
    return {**_tags("ec2", operation, "TagSpecifications.Tags", doc=EC2_TAGS), **fields}


def _sg_rules(direction: str, operation: str) -> dict[str, Entry]:
    perms = "IpPermissions"
    return {
        f"{direction}[].protocol": EC2(operation, f"{perms}.IpProtocol"),
        f"{direction}[].fromPort": EC2(operation, f"{perms}.FromPort"),
        f"{direction}[].toPort": EC2(operation, f"{perms}.ToPort"),
        f"{direction}[].cidrBlocks[]": EC2(operation, f"{perms}.IpRanges.CidrIp"),
        f"{direction}[].ipv6CidrBlocks[]": EC2(operation, f"{perms}.Ipv6Ranges.CidrIpv6"),
        f"{direction}[].securityGroups[]": REF,
        # The provider sends a rule's description with each of its sources: check all three.
        f"{direction}[].description": (
            EC2(operation, f"{perms}.IpRanges.Description", EC2_RULE_DESCRIPTION),
            EC2(operation, f"{perms}.Ipv6Ranges.Description", EC2_RULE_DESCRIPTION),
            EC2(operation, f"{perms}.UserIdGroupPairs.Description", EC2_PAIR_DESCRIPTION)),
    }


ASG_CREATE = functools.partial(Api, "autoscaling", "CreateAutoScalingGroup")
REFRESH = functools.partial(Api, "autoscaling", "StartInstanceRefresh")
IAM = functools.partial(Api, "iam")
EFS = functools.partial(Api, "efs")
BACKUP = functools.partial(Api, "backup")
S3 = functools.partial(Api, "s3")
RDS = functools.partial(Api, "rds")
R53 = functools.partial(Api, "route53")
RECORD_SET = "ChangeBatch.Changes.ResourceRecordSet"
CHECK = "HealthCheckConfig"
RESTORE = "RestoreTestingSelection"
RDS_TAGS = _tags("rds", "AddTagsToResource", doc=(RDS_TAG_KEY, RDS_TAG_VALUE))
BACKUP_ROLE = "the role AWS Backup assumes: an ARN of another resource"

MAPPING: dict[str, dict[str, Entry]] = {
    "pulumi:providers:aws": {
        "region": PROVIDER_ONLY, "allowedAccountIds": PROVIDER_ONLY,
        "defaultTags.tags{key}": DEFAULT_TAGS, "defaultTags.tags{}": DEFAULT_TAGS,
        "skipCredentialsValidation": PROVIDER_ONLY, "skipRegionValidation": PROVIDER_ONLY,
        "version": PROVIDER_ONLY,
    },
    "pulumi:pulumi:StackReference": {"name": Skip("a Pulumi stack name, not an AWS input")},
    # --- network
    "aws:ec2/vpc:Vpc": _ec2("CreateVpc", cidrBlock=EC2("CreateVpc", "CidrBlock")),
    "aws:ec2/internetGateway:InternetGateway": _ec2("CreateInternetGateway", vpcId=REF),
    "aws:ec2/subnet:Subnet": _ec2("CreateSubnet", vpcId=REF,
                                  cidrBlock=EC2("CreateSubnet", "CidrBlock"),
                                  availabilityZone=EC2("CreateSubnet", "AvailabilityZone")),
    "aws:ec2/routeTable:RouteTable": {
        **_ec2("CreateRouteTable"), "vpcId": REF,
        "routes[].cidrBlock": EC2("CreateRoute", "DestinationCidrBlock"),
        "routes[].gatewayId": REF, "routes[].natGatewayId": REF},
    "aws:ec2/routeTableAssociation:RouteTableAssociation": {"routeTableId": REF,
                                                            "subnetId": REF},
    "aws:ec2/eip:Eip": _ec2("AllocateAddress", domain=EC2("AllocateAddress", "Domain")),
    "aws:ec2/natGateway:NatGateway": _ec2("CreateNatGateway", allocationId=REF, subnetId=REF),
    # --- security groups (the rules go to Authorize…Ingress/Egress)
    "aws:ec2/securityGroup:SecurityGroup": {
        **_ec2("CreateSecurityGroup"), "vpcId": REF,
        "name": EC2("CreateSecurityGroup", "GroupName", EC2_GROUP_NAME),
        "description": EC2("CreateSecurityGroup", "Description", EC2_GROUP_DESCRIPTION),
        **_sg_rules("ingress", "AuthorizeSecurityGroupIngress"),
        **_sg_rules("egress", "AuthorizeSecurityGroupEgress")},
    # --- the app hosts
    "aws:iam/role:Role": {
        "name": IAM("CreateRole", "RoleName"),
        "assumeRolePolicy": IAM("CreateRole", "AssumeRolePolicyDocument"),
        **_tags("iam", "CreateRole")},
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": {
        "role": REF, "policyArn": IAM("AttachRolePolicy", "PolicyArn")},
    "aws:iam/rolePolicy:RolePolicy": {
        "name": IAM("PutRolePolicy", "PolicyName"), "role": REF,
        "policy": IAM("PutRolePolicy", "PolicyDocument")},
    "aws:iam/instanceProfile:InstanceProfile": {
        "name": IAM("CreateInstanceProfile", "InstanceProfileName"), "role": REF,
        **_tags("iam", "CreateInstanceProfile")},
    "aws:ec2/launchTemplate:LaunchTemplate": {
        **_ec2("CreateLaunchTemplate"),
        # EC2's model has no constraint on the name; Auto Scaling's (the same name) has.
        "name": (EC2("CreateLaunchTemplate", "LaunchTemplateName"),
                 ASG_CREATE("LaunchTemplate.LaunchTemplateName")),
        "imageId": Skip("the AMI (or resolve:ssm:…) of aws.ami, validated by hadeploy's "
                        "config (AMI_RE); the model has no constraint"),
        "instanceType": EC2("CreateLaunchTemplate", "LaunchTemplateData.InstanceType"),
        "iamInstanceProfile.arn": REF, "vpcSecurityGroupIds[]": REF,
        "metadataOptions.httpEndpoint":
            EC2("CreateLaunchTemplate", "LaunchTemplateData.MetadataOptions.HttpEndpoint"),
        "metadataOptions.httpTokens":
            EC2("CreateLaunchTemplate", "LaunchTemplateData.MetadataOptions.HttpTokens"),
        "metadataOptions.httpPutResponseHopLimit": EC2(
            "CreateLaunchTemplate", "LaunchTemplateData.MetadataOptions.HttpPutResponseHopLimit",
            EC2_HOP_LIMIT),
        "blockDeviceMappings[].deviceName":
            EC2("CreateLaunchTemplate", "LaunchTemplateData.BlockDeviceMappings.DeviceName"),
        "blockDeviceMappings[].ebs.volumeType": EC2(
            "CreateLaunchTemplate", "LaunchTemplateData.BlockDeviceMappings.Ebs.VolumeType"),
        "blockDeviceMappings[].ebs.volumeSize": EC2(
            "CreateLaunchTemplate", "LaunchTemplateData.BlockDeviceMappings.Ebs.VolumeSize",
            EC2_GP3_SIZE),
        "blockDeviceMappings[].ebs.encrypted": EC2(
            "CreateLaunchTemplate", "LaunchTemplateData.BlockDeviceMappings.Ebs.Encrypted"),
        "blockDeviceMappings[].ebs.deleteOnTermination": EC2(
            "CreateLaunchTemplate",
            "LaunchTemplateData.BlockDeviceMappings.Ebs.DeleteOnTermination"),
        "userData": EC2("CreateLaunchTemplate", "LaunchTemplateData.UserData", EC2_USER_DATA),
        "tagSpecifications[].resourceType": EC2(
            "CreateLaunchTemplate", "LaunchTemplateData.TagSpecifications.ResourceType"),
        "tagSpecifications[].tags{key}": EC2(
            "CreateLaunchTemplate", "LaunchTemplateData.TagSpecifications.Tags.Key",
            EC2_TAG_KEY),
        "tagSpecifications[].tags{}": EC2(
            "CreateLaunchTemplate", "LaunchTemplateData.TagSpecifications.Tags.Value",
            EC2_TAG_VALUE)},
    "aws:lb/loadBalancer:LoadBalancer": {
        "name": ELB("CreateLoadBalancer", "Name", LB_NAME),
        "loadBalancerType": ELB("CreateLoadBalancer", "Type"),
        "subnets[]": REF, "securityGroups[]": REF,
        "ipAddressType": ELB("CreateLoadBalancer", "IpAddressType"),
        **_tags("elbv2", "CreateLoadBalancer")},
    "aws:lb/targetGroup:TargetGroup": {
        "name": ELB("CreateTargetGroup", "Name", TG_NAME),
        "port": ELB("CreateTargetGroup", "Port"),
        "protocol": ELB("CreateTargetGroup", "Protocol"),
        "targetType": ELB("CreateTargetGroup", "TargetType"), "vpcId": REF,
        "deregistrationDelay": ELB("ModifyTargetGroupAttributes", "Attributes.Value",
                                   TG_DEREGISTRATION_DELAY),
        "healthCheck.path": ELB("CreateTargetGroup", "HealthCheckPath"),
        "healthCheck.port": ELB("CreateTargetGroup", "HealthCheckPort"),
        "healthCheck.protocol": ELB("CreateTargetGroup", "HealthCheckProtocol"),
        "healthCheck.matcher": ELB("CreateTargetGroup", "Matcher.HttpCode", ALB_MATCHER),
        "healthCheck.interval": ELB("CreateTargetGroup", "HealthCheckIntervalSeconds"),
        "healthCheck.timeout": ELB("CreateTargetGroup", "HealthCheckTimeoutSeconds"),
        "healthCheck.healthyThreshold": ELB("CreateTargetGroup", "HealthyThresholdCount"),
        "healthCheck.unhealthyThreshold": ELB("CreateTargetGroup", "UnhealthyThresholdCount"),
        **_tags("elbv2", "CreateTargetGroup")},
    "aws:lb/listener:Listener": {
        "loadBalancerArn": REF, "port": ELB("CreateListener", "Port"),
        "protocol": ELB("CreateListener", "Protocol"),
        "sslPolicy": ELB("CreateListener", "SslPolicy"),
        "certificateArn": Skip("the ACM certificate of aws.certificate_arns, validated by "
                               "hadeploy's config (CERT_ARN_RE); the model has no constraint"),
        "defaultActions[].type": ELB("CreateListener", "DefaultActions.Type"),
        "defaultActions[].targetGroupArn": REF,
        "defaultActions[].redirect.protocol":
            ELB("CreateListener", "DefaultActions.RedirectConfig.Protocol"),
        "defaultActions[].redirect.port":
            ELB("CreateListener", "DefaultActions.RedirectConfig.Port", REDIRECT_PORT),
        "defaultActions[].redirect.statusCode":
            ELB("CreateListener", "DefaultActions.RedirectConfig.StatusCode"),
        **_tags("elbv2", "CreateListener")},
    "aws:autoscaling/group:Group": {
        "name": ASG_CREATE("AutoScalingGroupName"),
        "minSize": ASG_CREATE("MinSize"), "maxSize": ASG_CREATE("MaxSize"),
        "desiredCapacity": ASG_CREATE("DesiredCapacity"),
        "vpcZoneIdentifiers[]": REF, "targetGroupArns[]": REF,
        "launchTemplate.id": REF, "launchTemplate.version": REF,
        "healthCheckType": ASG_CREATE("HealthCheckType"),
        "healthCheckGracePeriod": ASG_CREATE("HealthCheckGracePeriod"),
        "waitForCapacityTimeout": PROVIDER_ONLY,
        "instanceRefresh.strategy": REFRESH("Strategy"),
        "instanceRefresh.preferences.minHealthyPercentage":
            REFRESH("Preferences.MinHealthyPercentage"),
        "instanceRefresh.preferences.maxHealthyPercentage":
            REFRESH("Preferences.MaxHealthyPercentage"),
        "instanceRefresh.preferences.instanceWarmup": REFRESH("Preferences.InstanceWarmup"),
        "tags[].key": ASG_CREATE("Tags.Key"), "tags[].value": ASG_CREATE("Tags.Value")},
    # --- the certificate a regional stack requests when no ARN is configured
    "aws:acm/certificate:Certificate": {
        "domainName": Api("acm", "RequestCertificate", "DomainName", DNS_NAME),
        "validationMethod": Api("acm", "RequestCertificate", "ValidationMethod"),
        **_tags("acm", "AddTagsToCertificate")},
    "aws:acm/certificateValidation:CertificateValidation": {
        "certificateArn": REF,
        "validationRecordFqdns[]": Skip("a waiter of the provider: it polls until ACM issued "
                                        "the certificate, nothing is sent")},
    "aws:ssm/parameter:Parameter": {
        "name": Api("ssm", "PutParameter", "Name", SSM_NAME),
        "type": Api("ssm", "PutParameter", "Type"),
        "description": Api("ssm", "PutParameter", "Description"), "value": SECRET,
        **_tags("ssm", "AddTagsToResource")},
    # --- shared storage
    "aws:efs/fileSystem:FileSystem": {
        "performanceMode": EFS("CreateFileSystem", "PerformanceMode"),
        "throughputMode": EFS("CreateFileSystem", "ThroughputMode"),
        "lifecyclePolicies[].transitionToIa":
            EFS("PutLifecycleConfiguration", "LifecyclePolicies.TransitionToIA"),
        "protection.replicationOverwrite":
            EFS("UpdateFileSystemProtection", "ReplicationOverwriteProtection"),
        **_tags("efs", "CreateFileSystem")},
    "aws:efs/mountTarget:MountTarget": {"fileSystemId": REF, "subnetId": REF,
                                        "securityGroups[]": REF},
    "aws:efs/accessPoint:AccessPoint": {
        "fileSystemId": REF,
        "rootDirectory.path": EFS("CreateAccessPoint", "RootDirectory.Path"),
        "rootDirectory.creationInfo.ownerUid":
            EFS("CreateAccessPoint", "RootDirectory.CreationInfo.OwnerUid"),
        "rootDirectory.creationInfo.ownerGid":
            EFS("CreateAccessPoint", "RootDirectory.CreationInfo.OwnerGid"),
        "rootDirectory.creationInfo.permissions":
            EFS("CreateAccessPoint", "RootDirectory.CreationInfo.Permissions"),
        **_tags("efs", "CreateAccessPoint")},
    "aws:efs/replicationConfiguration:ReplicationConfiguration": {
        "sourceFileSystemId": REF,
        "destination.region": EFS("CreateReplicationConfiguration", "Destinations.Region"),
        # The peer's file system id: a plain string from stack config (hadeploy:peerEfsId).
        "destination.fileSystemId":
            EFS("CreateReplicationConfiguration", "Destinations.FileSystemId")},
    # --- backups
    "aws:backup/vault:Vault": {
        "name": BACKUP("CreateBackupVault", "BackupVaultName"),
        "forceDestroy": PROVIDER_ONLY,
        **_tags("backup", "CreateBackupVault", "BackupVaultTags", key="<key>", value="<value>",
                doc=(TAG_KEY, TAG_VALUE))},
    "aws:backup/vaultLockConfiguration:VaultLockConfiguration": {
        "backupVaultName": REF,
        "minRetentionDays": BACKUP("PutBackupVaultLockConfiguration", "MinRetentionDays",
                                   VAULT_LOCK_MIN),
        "maxRetentionDays": BACKUP("PutBackupVaultLockConfiguration", "MaxRetentionDays",
                                   VAULT_LOCK_MAX),
        "changeableForDays": BACKUP("PutBackupVaultLockConfiguration", "ChangeableForDays",
                                    VAULT_LOCK_GRACE)},
    "aws:backup/plan:Plan": {
        "name": BACKUP("CreateBackupPlan", "BackupPlan.BackupPlanName", BACKUP_PLAN_NAME),
        "rules[].ruleName": BACKUP("CreateBackupPlan", "BackupPlan.Rules.RuleName"),
        "rules[].targetVaultName": REF,
        "rules[].schedule":
            BACKUP("CreateBackupPlan", "BackupPlan.Rules.ScheduleExpression", BACKUP_CRON),
        "rules[].startWindow": BACKUP("CreateBackupPlan", "BackupPlan.Rules.StartWindowMinutes",
                                      BACKUP_START_WINDOW),
        "rules[].completionWindow":
            BACKUP("CreateBackupPlan", "BackupPlan.Rules.CompletionWindowMinutes"),
        "rules[].lifecycle.deleteAfter":
            BACKUP("CreateBackupPlan", "BackupPlan.Rules.Lifecycle.DeleteAfterDays"),
        # The peer region's vault: a plain string computed from configuration.
        "rules[].copyActions[].destinationVaultArn":
            BACKUP("CreateBackupPlan", "BackupPlan.Rules.CopyActions.DestinationBackupVaultArn"),
        "rules[].copyActions[].lifecycle.deleteAfter": BACKUP(
            "CreateBackupPlan", "BackupPlan.Rules.CopyActions.Lifecycle.DeleteAfterDays"),
        **_tags("backup", "CreateBackupPlan", "BackupPlanTags", key="<key>", value="<value>",
                doc=(TAG_KEY, TAG_VALUE))},
    "aws:backup/selection:Selection": {
        "name": BACKUP("CreateBackupSelection", "BackupSelection.SelectionName"),
        "planId": REF, "iamRoleArn": Skip(BACKUP_ROLE),
        "selectionTags[].type":
            BACKUP("CreateBackupSelection", "BackupSelection.ListOfTags.ConditionType"),
        "selectionTags[].key":
            BACKUP("CreateBackupSelection", "BackupSelection.ListOfTags.ConditionKey"),
        "selectionTags[].value":
            BACKUP("CreateBackupSelection", "BackupSelection.ListOfTags.ConditionValue")},
    "aws:backup/restoreTestingPlan:RestoreTestingPlan": {
        "name": BACKUP("CreateRestoreTestingPlan", "RestoreTestingPlan.RestoreTestingPlanName",
                       RESTORE_PLAN_NAME),
        "scheduleExpression": BACKUP(
            "CreateRestoreTestingPlan", "RestoreTestingPlan.ScheduleExpression", BACKUP_CRON),
        "recoveryPointSelection.algorithm": BACKUP(
            "CreateRestoreTestingPlan", "RestoreTestingPlan.RecoveryPointSelection.Algorithm"),
        "recoveryPointSelection.includeVaults[]": REF,
        "recoveryPointSelection.recoveryPointTypes[]": BACKUP(
            "CreateRestoreTestingPlan",
            "RestoreTestingPlan.RecoveryPointSelection.RecoveryPointTypes"),
        "recoveryPointSelection.selectionWindowDays": BACKUP(
            "CreateRestoreTestingPlan",
            "RestoreTestingPlan.RecoveryPointSelection.SelectionWindowDays",
            RESTORE_WINDOW_DAYS),
        **_tags("backup", "CreateRestoreTestingPlan", key="<key>", value="<value>",
                doc=(TAG_KEY, TAG_VALUE))},
    "aws:backup/restoreTestingSelection:RestoreTestingSelection": {
        "name": BACKUP("CreateRestoreTestingSelection",
                       f"{RESTORE}.RestoreTestingSelectionName", RESTORE_SELECTION_NAME),
        "restoreTestingPlanName": REF, "iamRoleArn": Skip(BACKUP_ROLE),
        "protectedResourceType": BACKUP("CreateRestoreTestingSelection",
                                        f"{RESTORE}.ProtectedResourceType",
                                        RESTORE_RESOURCE_TYPE),
        "protectedResourceArns[]": BACKUP("CreateRestoreTestingSelection",
                                          f"{RESTORE}.ProtectedResourceArns"),
        # The key is a condition key, aws:ResourceTag/<tag> by AWS's own format: the tag-key
        # wording in the member's documentation ("can't start with aws:") does not apply.
        "protectedResourceConditions.stringEquals[].key": BACKUP(
            "CreateRestoreTestingSelection",
            f"{RESTORE}.ProtectedResourceConditions.StringEquals.Key"),
        "protectedResourceConditions.stringEquals[].value": BACKUP(
            "CreateRestoreTestingSelection",
            f"{RESTORE}.ProtectedResourceConditions.StringEquals.Value"),
        "restoreMetadataOverrides{key}": BACKUP("CreateRestoreTestingSelection",
                                                f"{RESTORE}.RestoreMetadataOverrides.<key>"),
        "restoreMetadataOverrides{}": REF},
    "aws:s3/bucket:Bucket": {
        "bucket": S3("CreateBucket", "Bucket", S3_BUCKET_NAME), "forceDestroy": PROVIDER_ONLY,
        **_tags("s3", "PutBucketTagging", "Tagging.TagSet", doc=(TAG_KEY, TAG_VALUE))},
    "aws:s3/bucketVersioning:BucketVersioning": {
        "bucket": REF,
        "versioningConfiguration.status":
            S3("PutBucketVersioning", "VersioningConfiguration.Status")},
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": {
        "bucket": REF,
        "rules[].applyServerSideEncryptionByDefault.sseAlgorithm": S3(
            "PutBucketEncryption", "ServerSideEncryptionConfiguration.Rules."
            "ApplyServerSideEncryptionByDefault.SSEAlgorithm")},
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": {"bucket": REF},
    "aws:s3/bucketReplicationConfig:BucketReplicationConfig": {
        "bucket": REF, "role": REF,
        "rules[].id": S3("PutBucketReplication", "ReplicationConfiguration.Rules.ID",
                         S3_RULE_ID),
        "rules[].status": S3("PutBucketReplication", "ReplicationConfiguration.Rules.Status"),
        "rules[].priority":
            S3("PutBucketReplication", "ReplicationConfiguration.Rules.Priority"),
        "rules[].filter.prefix":
            S3("PutBucketReplication", "ReplicationConfiguration.Rules.Filter.Prefix"),
        "rules[].deleteMarkerReplication.status": S3(
            "PutBucketReplication",
            "ReplicationConfiguration.Rules.DeleteMarkerReplication.Status"),
        # The peer region's bucket: a plain string computed from configuration.
        "rules[].destination.bucket": S3(
            "PutBucketReplication", "ReplicationConfiguration.Rules.Destination.Bucket"),
        "rules[].destination.storageClass": S3(
            "PutBucketReplication", "ReplicationConfiguration.Rules.Destination.StorageClass")},
    # --- the database tier
    "aws:kms/key:Key": {
        "description": Api("kms", "CreateKey", "Description"),
        "deletionWindowInDays": Api("kms", "ScheduleKeyDeletion", "PendingWindowInDays",
                                    KMS_PENDING_WINDOW),
        **_tags("kms", "CreateKey", key="TagKey", value="TagValue")},
    "aws:rds/subnetGroup:SubnetGroup": {
        "name": RDS("CreateDBSubnetGroup", "DBSubnetGroupName", RDS_SUBNET_GROUP_NAME),
        "description": RDS("CreateDBSubnetGroup", "DBSubnetGroupDescription"),
        "subnetIds[]": REF, **RDS_TAGS},
    "aws:rds/globalCluster:GlobalCluster": {
        "globalClusterIdentifier": RDS("CreateGlobalCluster", "GlobalClusterIdentifier"),
        "engine": RDS("CreateGlobalCluster", "Engine", RDS_GLOBAL_ENGINE),
        "engineVersion": RDS("CreateGlobalCluster", "EngineVersion"),
        "databaseName": RDS("CreateGlobalCluster", "DatabaseName", RDS_DATABASE_NAME)},
    "aws:rds/cluster:Cluster": {
        "clusterIdentifier": RDS("CreateDBCluster", "DBClusterIdentifier", RDS_CLUSTER_ID),
        "engine": RDS("CreateDBCluster", "Engine", RDS_CLUSTER_ENGINE),
        "engineVersion": RDS("CreateDBCluster", "EngineVersion"),
        "globalClusterIdentifier": RDS("CreateDBCluster", "GlobalClusterIdentifier"),
        "dbSubnetGroupName": REF, "vpcSecurityGroupIds[]": REF, "kmsKeyId": REF,
        "port": RDS("CreateDBCluster", "Port", RDS_PORT),
        "backupRetentionPeriod": RDS("CreateDBCluster", "BackupRetentionPeriod",
                                     RDS_RETENTION),
        "preferredBackupWindow": RDS("CreateDBCluster", "PreferredBackupWindow",
                                     RDS_BACKUP_WINDOW),
        "finalSnapshotIdentifier": RDS("DeleteDBCluster", "FinalDBSnapshotIdentifier",
                                       RDS_FINAL_SNAPSHOT_ID),
        "masterUsername": RDS("CreateDBCluster", "MasterUsername", RDS_MASTER_USERNAME),
        "masterPassword": SECRET,
        "enabledCloudwatchLogsExports[]": RDS("CreateDBCluster", "EnableCloudwatchLogsExports",
                                              RDS_POSTGRES_LOGS),
        **RDS_TAGS},
    "aws:rds/clusterInstance:ClusterInstance": {
        "identifier": RDS("CreateDBInstance", "DBInstanceIdentifier", RDS_INSTANCE_ID),
        "clusterIdentifier": REF, "dbSubnetGroupName": REF,
        "performanceInsightsKmsKeyId": REF,
        "engine": RDS("CreateDBInstance", "Engine"),
        "engineVersion": RDS("CreateDBInstance", "EngineVersion"),
        "instanceClass": RDS("CreateDBInstance", "DBInstanceClass"),
        "promotionTier": RDS("CreateDBInstance", "PromotionTier", RDS_PROMOTION_TIER),
        **RDS_TAGS},
    # --- the global stack
    "aws:route53/zone:Zone": {
        "name": R53("CreateHostedZone", "Name", DNS_NAME),
        "comment": R53("CreateHostedZone", "HostedZoneConfig.Comment"),
        "forceDestroy": PROVIDER_ONLY,
        **_tags("route53", "ChangeTagsForResource", "AddTags")},
    "aws:route53/healthCheck:HealthCheck": {
        "type": R53("CreateHealthCheck", f"{CHECK}.Type"),
        # The ALB's DNS name, read from the regional stack's outputs (the scenario's).
        "fqdn": R53("CreateHealthCheck", f"{CHECK}.FullyQualifiedDomainName", DNS_NAME),
        "port": R53("CreateHealthCheck", f"{CHECK}.Port"),
        "resourcePath": R53("CreateHealthCheck", f"{CHECK}.ResourcePath"),
        "requestInterval": R53("CreateHealthCheck", f"{CHECK}.RequestInterval"),
        "failureThreshold": R53("CreateHealthCheck", f"{CHECK}.FailureThreshold"),
        "regions[]": R53("CreateHealthCheck", f"{CHECK}.Regions"),
        **_tags("route53", "ChangeTagsForResource", "AddTags")},
    "aws:route53/record:Record": {
        "zoneId": REF, "name": R53("ChangeResourceRecordSets", f"{RECORD_SET}.Name", DNS_NAME),
        "type": R53("ChangeResourceRecordSets", f"{RECORD_SET}.Type"),
        "setIdentifier": R53("ChangeResourceRecordSets", f"{RECORD_SET}.SetIdentifier"),
        "failoverRoutingPolicies[].type":
            R53("ChangeResourceRecordSets", f"{RECORD_SET}.Failover"),
        "weightedRoutingPolicies[].weight":
            R53("ChangeResourceRecordSets", f"{RECORD_SET}.Weight"),
        "healthCheckId": REF,
        # An ALB's (from the regional stack's outputs) or the next failover level's name.
        "aliases[].name":
            R53("ChangeResourceRecordSets", f"{RECORD_SET}.AliasTarget.DNSName", DNS_NAME),
        "aliases[].zoneId":
            R53("ChangeResourceRecordSets", f"{RECORD_SET}.AliasTarget.HostedZoneId"),
        # the certificate's validation record (its name and value come from ACM)
        "records[]": R53("ChangeResourceRecordSets", f"{RECORD_SET}.ResourceRecords.Value"),
        "ttl": R53("ChangeResourceRecordSets", f"{RECORD_SET}.TTL"),
        "allowOverwrite": PROVIDER_ONLY},
}

# Names Pulumi generates when the program gives none: "<logical name>-<7 random hex>",
# never shortened (a name AWS finds too long fails the preview).
AUTONAMED = {
    "aws:ec2/securityGroup:SecurityGroup": "name",
    "aws:lb/loadBalancer:LoadBalancer": "name",
    "aws:lb/targetGroup:TargetGroup": "name",
    "aws:iam/role:Role": "name",
    "aws:iam/rolePolicy:RolePolicy": "name",
    "aws:iam/instanceProfile:InstanceProfile": "name",
    "aws:ec2/launchTemplate:LaunchTemplate": "name",
    "aws:autoscaling/group:Group": "name",
}
AUTONAME_SUFFIX = "-9f3a1c7"
MAPS = frozenset({"tags", "restoreMetadataOverrides"})  # objects with free keys


# --- botocore's model --------------------------------------------------------------------

@dataclass(frozen=True)
class Constraint:
    where: str
    kind: str  # the botocore type: string, integer, long, boolean, …
    pattern: str | None = None  # as the model writes it (Java regular expression)
    min: int | None = None
    max: int | None = None
    enum: tuple[str, ...] = ()
    list_min: int | None = None
    list_max: int | None = None
    doc: Documented | None = None
    documentation: str = ""  # the member's documentation, HTML removed

    @property
    def constrained(self) -> bool:
        return bool(self.pattern or self.min is not None or self.max is not None or self.enum
                    or self.list_min is not None or self.list_max is not None or self.doc)


@functools.cache
def _model(service: str) -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


def plain_text(documentation: str) -> str:
    """A model's HTML documentation as one line of text."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", documentation))).strip()


@functools.cache
def resolve(api: Api) -> Constraint:
    """The constraints botocore's model (and ``api.doc``) puts on the member."""
    model = _model(api.service)
    shape = model.operation_model(api.operation).input_shape
    doc_text = ""
    list_meta: dict[str, Any] = {}
    for part in api.member.split("."):
        while shape.type_name == "list":
            shape = shape.member
        if part in ("<key>", "<value>"):
            shape = shape.key if part == "<key>" else shape.value
            doc_text = ""
        else:
            if part not in shape.members:
                raise KeyError(f"{api}: {shape.name} has no member {part} "
                               f"(members: {sorted(shape.members)})")
            doc_text = shape.members[part].documentation or ""
            shape = shape.members[part]
    if shape.type_name == "list":
        list_meta = shape.metadata
        shape = shape.member
    meta = shape.metadata
    return Constraint(
        where=str(api), kind=shape.type_name, pattern=meta.get("pattern"),
        min=meta.get("min"), max=meta.get("max"),
        enum=tuple(getattr(shape, "enum", None) or ()),
        list_min=list_meta.get("min"), list_max=list_meta.get("max"), doc=api.doc,
        documentation=plain_text(doc_text or shape.documentation or ""))


@functools.cache
def _unicode_classes() -> dict[str, str]:
    """Character-class bodies for Java's \\p{L}, \\p{N} and \\p{Z} (Python's re has none)."""
    ranges: dict[str, list[list[int]]] = {"L": [], "N": [], "Z": []}
    for cp in range(0x110000):
        major = unicodedata.category(chr(cp))[0]
        spans = ranges.get(major)
        if spans is None:
            continue
        if spans and spans[-1][1] == cp - 1:
            spans[-1][1] = cp
        else:
            spans.append([cp, cp])

    def esc(cp: int) -> str:
        return f"\\U{cp:08x}"

    return {k: "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in spans)
            for k, spans in ranges.items()}


def python_regex(java: str) -> str:
    """botocore's patterns are Java regular expressions: \\p{L}/\\p{N}/\\p{Z} become
    explicit classes, a UTF-16 surrogate-pair range the code points it means."""
    text = java.replace(r"\uD800\uDC00-\uDBFF\uDFFF", r"\U00010000-\U0010FFFF")
    out, in_class, i = [], False, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and text.startswith("\\p{", i):
            end = text.index("}", i)
            body = _unicode_classes()[text[i + 3:end]]
            out.append(body if in_class else f"[{body}]")
            i = end + 1
            continue
        if ch == "\\":
            out.append(text[i:i + 2])
            i += 2
            continue
        if ch == "[" and not in_class:
            in_class = True
        elif ch == "]" and in_class:
            in_class = False
        out.append(ch)
        i += 1
    return "".join(out)


@functools.cache
def _compiled(pattern: str, java: bool) -> re.Pattern[str]:
    return re.compile(python_regex(pattern) if java else pattern, re.DOTALL)


def _matches(pattern: str, value: str, *, java: bool) -> bool:
    """A model pattern that anchors itself (^…, …$) is matched as written; any other
    (and every :class:`Documented` one) must match the whole value."""
    regex = _compiled(pattern, java)
    if java and (pattern.startswith("^") or pattern.endswith("$")):
        return regex.search(value) is not None
    return regex.fullmatch(value) is not None


# --- checking one value -------------------------------------------------------------------

NUMBER_KINDS = ("integer", "long", "double", "float")


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def _bounds(number: float, low: float | None, high: float | None) -> str | None:
    if low is not None and number < low:
        return f"below {low:g}"
    if high is not None and number > high:
        return f"above {high:g}"
    return None


def value_problems(c: Constraint, value: Any) -> list[str]:
    """What AWS would reject about ``value`` in member ``c`` (empty: nothing)."""
    problems: list[str] = []
    if c.kind == "boolean":
        if str(value).lower() not in ("true", "false"):
            problems.append("not a boolean")
        return problems
    if c.kind in NUMBER_KINDS:
        number = _as_number(value)
        if number is None or (c.kind in ("integer", "long") and not number.is_integer()):
            return [f"not an {c.kind}"]
        bad = _bounds(number, c.min, c.max)
        if bad:
            problems.append(f"{bad} (model: {c.min}..{c.max})")
        if c.doc and (bad := _bounds(number, c.doc.min_value, c.doc.max_value)):
            problems.append(f"{bad}: AWS documents “{c.doc.cites}”")
        return problems
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    if c.enum and text not in c.enum:
        problems.append(f"not one of the model's values ({len(c.enum)}: "
                        f"{', '.join(c.enum[:8])}{', …' if len(c.enum) > 8 else ''})")
    if (bad := _bounds(len(text), c.min, c.max)) is not None:
        problems.append(f"length {len(text)} {bad} (model: {c.min}..{c.max})")
    if c.pattern and not _matches(c.pattern, text, java=True):
        problems.append(f"does not match the model's pattern {c.pattern}")
    d = c.doc
    if d is not None:
        bad = _bounds(len(text), d.min_len, d.max_len)
        bad_number = None
        if d.min_value is not None or d.max_value is not None:
            number = _as_number(text)
            bad_number = "not a number" if number is None else _bounds(
                number, d.min_value, d.max_value)
        if (bad or bad_number or (d.pattern and not _matches(d.pattern, text, java=False))
                or (d.values and text not in d.values)):
            what = f"length {len(text)} {bad}" if bad else bad_number or "not allowed"
            problems.append(f"{what}: AWS documents “{d.cites}”"
                            + (f" ({d.source})" if d.source else ""))
    return problems


# --- checking a graph ---------------------------------------------------------------------

OPAQUE = object()  # a secret or an unknown value: nothing to check


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) of every string and number in a recorded input (map keys too)."""
    if isinstance(value, dict):
        if {"__secret__", "__unknown__", "__resource__"} & set(value):
            yield path, OPAQUE
            return
        if path.rsplit(".", 1)[-1] in MAPS:
            for key, item in value.items():
                yield f"{path}{{key}}", key
                yield from leaves(item, f"{path}{{}}")
            return
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for item in value:
            yield from leaves(item, f"{path}[]")
    elif value is not None and not isinstance(value, bool):  # a boolean: nothing to check
        yield path, value


def _at(value: Any, parts: list[str]) -> Iterator[Any]:
    """The values at a path (``a[].b[]``), for list lengths."""
    if not parts:
        yield value
        return
    head, rest = parts[0], parts[1:]
    name, is_list = (head[:-2], True) if head.endswith("[]") else (head, False)
    item = value.get(name) if isinstance(value, dict) else None
    if is_list and rest:
        for element in item or []:
            yield from _at(element, rest)
    elif item is not None:
        yield from _at(item, rest)


@dataclass
class Report:
    """What :func:`check_graphs` found: ``problems`` (AWS would reject these), and coverage —
    per (resource type, input path): checked values, skipped ones with the reason, and the
    inputs nothing classifies (``unmapped``; a type missing from :data:`MAPPING` shows up
    here with every input)."""

    problems: list[str] = field(default_factory=list)
    checked: dict[tuple[str, str], set[Api]] = field(default_factory=dict)  # → API members
    skipped: dict[tuple[str, str], str] = field(default_factory=dict)
    opaque: set[tuple[str, str]] = field(default_factory=set)
    unmapped: dict[tuple[str, str], str] = field(default_factory=dict)  # → an example value
    types: set[str] = field(default_factory=set)

    @property
    def unmapped_types(self) -> set[str]:
        return self.types - set(MAPPING)

    @property
    def constrained(self) -> set[tuple[str, str]]:
        """The checked inputs whose API member carries a constraint (model or documented)."""
        return {k for k, apis in self.checked.items()
                if any(resolve(api).constrained for api in apis)}

    def summary(self) -> str:
        members = {m for ms in self.checked.values() for m in ms}
        types = {t for t, _ in self.checked}
        return (f"{len(self.types)} resource types ({len(types)} with checked inputs), "
                f"{len(self.checked)} inputs checked against {len(members)} API members "
                f"({len(self.constrained)} of them constrained), {len(self.skipped)} skipped, "
                f"{len(self.opaque)} secret/unknown, {len(self.unmapped)} unmapped, "
                f"{len(self.problems)} problems")


def _entries(entry: Entry) -> tuple[Api, ...]:
    return entry if isinstance(entry, tuple) else (entry,) if isinstance(entry, Api) else ()


def _default_tags(graph: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Provider URN → its default tags (recorded as JSON text or as an object)."""
    found = {}
    for r in graph["resources"]:
        if r["type"] == "pulumi:providers:aws":
            tags = r["inputs"].get("defaultTags")
            tags = json.loads(tags) if isinstance(tags, str) else tags or {}
            found[r["urn"]] = dict(tags.get("tags") or {})
    return found


def _inputs_of(r: Mapping[str, Any], defaults: Mapping[str, Mapping[str, str]],
               mapping: Mapping[str, Entry]) -> Iterator[tuple[str, Any, str]]:
    """(path, value, note) of every input the resource sends: its own, its generated name,
    and its provider's default tags."""
    inputs = dict(r["inputs"])
    if r["type"] == "pulumi:providers:aws" and isinstance(inputs.get("defaultTags"), str):
        inputs["defaultTags"] = json.loads(inputs["defaultTags"])
    for path, value in leaves(inputs):
        yield path, value, ""
    prop = AUTONAMED.get(r["type"])
    if prop and prop not in inputs:
        yield prop, f"{r['name']}{AUTONAME_SUFFIX}", " (Pulumi's generated name)"
    if "tags{key}" in mapping:
        for key, value in defaults.get(r["provider"] or "", {}).items():
            yield "tags{key}", key, " (provider default tag)"
            yield "tags{}", value, " (provider default tag)"


def check_resource(r: Mapping[str, Any], report: Report,
                   defaults: Mapping[str, Mapping[str, str]]) -> None:
    typ = r["type"]
    report.types.add(typ)
    mapping = MAPPING.get(typ, {})
    for path, value, note in _inputs_of(r, defaults, mapping):
        key = (typ, path)
        entry = mapping.get(path)
        if entry is None:
            report.unmapped.setdefault(key, repr(value)[:80])
            continue
        if isinstance(entry, Skip):
            report.skipped[key] = entry.reason
            continue
        if value is OPAQUE:
            report.opaque.add(key)
            continue
        for api in _entries(entry):
            report.checked.setdefault(key, set()).add(api)
            for problem in value_problems(resolve(api), value):
                report.problems.append(f"{typ} {r['name']}: {path}{note} = {value!r}: "
                                       f"{api}: {problem}")
    for path, entry in mapping.items():  # list lengths (Route 53's ≥ 3 checker regions)
        if not path.endswith("[]"):
            continue
        for api in _entries(entry):
            c = resolve(api)
            for items in _at(r["inputs"], path[:-2].split(".")):
                if isinstance(items, list) and (
                        bad := _bounds(len(items), c.list_min, c.list_max)):
                    report.problems.append(f"{typ} {r['name']}: {path} has {len(items)} "
                                           f"items, {bad} ({api}: {c.list_min}..{c.list_max})")


def check_graphs(graphs: Mapping[str, Mapping[str, Any]]) -> Report:
    """Check every custom resource of every graph (components send nothing to AWS)."""
    report = Report()
    for name, graph in graphs.items():
        defaults = _default_tags(graph)
        before = len(report.problems)
        for r in graph["resources"]:
            if r["custom"]:
                check_resource(r, report, defaults)
        report.problems[before:] = [f"{name}: {p}" for p in report.problems[before:]]
    report.problems = sorted(set(report.problems))
    return report
