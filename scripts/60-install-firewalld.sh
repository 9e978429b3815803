#!/usr/bin/env bash
# firewalld service definitions for the Consul and Nomad ports. They are not added to any zone here:
# cloud-init adds them to a zone whose source is the cluster's CIDR.
set -euo pipefail

R="${NOMADIC_ROOT:-}"
files="${NOMADIC_FILES:?NOMADIC_FILES must point at the uploaded nomadic-files}"
log() { echo "60-install-firewalld: $*" >&2; }

dir="$R/etc/firewalld/services"
mkdir -p "$dir"
for name in consul nomad; do
  if ! cmp -s "$files/firewalld/$name.xml" "$dir/$name.xml"; then
    log "installing firewalld service $name"
    install -m 0644 "$files/firewalld/$name.xml" "$dir/$name.xml"
  fi
  chown root:root "$dir/$name.xml"
done

if ! systemctl is-enabled --quiet firewalld.service; then
  systemctl enable firewalld.service
fi
