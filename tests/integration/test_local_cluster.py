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

import functools
import hashlib
import os
import shutil
import sys
import tempfile
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
        if (settings.cluster_dir / outputs.SSH_CONFIG).exists():
            close_connections(settings, LocalProvider(settings).find())
        lifecycle.destroy(settings, yes=True, console=lifecycle.Console(sys.stderr))
        shutil.rmtree(control_dir(), ignore_errors=True)

    request.addfinalizer(teardown)  # before launch: a launch that fails half-way is torn down too
    nodes = lifecycle.launch(settings, str(image.disk), wait_cluster=False, console=lifecycle.Console(sys.stderr))
    return settings, nodes


# One SSH connection per node, reused by every check: a new connection costs an emulated guest seconds.
@functools.lru_cache(maxsize=None)
def control_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="vmtest-ssh-", dir="/tmp"))  # short: socket paths have at most 108 bytes


def ssh_argv(settings: config.Settings, node: str, *command: str) -> list[str]:
    """ssh through the ssh_config that launch wrote (so that file is tested too)."""
    return ["ssh", "-F", str(settings.cluster_dir / outputs.SSH_CONFIG), "-o", "BatchMode=yes",
            "-o", "ControlMaster=auto", "-o", f"ControlPath={control_dir()}/%C", "-o", "ControlPersist=600",
            node, "--", *command]


def close_connections(settings: config.Settings, nodes) -> None:
    for n in nodes:
        proc.run(["ssh", "-o", f"ControlPath={control_dir()}/%C", "-F", str(settings.cluster_dir / outputs.SSH_CONFIG),
                  "-O", "exit", n.name], check=False, timeout=30)


def ssh(settings: config.Settings, node: str, command: str, check: bool = True) -> str:
    result = proc.run(ssh_argv(settings, node, command), check=False, timeout=300)
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


def probes(settings: config.Settings, node, nodes) -> dict[str, str]:
    """Every command the checks below read, by name; run as root in one SSH call per node."""
    zone = nodeconfig.FIREWALL_ZONE
    cmds = {
        "status": "cloud-init status --long",
        "errors": "python3 -c 'import json; print(json.load(open(\"/run/cloud-init/result.json\"))[\"v1\"][\"errors\"])'",
        "warnings": "grep -E '\\[(WARNING|ERROR|CRITICAL)\\]' /var/log/cloud-init.log",
        "failed": "systemctl list-units --failed --no-legend --plain",
        "user-data": "sha256sum /var/lib/cloud/instance/user-data.txt",
        "hostname": "hostname",
        "fw-state": "firewall-cmd --state",
        "fw-sources": f"firewall-cmd --zone={zone} --list-sources",
        "fw-services": f"firewall-cmd --zone={zone} --list-services",
        "cluster-nic": "ip -4 -o addr show dev cluster0",
        "standins": f"cat {testimage.STANDIN_LOG}",
        "machine-id": "cat /etc/machine-id",
        "host-key": "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub",
        "host-key-age": "echo $(( $(date +%s) - $(stat -c %Y /etc/ssh/ssh_host_ed25519_key) ))",
        "uptime": "cut -d' ' -f1 /proc/uptime",
    }
    for path in (imagefacts.CONSUL_CONFIG_FILE, imagefacts.NOMAD_CONFIG_FILE):
        cmds[f"file:{path}"] = f"stat -c '%U:%G %a' {path} && sha256sum {path}"
    for d in (*imagefacts.CONFIG_DIRS, *imagefacts.DATA_DIRS):
        cmds[f"dir:{d.path}"] = f"stat -c '%U:%G %a' {d.path}"
    for service in imagefacts.FIREWALLD_SERVICES:
        cmds[f"fw-ports:{service}"] = f"firewall-cmd --service={service} --get-ports --permanent"
    for other in nodes:
        if other.name != node.name:
            cmds[f"ping:{other.private_ip}"] = f"ping -c 3 -W 5 {other.private_ip}"
    marker = "@@probe@@"
    script = "".join(f"echo '{marker} {k}'; {{ {c}; }} 2>&1; echo \"{marker} rc $?\"\n" for k, c in cmds.items())
    result = proc.run(ssh_argv(settings, node.name, "sudo", "-n", "bash", "-c", proc.show([script])),
                      check=False, timeout=300)
    out: dict[str, str] = {}
    key = None
    for line in result.stdout.splitlines(keepends=True):
        if line.startswith(f"{marker} rc "):
            out[f"{key}.rc"] = line.split()[-1]
        elif line.startswith(f"{marker} "):
            key = line.split(" ", 1)[1].strip()
            out[key] = ""
        elif key is not None:
            out[key] += line
    assert set(cmds) <= set(out), f"{node.name}: probes missing: {set(cmds) - set(out)} ({result.stderr})"
    return out


