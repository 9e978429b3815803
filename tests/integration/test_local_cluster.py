"""The cluster end to end: real QEMU VMs (TCG), real cloud-init, the project's rendered user-data, real Consul
and Nomad (the test agents of tests/agents.py), driven through the `invoke` command line as a user would.

Two clusters, one after the other (NOMADIC_VM_TEST_SHAPES, default "3,1"): three nodes that are all servers and
clients, and the design's first step, one node (server and client, bootstrap_expect = 1). For each:
`invoke launch --provider local --count N --wait-cluster` returns only because both agents have a leader and
every node is a member (read from the real CLIs by nomadic.health); cloud-init finished without errors, the
configs and firewall zone arrived, the agents started after the zone was loaded, as their users, without being
restarted; `invoke status` shows every node healthy; gossip is encrypted with the rendered keys and a Consul
agent with another key cannot join; with three nodes, one server's VM stopped leaves a leader and `invoke launch`
boots it again until it rejoins; `invoke destroy` leaves no process and no file of the cluster behind.

What it cannot prove: the image is Debian 12, not AlmaLinux 9; the agents are Consul 1.16.3 and Nomad 1.6.3 (the
newest MPL-2.0 releases), older than the image pins, so config keys newer than them are not exercised; no Docker
(the docker driver shows as undetected, the client registers ready without it); cloud-init is Debian's 22.4.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from nomadic import config, health, imagechecks, imagefacts, keys, nodeconfig, outputs, proc
from nomadic.plan import make_plan
from nomadic.providers.local import LocalProvider, tcp_port_free, udp_port_free

from tests import agents

from . import testimage

pytestmark = pytest.mark.integration

IN_CI = os.environ.get("CI") == "true"
ROOT = Path(__file__).resolve().parents[2]
SHAPES = [int(n) for n in os.environ.get("NOMADIC_VM_TEST_SHAPES", "3,1").split(",") if n.strip()]
# KVM hangs on the machines this runs on (nested virtualization); TCG is slow but works everywhere.
ACCEL = os.environ.get("NOMADIC_VM_TEST_ACCEL", "tcg")
# Generous: under TCG the Go agents start slowly, and memory figures (benchmarks/boot.py) want the 1 GB shape.
MEMORY_MB = int(os.environ.get("NOMADIC_VM_TEST_MEMORY_MB", "1024"))
WAIT_S = 1500


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


@pytest.fixture(scope="session")
def image() -> testimage.TestImage:
    for tool in ("mmdebstrap", "mkfs.ext4", "qemu-img", "qemu-system-x86_64", "ssh", "ssh-keygen"):
        need(shutil.which(tool) is not None, f"{tool} not installed (bin/setup --test installs it)")
    binaries = agents.require()  # never builds here: bin/setup --test does
    cached = testimage.CACHE / testimage.recipe_hash(binaries) / "disk.qcow2"
    need(cached.exists() or os.geteuid() == 0, "building the test image needs root")
    return testimage.build(binaries, log=sys.stderr)


@dataclass
class Cluster:
    count: int
    settings: config.Settings
    env: dict[str, str]
    disk: str

    def invoke(self, *args: str, check: bool = True, timeout: float = WAIT_S) -> proc.Result:
        """The `invoke` command line in this checkout, with this cluster's settings in INVOKE_* variables."""
        result = proc.run([sys.executable, "-m", "invoke", "-r", str(ROOT), *args], env=self.env, stream=sys.stderr,
                          check=False, timeout=timeout)
        if check and result.exit_code != 0:
            pytest.fail(f"invoke {' '.join(args)} exited {result.exit_code}:\n{result.stdout[-3000:]}")
        return result

    def launch(self, wait: bool = True) -> proc.Result:
        return self.invoke("launch", "--provider", "local", "--count", str(self.count), "--image", self.disk,
                           *(["--wait-cluster"] if wait else []))

    @property
    def nodes(self):
        return LocalProvider(self.settings).find()


