#!/bin/sh
# Append every "address name" line of $1 to /etc/hosts that is not there yet. In place (the
# file may be a bind mount that cannot be renamed over), each line once: run at every boot
# by hadeploy-peer-hosts.service, since a container runtime may write a new /etc/hosts each
# time the container starts.
set -eu
grep -v '^#' "$1" | while read -r line; do
  [ -n "$line" ] || continue
  grep -qxF -- "$line" /etc/hosts || printf '%s\n' "$line" >> /etc/hosts
done
