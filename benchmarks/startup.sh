#!/usr/bin/env bash
# CLI start-up: `hadeploy --help` and `hadeploy status --help` beside the floor
# (`python -c pass`) and typer's own import, in one hyperfine run (ratios, not absolutes).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
HD=.venv/bin/hadeploy
mkdir -p benchmarks/results
hyperfine -N --warmup 3 --runs 20 \
  --export-markdown benchmarks/results/startup.md \
  "$PY -c pass" \
  "$PY -c 'import typer'" \
  "$HD --help" \
  "$HD status --help"
echo "--- modules imported by 'hadeploy --help' that are heavy (must be none):"
$PY -c "import sys; from hadeploy.cli import app
heavy=[m for m in ('ansible_runner','ansible','pulumi','pulumi_aws','boto3','pydantic','dns') if m in sys.modules]
print(heavy or 'none')"
