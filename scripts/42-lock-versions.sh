#!/usr/bin/env bash
# Lock the pinned packages at their versions: Docker's and HashiCorp's repositories stay enabled on the nodes,
# and a `dnf upgrade` there must not move Docker, Nomad or Consul off their pins, node by node.
# (30 and 40 drop an earlier lock before they install another version; `dnf versionlock delete` frees one by hand.)
set -euo pipefail

R="${NOMADIC_ROOT:-}"
docker="${DOCKER_CE_VERSION:?DOCKER_CE_VERSION must be set}"
declare -A want=(
  [docker-ce]="$docker"
  [docker-ce-cli]="$docker"
  [nomad]="${NOMAD_VERSION:?NOMAD_VERSION must be set}"
  [consul]="${CONSUL_VERSION:?CONSUL_VERSION must be set}"
)
lockfile="$R/etc/dnf/plugins/versionlock.list"
log() { echo "42-lock-versions: $*" >&2; }

for name in docker-ce docker-ce-cli nomad consul; do
  # The plugin writes name-epoch:version-release.*; the epoch varies (docker-ce has 3).
  if grep -Eq "^$name-([0-9]+:)?${want[$name]//./\\.}-" "$lockfile" 2>/dev/null; then
    log "$name already locked at ${want[$name]}"
  else
    log "locking $name at ${want[$name]}"
    dnf -q versionlock add "$name-${want[$name]}"
  fi
done
