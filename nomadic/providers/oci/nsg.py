"""The cluster's network security groups: found by tag, created if missing, their ingress rules kept as declared.

A new VCN's default security list admits TCP 22 from anywhere and some ICMP, nothing else: without a group, the
nodes cannot reach each other's Consul and Nomad ports and no leader is ever elected. The "cluster" group admits
exactly the gossip, RPC and dynamic job ports, and only from its own members (the source of every rule is the
group itself), so nothing cluster-internal is open to 0.0.0.0/0. The HTTP APIs (4646, 8500) are not opened at
all: they are reached through the SSH tunnel.

A group is a `Group` (its role and its rules); another role, e.g. a public group for the ports a job publishes,
is one more Group with rules whose source is a CIDR, found and synced by the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ...imagefacts import FIREWALLD_SERVICES, NOMAD_DYNAMIC_PORTS
from ...errors import CloudError
from .api import Api, Refused

TAG_CLUSTER = "nomadic-cluster"
TAG_GROUP = "nomadic-nsg"  # the group's role within the cluster: "cluster" (and later others, e.g. "public")
TCP, UDP = "6", "17"  # IANA protocol numbers, as OCI wants them
SELF = "self"  # a rule source meaning "this group"
ANYWHERE = ("0.0.0.0/0", "::/0")


@dataclass(frozen=True)
class Rule:
    """One stateful ingress rule: protocol, destination port range, source (SELF or a CIDR)."""

    protocol: str
    low: int
    high: int
    description: str
    source: str = SELF

    def key(self, group_id: str) -> tuple[str, int, int, str]:
        return (self.protocol, self.low, self.high, group_id if self.source == SELF else self.source)


@dataclass(frozen=True)
class Group:
    role: str
    rules: tuple[Rule, ...]

    def display_name(self, cluster: str) -> str:
        return f"{cluster}-{self.role}"


def _both(port: int, what: str) -> tuple[Rule, Rule]:
    return Rule(TCP, port, port, f"{what} (tcp)"), Rule(UDP, port, port, f"{what} (udp)")


CLUSTER = Group(
    "cluster",
    (
        Rule(TCP, 8300, 8300, "Consul server RPC"),
        *_both(8301, "Consul LAN gossip"),
        Rule(TCP, 4647, 4647, "Nomad RPC"),
        *_both(4648, "Nomad gossip"),
        Rule(TCP, *NOMAD_DYNAMIC_PORTS, "Nomad dynamic ports (tcp)"),
        Rule(UDP, *NOMAD_DYNAMIC_PORTS, "Nomad dynamic ports (udp)"),
    ),
)

# Ports that must never be open to the internet: every port the agents listen on (preflight warns about them).
PRIVATE_PORTS = tuple(
    (TCP if p.protocol == "tcp" else UDP, p.port) for ports in FIREWALLD_SERVICES.values() for p in ports
)


def find(api: Api, compartment: str, vcn_id: str, cluster: str, group: Group) -> Any | None:
    """The cluster's group of this role in the VCN (by tag), or None."""
    for nsg in api.list("list network security groups", api.network.list_network_security_groups,
                        compartment_id=compartment, vcn_id=vcn_id):
        tags = nsg.freeform_tags or {}
        if tags.get(TAG_CLUSTER) == cluster and tags.get(TAG_GROUP) == group.role and nsg.lifecycle_state in (
            "PROVISIONING", "AVAILABLE"
        ):
            return nsg
    return None


def ensure(api: Api, compartment: str, vcn_id: str, cluster: str, group: Group, token: Callable[[int], str]) -> str:
    """The group's OCID: found by tag or created, then its rules synced.

    token(attempt) gives the create's retry token, so a resent create makes no twin; a token that replays a
    deleted group (OCI replays within 24 hours) or was invalidated moves on to the next attempt's token.
    """
    nsg = find(api, compartment, vcn_id, cluster, group)
    for attempt in range(5):
        if nsg is not None:
            break
        nsg = _create(api, compartment, vcn_id, cluster, group, token(attempt))
    if nsg is None:
        raise CloudError(f"network security group {group.display_name(cluster)}: retry tokens kept replaying a deleted group")
    sync_rules(api, nsg.id, group.rules)
    return str(nsg.id)


def _create(api: Api, compartment: str, vcn_id: str, cluster: str, group: Group, token: str) -> Any | None:
    import oci

    details = oci.core.models.CreateNetworkSecurityGroupDetails(
        compartment_id=compartment,
        vcn_id=vcn_id,
        display_name=group.display_name(cluster),
        freeform_tags={TAG_CLUSTER: cluster, TAG_GROUP: group.role},
    )
    try:
        nsg = api.call(f"create network security group {group.display_name(cluster)}",
                       api.network.create_network_security_group, details, opc_retry_token=token)
    except Refused as exc:
        if exc.code == "InvalidatedRetryToken":
            return None
        raise
    return None if nsg.lifecycle_state in ("TERMINATING", "TERMINATED") else nsg


