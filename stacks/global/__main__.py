"""Stack ``<deployment>-global`` of project ``hadeploy-global`` for the plain pulumi CLI.

Config: ``hadeploy:deployment`` or ``hadeploy:configFile`` (as for the regional stacks);
optional ``hadeploy:regions`` (a JSON list) to build DNS over a subset of the regions. The
regional stacks are read through stack references ``<org>/hadeploy-regional/<stack>``
(``aws.pulumi_org``, "organization" on self-managed backends).
"""

import sys
from pathlib import Path

import pulumi

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cli"))  # a checkout

from hadeploy.infra.global_dns import global_program
from hadeploy.infra.regional import deployment_from_stack_config
from hadeploy.infra.settings import stack_ref

deployment, settings = deployment_from_stack_config()
regions = pulumi.Config("hadeploy").get_object("regions")
refs = None
if regions is not None:
    refs = {r: stack_ref(settings, deployment.name, r) for r in regions}
global_program(deployment, refs, settings)
