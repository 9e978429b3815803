#!/usr/bin/env bash
# Docker CE at the pinned version from Docker's own repository (GPG-checked), enabled at boot.
set -euo pipefail

R="${NOMADIC_ROOT:-}"
version="${DOCKER_CE_VERSION:?DOCKER_CE_VERSION must be set}"
url="${DOCKER_REPO_URL:-https://download.docker.com/linux/rhel/docker-ce.repo}"
repo="$R/etc/yum.repos.d/${url##*/}"
log() { echo "30-install-docker: $*" >&2; }

if [[ ! -f $repo ]]; then
  log "adding $url"
  dnf config-manager --add-repo "$url"
fi
if grep -Eq '^[[:space:]]*gpgcheck[[:space:]]*=[[:space:]]*0' "$repo"; then
  log "${repo#"$R"} disables gpgcheck; refusing to install unsigned packages"
  exit 1
fi

have=$(rpm -q --qf '%{VERSION}' docker-ce 2>/dev/null || true)
if [[ $have != "$version" ]]; then
  log "installing docker-ce $version (have: ${have:-none})"
  dnf -q versionlock delete docker-ce docker-ce-cli >/dev/null 2>&1 || true  # an earlier pin would block the new one
  # --allowerasing: the GenericCloud image may carry podman's runc/buildah, which conflict with containerd.io.
  dnf -y install --allowerasing "docker-ce-$version" "docker-ce-cli-$version" containerd.io
else
  log "docker-ce $version already installed"
fi

if ! systemctl is-enabled --quiet docker.service; then
  systemctl enable docker.service
fi
