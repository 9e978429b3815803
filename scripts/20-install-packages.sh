#!/usr/bin/env bash
# Base packages the image and the agents rely on (no "Development Tools" group: a 1 GB node has no use for it),
# plus the image definition's extra packages; applies pending updates first.
set -euo pipefail

log() { echo "20-install-packages: $*" >&2; }

base=(
  dnf-plugins-core            # dnf config-manager, for the Docker and HashiCorp repositories
  python3-dnf-plugin-versionlock  # keeps docker-ce, nomad and consul at their pins through a node's dnf upgrade
  dracut-config-generic       # a generic initramfs: virtio drivers for OCI's paravirtualized mode, whatever the build host
  containernetworking-plugins # CNI plugins (/usr/libexec/cni): Nomad's bridge networking and Consul service mesh
  firewalld                   # cluster ports opened per cluster CIDR at boot
  container-selinux           # SELinux policy for containers: SELinux stays enforcing
  policycoreutils-python-utils
  chrony curl jq tar unzip
)
read -r -a extra <<<"${EXTRA_PACKAGES:-}"

if [[ "${DNF_UPGRADE:-1}" == 1 ]]; then
  rc=0
  dnf -q check-update >/dev/null || rc=$?
  case $rc in
    0) log "no pending updates" ;;
    100) log "applying pending updates"; dnf -y upgrade ;;
    *) log "dnf check-update failed (exit $rc)"; exit 1 ;;
  esac
fi

missing=()
for p in "${base[@]}" "${extra[@]}"; do
  rpm -q "$p" >/dev/null 2>&1 || missing+=("$p")
done
if (( ${#missing[@]} )); then
  log "installing ${missing[*]}"
  dnf -y install "${missing[@]}"
else
  log "all base packages present"
fi
