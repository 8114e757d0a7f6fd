#!/usr/bin/env bash
# Lab timings on deployment "hdbench" (subnets 10.93.x, removed at the end):
#   cold up (image cached), unchanged re-run of up, plan, status, doctor — wall time and
#   peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
HD="$PWD/.venv/bin/hadeploy"
work=$(mktemp -d)
trap 'cd "$work" && "$HD" down --yes --delete-backups >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
cat > "$work/hadeploy.yaml" <<'YAML'
name: hdbench
regions:
  - {name: east, role: primary, hosts: 2, lab_subnet: 10.93.1.0/24}
  - {name: west, role: secondary, hosts: 2, lab_subnet: 10.93.2.0/24}
lab: {control_subnet: 10.93.0.0/24}
YAML
cd "$work"
export HADEPLOY_STATE_DIR="$work/state"
mkdir -p "$OLDPWD/benchmarks/results"
out="$OLDPWD/benchmarks/results"
"$HD" down --yes --delete-backups >/dev/null 2>&1 || true
echo "--- cold up (image cached): /usr/bin/time -v"
/usr/bin/time -v "$HD" up -q 2> "$work/cold.time"
grep -E "Elapsed|Maximum resident" "$work/cold.time" | tee "$out/cold-up.txt"
echo "--- unchanged re-run of up, plan (no changes), status, doctor"
hyperfine -N --warmup 1 --runs "${RUNS:-5}" --export-markdown "$out/lab.md" \
  "$HD up -q" "$HD plan" "$HD status" "$HD doctor --target lab"
/usr/bin/time -v "$HD" up -q 2>&1 >/dev/null | grep -E "Maximum resident" | sed 's/^/unchanged up: /' | tee -a "$out/cold-up.txt"
/usr/bin/time -v "$HD" plan 2>&1 >/dev/null | grep -E "Maximum resident" | sed 's/^/plan: /' | tee -a "$out/cold-up.txt"
/usr/bin/time -v "$HD" status 2>&1 >/dev/null | grep -E "Maximum resident" | sed 's/^/status: /' | tee -a "$out/cold-up.txt"
