"""Issue 9 through the CLI (`invoke launch/status/destroy` as subprocesses against the emulator): the cluster's
network security group, relaunch after destroy, 429 on every kind of call, hostname conflicts, and messages.

The NSG's effect is judged by `reaches` below, an evaluator of OCI's documented semantics written for this test
(a packet is admitted when any security list of the subnet or any NSG of the destination VNIC has a matching
stateful ingress rule), applied to the rules the emulator stored; it shares no code with nomadic.
"""

from __future__ import annotations

import ipaddress
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.ociemu import Emulator, Fault
from tests.ociemu.server import IMAGE
from tests.ociemu.testing import env_for
from tests.test_oci_e2e import invoke, project

TCP, UDP = "6", "17"
CLUSTER_PORTS = [(TCP, 8300), (TCP, 8301), (UDP, 8301), (TCP, 4647), (TCP, 4648), (UDP, 4648),
                 (TCP, 20000), (UDP, 20000), (TCP, 26000), (TCP, 32000), (UDP, 32000)]
PRIVATE_PORTS = [(TCP, 8300), (TCP, 8301), (UDP, 8301), (TCP, 8500), (TCP, 8600), (UDP, 8600), (TCP, 4646),
                 (TCP, 4647), (TCP, 4648), (UDP, 4648), (TCP, 20000), (TCP, 31999)]
OUTSIDE = "203.0.113.7"  # TEST-NET-3: an address outside the cluster (evaluated only, never contacted)


def _rule_admits(rule: dict[str, Any], protocol: str, port: int, source_ok: bool) -> bool:
    if rule.get("isStateless") or not source_ok:
        return False
    if rule["protocol"] not in ("all", protocol):
        return False
    if rule["protocol"] == "all":
        return True
    options = rule.get("tcpOptions" if protocol == TCP else "udpOptions") or {}
    ports = options.get("destinationPortRange")
    return ports is None or ports["min"] <= port <= ports["max"]


def reaches(emu: Emulator, source_ip: str, source_nsgs: list[str], dest: dict[str, Any], protocol: str, port: int) -> bool:
    """Whether OCI would admit (source -> dest VNIC, protocol, port) given the stored security lists and NSGs."""
    def cidr_ok(cidr: str) -> bool:
        return ipaddress.ip_address(source_ip) in ipaddress.ip_network(cidr)

    for sl_id in emu.subnet_security_lists:
        for rule in emu.security_lists[sl_id]["ingressSecurityRules"]:
            if _rule_admits(rule, protocol, port, cidr_ok(rule["source"])):
                return True
    for nsg_id in dest.get("nsgIds") or []:
        for rule in emu.nsgs[nsg_id]["rules"].values():
            if rule["direction"] != "INGRESS":
                continue
            if rule.get("sourceType") == "NETWORK_SECURITY_GROUP":
                ok = rule["source"] in source_nsgs
            else:
                ok = cidr_ok(rule["source"])
            if _rule_admits(rule, protocol, port, ok):
                return True
    return False


def vnics(emu: Emulator, cluster: str = "nomadic") -> list[dict[str, Any]]:
    with emu.lock:
        return [i.vnic for i in emu.instances.values()
                if i.data["freeformTags"].get("nomadic-cluster") == cluster and emu._state(i) != "TERMINATED"]


def live_nsgs(emu: Emulator) -> list[str]:
    return [n for n, g in emu.nsgs.items() if g["data"]["lifecycleState"] != "TERMINATED"]


@pytest.fixture
def emu():
    with Emulator(micro_limit=10) as e:
        yield e


def launch(root: Path, env: dict[str, str], count: int = 3, *extra: str) -> subprocess.CompletedProcess:
    return invoke(root, env, "launch", "--count", str(count), "--allow-paid", "--image-id", IMAGE, *extra)


