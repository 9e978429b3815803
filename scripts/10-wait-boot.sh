#!/usr/bin/env bash
# Wait until first boot has settled: cloud-init finished and nobody holds the dnf/rpm lock
# (cloud-init's own package work may still hold it; a concurrent install would fail). AlmaLinux's OCI and
# GenericCloud images ship no Oracle Cloud Agent, but a Marketplace or Oracle Linux base may run one.
set -euo pipefail

R="${NOMADIC_ROOT:-}"
timeout_s="${WAIT_TIMEOUT_S:-1200}"
log() { echo "10-wait-boot: $*" >&2; }

if command -v cloud-init >/dev/null 2>&1; then
  log "waiting for cloud-init to finish"
  rc=0
  cloud-init status --wait >/dev/null || rc=$?
  # 2: finished with recoverable errors (e.g. deprecated keys in the vendor's own config); the bake can go on.
  if (( rc != 0 && rc != 2 )); then
    log "cloud-init failed (exit $rc)"
    cloud-init status --long >&2 || true
    exit 1
  fi
fi

lock_holder() {
  local f pid
  for f in "$R/var/lib/dnf/rpmdb_lock.pid" "$R/var/cache/dnf/metadata_lock.pid" \
           "$R/var/cache/dnf/download_lock.pid" "$R/var/run/dnf.pid"; do
    [[ -s $f ]] || continue
    pid=$(tr -dc '0-9' <"$f")
    if [[ -n $pid && -d /proc/$pid ]]; then
      echo "$pid (${f#"$R"})"
      return 0
    fi
  done
  pgrep -x 'dnf|yum|rpm|dnf-automatic|packagekitd' | head -n 1
}

deadline=$(( SECONDS + timeout_s ))
while holder=$(lock_holder) && [[ -n $holder ]]; do
  if (( SECONDS >= deadline )); then
    log "the package lock is still held by pid $holder after ${timeout_s}s"
    exit 1
  fi
  log "package lock held by pid $holder; waiting"
  sleep 5
done
log "no package manager running"
