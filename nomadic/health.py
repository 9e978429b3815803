"""Cluster health over SSH: Consul and Nomad have a leader and every node is a member (argv builders and parsers pure)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from . import proc
from .outputs import KNOWN_HOSTS, SSH_CONFIG
from .config import Settings
from .errors import CloudError, NomadicError
from .providers.base import NodeStatus

# What is asked on a server, and how: the CLIs talk to their agent on loopback (Consul's client_addr,
# Nomad's http addresses include 127.0.0.1).
CHECKS: dict[str, tuple[str, ...]] = {
    "consul_members": ("consul", "members"),
    "consul_raft": ("consul", "operator", "raft", "list-peers"),
    "nomad_servers": ("nomad", "server", "members"),
    "nomad_nodes": ("nomad", "node", "status"),
}
SSH_TIMEOUT_S = 10
COMMAND_TIMEOUT_S = 30.0

Runner = Callable[[Sequence[str]], "proc.Result"]


def ssh_argv(node: NodeStatus, key: Path, known_hosts: Path, command: Sequence[str]) -> list[str]:
    """ssh to a node, non-interactively, trusting its host key on first use (recorded in the cluster's file)."""
    return [
        "ssh",
        "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={SSH_TIMEOUT_S}",
        "-o", "StrictHostKeyChecking=accept-new",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "IdentitiesOnly=yes",
        "-i", str(key),
        "-p", str(node.ssh_port),
        "-l", node.ssh_user,
        node.ssh_host or node.private_ip,
        "--",
        *command,
    ]  # fmt: skip


def table(text: str) -> list[dict[str, str]]:
    """Rows of a CLI table whose columns are separated by two or more spaces (Consul/Nomad columnize)."""
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    header = re.split(r"\s{2,}", lines[0].strip())
    rows = []
    for line in lines[1:]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == len(header):
            rows.append(dict(zip(header, cells)))
    return rows


@dataclass(frozen=True)
class Expected:
    servers: tuple[str, ...]
    clients: tuple[str, ...]
    every: tuple[str, ...]


def expected(nodes: Sequence[NodeStatus]) -> Expected:
    return Expected(
        servers=tuple(sorted(n.name for n in nodes if n.role.is_server)),
        clients=tuple(sorted(n.name for n in nodes if n.role.is_client)),
        every=tuple(sorted(n.name for n in nodes)),
    )


def problems(want: Expected, outputs: Mapping[str, str]) -> list[str]:
    """What keeps the cluster from healthy, given each check's output (empty list: healthy)."""
    found: list[str] = []
    members = {r.get("Node", ""): r.get("Status", "") for r in table(outputs.get("consul_members", ""))}
    missing = [n for n in want.every if members.get(n) != "alive"]
    if missing:
        found.append(f"consul: not alive members: {', '.join(missing)}")
    peers = table(outputs.get("consul_raft", ""))
    if not any(r.get("State") == "leader" for r in peers):
        found.append("consul: no raft leader")
    servers = table(outputs.get("nomad_servers", ""))
    alive_servers = {r.get("Name", "").split(".")[0] for r in servers if r.get("Status") == "alive"}
    missing = [n for n in want.servers if n not in alive_servers]
    if missing:
        found.append(f"nomad: servers not alive: {', '.join(missing)}")
    if not any(r.get("Leader") == "true" for r in servers):
        found.append("nomad: no leader")
    ready = {r.get("Name", "") for r in table(outputs.get("nomad_nodes", "")) if r.get("Status") == "ready"}
    missing = [n for n in want.clients if n not in ready]
    if missing:
        found.append(f"nomad: clients not ready: {', '.join(missing)}")
    return found


class _Unreachable(Exception):
    pass


def run_ssh(argv: Sequence[str]) -> proc.Result:
    return proc.run(argv, check=False, timeout=COMMAND_TIMEOUT_S)


def node_health(want: Expected, outputs: Mapping[str, str]) -> dict[str, str]:
    """Per node: "ok", or what its agents lack (consul member, nomad server, nomad client)."""
    members = {r.get("Node", ""): r.get("Status", "") for r in table(outputs.get("consul_members", ""))}
    servers = {r.get("Name", "").split(".")[0]: r.get("Status", "") for r in table(outputs.get("nomad_servers", ""))}
    clients = {r.get("Name", ""): r.get("Status", "") for r in table(outputs.get("nomad_nodes", ""))}
    result = {}
    for name in want.every:
        issues = []
        if members.get(name) != "alive":
            issues.append(f"consul {members.get(name) or 'absent'}")
        if name in want.servers and servers.get(name) != "alive":
            issues.append(f"nomad server {servers.get(name) or 'absent'}")
        if name in want.clients and clients.get(name) != "ready":
            issues.append(f"nomad client {clients.get(name) or 'absent'}")
        result[name] = ", ".join(issues) or "ok"
    return result


@dataclass(frozen=True)
class Report:
    problems: list[str]  # empty: healthy
    nodes: dict[str, str]  # node -> "ok" or what is wrong; empty when no server answered


def check(settings: Settings, nodes: Sequence[NodeStatus], run: Runner = run_ssh) -> list[str]:
    """Ask one reachable server; return the problems (empty: healthy). Unreachable is a problem, not an error."""
    return inspect(settings, nodes, run).problems


def inspect(settings: Settings, nodes: Sequence[NodeStatus], run: Runner = run_ssh) -> Report:
    """Like check, with a verdict per node as well."""
    want = expected(nodes)
    servers = [n for n in sorted(nodes, key=lambda n: n.name) if n.role.is_server and (n.ssh_host or n.private_ip)]
    if not servers:
        return Report(["no server node with an address to ask"], {})
    key = settings.cluster.ssh_private_key.expanduser()
    known_hosts = settings.cluster_dir / KNOWN_HOSTS
    known_hosts.parent.mkdir(parents=True, exist_ok=True)
    unreachable = []
    for server in servers:
        outputs: dict[str, str] = {}
        try:
            for name, command in CHECKS.items():
                result = run(ssh_argv(server, key, known_hosts, command))
                if result.exit_code == 255:  # ssh's own failure: try the next server
                    tail = (result.stderr or result.stdout).strip().splitlines()
                    raise _Unreachable(tail[-1] if tail else "ssh failed")
                outputs[name] = result.stdout if result.exit_code == 0 else ""
        except _Unreachable as exc:
            unreachable.append(f"{server.name}: {exc}")
            continue
        except NomadicError as exc:  # ssh missing, or timed out
            unreachable.append(f"{server.name}: {exc.message}")
            continue
        return Report(problems(want, outputs), node_health(want, outputs))
    return Report([f"no server reachable over SSH ({'; '.join(unreachable)})"], {})


def wait(
    settings: Settings,
    nodes: Sequence[NodeStatus],
    say: Callable[[str], None],
    run: Runner = run_ssh,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    interval: float = 10.0,
) -> None:
    """Poll until healthy or cluster.wait_timeout_s has passed (then CloudError naming what is still wrong)."""
    timeout = settings.cluster.wait_timeout_s
    deadline = clock() + timeout
    last: list[str] | None = None
    while True:
        found = check(settings, nodes, run)
        if not found:
            say(f"cluster healthy: Consul and Nomad have a leader and all {len(nodes)} nodes are members")
            return
        if found != last:
            say("waiting for the cluster: " + "; ".join(found))
            last = found
        if clock() + interval > deadline:
            raise CloudError(
                f"cluster not healthy after {timeout:.0f}s: {'; '.join(found)}",
                hint=f"look at the nodes with 'ssh -F {settings.cluster_dir / SSH_CONFIG} <node> "
                "journalctl -u consul -u nomad', or raise cluster.wait_timeout_s",
            )
        sleep(interval)