def test_three_nodes_reach_each_other_on_cluster_ports_and_nothing_else_does(emu: Emulator, tmp_path: Path) -> None:
    root, env = project(tmp_path), env_for(emu, tmp_path)
    run = launch(root, env)
    assert run.returncode == 0, run.stdout + run.stderr
    nodes = vnics(emu)
    assert len(nodes) == 3 and len(live_nsgs(emu)) == 1
    for src in nodes:
        for dst in nodes:
            if src is dst:
                continue
            for protocol, port in CLUSTER_PORTS:
                assert reaches(emu, src["privateIp"], src["nsgIds"], dst, protocol, port), (src["privateIp"], dst["privateIp"], protocol, port)
    for dst in nodes:
        for protocol, port in PRIVATE_PORTS:
            assert not reaches(emu, OUTSIDE, [], dst, protocol, port), (protocol, port)
        # a host of the VCN that is not in the group reaches no cluster port either
        assert not any(reaches(emu, "10.0.0.250", [], dst, p, n) for p, n in CLUSTER_PORTS)
        assert reaches(emu, OUTSIDE, [], dst, TCP, 22)  # SSH stays as the default security list has it
        # nothing else: the HTTP APIs stay behind the SSH tunnel even for members
        assert not reaches(emu, nodes[0]["privateIp"], nodes[0]["nsgIds"], dst, TCP, 4646)
        assert not reaches(emu, nodes[0]["privateIp"], nodes[0]["nsgIds"], dst, TCP, 8500)


