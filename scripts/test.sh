#!/usr/bin/env bash
# The README's second command (and CI's): set everything up, then run the linters and the
# whole test suite — unit tests and integration tests on the real podman lab.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "[test] ruff" >&2; ruff check cli tests benchmarks stacks
echo "[test] mypy" >&2; mypy
echo "[test] ansible-lint" >&2; ansible-lint -q roles playbooks
echo "[test] pytest" >&2
exec pytest "$@"
