#!/usr/bin/env bash
# Prove the README's first command on a fresh Debian 12, without a second machine:
#
#   1. debootstrap --variant=minbase a clean bookworm root (the mirror this machine uses);
#   2. copy a clean 'git archive HEAD' of the project into it;
#   3. in private mount, PID, IPC, UTS *and network* namespaces, make it the root
#      (pivot_root) and run scripts/setup.sh (which ends with 'hadeploy doctor'), then
#      'hadeploy doctor' again, then (unless UP=0) 'hadeploy up --regions east,west' on
#      subnets 10.97.x, 'up' again, 'status', a request to the east VIP and 'down --yes';
#   4. report the durations, which packages setup.sh had to install, and the outcomes.
#
# The private network namespace has only 'lo': nothing podman or hadeploy create (bridges,
# iptables rules, ip_forward) touches the host's networks or firewall. apt, debootstrap
# and pip reach the Debian mirror and PyPI through a small HTTP proxy: a relay listening
# on 127.0.0.1:3128 inside the namespace, connected over a unix socket to a proxy on the
# host side (every host it was asked for is logged). /dev/shm is private, so the fresh
# root's podman never shares podman's lock memory with the host's; it has its own storage,
# CNI state and /run. The host's apt sources, resolv.conf, pip configuration and local CA
# certificates are copied in, so that apt and pip behave as they do on this machine.
#
# Run as root; not part of the test suite (4-8 minutes here, mostly downloads).
#   bash scripts/fresh-machine-check.sh   env: UP=0 (skip 'up'), TESTS=1 (then run
#     scripts/test.sh, the README's second command, in the fresh root), KEEP=1 (keep the work dir),
#     REUSE=<kept work dir> (skip debootstrap; re-run setup.sh, doctor, up on it),
#     REPORT=<file> (default /tmp/hd-fresh-machine-check.txt), WORK_BASE=<dir> (/var/tmp)
set -euo pipefail

if [ "${1:-}" = "--inner" ]; then
  INNER=1
  WORK=$2
else
  INNER=0
fi

