"""``AppCluster``: the region's app hosts (an auto scaling group in the private subnets)
behind a public ALB (HTTPS, HTTP→HTTPS redirect).

Hosts carry no configuration of their own: the launch template's user data only makes sure
the SSM agent runs, so that Ansible reaches them over Session Manager (no SSH port, no
public address) and configures them with the same roles as the lab.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi  # noqa: TID253 - hadeploy.infra is only imported by the AWS target
import pulumi_aws as aws  # noqa: TID253

from hadeploy.infra.settings import TAG_HOSTS, TAG_STANDBY, TAG_TIER

WORLD_V4 = "0.0.0.0/0"
WORLD_V6 = "::/0"
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


@dataclass(frozen=True)
class AppClusterArgs:
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    public_subnet_ids: Sequence[pulumi.Input[str]]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    aws_region: str
    partition: str
    app_port: int
    health_path: str
    certificate_arn: pulumi.Input[str]
    instance_type: str
    ami: str
    root_device: str
    min_size: int
    desired: int
    max_size: int
    host_tag: str
    standby: str
    health_interval: int = 10
    unhealthy_threshold: int = 3
    secret_parameter_arn: pulumi.Input[str] | None = None
    deletion_protection: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)


def user_data(aws_region: str) -> str:
    """Minimal bootstrap: the SSM agent (Debian images lack it). The rest is Ansible's."""
    deb = (f"https://s3.{aws_region}.amazonaws.com/amazon-ssm-{aws_region}/latest/"
           "debian_amd64/amazon-ssm-agent.deb")
    return f"""#!/bin/sh
# hadeploy bootstrap: only what Ansible needs to reach this host over SSM.
set -eu
if ! systemctl list-unit-files amazon-ssm-agent.service >/dev/null 2>&1; then
  curl -fsSL --retry 5 -o /tmp/amazon-ssm-agent.deb {deb}
  dpkg -i /tmp/amazon-ssm-agent.deb
fi
systemctl enable --now amazon-ssm-agent
"""


