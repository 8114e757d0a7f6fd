#!/usr/bin/env bash
# Set up a fresh Debian 12 machine for hadeploy: system packages, a virtualenv with
# hadeploy and its dev tools, and the lab image; then `hadeploy doctor` proves the machine
# can run the lab (exit 6 if it cannot). Idempotent: re-running skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every system package hadeploy runs, named explicitly and installed with
# --no-install-recommends: nothing may come from what happens to be on the machine.
# (Check: grep -rn 'subprocess\|shutil.which' cli tests benchmarks; grep scripts/ benchmarks/*.sh)
SYSTEM_PACKAGES=(
  podman                      # the lab target: every host is a rootful podman container
  catatonit                   # podman's container init for '--init' (DNS server, probers);
                              #   only a Recommends of podman: without it the first 'up' fails
                              #   with "container-init binary not found on the host"
  runc                        # the OCI runtime our containers.conf names (podman: crun | runc)
  conmon                      # podman's container monitor (a Depends of podman; named anyway)
  containernetworking-plugins # the network backend in use (CNI: bridge, host-local, portmap,
                              #   firewall, tuning); containers-common needs "cni | netavark"
  iptables                    # the lab's nat rules (iptables -t nat), CNI's firewall plugin
  debootstrap                 # builds the lab image from the Debian mirror (pulls in wget)
  debian-archive-keyring      # debootstrap checks the mirror's signature with it (a Recommends)
  gpgv                        # ... and with gpgv (Priority: required, named anyway)
  tar                         # the debootstrap root is tarred into 'podman import'
  openssh-client              # ssh: Ansible reaches lab hosts over SSH; ssh-keygen: their key
                              #   (and the SSH signatures 'reconcile --require-signed' checks)
  git                         # 'hadeploy reconcile' fetches the repository, verifies signatures
  systemd                     # systemd-analyze verifies the units drill schedule/reconcile print
  python3                     # Debian's Python 3.11 for the virtualenv (not a pyenv/other one)
  python3-venv                # its venv module: not in a minimal Debian
  ca-certificates             # HTTPS to PyPI (pip) and to the Debian mirror
  curl                        # the README's requests to the app; the Pulumi installer
  hyperfine                   # benchmarks/*.sh
  time                        # /usr/bin/time -v in benchmarks/*.sh
  bind9-dnsutils              # dig: the README's look at the lab's authoritative server
  jq                          # the docs' examples that filter --json output
)
# Recommends deliberately NOT installed (and not needed): podman's buildah, fuse-overlayfs,
# slirp4netns, uidmap and dbus-user-session (rootless podman only; the lab is rootful, on
# the kernel's overlayfs); containers-common's netavark (we use CNI; with both present,
# podman could switch backends); iptables' nftables (iptables-nft talks to the kernel
# through libnftnl itself); runc's criu (checkpointing); debootstrap's gnupg and arch-test
# (gpgv verifies; we build for the host's own architecture); openssh-client's xauth.
# We rely on no Recommends at all: the ones we need (catatonit, debian-archive-keyring) are
# listed above.

VENV=${HADEPLOY_VENV:-.venv}
PYTHON=${PYTHON:-/usr/bin/python3}  # Debian's; a python3 earlier on PATH may be anything

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
# pip with this machine's noise removed ("WARNING: Location '...' is ignored: it is neither
# a file nor a directory" for every configured index that does not exist here).
pip_quiet() {
  "$VENV/bin/pip" "$@" 2>&1 | { grep -v "^WARNING: Location '.*' is ignored" || true; } >&2
}

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
  # apt's output is shown only when it fails (else: debconf notes, progress lines).
  if ! out=$(apt-get update -qq 2>&1 && DEBIAN_FRONTEND=noninteractive \
             apt-get install -y -qq --no-install-recommends "${missing[@]}" 2>&1); then
    printf '%s\n' "$out" >&2
    log "apt-get failed: see above"
    exit 1
  fi
else
  log "system packages present (${#SYSTEM_PACKAGES[@]})"
fi

if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  log "virtualenv $VENV is broken (its interpreter is gone): recreating it"
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.hadeploy-deps"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing hadeploy and its Python dependencies into $VENV (about a minute, once)"
  pip_quiet install -q --upgrade pip
  pip_quiet install -q -e '.[dev]'
  echo "$want" > "$stamp"
else
  log "python dependencies present"
fi

# promtool (tests: 'promtool check rules' / 'test rules' on cli/hadeploy/monitoring/alerts.yml).
# Debian ships it only inside the 'prometheus' package, whose install would start a
# Prometheus server on this machine (a systemd service scraping :9090, a 'prometheus'
# user, a TSDB in /var/lib). So the package is downloaded, not installed, and only its
# promtool binary (a static Go program, libc only) is extracted into the virtualenv.
PROMTOOL_CACHE=${HADEPLOY_CACHE:-/var/cache/hadeploy}/promtool
if [ ! -x "$VENV/bin/promtool" ]; then
  log "promtool: extracting it from Debian's prometheus package into $VENV/bin (not installing it)"
  mkdir -p "$PROMTOOL_CACHE"
  deb=$(ls "$PROMTOOL_CACHE"/prometheus_*.deb 2>/dev/null | head -n 1 || true)
  if [ -z "$deb" ]; then
    # The sandbox user _apt cannot write into a root-owned cache: download as root. Without
    # package lists (a fresh machine whose packages were all present) or with stale ones
    # (the mirror moved to a newer build), update them once and try again.
    fetch() { (cd "$PROMTOOL_CACHE" && apt-get download -qq -o APT::Sandbox::User=root \
                 prometheus 2>&1); }
    if ! fetch >/dev/null && ! out=$(apt-get update -qq 2>&1 && fetch); then
      printf '%s\n' "$out" >&2
      log "apt-get download prometheus failed: see above"
      exit 1
    fi
    deb=$(ls "$PROMTOOL_CACHE"/prometheus_*.deb | head -n 1)
  fi
  tmp=$(mktemp -d)
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./usr/bin/promtool
  install -m 0755 "$tmp/usr/bin/promtool" "$VENV/bin/promtool"
  rm -rf "$tmp"
else
  log "promtool present ($("$VENV/bin/promtool" --version 2>&1 | head -n 1))"
fi

# The lab hosts' own packages (systemd, openssh-server, haproxy, keepalived, PostgreSQL 15,
# Patroni, etcd, python3-psycopg2, pgBackRest, restic, ...) are installed into the image by
# debootstrap from Debian's mirror: cli/hadeploy/targets/lab/image.py lists them (PACKAGES).
log "lab image (built once with debootstrap, cached by recipe hash)"
"$VENV/bin/python" -u -c 'from hadeploy.targets.lab.image import ensure_image; print(ensure_image(print))' >&2

log "hadeploy doctor (lab): checking this machine can run the lab"
if report=$("$VENV/bin/hadeploy" doctor --target lab 2>/dev/null); then
  grep -E '^! ' <<<"$report" >&2 || true  # warnings, if any
  log "$(tail -n 1 <<<"$report")"
else
  rc=$?
  printf '%s\n' "$report" >&2
  log "hadeploy doctor failed (exit $rc): fix the checks above and re-run scripts/setup.sh"
  exit "$rc"
fi
log "ready: $VENV/bin/hadeploy"