log() { printf '\033[1m[fresh]\033[0m %s\n' "$*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ------------------------------------------------------------------------------------------
# inner stage: runs as PID 1 of new mount/pid/ipc/uts/net namespaces (see outer stage)
# ------------------------------------------------------------------------------------------
if [ "$INNER" = 1 ]; then
  ROOT=$WORK/root
  PROJECT=/root/hadeploy
  ip link set lo up
  hostname fresh-debian12
  # The relay to the host-side proxy. It runs from the host's python, started before the
  # pivot below; it opens the socket by its path inside the new root (/mnt/hd-fresh).
  /usr/bin/python3 "$WORK/io/relay.py" forward 3128 /mnt/hd-fresh/proxy.sock &

  # The fresh root becomes this mount namespace's root (pivot_root, not chroot: podman's
  # runc joins a container's mount namespace at the namespace's root, so under a chroot
  # 'podman exec' would land on the host's file system; and '/' must be a mount point for
  # podman's layer import, or it fails with "remount /, flags: 0x44000: invalid argument").
  # Every mount here is private to this namespace and vanishes with it.
  mount --bind "$ROOT" "$ROOT"
  mount -t proc proc "$ROOT/proc"
  mount -t sysfs sysfs "$ROOT/sys"                        # this netns's view of /sys
  mount --rbind /sys/fs/cgroup "$ROOT/sys/fs/cgroup"      # podman (cgroupfs) needs it
  mount -t tmpfs -o mode=755,size=64m tmpfs "$ROOT/dev"
  for d in null zero full random urandom tty; do
    touch "$ROOT/dev/$d" && mount --bind "/dev/$d" "$ROOT/dev/$d"
  done
  mkdir -p "$ROOT/dev/pts" "$ROOT/dev/shm" "$ROOT/dev/net"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$ROOT/dev/pts"
  ln -sf pts/ptmx "$ROOT/dev/ptmx"
  mount -t tmpfs -o mode=1777 tmpfs "$ROOT/dev/shm"       # NOT the host's (podman locks)
  if [ -e /dev/net/tun ]; then touch "$ROOT/dev/net/tun"; mount --bind /dev/net/tun "$ROOT/dev/net/tun"; fi
  if [ -e /dev/fuse ]; then touch "$ROOT/dev/fuse"; mount --bind /dev/fuse "$ROOT/dev/fuse"; fi
  mount -t tmpfs -o mode=755 tmpfs "$ROOT/run"
  mount -t tmpfs -o mode=1777 tmpfs "$ROOT/tmp"
  mkdir -p "$ROOT/mnt/hd-fresh" "$ROOT/.oldroot"
  mount --bind "$WORK/io" "$ROOT/mnt/hd-fresh"           # results and the proxy socket
  cd "$ROOT"
  pivot_root . .oldroot
  cd /
  umount -l /.oldroot
  rmdir /.oldroot
  RES=/mnt/hd-fresh/results

  in_root() {  # a clean environment, like a root login on the fresh machine
    /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
  }
  # shellcheck disable=SC2054  # (the commas are no_proxy's)
  proxied=(http_proxy=http://127.0.0.1:3128 https_proxy=http://127.0.0.1:3128
           HTTP_PROXY=http://127.0.0.1:3128 HTTPS_PROXY=http://127.0.0.1:3128
           no_proxy=localhost,127.0.0.1)
  for v in PIP_DEFAULT_TIMEOUT PIP_DISABLE_PIP_VERSION_CHECK PIP_CERT; do
    [ -n "${!v:-}" ] && proxied+=("$v=${!v}")
  done
  # apt: the proxy, and one request per connection (the host-side proxy closes after each)
  printf 'Acquire::http::Proxy "http://127.0.0.1:3128";\nAcquire::http::Pipeline-Depth "0";\n' \
    > /etc/apt/apt.conf.d/99hd-fresh-proxy

  cleanup_inner() {
    # The fresh root's own podman objects (its own storage): whatever a failed step left.
    in_root env CONTAINERS_CONF="$PROJECT/cli/hadeploy/targets/lab/containers.conf" \
      podman rm -fa -t 0 >/dev/null 2>&1 || true
    rm -f /etc/apt/apt.conf.d/99hd-fresh-proxy
  }
  trap cleanup_inner EXIT

  if [ ! -f "$RES/packages-before.txt" ]; then  # (REUSE keeps the clean root's list)
    in_root dpkg-query -W -f='${Package}\n' | sort > "$RES/packages-before.txt"
  fi

  log "setup.sh in the fresh root (network: the mirror and PyPI, through the proxy)"
  t=$(now)
  set +e
  SECONDS=0  # each line of setup.sh's output gets the second it appeared at
  in_root "${proxied[@]}" bash -c "cd $PROJECT && bash scripts/setup.sh" 2>&1 \
    | while IFS= read -r line; do printf '%4ss %s\n' "$SECONDS" "$line"; done \
    > "$RES/setup.out"
  echo "${PIPESTATUS[0]}" > "$RES/setup.rc"
  set -e
  since "$t" > "$RES/setup.seconds"
  in_root dpkg-query -W -f='${Package}\n' | sort > "$RES/packages-after.txt"
  log "setup.sh exit $(cat "$RES/setup.rc") in $(cat "$RES/setup.seconds") s"

  # Every binary the project calls, present or not (the package-level proof).
  in_root bash -c '
    for b in podman runc conmon iptables debootstrap gpgv tar ssh ssh-keygen git systemd-analyze curl hyperfine \
             python3 wget; do
      printf "%s %s\n" "$b" "$(command -v "$b" || echo MISSING)"; done
    for f in /usr/libexec/podman/catatonit /usr/bin/time /usr/lib/cni/bridge \
             /usr/lib/cni/host-local /usr/lib/cni/portmap /usr/lib/cni/firewall \
             /usr/lib/cni/tuning /usr/share/keyrings/debian-archive-keyring.gpg; do
      [ -e "$f" ] && echo "$f ok" || echo "$f MISSING"; done
    python3 -c "import venv, ensurepip" && echo "python3 venv+ensurepip ok" \
      || echo "python3 venv MISSING"' > "$RES/binaries.txt" 2>&1 || true

  if [ -x "$PROJECT/.venv/bin/hadeploy" ]; then
    log "hadeploy doctor in the fresh root (no proxy; private network namespace)"
    t=$(now)
    set +e
    in_root bash -c "cd /root && $PROJECT/.venv/bin/hadeploy doctor" > "$RES/doctor.txt" 2>&1
    echo $? > "$RES/doctor.rc"
    in_root bash -c "cd /root && $PROJECT/.venv/bin/hadeploy doctor --json" \
      > "$RES/doctor.json" 2>/dev/null
    set -e
    since "$t" > "$RES/doctor.seconds"
    log "doctor exit $(cat "$RES/doctor.rc")"
  fi

  if [ "${UP:-1}" = 1 ] && [ "$(cat "$RES/doctor.rc" 2>/dev/null)" = 0 ]; then
    log "hadeploy up --regions east,west in the fresh root (subnets 10.97.x)"
    mkdir -p /root/fresh
    cat > /root/fresh/hadeploy.yaml <<'YAML'
name: fresh
regions:
  - {name: east, role: primary, hosts: 2, lab_subnet: 10.97.1.0/24}
  - {name: west, role: secondary, hosts: 2, lab_subnet: 10.97.2.0/24}
lab: {control_subnet: 10.97.0.0/24}
YAML
    hd="cd /root/fresh && $PROJECT/.venv/bin/hadeploy"
    set +e
    t=$(now)
    in_root timeout 1200 bash -c "$hd up --regions east,west" > "$RES/up.txt" 2>&1
    echo $? > "$RES/up.rc"; since "$t" > "$RES/up.seconds"
    log "up exit $(cat "$RES/up.rc") in $(cat "$RES/up.seconds") s"
    t=$(now)
    in_root timeout 300 bash -c "$hd up" > "$RES/up2.txt" 2>&1
    echo $? > "$RES/up2.rc"; since "$t" > "$RES/up2.seconds"
    in_root timeout 120 bash -c "$hd status" > "$RES/status.txt" 2>&1
    echo $? > "$RES/status.rc"
    in_root curl -sS --max-time 5 http://10.97.1.10/ > "$RES/curl.txt" 2>&1
    echo $? > "$RES/curl.rc"
    t=$(now)
    in_root timeout 300 bash -c "$hd down --yes" > "$RES/down.txt" 2>&1
    echo $? > "$RES/down.rc"; since "$t" > "$RES/down.seconds"
    set -e
    log "status exit $(cat "$RES/status.rc"), down exit $(cat "$RES/down.rc")"
  fi

  if [ "${TESTS:-0}" = 1 ] && [ "$(cat "$RES/doctor.rc" 2>/dev/null)" = 0 ]; then
    log "scripts/test.sh in the fresh root: the README's second command (lint + whole suite)"
    set +e
    t=$(now)
    in_root timeout 3600 bash -c "cd $PROJECT && ./scripts/test.sh" > "$RES/tests.txt" 2>&1
    echo $? > "$RES/tests.rc"; since "$t" > "$RES/tests.seconds"
    set -e
    log "test.sh exit $(cat "$RES/tests.rc") in $(cat "$RES/tests.seconds") s"
  fi
  exit 0
fi

# ------------------------------------------------------------------------------------------
# outer stage (the host)
# ------------------------------------------------------------------------------------------
cd "$(dirname "$0")/.."
REPO=$PWD
if [ "$(id -u)" -ne 0 ]; then
  echo "fresh-machine-check.sh needs root (debootstrap, namespaces, pivot_root)" >&2
  exit 6
fi
for tool in debootstrap unshare pivot_root git ip /usr/bin/python3; do
  command -v "$tool" >/dev/null || { echo "missing on this machine: $tool" >&2; exit 6; }
done

if [ -n "${REUSE:-}" ]; then  # a work dir kept by KEEP=1: skip debootstrap, re-run the rest
  WORK=$REUSE
else
  WORK=$(mktemp -d "${WORK_BASE:-/var/tmp}/hd-fresh.XXXXXX")
fi
ROOT=$WORK/root
RES=$WORK/io/results
REPORT=${REPORT:-/tmp/hd-fresh-machine-check.txt}
mkdir -p "$RES"
PROXY_PID=""

cleanup() {
  local rc=$?
  set +e
  [ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null && wait "$PROXY_PID" 2>/dev/null
  # Every mount was made in the private namespace, which is gone; check before deleting.
  if grep -q " $WORK" /proc/self/mountinfo; then
    log "unexpected mounts under $WORK on the host: unmounting"
    grep " $WORK" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l
  fi
  if [ "${KEEP:-0}" = 1 ]; then
    log "kept $WORK (KEEP=1)"
  else
    rm -rf --one-file-system "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

total=$(now)
MIRROR=$(PYTHONPATH="$REPO/cli" /usr/bin/python3 -c \
  'from hadeploy.targets.lab.image import default_mirror; print(default_mirror())')
if [ -n "${REUSE:-}" ]; then
  DEBOOTSTRAP_S="- (REUSE=$REUSE)"
  log "re-using $ROOT (its packages before setup.sh: $RES/packages-before.txt)"
else
log "clean Debian 12 root: debootstrap --variant=minbase bookworm (work dir $WORK)"
t=$(now)
debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR" > "$RES/debootstrap.log" 2>&1 \
  || { tail -20 "$RES/debootstrap.log" >&2; exit 1; }
DEBOOTSTRAP_S=$(since "$t")
log "debootstrap from $MIRROR: $DEBOOTSTRAP_S s"

# The host's apt sources (main, updates, security: what a fresh install has), resolver and
# pip configuration, so that apt and pip behave as they do on this machine.
rm -f "$ROOT/etc/apt/sources.list"
cp /etc/apt/sources.list.d/*.sources "$ROOT/etc/apt/sources.list.d/" 2>/dev/null \
  || cp /etc/apt/sources.list "$ROOT/etc/apt/sources.list"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$ROOT/etc/pip.conf"
[ -d /etc/xdg/pip ] && mkdir -p "$ROOT/etc/xdg" && cp -r /etc/xdg/pip "$ROOT/etc/xdg/pip"
# This machine's own CAs (e.g. of a TLS-inspecting egress proxy): the ca-certificates
# package that setup.sh installs adds them to the bundle, as on the host.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$ROOT/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
fi

mkdir -p "$ROOT/root/hadeploy"
git -C "$REPO" archive HEAD | tar -x -C "$ROOT/root/hadeploy"
fi
COMMIT=$(git -C "$REPO" rev-parse --short HEAD)

cat > "$WORK/io/relay.py" <<'PY'
"""proxy <unix-socket> <log>: an HTTP proxy (CONNECT, absolute-URI GET) on a unix socket.
forward <port> <unix-socket>: 127.0.0.1:<port> -> the unix socket."""
import os, select, socket, sys, threading

def pipe(a, b):
    try:
        while True:
            ready, _, _ = select.select([a, b], [], [], 600)
            if not ready:
                return
            for s in ready:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)
    except OSError:
        pass
    finally:
        a.close()
        b.close()

def proxy_one(c, log):
    head = b""
    while b"\r\n\r\n" not in head:
        data = c.recv(65536)
        if not data or len(head) > 65536:
            c.close()
            return
        head += data
    head, rest = head.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    try:
        method, target, version = lines[0].split(b" ", 2)
        if method == b"CONNECT":
            host, port = target.decode().rsplit(":", 1)
            up = socket.create_connection((host, int(port)), timeout=30)
            c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            first = rest
        else:
            url = target.decode()
            if not url.startswith("http://"):
                raise ValueError(url)
            hostport, _, path = url[7:].partition("/")
            host, _, port = hostport.partition(":")
            up = socket.create_connection((host, int(port or 80)), timeout=30)
            keep = [h for h in lines[1:] if not h.lower().startswith(
                (b"connection:", b"proxy-connection:", b"keep-alive:"))]
            first = (b" ".join([method, b"/" + path.encode(), version]) + b"\r\n"
                     + b"\r\n".join([*keep, b"Connection: close"]) + b"\r\n\r\n" + rest)
        with open(log, "a") as f:
            f.write(f"{method.decode()} {host}:{port or 80}\n")
    except (OSError, ValueError) as exc:
        c.sendall(b"HTTP/1.1 502 Bad Gateway\r\n\r\n" + str(exc).encode())
        c.close()
        return
    up.settimeout(None)
    if first:
        up.sendall(first)
    pipe(c, up)

def serve(srv, handle):
    while True:
        c, _ = srv.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()

if sys.argv[1] == "proxy":
    path, log = sys.argv[2], sys.argv[3]
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(64)
    serve(srv, lambda c: proxy_one(c, log))
else:
    port, path = int(sys.argv[2]), sys.argv[3]
    srv = socket.create_server(("127.0.0.1", port))
    def fwd(c):
        u = socket.socket(socket.AF_UNIX)
        try:
            u.connect(path)
        except OSError:
            c.close()
            return
        pipe(c, u)
    serve(srv, fwd)
PY
rm -f "$WORK/io/proxy.sock"
/usr/bin/python3 "$WORK/io/relay.py" proxy "$WORK/io/proxy.sock" "$RES/proxy.log" &
PROXY_PID=$!

log "entering private namespaces (mount, pid, ipc, uts, net) for setup.sh, doctor and up"
t=$(now)
unshare --mount --propagation private --pid --fork --kill-child --ipc --uts --net \
  env UP="${UP:-1}" TESTS="${TESTS:-0}" bash "$REPO/scripts/fresh-machine-check.sh" --inner "$WORK"
INNER_S=$(since "$t")
TOTAL_S=$(since "$total")

# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------
set +e
val() { cat "$RES/$1" 2>/dev/null || echo "-"; }
requested=$(grep -o 'installing system packages: .*' "$RES/setup.out" | head -1 \
  | sed 's/installing system packages: //')
new_pkgs=$(comm -13 "$RES/packages-before.txt" "$RES/packages-after.txt" | wc -l)
{
  echo "fresh-machine check of hadeploy $COMMIT on $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "clean root: debootstrap --variant=minbase bookworm $MIRROR: $DEBOOTSTRAP_S s," \
    "$(wc -l < "$RES/packages-before.txt") packages"
  echo "scripts/setup.sh: exit $(val setup.rc), $(val setup.seconds) s"
  echo "  asked apt for (missing from minbase): ${requested:-nothing}"
  echo "  packages installed in total (with dependencies): $new_pkgs" \
    "($(wc -l < "$RES/packages-after.txt") afterwards)"
  echo "  recommends not installed: $(for p in buildah fuse-overlayfs slirp4netns uidmap \
    netavark nftables criu gnupg xauth dbus-user-session; do grep -qx "$p" \
    "$RES/packages-after.txt" || printf '%s ' "$p"; done)"
  echo "  hosts the proxy was asked for: $(awk '{print $2}' "$RES/proxy.log" 2>/dev/null \
    | sort | uniq -c | awk '{printf "%s (%s) ", $2, $1}')"
  echo "binaries the project calls, in the fresh root after setup.sh:"
  sed 's/^/  /' "$RES/binaries.txt" 2>/dev/null
  echo "hadeploy doctor (fresh root, private netns): exit $(val doctor.rc), $(val doctor.seconds) s"
  sed 's/^/  /' "$RES/doctor.txt" 2>/dev/null
  if [ -f "$RES/up.rc" ]; then
    echo "hadeploy up --regions east,west: exit $(val up.rc), $(val up.seconds) s"
    tail -n 4 "$RES/up.txt" | sed 's/^/  /'
    echo "hadeploy up (again): exit $(val up2.rc), $(val up2.seconds) s: $(tail -n 1 "$RES/up2.txt")"
    echo "hadeploy status: exit $(val status.rc)"
    echo "curl http://10.97.1.10/: exit $(val curl.rc): $(val curl.txt)"
    sed 's/^/  /' "$RES/status.txt"
    echo "hadeploy down --yes: exit $(val down.rc), $(val down.seconds) s"
  else
    echo "hadeploy up: not run (UP=0 or doctor failed)"
  fi
  if [ -f "$RES/tests.rc" ]; then
    echo "scripts/test.sh (README's second command): exit $(val tests.rc), $(val tests.seconds) s"
    grep -E "^\[test\]|passed|failed|error" "$RES/tests.txt" | tail -n 8 | sed 's/^/  /'
  fi
  echo "namespaced stage: $INNER_S s; whole check: $TOTAL_S s"
  if [ "$(val setup.rc)" != 0 ]; then
    echo "--- setup.sh output (tail)"; tail -n 40 "$RES/setup.out"
  fi
} | tee "$REPORT"
rm -rf "${REPORT%.txt}-results" && cp -r "$RES" "${REPORT%.txt}-results"
log "report: $REPORT (raw results: ${REPORT%.txt}-results)"
[ "$(val setup.rc)" = 0 ] && [ "$(val doctor.rc)" = 0 ]