class AppCluster(pulumi.ComponentResource):
    alb: aws.lb.LoadBalancer
    target_group: aws.lb.TargetGroup
    asg: aws.autoscaling.Group
    https_listener: aws.lb.Listener
    alb_security_group: aws.ec2.SecurityGroup
    host_security_group: aws.ec2.SecurityGroup

    def __init__(self, name: str, args: AppClusterArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hadeploy:cluster:AppCluster", name, None, opts)
        self._name = name
        self._args = args
        self.alb_security_group, self.host_security_group = self._create_security_groups()
        self.instance_profile = self._create_instance_profile()
        self.launch_template = self._create_launch_template()
        self.alb, self.target_group = self._create_load_balancer()
        self.https_listener = self._create_listeners()
        self.asg = self._create_asg()
        self.register_outputs({
            "alb_dns_name": self.alb.dns_name,
            "alb_zone_id": self.alb.zone_id,
            "asg_name": self.asg.name,
            "https_listener_arn": self.https_listener.arn,
            "host_security_group_id": self.host_security_group.id,
        })

    def _opts(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self)

    def _tags(self, part: str, **extra: str) -> dict[str, str]:
        return {**self._args.tags, "Name": f"{self._name}-{part}", **extra}

    def _create_security_groups(self) -> tuple[aws.ec2.SecurityGroup, aws.ec2.SecurityGroup]:
        a = self._args
        # Only the ALB is open to the world, and only on 80/443. Its egress and the hosts'
        # NFS egress name the VPC range rather than a security group, which would make the
        # groups reference each other in a cycle.
        alb_sg = aws.ec2.SecurityGroup(
            f"{self._name}-alb-sg", vpc_id=a.vpc_id,
            description="hadeploy ALB: HTTP/HTTPS from anywhere",
            ingress=[aws.ec2.SecurityGroupIngressArgs(
                protocol="tcp", from_port=port, to_port=port, cidr_blocks=[WORLD_V4],
                ipv6_cidr_blocks=[WORLD_V6], description=f"clients, port {port}")
                for port in (80, 443)],
            egress=[aws.ec2.SecurityGroupEgressArgs(
                protocol="tcp", from_port=a.app_port, to_port=a.app_port,
                cidr_blocks=[a.vpc_cidr], description="to the app hosts")],
            tags=self._tags("alb-sg", **{TAG_TIER: "alb"}), opts=self._opts())
        host_sg = aws.ec2.SecurityGroup(
            f"{self._name}-host-sg", vpc_id=a.vpc_id,
            description="hadeploy app hosts: app port from the ALB only",
            ingress=[aws.ec2.SecurityGroupIngressArgs(
                protocol="tcp", from_port=a.app_port, to_port=a.app_port,
                security_groups=[alb_sg.id], description="from the ALB")],
            egress=[
                aws.ec2.SecurityGroupEgressArgs(
                    protocol="tcp", from_port=443, to_port=443, cidr_blocks=[WORLD_V4],
                    description="SSM endpoints, package mirrors (HTTPS) via NAT"),
                aws.ec2.SecurityGroupEgressArgs(
                    protocol="tcp", from_port=80, to_port=80, cidr_blocks=[WORLD_V4],
                    description="Debian mirrors (HTTP, signed) via NAT"),
                aws.ec2.SecurityGroupEgressArgs(
                    protocol="tcp", from_port=2049, to_port=2049, cidr_blocks=[a.vpc_cidr],
                    description="NFS to the EFS mount targets of this region"),
            ],
            tags=self._tags("host-sg", **{TAG_TIER: "app"}), opts=self._opts())
        return alb_sg, host_sg

    def _create_instance_profile(self) -> aws.iam.InstanceProfile:
        a = self._args
        role = aws.iam.Role(
            f"{self._name}-host-role",
            assume_role_policy=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                               "Principal": {"Service": "ec2.amazonaws.com"}}]}),
            tags=self._tags("host-role"), opts=self._opts())
        aws.iam.RolePolicyAttachment(
            f"{self._name}-host-ssm",
            role=role.name,
            policy_arn=f"arn:{a.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore",
            opts=self._opts())
        if a.secret_parameter_arn is not None:
            aws.iam.RolePolicy(
                f"{self._name}-host-secret", role=role.id,
                policy=pulumi.Output.from_input(a.secret_parameter_arn).apply(
                    lambda arn: json.dumps({
                        "Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "ssm:GetParameter",
                                       "Resource": arn}]})),
                opts=self._opts())
        return aws.iam.InstanceProfile(f"{self._name}-host-profile", role=role.name,
                                       tags=self._tags("host-profile"), opts=self._opts())

    def _create_launch_template(self) -> aws.ec2.LaunchTemplate:
        a = self._args
        instance_tags = self._tags("host", **{TAG_HOSTS: a.host_tag})
        return aws.ec2.LaunchTemplate(
            f"{self._name}-lt", image_id=a.ami, instance_type=a.instance_type,
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(
                arn=self.instance_profile.arn),
            vpc_security_group_ids=[self.host_security_group.id],
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required",
                http_put_response_hop_limit=1),
            block_device_mappings=[aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name=a.root_device,
                ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    encrypted="true", volume_type="gp3", volume_size=16,
                    delete_on_termination="true"))],
            user_data=base64.b64encode(user_data(a.aws_region).encode()).decode(),
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind,
                                                           tags=instance_tags)
                for kind in ("instance", "volume")],
            update_default_version=True, tags=self._tags("lt"), opts=self._opts())

    def _create_load_balancer(self) -> tuple[aws.lb.LoadBalancer, aws.lb.TargetGroup]:
        a = self._args
        alb = aws.lb.LoadBalancer(
            f"{self._name}-alb", load_balancer_type="application", internal=False,
            subnets=list(a.public_subnet_ids), security_groups=[self.alb_security_group.id],
            drop_invalid_header_fields=True, enable_deletion_protection=a.deletion_protection,
            tags=self._tags("alb"), opts=self._opts())
        target_group = aws.lb.TargetGroup(
            f"{self._name}-tg", port=a.app_port, protocol="HTTP", target_type="instance",
            vpc_id=a.vpc_id, deregistration_delay=30,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                enabled=True, path=a.health_path, port="traffic-port", protocol="HTTP",
                matcher="200", interval=a.health_interval, timeout=min(4, a.health_interval - 1),
                healthy_threshold=2, unhealthy_threshold=a.unhealthy_threshold),
            tags=self._tags("tg"), opts=self._opts())
        return alb, target_group

    def _create_listeners(self) -> aws.lb.Listener:
        """HTTPS forwards to the hosts; HTTP redirects. The HTTPS one is returned: a
        failover fences the region by adding a rule to it (hadeploy.targets.aws.ops)."""
        https = aws.lb.Listener(
            f"{self._name}-https", load_balancer_arn=self.alb.arn, port=443, protocol="HTTPS",
            ssl_policy=TLS_POLICY, certificate_arn=self._args.certificate_arn,
            default_actions=[aws.lb.ListenerDefaultActionArgs(
                type="forward", target_group_arn=self.target_group.arn)],
            tags=self._tags("https"), opts=self._opts())
        aws.lb.Listener(
            f"{self._name}-http", load_balancer_arn=self.alb.arn, port=80, protocol="HTTP",
            default_actions=[aws.lb.ListenerDefaultActionArgs(
                type="redirect", redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                    protocol="HTTPS", port="443", status_code="HTTP_301"))],
            tags=self._tags("http"), opts=self._opts())
        return https

    def _create_asg(self) -> aws.autoscaling.Group:
        a = self._args
        tags = {**self._tags("host"), TAG_HOSTS: a.host_tag, TAG_STANDBY: a.standby}
        return aws.autoscaling.Group(
            f"{self._name}-asg", min_size=a.min_size, max_size=a.max_size,
            desired_capacity=a.desired, vpc_zone_identifiers=list(a.private_subnet_ids),
            launch_template=aws.autoscaling.GroupLaunchTemplateArgs(
                id=self.launch_template.id,
                version=self.launch_template.latest_version.apply(str)),
            target_group_arns=[self.target_group.arn], health_check_type="ELB",
            health_check_grace_period=300, wait_for_capacity_timeout="15m",
            # A new launch template version (another app version, another image) replaces
            # the hosts as a rolling instance refresh: each new instance is launched and
            # healthy behind the ALB before an old one is terminated (capacity never drops
            # below 100 %); a refresh that fails rolls back to the previous template.
            instance_refresh=aws.autoscaling.GroupInstanceRefreshArgs(
                strategy="Rolling",
                preferences=aws.autoscaling.GroupInstanceRefreshPreferencesArgs(
                    min_healthy_percentage=100, max_healthy_percentage=200,
                    instance_warmup="300", skip_matching=True, auto_rollback=True)),
            tags=[aws.autoscaling.GroupTagArgs(key=k, value=v, propagate_at_launch=True)
                  for k, v in sorted(tags.items())],
            # A failover scales a warm/cold region up; a later `up` must not undo it.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["desired_capacity"]))
