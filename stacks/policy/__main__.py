"""The ``hadeploy-ha`` policy pack: ``pulumi preview --policy-pack stacks/policy``.

``PolicyPack(...)`` serves the policies over gRPC and blocks, so it lives here only; the
policies themselves are in :mod:`hadeploy.infra.policy` (importable and unit-tested).
"""

import sys
from pathlib import Path

from pulumi_policy import PolicyPack

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cli"))  # a checkout

from hadeploy.infra.policy import PACK_NAME, POLICIES

PolicyPack(name=PACK_NAME, policies=POLICIES)
