"""The global program: Route 53 over every region's ALB, read through stack references.

It is the only stack that looks at the regional stacks, and only at their outputs
(``alb_dns_name``, ``alb_zone_id``). Route 53 is a global service; the provider is pinned
to us-east-1 where its API lives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi  # noqa: TID253 - hadeploy.infra is only imported by the AWS target
import pulumi_aws as aws  # noqa: TID253

from hadeploy.config import AwsSettings, Deployment
from hadeploy.infra.dns import DnsTarget, GlobalDns, GlobalDnsArgs
from hadeploy.infra.settings import (
    TAG_DEPLOYMENT,
    GlobalPlan,
    plan_global,
    settings_of,
)

ROUTE53_API_REGION = "us-east-1"


def global_program(deployment: Deployment, regional_stacks: Mapping[str, str] | None = None,
                   settings: AwsSettings | None = None) -> None:
    """The Pulumi program of stack ``<deployment>-global``.

    ``regional_stacks`` maps region name → fully qualified regional stack name
    (``<org>/hadeploy-regional/<deployment>-<region>``); default: every region.
    """
    settings = settings or settings_of(deployment)
    plan = plan_global(deployment, settings,
                       list(regional_stacks) if regional_stacks is not None else None)
    refs = dict(regional_stacks or {t.region: t.stack_ref for t in plan.targets})
    for key, value in build_global(plan, refs, settings.account_id).items():
        pulumi.export(key, value)


def build_global(plan: GlobalPlan, refs: Mapping[str, str], account_id: str) -> dict[str, Any]:
    provider = aws.Provider(
        "aws-global", region=ROUTE53_API_REGION, allowed_account_ids=[account_id],
        default_tags=aws.ProviderDefaultTagsArgs(tags={TAG_DEPLOYMENT: plan.deployment,
                                                       "hadeploy:managed-by": "pulumi"}))
    targets = []
    for target in plan.targets:
        ref = pulumi.StackReference(f"region-{target.region}", stack_name=refs[target.region])
        targets.append(DnsTarget(target.region, ref.require_output("alb_dns_name"),
                                 ref.require_output("alb_zone_id")))
    dns = GlobalDns("dns", GlobalDnsArgs(
        zone_name=plan.zone, record=plan.record, targets=targets, health_path=plan.health_path,
        request_interval=plan.request_interval, failure_threshold=plan.failure_threshold,
        checker_regions=plan.checker_regions, mode=plan.mode, zone_id=plan.zone_id),
        opts=pulumi.ResourceOptions(providers=[provider]))
    return {
        "zone_id": dns.zone_id,
        "name_servers": dns.zone.name_servers if dns.zone is not None else [],
        "fqdn": f"{plan.record}.{plan.zone}",
        "mode": plan.mode,
        "order": [t.region for t in plan.targets],
        "health_check_ids": {r: hc.id for r, hc in dns.health_checks.items()},
    }
