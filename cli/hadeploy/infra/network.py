"""``Network``: one region's VPC, public and private subnets in every AZ used, one NAT
gateway per AZ (an AZ outage never cuts the others' egress), routes and an IGW."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi  # noqa: TID253 - hadeploy.infra is only imported by the AWS target
import pulumi_aws as aws  # noqa: TID253


@dataclass(frozen=True)
class NetworkArgs:
    cidr: str
    az_count: int = 3
    tags: Mapping[str, str] = field(default_factory=dict)


def subnet_cidrs(cidr: str, az_count: int) -> tuple[list[str], list[str]]:
    """Public subnets take the first half of the VPC, private ones the second (/+4 each)."""
    net = ipaddress.IPv4Network(cidr)
    slots = list(net.subnets(prefixlen_diff=4))
    return ([str(s) for s in slots[:az_count]], [str(s) for s in slots[8:8 + az_count]])


class Network(pulumi.ComponentResource):
    vpc: aws.ec2.Vpc
    az_names: list[str]
    public_subnets: list[aws.ec2.Subnet]
    private_subnets: list[aws.ec2.Subnet]

    def __init__(self, name: str, args: NetworkArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hadeploy:network:Network", name, None, opts)
        self._name = name
        self._args = args
        self.az_names = self._lookup_azs()
        self.vpc = self._create_vpc()
        self.igw = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=self.vpc.id, tags=self._tags("igw"),
            opts=pulumi.ResourceOptions(parent=self))
        self.public_subnets, self.private_subnets = self._create_subnets()
        self._create_public_routes()
        self.nat_gateways = self._create_nat_gateways()
        self._create_private_routes()
        self.register_outputs({
            "vpc_id": self.vpc.id,
            "public_subnet_ids": [s.id for s in self.public_subnets],
            "private_subnet_ids": [s.id for s in self.private_subnets],
            "az_names": self.az_names,
        })

    def _tags(self, part: str) -> dict[str, str]:
        return {**self._args.tags, "Name": f"{self._name}-{part}"}

    def _lookup_azs(self) -> list[str]:
        # The invoke inherits the region's provider from this component.
        result = aws.get_availability_zones(
            state="available", filters=[{"name": "opt-in-status",
                                         "values": ["opt-in-not-required"]}],
            opts=pulumi.InvokeOptions(parent=self))
        names = sorted(result.names or [])[: self._args.az_count]
        if len(names) < 2:
            raise ValueError(f"{self._name}: the region offers {len(names)} availability "
                             "zone(s); hadeploy needs at least 2")
        if len(names) < self._args.az_count:
            pulumi.log.warn(f"{self._name}: only {len(names)} availability zones available "
                            f"(az_count is {self._args.az_count})", resource=self)
        return names

    def _create_vpc(self) -> aws.ec2.Vpc:
        return aws.ec2.Vpc(
            f"{self._name}-vpc", cidr_block=self._args.cidr, enable_dns_hostnames=True,
            enable_dns_support=True, tags=self._tags("vpc"),
            opts=pulumi.ResourceOptions(parent=self))

    def _create_subnets(self) -> tuple[list[aws.ec2.Subnet], list[aws.ec2.Subnet]]:
        public_cidrs, private_cidrs = subnet_cidrs(self._args.cidr, len(self.az_names))
        public, private = [], []
        for i, az in enumerate(self.az_names):
            public.append(aws.ec2.Subnet(
                f"{self._name}-public-{i}", vpc_id=self.vpc.id, cidr_block=public_cidrs[i],
                availability_zone=az, map_public_ip_on_launch=False,
                tags={**self._tags(f"public-{i}"), "hadeploy:subnet": "public"},
                opts=pulumi.ResourceOptions(parent=self)))
            private.append(aws.ec2.Subnet(
                f"{self._name}-private-{i}", vpc_id=self.vpc.id, cidr_block=private_cidrs[i],
                availability_zone=az, map_public_ip_on_launch=False,
                tags={**self._tags(f"private-{i}"), "hadeploy:subnet": "private"},
                opts=pulumi.ResourceOptions(parent=self)))
        return public, private

    def _create_public_routes(self) -> None:
        table = aws.ec2.RouteTable(
            f"{self._name}-public-rt", vpc_id=self.vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0",
                                                gateway_id=self.igw.id)],
            tags=self._tags("public-rt"), opts=pulumi.ResourceOptions(parent=self))
        for i, subnet in enumerate(self.public_subnets):
            aws.ec2.RouteTableAssociation(
                f"{self._name}-public-rta-{i}", route_table_id=table.id, subnet_id=subnet.id,
                opts=pulumi.ResourceOptions(parent=self))

    def _create_nat_gateways(self) -> list[aws.ec2.NatGateway]:
        gateways = []
        for i, subnet in enumerate(self.public_subnets):
            eip = aws.ec2.Eip(f"{self._name}-nat-eip-{i}", domain="vpc",
                              tags=self._tags(f"nat-eip-{i}"),
                              opts=pulumi.ResourceOptions(parent=self))
            gateways.append(aws.ec2.NatGateway(
                f"{self._name}-nat-{i}", allocation_id=eip.id, subnet_id=subnet.id,
                tags=self._tags(f"nat-{i}"),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.igw])))
        return gateways

    def _create_private_routes(self) -> None:
        for i, (subnet, nat) in enumerate(zip(self.private_subnets, self.nat_gateways,
                                              strict=True)):
            table = aws.ec2.RouteTable(
                f"{self._name}-private-rt-{i}", vpc_id=self.vpc.id,
                routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0",
                                                    nat_gateway_id=nat.id)],
                tags=self._tags(f"private-rt-{i}"), opts=pulumi.ResourceOptions(parent=self))
            aws.ec2.RouteTableAssociation(
                f"{self._name}-private-rta-{i}", route_table_id=table.id, subnet_id=subnet.id,
                opts=pulumi.ResourceOptions(parent=self))

    @property
    def public_subnet_ids(self) -> list[pulumi.Output[str]]:
        return [s.id for s in self.public_subnets]

    @property
    def private_subnet_ids(self) -> list[pulumi.Output[str]]:
        return [s.id for s in self.private_subnets]

