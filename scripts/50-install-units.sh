#!/usr/bin/env bash
# Our consul.service and nomad.service in /etc/systemd/system, enabled for boot and never started here:
# cloud-init starts them once each node's config is written.
set -euo pipefail

R="${NOMADIC_ROOT:-}"
files="${NOMADIC_FILES:?NOMADIC_FILES must point at the uploaded nomadic-files}"
log() { echo "50-install-units: $*" >&2; }

changed=0
for unit in consul.service nomad.service; do
  dst="$R/etc/systemd/system/$unit"
  if ! cmp -s "$files/systemd/$unit" "$dst"; then
    log "installing $unit"
    install -m 0644 "$files/systemd/$unit" "$dst"
    changed=1
  fi
  chown root:root "$dst"
done
if (( changed )); then
  systemctl daemon-reload
fi

for unit in consul.service nomad.service; do
  if ! systemctl is-enabled --quiet "$unit"; then
    systemctl enable "$unit"
  fi
  if systemctl is-active --quiet "$unit"; then
    log "$unit is running during the bake; it must first start on a node with its config"
    exit 1
  fi
done