@pytest.fixture(scope="module")
def facts(cluster) -> dict[str, dict[str, str]]:
    """Each node's probe results, taken once cloud-init has finished there."""
    settings, nodes = cluster
    for n in nodes:
        ssh(settings, n.name, "cloud-init status --wait", check=False)
    return {n.name: probes(settings, n, nodes) for n in nodes}


def test_cloud_init_finished_without_errors(cluster, facts) -> None:
    _, nodes = cluster
    for n in nodes:
        f = facts[n.name]
        assert "status: done" in f["status"], f"{n.name}: {f['status']}"
        assert f["errors"].strip() == "[]", f"{n.name}: cloud-init errors {f['errors']}"
        assert f["warnings"].strip() == "", f"{n.name}: cloud-init logged warnings: {f['warnings']}"
        assert f["failed"].strip() == "", f"{n.name}: failed units: {f['failed']}"


def test_user_data_arrived_unchanged(cluster, facts, rendered) -> None:
    _, nodes = cluster
    _, files = rendered
    for n in nodes:
        assert facts[n.name]["user-data"].split()[0] == sha(files[n.name].user_data), n.name


def test_hostname(cluster, facts) -> None:
    _, nodes = cluster
    for n in nodes:
        assert facts[n.name]["hostname"].strip() == n.name


def test_agent_configs_written_with_content_owner_and_mode(cluster, facts, rendered) -> None:
    _, nodes = cluster
    _, files = rendered
    for n in nodes:
        f = facts[n.name]
        for path, want_owner, text in (
            (imagefacts.CONSUL_CONFIG_FILE, f"root:{imagefacts.CONSUL_GROUP}", files[n.name].consul_hcl),
            (imagefacts.NOMAD_CONFIG_FILE, "root:root", files[n.name].nomad_hcl),
        ):
            owner, mode, digest = f[f"file:{path}"].split()[:3]
            assert (owner, mode) == (want_owner, "640"), f"{n.name}:{path}"
            assert digest == sha(text), f"{n.name}:{path} differs from the rendered config"
        for d in (*imagefacts.CONFIG_DIRS, *imagefacts.DATA_DIRS):
            assert f[f"dir:{d.path}"].strip() == f"{d.owner}:{d.group} {d.mode:o}", f"{n.name}:{d.path}"


def test_firewall_zone_applied(cluster, facts) -> None:
    settings, nodes = cluster
    for n in nodes:
        f = facts[n.name]
        assert f["fw-state"].strip() == "running"
        assert f["fw-sources"].split() == [settings.cluster.cidr]
        assert {"ssh", *imagefacts.FIREWALLD_SERVICES} <= set(f["fw-services"].split())
        for service, ports in imagefacts.FIREWALLD_SERVICES.items():
            assert set(f[f"fw-ports:{service}"].split()) == {f"{p.port}/{p.protocol}" for p in ports}, service


def test_nodes_reach_each_other_on_the_cluster_network(cluster, facts) -> None:
    _, nodes = cluster
    for n in nodes:
        f = facts[n.name]
        assert f" {n.private_ip}/" in f["cluster-nic"]
        for other in nodes:
            if other.name != n.name:
                assert f[f"ping:{other.private_ip}.rc"] == "0", f"{n.name} -> {other.private_ip}: {f[f'ping:{other.private_ip}']}"


