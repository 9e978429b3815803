#!/usr/bin/env bash
# Kernel settings for containers and Nomad: br_netfilter at boot, bridge traffic through iptables, ephemeral
# ports clear of Nomad's dynamic range (20000-32000), low swappiness.
set -euo pipefail

R="${NOMADIC_ROOT:-}"
files="${NOMADIC_FILES:?NOMADIC_FILES must point at the uploaded nomadic-files}"
log() { echo "75-configure-kernel: $*" >&2; }

install_file() {  # src dst
  mkdir -p "$(dirname "$2")"
  if ! cmp -s "$1" "$2"; then
    log "installing ${2#"$R"}"
    install -m 0644 "$1" "$2"
  fi
  chown root:root "$2"
}
install_file "$files/modules-load.d/nomadic.conf" "$R/etc/modules-load.d/nomadic.conf"
install_file "$files/sysctl.d/90-nomadic.conf" "$R/etc/sysctl.d/90-nomadic.conf"

# Apply now too: proves every key exists on this kernel (an unknown key would only warn at boot). Not offline
# (the VM tests' Debian image is provisioned in a chroot): the kernel running there is the build host's.
if [[ ${NOMADIC_OFFLINE:-0} == 1 ]]; then
  log "offline: the settings apply at the image's first boot"
  exit 0
fi
while read -r module; do
  [[ -z $module || $module == '#'* ]] && continue
  modprobe "$module"
done <"$R/etc/modules-load.d/nomadic.conf"
sysctl -q -p "$R/etc/sysctl.d/90-nomadic.conf"
