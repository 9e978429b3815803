"""The cluster plan: from a node count and a network to each node's name, role and address (pure)."""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

from .config import CLUSTER_NAME_RE, ClusterSettings
from .errors import PlanError

# Largest cluster in which servers also run workloads; past it servers are dedicated.
SHARED_SERVER_LIMIT = 5
DEFAULT_LARGE_SERVERS = 3
# Consul and Nomad datacenter names: letters, digits, '-' and '_' (they end up in DNS names and API paths).
DATACENTER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
# OCI reserves the first two addresses of a subnet (network, gateway) and the last one (broadcast).
RESERVED_LOW = 2
RESERVED_HIGH = 1


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
    """How many servers (servers = 0 means automatic), and the warnings that choice deserves."""
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


def _network(cidr: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(cidr, strict=True)
    except ValueError as exc:
        raise PlanError(
            f"cluster.cidr = {cidr!r} is not an IPv4 network: {exc}",
            hint="give the subnet's CIDR block, e.g. 10.0.0.0/24",
        ) from None


def _usable_range(network: ipaddress.IPv4Network) -> range:
    """Integer addresses a node may take: all but the subnet's reserved ones (empty below /30)."""
    first = int(network.network_address) + RESERVED_LOW
    last = int(network.broadcast_address) - RESERVED_HIGH
    return range(first, last + 1) if network.prefixlen <= 30 else range(0)


def _iter_usable(network: ipaddress.IPv4Network) -> Iterator[str]:
    for value in _usable_range(network):
        yield str(ipaddress.IPv4Address(value))


def usable_addresses(cidr: str, limit: int | None = None) -> list[str]:
    """Addresses nodes may take in `cidr`, lowest first (at most `limit` of them: a /8 has 16 million)."""
    found: list[str] = []
    for address in _iter_usable(_network(cidr)):
        if limit is not None and len(found) >= limit:
            break
        found.append(address)
    return found


def _address(raw: str, what: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(str(raw).strip())
    except ValueError:
        raise PlanError(f"{what} {raw!r} is not an IPv4 address") from None


def make_plan(
    settings: ClusterSettings,
    used: Iterable[str] = (),
    existing: Mapping[str, str] | None = None,
) -> Plan:
    """Plan `settings.count` nodes; `used` addresses are avoided, `existing` (name -> address) are kept.

    Nodes are <cluster>-01, -02, ...; the first ones are the servers. New nodes take the lowest usable
    addresses that are neither used nor kept, so the same inputs always give the same plan.
    """
    if not CLUSTER_NAME_RE.match(settings.name):
        raise PlanError(
            f"cluster.name = {settings.name!r} is not a valid hostname label",
            hint="use 1-42 lowercase letters, digits and '-', starting with a letter and not ending in '-'",
        )
    if not DATACENTER_RE.match(settings.datacenter):
        raise PlanError(
            f"cluster.datacenter = {settings.datacenter!r} is not a valid datacenter name",
            hint="use letters, digits, '-' and '_' (e.g. dc1)",
        )
    count = settings.count
    n_servers, warnings = server_count(count, settings.servers)
    network = _network(settings.cidr)
    usable = _usable_range(network)

    names = [node_name(settings.name, i) for i in range(1, count + 1)]
    kept: dict[str, str] = {}
    for name, raw in (existing or {}).items():
        address = _address(raw, f"existing node {name}: address")
        if int(address) not in usable:
            raise PlanError(
                f"existing node {name} has address {address}, outside the usable addresses of cluster.cidr = "
                f"{settings.cidr}",
                hint="set cluster.cidr to the CIDR block of the subnet the nodes are in",
            )
        if str(address) in kept.values():
            raise PlanError(f"existing nodes share address {address}", hint="each node needs its own address")
        kept[name] = str(address)
    taken = {int(_address(a, "used address")) for a in used} | {int(ipaddress.IPv4Address(a)) for a in kept.values()}

    needed = sum(1 for name in names if name not in kept)
    free_count = len(usable) - sum(1 for a in taken if a in usable)
    if needed > free_count:
        raise PlanError(
            f"cluster.cidr = {settings.cidr} has {free_count} free addresses, {needed} new nodes need one each",
            hint="use a larger subnet or fewer nodes (OCI keeps the first two and the last address of a subnet)",
        )

    free = (str(ipaddress.IPv4Address(v)) for v in usable if v not in taken)
    shared = count <= SHARED_SERVER_LIMIT or n_servers == count
    nodes = []
    for i, name in enumerate(names, start=1):
        if i <= n_servers:
            role = Role.BOTH if shared else Role.SERVER
        else:
            role = Role.CLIENT
        nodes.append(Node(index=i, name=name, role=role, address=kept[name] if name in kept else next(free)))
    return Plan(
        cluster=settings.name,
        datacenter=settings.datacenter,
        cidr=str(network),
        nodes=tuple(nodes),
        warnings=warnings,
    )
