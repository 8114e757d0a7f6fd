"""``GlobalDns``: the deployment's Route 53 zone (or an existing one), one health check per
region on its ALB, and the app record routing to the regions.

Active-passive uses failover routing. Route 53 allows one PRIMARY and one SECONDARY per
name, so with more than two regions the SECONDARY of each level is an alias to the next
level's name (``app`` → ``app-failover-1`` → …): every failover name has exactly one
PRIMARY and one SECONDARY, and traffic falls through the regions in configured order. That
SECONDARY depends on the next level's records: Route 53 rejects an alias to a name that has
no record yet.
Active-active uses weighted records with health checks. Aliases evaluate target health.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi  # noqa: TID253 - hadeploy.infra is only imported by the AWS target
import pulumi_aws as aws  # noqa: TID253


@dataclass(frozen=True)
class DnsTarget:
    region: str
    alb_dns_name: pulumi.Input[str]
    alb_zone_id: pulumi.Input[str]


@dataclass(frozen=True)
class GlobalDnsArgs:
    zone_name: str
    record: str
    targets: Sequence[DnsTarget]  # in failover order: the primary first
    health_path: str
    request_interval: int  # 10 or 30 (Route 53)
    failure_threshold: int  # 1..10
    checker_regions: Sequence[str]
    mode: str = "active-passive"  # | "active-weighted"
    zone_id: str | None = None  # an existing hosted zone; None creates one


def failover_name(record: str, zone: str, level: int) -> str:
    return f"{record}.{zone}" if level == 0 else f"{record}-failover-{level}.{zone}"


class GlobalDns(pulumi.ComponentResource):
    zone_id: pulumi.Output[str]
    health_checks: dict[str, aws.route53.HealthCheck]
    records: list[aws.route53.Record]

    def __init__(self, name: str, args: GlobalDnsArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hadeploy:dns:GlobalDns", name, None, opts)
        if not args.targets:
            raise ValueError(f"{name}: no region to point {args.record}.{args.zone_name} at")
        self._name = name
        self._args = args
        self.zone, self.zone_id = self._create_zone()
        self.health_checks = {t.region: self._create_health_check(t) for t in args.targets}
        if len(args.targets) == 1:
            self.records = [self._create_single_record(args.targets[0])]
        elif args.mode == "active-weighted":
            self.records = self._create_weighted_records()
        else:
            self.records = self._create_failover_records()
        self.register_outputs({
            "zone_id": self.zone_id,
            "fqdn": f"{args.record}.{args.zone_name}",
            "health_check_ids": {r: hc.id for r, hc in self.health_checks.items()},
        })

    def _opts(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self)

    def _create_zone(self) -> tuple[aws.route53.Zone | None, pulumi.Output[str]]:
        if self._args.zone_id:
            return None, pulumi.Output.from_input(self._args.zone_id)
        zone = aws.route53.Zone(f"{self._name}-zone", name=self._args.zone_name,
                                comment="hadeploy deployment zone", opts=self._opts())
        return zone, zone.zone_id

    def _create_health_check(self, target: DnsTarget) -> aws.route53.HealthCheck:
        a = self._args
        return aws.route53.HealthCheck(
            f"{self._name}-hc-{target.region}", type="HTTPS", fqdn=target.alb_dns_name,
            port=443, resource_path=a.health_path, request_interval=a.request_interval,
            failure_threshold=a.failure_threshold, regions=list(a.checker_regions),
            enable_sni=True, measure_latency=False,
            tags={"Name": f"{self._name}-{target.region}", "hadeploy:region": target.region},
            # A failover fences a region by inverting its check; `up` must not undo that.
            opts=pulumi.ResourceOptions(parent=self,
                                        ignore_changes=["invert_healthcheck", "disabled"]))

    def _alias(self, target: DnsTarget) -> aws.route53.RecordAliasArgs:
        return aws.route53.RecordAliasArgs(name=target.alb_dns_name, zone_id=target.alb_zone_id,
                                           evaluate_target_health=True)

    def _create_single_record(self, target: DnsTarget) -> aws.route53.Record:
        a = self._args
        return aws.route53.Record(
            f"{self._name}-record", zone_id=self.zone_id, name=f"{a.record}.{a.zone_name}",
            type="A", aliases=[self._alias(target)], opts=self._opts())

    def _create_weighted_records(self) -> list[aws.route53.Record]:
        a = self._args
        return [aws.route53.Record(
            f"{self._name}-weighted-{t.region}", zone_id=self.zone_id,
            name=f"{a.record}.{a.zone_name}", type="A", set_identifier=t.region,
            weighted_routing_policies=[aws.route53.RecordWeightedRoutingPolicyArgs(weight=100)],
            health_check_id=self.health_checks[t.region].id, aliases=[self._alias(t)],
            opts=self._opts()) for t in a.targets]

    def _create_failover_records(self) -> list[aws.route53.Record]:
        """Built from the last level up: a level's SECONDARY aliases the next level's name
        by a plain string, and Route 53 rejects an alias to a name that has no record yet,
        so that SECONDARY depends on both records of the next level."""
        a = self._args
        targets = list(a.targets)
        levels: list[list[aws.route53.Record]] = []
        for level in reversed(range(len(targets) - 1)):
            name = failover_name(a.record, a.zone_name, level)
            primary = targets[level]
            records = [self._failover_record(level, name, "PRIMARY", primary.region,
                                             self._alias(primary),
                                             self.health_checks[primary.region].id)]
            if not levels:  # the last level: its SECONDARY is the last region
                secondary = targets[level + 1]
                records.append(self._failover_record(
                    level, name, "SECONDARY", secondary.region, self._alias(secondary),
                    self.health_checks[secondary.region].id))
            else:
                alias = aws.route53.RecordAliasArgs(
                    name=failover_name(a.record, a.zone_name, level + 1), zone_id=self.zone_id,
                    evaluate_target_health=True)
                records.append(self._failover_record(level, name, "SECONDARY",
                                                     f"next-{level + 1}", alias, None,
                                                     depends_on=levels[0]))
            levels.insert(0, records)
        return [record for records in levels for record in records]

    def _failover_record(self, level: int, name: str, kind: str, ident: str,
                         alias: aws.route53.RecordAliasArgs,
                         check: pulumi.Output[str] | None,
                         depends_on: Sequence[aws.route53.Record] = ()) -> aws.route53.Record:
        return aws.route53.Record(
            f"{self._name}-l{level}-{kind.lower()}", zone_id=self.zone_id, name=name, type="A",
            set_identifier=ident,
            failover_routing_policies=[aws.route53.RecordFailoverRoutingPolicyArgs(type=kind)],
            health_check_id=check, aliases=[alias],
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)))