def test_standin_agents_started_consul_before_nomad(cluster, facts) -> None:
    """Stand-in units (no binaries here): systemd started consul.service as consul, then nomad.service as root."""
    _, nodes = cluster
    for n in nodes:
        lines = facts[n.name]["standins"].splitlines()
        entries = [ln.split() for ln in lines]
        assert [e[0] for e in entries] == ["consul", "nomad"], f"{n.name}: {lines}"
        assert entries[0][2] == imagefacts.CONSUL_USER and entries[1][2] == "root"
        assert float(entries[0][1]) <= float(entries[1][1])


def test_clones_have_their_own_identity(cluster, facts) -> None:
    """Every node made its own machine-id and SSH host keys on this boot (nothing shared through the image)."""
    _, nodes = cluster
    seen: dict[str, set[str]] = {"machine-id": set(), "host-key": set()}
    for n in nodes:
        f = facts[n.name]
        assert len(f["machine-id"].strip()) == 32, n.name
        for what, value in (("machine-id", f["machine-id"].strip()), ("host-key", f["host-key"].split()[1])):
            assert value not in seen[what], f"{n.name} shares its {what} with another node"
            seen[what].add(value)
        assert float(f["host-key-age"]) <= float(f["uptime"]), f"{n.name}: host key older than this boot"


@pytest.mark.parametrize("check", imagechecks.APPLICABLE_ANYWHERE)
def test_image_verification_checks_that_apply_here(cluster, check: str) -> None:
    """The image suite's checks that hold on any host built to imagefacts (the rest need AlmaLinux and the agents)."""
    settings, nodes = cluster
    for n in nodes:

        def run(command: str, node: str = n.name) -> proc.Result:
            return proc.run(ssh_argv(settings, node, "sudo", "-n", "bash", "-c", proc.show([command])),
                            check=False, timeout=120)

        assert imagechecks.ALL[check](run) == [], n.name


def test_rerun_boots_a_stopped_vm_again(cluster, image: testimage.TestImage) -> None:
    """A node whose qemu died shows as STOPPED; launch again boots it from its own disk, nothing new is made."""
    settings, nodes = cluster
    last = nodes[-1].name
    record = next(r for r in LocalProvider(settings).records() if r.name == last)
    close_connections(settings, [n for n in nodes if n.name == last])
    assert proc.terminate(record.pid, "qemu-system", record.overlay)
    assert {n.name: n.state for n in LocalProvider(settings).find()}[last] == "STOPPED"
    again = lifecycle.launch(settings, str(image.disk), wait_cluster=False, console=lifecycle.Console(sys.stderr))
    states = {n.name: n.state for n in again}
    assert set(states) == {n.name for n in nodes} and set(states.values()) == {"RUNNING"}, states
    restarted = next(r for r in LocalProvider(settings).records() if r.name == last)
    assert restarted.pid != record.pid and restarted.overlay == record.overlay
    assert ssh(settings, last, "hostname").strip() == last
    # The same disk and seed: cloud-init recognises its instance and applies nothing twice.
    assert "status: done" in ssh(settings, last, "cloud-init status --wait")


def test_destroy_leaves_nothing_behind(cluster) -> None:
    settings, nodes = cluster
    provider = LocalProvider(settings)
    overlays = [r.overlay for r in provider.records()]
    pids = [r.pid for r in provider.records()]
    close_connections(settings, nodes)
    lifecycle.destroy(settings, yes=True, console=lifecycle.Console(sys.stderr))
    for pid, overlay in zip(pids, overlays):
        assert not proc.is_ours(pid, "qemu-system", overlay)
    leftover = []
    for p in Path("/proc").iterdir():
        argv = proc.cmdline(int(p.name)) if p.name.isdigit() else []
        ours = str(settings.cluster_dir) in " ".join(argv)
        if ours and (Path(argv[0]).name.startswith("qemu-system") or "nomadic.hub" in argv):
            leftover.append(" ".join(argv))
    assert leftover == [], "VMs or the hub of the cluster still run"
    assert not (settings.cluster_dir / "local").exists()
    assert provider.find() == []