@pytest.fixture(scope="module", params=SHAPES, ids=[f"{n}-node" for n in SHAPES])
def cluster(request: pytest.FixtureRequest, image: testimage.TestImage, tmp_path_factory: pytest.TempPathFactory):
    count: int = request.param
    keydir = tmp_path_factory.mktemp(f"vmtest{count}-key")
    key = keydir / "id_ed25519"
    proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vmtest", "-f", str(key)])
    settings_env = {
        "INVOKE_CLUSTER_NAME": f"vmtest{count}",
        "INVOKE_CLUSTER_SERVERS": str(count),  # every node a server (and a client): the design's small cluster
        "INVOKE_CLUSTER_SSH_PUBLIC_KEY": f"{key}.pub",
        "INVOKE_CLUSTER_SSH_PRIVATE_KEY": str(key),
        "INVOKE_CLUSTER_WAIT_TIMEOUT_S": str(WAIT_S),
        "INVOKE_LOCAL_ACCEL": ACCEL,
        "INVOKE_LOCAL_MEMORY_MB": str(MEMORY_MB),
        "INVOKE_LOCAL_CPUS": "1",
        "INVOKE_LOCAL_BOOT_TIMEOUT_S": "900",
        "INVOKE_LOCAL_SSH_USER": "debian",
        "INVOKE_LOCAL_SSH_PORT_BASE": str(free_base(count, 22200, tcp_port_free)),
        "INVOKE_LOCAL_CLUSTER_PORT_BASE": str(free_base(count, 42000, udp_port_free)),
        "INVOKE_LOCAL_KERNEL": str(image.kernel),
        "INVOKE_LOCAL_INITRD": str(image.initrd),
        "INVOKE_LOCAL_APPEND": image.append,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")} | settings_env
    raw = {
        "cluster": {"name": f"vmtest{count}", "provider": "local", "count": count, "servers": count,
                    "ssh_public_key": f"{key}.pub", "ssh_private_key": str(key)},
        "local": {"ssh_port_base": int(settings_env["INVOKE_LOCAL_SSH_PORT_BASE"]),
                  "cluster_port_base": int(settings_env["INVOKE_LOCAL_CLUSTER_PORT_BASE"]), "ssh_user": "debian"},
    }
    cl = Cluster(count, config.load(raw, ROOT), env, str(image.disk))

    def teardown() -> None:
        close_connections(cl.settings)
        cl.invoke("destroy", "--provider", "local", "--yes", check=False)
        shutil.rmtree(control_dir(), ignore_errors=True)
        control_dir.cache_clear()  # the next cluster (shape) makes a fresh one

    request.addfinalizer(teardown)  # before launch: a launch that fails half-way is torn down too
    started = time.monotonic()
    cl.launch(wait=True)
    print(f"\nvmtest{count}: launch --wait-cluster returned after {time.monotonic() - started:.0f}s", file=sys.stderr)
    return cl


# One SSH connection per node, reused by every check: a new connection costs an emulated guest seconds.
@functools.lru_cache(maxsize=None)
def control_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="vmtest-ssh-", dir="/tmp"))  # short: socket paths have at most 108 bytes


def ssh_argv(settings: config.Settings, node: str, *command: str) -> list[str]:
    """ssh through the ssh_config that launch wrote (so that file is tested too)."""
    return ["ssh", "-F", str(settings.cluster_dir / outputs.SSH_CONFIG), "-o", "BatchMode=yes",
            "-o", "ControlMaster=auto", "-o", f"ControlPath={control_dir()}/%C", "-o", "ControlPersist=600",
            node, "--", *command]


def close_connections(settings: config.Settings, names: list[str] | None = None) -> None:
    ssh_config = settings.cluster_dir / outputs.SSH_CONFIG
    if not ssh_config.exists():
        return
    for name in names or [n.name for n in LocalProvider(settings).find()]:
        proc.run(["ssh", "-o", f"ControlPath={control_dir()}/%C", "-F", str(ssh_config), "-O", "exit", name],
                 check=False, timeout=30)


