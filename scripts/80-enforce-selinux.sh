#!/usr/bin/env bash
# SELinux stays enforcing: never disabled or set permissive to make something work.
set -euo pipefail

R="${NOMADIC_ROOT:-}"
cfg="$R/etc/selinux/config"
log() { echo "80-enforce-selinux: $*" >&2; }

mode=$(getenforce)
if [[ $mode == Disabled ]]; then
  log "SELinux is disabled in the running kernel; the base image must boot with SELinux"
  exit 1
fi
if [[ $mode != Enforcing ]]; then
  log "SELinux is $mode; switching to enforcing"
  setenforce 1
fi
if ! grep -Eq '^SELINUX=enforcing[[:space:]]*$' "$cfg"; then
  log "setting SELINUX=enforcing in ${cfg#"$R"}"
  tmp=$(mktemp "$cfg.XXXXXX")
  grep -Ev '^SELINUX=' "$cfg" >"$tmp" || true
  echo 'SELINUX=enforcing' >>"$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$cfg"
fi
