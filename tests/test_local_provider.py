"""LocalProvider: preflight errors, port checks, records, and what launch/destroy leave behind (real QEMU, no guest OS)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from nomadic import artifacts, config, proc, qemuargs
from nomadic.config import Accel, Target
from nomadic.errors import ConfigError, ProviderError, ToolMissing
from nomadic.plan import make_plan
from nomadic.providers.local import (
    RUNNING,
    STOPPED,
    LocalProvider,
    VmRecord,
    serial_tail,
    tcp_port_free,
    udp_port_free,
)

IN_CI = os.environ.get("CI") == "true"


def need_qemu() -> None:
    for tool in ("qemu-system-x86_64", "qemu-img"):
        if not shutil.which(tool):
            if IN_CI:
                pytest.fail(f"{tool} is missing in CI (bin/setup installs it)")
            pytest.skip(f"{tool} not installed")


def free_base(count: int, start: int, check) -> int:
    for base in range(start, start + 3000, 10):
        if all(check(base + i) for i in range(count + 1)):
            return base
    pytest.skip("no free loopback ports")


@pytest.fixture
def key(tmp_path: Path) -> Path:
    pub = tmp_path / "id.pub"
    pub.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG5vbWFkaWMtbG9jYWwtdm0tdGVzdC1rZXktMzJieXRl test\n")
    return pub


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A blank qcow2: QEMU boots it into firmware that finds nothing to boot (no guest OS, no sshd)."""
    need_qemu()
    path = tmp_path / "blank.qcow2"
    proc.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"])
    return path


def settings_for(tmp_path: Path, key: Path, count: int = 2, **local) -> config.Settings:
    values = {
        "accel": "tcg", "memory_mb": 64, "boot_timeout_s": 4,
        "ssh_port_base": free_base(count, 23100, tcp_port_free),
        "cluster_port_base": free_base(count, 43100, udp_port_free),
    }
    values.update(local)
    return config.load(
        {"cluster": {"provider": "local", "count": count, "servers": 1, "ssh_public_key": str(key)}, "local": values},
        tmp_path,
    )


def qemu_processes(marker: str) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and marker in " ".join(proc.cmdline(int(p.name)))]


class Events(list):
    def __call__(self, node: str, message: str) -> None:
        self.append((node, message))


# -- preflight ----------------------------------------------------------------------------------------------


def test_missing_qemu_says_how_to_install(tmp_path: Path, key: Path) -> None:
    s = settings_for(tmp_path, key, qemu="qemu-system-x86_64-not-installed")
    with pytest.raises(ToolMissing) as err:
        LocalProvider(s).preflight(None)
    assert "qemu-system-x86_64-not-installed not found" in err.value.message
    assert "local.qemu" in err.value.message
    assert "apt-get install qemu-system-x86" in (err.value.hint or "")


def test_qemu_install_hint() -> None:
    with pytest.raises(ToolMissing) as err:
        proc.which("/nonexistent/qemu-system-x86_64")
    assert "apt-get install qemu-system-x86" in (err.value.hint or "")


def test_no_recorded_image_points_at_build_image(tmp_path: Path, key: Path) -> None:
    need_qemu()
    with pytest.raises(ConfigError) as err:
        LocalProvider(settings_for(tmp_path, key)).preflight(None)
    assert "build-image --target qemu" in (err.value.hint or "")


def test_missing_image_file(tmp_path: Path, key: Path) -> None:
    need_qemu()
    with pytest.raises(ConfigError, match="does not exist"):
        LocalProvider(settings_for(tmp_path, key)).preflight(str(tmp_path / "nope.qcow2"))


def test_image_must_be_qcow2(tmp_path: Path, key: Path) -> None:
    need_qemu()
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"\0" * 4096)
    with pytest.raises(ConfigError, match="not a qcow2"):
        LocalProvider(settings_for(tmp_path, key)).preflight(str(raw))