def sync_rules(api: Api, group_id: str, wanted: Iterable[Rule]) -> None:
    """Make the group's ingress rules exactly `wanted`: add the missing ones, remove the others."""
    import oci

    m = oci.core.models
    present = api.list("list security rules", api.network.list_network_security_group_security_rules, group_id,
                       direction="INGRESS")
    have = {_key(r): r.id for r in present}
    want = {r.key(group_id): r for r in wanted}
    extra = [rid for key, rid in have.items() if key not in want]
    missing = [r for key, r in want.items() if key not in have]
    if extra:
        api.call("remove security rules", api.network.remove_network_security_group_security_rules, group_id,
                 m.RemoveNetworkSecurityGroupSecurityRulesDetails(security_rule_ids=extra))
    for chunk in range(0, len(missing), 25):  # OCI takes at most 25 rules per call
        rules = [_details(r, group_id) for r in missing[chunk : chunk + 25]]
        api.call("add security rules", api.network.add_network_security_group_security_rules, group_id,
                 m.AddNetworkSecurityGroupSecurityRulesDetails(security_rules=rules))


def _key(rule: Any) -> tuple[str, int, int, str]:
    options = rule.tcp_options if rule.protocol == TCP else rule.udp_options
    ports = getattr(options, "destination_port_range", None)
    low, high = (ports.min, ports.max) if ports else (1, 65535)
    return (rule.protocol, low, high, rule.source)


def _details(rule: Rule, group_id: str) -> Any:
    import oci

    m = oci.core.models
    ports = m.PortRange(min=rule.low, max=rule.high)
    self_source = rule.source == SELF
    return m.AddSecurityRuleDetails(
        direction="INGRESS",
        protocol=rule.protocol,
        is_stateless=False,
        source=group_id if self_source else rule.source,
        source_type="NETWORK_SECURITY_GROUP" if self_source else "CIDR_BLOCK",
        description=rule.description,
        tcp_options=m.TcpOptions(destination_port_range=ports) if rule.protocol == TCP else None,
        udp_options=m.UdpOptions(destination_port_range=ports) if rule.protocol == UDP else None,
    )


def attach(api: Api, vnic_id: str, group_ids: Iterable[str], say: Callable[[str], None] | None = None) -> bool:
    """Add the groups to the VNIC (keeping any it has); True when the VNIC changed."""
    import oci

    vnic = api.call(f"get VNIC {vnic_id}", api.network.get_vnic, vnic_id, say=say)
    have = list(vnic.nsg_ids or [])
    missing = [g for g in group_ids if g not in have]
    if not missing:
        return False
    api.call(f"update VNIC {vnic_id}", api.network.update_vnic, vnic_id,
             oci.core.models.UpdateVnicDetails(nsg_ids=have + missing), say=say)
    return True


def delete_all(api: Api, compartment: str, cluster: str, say: Callable[[str], None]) -> None:
    """Delete every group tagged with the cluster; OCI refuses (409) while a VNIC is in one, so wait that out."""
    groups = [
        g for g in api.list("list network security groups", api.network.list_network_security_groups,
                            compartment_id=compartment)
        if (g.freeform_tags or {}).get(TAG_CLUSTER) == cluster and g.lifecycle_state != "TERMINATED"
    ]
    timeout = api.settings.oci.launch_timeout_s
    for g in groups:
        waited = 0.0
        while True:
            try:
                api.call(f"delete network security group {g.display_name}",
                         api.network.delete_network_security_group, g.id)
                say(f"deleted network security group {g.display_name}")
                break
            except Refused as exc:
                if exc.status != 409 or waited >= timeout:
                    raise
                # The terminated instances' VNICs leave the group a little after TERMINATED.
                interval = max(1.0, api.settings.oci.poll_interval_s)
                api.poll_pause(interval)
                waited += interval


def exposed(security_lists: Iterable[Any]) -> list[str]:
    """Cluster ports that a security list admits from anywhere: 'list name: tcp 8300' lines (for a warning)."""
    found = []
    for sl in security_lists:
        for rule in sl.ingress_security_rules or []:
            if rule.source not in ANYWHERE:
                continue
            for protocol, port in PRIVATE_PORTS:
                if _admits(rule, protocol, port):
                    found.append(f"{sl.display_name}: {'tcp' if protocol == TCP else 'udp'} {port}")
    return found


def _admits(rule: Any, protocol: str, port: int) -> bool:
    if rule.protocol == "all":
        return True
    if rule.protocol != protocol:
        return False
    options = rule.tcp_options if protocol == TCP else rule.udp_options
    ports = getattr(options, "destination_port_range", None) if options else None
    return ports is None or ports.min <= port <= ports.max