def ssh(settings: config.Settings, node: str, command: str, check: bool = True, timeout: float = 300) -> str:
    """One command as root on the node."""
    result = proc.run(ssh_argv(settings, node, "sudo", "-n", "bash", "-c", proc.show([command])), check=False,
                      timeout=timeout)
    if check and result.exit_code != 0:
        pytest.fail(f"{node}: `{command}` exited {result.exit_code}: {result.stdout}{result.stderr}")
    return result.stdout


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.fixture(scope="module")
def rendered(cluster: Cluster):
    """What the nodes must have received: the same render launch did (gossip keys are kept in secrets/)."""
    nodes = cluster.nodes
    plan = make_plan(cluster.settings.cluster, (), {n.name: n.private_ip for n in nodes})
    return plan, nodeconfig.render_nodes(cluster.settings, plan)


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
        "machine-id": "cat /etc/machine-id",
        "host-key": "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub",
        "host-key-age": "echo $(( $(date +%s) - $(stat -c %Y /etc/ssh/ssh_host_ed25519_key) ))",
        "uptime": "cut -d' ' -f1 /proc/uptime",
        # Boot order: the zone is loaded by runcmd (cloud-final); the agents must start after it, not before.
        "final-start": "systemctl show -p ExecMainStartTimestampMonotonic --value cloud-final.service",
        "agents-enabled": "systemctl is-enabled consul.service nomad.service",
        "agent-errors": "journalctl -b -u consul.service -u nomad.service --no-pager -o cat | grep -E '\\[ERROR\\]'",
    }
    for unit in ("consul", "nomad"):
        cmds[f"unit:{unit}"] = (f"systemctl show -p ActiveState -p NRestarts -p InactiveExitTimestampMonotonic "
                                f"-p MainPID -p OOMScoreAdjust {unit}.service")
        cmds[f"user:{unit}"] = f"ps -o user= -p $(systemctl show -p MainPID --value {unit}.service)"
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


def props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def facts(cluster: Cluster) -> dict[str, dict[str, str]]:
    """Each node's probe results, taken once the cluster is healthy (launch --wait-cluster returned)."""
    nodes = cluster.nodes
    for n in nodes:
        ssh(cluster.settings, n.name, "cloud-init status --wait", check=False)
    return {n.name: probes(cluster.settings, n, nodes) for n in nodes}


def test_wait_cluster_saw_leaders_and_every_member(cluster: Cluster) -> None:
    """What --wait-cluster waited for, read again from the real CLIs on the first server."""
    first = cluster.nodes[0].name
    outputs_ = {name: ssh(cluster.settings, first, proc.show(command)) for name, command in health.CHECKS.items()}
    names = sorted(n.name for n in cluster.nodes)
    members = health.table(outputs_["consul_members"])
    assert sorted(r["Node"] for r in members if r["Status"] == "alive") == names, outputs_["consul_members"]
    assert all(r["Type"] == "server" for r in members)
    peers = health.table(outputs_["consul_raft"])
    assert sorted(r["Node"] for r in peers) == names and [r["State"] for r in peers].count("leader") == 1
    servers = health.table(outputs_["nomad_servers"])
    assert sorted(r["Name"].split(".")[0] for r in servers if r["Status"] == "alive") == names
    assert [r["Leader"] for r in servers].count("true") == 1, outputs_["nomad_servers"]
    clients = health.table(outputs_["nomad_nodes"])
    assert sorted(r["Name"] for r in clients if r["Status"] == "ready") == names, outputs_["nomad_nodes"]
    assert health.problems(health.expected(cluster.nodes), outputs_) == []


def test_status_shows_every_node_healthy(cluster: Cluster) -> None:
    out = cluster.invoke("status", "--provider", "local").stdout
    assert "health: ok" in out, out
    for n in cluster.nodes:
        row = next(line for line in out.splitlines() if line.startswith(n.name))
        assert "RUNNING" in row and re.search(r"\bok\b", row), row


def test_cloud_init_finished_without_errors(cluster: Cluster, facts) -> None:
    for n in cluster.nodes:
        f = facts[n.name]
        assert "status: done" in f["status"], f"{n.name}: {f['status']}"
        assert f["errors"].strip() == "[]", f"{n.name}: cloud-init errors {f['errors']}"
        assert f["warnings"].strip() == "", f"{n.name}: cloud-init logged warnings: {f['warnings']}"
        assert f["failed"].strip() == "", f"{n.name}: failed units: {f['failed']}"


