"""The cluster plan: from a node count and a network to each node's name, role and address (pure)."""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from typing import Iterable, Mapping

from .config import ClusterSettings
from .errors import PlanError

# Largest cluster in which servers also run workloads; past it servers are dedicated.
SHARED_SERVER_LIMIT = 5
DEFAULT_LARGE_SERVERS = 3


class Role(str, enum.Enum):
    SERVER = "server"
    CLIENT = "client"
    BOTH = "both"

    @property
    def is_server(self) -> bool:
        return self in (Role.SERVER, Role.BOTH)

    @property
    def is_client(self) -> bool:
        return self in (Role.CLIENT, Role.BOTH)


@dataclass(frozen=True)
class Node:
    index: int
    name: str
    role: Role
    address: str

    @property
    def hostname(self) -> str:
        """OCI's hostname_label and the VM's hostname: the node name is already a valid label."""
        return self.name


@dataclass(frozen=True)
class Plan:
    cluster: str
    datacenter: str
    cidr: str
    nodes: tuple[Node, ...]
    warnings: tuple[str, ...]

    @property
    def servers(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role.is_server)

    @property
    def clients(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role.is_client)

    @property
    def bootstrap_expect(self) -> int:
        return len(self.servers)

    @property
    def server_addresses(self) -> tuple[str, ...]:
        return tuple(n.address for n in self.servers)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


def node_name(cluster: str, index: int) -> str:
    return f"{cluster}-{index:02d}" if index < 100 else f"{cluster}-{index}"


def server_count(count: int, servers: int) -> tuple[int, tuple[str, ...]]:
    """How many servers, and the warnings that choice deserves."""
    if count < 1:
        raise PlanError(f"cluster.count = {count}: a cluster needs at least 1 node", hint="pass --count 1 or more")
    if servers < 0:
        raise PlanError(f"cluster.servers = {servers} is negative", hint="pass --servers 1, 3 or 5, or 0 for automatic")
    if servers > count:
        raise PlanError(
            f"cluster.servers = {servers} is more than cluster.count = {count}",
            hint="servers are chosen among the nodes; lower --servers or raise --count",
        )
    chosen = servers or (count if count <= SHARED_SERVER_LIMIT else DEFAULT_LARGE_SERVERS)
    warnings: list[str] = []
    if chosen == 2:
        warnings.append(
            "2 servers cannot lose one: if either stops, Consul and Nomad lose their leader. "
            "Prefer 1, 3 or 5 servers (e.g. --servers 1)."
        )
    elif chosen % 2 == 0:
        warnings.append(
            f"{chosen} servers tolerate no more failures than {chosen - 1}; prefer an odd count (1, 3 or 5)."
        )
    if chosen > 7:
        warnings.append(f"{chosen} servers slow down every write; 3 or 5 is the usual choice.")
    return chosen, tuple(warnings)


def usable_addresses(cidr: str) -> list[str]:
    network = ipaddress.IPv4Network(cidr, strict=True)
    hosts = list(network.hosts()) if network.prefixlen < 31 else []
    # OCI reserves the network, gateway (first host) and broadcast addresses; hosts() drops two of them.
    return [str(a) for a in hosts[1:]]


def make_plan(
    settings: ClusterSettings,
    used: Iterable[str] = (),
    existing: Mapping[str, str] | None = None,
) -> Plan:
    """Plan `settings.count` nodes; `used` addresses are avoided, `existing` (name -> address) are kept."""
    count, servers = settings.count, settings.servers
    n_servers, warnings = server_count(count, servers)
    existing = dict(existing or {})
    taken = set(used) | set(existing.values())
    free = [a for a in usable_addresses(settings.cidr) if a not in taken]
    needed = sum(1 for i in range(1, count + 1) if node_name(settings.name, i) not in existing)
    if needed > len(free):
        raise PlanError(
            f"cluster.cidr = {settings.cidr} has {len(free)} free addresses, {needed} nodes need one each",
            hint="use a larger subnet or fewer nodes",
        )
    shared = count <= SHARED_SERVER_LIMIT or n_servers == count
    nodes = []
    free_iter = iter(free)
    for i in range(1, count + 1):
        name = node_name(settings.name, i)
        if i <= n_servers:
            role = Role.BOTH if shared else Role.SERVER
        else:
            role = Role.CLIENT
        address = existing.get(name) or next(free_iter)
        nodes.append(Node(index=i, name=name, role=role, address=address))
    return Plan(
        cluster=settings.name,
        datacenter=settings.datacenter,
        cidr=settings.cidr,
        nodes=tuple(nodes),
        warnings=warnings,
    )
