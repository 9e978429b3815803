"""The QEMU command lines: what each node's VM gets, and that QEMU itself accepts them."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
from pathlib import Path

import pytest

from nomadic import proc, qemuargs
from nomadic.config import Accel, LocalSettings
from nomadic.errors import ConfigError

IN_CI = os.environ.get("CI") == "true"


def spec(tmp: Path, index: int = 1) -> qemuargs.VmSpec:
    user_mac, cluster_mac = qemuargs.macs("nomadic", index)
    return qemuargs.VmSpec(
        name=f"nomadic-{index:02d}",
        overlay=tmp / "overlay.qcow2",
        seed=tmp / "seed.iso",
        serial_log=tmp / "serial.log",
        pid_file=tmp / "pid",
        ssh_port=2220 + index,
        cluster_port=40000 + index,
        hub_port=40000,
        user_mac=user_mac,
        cluster_mac=cluster_mac,
        user_net="10.0.2.0/24",
    )


def opt(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_overlay_is_copy_on_write_on_the_base() -> None:
    assert qemuargs.overlay_argv("qemu-img", Path("/img/base.qcow2"), Path("/b/o.qcow2")) == [
        "qemu-img", "create", "-q", "-f", "qcow2", "-b", "/img/base.qcow2", "-F", "qcow2", "/b/o.qcow2",
    ]


def test_vm_takes_memory_cpus_and_accel_from_settings(tmp_path: Path) -> None:
    local = LocalSettings(memory_mb=1536, cpus=2)
    argv = qemuargs.vm_argv(local, Accel.TCG, spec(tmp_path))
    assert argv[0] == "qemu-system-x86_64"
    assert opt(argv, "-m") == ["1536"] and opt(argv, "-smp") == ["2"]
    assert opt(argv, "-accel") == ["tcg,thread=multi"]
    kvm = qemuargs.vm_argv(local, Accel.KVM, spec(tmp_path))
    assert opt(kvm, "-accel") == ["kvm"] and opt(kvm, "-cpu") == ["host"]


def test_auto_accel_must_be_resolved_first(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        qemuargs.vm_argv(LocalSettings(), Accel.AUTO, spec(tmp_path))


def test_networks_stay_on_loopback(tmp_path: Path) -> None:
    argv = qemuargs.vm_argv(LocalSettings(), Accel.TCG, spec(tmp_path, 3))
    netdevs = opt(argv, "-netdev")
    assert netdevs[0] == "user,id=user0,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:2223-:22"
    assert netdevs[1] == "socket,id=cluster0,udp=127.0.0.1:40000,localaddr=127.0.0.1:40003"
    assert not any("mcast" in n for n in netdevs)
    for addr in re.findall(r"\d+\.\d+\.\d+\.\d+(?=:)", " ".join(netdevs)):
        assert ipaddress.IPv4Address(addr).is_loopback
    devices = opt(argv, "-device")
    assert f"virtio-net-pci,netdev=user0,mac={qemuargs.macs('nomadic', 3)[0]}" in devices
    assert f"virtio-net-pci,netdev=cluster0,mac={qemuargs.macs('nomadic', 3)[1]}" in devices


def test_vm_runs_in_background_with_pid_and_serial_log(tmp_path: Path) -> None:
    s = spec(tmp_path)
    argv = qemuargs.vm_argv(LocalSettings(), Accel.TCG, s)
    assert "-daemonize" in argv
    assert opt(argv, "-pidfile") == [str(s.pid_file)]
    assert opt(argv, "-serial") == [f"file:{s.serial_log}"]
    drives = opt(argv, "-drive")
    assert drives[0].startswith(f"file={s.overlay},if=virtio,format=qcow2")
    assert drives[1] == f"file={s.seed},if=virtio,format=raw,readonly=on"


def test_direct_kernel_boot_only_when_asked(tmp_path: Path) -> None:
    plain = qemuargs.vm_argv(LocalSettings(), Accel.TCG, spec(tmp_path))
    assert "-kernel" not in plain and "-append" not in plain
    direct = qemuargs.vm_argv(
        LocalSettings(), Accel.TCG, spec(tmp_path), kernel=Path("/k"), initrd=Path("/i"), append="root=/dev/vda"
    )
    assert opt(direct, "-kernel") == ["/k"] and opt(direct, "-initrd") == ["/i"]
    assert opt(direct, "-append") == ["root=/dev/vda"]


def test_macs_are_unique_local_unicast_and_stable() -> None:
    seen = set()
    for i in range(1, 300):
        for mac in qemuargs.macs("nomadic", i):
            assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac)
            first = int(mac[:2], 16)
            assert first & 0x02 and not first & 0x01  # locally administered, unicast
            assert mac not in seen
            seen.add(mac)
    assert qemuargs.macs("nomadic", 7) == qemuargs.macs("nomadic", 7)


@pytest.mark.parametrize(
    "cidr, want",
    [("10.0.0.0/24", "10.0.2.0/24"), ("10.0.0.0/16", "172.31.254.0/24"), ("10.0.0.0/8", "172.31.254.0/24"),
     ("172.16.0.0/12", "10.0.2.0/24")],
)
def test_user_net_never_overlaps_the_cluster(cidr: str, want: str) -> None:
    assert qemuargs.user_net(cidr) == want


def test_user_net_impossible_is_a_setting_error() -> None:
    with pytest.raises(ConfigError, match="cluster.cidr = 0.0.0.0/0"):
        qemuargs.user_net("0.0.0.0/0")


def test_qemu_accepts_the_command_line(tmp_path: Path) -> None:
    """The real QEMU parses the argv, opens the disks and binds its ports; started paused (-S), then stopped."""
    for tool in ("qemu-system-x86_64", "qemu-img"):
        if not shutil.which(tool):
            if IN_CI:
                pytest.fail(f"{tool} is missing in CI (bin/setup installs it)")
            pytest.skip(f"{tool} not installed")
    from nomadic import seediso
    from nomadic.providers.local import tcp_port_free, udp_port_free

    base = tmp_path / "base.qcow2"
    proc.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "64M"])
    s = spec(tmp_path)
    port = next(p for p in range(24000, 24500) if tcp_port_free(p) and udp_port_free(p) and udp_port_free(p + 1))
    s = qemuargs.VmSpec(**{**s.__dict__, "ssh_port": port, "cluster_port": port + 1, "hub_port": port})
    proc.run(qemuargs.overlay_argv("qemu-img", base, s.overlay))
    seediso.write(s.seed, seediso.Seed("n", "i", "#cloud-config\n", s.cluster_mac, "10.0.0.2/24", s.user_mac))
    argv = qemuargs.vm_argv(LocalSettings(memory_mb=64), Accel.TCG, s) + ["-S"]
    pid = proc.spawn(argv, s.pid_file)
    try:
        assert proc.is_ours(pid, "qemu-system", str(s.overlay))
        assert not tcp_port_free(port)  # the SSH forward is bound on loopback
    finally:
        assert proc.terminate(pid, "qemu-system", str(s.overlay), timeout=10)
    assert not proc.cmdline(pid)


def test_kvm_probe_boots_only_firmware_under_kvm(tmp_path: Path) -> None:
    argv = qemuargs.kvm_probe_argv("qemu-system-x86_64", tmp_path / "debug.log", tmp_path / "pid")
    assert opt(argv, "-accel") == ["kvm"]
    assert "-drive" not in argv and "-netdev" not in argv  # nothing to boot, nothing to reach
    assert opt(argv, "-debugcon") == [f"file:{tmp_path / 'debug.log'}"]  # where SeaBIOS reports its progress
    assert "-daemonize" in argv and opt(argv, "-pidfile") == [str(tmp_path / "pid")]