def test_recorded_image_is_used(tmp_path: Path, key: Path, image: Path) -> None:
    s = settings_for(tmp_path, key)
    artifacts.record(s, Target.QEMU, s.build.image, {"path": str(image), "sha256": "x"})
    assert LocalProvider(s).preflight(None) == str(image)


def test_missing_ssh_key_names_the_setting(tmp_path: Path, image: Path) -> None:
    s = settings_for(tmp_path, tmp_path / "absent.pub")
    with pytest.raises(ConfigError, match="cluster.ssh_public_key"):
        LocalProvider(s).preflight(str(image))


def test_missing_kernel_file(tmp_path: Path, key: Path, image: Path) -> None:
    s = settings_for(tmp_path, key, kernel=str(tmp_path / "vmlinuz"))
    with pytest.raises(ConfigError, match="local.kernel"):
        LocalProvider(s).preflight(str(image))


# -- launch failures leave nothing behind -------------------------------------------------------------------


def test_port_taken_is_refused_before_anything_starts(tmp_path: Path, key: Path, image: Path) -> None:
    import socket

    s = settings_for(tmp_path, key)
    plan = make_plan(s.cluster)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", s.local.ssh_port_base + 2))
        with pytest.raises(ProviderError) as err:
            LocalProvider(s).launch(plan, list(plan.nodes), {n.name: "#cloud-config\n" for n in plan.nodes},
                                    str(image), Events())
    assert f"TCP {s.local.ssh_port_base + 2}" in err.value.message
    assert "local.ssh_port_base" in (err.value.hint or "")
    assert not (s.cluster_dir / "local").exists() or not any((s.cluster_dir / "local").glob("*/vm.json"))
    assert qemu_processes(str(tmp_path)) == []


def test_boot_timeout_shows_serial_tail_and_cleans_up(tmp_path: Path, key: Path, image: Path) -> None:
    s = settings_for(tmp_path, key, boot_timeout_s=3)
    plan = make_plan(s.cluster)
    events = Events()
    with pytest.raises(ProviderError) as err:
        LocalProvider(s).launch(plan, list(plan.nodes), {n.name: "#cloud-config\n" for n in plan.nodes},
                                str(image), events)
    assert "no SSH answer within local.boot_timeout_s" in err.value.message
    assert "serial log" in err.value.message
    assert any("booting" in m for _, m in events)
    assert qemu_processes(str(tmp_path)) == []  # neither VMs nor the hub
    local = s.cluster_dir / "local"
    assert not any(local.glob("*/vm.json"))
    assert (local / "failed").is_dir()  # serial logs kept for the user


def test_qemu_that_cannot_start_is_reported_and_undone(tmp_path: Path, key: Path, image: Path) -> None:
    bogus = tmp_path / "vmlinuz"
    bogus.write_bytes(b"not a kernel")
    s = settings_for(tmp_path, key, kernel=str(bogus))
    plan = make_plan(s.cluster)
    with pytest.raises(proc.CommandFailed, match="qemu"):
        LocalProvider(s).launch(plan, list(plan.nodes), {n.name: "#cloud-config\n" for n in plan.nodes},
                                str(image), Events())
    assert qemu_processes(str(tmp_path)) == []
    assert not any((s.cluster_dir / "local").glob("*/vm.json"))


def test_vm_that_dies_at_boot_shows_its_serial_log(tmp_path: Path, key: Path) -> None:
    s = settings_for(tmp_path, key)
    provider = LocalProvider(s)
    serial = tmp_path / "serial.log"
    serial.write_text("".join(f"line {i}\n" for i in range(100)) + "Kernel panic - not syncing: VFS\n")
    dead = VmRecord(name="nomadic-01", index=1, role="both", address="10.0.0.2", pid=2**22 + 1, ssh_port=1,
                    cluster_port=2, hub_port=3, overlay=str(tmp_path / "o.qcow2"), seed="", serial_log=str(serial),
                    image="", accel="tcg")
    with pytest.raises(ProviderError) as err:
        provider._wait_booted([dead], Events())
    assert "qemu exited during boot" in err.value.message
    assert "Kernel panic - not syncing" in err.value.message
    assert "line 10\n" not in err.value.message  # only the tail


