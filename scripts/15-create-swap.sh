#!/usr/bin/env bash
# A swap file, made before any dnf run: the build VM defaults to the 1 GB Always Free shape, where dnf's
# metadata and transaction alone can exceed the RAM (and later the nodes run Docker and both agents on it).
set -euo pipefail

R="${NOMADIC_ROOT:-}"
mb="${SWAP_MB:-1024}"
file=/swapfile
log() { echo "15-create-swap: $*" >&2; }

if [[ ! $mb =~ ^[0-9]+$ ]]; then
  log "SWAP_MB=$mb is not a whole number of MiB"
  exit 1
fi
if (( mb == 0 )); then
  log "SWAP_MB=0: no swap file"
  exit 0
fi

want_bytes=$(( mb * 1024 * 1024 ))
if [[ -f $R$file && $(stat -c %s "$R$file") -eq $want_bytes ]]; then
  log "$file of $mb MiB already present"
else
  log "creating $file of $mb MiB"
  rm -f "$R$file"
  # dd, not fallocate: swap on XFS must not have holes or unwritten extents.
  (umask 077 && dd if=/dev/zero of="$R$file" bs=1M count="$mb" status=none)
  mkswap "$R$file" >/dev/null
fi
chmod 0600 "$R$file"
chown root:root "$R$file"
if command -v restorecon >/dev/null 2>&1; then
  restorecon "$R$file"   # swapfile_t, or swapon is denied under enforcing SELinux
fi

if ! grep -Eq "^${file}[[:space:]]" "$R/etc/fstab" 2>/dev/null; then
  echo "$file none swap defaults 0 0" >>"$R/etc/fstab"
fi
# Use it now, for the dnf runs of this bake; a scratch root (tests) has no swap to turn on.
if [[ -z $R ]] && ! swapon --show=NAME --noheadings | grep -qx "$file"; then
  swapon "$file"
fi
