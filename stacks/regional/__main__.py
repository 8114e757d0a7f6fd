"""Stack ``<deployment>-<region>`` of project ``hadeploy-regional`` for the plain pulumi CLI.

Config: ``hadeploy:region``; ``hadeploy:deployment`` (hadeploy.yaml as an object) or
``hadeploy:configFile``; ``hadeploy:appSecret`` (``pulumi config set --secret``). The
program itself is :func:`hadeploy.infra.regional.regional_program`, the one hadeploy runs.
"""

import sys
from pathlib import Path

import pulumi

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cli"))  # a checkout

from hadeploy.infra.regional import deployment_from_stack_config, regional_program

deployment, settings = deployment_from_stack_config()
regional_program(deployment, pulumi.Config("hadeploy").require("region"), settings)
