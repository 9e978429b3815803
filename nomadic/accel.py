"""Which QEMU accelerator to use: KVM only where it really runs a guest, TCG emulation otherwise."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from . import proc, qemuargs
from .config import Accel, LocalSettings
from .errors import NomadicError, ProviderError

KVM_DEVICE = "/dev/kvm"
KVM_GET_API_VERSION = 0xAE00
KVM_API_VERSION = 12
PROBE_S = 15.0  # SeaBIOS reaches its boot step in well under a second where KVM works


def kvm_opens(device: str = KVM_DEVICE) -> bool:
    """/dev/kvm opens read-write and answers the KVM API version ioctl (cheap; not proof that guests run)."""
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, KVM_GET_API_VERSION) == KVM_API_VERSION
    except OSError:
        return False
    finally:
        os.close(fd)


def kvm_runs(qemu: str, workdir: Path) -> bool:
    """Boot only firmware under KVM and watch it: nested setups open /dev/kvm but hang every guest."""
    workdir.mkdir(parents=True, exist_ok=True)
    log, pid_file = workdir / "kvm-probe.log", workdir / "kvm-probe.pid"
    log.unlink(missing_ok=True)
    try:
        pid = proc.spawn(qemuargs.kvm_probe_argv(qemu, log, pid_file), pid_file, step="KVM probe")
    except NomadicError:
        return False
    try:
        deadline = time.monotonic() + PROBE_S
        while time.monotonic() < deadline:
            text = log.read_bytes() if log.exists() else b""
            if b"Booting from" in text or b"No bootable device" in text:
                return True
            time.sleep(0.2)
        return False
    finally:
        proc.terminate(pid, "qemu-system", str(pid_file), timeout=5)
        log.unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)


def choose(local: LocalSettings, workdir: Path, probe: bool = True) -> Accel:
    """local.accel resolved to KVM or TCG; `probe=False` trusts the ioctl alone (for rendering, not for booting)."""
    if local.accel is Accel.KVM:
        if not kvm_opens():
            raise ProviderError(
                f"local.accel = kvm but {KVM_DEVICE} cannot be opened", hint="use local.accel: tcg (slow) or auto"
            )
        return Accel.KVM
    if local.accel is Accel.TCG or not kvm_opens():
        return Accel.TCG
    return Accel.KVM if not probe or kvm_runs(local.qemu, workdir) else Accel.TCG
