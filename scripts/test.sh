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
if [ $# -gt 0 ]; then
  echo "[test] pytest $*" >&2
  exec pytest "$@"
fi
# The whole suite: the tests that need no lab (unit tests, moto) run alongside the lab's,
# which spend most of their time waiting on containers, Ansible and timers; their report
# comes after the lab's. The exit code is the first failure's.
unit_log=$(mktemp)
trap 'rm -f "$unit_log"' EXIT
echo "[test] pytest -m 'not lab' (in the background) and pytest -m lab" >&2
pytest -m "not lab" -p no:cacheprovider >"$unit_log" 2>&1 &
unit_pid=$!
lab_rc=0
pytest -m lab --durations=25 || lab_rc=$?
unit_rc=0
wait "$unit_pid" || unit_rc=$?
echo "[test] the tests without the lab:" >&2
cat "$unit_log"
echo "[test] lab tests: exit $lab_rc; tests without the lab: exit $unit_rc" >&2
[ "$lab_rc" -ne 0 ] && exit "$lab_rc"
exit "$unit_rc"
