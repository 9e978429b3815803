#!/usr/bin/env bash
# Last step of the bake: check every fact in expected.txt (rendered from nomadic/imagefacts.py) and fail the
# bake, listing each missing one, if anything the nodes rely on is not exactly there.
set -euo pipefail

R="${NOMADIC_ROOT:-}"
files="${NOMADIC_FILES:?NOMADIC_FILES must point at the uploaded nomadic-files}"
failed=0
bad() { echo "99-check-image: MISSING: $*" >&2; failed=1; }

fw_info() {  # print the ports of a firewalld service, whether or not firewalld is running
  if systemctl is-active --quiet firewalld.service; then
    firewall-cmd --permanent --info-service="$1"
  else
    firewall-offline-cmd --info-service="$1"
  fi | sed -n 's/^[[:space:]]*ports:[[:space:]]*//p'
}

check_path() {  # kind path owner group mode
  local kind=$1 path=$2 want="$3 $4 $5" have
  if [[ $kind == dir && ! -d $R$path ]] || [[ $kind == file && ! -f $R$path ]]; then
    bad "$kind $path"
    return
  fi
  have=$(stat -c '%U %G %a' "$R$path")
  have="${have% *} $(printf '%04o' "0${have##* }")"
  [[ $have == "$want" ]] || bad "$kind $path as $want (is $have)"
}

while read -r kind arg rest; do
  case $kind in
    '' | '#'*) ;;
    rpm)
      have=$(rpm -q --qf '%{VERSION}' "$arg" 2>/dev/null || true)
      [[ $have == "$rest" ]] || bad "rpm $arg $rest (have: ${have:-none})" ;;
    locked)
      grep -Eq "^$arg-([0-9]+:)?${rest//./\\.}-" "$R/etc/dnf/plugins/versionlock.list" 2>/dev/null \
        || bad "versionlock for $arg $rest" ;;
    exec) [[ -x $R$arg ]] || bad "executable $arg" ;;
    installed) rpm -q "$arg" >/dev/null 2>&1 || bad "package $arg" ;;
    cmdline)  # OCI's serial console and NIC naming: in GRUB's defaults (or BLS's /etc/kernel/cmdline)
      grep -Eqs "^GRUB_CMDLINE_LINUX=.*[\" ]$arg([\" ,]|\$)" "$R/etc/default/grub" \
        || grep -Eqs "(^| )$arg( |,|\$)" "$R/etc/kernel/cmdline" || bad "kernel argument $arg" ;;
    datasource)  # no datasource_list that leaves out the one OCI needs
      lists=$(cat "$R/etc/cloud/cloud.cfg" "$R"/etc/cloud/cloud.cfg.d/*.cfg 2>/dev/null | grep -E '^datasource_list' || true)
      [[ -z $lists || $lists == *"$arg"* ]] || bad "cloud-init datasource $arg allowed (found: $lists)" ;;
    user) getent passwd "$arg" >/dev/null || bad "user $arg" ;;
    file | dir) read -r owner group mode <<<"$rest"; check_path "$kind" "$arg" "$owner" "$group" "$mode" ;;
    enabled) systemctl is-enabled --quiet "$arg" || bad "$arg enabled" ;;
    disabled) ! systemctl is-enabled --quiet "$arg" || bad "$arg not enabled (cloud-init enables it)" ;;
    inactive) ! systemctl is-active --quiet "$arg" || bad "$arg not yet started (it is running)" ;;
    firewalld)
      have=$(fw_info "$arg" | tr ' ' '\n' | sed '/^$/d' | sort | tr '\n' ' ')
      want=$(tr ' ' '\n' <<<"$rest" | sed '/^$/d' | sort | tr '\n' ' ')
      [[ $have == "$want" ]] || bad "firewalld service $arg with ports $want(has: ${have:-none})" ;;
    sysctl)
      grep -Eq "^$arg = $rest\$" "$R/etc/sysctl.d/90-nomadic.conf" || bad "sysctl $arg = $rest" ;;
    swap)
      want_bytes=$(( rest * 1024 * 1024 ))
      if [[ ! -f $R$arg ]]; then
        bad "swap file $arg"
      else
        [[ $(stat -c %s "$R$arg") -eq $want_bytes ]] || bad "swap file $arg of $rest MiB"
        [[ $(dd if="$R$arg" bs=1 skip=4086 count=10 status=none) == SWAPSPACE2 ]] || bad "swap signature in $arg"
        check_path file "$arg" root root 0600
        grep -Eq "^${arg}[[:space:]]+none[[:space:]]+swap" "$R/etc/fstab" || bad "fstab entry for $arg"
      fi ;;
    selinux)
      [[ $(getenforce) == Enforcing ]] || bad "SELinux enforcing now"
      grep -Eq '^SELINUX=enforcing[[:space:]]*$' "$R/etc/selinux/config" || bad "SELINUX=enforcing in /etc/selinux/config" ;;
    empty) [[ -f $R$arg && ! -s $R$arg ]] || bad "empty $arg" ;;
    noglob) ! compgen -G "$R$arg" >/dev/null || bad "no $arg (found: $(compgen -G "$R$arg" | tr '\n' ' '))" ;;
    absent) [[ ! -e $R$arg && ! -L $R$arg ]] || bad "no $arg (it exists)" ;;
    *) bad "a known check kind (unknown: $kind)" ;;
  esac
done <"$files/expected.txt"

if (( failed )); then
  echo "99-check-image: the image is incomplete; failing the bake" >&2
  exit 1
fi
echo "99-check-image: all checks passed" >&2
