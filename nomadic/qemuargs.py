"""Pure argv builders for the local provider: qemu-img overlays, the qemu-system command line, the KVM probe."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from .config import Accel, LocalSettings
from .errors import ConfigError

# User-mode (slirp) networks a node's first NIC may use; the first one that does not overlap the cluster
# network wins, so the default route (user NIC) and the cluster subnet never collide inside the guest.
USER_NETS = ("10.0.2.0/24", "172.31.254.0/24", "192.168.254.0/24")
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class VmSpec:
    """Everything that differs between two local VMs of a cluster."""

    name: str
    overlay: Path
    seed: Path
    serial_log: Path
    pid_file: Path
    ssh_port: int
    cluster_port: int  # this VM's UDP endpoint on loopback
    hub_port: int  # the hub's UDP endpoint: frames sent there reach every other VM
    user_mac: str
    cluster_mac: str
    user_net: str


def overlay_argv(qemu_img: str, base: Path, overlay: Path) -> list[str]:
    """A copy-on-write qcow2 overlay on `base`; the base is never written."""
    return [qemu_img, "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(overlay)]


def macs(cluster: str, index: int) -> tuple[str, str]:
    """Stable MACs (user NIC, cluster NIC) for node `index`: locally administered, unique per cluster and node."""
    h = hashlib.sha256(cluster.encode("utf-8")).digest()[0]
    tail = f"{h:02x}:{(index >> 8) & 0xFF:02x}:{index & 0xFF:02x}"
    return f"52:54:01:{tail}", f"52:54:00:{tail}"


def user_net(cluster_cidr: str) -> str:
    cluster = ipaddress.IPv4Network(cluster_cidr)
    for candidate in USER_NETS:
        if not cluster.overlaps(ipaddress.IPv4Network(candidate)):
            return candidate
    raise ConfigError(
        f"setting cluster.cidr = {cluster_cidr} overlaps every network QEMU's user-mode NIC can use ({', '.join(USER_NETS)})",
        hint="pick a smaller cluster.cidr for local VMs, e.g. 10.0.0.0/24",
    )


def cpu_model(accel: Accel) -> str:
    # AlmaLinux 9 needs x86-64-v2; QEMU's default TCG CPU (qemu64) lacks it, "max" emulates all TCG can.
    return "host" if accel is Accel.KVM else "max"


def accel_args(accel: Accel) -> list[str]:
    if accel is Accel.KVM:
        return ["-accel", "kvm", "-cpu", cpu_model(accel)]
    # Multi-threaded TCG uses one host thread per vCPU.
    return ["-accel", "tcg,thread=multi", "-cpu", cpu_model(accel)]


def vm_argv(
    local: LocalSettings,
    accel: Accel,
    spec: VmSpec,
    kernel: Path | None = None,
    initrd: Path | None = None,
    append: str = "",
) -> list[str]:
    """qemu-system for one node: daemonized once it has opened its files and ports, pid in spec.pid_file."""
    if accel is Accel.AUTO:
        raise ValueError("resolve Accel.AUTO (probe KVM) before building the command line")
    argv = [
        local.qemu,
        "-name", spec.name,
        "-machine", "q35",
        *accel_args(accel),
        "-m", str(local.memory_mb),
        "-smp", str(local.cpus),
        "-nodefaults",
        "-display", "none",
        "-serial", f"file:{spec.serial_log}",
        "-monitor", "none",
        "-device", "virtio-rng-pci",
        "-drive", f"file={spec.overlay},if=virtio,format=qcow2,discard=unmap",
        # The NoCloud seed as a read-only disk: cloud-init finds it by its file system label, not by device type.
        "-drive", f"file={spec.seed},if=virtio,format=raw,readonly=on",
        "-netdev", f"user,id=user0,net={spec.user_net},hostfwd=tcp:{LOOPBACK}:{spec.ssh_port}-:22",
        "-device", f"virtio-net-pci,netdev=user0,mac={spec.user_mac}",
        "-netdev", f"socket,id=cluster0,udp={LOOPBACK}:{spec.hub_port},localaddr={LOOPBACK}:{spec.cluster_port}",
        "-device", f"virtio-net-pci,netdev=cluster0,mac={spec.cluster_mac}",
        "-pidfile", str(spec.pid_file),
        "-daemonize",
    ]
    if kernel is not None:
        argv += ["-kernel", str(kernel)]
        if initrd is not None:
            argv += ["-initrd", str(initrd)]
        if append:
            argv += ["-append", append]
    return argv


def kvm_probe_argv(qemu: str, debug_log: Path, pid_file: Path) -> list[str]:
    """A diskless VM under KVM whose firmware logs to `debug_log`; it works if SeaBIOS gets to its boot step."""
    return [
        qemu,
        "-accel", "kvm",
        "-machine", "pc",
        "-m", "64",
        "-nodefaults",
        "-display", "none",
        "-monitor", "none",
        "-debugcon", f"file:{debug_log}",
        "-global", "isa-debugcon.iobase=0x402",
        "-pidfile", str(pid_file),
        "-daemonize",
    ]
