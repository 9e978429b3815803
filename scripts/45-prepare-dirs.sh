#!/usr/bin/env bash
# Config dirs with their owners and modes, without the RPMs' default configs (so nothing starts before
# cloud-init writes the real ones), and the tmpfiles.d entry that recreates the data dirs empty at boot.
set -euo pipefail

R="${NOMADIC_ROOT:-}"
files="${NOMADIC_FILES:?NOMADIC_FILES must point at the uploaded nomadic-files}"
log() { echo "45-prepare-dirs: $*" >&2; }

if ! getent passwd consul >/dev/null; then
  log "creating system user consul"
  useradd --system --user-group --home-dir /opt/consul --no-create-home --shell /sbin/nologin consul
fi

# config-dirs.txt: <path> <owner> <group> <mode>, rendered from nomadic/imagefacts.py
while read -r path owner group mode; do
  [[ -z $path || $path == '#'* ]] && continue
  mkdir -p "$R$path"
  chown "$owner:$group" "$R$path"
  chmod "$mode" "$R$path"
done <"$files/config-dirs.txt"

# package-defaults.txt: config files the RPMs ship that cloud-init writes per node instead
while read -r f; do
  [[ -z $f || $f == '#'* ]] && continue
  if [[ -e $R$f ]]; then
    log "removing the package default $f"
    rm -f "$R$f"
  fi
done <"$files/package-defaults.txt"

mkdir -p "$R/etc/tmpfiles.d"
if ! cmp -s "$files/tmpfiles.d/nomadic.conf" "$R/etc/tmpfiles.d/nomadic.conf"; then
  install -m 0644 "$files/tmpfiles.d/nomadic.conf" "$R/etc/tmpfiles.d/nomadic.conf"
fi
chown root:root "$R/etc/tmpfiles.d/nomadic.conf"
