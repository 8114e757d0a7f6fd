#!/usr/bin/env bash
# The README's first command: set everything up, build a two-region HA deployment on this
# machine (lab target) and show its status. Re-runnable: a second run changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/hadeploy up --regions "${HADEPLOY_REGIONS:-east,west}"
.venv/bin/hadeploy status
