"""The local provider end to end: real QEMU VMs (TCG), real cloud-init, the project's rendered user-data.

What this proves: `lifecycle.launch` with the LocalProvider boots N VMs from one image with per-node NoCloud
seeds; cloud-init (Debian 12's 22.4) applies our user-data without errors (hostname, Consul and Nomad configs with
their content, owners and modes, the firewalld zone); each node holds its planned address on the private
cluster network and reaches the others there; systemd starts consul.service before nomad.service once the
configs exist; the inventory/ssh_config lead to the nodes; destroy leaves no process behind.

What it cannot prove: Consul and Nomad themselves. The test image (tests/integration/testimage.py) is Debian,
not the baked AlmaLinux image, and has no Consul or Nomad binaries: consul.service and nomad.service are
stand-ins that only record that systemd started them, as which user and in which order. Cluster formation
(a leader, members) needs the real image: see the README's local path.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import pytest

from nomadic import config, imagechecks, imagefacts, lifecycle, nodeconfig, outputs, proc
from nomadic.plan import make_plan
from nomadic.providers.local import LocalProvider, tcp_port_free, udp_port_free

from . import testimage

pytestmark = pytest.mark.integration

IN_CI = os.environ.get("CI") == "true"
NODES = int(os.environ.get("NOMADIC_VM_TEST_NODES", "2"))
# KVM hangs on the machines this runs on (nested virtualization); TCG is slow but works everywhere.
ACCEL = os.environ.get("NOMADIC_VM_TEST_ACCEL", "tcg")
CLUSTER = "vmtest"


def need(condition: bool, why: str) -> None:
    if not condition:
        if IN_CI:
            pytest.fail(f"{why} (CI must run the VM test)")
        pytest.skip(why)


def free_base(count: int, start: int, check) -> int:
    """A port base whose base..base+count are free on loopback."""
    for base in range(start, start + 2000, 10):
        if all(check(base + i) for i in range(count + 1)):
            return base
    pytest.fail(f"no free loopback ports near {start}")


@pytest.fixture(scope="module")
def image() -> testimage.TestImage:
    for tool in ("mmdebstrap", "mkfs.ext4", "qemu-img", "qemu-system-x86_64", "ssh", "ssh-keygen"):
        need(shutil.which(tool) is not None, f"{tool} not installed (bin/setup --test installs it)")
    cached = testimage.CACHE / testimage.recipe_hash() / "disk.qcow2"
    need(cached.exists() or os.geteuid() == 0, "building the test image needs root")
    return testimage.build(log=sys.stderr)


@pytest.fixture(scope="module")
def cluster(image: testimage.TestImage, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    root = tmp_path_factory.mktemp("local-cluster")
    key = root / "id_ed25519"
    proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vmtest", "-f", str(key)])
    raw = {
        "cluster": {
            "name": CLUSTER, "provider": "local", "count": NODES, "servers": 1 if NODES == 2 else 0,
            "ssh_public_key": f"{key}.pub", "ssh_private_key": str(key),
        },
        "local": {
            "accel": ACCEL, "memory_mb": 768, "cpus": 1, "boot_timeout_s": 600, "ssh_user": "debian",
            "ssh_port_base": free_base(NODES, 22200, tcp_port_free),
            "cluster_port_base": free_base(NODES, 42000, udp_port_free),
            "kernel": str(image.kernel), "initrd": str(image.initrd), "append": image.append,
        },
    }
    settings = config.load(raw, root)

    def teardown() -> None:
        lifecycle.destroy(settings, yes=True, console=lifecycle.Console(sys.stderr))

    request.addfinalizer(teardown)  # before launch: a launch that fails half-way is torn down too
    nodes = lifecycle.launch(settings, str(image.disk), wait_cluster=False, console=lifecycle.Console(sys.stderr))
    return settings, nodes


def ssh(settings: config.Settings, node: str, command: str, check: bool = True) -> str:
    """Run a shell command on a node through the ssh_config that launch wrote (so that file is tested too)."""
    argv = ["ssh", "-F", str(settings.cluster_dir / outputs.SSH_CONFIG), "-o", "BatchMode=yes", node, "--", command]
    result = proc.run(argv, check=False, timeout=300)
    if check and result.exit_code != 0:
        pytest.fail(f"{node}: `{command}` exited {result.exit_code}: {result.stdout}{result.stderr}")
    return result.stdout


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.fixture(scope="module")
def rendered(cluster):
    """What the nodes must have received: the same render launch did (gossip keys are kept in secrets/)."""
    settings, nodes = cluster
    plan = make_plan(settings.cluster, (), {n.name: n.private_ip for n in nodes})
    return plan, nodeconfig.render_nodes(settings, plan)


def test_every_node_runs_with_its_forward(cluster) -> None:
    settings, nodes = cluster
    assert [n.name for n in nodes] == [f"{CLUSTER}-{i:02d}" for i in range(1, NODES + 1)]
    for n in nodes:
        assert n.state == "RUNNING" and n.ssh_host == "127.0.0.1"
        assert n.ssh_port == settings.local.ssh_port_base + int(n.name[-2:])
    found = {n.name: n for n in LocalProvider(settings).find()}
    assert sorted(found) == [n.name for n in nodes]
    config_text = (settings.cluster_dir / outputs.SSH_CONFIG).read_text()
    for n in nodes:
        assert f"Port {n.ssh_port}" in config_text


def test_cloud_init_finished_without_errors(cluster) -> None:
    settings, nodes = cluster
    for n in nodes:
        out = ssh(settings, n.name, "cloud-init status --wait --long", check=False)
        assert "status: done" in out, f"{n.name}: {out}"
        errors = ssh(settings, n.name, "python3 -c 'import json; print(json.load(open(\"/run/cloud-init/result.json\"))[\"v1\"][\"errors\"])'")
        assert errors.strip() == "[]", f"{n.name}: cloud-init errors {errors}"
        warnings = ssh(settings, n.name, "sudo grep -E '\\[(WARNING|ERROR|CRITICAL)\\]' /var/log/cloud-init.log", check=False)
        assert warnings.strip() == "", f"{n.name}: cloud-init logged warnings: {warnings}"
        failed = ssh(settings, n.name, "systemctl list-units --failed --no-legend --plain", check=False)
        assert failed.strip() == "", f"{n.name}: failed units: {failed}"


def test_user_data_arrived_unchanged(cluster, rendered) -> None:
    settings, nodes = cluster
    _, files = rendered
    for n in nodes:
        got = ssh(settings, n.name, "sudo sha256sum /var/lib/cloud/instance/user-data.txt").split()[0]
        assert got == sha(files[n.name].user_data), n.name


def test_hostname(cluster) -> None:
    settings, nodes = cluster
    for n in nodes:
        assert ssh(settings, n.name, "hostname").strip() == n.name


def test_agent_configs_written_with_content_owner_and_mode(cluster, rendered) -> None:
    settings, nodes = cluster
    _, files = rendered
    for n in nodes:
        for path, want_owner, text in (
            (imagefacts.CONSUL_CONFIG_FILE, f"root:{imagefacts.CONSUL_GROUP}", files[n.name].consul_hcl),
            (imagefacts.NOMAD_CONFIG_FILE, "root:root", files[n.name].nomad_hcl),
        ):
            owner, mode, digest = ssh(
                settings, n.name, f"sudo stat -c '%U:%G %a' {path} && sudo sha256sum {path}"
            ).split()[:3]
            assert (owner, mode) == (want_owner, "640"), f"{n.name}:{path}"
            assert digest == sha(text), f"{n.name}:{path} differs from the rendered config"
        for d in (*imagefacts.CONFIG_DIRS, *imagefacts.DATA_DIRS):
            got = ssh(settings, n.name, f"sudo stat -c '%U:%G %a' {d.path}").strip()
            assert got == f"{d.owner}:{d.group} {d.mode:o}", f"{n.name}:{d.path}"


def test_firewall_zone_applied(cluster) -> None:
    settings, nodes = cluster
    zone = nodeconfig.FIREWALL_ZONE
    for n in nodes:
        assert ssh(settings, n.name, "sudo firewall-cmd --state").strip() == "running"
        sources = ssh(settings, n.name, f"sudo firewall-cmd --zone={zone} --list-sources").split()
        assert sources == [settings.cluster.cidr]
        services = set(ssh(settings, n.name, f"sudo firewall-cmd --zone={zone} --list-services").split())
        assert {"ssh", *imagefacts.FIREWALLD_SERVICES} <= services
        for service, ports in imagefacts.FIREWALLD_SERVICES.items():
            got = set(ssh(settings, n.name, f"sudo firewall-cmd --service={service} --get-ports --permanent").split())
            assert got == {f"{p.port}/{p.protocol}" for p in ports}, service


def test_nodes_reach_each_other_on_the_cluster_network(cluster) -> None:
    settings, nodes = cluster
    for n in nodes:
        addrs = ssh(settings, n.name, "ip -4 -o addr show dev cluster0")
        assert f" {n.private_ip}/" in addrs
        for other in nodes:
            if other.name != n.name:
                ssh(settings, n.name, f"ping -c 3 -W 5 {other.private_ip}")


def test_standin_agents_started_consul_before_nomad(cluster) -> None:
    """Stand-in units (no binaries here): systemd started consul.service as consul, then nomad.service as root."""
    settings, nodes = cluster
    for n in nodes:
        lines = ssh(settings, n.name, f"cat {testimage.STANDIN_LOG}").splitlines()
        entries = [ln.split() for ln in lines]
        assert [e[0] for e in entries] == ["consul", "nomad"], f"{n.name}: {lines}"
        assert entries[0][2] == imagefacts.CONSUL_USER and entries[1][2] == "root"
        assert float(entries[0][1]) <= float(entries[1][1])


@pytest.mark.parametrize("check", imagechecks.APPLICABLE_ANYWHERE)
def test_image_verification_checks_that_apply_here(cluster, check: str) -> None:
    """The image suite's checks that hold on any host built to imagefacts (the rest need AlmaLinux and the agents)."""
    settings, nodes = cluster
    for n in nodes:

        def run(command: str, node: str = n.name) -> proc.Result:
            argv = ["ssh", "-F", str(settings.cluster_dir / outputs.SSH_CONFIG), "-o", "BatchMode=yes", node, "--",
                    "sudo", "-n", "bash", "-c", proc.show([command])]
            return proc.run(argv, check=False, timeout=120)

        assert imagechecks.ALL[check](run) == [], n.name


def test_destroy_leaves_nothing_behind(cluster) -> None:
    settings, nodes = cluster
    provider = LocalProvider(settings)
    overlays = [r.overlay for r in provider.records()]
    pids = [r.pid for r in provider.records()]
    lifecycle.destroy(settings, yes=True, console=lifecycle.Console(sys.stderr))
    for pid, overlay in zip(pids, overlays):
        assert not proc.is_ours(pid, "qemu-system", overlay)
    leftover = [p for p in Path("/proc").iterdir() if p.name.isdigit() and str(settings.cluster_dir) in " ".join(proc.cmdline(int(p.name)))]
    assert leftover == [], "processes of the cluster still run"
    assert not (settings.cluster_dir / "local").exists()
    assert provider.find() == []