def test_user_data_and_configs_arrived_unchanged(cluster: Cluster, facts, rendered) -> None:
    _, files = rendered
    for n in cluster.nodes:
        f = facts[n.name]
        assert f["hostname"].strip() == n.name
        assert f["user-data"].split()[0] == sha(files[n.name].user_data), n.name
        for path, want_owner, text in (
            (imagefacts.CONSUL_CONFIG_FILE, f"root:{imagefacts.CONSUL_GROUP}", files[n.name].consul_hcl),
            (imagefacts.NOMAD_CONFIG_FILE, "root:root", files[n.name].nomad_hcl),
        ):
            owner, mode, digest = f[f"file:{path}"].split()[:3]
            assert (owner, mode) == (want_owner, "640"), f"{n.name}:{path}"
            assert digest == sha(text), f"{n.name}:{path} differs from the rendered config"
        for d in (*imagefacts.CONFIG_DIRS, *imagefacts.DATA_DIRS):
            assert f[f"dir:{d.path}"].strip() == f"{d.owner}:{d.group} {d.mode:o}", f"{n.name}:{d.path}"


def test_firewall_zone_and_cluster_network(cluster: Cluster, facts) -> None:
    nodes = cluster.nodes
    for n in nodes:
        f = facts[n.name]
        assert f["fw-state"].strip() == "running"
        assert f["fw-sources"].split() == [cluster.settings.cluster.cidr]
        assert {"ssh", *imagefacts.FIREWALLD_SERVICES} <= set(f["fw-services"].split())
        for service, ports in imagefacts.FIREWALLD_SERVICES.items():
            assert set(f[f"fw-ports:{service}"].split()) == {f"{p.port}/{p.protocol}" for p in ports}, service
        assert f" {n.private_ip}/" in f["cluster-nic"]
        for other in nodes:
            if other.name != n.name:
                assert f[f"ping:{other.private_ip}.rc"] == "0", f"{n.name} -> {other.private_ip}"


def test_agents_started_after_the_zone_as_their_users_without_restarts(cluster: Cluster, facts) -> None:
    """The image ships the units disabled; runcmd (in cloud-final, after the zone is written) enables and starts
    them. A start before cloud-final, a restart or a unit stopped by its start limit would show here."""
    for n in cluster.nodes:
        f = facts[n.name]
        assert f["agents-enabled"].split() == ["enabled", "enabled"], n.name
        final = int(f["final-start"].strip())
        consul, nomad = props(f["unit:consul"]), props(f["unit:nomad"])
        for name, unit in (("consul", consul), ("nomad", nomad)):
            assert unit["ActiveState"] == "active", f"{n.name}: {name} {unit}"
            assert int(unit["InactiveExitTimestampMonotonic"]) > final, f"{n.name}: {name} started before runcmd"
            assert unit["NRestarts"] == "0", f"{n.name}: {name} was restarted {unit['NRestarts']} times"
        assert int(consul["InactiveExitTimestampMonotonic"]) <= int(nomad["InactiveExitTimestampMonotonic"])
        assert consul["OOMScoreAdjust"] == str(imagefacts.CONSUL_OOM_SCORE_ADJUST)
        assert nomad["OOMScoreAdjust"] == str(imagefacts.NOMAD_OOM_SCORE_ADJUST)
        assert f["user:consul"].strip() == imagefacts.CONSUL_USER and f["user:nomad"].strip() == "root"


# The [ERROR] lines the agents log on a healthy first boot here, each for a reason that is not a config fault.
# Anything else (a rejected key, a bind failure, a permission problem ...) fails the test.
EXPECTED_ERRORS = {
    # Before the first election: every request that needs a leader fails and is retried.
    "no leader yet": r"No cluster leader|error looking up Nomad servers in Consul|eval broker disabled|"
                     r"Error when computing next state: error=\"context canceled\"|"
                     r"CA has not finished initializing|"
                     # A lone server's autopilot, once, while it takes leadership (bootstrap_expect = 1).
                     r"autopilot: Failed to reconcile current state with the desired state",
    # Elections under TCG emulation: a slow peer calls another election; raft says so.
    "election churn": r"peer has newer term|failed to decode incoming command|failed to make requestVote RPC|"
                      r"failed to appendEntries to|failed to heartbeat to|"
                      # Consul's check of Nomad's health endpoint while a Nomad election is under way.
                      r"path=/v1/agent/health\?type=server .*Not ready to serve consistent reads",
    # memberlist's 500 ms probes and 1 s TCP fallback are tight for emulated guests sharing 2 cores.
    "slow probes (TCG)": r"memberlist: Failed fallback TCP ping|memberlist: Push/Pull with .* failed",
    # The RPC multiplexer's 30 s keepalives and its writes also time out between emulated guests; the agents
    # redial (seen on a fresh clone's CI run: "nomad.rpc: yamux: Failed to write header: ... use of closed
    # network connection" on one server during formation).
    "slow RPC (TCG)": r"yamux: keepalive failed|yamux: Failed to write|multiplex(?:_v2)? conn accept failed|"
                      r"use of closed network connection|rpc error making call: EOF",
    # The test image has no Docker: the docker driver is undetected and says so once at start.
    "no Docker here": r"client\.driver_mgr\.docker: failed to list pause containers",
}