def test_serial_tail() -> None:
    assert serial_tail(Path("/nonexistent")) == "(no serial output)"


# -- records: find, status, destroy -------------------------------------------------------------------------


def start_paused_vm(provider: LocalProvider, image: Path, name: str, index: int) -> VmRecord:
    """A VM as launch leaves it, but paused (-S): real qemu, real record, no boot needed."""
    d = provider.node_dir(name)
    d.mkdir(parents=True)
    user_mac, cluster_mac = qemuargs.macs("nomadic", index)
    spec = qemuargs.VmSpec(name, d / "overlay.qcow2", image, d / "serial.log", d / "pid",
                           provider.local.ssh_port_base + index, provider.local.cluster_port_base + index,
                           provider.hub_port, user_mac, cluster_mac, "10.0.2.0/24")
    proc.run(qemuargs.overlay_argv("qemu-img", image, spec.overlay))
    # The blank image stands in for the seed too: qemu only needs a file to open.
    pid = proc.spawn(qemuargs.vm_argv(provider.local, Accel.TCG, spec) + ["-S"], spec.pid_file)
    record = VmRecord(name=name, index=index, role="both", address=f"10.0.0.{index + 1}", pid=pid,
                      ssh_port=spec.ssh_port, cluster_port=spec.cluster_port, hub_port=spec.hub_port,
                      overlay=str(spec.overlay), seed=str(image), serial_log=str(spec.serial_log), image=str(image),
                      accel="tcg", ssh_user="recorded-user")
    provider._write_record(record)
    return record


def test_find_and_destroy_exactly_our_vms(tmp_path: Path, key: Path, image: Path) -> None:
    s = settings_for(tmp_path, key)
    provider = LocalProvider(s)
    provider._ensure_hub([s.local.cluster_port_base + 1, s.local.cluster_port_base + 2])
    vm = start_paused_vm(provider, image, "nomadic-01", 1)
    # A record whose pid is someone else's (here: this test process) must never be signalled.
    impostor = provider.node_dir("nomadic-02")
    impostor.mkdir(parents=True)
    (impostor / "vm.json").write_text(json.dumps({**vm.__dict__, "name": "nomadic-02", "index": 2, "pid": os.getpid(),
                                                  "overlay": str(impostor / "overlay.qcow2")}))
    try:
        found = {n.name: n for n in provider.find()}
        assert found["nomadic-01"].state == RUNNING
        assert found["nomadic-01"].id == str(vm.pid)
        assert (found["nomadic-01"].ssh_host, found["nomadic-01"].ssh_port) == ("127.0.0.1", s.local.ssh_port_base + 1)
        assert found["nomadic-01"].private_ip == "10.0.0.2"
        assert found["nomadic-01"].ssh_user == "recorded-user"  # as launched, whatever the settings say now
        assert found["nomadic-02"].state == STOPPED
        assert provider.used_addresses() == set()
        events = Events()
        provider.destroy(list(found.values()), events)
        assert not proc.is_ours(vm.pid, "qemu-system", vm.overlay)
        assert proc.cmdline(os.getpid())  # still alive
        assert ("nomadic-02", "not running") in events
        assert not (s.cluster_dir / "local").exists()
        assert qemu_processes(str(tmp_path)) == []  # hub stopped with the last VM
    finally:
        proc.terminate(vm.pid, "qemu-system", vm.overlay, timeout=5)


