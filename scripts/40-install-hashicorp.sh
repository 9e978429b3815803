#!/usr/bin/env bash
# Nomad and Consul at the pinned versions from HashiCorp's RPM repository, with GPG checks on.
# The RPMs provide /usr/bin/nomad, /usr/bin/consul and the consul user; their units are overridden by ours.
set -euo pipefail

R="${NOMADIC_ROOT:-}"
url="${HASHICORP_REPO_URL:-https://rpm.releases.hashicorp.com/RHEL/hashicorp.repo}"
repo="$R/etc/yum.repos.d/${url##*/}"
log() { echo "40-install-hashicorp: $*" >&2; }

declare -A want=(
  [nomad]="${NOMAD_VERSION:?NOMAD_VERSION must be set}"
  [consul]="${CONSUL_VERSION:?CONSUL_VERSION must be set}"
)

if [[ ! -f $repo ]]; then
  log "adding $url"
  dnf config-manager --add-repo "$url"
fi
if grep -Eq '^[[:space:]]*gpgcheck[[:space:]]*=[[:space:]]*0' "$repo"; then
  log "${repo#"$R"} disables gpgcheck; refusing to install unsigned packages"
  exit 1
fi

todo=()
for name in nomad consul; do
  have=$(rpm -q --qf '%{VERSION}' "$name" 2>/dev/null || true)
  if [[ $have == "${want[$name]}" ]]; then
    log "$name ${want[$name]} already installed"
  else
    todo+=("$name-${want[$name]}")
  fi
done
if (( ${#todo[@]} )); then
  log "installing ${todo[*]}"
  dnf -q versionlock delete nomad consul >/dev/null 2>&1 || true  # an earlier pin would block the new one
  dnf -y install "${todo[@]}"
fi