def test_agents_logged_no_errors_but_the_expected_ones(cluster: Cluster, facts) -> None:
    pattern = re.compile("|".join(f"(?:{p})" for p in EXPECTED_ERRORS.values()))
    for n in cluster.nodes:
        unexpected = [line for line in facts[n.name]["agent-errors"].splitlines() if not pattern.search(line)]
        assert unexpected == [], f"{n.name}: the agents logged errors:\n" + "\n".join(unexpected)


def test_clones_have_their_own_identity(cluster: Cluster, facts) -> None:
    """Every node made its own machine-id and SSH host keys on this boot (nothing shared through the image)."""
    seen: dict[str, set[str]] = {"machine-id": set(), "host-key": set()}
    for n in cluster.nodes:
        f = facts[n.name]
        assert len(f["machine-id"].strip()) == 32, n.name
        for what, value in (("machine-id", f["machine-id"].strip()), ("host-key", f["host-key"].split()[1])):
            assert value not in seen[what], f"{n.name} shares its {what} with another node"
            seen[what].add(value)
        assert float(f["host-key-age"]) <= float(f["uptime"]), f"{n.name}: host key older than this boot"


@pytest.mark.parametrize("check", imagechecks.APPLICABLE_ANYWHERE)
def test_image_verification_checks_that_apply_here(cluster: Cluster, check: str) -> None:
    """The image suite's checks that hold on any host built to imagefacts (the rest need AlmaLinux and Docker)."""
    for n in cluster.nodes:

        def run(command: str, node: str = n.name) -> proc.Result:
            return proc.run(ssh_argv(cluster.settings, node, "sudo", "-n", "bash", "-c", proc.show([command])),
                            check=False, timeout=120)

        assert imagechecks.ALL[check](run) == [], n.name


def test_gossip_is_encrypted_with_the_rendered_keys(cluster: Cluster) -> None:
    rendered_keys = keys.load(keys.key_path(cluster.settings))
    first = cluster.nodes[0].name
    consul = ssh(cluster.settings, first, "consul keyring -list")
    pools = re.findall(r"^(WAN|\S+ \(LAN\)):\n((?:\s+\S+ \[\d+/\d+\]\n?)+)", consul, re.M)
    assert [name for name, _ in pools] == ["WAN", f"{cluster.settings.cluster.datacenter} (LAN)"], consul
    for _, listing in pools:  # one key per pool: the rendered one, installed on every member that answered
        assert [k for k, _, _ in re.findall(r"(\S+) \[(\d+)/(\d+)\]", listing)] == [rendered_keys.consul], consul
    lan = re.findall(r"(\S+) \[(\d+)/(\d+)\]", pools[1][1])[0]
    assert lan[1] == lan[2] == str(cluster.count), consul
    # Nomad 1.6: `nomad operator gossip keyring list` prints "Key" and one key a line.
    nomad = ssh(cluster.settings, first, "nomad operator gossip keyring list")
    assert nomad.split()[-2:] == ["Key", rendered_keys.nomad], nomad


