#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for hadeploy: system packages, a virtualenv with
# hadeploy and its dev tools, and the lab image. Idempotent: re-running skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(podman runc debootstrap iptables curl hyperfine time)
VENV=${HADEPLOY_VENV:-.venv}
PYTHON=${PYTHON:-python3}

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh installs system packages and builds the lab image: run it as root" >&2
  exit 6
fi

missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "system packages present"
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.hadeploy-deps"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing hadeploy and its Python dependencies into $VENV (about a minute, once)"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q -e '.[dev]'
  echo "$want" > "$stamp"
else
  log "python dependencies present"
fi

log "lab image (built once with debootstrap, cached by recipe hash)"
"$VENV/bin/python" -c 'from hadeploy.targets.lab.image import ensure_image; print(ensure_image(print))' >&2
log "ready: $VENV/bin/hadeploy"