def test_launch_destroy_launch_again_leaves_no_group_behind(emu: Emulator, tmp_path: Path) -> None:
    root, env = project(tmp_path), env_for(emu, tmp_path)
    first = launch(root, env)
    assert first.returncode == 0, first.stdout + first.stderr
    first_ids = {i["id"] for i in emu.live("nomadic")}
    gone = invoke(root, env, "destroy", "--yes")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert emu.live("nomadic") == [] and live_nsgs(emu) == []
    assert "deleted network security group nomadic-cluster" in gone.stdout
    again = launch(root, env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "InvalidatedRetryToken" not in again.stdout
    second = emu.live("nomadic")
    assert len(second) == 3 and not first_ids & {i["id"] for i in second}
    assert len(live_nsgs(emu)) == 1 and all(v["nsgIds"] == live_nsgs(emu) for v in vnics(emu))


@pytest.mark.parametrize("replay", [False, True], ids=["invalidated-token", "replayed-terminated"])
def test_relaunch_with_a_stale_nonce_moves_to_fresh_tokens(emu: Emulator, tmp_path: Path, replay: bool) -> None:
    """Records restored from a backup after a destroy: both documented answers to an old token are survived."""
    emu.replay_terminated = replay
    root, env = project(tmp_path), env_for(emu, tmp_path)
    assert launch(root, env, 2).returncode == 0
    nonce = root / "build" / "nomadic" / "oci-launch-nonce"
    saved = nonce.read_text()
    assert invoke(root, env, "destroy", "--yes").returncode == 0 and not nonce.exists()
    nonce.write_text(saved)
    again = launch(root, env, 2)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(emu.live("nomadic")) == 2 and all(i["lifecycleState"] == "RUNNING" for i in emu.live("nomadic"))
    if not replay:
        assert "retry token invalidated" in again.stdout


def test_an_existing_node_without_the_group_gets_it(emu: Emulator, tmp_path: Path) -> None:
    root, env = project(tmp_path), env_for(emu, tmp_path)
    assert launch(root, env, 2).returncode == 0
    with emu.lock:
        for inst in emu.instances.values():
            inst.vnic["nsgIds"] = []  # nodes launched before this version
    run = launch(root, env, 2)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("added to network security group nomadic-cluster") == 2
    assert all(v["nsgIds"] == live_nsgs(emu) for v in vnics(emu)) and emu.calls["update_vnic"] == 2


@pytest.mark.parametrize("operation", ["GetInstance", "GetVnic", "GetSubnet", "ListInstances", "TerminateInstance"])
def test_one_429_on_any_call_is_survived(emu: Emulator, tmp_path: Path, operation: str) -> None:
    root, env = project(tmp_path), env_for(emu, tmp_path)
    emu.inject(Fault("*", operation, 429, "TooManyRequests", "Too many requests for the user"))
    up = launch(root, env, 2)
    assert up.returncode == 0, up.stdout + up.stderr
    assert len(emu.live("nomadic")) == 2 and len(emu.launch_bodies) == 2
    down = invoke(root, env, "destroy", "--yes")
    assert down.returncode == 0, down.stdout + down.stderr
    assert emu.live("nomadic") == [] and emu.faults[0].times == 0  # the 429 did happen
    assert "throttled (429)" in up.stdout + down.stdout or operation in ("GetSubnet", "ListInstances")


def test_a_foreign_hostname_label_is_refused_before_anything_is_created(emu: Emulator, tmp_path: Path) -> None:
    emu.add_instance("someone-else", "10.0.0.60", hostname="nomadic-02")
    root, env = project(tmp_path), env_for(emu, tmp_path)
    run = launch(root, env, 2)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "hostname labels of cluster nomadic are already used" in run.stderr and "nomadic-02 (at 10.0.0.60)" in run.stderr
    assert "cluster.name" in run.stderr
    assert emu.launch_calls() == 0 and emu.calls["create_network_security_group"] == 0


def test_a_security_list_open_to_the_internet_is_warned_about(emu: Emulator, tmp_path: Path) -> None:
    sl = emu.security_lists[emu.subnet_security_lists[0]]
    sl["ingressSecurityRules"].append({"protocol": "all", "source": "0.0.0.0/0", "sourceType": "CIDR_BLOCK", "isStateless": False})
    root, env = project(tmp_path), env_for(emu, tmp_path)
    run = launch(root, env, 1)
    assert run.returncode == 0, run.stderr
    assert "admits cluster ports from 0.0.0.0/0" in run.stdout and "tcp 8300" in run.stdout


# -- the messages of issue 9, item 5 ---------------------------------------------------------------------------


def test_a_rerun_waits_for_provisioning_nodes(emu: Emulator, tmp_path: Path) -> None:
    root, env = project(tmp_path), env_for(emu, tmp_path)
    tags = {"nomadic-cluster": "nomadic", "nomadic-node": "nomadic-01", "nomadic-role": "both", "nomadic-address": "10.0.0.2"}
    iid = emu.add_instance("nomadic-01", "10.0.0.2", tags=tags, hostname="nomadic-01")
    emu.provisioning_delay = 8.0  # long enough to still be PROVISIONING when find() runs on a loaded machine
    with emu.lock:
        emu.instances[iid].created = time.monotonic()  # an earlier run's node, still PROVISIONING
    run = launch(root, env, 1)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "waiting for nomadic-01 (PROVISIONING)" in run.stdout and "nothing to launch" in run.stdout
    inventory = (root / "build" / "nomadic" / "inventory.ini").read_text()
    assert "nomadic-01" in inventory and "PROVISIONING" not in run.stdout.split("nothing to launch")[1]
    assert emu.launch_calls() == 0


@pytest.mark.parametrize("task", ["status", "destroy"])
def test_an_unreachable_api_is_reported_within_seconds(tmp_path: Path, task: str) -> None:
    with Emulator() as emu:
        env = env_for(emu, tmp_path)
    root = project(tmp_path)  # the emulator is stopped: nothing listens on that loopback port
    started = time.monotonic()
    run = invoke(root, env, task, "--yes") if task == "destroy" else invoke(root, env, task)
    assert run.returncode == 1 and "cannot reach the OCI API at http://127.0.0.1" in run.stderr
    assert time.monotonic() - started < 20 and "Traceback" not in run.stderr


def test_the_tenancys_own_limit_is_not_called_the_free_tier(emu: Emulator, tmp_path: Path) -> None:
    emu.micro_limit = 1  # the tenancy's service limit, below Always Free's 2
    root, env = project(tmp_path), env_for(emu, tmp_path)
    run = launch(root, env, 2)
    assert run.returncode == 1
    assert "service limit" in run.stderr and "standard-e2-micro-core-count" in run.stderr
    assert "Always Free allows" not in run.stderr
    assert "rerun 'invoke launch'" not in run.stderr  # a rerun meets the same limit


def test_status_when_the_only_server_is_stopped(emu: Emulator, tmp_path: Path) -> None:
    root, env = project(tmp_path), env_for(emu, tmp_path, INVOKE_CLUSTER_SERVERS="1")
    assert launch(root, env, 2).returncode == 0
    server = next(i for i in emu.live("nomadic") if i["freeformTags"]["nomadic-role"] in ("server", "both"))
    emu.stop_instance(server["id"])
    run = invoke(root, env, "status")
    assert run.returncode == 0, run.stderr
    assert "no server node with an address" not in run.stdout
    assert "no server node is running (nomadic-01 is STOPPED); 'invoke launch' starts stopped nodes" in run.stdout