def test_a_consul_agent_with_another_key_cannot_join(cluster: Cluster) -> None:
    """A second Consul agent on a node (own ports, the same address) with a fresh key tries to join the cluster."""
    first = cluster.nodes[0]
    other = cluster.nodes[-1]
    script = (
        "set -e; rm -rf /tmp/intruder; mkdir /tmp/intruder; key=$(consul keygen); "
        f"consul agent -node intruder -data-dir /tmp/intruder -bind {first.private_ip} -client 127.0.0.1 "
        "-serf-lan-port 18301 -serf-wan-port 18302 -server-port 18300 -http-port 18500 -dns-port -1 "
        "-grpc-port -1 -encrypt \"$key\" >/tmp/intruder/log 2>&1 & pid=$!; "
        "for _ in $(seq 60); do consul members -http-addr=127.0.0.1:18500 >/dev/null 2>&1 && break; sleep 2; done; "
        # The cluster's LAN serf port, given explicitly: without one, join would use the intruder's own (18301).
        f"consul join -http-addr=127.0.0.1:18500 {other.private_ip}:8301 2>&1 && joined=yes || joined=no; "
        "sleep 5; kill $pid; wait $pid || true; echo \"joined=$joined\"; cat /tmp/intruder/log; rm -rf /tmp/intruder"
    )
    since = ssh(cluster.settings, other.name, "date +%s").strip()
    out = ssh(cluster.settings, first.name, script, timeout=400)
    assert "joined=no" in out and "No installed keys could decrypt the message" in out, out
    members = ssh(cluster.settings, other.name, "consul members")
    assert "intruder" not in members, members
    # Refused for its key, not for anything else: the member it called says so.
    refused = ssh(cluster.settings, other.name, f"journalctl -u consul.service --since @{since} --no-pager -o cat")
    assert "No installed keys could decrypt the message" in refused, refused[-3000:]


def leaders(settings: config.Settings, node: str) -> tuple[bool, bool]:
    raft = ssh(settings, node, "consul operator raft list-peers", check=False, timeout=60)
    servers = ssh(settings, node, "nomad server members", check=False, timeout=60)
    consul = any(r.get("State") == "leader" for r in health.table(raft))
    nomad = any(r.get("Leader") == "true" and r.get("Status") == "alive" for r in health.table(servers))
    return consul, nomad


def test_losing_one_server_keeps_a_leader_and_relaunch_rejoins_it(cluster: Cluster) -> None:
    if cluster.count < 3:
        pytest.skip("one server: there is no quorum to keep (the 3-node run shows it)")
    lost = cluster.nodes[-1].name
    record = next(r for r in LocalProvider(cluster.settings).records() if r.name == lost)
    close_connections(cluster.settings, [lost])
    assert proc.terminate(record.pid, "qemu-system", record.overlay)
    assert {n.name: n.state for n in cluster.nodes}[lost] == "STOPPED"
    survivor = cluster.nodes[0].name
    deadline = time.monotonic() + 300
    while (found := leaders(cluster.settings, survivor)) != (True, True) and time.monotonic() < deadline:
        time.sleep(5)
    assert found == (True, True), f"with {lost} gone: consul leader {found[0]}, nomad leader {found[1]}"
    cluster.launch(wait=True)  # boots the stopped VM from its own disk; --wait-cluster: it is a member again
    assert {n.name: n.state for n in cluster.nodes} == {n.name: "RUNNING" for n in cluster.nodes}
    assert health.check(cluster.settings, cluster.nodes) == []


def test_destroy_leaves_nothing_behind(cluster: Cluster) -> None:
    provider = LocalProvider(cluster.settings)
    records = provider.records()
    close_connections(cluster.settings)
    out = cluster.invoke("destroy", "--provider", "local", "--yes").stdout
    assert f"{len(records)} instances terminated" in out, out
    for r in records:
        assert not proc.is_ours(r.pid, "qemu-system", r.overlay)
    leftover = []
    for p in Path("/proc").iterdir():
        argv = proc.cmdline(int(p.name)) if p.name.isdigit() else []
        if str(cluster.settings.cluster_dir) in " ".join(argv):
            leftover.append(" ".join(argv))
    assert leftover == [], "processes of the cluster still run"
    left = sorted(str(p.relative_to(cluster.settings.cluster_dir)) for p in cluster.settings.cluster_dir.rglob("*")) \
        if cluster.settings.cluster_dir.exists() else []
    assert left == [], left
    assert provider.find() == []
