#!/usr/bin/env bash
# Leave nothing that makes clones share an identity: agent data, machine-id, SSH host keys, the build's login
# key, cloud-init's instance state and seed, dnf caches. Each clone makes its own at first boot.
set -euo pipefail

R="${NOMADIC_ROOT:-}"
files="${NOMADIC_FILES:?NOMADIC_FILES must point at the uploaded nomadic-files}"
log() { echo "90-clean-identity: $*" >&2; }

# Every path the image must not contain (expected.txt "absent" lines, from nomadic/imagefacts.py): agent data
# dirs (node IDs, raft state; tmpfiles.d recreates them empty at boot), default configs, cloud-init state.
while read -r kind path; do
  if [[ $kind == absent && $path == /?* ]]; then
    rm -rf -- "$R$path"
  fi
done <"$files/expected.txt"

# Empty, not absent: systemd then generates a fresh ID on first boot.
if [[ -s $R/etc/machine-id || ! -e $R/etc/machine-id ]]; then
  log "emptying /etc/machine-id"
  : >"$R/etc/machine-id"
fi
chmod 0444 "$R/etc/machine-id"
if [[ -e $R/var/lib/dbus/machine-id && ! -L $R/var/lib/dbus/machine-id ]]; then
  rm -f "$R/var/lib/dbus/machine-id"
fi
rm -f "$R/var/lib/systemd/random-seed"

# sshd-keygen / cloud-init create new host keys on first boot.
rm -f "$R"/etc/ssh/ssh_host_*

# The key Packer logged in with (the build user's) and root's: cloud-init installs each node's own.
build_user="${BUILD_USER:-${SUDO_USER:-}}"
if [[ -n $build_user && $build_user != root ]]; then
  home=$(getent passwd "$build_user" | cut -d: -f6 || true)
  if [[ -n $home ]]; then
    rm -f "$R$home/.ssh/authorized_keys" "$R$home/.bash_history"
  fi
fi
rm -f "$R/root/.ssh/authorized_keys" "$R/root/.bash_history"

# Instance state, logs and the build's NoCloud seed: the clone runs cloud-init as a new instance.
cloud-init clean --logs --seed

# Package caches (the VM tests' Debian image has apt, not dnf).
if command -v dnf >/dev/null; then
  dnf clean all >/dev/null
fi
rm -rf "$R/var/cache/dnf"
log "identity removed"
