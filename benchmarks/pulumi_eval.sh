#!/usr/bin/env bash
# Pulumi program evaluation under mocks (no AWS, no Pulumi CLI) for 1, 3 and 10 regions.
#
# A deployment of N regions is N regional stacks plus one global stack; each is built in
# its own process by tests/infra_mock_program.py, as in the unit tests. Measured:
#   1. hyperfine: wall time to evaluate every stack of the deployment, one after another
#      (what `hadeploy preview` costs in program evaluation with --parallel 1);
#   2. the builder's own timing per stack: module import vs program evaluation, resources;
#   3. /usr/bin/time -v: peak memory of one regional and of the largest global build.
# Usage: bash benchmarks/pulumi_eval.sh   (env: PYTHON, RUNS, OUT)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
RUNS=${RUNS:-3}
OUT=${OUT:-/tmp/hadeploy-pulumi-eval}
SIZES=(1 3 10)
rm -rf "$OUT" && mkdir -p "$OUT"

"$PY" - "$OUT" "${SIZES[@]}" <<'EOF'
import json, sys
from pathlib import Path
sys.path.insert(0, ".")
from tests.infra_mock_program import deployment, steady_scenarios

out = Path(sys.argv[1])
for n in map(int, sys.argv[2:]):
    folder = out / f"n{n}"
    folder.mkdir()
    for name, scenario in steady_scenarios(deployment(n, "warm")).items():
        (folder / f"{name}.json").write_text(json.dumps(scenario))
EOF

for n in "${SIZES[@]}"; do
  hyperfine --runs "$RUNS" --warmup 1 --export-json "$OUT/hyperfine-$n.json" \
    -n "$n region(s): $((n + 1)) stacks" \
    "for f in $OUT/n$n/*.json; do $PY tests/infra_mock_program.py \$f > /dev/null; done"
done

echo
echo "per stack (one run each): import s | evaluate s | resources"
for n in "${SIZES[@]}"; do
  for f in "$OUT/n$n"/*.json; do
    "$PY" tests/infra_mock_program.py "$f" > "${f%.json}.graph"
  done
  "$PY" - "$OUT/n$n" "$n" <<'EOF'
import json, sys
from pathlib import Path
graphs = {p.stem: json.loads(p.read_text()) for p in sorted(Path(sys.argv[1]).glob("*.graph"))}
regional = [g for k, g in graphs.items() if k != "global"]
glob = graphs["global"]
evaluate = sum(g["timing"]["build_s"] for g in graphs.values())
print(f"{sys.argv[2]:>2} regions: regional stack avg "
      f"{sum(g['timing']['import_s'] for g in regional) / len(regional):.2f} | "
      f"{sum(g['timing']['build_s'] for g in regional) / len(regional):.2f} | "
      f"{sum(len(g['resources']) for g in regional) / len(regional):.0f};  global "
      f"{glob['timing']['import_s']:.2f} | {glob['timing']['build_s']:.2f} | "
      f"{len(glob['resources'])};  all stacks: evaluate {evaluate:.1f} s, "
      f"{sum(len(g['resources']) for g in graphs.values())} resources")
EOF
done

echo
for f in "$OUT/n10/us-east-1.json" "$OUT/n10/global.json"; do
  /usr/bin/time -v "$PY" tests/infra_mock_program.py "$f" 2> "$OUT/time.txt" > /dev/null
  echo "$(basename "$f" .json) (10-region deployment): max RSS" \
    "$(awk -F': ' '/Maximum resident/ {printf "%.0f MB", $2/1024}' "$OUT/time.txt"), wall" \
    "$(awk -F': ' '/Elapsed/ {print $2}' "$OUT/time.txt")"
done
