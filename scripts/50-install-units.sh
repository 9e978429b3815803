#!/usr/bin/env bash
# Our consul.service and nomad.service in /etc/systemd/system, installed but NOT enabled and never started here.
# On each node, cloud-init's runcmd loads the firewalld zone that opens their ports, then enables and starts them
# (consul first): enabled units would start at multi-user.target, before runcmd, behind a closed firewall.
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
  if systemctl is-enabled --quiet "$unit"; then
    log "disabling $unit: cloud-init enables it on each node once its firewall zone is loaded"
    systemctl disable "$unit"
  fi
  # By its answer, not its exit code: in a chroot (the VM tests' image) systemctl ignores is-active, exit 0.
  if [[ $(systemctl is-active "$unit" 2>/dev/null) == active ]]; then
    log "$unit is running during the bake; it must first start on a node with its config"
    exit 1
  fi
done