def test_launch_refuses_a_node_that_runs(tmp_path: Path, key: Path, image: Path) -> None:
    s = settings_for(tmp_path, key, count=1)
    provider = LocalProvider(s)
    vm = start_paused_vm(provider, image, "nomadic-01", 1)
    try:
        plan = make_plan(s.cluster)
        with pytest.raises(ProviderError, match="already runs"):
            provider.launch(plan, list(plan.nodes), {"nomadic-01": "#cloud-config\n"}, str(image), Events())
        assert proc.is_ours(vm.pid, "qemu-system", vm.overlay)
    finally:
        provider.destroy(provider.find(), Events())
    assert qemu_processes(str(tmp_path)) == []


def test_explicit_tcg_needs_no_probe(tmp_path: Path, key: Path) -> None:
    provider = LocalProvider(settings_for(tmp_path, key, accel="tcg"))
    events = Events()
    assert provider._resolve_accel(events) is Accel.TCG
    assert events == []


def test_hub_command_uses_this_interpreter(tmp_path: Path, key: Path) -> None:
    provider = LocalProvider(settings_for(tmp_path, key))
    provider._ensure_hub([provider.hub_port + 1])
    try:
        record = json.loads((provider.root / "hub.json").read_text())
        assert proc.cmdline(record["pid"])[0] == sys.executable
        assert record["peers"] == [provider.hub_port + 1]
    finally:
        provider._stop_hub()
    assert not proc.cmdline(record["pid"])


# -- start: a stopped VM boots again from its own disk --------------------------------------------------------


class Cmdlines(Events):
    """Progress events, plus the argv of each qemu at the moment it is reported booting."""

    def __init__(self) -> None:
        super().__init__()
        self.argv: list[list[str]] = []

    def __call__(self, node: str, message: str) -> None:
        super().__call__(node, message)
        if message.startswith("booting (pid "):
            self.argv.append(proc.cmdline(int(message.split()[2].rstrip(","))))


def test_start_boots_the_same_vm_again_and_leaves_it_stopped_on_failure(tmp_path: Path, key: Path, image: Path) -> None:
    s = settings_for(tmp_path, key, count=1, boot_timeout_s=3)
    provider = LocalProvider(s)
    plan = make_plan(s.cluster)
    node = plan.nodes[0]
    first = Cmdlines()
    spec = provider._prepare(plan, node, "#cloud-config\n", image, key.read_text().strip(), first)
    old = provider._start(node, spec, image, Accel.TCG, first)
    proc.terminate(old.pid, "qemu-system", old.overlay, timeout=5)  # qemu exited: the node is STOPPED
    (stopped,) = provider.find()
    assert stopped.state == STOPPED
    overlay_inode = Path(old.overlay).stat().st_ino

    again = Cmdlines()
    with pytest.raises(ProviderError, match="no SSH answer within local.boot_timeout_s"):
        provider.start([stopped], again)  # a blank disk never answers SSH
    assert again.argv == first.argv  # the same qemu command line: same overlay, seed, ports and MACs
    assert old.overlay in " ".join(again.argv[0]) and old.seed in " ".join(again.argv[0])
    # Failure puts it back as it was: STOPPED, its files kept (never recreated), no qemu or hub left running.
    (after,) = provider.find()
    assert after.state == STOPPED and after.id != stopped.id
    assert Path(old.overlay).is_file() and Path(old.seed).is_file()
    assert Path(old.overlay).stat().st_ino == overlay_inode
    assert qemu_processes(str(tmp_path)) == []


def test_start_without_the_disk_says_so_and_starts_nothing(tmp_path: Path, key: Path, image: Path) -> None:
    s = settings_for(tmp_path, key, count=1)
    provider = LocalProvider(s)
    record = start_paused_vm(provider, image, "nomadic-01", 1)
    proc.terminate(record.pid, "qemu-system", record.overlay, timeout=5)
    Path(record.overlay).unlink()
    with pytest.raises(ProviderError) as err:
        provider.start(provider.find(), Events())
    assert record.overlay in err.value.message and "cannot be booted again" in err.value.message
    assert "destroy" in (err.value.hint or "")
    assert qemu_processes(str(tmp_path)) == []
